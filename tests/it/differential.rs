//! Differential test: the same sequence of requests sent to kes and to the Go server (`kes-go` of
//! the reference peers), both started from the same configuration (fs keystore, an admin, three
//! policies with allow and deny rules, their identities' client certificates), comparing for
//! every request the status code, the error `message`, the `Content-Type`, the headers that carry
//! meaning (`Accept` of a 405, `Location` of a redirect, `X-Content-Type-Options`, whether `Date`
//! is sent) and the body: JSON by its shape (keys and value types) and by its values where they
//! are deterministic, text byte for byte, metrics by their families, log streams by their first
//! event.
//!
//! The cases (see [`cases`]) cover every route of the API, the legacy bulk decrypt, unknown and
//! unclean paths and ALPN, each with good and bad input: missing and existing keys, wrong
//! context, tampered ciphertexts, bad names and patterns, forbidden and unknown identities, no
//! certificate, bad JSON, empty bodies, wrong methods, bodies over the limit. They run in order,
//! against both servers, so that sequences (create, create again, delete, describe) compare. The
//! requests are HTTP/1.1 (HTTP/2 answers the same: `tests/h2.rs`); a few go to a second pair of
//! servers whose config has no `skip_auth` route, so that their TLS requires a certificate.
//!
//! Every difference must be listed in the allow-list, `tests/differential/allow.yaml`: which
//! cases, which aspects differ, what each server does, why (a Go bug fixed here, or a deliberate
//! choice), and the README note that tells operators. The test fails on a difference that is not
//! listed, and on a listed difference that no longer occurs (a stale entry). The README's section
//! "Compatibility notes" is checked against the allow-list, not generated from it: every entry's
//! `readme` text must appear in that section ([`allow_list_entries_are_in_the_readme`], which
//! needs no peers and runs everywhere).
//!
//! MinIO's client library (kesclient) runs every call against both servers in
//! `tests/h2.rs::peer_kesclient_every_call_over_h2_as_against_the_go_server`, which fails when a
//! call that passes against the Go server fails against kes.

use crate::support;

use crate::support::client::Client;
use crate::support::gokes::GoKes;
use crate::support::pki::{self, Ca, Cert, KeyKind};
use crate::support::{Kes, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const ALLOW_LIST: &str = include_str!("../differential/allow.yaml");
const README: &str = include_str!("../../README.md");

// ---------------------------------------------------------------------------------------------
// The allow-list

/// One listed difference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowed {
    /// A short name, unique in the file.
    id: String,
    /// Case ids this entry covers; a trailing `*` matches every id with that prefix.
    cases: Vec<String>,
    /// The aspects that differ: `status`, `message`, `content-type`, `body`, `header:<name>`.
    differs: Vec<String>,
    /// The Go server's status in these cases (`0`: no reply), when the entry is that specific.
    #[serde(default)]
    go_status: Option<u16>,
    /// kes's status in these cases (`0`: no reply).
    #[serde(default)]
    kes_status: Option<u16>,
    /// What the Go server does.
    go: String,
    /// What kes does.
    kes: String,
    /// `go-bug` (kes fixes it), `deliberate` (a choice of kes), or `legacy` (kes keeps serving
    /// what older servers and clients use).
    kind: String,
    why: String,
    /// A text that the README's compatibility notes contain (whitespace-insensitive).
    readme: String,
}

fn allow_list() -> Vec<Allowed> {
    let list: Vec<Allowed> = yaml_serde::from_str(ALLOW_LIST).expect("allow.yaml");
    let mut ids = BTreeSet::new();
    for a in &list {
        assert!(ids.insert(a.id.as_str()), "allow.yaml: id {} twice", a.id);
        assert!(
            matches!(a.kind.as_str(), "go-bug" | "deliberate" | "legacy"),
            "allow.yaml {}: kind {:?}",
            a.id,
            a.kind
        );
        assert!(!a.cases.is_empty() && !a.differs.is_empty(), "{}", a.id);
        for d in &a.differs {
            assert!(
                matches!(d.as_str(), "status" | "message" | "content-type" | "body")
                    || d.starts_with("header:"),
                "allow.yaml {}: unknown aspect {d}",
                a.id
            );
        }
        assert!(
            !a.why.trim().is_empty() && !a.go.trim().is_empty() && !a.kes.trim().is_empty(),
            "{}",
            a.id
        );
    }
    list
}

