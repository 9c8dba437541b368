//! End-to-end tests of the KES API: the real `kes` binary on 127.0.0.1, real certificates of each
//! key type, real TLS. Every endpoint and every error pair of docs/protocol.md §3.

use crate::support;

use crate::support::client::Client;
use crate::support::pki::{self, Ca, Cert, KeyKind};
use crate::support::{Kes, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A running server with its certificates and a few clients.
struct Env {
    dir: TempDir,
    kes: Kes,
    ca: Ca,
    admin: Cert,
    /// Policy `app`: may create/generate/decrypt/encrypt/describe `app-*` keys; denied `*-internal`.
    app: Cert,
    /// A certificate with no policy.
    stranger: Cert,
}

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";
const ADMIN_IDENTITY: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

impl Env {
    fn start(tag: &str, extra: &str) -> Env {
        let dir = TempDir::new(tag);
        let ca = Ca::new("kes test CA");
        let server = ca.server();
        server.write(dir.path(), "server");
        let admin = pki::api_key_client(ADMIN_API_KEY);
        assert_eq!(admin.identity, ADMIN_IDENTITY);
        let app = pki::self_signed_client(KeyKind::EcdsaP256, "app");
        let stranger = pki::self_signed_client(KeyKind::EcdsaP256, "stranger");
        let config = format!(
            r#"
address: 127.0.0.1:0
admin:
  identity: {admin}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
policy:
  app:
    allow:
    - /v1/key/create/app-*
    - /v1/key/generate/app-*
    - /v1/key/decrypt/app-*
    - /v1/key/encrypt/app-*
    - /v1/key/describe/app-*
    - /v1/key/list/*
    - /v1/policy/*
    deny:
    - /v1/key/*/app-*-internal
    identities:
    - {app}
keystore:
  fs:
    path: {dir}/keys
{extra}
"#,
            admin = admin.identity,
            app = app.identity,
            dir = dir.path().display(),
        );
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        let kes = Kes::start(&dir.join("config.yaml"));
        Env {
            dir,
            kes,
            ca,
            admin,
            app,
            stranger,
        }
    }

    fn client(&self, cert: &Cert) -> Client {
        Client::new(self.kes.addr, &self.ca.cert.der, Some(cert))
    }

    fn admin(&self) -> Client {
        self.client(&self.admin)
    }

    fn keys_on_disk(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(self.dir.join("keys"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

fn unb64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

#[test]
fn key_lifecycle_and_crypto_round_trips() {
    let env = Env::start("lifecycle", "");
    let admin = env.admin();

    // create (PUT and POST), describe, list
    assert_eq!(admin.put("/v1/key/create/my-key", "").status, 200);
    assert_eq!(admin.post("/v1/key/create/my-key-2", "").status, 200);
    admin
        .put("/v1/key/create/my-key", "")
        .assert_error(400, "key already exists");
    let d = admin.get("/v1/key/describe/my-key");
    assert_eq!(d.status, 200);
    let d = d.json();
    assert_eq!(d["name"], "my-key");
    assert!(d["algorithm"] == "AES256" || d["algorithm"] == "ChaCha20");
    assert_eq!(d["created_by"], ADMIN_IDENTITY);
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));

    for path in [
        "/v1/key/list/",
        "/v1/key/list",
        "/v1/key/list/*",
        "/v1/key/list/my*",
        "/v1/key/list/my-key",
    ] {
        let l = admin.get(path);
        assert_eq!(l.status, 200, "{path}");
        assert_eq!(l.json()["names"], json!(["my-key", "my-key-2"]), "{path}");
        assert!(l.json().get("continue_at").is_none());
    }
    assert_eq!(admin.get("/v1/key/list/zzz").json()["names"], json!([]));

    // generate → decrypt, with and without context
    for ctx in [
        None,
        Some(b"{}".as_slice()),
        Some(br#"{"MinIO admin API":"ServerInfoHandler"}"#.as_slice()),
    ] {
        let body = match ctx {
            Some(c) => json!({ "context": b64(c) }).to_string(),
            None => String::new(),
        };
        let g = admin.post("/v1/key/generate/my-key", &body);
        assert_eq!(g.status, 200, "{}", g.text());
        let g = g.json();
        let plaintext = unb64(&g["plaintext"]);
        let ciphertext = unb64(&g["ciphertext"]);
        assert_eq!(plaintext.len(), 32);
        assert_eq!(
            ciphertext.len(),
            76,
            "current ciphertext layout: 32 + 16 tag + 16 iv + 12 nonce"
        );
        let mut req = json!({ "ciphertext": b64(&ciphertext) });
        if let Some(c) = ctx {
            req["context"] = json!(b64(c));
        }
        let p = admin.post("/v1/key/decrypt/my-key", &req.to_string());
        assert_eq!(p.status, 200, "{}", p.text());
        assert_eq!(unb64(&p.json()["plaintext"]), plaintext);
        // wrong context
        let req = json!({ "ciphertext": b64(&ciphertext), "context": b64(b"other") });
        admin
            .post("/v1/key/decrypt/my-key", &req.to_string())
            .assert_error(400, "decryption failed: ciphertext is not authentic");
        // wrong key
        let req = json!({ "ciphertext": b64(&ciphertext), "context": ctx.map(b64) });
        admin
            .post("/v1/key/decrypt/my-key-2", &req.to_string())
            .assert_error(400, "decryption failed: ciphertext is not authentic");
    }

    // encrypt → decrypt of arbitrary plaintext sizes
    for size in [0usize, 1, 31, 32, 1000, 100_000] {
        let msg: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let e = admin.put(
            "/v1/key/encrypt/my-key",
            &json!({ "plaintext": b64(&msg), "context": b64(b"ctx") }).to_string(),
        );
        assert_eq!(e.status, 200);
        let ct = unb64(&e.json()["ciphertext"]);
        assert_eq!(ct.len(), size + 44);
        let d = admin.put(
            "/v1/key/decrypt/my-key",
            &json!({ "ciphertext": b64(&ct), "context": b64(b"ctx") }).to_string(),
        );
        assert_eq!(unb64(&d.json()["plaintext"]), msg);
    }

    // hmac: deterministic per key, different across keys
    let h1 = admin
        .put(
            "/v1/key/hmac/my-key",
            &json!({ "message": b64(b"hello") }).to_string(),
        )
        .json();
    let h2 = admin
        .put(
            "/v1/key/hmac/my-key",
            &json!({ "message": b64(b"hello") }).to_string(),
        )
        .json();
    let h3 = admin
        .put(
            "/v1/key/hmac/my-key-2",
            &json!({ "message": b64(b"hello") }).to_string(),
        )
        .json();
    assert_eq!(unb64(&h1["hmac"]).len(), 32);
    assert_eq!(h1, h2);
    assert_ne!(h1, h3);

    // delete
    assert_eq!(
        admin
            .request("DELETE", "/v1/key/delete/my-key", None)
            .status,
        200
    );
    admin
        .request("DELETE", "/v1/key/delete/my-key", None)
        .assert_error(404, "key does not exist");
    admin
        .get("/v1/key/describe/my-key")
        .assert_error(404, "key does not exist");
    admin
        .post("/v1/key/generate/my-key", "")
        .assert_error(404, "key does not exist");
    assert_eq!(
        admin.get("/v1/key/list/").json()["names"],
        json!(["my-key-2"])
    );
}

#[test]
fn import_accepts_every_body_shape() {
    let env = Env::start("import", "");
    let admin = env.admin();
    let key = [7u8; 32];
    for (name, body, alg) in [
        (
            "imp-aes",
            json!({"key": b64(&key), "cipher": "AES256"}),
            "AES256",
        ),
        (
            "imp-aes-alias",
            json!({"key": b64(&key), "cipher": "AES256-GCM_SHA256"}),
            "AES256",
        ),
        (
            "imp-chacha",
            json!({"key": b64(&key), "cipher": "ChaCha20"}),
            "ChaCha20",
        ),
        (
            "imp-chacha-alias",
            json!({"key": b64(&key), "cipher": "XCHACHA20-POLY1305"}),
            "ChaCha20",
        ),
        (
            "imp-legacy",
            json!({"bytes": b64(&key), "algorithm": "AES256-GCM_SHA256"}),
            "AES256",
        ),
        (
            "imp-legacy-empty-alg",
            json!({"bytes": b64(&key), "algorithm": ""}),
            "AES256",
        ),
        ("imp-oldest", json!({"bytes": b64(&key)}), "AES256"),
    ] {
        let r = admin.put(&format!("/v1/key/import/{name}"), &body.to_string());
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(
            admin.get(&format!("/v1/key/describe/{name}")).json()["algorithm"],
            alg,
            "{name}"
        );
    }
    // Same key material and algorithm → ciphertexts decrypt under either import.
    let ct = admin
        .put(
            "/v1/key/encrypt/imp-aes",
            &json!({"plaintext": b64(b"x")}).to_string(),
        )
        .json();
    let pt = admin.put(
        "/v1/key/decrypt/imp-legacy",
        &json!({"ciphertext": ct["ciphertext"]}).to_string(),
    );
    assert_eq!(unb64(&pt.json()["plaintext"]), b"x");

    admin
        .put(
            "/v1/key/import/imp-aes",
            &json!({"key": b64(&key), "cipher": "AES256"}).to_string(),
        )
        .assert_error(400, "key already exists");
    admin
        .put(
            "/v1/key/import/x1",
            &json!({"key": b64(&key), "cipher": "DES"}).to_string(),
        )
        .assert_error(406, "algorithm 'DES' is not supported");
    admin
        .put(
            "/v1/key/import/x2",
            &json!({"key": b64(&[1u8; 16]), "cipher": "AES256"}).to_string(),
        )
        .assert_error(406, "invalid key size for 'AES256'");
    admin
        .put("/v1/key/import/x3", "{not json")
        .assert_error(400, "invalid import key request body");
    admin
        .put(
            "/v1/key/import/x4",
            &json!({"key": "!!!", "cipher": "AES256"}).to_string(),
        )
        .assert_error(400, "invalid import key request body");
    // No body is a bad body; a body without a key or cipher has no cipher (as the Go server).
    for body in ["", " \r\n"] {
        admin
            .put("/v1/key/import/x5", body)
            .assert_error(400, "invalid import key request body");
    }
    for body in [
        "{}",
        "null",
        r#"{"algorithm":"ChaCha20"}"#,
        r#"{"bytes":null}"#,
    ] {
        admin
            .put("/v1/key/import/x6", body)
            .assert_error(406, "algorithm '' is not supported");
    }
    assert!(env.keys_on_disk().iter().all(|(n, _)| !n.starts_with('x')));
}

#[test]
fn every_client_key_type_is_accepted_over_tls12_and_tls13() {
    let env = Env::start("keytypes", "");
    assert_eq!(env.admin().put("/v1/key/create/app-k", "").status, 200);
    for kind in [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::Rsa2048,
        KeyKind::Ed25519,
    ] {
        let cert = pki::self_signed_client(kind, "client");
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let c = Client::with_versions(
                env.kes.addr,
                &env.ca.cert.der,
                Some((vec![cert.der.clone()], cert.key())),
                versions,
            );
            let r = c.get("/v1/identity/self/describe");
            // Not in a policy: the identity is recognised, but it has no policy.
            r.assert_error(404, "identity does not exist");
            let r = c.post("/v1/key/generate/app-k", "");
            r.assert_error(403, "not authorized: insufficient permissions");
        }
    }
    // The admin's API-key certificate over both versions, and the app policy's ECDSA certificate.
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let c = Client::with_versions(
            env.kes.addr,
            &env.ca.cert.der,
            Some((vec![env.admin.der.clone()], env.admin.key())),
            versions,
        );
        let r = c.get("/v1/identity/self/describe").json();
        assert_eq!(r["identity"], ADMIN_IDENTITY);
        assert_eq!(r["admin"], true);
        let c = Client::with_versions(
            env.kes.addr,
            &env.ca.cert.der,
            Some((vec![env.app.der.clone()], env.app.key())),
            versions,
        );
        assert_eq!(c.post("/v1/key/generate/app-k", "").status, 200);
        let me = c.get("/v1/identity/self/describe").json();
        assert_eq!(me["identity"], env.app.identity);
        // The shape the Go SDK decodes: the policy name, its rules beside it.
        assert_eq!(me["policy"], "app");
        assert!(me["allow"].is_object());
    }
}

#[test]
fn policies_allow_deny_and_segment_wildcards() {
    let env = Env::start("policy", "");
    let admin = env.admin();
    let app = env.client(&env.app);
    let stranger = env.client(&env.stranger);
    assert_eq!(app.put("/v1/key/create/app-1", "").status, 200);
    // Denied by the segment wildcard of `/v1/key/*/app-*-internal`.
    app.put("/v1/key/create/app-x-internal", "")
        .assert_error(403, "not authorized: insufficient permissions");
    app.put("/v1/key/create/other", "")
        .assert_error(403, "not authorized: insufficient permissions");
    app.request("DELETE", "/v1/key/delete/app-1", None)
        .assert_error(403, "not authorized: insufficient permissions");
    stranger
        .put("/v1/key/create/app-2", "")
        .assert_error(403, "not authorized: insufficient permissions");
    stranger
        .get("/v1/key/list/")
        .assert_error(403, "not authorized: insufficient permissions");
    let g = app.post("/v1/key/generate/app-1", "").json();
    let d = app.post(
        "/v1/key/decrypt/app-1",
        &json!({"ciphertext": g["ciphertext"]}).to_string(),
    );
    assert_eq!(d.json()["plaintext"], g["plaintext"]);
    // The admin creates the internal key; the app may still not use it.
    assert_eq!(admin.put("/v1/key/create/app-x-internal", "").status, 200);
    app.post("/v1/key/generate/app-x-internal", "")
        .assert_error(403, "not authorized: insufficient permissions");

    // policy and identity APIs
    let p = app.get("/v1/policy/read/app").json();
    assert_eq!(p["name"], "app");
    assert!(
        p["allow"]
            .as_object()
            .unwrap()
            .contains_key("/v1/key/create/app-*")
    );
    assert_eq!(p["deny"], json!({"/v1/key/*/app-*-internal": {}}));
    assert_eq!(p["created_by"], ADMIN_IDENTITY);
    let p = app.get("/v1/policy/describe/app").json();
    assert_eq!(p["name"], "app");
    assert_eq!(
        app.get("/v1/policy/list/").json(),
        json!({"names": ["app"], "continue_at": ""})
    );
    assert_eq!(app.get("/v1/policy/list/*").json()["names"], json!(["app"]));
    assert_eq!(app.get("/v1/policy/list/x*").json()["names"], json!([]));
    app.get("/v1/policy/read/nope")
        .assert_error(404, "policy does not exist");
    app.get("/v1/policy/describe/nope")
        .assert_error(404, "policy does not exist");
    let i = admin
        .get(&format!("/v1/identity/describe/{}", env.app.identity))
        .json();
    assert_eq!(i["policy"], "app");
    assert_eq!(i["created_by"], ADMIN_IDENTITY);
    let i = admin
        .get(&format!("/v1/identity/describe/{ADMIN_IDENTITY}"))
        .json();
    assert_eq!(i["admin"], true);
    admin
        .get(&format!("/v1/identity/describe/{}", env.stranger.identity))
        .assert_error(404, "identity does not exist");
    // The name rule applies to identities as to keys and policies.
    let long = "a".repeat(81);
    for bad in ["-x", "x-", "_", "a.b", long.as_str()] {
        admin
            .get(&format!("/v1/identity/describe/{bad}"))
            .assert_error(
                400,
                &format!("identity '{bad}' is empty, too long or contains invalid characters"),
            );
    }
    admin
        .get(&format!("/v1/identity/describe/{}", &long[..80]))
        .assert_error(404, "identity does not exist");
    let mut ids = vec![ADMIN_IDENTITY.to_string(), env.app.identity.clone()];
    ids.sort();
    assert_eq!(
        admin.get("/v1/identity/list/").json()["identities"],
        json!(ids)
    );
    stranger
        .get("/v1/identity/self/describe")
        .assert_error(404, "identity does not exist");
}

#[test]
fn error_pairs_and_bad_input_change_nothing() {
    let env = Env::start("errors", "");
    let admin = env.admin();
    assert_eq!(admin.put("/v1/key/create/k", "").status, 200);
    let before = env.keys_on_disk();

    // names
    let long = "a".repeat(81);
    for bad in ["..%2Fx", "-a", "a.b", "_", long.as_str(), "a%20b"] {
        let decoded = bad.replace("%2F", "/").replace("%20", " ");
        admin
            .put(&format!("/v1/key/create/{bad}"), "")
            .assert_error(
                400,
                &format!("key name '{decoded}' is empty, too long or contains invalid characters"),
            );
    }
    admin.put("/v1/key/create/", "").assert_error(
        400,
        "key name '' is empty, too long or contains invalid characters",
    );
    for (route, bad) in [
        ("key", "a*b"),
        ("key", "-x"),
        ("key", "-"),
        ("policy", "-*"),
        ("identity", "-a"),
    ] {
        admin.get(&format!("/v1/{route}/list/{bad}")).assert_error(
            400,
            &format!("listing pattern '{bad}' is empty, too long or is invalid"),
        );
    }

    // bodies
    admin
        .post("/v1/key/generate/k", "{")
        .assert_error(400, "invalid request body");
    admin
        .post("/v1/key/generate/k", r#"{"context":"***"}"#)
        .assert_error(400, "invalid request body");
    admin
        .post("/v1/key/decrypt/k", r#"{"ciphertext":5}"#)
        .assert_error(400, "invalid request body");
    admin
        .post("/v1/key/encrypt/k", "[]")
        .assert_error(400, "invalid request body");
    // Encrypt, decrypt and hmac need a JSON body; generate takes none, but not white space alone.
    for route in ["encrypt", "decrypt", "hmac"] {
        for body in ["", " ", "\r\n"] {
            admin
                .post(&format!("/v1/key/{route}/k"), body)
                .assert_error(400, "invalid request body");
        }
        assert_eq!(
            admin.post(&format!("/v1/key/{route}/k"), "{}").status,
            match route {
                "decrypt" => 400,
                _ => 200,
            }
        );
    }
    assert_eq!(admin.post("/v1/key/generate/k", "").status, 200);
    admin
        .post("/v1/key/generate/k", " ")
        .assert_error(400, "invalid request body");
    for n in 0..=28usize {
        let ct = vec![0x42u8; n];
        admin
            .post(
                "/v1/key/decrypt/k",
                &json!({"ciphertext": b64(&ct)}).to_string(),
            )
            .assert_error(400, "decryption failed: ciphertext is not authentic");
    }
    admin
        .post(
            "/v1/key/decrypt/k",
            &json!({"ciphertext": b64(&[0x95; 80])}).to_string(),
        )
        .assert_error(400, "decryption failed: ciphertext is not authentic");
    admin
        .post(
            "/v1/key/decrypt/k",
            &json!({"ciphertext": b64(b"{\"aead\":\"x\"}")}).to_string(),
        )
        .assert_error(400, "decryption failed: ciphertext is not authentic");
    admin
        .post("/v1/key/generate/missing", "")
        .assert_error(404, "key does not exist");
    admin
        .post("/v1/key/hmac/missing", &json!({"message": ""}).to_string())
        .assert_error(404, "key does not exist");

    // methods and unknown paths
    let r = admin.get("/v1/key/create/k2");
    r.assert_error(405, "received method 'GET' expected 'PUT'");
    assert_eq!(r.header("accept"), Some("PUT"));
    admin
        .put("/v1/key/describe/k", "")
        .assert_error(405, "received method 'PUT' expected 'GET'");
    let r = admin.get("/v1/nope");
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found\n"));
    // Every reply has a Date (RFC 9110 §6.6.1), as the Go server's.
    let date = r.header("date").expect("a Date header");
    assert!(date.len() == 29 && date.ends_with(" GMT"), "{date}");

    // oversized body (3 MB) → 413, connection closed, nothing stored
    let big = format!("{{\"plaintext\":\"{}\"}}", "A".repeat(3_000_000));
    let r = admin.post("/v1/key/encrypt/k", &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.message(), "request body too large");

    // unauthorized
    env.client(&env.stranger)
        .post("/v1/key/generate/k", "")
        .assert_error(403, "not authorized: insufficient permissions");

    assert_eq!(
        env.keys_on_disk(),
        before,
        "bad requests must not change the keystore"
    );
    // /version needs no policy
    let v = env.client(&env.stranger).get("/version").json();
    assert!(v["version"].is_string() && v["commit"].is_string());
}

#[test]
fn hmac_on_a_legacy_key_and_legacy_stored_keys() {
    let env = Env::start("legacy", "");
    // A key file in the oldest Go layout: {"bytes":…} (no algorithm, no HMAC key).
    let key = [3u8; 32];
    std::fs::write(
        env.dir.join("keys/old-key"),
        json!({"bytes": b64(&key)}).to_string(),
    )
    .unwrap();
    let admin = env.admin();
    let d = admin.get("/v1/key/describe/old-key").json();
    assert_eq!(d["algorithm"], "AES256");
    assert_eq!(d["created_at"], "0001-01-01T00:00:00Z");
    assert!(d.get("created_by").is_none());
    admin
        .put(
            "/v1/key/hmac/old-key",
            &json!({"message": b64(b"m")}).to_string(),
        )
        .assert_error(409, "key does not support HMAC");
    let g = admin.post("/v1/key/generate/old-key", "").json();
    let p = admin
        .post(
            "/v1/key/decrypt/old-key",
            &json!({"ciphertext": g["ciphertext"]}).to_string(),
        )
        .json();
    assert_eq!(p["plaintext"], g["plaintext"]);
}

#[test]
fn minio_startup_and_hot_path_with_chunked_bodies() {
    let env = Env::start("minio", "");
    let mut conn = env.admin().connect();
    let ctx = b64(br#"{"MinIO admin API":"ServerInfoHandler"}"#);
    // 1. generate on the default key → exactly 404 key does not exist
    let r = conn
        .request_chunked(
            "POST",
            "/v1/key/generate/minio-default-key",
            &[&format!("{{\"context\":\"{ctx}\"}}")],
        )
        .unwrap();
    r.assert_error(404, "key does not exist");
    // 2. create
    let r = conn
        .request_chunked("POST", "/v1/key/create/minio-default-key", &[])
        .unwrap();
    assert_eq!(r.status, 200);
    // 3. generate with context {} (split over several chunks, on the same keep-alive connection)
    let r = conn
        .request_chunked(
            "POST",
            "/v1/key/generate/minio-default-key",
            &["{\"cont", "ext\":\"e30=\"", "}"],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json();
    // 4. decrypt
    let body = json!({"ciphertext": g["ciphertext"], "context": "e30="}).to_string();
    let r = conn
        .request_chunked(
            "POST",
            "/v1/key/decrypt/minio-default-key",
            &[&body[..10], &body[10..]],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["plaintext"], g["plaintext"]);
    // 5. a second create is tolerated by MinIO as "key already exists"
    conn.request_chunked("POST", "/v1/key/create/minio-default-key", &[])
        .unwrap()
        .assert_error(400, "key already exists");
    // legacy bulk decrypt (kes-go v0.1.x)
    let items = json!([{"ciphertext": g["ciphertext"], "context": "e30="}, {"ciphertext": g["ciphertext"], "context": "e30="}]).to_string();
    let r = conn
        .request(
            "POST",
            "/v1/key/bulk/decrypt/minio-default-key",
            Some(&items),
        )
        .unwrap();
    assert_eq!(
        r.json(),
        json!([{"plaintext": g["plaintext"]}, {"plaintext": g["plaintext"]}])
    );
}

/// One policy decision for every spelling that reaches a handler (issue 15, findings 1 and 2):
/// the legacy bulk decrypt is authorised as decrypt too, so a deny rule written for decrypt stops
/// it, while a policy that allows only the bulk route (older MinIO) keeps working; a list route
/// without its trailing slash is decided as the route with it.
#[test]
fn one_policy_decision_for_every_spelling_of_a_request() {
    let reader = pki::self_signed_client(KeyKind::EcdsaP256, "reader");
    let bulk_only = pki::self_signed_client(KeyKind::EcdsaP256, "bulk-only");
    let no_lists = pki::self_signed_client(KeyKind::EcdsaP256, "no-lists");
    let lists = pki::self_signed_client(KeyKind::EcdsaP256, "lists");
    let rest = format!(
        "policy:\n  reader:\n    allow:\n    - /v1/key/*\n    deny:\n    - /v1/key/decrypt/secret-*\n    - /v1/key/*/secret-b\n    identities:\n    - {}\n  bulk-only:\n    allow:\n    - /v1/key/bulk/decrypt/*\n    identities:\n    - {}\n  no-lists:\n    allow:\n    - /v1/*\n    deny:\n    - /v1/key/list/*\n    - /v1/policy/list/*\n    - /v1/identity/list/*\n    identities:\n    - {}\n  lists:\n    allow:\n    - /v1/key/list/*\n    - /v1/policy/list/*\n    - /v1/identity/list/*\n    identities:\n    - {}\nkeystore:\n  fs:\n    path: {{dir}}/keys\n",
        reader.identity, bulk_only.identity, no_lists.identity, lists.identity
    );
    let srv = support::Served::start("spellings", &rest);
    let admin = srv.client();
    let client = |cert: &Cert| Client::new(srv.kes.addr, &srv.ca.cert.der, Some(cert));
    let (reader, bulk_only, no_lists, lists) = (
        client(&reader),
        client(&bulk_only),
        client(&no_lists),
        client(&lists),
    );
    const DENIED: &str = "not authorized: insufficient permissions";
    let mut items = std::collections::BTreeMap::new();
    for name in ["secret-a", "secret-b", "open"] {
        assert_eq!(admin.put(&format!("/v1/key/create/{name}"), "").status, 200);
        let g = admin.post(&format!("/v1/key/generate/{name}"), "").json();
        let bulk = json!([{ "ciphertext": g["ciphertext"] }]).to_string();
        let one = json!({ "ciphertext": g["ciphertext"] }).to_string();
        items.insert(name, (bulk, one, g["plaintext"].clone()));
    }
    for name in ["secret-a", "secret-b"] {
        let (bulk, one, _) = &items[name];
        reader
            .post(&format!("/v1/key/decrypt/{name}"), one)
            .assert_error(403, DENIED);
        // Finding 1: the bulk route returned the plaintext here.
        reader
            .post(&format!("/v1/key/bulk/decrypt/{name}"), bulk)
            .assert_error(403, DENIED);
    }
    let (bulk, one, plaintext) = &items["open"];
    assert_eq!(
        reader.post("/v1/key/decrypt/open", one).json()["plaintext"],
        *plaintext
    );
    assert_eq!(
        reader.post("/v1/key/bulk/decrypt/open", bulk).json(),
        json!([{ "plaintext": plaintext }])
    );
    // A policy written for the bulk route alone keeps working, and gives nothing else.
    assert_eq!(
        bulk_only.post("/v1/key/bulk/decrypt/open", bulk).json(),
        json!([{ "plaintext": plaintext }])
    );
    bulk_only
        .post("/v1/key/decrypt/open", one)
        .assert_error(403, DENIED);
    // Finding 2: without the trailing slash, the lists went past `deny .../list/*`.
    for route in ["/v1/key/list", "/v1/policy/list", "/v1/identity/list"] {
        for path in [route.to_string(), format!("{route}/"), format!("{route}/*")] {
            no_lists.get(&path).assert_error(403, DENIED);
            let r = lists.get(&path);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
        }
    }
    assert_eq!(
        lists.get("/v1/key/list").json()["names"],
        json!(["open", "secret-a", "secret-b"])
    );
}

/// A plain HTTP request on the TLS port gets the Go server's plain 400 (not a TLS alert that
/// an HTTP client cannot show), and the connection is closed; TLS clients are not affected.
#[test]
fn plain_http_on_the_tls_port_is_answered_400() {
    use std::io::{Read, Write};
    let env = Env::start("plainhttp", "");
    for request in [
        "GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        "HEAD / HTTP/1.0\r\n\r\n",
    ] {
        let mut tcp = std::net::TcpStream::connect(env.kes.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            "{request:?}"
        );
    }
    // Anything else that is not TLS still gets a TLS alert.
    let mut tcp = std::net::TcpStream::connect(env.kes.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"HELLO THERE\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    assert_eq!(reply.first(), Some(&0x15), "a TLS alert record: {reply:?}");
    assert_eq!(env.admin().get("/version").status, 200);
}

#[test]
fn framing_attacks_and_garbage_are_refused() {
    let env = Env::start("framing", "");
    let admin = env.admin();
    assert_eq!(admin.put("/v1/key/create/k", "").status, 200);
    // Content-Length together with Transfer-Encoding, and a duplicate Content-Length.
    for req in [
        "POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let mut c = admin.connect();
        c.send_raw(req.as_bytes()).unwrap();
        let r = c.read_reply().unwrap();
        assert_eq!(r.status, 400, "{req:?}");
        assert!(
            c.is_closed(),
            "connection must be closed after a framing error"
        );
    }
    // Random bytes on the TLS port: the server drops the connection and keeps serving.
    for seed in 0..20u64 {
        let mut tcp = std::net::TcpStream::connect(env.kes.addr).unwrap();
        let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        use std::io::{Read, Write};
        let _ = tcp.write_all(&junk);
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let start = Instant::now();
        loop {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "garbage connection must be closed quickly"
        );
    }
    assert_eq!(admin.post("/v1/key/generate/k", "").status, 200);
}

#[test]
fn slow_clients_do_not_starve_others() {
    let env = Env::start(
        "slow",
        "server:\n  header_timeout: 2s\n  handshake_timeout: 2s\n",
    );
    let admin = env.admin();
    assert_eq!(admin.put("/v1/key/create/k", "").status, 200);
    // A client that sends its headers one byte a second.
    let slow = {
        let client = admin.clone();
        std::thread::spawn(move || {
            let mut c = client.connect();
            let req = b"POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
            let start = Instant::now();
            for b in req {
                if c.send_raw(&[*b]).is_err() {
                    return (start.elapsed(), true);
                }
                std::thread::sleep(Duration::from_millis(1000));
            }
            (start.elapsed(), c.is_closed())
        })
    };
    // 50 stalled TCP connections that never finish a handshake.
    let stalled: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(env.kes.addr).unwrap())
        .collect();
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(admin.post("/v1/key/generate/k", "").status, 200);
    }
    let served = start.elapsed();
    println!(
        "20 requests served in {served:?} while 50 connections stalled and one client trickled bytes"
    );
    assert!(served < Duration::from_secs(5));
    let (elapsed, closed) = slow.join().unwrap();
    println!("slow client cut off after {elapsed:?}");
    assert!(closed, "the trickling client must be disconnected");
    assert!(
        elapsed < Duration::from_secs(10),
        "header timeout (2s) must end the slow request, took {elapsed:?}"
    );
    drop(stalled);
}

#[test]
fn skip_auth_makes_certificates_optional() {
    let env = Env::start("skipauth", "api:\n  /v1/status:\n    skip_auth: true\n");
    let anon = Client::new(env.kes.addr, &env.ca.cert.der, None);
    let s = anon.get("/v1/status");
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    for field in [
        "version",
        "os",
        "arch",
        "uptime",
        "num_cpu",
        "num_cpu_used",
        "mem_heap_used",
        "mem_stack_used",
    ] {
        assert!(s.get(field).is_some(), "missing {field}: {s}");
    }
    anon.get("/v1/key/list/")
        .assert_error(400, "tls: client certificate is required");
    anon.post("/v1/key/generate/x", "")
        .assert_error(400, "tls: client certificate is required");
    assert_eq!(env.admin().get("/v1/key/list/").status, 200);
}

#[test]
fn client_certificate_is_required_by_default() {
    let env = Env::start("certreq", "");
    let anon = Client::new(env.kes.addr, &env.ca.cert.der, None);
    let mut conn = anon.connect();
    let failed = conn.handshake().is_err() || conn.request("GET", "/version", None).is_err();
    assert!(
        failed,
        "a client without certificate must be refused at the TLS layer"
    );
}

#[test]
fn too_many_client_certificates() {
    let env = Env::start("toomany", "");
    let a = pki::self_signed_client(KeyKind::EcdsaP256, "a");
    let b = pki::self_signed_client(KeyKind::EcdsaP256, "b");
    let c = Client::with_chain(
        env.kes.addr,
        &env.ca.cert.der,
        Some((vec![a.der.clone(), b.der.clone()], a.key())),
    );
    c.get("/v1/key/list/")
        .assert_error(400, "tls: received more than one client certificate");
    // A CA certificate in the chain is not counted.
    let leaf = env.ca.client(KeyKind::EcdsaP256, "leaf");
    let c = Client::with_chain(
        env.kes.addr,
        &env.ca.cert.der,
        Some((vec![leaf.der.clone(), env.ca.cert.der.clone()], leaf.key())),
    );
    c.get("/v1/identity/self/describe")
        .assert_error(404, "identity does not exist");
}

#[test]
fn tls_auth_on_verifies_client_chains() {
    let dir_ca = TempDir::new("tlsauth-ca");
    // Written before start: Env writes its own CA; the client CA here is a separate one.
    let client_ca = Ca::new("client CA");
    std::fs::write(dir_ca.join("client-ca.pem"), &client_ca.cert.cert_pem).unwrap();
    // tls.auth needs tls.ca: build a config by hand.
    let dir = TempDir::new("tlsauth2");
    let server_ca = Ca::new("server CA");
    server_ca.server().write(dir.path(), "server");
    let good = client_ca.client(KeyKind::EcdsaP256, "good");
    let config = format!(
        "address: 127.0.0.1:0\nadmin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n  auth: on\n  ca: {ca}\nkeystore:\n  fs:\n    path: {d}/keys\n",
        good.identity,
        d = dir.path().display(),
        ca = dir_ca.join("client-ca.pem").display()
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let kes = Kes::start(&dir.join("config.yaml"));
    let ok = Client::new(kes.addr, &server_ca.cert.der, Some(&good));
    assert_eq!(ok.get("/v1/key/list/").status, 200);
    let self_signed = pki::self_signed_client(KeyKind::EcdsaP256, "bad");
    let bad = Client::new(kes.addr, &server_ca.cert.der, Some(&self_signed));
    let mut conn = bad.connect();
    assert!(conn.handshake().is_err() || conn.request("GET", "/v1/key/list/", None).is_err());
}

#[test]
fn predefined_keys_are_created_at_startup() {
    let env = Env::start(
        "keys",
        "keys:\n- name: startup-key-1\n- name: startup-key-2\n",
    );
    let names = env.admin().get("/v1/key/list/startup").json();
    assert_eq!(names["names"], json!(["startup-key-1", "startup-key-2"]));
    let d = env.admin().get("/v1/key/describe/startup-key-1").json();
    assert_eq!(d["created_by"], ADMIN_IDENTITY);
}

#[test]
fn api_table_version_and_sigterm() {
    let mut env = Env::start("apitable", "api:\n  /v1/key/generate:\n    timeout: 30s\n");
    let routes = env.admin().get("/v1/api").json();
    let routes = routes.as_array().unwrap();
    let generate = routes
        .iter()
        .find(|r| r["path"] == "/v1/key/generate/")
        .unwrap();
    assert_eq!(generate["method"], "PUT");
    assert_eq!(generate["max_body"], 1_000_000);
    assert_eq!(generate["timeout"], 30);
    assert!(routes.iter().any(|r| r["path"] == "/version"));
    env.kes.signal("TERM");
    assert_eq!(env.kes.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn dev_mode_serves_with_a_fresh_admin_api_key() {
    let kes = Kes::start_with(&["server", "--dev", "--addr", "127.0.0.1:0"], &[])
        .expect("dev server starts");
    let api_key = kes.dev_api_key.clone().expect("--dev prints an API key");
    let admin = pki::api_key_client(&api_key);
    // The dev certificate is self-signed and fresh: trust it by fetching it first.
    let der = fetch_server_certificate(kes.addr);
    let c = Client::new(kes.addr, &der, Some(&admin));
    assert_eq!(c.put("/v1/key/create/dev-key", "").status, 200);
    assert_eq!(c.post("/v1/key/generate/dev-key", "").status, 200);
    assert_eq!(c.get("/v1/identity/self/describe").json()["admin"], true);
}

/// Reads the server's leaf certificate with a verifier that accepts anything (for `--dev`).
fn fetch_server_certificate(
    addr: std::net::SocketAddr,
) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    #[derive(Debug)]
    struct Any;
    impl ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(std::sync::Arc::new(Any))
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            break;
        }
    }
    conn.peer_certificates().expect("server certificate")[0]
        .clone()
        .into_owned()
}

#[test]
fn config_errors_are_reported_with_context() {
    let dir = TempDir::new("badconfig");
    let ca = Ca::new("ca");
    ca.server().write(dir.path(), "server");
    let base = format!(
        "admin:\n  identity: {ADMIN_IDENTITY}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n",
        d = dir.path().display()
    );
    for (name, extra, expect) in [
        (
            "unknown",
            "keystore:\n  fs:\n    pth: /tmp/x\n",
            "unknown field 'pth' in 'keystore.fs': did you mean 'path'?",
        ),
        (
            "aws",
            "keystore:\n  aws:\n    secretsmanager:\n      endpoint: x\n",
            "not supported",
        ),
        (
            "envvar",
            "keystore:\n  fs:\n    path: ${KES_TEST_UNSET_VARIABLE_X}\n",
            "KES_TEST_UNSET_VARIABLE_X",
        ),
    ] {
        let path = dir.join(&format!("{name}.yaml"));
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let support::Run {
            code, stderr: err, ..
        } = support::kes_cmd(
            &[
                "server",
                "--config",
                path.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ],
            &[],
        );
        assert_ne!(code, 0, "{name} must fail");
        assert!(
            err.contains(expect),
            "{name}: stderr should mention {expect:?}: {err}"
        );
    }
}

#[test]
fn encrypted_server_key_with_tls_password() {
    let dir = TempDir::new("tlspassword");
    let ca = Ca::new("ca");
    let (cert, key) = ca.server().write(dir.path(), "server");
    // A legacy "Proc-Type: 4,ENCRYPTED" PEM key, as `openssl ec -aes256` writes it.
    let enc = dir.join("server-enc.key");
    let out = std::process::Command::new("openssl")
        .args([
            "ec",
            "-in",
            key.to_str().unwrap(),
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            enc.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&enc).unwrap();
    assert!(pem.contains("Proc-Type: 4,ENCRYPTED"), "{pem}");
    let admin = pki::api_key_client(ADMIN_API_KEY);
    let write = |password: &str| {
        let cfg = format!(
            "admin:\n  identity: {}\ntls:\n  key: {}\n  cert: {}\n  password: {password}\nkeystore:\n  fs:\n    path: {}/keys\n",
            admin.identity,
            enc.display(),
            cert.display(),
            dir.path().display()
        );
        std::fs::write(dir.join("config.yaml"), cfg).unwrap();
    };
    write("Wr0ngPassw0rd");
    let support::Run {
        code, stderr: err, ..
    } = support::kes_cmd(
        &[
            "server",
            "--config",
            dir.join("config.yaml").to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("password"), "{err}");
    assert!(
        !err.contains("Wr0ngPassw0rd"),
        "the password must not be echoed: {err}"
    );
    write("s3cret");
    let kes = Kes::start(&dir.join("config.yaml"));
    let c = Client::new(kes.addr, &ca.cert.der, Some(&admin));
    assert_eq!(c.put("/v1/key/create/k", "").status, 200);
}

#[test]
fn http10_keep_alive_is_acknowledged() {
    // `ab -k` and other HTTP/1.0 clients keep a connection open only when the reply says so.
    let env = Env::start("http10", "");
    let mut conn = env.admin().connect();
    for _ in 0..2 {
        conn.send_raw(b"GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = conn.read_reply().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // Without the header, HTTP/1.0 closes after the reply.
    conn.send_raw(b"GET /version HTTP/1.0\r\n\r\n").unwrap();
    let r = conn.read_reply().unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed());
}