fn matches_case(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The README's section "Compatibility notes", whitespace squashed.
fn readme_notes() -> String {
    let start = README
        .find("\n## Compatibility notes")
        .expect("README has no section \"Compatibility notes\"");
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    squash(&rest[..end])
}

#[test]
fn allow_list_entries_are_in_the_readme() {
    let notes = readme_notes();
    let missing: Vec<String> = allow_list()
        .iter()
        .filter(|a| !notes.contains(&squash(&a.readme)))
        .map(|a| format!("{}: {:?}", a.id, a.readme))
        .collect();
    assert!(
        missing.is_empty(),
        "allow-list entries whose README text is not in README.md's \"Compatibility notes\":\n{}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The two servers

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    /// Policy `app`: keys `app-*`, with a deny rule.
    App,
    /// Policy `ops`: status, metrics, api, policies, identities, the audit log.
    Ops,
    /// A certificate without a policy.
    Stranger,
    /// No client certificate (the config has a `skip_auth` route, so TLS only requests one).
    NoCert,
    /// A CA certificate (basic constraints `CA:TRUE`): the Go server takes the identity from the
    /// only certificate that is not a CA's.
    CaCert,
}

struct Identities {
    ca: Ca,
    admin: Cert,
    app: Cert,
    ops: Cert,
    stranger: Cert,
}

impl Identities {
    fn new() -> Identities {
        Identities {
            ca: Ca::new("kes differential CA"),
            admin: pki::api_key_client(ADMIN_API_KEY),
            app: pki::self_signed_client(KeyKind::EcdsaP256, "app"),
            ops: pki::self_signed_client(KeyKind::Ed25519, "ops"),
            stranger: pki::self_signed_client(KeyKind::EcdsaP256, "stranger"),
        }
    }

    fn cert(&self, who: Who) -> Option<&Cert> {
        match who {
            Who::Admin => Some(&self.admin),
            Who::App => Some(&self.app),
            Who::Ops => Some(&self.ops),
            Who::Stranger => Some(&self.stranger),
            Who::NoCert => None,
            Who::CaCert => Some(&self.ca.cert),
        }
    }
}

/// The configuration both servers read; `{keys}` is each server's own key directory. `strict`:
/// no route skips authentication, so that TLS requires a client certificate.
fn config(ids: &Identities, dir: &Path, keys: &Path, strict: bool) -> String {
    let api = if strict {
        ""
    } else {
        "api:\n  /v1/ready:\n    skip_auth: true\n  /v1/status:\n    timeout: 20s\n"
    };
    format!(
        r#"
address: 127.0.0.1:7373
admin:
  identity: {admin}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
{api}
policy:
  app:
    allow:
    - /v1/key/create/app-*
    - /v1/key/describe/app-*
    - /v1/key/generate/app-*
    - /v1/key/decrypt/app-*
    - /v1/key/list/*
    - /v1/key/bulk/decrypt/app-*
    deny:
    - /v1/key/generate/app-internal*
    - /v1/key/*/app-secret
    identities:
    - {app}
  ops:
    allow:
    - /v1/status
    - /v1/metrics
    - /v1/api
    - /v1/policy/*
    - /v1/identity/*
    - /v1/log/audit
    identities:
    - {ops}
  empty:
    allow: []
keystore:
  fs:
    path: {keys}
"#,
        admin = ids.admin.identity,
        app = ids.app.identity,
        ops = ids.ops.identity,
        dir = dir.display(),
        keys = keys.display(),
    )
}

/// A key file that is neither of the stored formats: reading it fails (502 and an error log).
fn write_corrupt_key(keys: &Path) {
    std::fs::create_dir_all(keys).unwrap();
    std::fs::write(keys.join("corrupt"), "garbage").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Cases

/// What a case sends as its body.
enum Body {
    None,
    /// With `Content-Length`.
    Text(String),
    /// With `Transfer-Encoding: chunked`, in these chunks.
    Chunked(Vec<String>),
    /// Built from the replies this server gave to earlier cases (ciphertexts differ per server).
    Dyn(fn(&Saved) -> String),
}

/// How a case reads its reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// The reply head only (HEAD requests).
    HeadOnly,
    /// A log stream: the head and its first event, with a trigger request (method, path) sent
    /// meanwhile by the admin on another connection: the Go server sends the head only once
    /// something is logged (the audit log: key create, import, delete; the error log: a keystore
    /// failure).
    Stream(&'static str, &'static str),
    /// A TLS handshake offering these ALPN protocols; the observation is what was negotiated.
    Alpn(&'static [&'static str]),
    /// `/v1/metrics`: compared by metric families.
    Metrics,
}

struct Case {
    id: String,
    who: Who,
    method: &'static str,
    path: String,
    body: Body,
    headers: Vec<(&'static str, String)>,
    kind: Kind,
    /// The order of a JSON array does not matter (`/v1/api`).
    unordered: bool,
    /// Sent to the second pair of servers, whose TLS requires a client certificate.
    strict: bool,
    /// Over TLS 1.2 only.
    tls12: bool,
}

impl Case {
    fn body(mut self, body: &str) -> Case {
        self.body = Body::Text(body.to_string());
        self
    }
    fn json(self, body: Value) -> Case {
        self.body(&body.to_string())
    }
    fn chunked(mut self, chunks: &[&str]) -> Case {
        self.body = Body::Chunked(chunks.iter().map(|c| c.to_string()).collect());
        self
    }
    fn dyn_body(mut self, f: fn(&Saved) -> String) -> Case {
        self.body = Body::Dyn(f);
        self
    }
    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_string()));
        self
    }
    fn kind(mut self, kind: Kind) -> Case {
        self.kind = kind;
        self
    }
    fn unordered(mut self) -> Case {
        self.unordered = true;
        self
    }
    fn strict(mut self) -> Case {
        self.strict = true;
        self
    }
    fn tls12(mut self) -> Case {
        self.tls12 = true;
        self
    }
}

fn case(id: &str, who: Who, method: &'static str, path: &str) -> Case {
    Case {
        id: id.to_string(),
        who,
        method,
        path: path.to_string(),
        body: Body::None,
        headers: Vec::new(),
        kind: if method == "HEAD" {
            Kind::HeadOnly
        } else {
            Kind::Plain
        },
        unordered: false,
        strict: false,
        tls12: false,
    }
}

/// The JSON replies a server gave so far, by case id.
type Saved = BTreeMap<String, Value>;

fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

/// A base64 field of a saved reply, decoded.
fn saved_bytes(saved: &Saved, case: &str, field: &str) -> Vec<u8> {
    let v = saved
        .get(case)
        .unwrap_or_else(|| panic!("no saved reply of case {case}"));
    B64.decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no {field}")),
    )
    .unwrap()
}

/// The generated ciphertext under `k1` with context `ctx`.
fn ct_k1(saved: &Saved) -> Vec<u8> {
    saved_bytes(saved, "key.generate.context", "ciphertext")
}

const CTX: &str = "Y3R4"; // base64("ctx")

fn decrypt_body(ciphertext: &[u8], context: Option<&str>) -> String {
    let mut body = json!({ "ciphertext": b64(ciphertext) });
    if let Some(c) = context {
        body["context"] = json!(c);
    }
    body.to_string()
}

/// What a Prometheus scraper asks for when it prefers protobuf.
const PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// A ciphertext in the JSON form of old servers, with empty fields.
const LEGACY_GARBAGE: &[u8] =
    br#"{"aead":"AES-256-GCM-HMAC-SHA-256","iv":"","nonce":"","bytes":""}"#;

/// The whole sequence, in order. Ids name the route area first; the allow-list refers to them.
/// (A table, one case a line: rustfmt leaves it as it is.)
#[rustfmt::skip]
fn cases(ids: &Identities) -> Vec<Case> {
    use Who::*;
    let long = "a".repeat(81);
    let key32 = b64(&[7u8; 32]);
    let app_id = ids.app.identity.clone();
    let admin_id = ids.admin.identity.clone();
    let describe_id = |id: &str| format!("/v1/identity/describe/{id}");
    let admin_prefix = &admin_id[..6];
    let mut v = vec![
        // --- system routes
        case("version.admin", Admin, "GET", "/version"),
        case("version.nocert", NoCert, "GET", "/version"),
        case("version.stranger", Stranger, "GET", "/version"),
        case("version.post", Admin, "POST", "/version"),
        case("version.head", Admin, "HEAD", "/version"),
        case("version.slash", Admin, "GET", "/version/"),
        case("status.admin", Admin, "GET", "/v1/status"),
        case("status.ops", Ops, "GET", "/v1/status"),
        case("status.query", Admin, "GET", "/v1/status?x=1&y"),
        case("status.app", App, "GET", "/v1/status"),
        case("status.stranger", Stranger, "GET", "/v1/status"),
        case("status.nocert", NoCert, "GET", "/v1/status"),
        case("status.put", Admin, "PUT", "/v1/status"),
        case("status.options", Admin, "OPTIONS", "/v1/status"),
        case("status.head", Admin, "HEAD", "/v1/status"),
        case("ready.admin", Admin, "GET", "/v1/ready"),
        case("ready.nocert", NoCert, "GET", "/v1/ready"),
        case("ready.stranger", Stranger, "GET", "/v1/ready"),
        case("ready.delete", Admin, "DELETE", "/v1/ready"),
        case("api.admin", Admin, "GET", "/v1/api").unordered(),
        case("api.ops", Ops, "GET", "/v1/api").unordered(),
        case("api.app", App, "GET", "/v1/api"),
        case("api.nocert", NoCert, "GET", "/v1/api"),
        case("api.post", Admin, "POST", "/v1/api"),
        case("metrics.admin", Admin, "GET", "/v1/metrics").kind(Kind::Metrics),
        case("metrics.ops", Ops, "GET", "/v1/metrics").kind(Kind::Metrics),
        case("metrics.accept-text", Admin, "GET", "/v1/metrics")
            .header("Accept", "text/plain;version=0.0.4")
            .kind(Kind::Metrics),
        case("metrics.accept-protobuf", Admin, "GET", "/v1/metrics")
            .header("Accept", PROTOBUF)
            .kind(Kind::Metrics),
        case("metrics.app", App, "GET", "/v1/metrics"),
        case("metrics.put", Admin, "PUT", "/v1/metrics"),
        // --- unknown and unclean paths
        case("path.root", Admin, "GET", "/"),
        case("path.v1", Admin, "GET", "/v1"),
        case("path.v1-slash", Admin, "GET", "/v1/"),
        case("path.unknown", Admin, "GET", "/v1/nothing"),
        case("path.unknown-stranger", Stranger, "GET", "/v1/nothing"),
        case("path.unknown-nocert", NoCert, "GET", "/v1/nothing"),
        case("path.unknown-key-op", Admin, "PUT", "/v1/key/frobnicate/k1"),
        case("path.key-prefix", Admin, "GET", "/v1/key/"),
        case("path.self-prefix", Admin, "GET", "/v1/identity/self/"),
        case("path.self-child", Admin, "GET", "/v1/identity/self/describe/x"),
        case("path.case", Admin, "GET", "/V1/STATUS"),
        case("path.unclean-double-slash", Admin, "GET", "//v1/status"),
        case("path.unclean-dot", Admin, "GET", "/v1/./status"),
        case("path.unclean-dotdot", Admin, "GET", "/v1/key/describe/../list/"),
        // --- TLS: a server that requires a client certificate, TLS 1.2, a CA certificate
        case("tls.nocert", NoCert, "GET", "/version").strict(),
        case("tls.nocert-tls12", NoCert, "GET", "/version").strict().tls12(),
        case("tls.admin-tls12", Admin, "GET", "/v1/key/list/").strict().tls12(),
        case("tls.admin", Admin, "GET", "/v1/identity/self/describe").strict(),
        case("tls.stranger", Stranger, "GET", "/v1/key/list/").strict(),
        case("tls.ready-stranger", Stranger, "GET", "/v1/ready").strict(),
        case("tls.ca-cert", CaCert, "GET", "/v1/status").strict(),
        case("tls.ca-cert-version", CaCert, "GET", "/version").strict(),
        case("tls.ca-cert-self", CaCert, "GET", "/v1/identity/self/describe").strict(),
        case("tls.ca-cert-ready", CaCert, "GET", "/v1/ready"),
        // --- ALPN
        case("alpn.h2-http1", Admin, "GET", "/").kind(Kind::Alpn(&["h2", "http/1.1"])),
        case("alpn.http1", Admin, "GET", "/").kind(Kind::Alpn(&["http/1.1"])),
        case("alpn.h2", Admin, "GET", "/").kind(Kind::Alpn(&["h2"])),
        case("alpn.unknown", Admin, "GET", "/").kind(Kind::Alpn(&["acme-tls/1"])),
        case("alpn.none", Admin, "GET", "/").kind(Kind::Alpn(&[])),
        // --- keys: create
        case("key.list.empty", Admin, "GET", "/v1/key/list/"),
        case("key.create", Admin, "PUT", "/v1/key/create/k1"),
        case("key.create.post", Admin, "POST", "/v1/key/create/k2"),
        case("key.create.exists", Admin, "PUT", "/v1/key/create/k1"),
        case("key.create.exists-post", Admin, "POST", "/v1/key/create/k2"),
        case("key.create.small-body", Admin, "POST", "/v1/key/create/k3").body(r#"{"x":1}"#),
        case("key.create.get", Admin, "GET", "/v1/key/create/k5"),
        case("key.create.delete", Admin, "DELETE", "/v1/key/create/k5"),
        case("key.create.no-slash", Admin, "PUT", "/v1/key/create"),
        case("key.create.empty-name", Admin, "PUT", "/v1/key/create/"),
        case("key.create.name-dash-first", Admin, "PUT", "/v1/key/create/-x"),
        case("key.create.name-dash-last", Admin, "PUT", "/v1/key/create/x-"),
        case("key.create.name-underscore", Admin, "PUT", "/v1/key/create/_"),
        case("key.create.name-underscores", Admin, "PUT", "/v1/key/create/_a_"),
        case("key.create.name-too-long", Admin, "PUT", &format!("/v1/key/create/{long}")),
        case("key.create.name-80", Admin, "PUT", &format!("/v1/key/create/{}", &long[..80])),
        case("key.create.name-dot", Admin, "PUT", "/v1/key/create/a.b"),
        case("key.create.name-dotdot", Admin, "PUT", "/v1/key/create/%2e%2e"),
        case("key.create.name-space", Admin, "PUT", "/v1/key/create/a%20b"),
        case("key.create.name-slash", Admin, "PUT", "/v1/key/create/a%2Fb"),
        case("key.create.name-star", Admin, "PUT", "/v1/key/create/a*"),
        case("key.create.name-unicode", Admin, "PUT", "/v1/key/create/%C3%A4"),
        // Control characters in the echoed name: Go 1.22+ escapes U+0008 and U+000C as \b, \f.
        case("key.create.name-control", Admin, "PUT", "/v1/key/create/a%08b%0Cc%01"),
        case("key.create.name-bad-escape", Admin, "PUT", "/v1/key/create/%zz"),
        case("key.create.name-query", Admin, "PUT", "/v1/key/create/k6?x=y"),
        case("key.create.app", App, "PUT", "/v1/key/create/app-1"),
        case("key.create.app-internal", App, "PUT", "/v1/key/create/app-internal1"),
        case("key.create.app-forbidden", App, "PUT", "/v1/key/create/other"),
        case("key.create.ops", Ops, "PUT", "/v1/key/create/ops-1"),
        case("key.create.stranger", Stranger, "PUT", "/v1/key/create/s1"),
        case("key.create.nocert", NoCert, "PUT", "/v1/key/create/s1"),
        // --- keys: import
        case("key.import", Admin, "PUT", "/v1/key/import/imp")
            .json(json!({"key": key32, "cipher": "AES256"})),
        case("key.import.exists", Admin, "PUT", "/v1/key/import/imp")
            .json(json!({"key": key32, "cipher": "AES256"})),
        case("key.import.chacha", Admin, "POST", "/v1/key/import/imp-chacha")
            .json(json!({"key": key32, "cipher": "ChaCha20"})),
        case("key.import.alias", Admin, "POST", "/v1/key/import/imp-alias")
            .json(json!({"key": key32, "cipher": "XCHACHA20-POLY1305"})),
        case("key.import.field-case", Admin, "POST", "/v1/key/import/imp-case")
            .json(json!({"Key": key32, "CIPHER": "AES256"})),
        case("key.import.trailing", Admin, "POST", "/v1/key/import/imp-trail")
            .body(&format!("{} trailing", json!({"key": key32, "cipher": "AES256"}))),
        case("key.import.bad-cipher", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"key": key32, "cipher": "DES"})),
        case("key.import.no-cipher", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"key": key32})),
        case("key.import.short-key", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"key": b64(&[1; 16]), "cipher": "AES256"})),
        case("key.import.no-key", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"cipher": "AES256"})),
        case("key.import.bad-base64", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"key": "!!", "cipher": "AES256"})),
        case("key.import.key-number", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"key": 5, "cipher": "AES256"})),
        case("key.import.empty-object", Admin, "POST", "/v1/key/import/imp-x").body("{}"),
        case("key.import.null", Admin, "POST", "/v1/key/import/imp-x").body("null"),
        case("key.import.array", Admin, "POST", "/v1/key/import/imp-x").body("[]"),
        case("key.import.bad-json", Admin, "POST", "/v1/key/import/imp-x").body("{bad"),
        case("key.import.empty-body", Admin, "POST", "/v1/key/import/imp-x"),
        case("key.import.blank-body", Admin, "POST", "/v1/key/import/imp-x").body("  \n"),
        case("key.import.legacy-no-bytes", Admin, "POST", "/v1/key/import/imp-x")
            .json(json!({"algorithm": "ChaCha20"})),
        case("key.import.bad-name", Admin, "POST", "/v1/key/import/-x")
            .json(json!({"key": key32, "cipher": "AES256"})),
        case("key.import.get", Admin, "GET", "/v1/key/import/imp-x"),
        case("key.import.too-large", Admin, "POST", "/v1/key/import/imp-x")
            .body(&format!(r#"{{"key":"{}","cipher":"AES256"}}"#, "A".repeat(1_000_100))),
        case("key.import.app", App, "POST", "/v1/key/import/app-2")
            .json(json!({"key": key32, "cipher": "AES256"})),
        // --- keys: describe
        case("key.describe", Admin, "GET", "/v1/key/describe/k1"),
        case("key.describe.imported", Admin, "GET", "/v1/key/describe/imp-chacha"),
        case("key.describe.missing", Admin, "GET", "/v1/key/describe/nope"),
        case("key.describe.corrupt", Admin, "GET", "/v1/key/describe/corrupt"),
        case("key.describe.bad-name", Admin, "GET", "/v1/key/describe/a.b"),
        case("key.describe.empty-name", Admin, "GET", "/v1/key/describe/"),
        case("key.describe.no-slash", Admin, "GET", "/v1/key/describe"),
        case("key.describe.sub-path", Admin, "GET", "/v1/key/describe/k1/x"),
        case("key.describe.put", Admin, "PUT", "/v1/key/describe/k1"),
        case("key.describe.head", Admin, "HEAD", "/v1/key/describe/k1"),
        case("key.describe.app", App, "GET", "/v1/key/describe/app-1"),
        case("key.describe.app-missing", App, "GET", "/v1/key/describe/app-nope"),
        case("key.describe.app-forbidden", App, "GET", "/v1/key/describe/k1"),
        case("key.describe.stranger", Stranger, "GET", "/v1/key/describe/k1"),
        // --- keys: list
        case("key.list", Admin, "GET", "/v1/key/list/"),
        case("key.list.star", Admin, "GET", "/v1/key/list/*"),
        case("key.list.prefix", Admin, "GET", "/v1/key/list/imp"),
        case("key.list.prefix-star", Admin, "GET", "/v1/key/list/imp*"),
        case("key.list.exact", Admin, "GET", "/v1/key/list/k1"),
        case("key.list.none", Admin, "GET", "/v1/key/list/zzz"),
        case("key.list.dash-first", Admin, "GET", "/v1/key/list/-x"),
        case("key.list.dash-only", Admin, "GET", "/v1/key/list/-"),
        case("key.list.dash-star", Admin, "GET", "/v1/key/list/-*"),
        case("key.list.dash-last", Admin, "GET", "/v1/key/list/imp-"),
        case("key.list.dash-last-star", Admin, "GET", "/v1/key/list/imp-*"),
        case("key.list.underscore", Admin, "GET", "/v1/key/list/_"),
        case("key.list.underscore-star", Admin, "GET", "/v1/key/list/_*"),
        case("key.list.star-first", Admin, "GET", "/v1/key/list/*x"),
        case("key.list.star-middle", Admin, "GET", "/v1/key/list/a*b"),
        case("key.list.two-stars", Admin, "GET", "/v1/key/list/**"),
        case("key.list.too-long", Admin, "GET", &format!("/v1/key/list/{long}")),
        case("key.list.dot", Admin, "GET", "/v1/key/list/a.b"),
        case("key.list.no-slash", Admin, "GET", "/v1/key/list"),
        case("key.list.post", Admin, "POST", "/v1/key/list/"),
        case("key.list.app", App, "GET", "/v1/key/list/"),
        case("key.list.app-no-slash", App, "GET", "/v1/key/list"),
        case("key.list.ops", Ops, "GET", "/v1/key/list/"),
        case("key.list.nocert", NoCert, "GET", "/v1/key/list/"),
        // --- keys: generate
        case("key.generate", Admin, "POST", "/v1/key/generate/k1"),
        case("key.generate.put", Admin, "PUT", "/v1/key/generate/k1").body("{}"),
        case("key.generate.context", Admin, "POST", "/v1/key/generate/k1")
            .json(json!({"context": CTX})),
        case("key.generate.version", Admin, "POST", "/v1/key/generate/k1")
            .json(json!({"context": CTX, "version": "v1"})),
        case("key.generate.null", Admin, "POST", "/v1/key/generate/k1").body("null"),
        case("key.generate.blank-body", Admin, "POST", "/v1/key/generate/k1").body(" "),
        case("key.generate.chunked-empty", Admin, "POST", "/v1/key/generate/k1").chunked(&[]),
        case("key.generate.chunked", Admin, "POST", "/v1/key/generate/k1")
            .chunked(&[r#"{"context":"#, r#""Y3R4"}"#]),
        case("key.generate.bad-base64", Admin, "POST", "/v1/key/generate/k1")
            .json(json!({"context": "!!"})),
        case("key.generate.context-number", Admin, "POST", "/v1/key/generate/k1")
            .json(json!({"context": 5})),
        case("key.generate.bad-json", Admin, "POST", "/v1/key/generate/k1").body("{bad"),
        case("key.generate.array", Admin, "POST", "/v1/key/generate/k1").body("[]"),
        case("key.generate.missing", Admin, "POST", "/v1/key/generate/nope").body("{}"),
        case("key.generate.missing-bad-json", Admin, "POST", "/v1/key/generate/nope")
            .body("{bad"),
        case("key.generate.corrupt", Admin, "POST", "/v1/key/generate/corrupt"),
        case("key.generate.bad-name", Admin, "POST", "/v1/key/generate/a.b"),
        case("key.generate.get", Admin, "GET", "/v1/key/generate/k1"),
        case("key.generate.too-large", Admin, "POST", "/v1/key/generate/k1")
            .body(&format!(r#"{{"context":"{}"}}"#, "A".repeat(1_000_100))),
        case("key.generate.app", App, "POST", "/v1/key/generate/app-1")
            .json(json!({"context": CTX})),
        case("key.generate.app-denied", App, "POST", "/v1/key/generate/app-internal1"),
        case("key.generate.app-forbidden", App, "POST", "/v1/key/generate/k1"),
        case("key.generate.app-secret", App, "POST", "/v1/key/generate/app-secret"),
        case("key.generate.stranger", Stranger, "POST", "/v1/key/generate/k1"),
        case("key.generate.nocert", NoCert, "POST", "/v1/key/generate/k1"),
        // --- keys: encrypt
        case("key.encrypt", Admin, "PUT", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": "aGVsbG8=", "context": CTX})),
        case("key.encrypt.no-context", Admin, "POST", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": "aGVsbG8="})),
        case("key.encrypt.empty-plaintext", Admin, "POST", "/v1/key/encrypt/k1").body("{}"),
        case("key.encrypt.null", Admin, "POST", "/v1/key/encrypt/k1").body("null"),
        case("key.encrypt.empty-body", Admin, "POST", "/v1/key/encrypt/k1"),
        case("key.encrypt.blank-body", Admin, "POST", "/v1/key/encrypt/k1").body("\r\n"),
        case("key.encrypt.bad-base64", Admin, "POST", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": "a"})),
        case("key.encrypt.bad-json", Admin, "POST", "/v1/key/encrypt/k1").body(r#"{"plaintext":"#),
        case("key.encrypt.missing", Admin, "POST", "/v1/key/encrypt/nope")
            .json(json!({"plaintext": "aGVsbG8="})),
        case("key.encrypt.large", Admin, "POST", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": b64(&vec![1u8; 700_000])})),
        case("key.encrypt.too-large", Admin, "POST", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": b64(&vec![1u8; 760_000])})),
        case("key.encrypt.delete", Admin, "DELETE", "/v1/key/encrypt/k1"),
        case("key.encrypt.app-forbidden", App, "POST", "/v1/key/encrypt/app-1")
            .json(json!({"plaintext": "aGVsbG8="})),
        // --- keys: decrypt
        case("key.decrypt", Admin, "POST", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.put", Admin, "PUT", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.version", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            json!({"ciphertext": b64(&ct_k1(s)), "context": CTX, "version": ""}).to_string()
        }),
        case("key.decrypt.version-1", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            json!({"ciphertext": b64(&ct_k1(s)), "context": CTX, "version": "1"}).to_string()
        }),
        case("key.decrypt.version-unknown", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            json!({"ciphertext": b64(&ct_k1(s)), "context": CTX, "version": "999"}).to_string()
        }),
        case("key.decrypt.version-invalid", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            json!({"ciphertext": b64(&ct_k1(s)), "context": CTX, "version": "v2"}).to_string()
        }),
        // --- key versions (routes of this server only; the Go server has none)
        case("key.retire.version-1", Admin, "POST", "/v1/key/retire/k1")
            .json(json!({"version": "1"})),
        case("key.rotate.missing", Admin, "POST", "/v1/key/rotate/nope"),
        case("key.decrypt.encrypted", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            decrypt_body(&saved_bytes(s, "key.encrypt", "ciphertext"), Some(CTX))
        }),
        case("key.decrypt.no-context-given", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            decrypt_body(&saved_bytes(s, "key.generate", "ciphertext"), None)
        }),
        case("key.decrypt.wrong-context", Admin, "POST", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some("b3RoZXI="))),
        case("key.decrypt.missing-context", Admin, "POST", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), None)),
        // Base64 whose last character has non-zero unused bits ("aGVsbG9=" is "hello"): Go's
        // decoder is not strict about them.
        case("key.encrypt.base64-trailing-bits", Admin, "POST", "/v1/key/encrypt/k1")
            .json(json!({"plaintext": "aGVsbG9="})),
        case("key.decrypt.tampered", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            let mut ct = ct_k1(s);
            ct[5] ^= 1;
            decrypt_body(&ct, Some(CTX))
        }),
        case("key.decrypt.tampered-tag", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            let mut ct = ct_k1(s);
            ct[40] ^= 0x80;
            decrypt_body(&ct, Some(CTX))
        }),
        case("key.decrypt.truncated", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            let ct = ct_k1(s);
            decrypt_body(&ct[..ct.len() - 1], Some(CTX))
        }),
        case("key.decrypt.extended", Admin, "POST", "/v1/key/decrypt/k1").dyn_body(|s| {
            let mut ct = ct_k1(s);
            ct.push(0);
            decrypt_body(&ct, Some(CTX))
        }),
        case("key.decrypt.short", Admin, "POST", "/v1/key/decrypt/k1")
            .json(json!({"ciphertext": "AAAA"})),
        case("key.decrypt.legacy-json-garbage", Admin, "POST", "/v1/key/decrypt/k1").json(
            json!({"ciphertext": b64(LEGACY_GARBAGE)}),
        ),
        case("key.decrypt.wrong-key", Admin, "POST", "/v1/key/decrypt/k2")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.other-algorithm", Admin, "POST", "/v1/key/decrypt/imp-chacha")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.empty-ciphertext", Admin, "POST", "/v1/key/decrypt/k1")
            .json(json!({"ciphertext": ""})),
        case("key.decrypt.empty-object", Admin, "POST", "/v1/key/decrypt/k1").body("{}"),
        case("key.decrypt.empty-body", Admin, "POST", "/v1/key/decrypt/k1"),
        case("key.decrypt.blank-body", Admin, "POST", "/v1/key/decrypt/k1").body(" "),
        case("key.decrypt.bad-base64", Admin, "POST", "/v1/key/decrypt/k1")
            .json(json!({"ciphertext": "@@@@"})),
        case("key.decrypt.bad-json", Admin, "POST", "/v1/key/decrypt/k1").body("}"),
        case("key.decrypt.missing", Admin, "POST", "/v1/key/decrypt/nope")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.bad-name", Admin, "POST", "/v1/key/decrypt/k1-")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.get", Admin, "GET", "/v1/key/decrypt/k1"),
        case("key.decrypt.app", App, "POST", "/v1/key/decrypt/app-1").dyn_body(|s| {
            decrypt_body(&saved_bytes(s, "key.generate.app", "ciphertext"), Some(CTX))
        }),
        case("key.decrypt.app-forbidden", App, "POST", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.decrypt.stranger", Stranger, "POST", "/v1/key/decrypt/k1")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        // --- keys: hmac
        case("key.hmac", Admin, "PUT", "/v1/key/hmac/k1").json(json!({"message": "aGVsbG8="})),
        case("key.hmac.empty-message", Admin, "POST", "/v1/key/hmac/k1").body("{}"),
        case("key.hmac.empty-body", Admin, "POST", "/v1/key/hmac/k1"),
        case("key.hmac.bad-base64", Admin, "POST", "/v1/key/hmac/k1")
            .json(json!({"message": "?"})),
        case("key.hmac.bad-json", Admin, "POST", "/v1/key/hmac/k1").body("[1,"),
        case("key.hmac.missing", Admin, "POST", "/v1/key/hmac/nope")
            .json(json!({"message": "aGVsbG8="})),
        case("key.hmac.bad-name", Admin, "POST", "/v1/key/hmac/_")
            .json(json!({"message": "aGVsbG8="})),
        case("key.hmac.get", Admin, "GET", "/v1/key/hmac/k1"),
        case("key.hmac.app-forbidden", App, "POST", "/v1/key/hmac/app-1")
            .json(json!({"message": "aGVsbG8="})),
        // --- keys: legacy bulk decrypt
        case("key.bulk", Admin, "POST", "/v1/key/bulk/decrypt/k1").dyn_body(|s| {
            json!([{"ciphertext": b64(&ct_k1(s)), "context": CTX}]).to_string()
        }),
        case("key.bulk.empty", Admin, "POST", "/v1/key/bulk/decrypt/k1").body("[]"),
        case("key.bulk.not-authentic", Admin, "POST", "/v1/key/bulk/decrypt/k1")
            .dyn_body(|s| json!([{"ciphertext": b64(&ct_k1(s))}]).to_string()),
        case("key.bulk.bad-json", Admin, "POST", "/v1/key/bulk/decrypt/k1").body("{}"),
        case("key.bulk.get", Admin, "GET", "/v1/key/bulk/decrypt/k1"),
        case("key.bulk.app-forbidden", App, "POST", "/v1/key/bulk/decrypt/k1").body("[]"),
        // --- keys: delete
        case("key.delete", Admin, "DELETE", "/v1/key/delete/k2"),
        case("key.delete.again", Admin, "DELETE", "/v1/key/delete/k2"),
        case("key.delete.then-describe", Admin, "GET", "/v1/key/describe/k2"),
        case("key.delete.then-decrypt", Admin, "POST", "/v1/key/decrypt/k2")
            .dyn_body(|s| decrypt_body(&ct_k1(s), Some(CTX))),
        case("key.delete.then-create", Admin, "PUT", "/v1/key/create/k2"),
        case("key.delete.bad-name", Admin, "DELETE", "/v1/key/delete/a%2F..%2Fb"),
        case("key.delete.empty-name", Admin, "DELETE", "/v1/key/delete/"),
        case("key.delete.put", Admin, "PUT", "/v1/key/delete/k1"),
        case("key.delete.app", App, "DELETE", "/v1/key/delete/app-1"),
        case("key.delete.stranger", Stranger, "DELETE", "/v1/key/delete/k1"),
        case("key.list.after", Admin, "GET", "/v1/key/list/"),
        // --- policies
        case("policy.describe", Admin, "GET", "/v1/policy/describe/app"),
        case("policy.describe.empty-policy", Admin, "GET", "/v1/policy/describe/empty"),
        case("policy.describe.missing", Admin, "GET", "/v1/policy/describe/nope"),
        case("policy.describe.bad-name", Admin, "GET", "/v1/policy/describe/-x"),
        case("policy.describe.empty-name", Admin, "GET", "/v1/policy/describe/"),
        case("policy.describe.no-slash", Admin, "GET", "/v1/policy/describe"),
        case("policy.describe.ops", Ops, "GET", "/v1/policy/describe/ops"),
        case("policy.describe.app-forbidden", App, "GET", "/v1/policy/describe/app"),
        case("policy.describe.post", Admin, "POST", "/v1/policy/describe/app"),
        case("policy.read", Admin, "GET", "/v1/policy/read/app"),
        case("policy.read.allow-only", Admin, "GET", "/v1/policy/read/ops"),
        case("policy.read.empty-policy", Admin, "GET", "/v1/policy/read/empty"),
        case("policy.read.missing", Admin, "GET", "/v1/policy/read/nope"),
        case("policy.read.bad-name", Admin, "GET", &format!("/v1/policy/read/{long}")),
        case("policy.read.ops", Ops, "GET", "/v1/policy/read/app"),
        case("policy.read.stranger", Stranger, "GET", "/v1/policy/read/app"),
        case("policy.read.delete", Admin, "DELETE", "/v1/policy/read/app"),
        case("policy.list", Admin, "GET", "/v1/policy/list/"),
        case("policy.list.star", Admin, "GET", "/v1/policy/list/*"),
        case("policy.list.prefix", Admin, "GET", "/v1/policy/list/a*"),
        case("policy.list.exact", Admin, "GET", "/v1/policy/list/ops"),
        case("policy.list.dash-first", Admin, "GET", "/v1/policy/list/-x"),
        case("policy.list.underscore", Admin, "GET", "/v1/policy/list/_"),
        case("policy.list.bad", Admin, "GET", "/v1/policy/list/a*b"),
        case("policy.list.no-slash", Admin, "GET", "/v1/policy/list"),
        case("policy.list.ops", Ops, "GET", "/v1/policy/list/"),
        case("policy.list.app-forbidden", App, "GET", "/v1/policy/list/"),
        case("policy.list.put", Admin, "PUT", "/v1/policy/list/"),
        case("policy.write.legacy", Admin, "POST", "/v1/policy/write/x").body("{}"),
        // --- identities
        case("identity.describe", Admin, "GET", &describe_id(&app_id)),
        case("identity.describe.admin", Admin, "GET", &describe_id(&admin_id)),
        case("identity.describe.unknown", Admin, "GET", &describe_id(&"f".repeat(64))),
        case("identity.describe.dash-first", Admin, "GET", "/v1/identity/describe/-x"),
        case("identity.describe.dash-last", Admin, "GET", "/v1/identity/describe/x-"),
        case("identity.describe.underscore", Admin, "GET", "/v1/identity/describe/_"),
        case("identity.describe.too-long", Admin, "GET", &describe_id(&long)),
        case("identity.describe.dot", Admin, "GET", "/v1/identity/describe/a.b"),
        case("identity.describe.empty", Admin, "GET", "/v1/identity/describe/"),
        case("identity.describe.no-slash", Admin, "GET", "/v1/identity/describe"),
        case("identity.describe.ops", Ops, "GET", &describe_id(&app_id)),
        case("identity.describe.app-forbidden", App, "GET", &describe_id(&app_id)),
        case("identity.describe.post", Admin, "POST", "/v1/identity/describe/x"),
        case("identity.list", Admin, "GET", "/v1/identity/list/"),
        case("identity.list.star", Admin, "GET", "/v1/identity/list/*"),
        case("identity.list.prefix", Admin, "GET", &format!("/v1/identity/list/{admin_prefix}*")),
        case("identity.list.none", Admin, "GET", "/v1/identity/list/zz"),
        case("identity.list.dash-first", Admin, "GET", "/v1/identity/list/-x"),
        case("identity.list.bad", Admin, "GET", "/v1/identity/list/*a"),
        case("identity.list.no-slash", Admin, "GET", "/v1/identity/list"),
        case("identity.list.ops", Ops, "GET", "/v1/identity/list/"),
        case("identity.list.stranger", Stranger, "GET", "/v1/identity/list/"),
        case("identity.list.delete", Admin, "DELETE", "/v1/identity/list/"),
        case("identity.self.admin", Admin, "GET", "/v1/identity/self/describe"),
        case("identity.self.app", App, "GET", "/v1/identity/self/describe"),
        case("identity.self.ops", Ops, "GET", "/v1/identity/self/describe"),
        case("identity.self.stranger", Stranger, "GET", "/v1/identity/self/describe"),
        case("identity.self.nocert", NoCert, "GET", "/v1/identity/self/describe"),
        case("identity.self.query", Admin, "GET", "/v1/identity/self/describe?x"),
        case("identity.self.post", Admin, "POST", "/v1/identity/self/describe"),
        // --- log streams
        case("log.audit.admin", Admin, "GET", "/v1/log/audit")
            .kind(Kind::Stream("PUT", "/v1/key/create/audit-1")),
        case("log.audit.ops", Ops, "GET", "/v1/log/audit")
            .kind(Kind::Stream("PUT", "/v1/key/create/audit-2")),
        case("log.audit.app-forbidden", App, "GET", "/v1/log/audit"),
        case("log.audit.nocert", NoCert, "GET", "/v1/log/audit"),
        case("log.audit.post", Admin, "POST", "/v1/log/audit"),
        case("log.audit.slash", Admin, "GET", "/v1/log/audit/"),
        case("log.error.admin", Admin, "GET", "/v1/log/error")
            .kind(Kind::Stream("GET", "/v1/key/describe/corrupt")),
        case("log.error.ops-forbidden", Ops, "GET", "/v1/log/error"),
        case("log.error.put", Admin, "PUT", "/v1/log/error"),
        // --- after all that
        case("status.end", Admin, "GET", "/v1/status"),
        case("metrics.end", Admin, "GET", "/v1/metrics").kind(Kind::Metrics),
        // --- last, the cases after which the two keystores differ (a key stored by one server
        // only), so that the listings above compare
        case("key.create.large-body", Admin, "POST", "/v1/key/create/big-body")
            .body(&"x".repeat(100 * 1024)),
        case("key.create.app-secret", App, "PUT", "/v1/key/create/app-secret"),
        case("key.import.legacy-bytes", Admin, "POST", "/v1/key/import/imp-legacy")
            .json(json!({"bytes": key32})),
        case("key.import.legacy-algorithm", Admin, "POST", "/v1/key/import/imp-legacy2")
            .json(json!({"bytes": key32, "algorithm": "ChaCha20"})),
        case("key.delete.corrupt", Admin, "DELETE", "/v1/key/delete/corrupt"),
    ];
    // The routes' methods, on every route, as the table of the Go server lists them.
    for (i, (method, path)) in [
        ("DELETE", "/version"),
        ("POST", "/v1/ready"),
        ("GET", "/v1/key/delete/k1"),
        ("PATCH", "/v1/key/create/k9"),
        ("POST", "/v1/policy/read/app"),
        ("PUT", "/v1/identity/describe/x"),
    ]
    .into_iter()
    .enumerate()
    {
        v.push(case(&format!("method.wrong-{i}"), Who::Admin, method, path));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Sending a case and observing the reply

/// What one server did for one case.
#[derive(Debug, Clone, PartialEq)]
struct Observation {
    /// 0: no reply (the connection failed or nothing came within the time allowed).
    status: u16,
    /// The `message` of a JSON error body.
    message: Option<String>,
    /// The compared headers (lower-case names); `date` only by presence.
    headers: BTreeMap<String, String>,
    /// The body, normalized (see [`normalize`]).
    body: String,
    /// The JSON body as it came, for later cases.
    json: Option<Value>,
}

impl Observation {
    fn failed(why: String) -> Observation {
        Observation {
            status: 0,
            message: None,
            headers: BTreeMap::new(),
            body: why,
            json: None,
        }
    }

    fn aspects(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        a.insert("status".to_string(), self.status.to_string());
        a.insert(
            "message".to_string(),
            self.message.clone().unwrap_or_default(),
        );
        a.insert("body".to_string(), self.body.clone());
        for name in COMPARED_HEADERS {
            let v = self.headers.get(*name).cloned().unwrap_or_default();
            if *name == "content-type" {
                a.insert("content-type".to_string(), v);
            } else {
                a.insert(format!("header:{name}"), v);
            }
        }
        a
    }
}

const COMPARED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "location",
    "x-content-type-options",
    "date",
];

/// One side of the comparison.
struct Side {
    addr: SocketAddr,
    /// The server of the same kind whose TLS requires a client certificate.
    strict_addr: SocketAddr,
    saved: Saved,
}

fn client(ids: &Identities, addr: SocketAddr, who: Who) -> Client {
    Client::new(addr, &ids.ca.cert.der, ids.cert(who))
}

fn run_case(ids: &Identities, side: &Side, c: &Case) -> Observation {
    let addr = if c.strict {
        side.strict_addr
    } else {
        side.addr
    };
    let cl = if c.tls12 {
        Client::with_versions(
            addr,
            &ids.ca.cert.der,
            ids.cert(c.who).map(|c| (vec![c.der.clone()], c.key())),
            &[&rustls::version::TLS12],
        )
    } else {
        client(ids, addr, c.who)
    };
    match c.kind {
        Kind::Alpn(protocols) => {
            let protos: Vec<&[u8]> = protocols.iter().map(|p| p.as_bytes()).collect();
            let mut conn = cl.with_alpn(&protos).connect();
            return match conn.handshake().and_then(|()| {
                // TLS 1.3: a refusal may come after the client's Finished.
                conn.stream
                    .sock
                    .set_read_timeout(Some(Duration::from_millis(300)))?;
                let mut b = [0u8; 1];
                match conn.stream.read(&mut b) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                }
            }) {
                Ok(()) => Observation::failed(format!(
                    "handshake done, ALPN {:?}",
                    conn.stream
                        .conn
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                )),
                Err(e) => Observation::failed(format!("handshake failed: {}", tls_error(&e))),
            };
        }
        Kind::Stream(method, path) => return stream_case(ids, side, c, method, path),
        _ => {}
    }
    let body = match &c.body {
        Body::None => None,
        Body::Text(t) => Some(t.clone()),
        Body::Dyn(f) => Some(f(&side.saved)),
        Body::Chunked(_) => None,
    };
    let mut req = format!("{} {} HTTP/1.1\r\nHost: localhost\r\n", c.method, c.path);
    for (n, v) in &c.headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let mut raw = Vec::new();
    match (&c.body, &body) {
        (Body::Chunked(chunks), _) => {
            req.push_str("Transfer-Encoding: chunked\r\n\r\n");
            raw.extend_from_slice(req.as_bytes());
            for ch in chunks {
                raw.extend_from_slice(format!("{:x}\r\n{ch}\r\n", ch.len()).as_bytes());
            }
            raw.extend_from_slice(b"0\r\n\r\n");
        }
        (_, Some(b)) => {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            raw.extend_from_slice(req.as_bytes());
            raw.extend_from_slice(b.as_bytes());
        }
        (_, None) => {
            req.push_str("\r\n");
            raw.extend_from_slice(req.as_bytes());
        }
    }
    let mut conn = cl.connect();
    // A server may answer and stop reading before the whole request is in (413): the reply is
    // what counts.
    let sent = conn.send_raw(&raw);
    let reply = read_reply(&mut conn.stream, c.kind == Kind::HeadOnly, None);
    match reply {
        Ok((head, body)) => observe(c, head, body),
        Err(e) => Observation::failed(match sent {
            Err(se) => format!("no reply (sending: {})", tls_error(&se)),
            Ok(()) => format!("no reply: {}", tls_error(&e)),
        }),
    }
}

/// An I/O error as the comparison sees it: TLS alerts by name, everything else by kind.
fn tls_error(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref()
        && let Some(tls) = inner.downcast_ref::<rustls::Error>()
    {
        return format!("TLS: {tls}");
    }
    format!("{:?}", e.kind())
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one reply: the head, then the body (none for HEAD, chunked or by Content-Length). With
/// `first_line`, a chunked body is read only until its first complete line or until the deadline
/// (log streams never end).
fn read_reply<R: Read>(
    r: &mut R,
    head_only: bool,
    first_line: Option<Instant>,
) -> std::io::Result<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = |buf: &mut Vec<u8>| -> std::io::Result<()> {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let (head, mut rest) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf).map_err(std::io::Error::other)? {
            httparse::Status::Complete(n) => {
                let head = Head {
                    status: resp.code.unwrap_or(0),
                    headers: resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                break (head, buf[n..].to_vec());
            }
            httparse::Status::Partial => fill(&mut buf)?,
        }
    };
    if head_only {
        return Ok((head, Vec::new()));
    }
    if head.header("transfer-encoding") == Some("chunked") {
        let mut body = Vec::new();
        loop {
            // One chunk: size line, data, CRLF.
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                if first_line.is_some_and(|d| Instant::now() >= d) {
                    return Ok((head, body));
                }
                match fill(&mut rest) {
                    Ok(()) => continue,
                    Err(e) if first_line.is_some() && is_timeout(&e) => return Ok((head, body)),
                    Err(e) => return Err(e),
                }
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )
            .map_err(std::io::Error::other)?;
            if rest.len() < eol + 2 + size + 2 {
                match fill(&mut rest) {
                    Ok(()) => continue,
                    Err(e) if first_line.is_some() && is_timeout(&e) => return Ok((head, body)),
                    Err(e) => return Err(e),
                }
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest.drain(..eol + 2 + size + 2);
            if size == 0 || (first_line.is_some() && body.contains(&b'\n')) {
                return Ok((head, body));
            }
        }
    }
    match head.header("content-length").and_then(|v| v.parse().ok()) {
        Some(len) => {
            while rest.len() < len {
                fill(&mut rest)?;
            }
            rest.truncate(len);
        }
        // Neither length nor chunks: the body ends with the connection.
        None if !matches!(head.status, 100..=199 | 204 | 304) => loop {
            match fill(&mut rest) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        },
        None => rest.clear(),
    }
    Ok((head, rest))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A log stream: the request on one connection, the trigger on another a moment later, then the
/// head and the first event, if any, within 2.5 s.
fn stream_case(
    ids: &Identities,
    side: &Side,
    c: &Case,
    method: &'static str,
    path: &'static str,
) -> Observation {
    let mut conn = client(ids, side.addr, c.who).connect();
    if let Err(e) = conn.send_raw(
        format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            c.method, c.path
        )
        .as_bytes(),
    ) {
        return Observation::failed(format!("no reply: {}", tls_error(&e)));
    }
    let admin = client(ids, side.addr, Who::Admin);
    let trig = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        admin.request(method, path, None).status
    });
    let deadline = Instant::now() + Duration::from_millis(2500);
    conn.stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let reply = read_reply(&mut conn.stream, false, Some(deadline));
    let _ = trig.join();
    match reply {
        Ok((head, body)) => {
            let mut obs = observe(c, head, Vec::new());
            let line = String::from_utf8_lossy(&body);
            let line = line.lines().next().unwrap_or("");
            obs.body = if line.is_empty() {
                "no event within 2.5 s".to_string()
            } else {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => format!("first event: {}", normalize(&v, false)),
                    Err(_) => format!("first event (not JSON): {line}"),
                }
            };
            obs
        }
        Err(e) if is_timeout(&e) => Observation::failed("no reply head within 2.5 s".to_string()),
        Err(e) => Observation::failed(format!("no reply: {}", tls_error(&e))),
    }
}

fn observe(c: &Case, head: Head, body: Vec<u8>) -> Observation {
    let mut headers = BTreeMap::new();
    for name in COMPARED_HEADERS {
        if let Some(v) = head.header(name) {
            let v = if *name == "date" {
                "(present)".to_string()
            } else {
                v.to_string()
            };
            headers.insert(name.to_string(), v);
        }
    }
    let ctype = head.header("content-type").unwrap_or("");
    let json: Option<Value> = if ctype.starts_with("application/json") {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let message = json
        .as_ref()
        .filter(|_| head.status >= 300)
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let body = if c.kind == Kind::Metrics && ctype.starts_with("text/plain") {
        metric_families(&String::from_utf8_lossy(&body))
    } else if json.is_some() && message.is_some() {
        // Error replies are compared byte for byte: clients compare the text exactly, and the
        // escaping of the JSON string (Go's encoder: `\u003c`, `\b`) is part of it.
        format!("raw: {}", String::from_utf8_lossy(&body))
    } else if let Some(v) = &json {
        let text = String::from_utf8_lossy(&body);
        let mut n = normalize(v, c.unordered);
        if !text.ends_with('\n') && !text.ends_with("\n}") {
            n.push_str(" (no final newline)");
        }
        n
    } else if body.is_empty() {
        String::new()
    } else if ctype.starts_with("text/") || ctype.is_empty() {
        format!("text: {}", String::from_utf8_lossy(&body))
    } else {
        format!("{} bytes of {ctype}", body.len())
    };
    Observation {
        status: head.status,
        message,
        headers,
        body,
        json,
    }
}

/// Metric families (name and type), one `name type` per line, sorted; what differs between the
/// servers beyond these is listed in docs/operations.md, not compared here.
fn metric_families(text: &str) -> String {
    let set: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_string)
        .collect();
    format!(
        "families: {}",
        set.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Fields whose values differ from server to server and run to run: compared by type (and
/// base64 length), not by value.
const VOLATILE: &[&str] = &[
    "created_at",
    "time",
    "plaintext",
    "ciphertext",
    "hmac",
    "version",
    "commit",
    "uptime",
    "mem_heap_used",
    "mem_stack_used",
    "ip",
];

/// A JSON value as compared: object keys sorted, volatile values replaced by their type (base64
/// by its decoded length), `keystore_latency` by its scale (the Go server sends milliseconds,
/// kes nanoseconds), arrays sorted when `unordered`.
fn normalize(v: &Value, unordered: bool) -> String {
    fn walk(v: &Value, key: Option<&str>, unordered: bool) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), walk(v, Some(k), unordered));
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut items: Vec<Value> =
                    items.iter().map(|i| walk(i, None, unordered)).collect();
                if unordered {
                    items.sort_by_key(|i| i.to_string());
                }
                Value::Array(items)
            }
            Value::Number(n) if key == Some("keystore_latency") => {
                let n = n.as_u64().unwrap_or(0);
                json!(if n < 100 {
                    "<integer below 100>"
                } else {
                    "<integer of 100 or more>"
                })
            }
            _ if key.is_some_and(|k| VOLATILE.contains(&k)) => match v {
                Value::String(s) => match B64.decode(s) {
                    Ok(b) if s.len() >= 4 && s.len() % 4 == 0 => {
                        json!(format!("<base64 of {} bytes>", b.len()))
                    }
                    _ => json!("<string>"),
                },
                Value::Number(_) => json!("<number>"),
                other => json!(format!("<{}>", type_name(other))),
            },
            other => other.clone(),
        }
    }
    walk(v, None, unordered).to_string()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// The test

/// Which route of the API a case exercises (for the coverage check).
fn route_of(path: &str, routes: &[(String, String)]) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    routes
        .iter()
        .filter(|(_, p)| {
            if p.ends_with('/') {
                path.starts_with(p.as_str())
            } else {
                path == p
            }
        })
        .max_by_key(|(_, p)| p.len())
        .map(|(_, p)| p.clone())
}

#[test]
fn peer_differential_every_route_against_the_go_server() {
    support::peers();
    let started = Instant::now();
    let ids = Identities::new();
    let dir = TempDir::new("differential");
    ids.ca.server().write(dir.path(), "server");
    let mut kes = Vec::new();
    let mut go = Vec::new();
    for strict in [false, true] {
        let tag = if strict { "-strict" } else { "" };
        let (kes_keys, go_keys) = (
            dir.join(&format!("kes-keys{tag}")),
            dir.join(&format!("go-keys{tag}")),
        );
        write_corrupt_key(&kes_keys);
        write_corrupt_key(&go_keys);
        let (kes_config, go_config) = (
            dir.join(&format!("kes{tag}.yaml")),
            dir.join(&format!("go{tag}.yaml")),
        );
        std::fs::write(&kes_config, config(&ids, dir.path(), &kes_keys, strict)).unwrap();
        std::fs::write(&go_config, config(&ids, dir.path(), &go_keys, strict)).unwrap();
        kes.push(Kes::start(&kes_config));
        go.push(
            GoKes::start_config(&go_config)
                .unwrap_or_else(|out| panic!("kes-go did not start:\n{out}")),
        );
    }

    let mut sides = [
        Side {
            addr: go[0].addr(),
            strict_addr: go[1].addr(),
            saved: Saved::new(),
        },
        Side {
            addr: kes[0].addr,
            strict_addr: kes[1].addr,
            saved: Saved::new(),
        },
    ];
    let cases = cases(&ids);
    let mut seen = BTreeSet::new();
    for c in &cases {
        assert!(seen.insert(c.id.as_str()), "case id {} twice", c.id);
    }

    // Run every case against both, in order.
    let mut results: Vec<(&Case, Observation, Observation)> = Vec::new();
    for c in &cases {
        let mut obs = Vec::new();
        for side in sides.iter_mut() {
            let o = run_case(&ids, side, c);
            if let Some(j) = &o.json {
                side.saved.insert(c.id.clone(), j.clone());
            }
            obs.push(o);
        }
        let mut kes_obs = obs.pop().unwrap();
        let go_obs = obs.pop().unwrap();
        // Metrics: kes has every family of the Go server, with its type (and families of its
        // own, which docs/operations.md lists).
        if c.kind == Kind::Metrics
            && let (Some(g), Some(k)) = (
                go_obs.body.strip_prefix("families: "),
                kes_obs.body.strip_prefix("families: "),
            )
        {
            let kes_families: BTreeSet<&str> = k.split(", ").collect();
            if g.split(", ").all(|f| kes_families.contains(f)) {
                kes_obs.body = go_obs.body.clone();
            }
        }
        results.push((c, go_obs, kes_obs));
    }
    let elapsed = started.elapsed();

    // Every route of the Go server's table (and the legacy bulk decrypt) is exercised.
    let go_api = results
        .iter()
        .find(|(c, _, _)| c.id == "api.admin")
        .and_then(|(_, g, _)| g.json.clone())
        .expect("the Go server's /v1/api");
    let mut routes: Vec<(String, String)> = go_api
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(routes.len(), 22, "the Go server's route table: {go_api}");
    routes.push(("PUT".into(), "/v1/key/bulk/decrypt/".into()));
    let mut covered: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (c, _, _) in &results {
        if let Some(route) = route_of(&c.path, &routes) {
            let e = covered.entry(route.clone()).or_default();
            e.0 += 1;
            let method = &routes.iter().find(|(_, p)| *p == route).unwrap().0;
            if c.method == method || (method == "PUT" && c.method == "POST") {
                e.1 += 1;
            }
        }
    }
    let uncovered: Vec<&String> = routes
        .iter()
        .map(|(_, p)| p)
        .filter(|p| covered.get(*p).is_none_or(|(_, ok)| *ok == 0))
        .collect();
    assert!(uncovered.is_empty(), "routes without a case: {uncovered:?}");

    // Compare, and explain every difference by the allow-list.
    let allowed = allow_list();
    let mut used: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut used_patterns: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut unexplained = Vec::new();
    let mut differing_cases = 0;
    let mut report = String::new();
    for (c, g, k) in &results {
        let (ga, ka) = (g.aspects(), k.aspects());
        let diffs: Vec<&String> = ga.keys().filter(|a| ga[*a] != ka[*a]).collect();
        if diffs.is_empty() {
            continue;
        }
        differing_cases += 1;
        for aspect in diffs {
            let entry = allowed.iter().enumerate().find(|(_, a)| {
                a.differs.contains(aspect)
                    && a.cases.iter().any(|p| matches_case(p, &c.id))
                    && a.go_status.is_none_or(|s| s == g.status)
                    && a.kes_status.is_none_or(|s| s == k.status)
            });
            let line = format!(
                "{} {} {} ({:?}) {aspect}:\n    kes-go: {}\n    kes:    {}\n",
                c.id, c.method, c.path, c.who, ga[aspect], ka[aspect]
            );
            match entry {
                Some((i, a)) => {
                    *used.entry((i, aspect.clone())).or_default() += 1;
                    for p in a.cases.iter().filter(|p| matches_case(p, &c.id)) {
                        used_patterns.insert((i, p.clone()));
                    }
                    report.push_str(&format!("[allowed: {}] {line}", a.id));
                }
                None => unexplained.push(line),
            }
        }
    }
    let mut stale = Vec::new();
    for (i, a) in allowed.iter().enumerate() {
        for d in &a.differs {
            if !used.contains_key(&(i, d.clone())) {
                stale.push(format!("{}: {d} no longer differs in {:?}", a.id, a.cases));
            }
        }
        for p in &a.cases {
            if !used_patterns.contains(&(i, p.clone())) {
                stale.push(format!(
                    "{}: case {p} shows no difference of this entry",
                    a.id
                ));
            }
        }
    }
    println!("{report}");
    println!(
        "{} cases over {} routes ({} with a case of the route's own method), {} differ (all \
         explained by {} allow-list entries), in {:.1} s",
        results.len(),
        covered.len(),
        covered.values().filter(|(_, ok)| *ok > 0).count(),
        differing_cases,
        allowed.len(),
        elapsed.as_secs_f64()
    );
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "differences not in tests/differential/allow.yaml:\n{}\nstale allow-list entries:\n{}",
        unexplained.join(""),
        stale.join("\n")
    );
    drop(go);
    drop(kes);
}

#[test]
fn normalize_keeps_shapes_and_drops_volatile_values() {
    let a = json!({"name":"k","created_at":"2025-01-01T00:00:00Z","plaintext":"AAAA","n":[2,1]});
    let b = json!({"plaintext":"BBBB","name":"k","created_at":"2026-01-01T00:00:00.5Z","n":[2,1]});
    assert_eq!(normalize(&a, false), normalize(&b, false));
    assert_ne!(
        normalize(&a, false),
        normalize(
            &json!({"name":"k2","created_at":"x","plaintext":"AAAA","n":[2,1]}),
            false
        )
    );
    assert_ne!(
        normalize(&a, false),
        normalize(
            &json!({"name":"k","created_at":"x","plaintext":"AAAAAAAA","n":[2,1]}),
            false
        ),
        "base64 lengths count"
    );
    assert_eq!(
        normalize(&json!([{"a":2},{"a":1}]), true),
        normalize(&json!([{"a":1},{"a":2}]), true)
    );
    assert_ne!(
        normalize(&json!({"keystore_latency":1}), false),
        normalize(&json!({"keystore_latency":5000}), false)
    );
    assert!(matches_case("key.list.*", "key.list.star"));
    assert!(!matches_case("key.list", "key.list.star"));
}
