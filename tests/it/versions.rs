//! Key versions and rotation (issue 16, docs/key-versions.md) end to end: the real `kes` binary
//! over real TLS, several nodes sharing one fs keystore directory, the stored layout on disk
//! (§1), the wire protocol and its errors (§4), the cache window across nodes (§5), retirement
//! and destruction with their time guards (§6), deletion of rotated keys, the audit and error
//! logs, the `kes key` commands, and the peer programs (`peer_*`: MinIO's client libraries
//! kms-go v0.3.1 and the newest kms-go, and the Go server sharing the keystore).
//!
//! Time guards are passed by making versions look old on disk: the successor's stored
//! `created_at` (retire) and the marker's `retired_at` (destroy) are rewritten in place; the
//! server reads both from the keystore on each retire/destroy, never from its cache.

use crate::support;

use crate::support::client::{Client, Reply};
use crate::support::{ADMIN_API_KEY, Served, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NOT_AUTHENTIC: &str = "decryption failed: ciphertext is not authentic";
const INVALID_VERSION: &str = "invalid key version";
const UNKNOWN_VERSION: &str = "key version does not exist";
const RETIRED: &str = "key version is retired";

/// The MinIO-style context of the data keys made here (base64).
fn context(tag: &str) -> String {
    B64.encode(format!(r#"{{"bucket":"versions","object":"{tag}"}}"#))
}

/// The `keystore:` block of an fs keystore at `keys`, and `extra` config after it.
fn fs_config(keys: &Path, extra: &str) -> String {
    format!("keystore:\n  fs:\n    path: {}\n{extra}", keys.display())
}

/// A data key from generate: what decrypt must give back, and the version the reply named.
#[derive(Clone, Debug)]
struct Dek {
    plaintext: String,
    ciphertext: String,
    context: String,
    /// `version` of the reply (absent for a key never rotated, and for version 1).
    version: Option<String>,
    /// The reply's exact body.
    body: Vec<u8>,
}

#[track_caller]
fn generate(c: &Client, key: &str, context: &str) -> Dek {
    let r = c.post(
        &format!("/v1/key/generate/{key}"),
        &json!({ "context": context }).to_string(),
    );
    assert_eq!(r.status, 200, "generate {key}: {}", r.text());
    let v = r.json();
    Dek {
        plaintext: v["plaintext"].as_str().unwrap().to_string(),
        ciphertext: v["ciphertext"].as_str().unwrap().to_string(),
        context: context.to_string(),
        version: v.get("version").map(|v| v.as_str().unwrap().to_string()),
        body: r.body,
    }
}

/// Decrypts `dek`'s ciphertext, with `version` (a JSON value: a string, a number, null) when
/// given.
fn decrypt_as(c: &Client, key: &str, dek: &Dek, version: Option<Value>) -> Reply {
    let mut body = json!({ "ciphertext": dek.ciphertext, "context": dek.context });
    if let Some(v) = version {
        body["version"] = v;
    }
    c.post(&format!("/v1/key/decrypt/{key}"), &body.to_string())
}

fn decrypt(c: &Client, key: &str, dek: &Dek, version: Option<&str>) -> Reply {
    decrypt_as(c, key, dek, version.map(|v| json!(v)))
}

/// Asserts that `dek` decrypts to its plaintext (`version` given or not).
#[track_caller]
fn assert_decrypts(c: &Client, key: &str, dek: &Dek, version: Option<&str>) {
    let r = decrypt(c, key, dek, version);
    assert_eq!(
        r.status,
        200,
        "decrypt {key} (made by version {:?}) with version {version:?}: {}",
        dek.version,
        r.text()
    );
    assert_eq!(r.json()["plaintext"], dek.plaintext.as_str());
}

#[track_caller]
fn rotate(c: &Client, key: &str) -> u32 {
    let r = c.put(&format!("/v1/key/rotate/{key}"), "");
    assert_eq!(r.status, 200, "rotate {key}: {}", r.text());
    // The reply is exactly {"version":"<n>"}.
    let v = r.json();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["version"]
    );
    v["version"].as_str().unwrap().parse().unwrap()
}

/// retire, restore or destroy of version `n`.
fn step(c: &Client, what: &str, key: &str, n: &str) -> Reply {
    c.put(
        &format!("/v1/key/{what}/{key}"),
        &json!({ "version": n }).to_string(),
    )
}

#[track_caller]
fn describe(c: &Client, key: &str) -> Value {
    let r = c.get(&format!("/v1/key/describe/{key}"));
    assert_eq!(r.status, 200, "describe {key}: {}", r.text());
    r.json()
}

/// The one ring directory of `name` in the fs keystore at `keys`
/// (`.kes-versions/<name>/<ring>`).
#[track_caller]
fn ring_dir(keys: &Path, name: &str) -> PathBuf {
    let dir = keys.join(".kes-versions").join(name);
    let rings: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rings.len(), 1, "one ring for {name}: {rings:?}");
    let ring = rings[0].file_name().unwrap().to_str().unwrap();
    assert!(
        ring.len() == 32 && ring.bytes().all(|b| b.is_ascii_hexdigit()),
        "the ring is named by version 1's key-id: {ring}"
    );
    rings[0].clone()
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Rewrites a file in place (same inode, so its mode stays 0600) with `f` of its contents.
#[track_caller]
fn rewrite(file: &Path, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(file), 0o600, "{}", file.display());
    let new = f(std::fs::read(file).unwrap());
    std::fs::write(file, new).unwrap();
    assert_eq!(mode(file), 0o600, "{}", file.display());
}

/// Makes the stored version `file` look created `by` earlier (its §6.1 `created_at`).
#[track_caller]
fn age_version(file: &Path, by: time::Duration) {
    rewrite(file, |value| {
        let mut v = kes::crypto::KeyVersion::decode(&value).expect("a stored key version");
        v.created_at = Some(v.created_at.expect("created_at") - by);
        v.encode()
    });
}

/// Makes the retirement marker `file` look written `by` earlier (its `retired_at`).
#[track_caller]
fn age_marker(file: &Path, by: time::Duration) {
    rewrite(file, |value| {
        let mut m: Value = serde_json::from_slice(&value).expect("a JSON marker");
        assert_eq!(
            m.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["retired_at", "retired_by"],
            "{m}"
        );
        let at = m["retired_at"].as_i64().unwrap();
        m["retired_at"] = json!(at - by.whole_seconds());
        serde_json::to_vec(&m).unwrap()
    });
}

/// A counter of `/v1/metrics?all`.
fn counter(c: &Client, family: &str) -> f64 {
    let r = c.get("/v1/metrics?all");
    assert_eq!(r.status, 200);
    let m = support::prom::parse(&r.text()).unwrap();
    m.get(family)
        .unwrap_or_else(|| panic!("no {family} in /v1/metrics?all"))
        .value()
}

fn parse_time(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap_or_else(|| panic!("not a time: {v}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Two nodes on one fs keystore directory: their directories, the shared keys and both servers.
struct Pair {
    keys: TempDir,
    a: Served,
    b: Served,
}

impl Pair {
    fn start(tag: &str, extra: &str) -> Pair {
        let keys = TempDir::new(&format!("{tag}-keys"));
        let a = Served::start(&format!("{tag}-a"), &fs_config(keys.path(), extra));
        let b = Served::start(&format!("{tag}-b"), &fs_config(keys.path(), extra));
        Pair { keys, a, b }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Rotation through two nodes sharing one keystore

#[test]
fn rotation_through_two_nodes_sharing_a_keystore() {
    let p = Pair::start("two-nodes", "cache:\n  expiry:\n    any: 1s\n");
    let (a, b) = (p.a.client(), p.b.client());
    let ctx = context("two-nodes");
    assert_eq!(a.put("/v1/key/create/k", "").status, 200);
    assert_eq!(a.put("/v1/key/create/never-rotated", "").status, 200);

    // Before any rotation: the reply is the Go server's, byte for byte, as for a key that was
    // never rotated: {"plaintext":…,"ciphertext":…} and no `version`.
    let shape = |d: &Dek| {
        format!(
            "{{\"plaintext\":\"{}\",\"ciphertext\":\"{}\"}}\n",
            d.plaintext, d.ciphertext
        )
        .into_bytes()
    };
    let v1 = generate(&a, "k", &ctx);
    let plain = generate(&a, "never-rotated", &ctx);
    assert_eq!(v1.body, shape(&v1));
    assert_eq!(plain.body, shape(&plain));
    assert_eq!(v1.version, None);
    let d = describe(&a, "k");
    assert!(
        d.get("version").is_none() && d.get("versions").is_none(),
        "{d}"
    );

    // Rotate through B; B uses version 2 at once.
    assert_eq!(rotate(&b, "k"), 2);
    assert!(
        ring_dir(p.keys.path(), "k").join("2").is_file(),
        "version 2 is stored at .kes-versions/k/<ring>/2"
    );
    let v2 = generate(&b, "k", &ctx);
    assert_eq!(v2.version.as_deref(), Some("2"));
    assert_eq!(
        v2.body,
        format!(
            "{{\"plaintext\":\"{}\",\"ciphertext\":\"{}\",\"version\":\"2\"}}\n",
            v2.plaintext, v2.ciphertext
        )
        .into_bytes()
    );
    // A decrypts B's version-2 ciphertext at once (its cached ring is listed again), without
    // version (the iv's hint) and with it.
    assert_decrypts(&a, "k", &v2, None);
    assert_decrypts(&a, "k", &v2, Some("2"));

    // After A's cache expiry (1 s), A's generate uses version 2.
    assert!(
        wait_until(Duration::from_secs(5), || generate(&a, "k", &ctx).version
            == Some("2".into())),
        "A's generate must use version 2 once its cache entry expired"
    );
    let v2_on_a = generate(&a, "k", &ctx);
    assert_eq!(v2_on_a.version.as_deref(), Some("2"));

    // Another rotation, through A this time; B decrypts A's version 3 at once.
    assert_eq!(rotate(&a, "k"), 3);
    let v3 = generate(&a, "k", &ctx);
    assert_eq!(v3.version.as_deref(), Some("3"));
    assert_decrypts(&b, "k", &v3, None);
    assert_decrypts(&b, "k", &v3, Some("3"));

    // Every ciphertext decrypts on both nodes with and without its version; the wrong version
    // is not authentic (no fallback to other versions when the caller names one).
    for (dek, right, wrong) in [
        (&v1, "1", ["2", "3"]),
        (&v2, "2", ["1", "3"]),
        (&v2_on_a, "2", ["1", "3"]),
        (&v3, "3", ["1", "2"]),
    ] {
        for c in [&a, &b] {
            assert_decrypts(c, "k", dek, None);
            assert_decrypts(c, "k", dek, Some(right));
            for w in wrong {
                decrypt(c, "k", dek, Some(w)).assert_error(400, NOT_AUTHENTIC);
            }
        }
    }
    // The legacy bulk decrypt (§2.4) takes a `version` per ciphertext too.
    let item = |d: &Dek, version: Option<&str>| {
        let mut v = json!({ "ciphertext": d.ciphertext, "context": d.context });
        if let Some(n) = version {
            v["version"] = json!(n);
        }
        v
    };
    let bulk = json!([
        item(&v1, None),
        item(&v2, Some("2")),
        item(&v3, None),
        item(&v1, Some("1"))
    ]);
    let r = b.post("/v1/key/bulk/decrypt/k", &bulk.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!([
            { "plaintext": v1.plaintext },
            { "plaintext": v2.plaintext },
            { "plaintext": v3.plaintext },
            { "plaintext": v1.plaintext }
        ])
    );
    let bulk = json!([item(&v1, None), item(&v2, Some("3"))]);
    b.post("/v1/key/bulk/decrypt/k", &bulk.to_string())
        .assert_error(400, NOT_AUTHENTIC);
    let bulk = json!([item(&v1, Some("v1"))]);
    b.post("/v1/key/bulk/decrypt/k", &bulk.to_string())
        .assert_error(400, INVALID_VERSION);

    // The key that was never rotated is untouched: same reply shape, no versions.
    let again = generate(&b, "never-rotated", &ctx);
    assert_eq!(again.body, shape(&again));
    assert_decrypts(&b, "never-rotated", &plain, None);
    assert_decrypts(&b, "never-rotated", &plain, Some("1"));
    decrypt(&b, "never-rotated", &plain, Some("2")).assert_error(404, UNKNOWN_VERSION);
    assert_eq!(
        entries(&p.keys.join(".kes-versions")),
        BTreeSet::from(["k".to_string()]),
        "only the rotated key has a ring"
    );
    let d = describe(&b, "k");
    assert_eq!(d["version"], "3", "{d}");
    let listed: Vec<&str> = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["3", "2", "1"]);
}

/// The documented 60 s window (§5) is for generate and encrypt only: a node with a cached key
/// (default cache settings: 5 minutes) decrypts a ciphertext of a version made through another
/// node at once, with and without `version`; its generate uses the old version until it lists
/// the versions again, which that decrypt did.
#[test]
fn a_new_version_decrypts_on_another_node_at_once() {
    let p = Pair::start("at-once", "");
    let (a, b) = (p.a.client(), p.b.client());
    let ctx = context("at-once");
    assert_eq!(a.put("/v1/key/create/k", "").status, 200);
    // A has the key cached (and listed its versions: none) just now.
    let v1 = generate(&a, "k", &ctx);
    assert_eq!(v1.version, None);

    assert_eq!(rotate(&b, "k"), 2);
    let v2 = generate(&b, "k", &ctx);
    assert_eq!(v2.version.as_deref(), Some("2"));
    // Within the window A still encrypts with version 1: nothing told it of the rotation.
    assert_eq!(generate(&a, "k", &ctx).version, None);
    // A decrypts version 2 at once, without version (the hint), also when a burst of requests
    // needs the new version at the same moment (one lists the versions, the others wait for it).
    let go = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut conn = a.connect();
                conn.handshake().unwrap();
                go.wait();
                let body = json!({ "ciphertext": v2.ciphertext, "context": v2.context });
                let r = conn
                    .request("POST", "/v1/key/decrypt/k", Some(&body.to_string()))
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.json()["plaintext"], v2.plaintext.as_str());
            });
        }
    });
    // … and that decrypt listed A's versions again: its generate now uses version 2.
    assert_eq!(generate(&a, "k", &ctx).version.as_deref(), Some("2"));

    // A second rotation right after, and a decrypt naming its version on A.
    assert_eq!(rotate(&b, "k"), 3);
    let v3 = generate(&b, "k", &ctx);
    assert_decrypts(&a, "k", &v3, Some("3"));
    assert_decrypts(&a, "k", &v3, None);
    assert_decrypts(&a, "k", &v1, None);
    assert_decrypts(&a, "k", &v2, Some("2"));
}

// ---------------------------------------------------------------------------------------------
// 2. The Go server's ciphertexts after rotations

fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/vectors.json")).unwrap()
}

fn hex(s: &Value) -> Vec<u8> {
    support::pki::hex(s.as_str().unwrap())
}

/// A vector ciphertext as a [`Dek`] (its plaintext, ciphertext and context in base64).
fn vector_dek(c: &Value) -> Dek {
    Dek {
        plaintext: B64.encode(hex(&c["plaintext"])),
        ciphertext: B64.encode(hex(&c["ciphertext"])),
        context: B64.encode(hex(&c["context"])),
        version: None,
        body: Vec::new(),
    }
}

/// Ciphertexts the Go server made (and older kes: every format of §5.4) with a key imported as
/// version 1 still decrypt after three rotations, without `version` and with `"1"`; naming
/// another version is not authentic. The version-hint vectors (version-1 key bytes under an iv
/// whose hint names versions 2, 3, 1000 and 2^32-1) fall back to version 1. A legacy key file
/// (`{"bytes"}`, no algorithm, no HMAC key) rotates too, and its algorithm fallback of §5.4
/// still applies to version 1.
#[test]
fn go_vectors_decrypt_after_rotations() {
    let srv = Served::start("vectors", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    let v = vectors();
    let keys = srv.dir.join("keys");
    let mut checked = 0;
    // Decrypts without version that succeeded: each one by version 1 (the metric says so).
    let mut without = 0;
    // One imported key per key of the vectors, named after its first bytes.
    let name_of = |key: &Value| format!("go-{}", &key.as_str().unwrap()[..8]);
    let mut imported = BTreeSet::new();
    for ct in v["ciphertexts"].as_array().unwrap() {
        let name = name_of(&ct["key"]);
        if ct["legacy_algorithm_fallback"].as_bool().unwrap() || !imported.insert(name.clone()) {
            continue;
        }
        let r = c.put(
            &format!("/v1/key/import/{name}"),
            &json!({ "key": B64.encode(hex(&ct["key"])), "cipher": ct["key_algorithm"] })
                .to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The legacy key of the fallback vectors, as a Go server of v0.19.1 stored it.
    let legacy = v["ciphertexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["legacy_algorithm_fallback"].as_bool().unwrap())
        .unwrap();
    std::fs::write(
        keys.join("legacy"),
        json!({ "bytes": B64.encode(hex(&legacy["key"])) }).to_string(),
    )
    .unwrap();
    imported.insert("legacy".to_string());
    for name in &imported {
        for n in 2..=4 {
            assert_eq!(rotate(&c, name), n, "{name}");
        }
        let d = describe(&c, name);
        assert_eq!(d["version"], "4", "{d}");
    }
    // Rotation keeps the algorithm of the current version.
    let chacha = describe(&c, &name_of(&json!("c492b1cf")));
    for version in chacha["versions"].as_array().unwrap() {
        assert_eq!(version["algorithm"], "ChaCha20", "{chacha}");
    }

    for ct in v["ciphertexts"].as_array().unwrap() {
        let name = if ct["legacy_algorithm_fallback"].as_bool().unwrap() {
            "legacy".to_string()
        } else {
            name_of(&ct["key"])
        };
        let dek = vector_dek(ct);
        let what = ct["name"].as_str().unwrap();
        match ct["expect"].as_str().unwrap() {
            "plaintext" => {
                without += 1;
                for version in [None, Some("1")] {
                    let r = decrypt(&c, &name, &dek, version);
                    assert_eq!(r.status, 200, "{what} with {version:?}: {}", r.text());
                    assert_eq!(r.json()["plaintext"], dek.plaintext.as_str(), "{what}");
                }
                for wrong in ["2", "4"] {
                    decrypt(&c, &name, &dek, Some(wrong)).assert_error(400, NOT_AUTHENTIC);
                }
            }
            _ => {
                for version in [None, Some("1"), Some("2")] {
                    decrypt(&c, &name, &dek, version).assert_error(400, NOT_AUTHENTIC);
                }
            }
        }
        checked += 1;
    }
    for h in v["version_hints"].as_array().unwrap() {
        let name = name_of(&h["key"]);
        let dek = vector_dek(h);
        let hinted = h["version"].as_u64().unwrap();
        assert_decrypts(&c, &name, &dek, None);
        without += 1;
        assert_decrypts(&c, &name, &dek, Some("1"));
        decrypt(&c, &name, &dek, Some("2")).assert_error(400, NOT_AUTHENTIC);
        if hinted > 4 {
            decrypt(&c, &name, &dek, Some(&hinted.to_string())).assert_error(404, UNKNOWN_VERSION);
        }
        checked += 1;
    }
    // Every one of them was decrypted by version 1, none by a hinted version.
    assert_eq!(
        counter(&c, "kes_key_decrypt_version_one_total"),
        f64::from(without)
    );
    assert_eq!(counter(&c, "kes_key_decrypt_hinted_version_total"), 0.0);
    // Data keys made now use version 4.
    let now = generate(&c, &name_of(&json!("5f0ddc32")), &context("vectors"));
    assert_eq!(now.version.as_deref(), Some("4"));
    assert_decrypts(&c, &name_of(&json!("5f0ddc32")), &now, None);
    assert_eq!(counter(&c, "kes_key_decrypt_hinted_version_total"), 1.0);
    println!("{checked} Go-server and hint vectors decrypted after 3 rotations of their keys");
}

// ---------------------------------------------------------------------------------------------
// 3. Errors, retirement and destruction

#[test]
fn version_errors_retire_restore_destroy() {
    let srv = Served::start("lifecycle", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    let keys = srv.dir.join("keys");
    let me = srv.admin.identity.clone();
    let ctx = context("lifecycle");
    assert_eq!(c.put("/v1/key/create/k", "").status, 200);
    let d1 = generate(&c, "k", &ctx);

    // The `version` field (§4 "Version strings") on a key that was never rotated.
    decrypt(&c, "k", &d1, Some("999")).assert_error(404, UNKNOWN_VERSION);
    decrypt(&c, "k", &d1, Some("2")).assert_error(404, UNKNOWN_VERSION);
    for bad in [
        json!("v2"),
        json!("02"),
        json!("0"),
        json!(2),
        json!("-1"),
        json!(" 2"),
        json!("4294967296"),
    ] {
        decrypt_as(&c, "k", &d1, Some(bad.clone())).assert_error(400, INVALID_VERSION);
    }
    for none in [json!(""), Value::Null] {
        let r = decrypt_as(&c, "k", &d1, Some(none.clone()));
        assert_eq!(r.status, 200, "version {none}: {}", r.text());
    }
    assert_decrypts(&c, "k", &d1, Some("1"));

    // Rotation of a key that does not exist; of a name that is not a key name.
    c.put("/v1/key/rotate/missing", "")
        .assert_error(404, "key does not exist");
    assert!(!keys.join(".kes-versions/missing").exists());
    assert_eq!(c.put("/v1/key/rotate/a.b", "").status, 400);

    assert_eq!(rotate(&c, "k"), 2);
    let ring = ring_dir(&keys, "k");
    let d2 = generate(&c, "k", &ctx);
    assert_eq!(d2.version.as_deref(), Some("2"));

    // Retire: never the current version; not before the successor is 10 minutes old.
    step(&c, "retire", "k", "2").assert_error(409, "the current key version cannot be retired");
    step(&c, "retire", "k", "1")
        .assert_error(409, "key version was superseded too recently to retire");
    step(&c, "retire", "k", "3").assert_error(404, UNKNOWN_VERSION);
    step(&c, "retire", "k", "01").assert_error(400, INVALID_VERSION);
    c.put("/v1/key/retire/k", "{}")
        .assert_error(400, INVALID_VERSION);
    for body in ["", "[]", "{bad"] {
        c.put("/v1/key/retire/k", body)
            .assert_error(400, "invalid request body");
    }
    c.put("/v1/key/retire/k", r#"{"version":2}"#)
        .assert_error(400, INVALID_VERSION);
    step(&c, "retire", "missing", "1").assert_error(404, "key does not exist");
    step(&c, "restore", "k", "1").assert_error(409, "key version is not retired");
    step(&c, "destroy", "k", "2").assert_error(409, "key version is not retired");
    assert_eq!(entries(&ring), BTreeSet::from(["2".to_string()]));

    // Version 2 made 9 minutes ago: still too recent. 11 minutes: version 1 can be retired.
    age_version(&ring.join("2"), time::Duration::minutes(9));
    step(&c, "retire", "k", "1")
        .assert_error(409, "key version was superseded too recently to retire");
    age_version(&ring.join("2"), time::Duration::minutes(2));
    let r = step(&c, "retire", "k", "1");
    assert_eq!((r.status, r.text()), (200, String::new()));
    let marker: Value = serde_json::from_slice(&std::fs::read(ring.join("1.retired")).unwrap())
        .expect("the marker is JSON");
    assert_eq!(marker["retired_by"], me.as_str(), "{marker}");
    let age =
        time::OffsetDateTime::now_utc().unix_timestamp() - marker["retired_at"].as_i64().unwrap();
    assert!((0..60).contains(&age), "{marker}");
    step(&c, "retire", "k", "1").assert_error(409, RETIRED);

    // Data of the retired version: 409 with and without version (counted); data it does not
    // authenticate is still 400; other versions are untouched.
    let before = counter(&c, "kes_key_decrypt_retired_total");
    decrypt(&c, "k", &d1, None).assert_error(409, RETIRED);
    decrypt(&c, "k", &d1, Some("1")).assert_error(409, RETIRED);
    let wrong_context = Dek {
        context: context("other"),
        ..d1.clone()
    };
    decrypt(&c, "k", &wrong_context, None).assert_error(400, NOT_AUTHENTIC);
    decrypt(&c, "k", &wrong_context, Some("1")).assert_error(400, NOT_AUTHENTIC);
    assert_eq!(counter(&c, "kes_key_decrypt_retired_total"), before + 2.0);
    assert_decrypts(&c, "k", &d2, None);
    assert_decrypts(&c, "k", &d2, Some("2"));
    assert!(
        srv.kes.wait_for_output(
            "a decrypt with key 'k' needs retired version 1",
            Duration::from_secs(5)
        ),
        "the refusal is logged"
    );

    // Restore undoes it.
    let r = step(&c, "restore", "k", "1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!ring.join("1.retired").exists());
    assert_decrypts(&c, "k", &d1, None);
    assert_decrypts(&c, "k", &d1, Some("1"));
    assert_eq!(step(&c, "retire", "k", "1").status, 200);

    // Destroy: only a retired version, only after key_versions.destroy_after (168h).
    assert_eq!(rotate(&c, "k"), 3);
    let d3 = generate(&c, "k", &ctx);
    age_version(&ring.join("3"), time::Duration::minutes(11));
    assert_eq!(step(&c, "retire", "k", "2").status, 200);
    step(&c, "destroy", "k", "2")
        .assert_error(409, "key version was retired too recently to destroy");
    age_marker(&ring.join("2.retired"), time::Duration::hours(167));
    step(&c, "destroy", "k", "2")
        .assert_error(409, "key version was retired too recently to destroy");
    age_marker(&ring.join("2.retired"), time::Duration::hours(25));
    let r = step(&c, "destroy", "k", "2");
    assert_eq!((r.status, r.text()), (200, String::new()));
    assert_eq!(
        entries(&ring),
        ["1.retired", "2.retired", "3"]
            .into_iter()
            .map(String::from)
            .collect(),
        "the value of version 2 is gone, its marker stays as a tombstone"
    );
    decrypt(&c, "k", &d2, Some("2")).assert_error(404, UNKNOWN_VERSION);
    decrypt(&c, "k", &d2, None).assert_error(400, NOT_AUTHENTIC);
    decrypt(&c, "k", &d1, None).assert_error(409, RETIRED);
    assert_decrypts(&c, "k", &d3, None);
    assert_decrypts(&c, "k", &d3, Some("3"));
    step(&c, "destroy", "k", "1")
        .assert_error(409, "version 1 can only be destroyed by deleting the key");
    for what in ["destroy", "restore", "retire"] {
        step(&c, what, "k", "2").assert_error(404, UNKNOWN_VERSION);
    }
    // The number of a destroyed version is never used again.
    assert_eq!(rotate(&c, "k"), 4);

    // describe: the current version, then every version newest first with its retirement.
    let d = describe(&c, "k");
    assert_eq!(d["name"], "k");
    assert_eq!(d["version"], "4", "{d}");
    let versions = d["versions"].as_array().unwrap();
    let numbers: Vec<&str> = versions
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["4", "3", "2", "1"], "{d}");
    assert_eq!(d["created_at"], versions[0]["created_at"]);
    assert_eq!(d["algorithm"], versions[0]["algorithm"]);
    let fields = |v: &Value| -> Vec<String> {
        let mut f: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        f.sort();
        f
    };
    let live = ["algorithm", "created_at", "created_by", "version"];
    assert_eq!(fields(&versions[0]), live, "{d}");
    assert_eq!(fields(&versions[1]), live, "{d}");
    assert_eq!(
        fields(&versions[2]),
        ["destroyed", "retired_at", "retired_by", "version"],
        "{d}"
    );
    assert_eq!(versions[2]["destroyed"], true);
    assert_eq!(
        fields(&versions[3]),
        [
            "algorithm",
            "created_at",
            "created_by",
            "retired_at",
            "retired_by",
            "version"
        ],
        "{d}"
    );
    let now = time::OffsetDateTime::now_utc();
    for v in versions {
        if v.get("created_by").is_some() {
            assert_eq!(v["created_by"], me.as_str());
        }
    }
    assert_eq!(versions[2]["retired_by"], me.as_str());
    assert_eq!(versions[3]["retired_by"], me.as_str());
    let ago = |v: &Value| (now - parse_time(&v["retired_at"])).whole_hours();
    assert_eq!(
        ago(&versions[2]),
        192,
        "retired 8 days ago (aged on disk): {d}"
    );
    assert_eq!(ago(&versions[3]), 0, "{d}");
    assert_eq!(
        (now - parse_time(&versions[1]["created_at"])).whole_minutes(),
        11,
        "version 3 as stored: {d}"
    );

    // Metrics of this server.
    for (family, n) in [
        ("kes_key_rotations_total", 3.0),
        ("kes_key_versions_retired_total", 3.0),
        ("kes_key_versions_restored_total", 1.0),
        ("kes_key_versions_destroyed_total", 1.0),
    ] {
        assert_eq!(counter(&c, family), n, "{family}");
    }
}

/// `key_versions.destroy_after` below a day is refused at start-up; a longer one is what
/// destroy waits for.
#[test]
fn destroy_after_is_checked_at_start_up_and_honoured() {
    let dir = TempDir::new("destroy-after");
    let ca = support::pki::Ca::new("destroy-after");
    ca.server().write(dir.path(), "server");
    let admin = support::pki::api_key_client(ADMIN_API_KEY);
    let config = |extra: &str| {
        format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\nkeystore:\n  fs:\n    path: {d}/keys\n{extra}",
            admin.identity,
            d = dir.path().display()
        )
    };
    let path = dir.join("config.yaml");
    std::fs::write(&path, config("key_versions:\n  destroy_after: 1h\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kes"))
        .args([
            "server",
            "--config",
            path.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kes started with key_versions.destroy_after: 1h");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = support::Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(
            "key_versions.destroy_after is 1h0m0s: it must be at least 24h (a retired version \
             must outlive every node's cache of the key by far)"
        ),
        "{out:?}"
    );

    std::fs::write(&path, config("key_versions:\n  destroy_after: 25h\n")).unwrap();
    let kes = support::Kes::start(&path);
    let c = Client::new(kes.addr, &ca.cert.der, Some(&admin));
    assert_eq!(c.put("/v1/key/create/k", "").status, 200);
    assert_eq!(rotate(&c, "k"), 2);
    assert_eq!(rotate(&c, "k"), 3);
    let ring = ring_dir(&dir.join("keys"), "k");
    age_version(&ring.join("3"), time::Duration::minutes(11));
    assert_eq!(step(&c, "retire", "k", "2").status, 200);
    age_marker(&ring.join("2.retired"), time::Duration::hours(24));
    step(&c, "destroy", "k", "2")
        .assert_error(409, "key version was retired too recently to destroy");
    age_marker(&ring.join("2.retired"), time::Duration::hours(1));
    assert_eq!(step(&c, "destroy", "k", "2").status, 200);
    assert!(!ring.join("2").exists() && ring.join("2.retired").exists());
}

// ---------------------------------------------------------------------------------------------
// 4. Racing rotations

/// 2 nodes × 8 threads × 5 rotations of one key at the same time: 80 distinct versions 2..=81,
/// each stored once (none lost, none overwritten). After each rotation the thread makes a data
/// key on its node, which uses the new version or a later one, and the other node decrypts it
/// naming that version.
#[test]
fn racing_rotations_through_two_nodes() {
    const THREADS: usize = 8;
    const ROTATIONS: usize = 5;
    let p = Pair::start("racing", "");
    let (a, b) = (p.a.client(), p.b.client());
    assert_eq!(a.put("/v1/key/create/k", "").status, 200);
    let ctx = context("racing");
    let start = Instant::now();
    let go = std::sync::Barrier::new(2 * THREADS);
    let retried = std::sync::atomic::AtomicUsize::new(0);
    let mut got: Vec<u32> = std::thread::scope(|s| {
        let mut threads = Vec::new();
        for i in 0..2 * THREADS {
            let (mine, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let (go, ctx, retried) = (&go, &ctx, &retried);
            threads.push(s.spawn(move || {
                go.wait();
                let mut made = Vec::new();
                for _ in 0..ROTATIONS {
                    let (n, contended) = mine.rotate_retrying("k");
                    retried.fetch_add(contended, std::sync::atomic::Ordering::Relaxed);
                    let dek = generate(mine, "k", ctx);
                    let used: u32 = dek.version.as_deref().unwrap().parse().unwrap();
                    assert!(
                        used >= n,
                        "generate right after rotation {n} on the same node used version {used}"
                    );
                    assert_decrypts(other, "k", &dek, Some(&used.to_string()));
                    assert_decrypts(other, "k", &dek, None);
                    made.push(n);
                }
                made
            }));
        }
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed();
    got.sort_unstable();
    let expected: Vec<u32> = (2..=(2 * THREADS * ROTATIONS) as u32 + 1).collect();
    assert_eq!(got, expected, "every rotation got its own number");
    // On disk: exactly those versions, no temporary files left.
    let ring = ring_dir(p.keys.path(), "k");
    let stored: BTreeSet<String> = entries(&ring);
    let want: BTreeSet<String> = expected.iter().map(u32::to_string).collect();
    assert_eq!(stored, want);
    for n in [2, 41, 81] {
        let value = std::fs::read(ring.join(n.to_string())).unwrap();
        kes::crypto::KeyVersion::decode(&value).expect("a complete stored version");
    }
    assert_eq!(describe(&a, "k")["versions"].as_array().unwrap().len(), 81);
    let m = support::prom::parse(&a.get("/v1/metrics?all").text()).unwrap();
    let mb = support::prom::parse(&b.get("/v1/metrics?all").text()).unwrap();
    assert_eq!(
        m["kes_key_rotations_total"].value() + mb["kes_key_rotations_total"].value(),
        80.0
    );
    println!(
        "80 racing rotations through 2 nodes in {elapsed:?}: {} retried after 503; forced \
         version re-lists: {} on A, {} on B",
        retried.load(std::sync::atomic::Ordering::Relaxed),
        m["kes_cache_version_reloads_total"].value(),
        mb["kes_cache_version_reloads_total"].value()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Deleting a rotated key

/// Delete removes `<name>` and the whole ring; the name then starts again at version 1 (a new
/// key, which the old versions' data does not decrypt with).
#[test]
fn delete_removes_every_version_and_the_name_starts_again() {
    let srv = Served::start("delete", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    let keys = srv.dir.join("keys");
    let ctx = context("delete");
    assert_eq!(c.put("/v1/key/create/k", "").status, 200);
    assert_eq!(c.put("/v1/key/create/other", "").status, 200);
    assert_eq!(rotate(&c, "other"), 2);
    assert_eq!(rotate(&c, "k"), 2);
    assert_eq!(rotate(&c, "k"), 3);
    let old = generate(&c, "k", &ctx);
    let ring = ring_dir(&keys, "k");
    age_version(&ring.join("3"), time::Duration::minutes(11));
    assert_eq!(step(&c, "retire", "k", "2").status, 200);
    assert_eq!(
        entries(&ring),
        ["2", "2.retired", "3"]
            .into_iter()
            .map(String::from)
            .collect()
    );

    let r = c.request("DELETE", "/v1/key/delete/k", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!keys.join("k").exists());
    assert!(
        entries(&keys.join(".kes-versions/k")).is_empty(),
        "nothing of k's ring stays: {:?}",
        entries(&keys.join(".kes-versions/k"))
    );
    // The other rotated key is untouched.
    assert_eq!(
        entries(&ring_dir(&keys, "other")),
        BTreeSet::from(["2".to_string()])
    );
    c.get("/v1/key/describe/k")
        .assert_error(404, "key does not exist");
    decrypt(&c, "k", &old, None).assert_error(404, "key does not exist");

    // The name again: a new key at version 1.
    assert_eq!(c.put("/v1/key/create/k", "").status, 200);
    let d = describe(&c, "k");
    assert!(
        d.get("version").is_none() && d.get("versions").is_none(),
        "{d}"
    );
    let fresh = generate(&c, "k", &ctx);
    assert_eq!(fresh.version, None);
    decrypt(&c, "k", &old, None).assert_error(400, NOT_AUTHENTIC);
    decrypt(&c, "k", &old, Some("3")).assert_error(404, UNKNOWN_VERSION);
    assert_eq!(rotate(&c, "k"), 2);
    let new_ring = ring_dir(&keys, "k");
    assert_ne!(new_ring, ring, "the new version 1 has another ring");
    assert_decrypts(&c, "k", &fresh, None);
    let listed = c.get("/v1/key/list/*").json();
    assert_eq!(listed["names"], json!(["k", "other"]));
}

// ---------------------------------------------------------------------------------------------
// 6. Audit and error logs

#[test]
fn rotation_is_in_the_audit_and_error_logs() {
    let srv = Served::start(
        "logs",
        "log:\n  audit: on\nkeystore:\n  fs:\n    path: {dir}/keys\n",
    );
    let c = srv.client();
    let me = srv.admin.identity.clone();
    assert_eq!(c.put("/v1/key/create/logged", "").status, 200);
    assert_eq!(rotate(&c, "logged"), 2);
    c.put("/v1/key/rotate/not-there", "")
        .assert_error(404, "key does not exist");
    step(&c, "retire", "logged", "2")
        .assert_error(409, "the current key version cannot be retired");

    let audited = |path: &str, code: u16| {
        srv.kes.output().lines().any(|l| {
            l.starts_with("{\"time\"")
                && serde_json::from_str::<Value>(l).is_ok_and(|e| {
                    e["request"]["path"] == path
                        && e["request"]["method"] == "PUT"
                        && e["request"]["identity"] == me.as_str()
                        && e["response"]["code"] == code
                })
        })
    };
    // Written to stdout asynchronously: waited for.
    for (path, code) in [
        ("/v1/key/rotate/logged", 200),
        ("/v1/key/rotate/not-there", 404),
        ("/v1/key/retire/logged", 409),
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || audited(path, code)),
            "no audit event PUT {path} {code}:\n{}",
            srv.kes.output()
        );
    }
    let said = format!("secret key 'logged' rotated to version 2 by {me}");
    assert!(
        srv.kes.wait_for_output(&said, Duration::from_secs(10)),
        "the error log says {said:?}:\n{}",
        srv.kes.output()
    );
    let line = srv
        .kes
        .output()
        .lines()
        .find(|l| l.contains(&said))
        .unwrap()
        .to_string();
    assert!(line.contains("INFO"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// 7. The `kes key` commands

/// Runs the `kes` command as the admin of `srv` (server, API key and CA from the environment,
/// nothing of the caller's), standard output not a terminal.
fn kes_as_admin(srv: &Served, args: &[&str]) -> support::Run {
    let ca = srv.dir.join("ca.crt");
    if !ca.exists() {
        std::fs::write(&ca, &srv.ca.cert.cert_pem).unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kes"));
    cmd.args(args).stdin(std::process::Stdio::null());
    for var in support::CLIENT_VARS {
        cmd.env_remove(var);
    }
    cmd.env("KES_SERVER", format!("https://{}", srv.kes.addr))
        .env("KES_API_KEY", ADMIN_API_KEY)
        .env("KES_CAPATH", &ca);
    support::Run::from_output(cmd.output().expect("run kes"))
}

#[test]
fn key_commands_rotate_retire_and_decrypt_with_a_version() {
    let srv = Served::start("cli", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let ring_of = || ring_dir(&srv.dir.join("keys"), "k");
    kes_as_admin(&srv, &["key", "create", "k"]).ok();
    let v1 = kes_as_admin(&srv, &["key", "dek", "k"]).ok().json();
    assert!(v1.get("version").is_none(), "{v1}");

    // rotate: the Go-style JSON line when piped.
    let run = kes_as_admin(&srv, &["key", "rotate", "k"]).ok();
    assert_eq!(run.stdout, "{\"version\":\"2\"}\n");
    let run = kes_as_admin(&srv, &["key", "rotate", "missing"]);
    let run = run.fails(1, "key does not exist");
    assert_eq!(run.stdout, "");

    // info --json: the current version and every version, newest first.
    let info = kes_as_admin(&srv, &["key", "info", "k", "--json"])
        .ok()
        .json();
    assert_eq!(info["name"], "k");
    assert_eq!(info["version"], "2", "{info}");
    let versions: Vec<&str> = info["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2", "1"], "{info}");

    // dek of a rotated key prints the version after the Go command's fields.
    let run = kes_as_admin(&srv, &["key", "dek", "k"]).ok();
    let v2 = run.json();
    assert_eq!(
        run.stdout,
        format!(
            "{{\"plaintext\":\"{}\",\"ciphertext\":\"{}\",\"version\":\"2\"}}\n",
            v2["plaintext"].as_str().unwrap(),
            v2["ciphertext"].as_str().unwrap()
        )
    );
    assert_eq!(v2["version"], "2");
    let ct2 = v2["ciphertext"].as_str().unwrap();
    let ct1 = v1["ciphertext"].as_str().unwrap();

    // decrypt --version N
    for (ct, dek, version) in [
        (ct2, &v2, Some("2")),
        (ct2, &v2, None),
        (ct1, &v1, Some("1")),
        (ct1, &v1, None),
    ] {
        let mut args = vec!["key", "decrypt", "k", ct];
        if let Some(v) = version {
            args.extend(["--version", v]);
        }
        let run = kes_as_admin(&srv, &args).ok();
        assert_eq!(
            run.json(),
            json!({ "plaintext": dek["plaintext"] }),
            "{args:?}"
        );
    }
    kes_as_admin(&srv, &["key", "decrypt", "k", ct2, "--version", "1"]).fails(1, NOT_AUTHENTIC);
    kes_as_admin(&srv, &["key", "decrypt", "k", ct2, "--version", "7"]).fails(1, UNKNOWN_VERSION);
    kes_as_admin(&srv, &["key", "decrypt", "k", ct2, "--version", "v2"]).fails(2, "v2");

    // retire: the server's refusal, exit code 1, nothing on standard output.
    let run = kes_as_admin(&srv, &["key", "retire", "k", "--version", "1"])
        .fails(1, "key version was superseded too recently to retire");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "Error: failed to retire version 1 of key \"k\": key version was superseded too \
         recently to retire\n"
    );
    kes_as_admin(&srv, &["key", "retire", "k", "--version", "2"])
        .fails(1, "the current key version cannot be retired");
    kes_as_admin(&srv, &["key", "retire", "k", "--version", "0"]).fails(1, INVALID_VERSION);
    kes_as_admin(&srv, &["key", "retire", "k"]).fails(2, "--version");
    age_version(&ring_of().join("2"), time::Duration::minutes(11));
    let run = kes_as_admin(&srv, &["key", "retire", "k", "--version", "1"]).ok();
    assert_eq!(run.stdout, "");
    kes_as_admin(&srv, &["key", "decrypt", "k", ct1]).fails(1, RETIRED);
    // info without --json: the Go command's four lines, the current version, one line per
    // version.
    let text = kes_as_admin(&srv, &["key", "info", "k"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    let me = &srv.admin.identity;
    assert!(
        lines[0].starts_with("Name") && lines[0].ends_with(" k"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("Version") && lines[4].ends_with(" 2"),
        "{text}"
    );
    assert!(
        lines[5].trim_start().starts_with("v2") && lines[5].contains(&format!("by {me} (current)")),
        "{text}"
    );
    assert!(
        lines[6].trim_start().starts_with("v1") && lines[6].contains(", retired "),
        "{text}"
    );
    kes_as_admin(&srv, &["key", "destroy", "k", "--version", "1"])
        .fails(1, "version 1 can only be destroyed by deleting the key");
    kes_as_admin(&srv, &["key", "restore", "k", "--version", "1"]).ok();
    kes_as_admin(&srv, &["key", "decrypt", "k", ct1, "--version", "1"]).ok();
    assert!(!ring_of().join("1.retired").exists());
}

// ---------------------------------------------------------------------------------------------
// 8. The peer programs: MinIO's client libraries and the Go server

/// What a kesclient driver printed: its blocks (`[Call] …` and the lines after it) and its
/// summary (`PASS|FAIL <call> expect=… got=…`).
struct DriverRun {
    output: String,
}

impl DriverRun {
    /// A kms-go driver (`kesclient`, `kesclient-head`) against `server` as the admin, on the
    /// existing key `key`, without the admin-only and forbidden-call parts.
    fn on_key(program: &str, server: &str, key: &str) -> DriverRun {
        DriverRun::run(
            program,
            &[
                "-server",
                server,
                "-api-key",
                ADMIN_API_KEY,
                "-k",
                "-key-name",
                key,
                "-skip-admin",
                "-skip-forbidden",
            ],
        )
    }

    fn run(program: &str, args: &[&str]) -> DriverRun {
        let out = Command::new(support::peers().join("bin").join(program))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        DriverRun {
            output: String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        }
    }

    /// The block of `[call]`: its header line and the lines up to the next block or trace.
    #[track_caller]
    fn block(&self, call: &str) -> String {
        let header = format!("[{call}]");
        let mut lines = self.output.lines().skip_while(|l| !l.starts_with(&header));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("no {header} in:\n{}", self.output));
        let rest =
            lines.take_while(|l| !l.starts_with('[') && !l.trim_start().starts_with("http: "));
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The summary lines that failed, by call name.
    fn failed(&self) -> Vec<String> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix("FAIL "))
            .map(|l| l.split(" expect=").next().unwrap().trim().to_string())
            .collect()
    }

    /// The summary line of `call`.
    #[track_caller]
    fn summary(&self, call: &str) -> &str {
        self.output
            .lines()
            .find(|l| {
                (l.starts_with("PASS ") || l.starts_with("FAIL "))
                    && l[5..].split(" expect=").next().unwrap().trim() == call
            })
            .unwrap_or_else(|| panic!("no summary of {call}:\n{}", self.output))
    }
}

/// The newest kms-go (kesclient-head) against a key rotated twice: GenerateKey returns
/// version "3", Decrypt sends it back and succeeds, an empty version is left out and succeeds,
/// "999" fails with the documented error. The driver creates its key itself, so its
/// `CreateKey(new)` fails on the existing key: that is the one failure expected.
#[test]
fn peer_newest_kms_go_reads_and_sends_key_versions() {
    support::peers();
    let srv = Served::start("peer-head", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    assert_eq!(c.put("/v1/key/create/minio-head", "").status, 200);
    assert_eq!(rotate(&c, "minio-head"), 2);
    assert_eq!(rotate(&c, "minio-head"), 3);
    let server = format!("https://{}", srv.kes.addr);
    let run = DriverRun::on_key("kesclient-head", &server, "minio-head");
    let out = &run.output;
    assert_eq!(run.failed(), ["CreateKey(new)"], "{out}");
    assert!(
        run.summary("CreateKey(new)").contains("got=ErrKeyExists"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.ends_with(" passed, 1 failed")),
        "{out}"
    );

    let g = run.block("GenerateKey(ctx)");
    assert!(g.contains("DEK.Version=\"3\""), "{g}");
    assert!(g.contains("wire: reply \"version\"=\"3\""), "{g}");
    let d = run.block("Decrypt(ctx, version=DEK.Version)");
    assert!(d.contains("err=<nil>"), "{d}");
    assert!(d.contains("wire: request \"version\"=\"3\""), "{d}");
    assert!(d.contains("plaintext matches DEK: true"), "{d}");
    let d = run.block("Decrypt(ctx, version=\"\")");
    assert!(d.contains("err=<nil>"), "{d}");
    assert!(d.contains("wire: request \"version\" absent"), "{d}");
    assert!(d.contains("plaintext matches DEK: true"), "{d}");
    let d = run.block("Decrypt(ctx, wrong version=\"999\")");
    assert!(d.contains("err=\"key version does not exist\""), "{d}");
    assert!(d.contains("status=404"), "{d}");
    assert!(
        run.summary("Decrypt(ctx, wrong version=\"999\")")
            .ends_with("got=error(key version does not exist)"),
        "{out}"
    );
    assert!(
        run.block("GenerateKey(no ctx)")
            .contains("DEK.Version=\"3\""),
        "{out}"
    );
    assert!(
        run.summary("Decrypt(no ctx roundtrip)")
            .starts_with("PASS ")
    );
    // The driver deletes its key at the end: every version went with it.
    assert!(!srv.dir.join("keys/minio-head").exists());
    assert!(entries(&srv.dir.join("keys/.kes-versions/minio-head")).is_empty());
}

/// MinIO's client library at the version MinIO uses (kms-go v0.3.1) against rotated keys: it
/// decodes the generate reply with its extra `version` field and decrypts without a version
/// (the iv's hint finds it). The driver creates its own key, so it runs on a key rotated
/// beforehand under its `-key-name` (its `CreateKey(new)` then fails, expectedly); kesload
/// (same library, MinIO's configuration) decrypts data keys of another rotated key for a
/// second without an error.
#[test]
fn peer_kms_go_v0_3_1_uses_rotated_keys() {
    support::peers();
    let srv = Served::start("peer-v031", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    for key in ["minio-old", "minio-load"] {
        assert_eq!(c.put(&format!("/v1/key/create/{key}"), "").status, 200);
        assert_eq!(rotate(&c, key), 2);
    }
    let server = format!("https://{}", srv.kes.addr);
    let hinted_before = counter(&c, "kes_key_decrypt_hinted_version_total");
    let load = Command::new(support::peers().join("bin/kesload"))
        .args(["-server", &server, "-api-key", ADMIN_API_KEY])
        .args([
            "-op",
            "decrypt",
            "-name",
            "minio-load",
            "-c",
            "4",
            "-d",
            "1s",
        ])
        .output()
        .expect("run kesload");
    let stdout = String::from_utf8_lossy(&load.stdout);
    let line = stdout.lines().rfind(|l| l.starts_with('{')).unwrap_or("");
    let r: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "kesload printed no result ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&load.stderr)
        )
    });
    assert_eq!(r["errors"], 0, "{r}");
    let ok = r["ok"].as_f64().unwrap();
    assert!(ok > 10.0, "{r}");
    let hinted = counter(&c, "kes_key_decrypt_hinted_version_total") - hinted_before;
    assert!(
        hinted >= ok,
        "kesload's decrypts were of version 2, found by the hint: {hinted} of {ok}"
    );
    println!("kesload -op decrypt on a rotated key: {ok} decrypts, 0 errors");

    let run = DriverRun::on_key("kesclient", &server, "minio-old");
    let out = &run.output;
    assert_eq!(run.failed(), ["CreateKey(new)"], "{out}");
    // The generate reply it decoded carried the version.
    let traced = out
        .lines()
        .find(|l| l.contains("http: POST /v1/key/generate/minio-old reqbody="))
        .unwrap_or_else(|| panic!("no generate traced:\n{out}"));
    assert!(traced.contains("\\\"version\\\":\\\"2\\\""), "{traced}");
    assert!(run.block("GenerateKey(ctx)").contains("err=<nil>"), "{out}");
    for call in [
        "GenerateKey(ctx)",
        "Decrypt(ctx)",
        "Encrypt",
        "Decrypt(Encrypt output)",
    ] {
        assert!(run.summary(call).starts_with("PASS "), "{call}: {out}");
    }
}

/// The Go server on the same fs keystore directory as kes, with a rotated key: it reads
/// version 1 as "the key", so it decrypts what version 1 made (and kes decrypts what it makes),
/// lists keys (with one extra `.kes-versions` entry) and describes the rotated key; ciphertexts
/// of version 2 are not authentic to it. This is the rollback boundary of docs/key-versions.md
/// §1.
#[test]
fn peer_the_go_server_on_a_keystore_with_a_rotated_key() {
    use crate::support::gokes::GoKes;
    support::peers();
    let srv = Served::start("peer-go", "keystore:\n  fs:\n    path: {dir}/keys\n");
    let c = srv.client();
    let ctx = context("go");
    assert_eq!(c.put("/v1/key/create/shared", "").status, 200);
    assert_eq!(c.put("/v1/key/create/plain", "").status, 200);
    let v1 = generate(&c, "shared", &ctx);
    assert_eq!(rotate(&c, "shared"), 2);
    let v2 = generate(&c, "shared", &ctx);
    assert_eq!(v2.version.as_deref(), Some("2"));

    // The same config file: kes's is the Go server's schema.
    let go = GoKes::start_config(&srv.dir.join("config.yaml"))
        .unwrap_or_else(|out| panic!("kes-go:\n{out}"));
    let g = Client::new(go.addr(), &srv.ca.cert.der, Some(&srv.admin));
    assert_decrypts(&g, "shared", &v1, None);
    assert_decrypts(&g, "shared", &v1, Some("1"));
    decrypt(&g, "shared", &v2, None).assert_error(400, NOT_AUTHENTIC);
    decrypt(&g, "shared", &v2, Some("2")).assert_error(400, NOT_AUTHENTIC);
    let d = describe(&g, "shared");
    assert!(d.get("versions").is_none(), "{d}");
    // What the Go server makes with the rotated key is version 1's: kes decrypts it.
    let by_go = generate(&g, "shared", &ctx);
    assert_eq!(by_go.version, None);
    assert_decrypts(&c, "shared", &by_go, None);
    assert_decrypts(&c, "shared", &by_go, Some("1"));
    decrypt(&c, "shared", &by_go, Some("2")).assert_error(400, NOT_AUTHENTIC);

    // Listing: the Go server lists the reserved entry too; kes does not.
    let listed = g.get("/v1/key/list/*");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let mut names: Vec<String> = listed.json()["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, [".kes-versions", "plain", "shared"]);
    assert_eq!(
        c.get("/v1/key/list/*").json()["names"],
        json!(["plain", "shared"])
    );
    let go_cli = |args: &[&str]| {
        let mut cmd = Command::new(GoKes::bin());
        cmd.args(args).stdin(std::process::Stdio::null());
        for var in support::CLIENT_VARS {
            cmd.env_remove(var);
        }
        cmd.env("KES_SERVER", format!("https://{}", go.addr()))
            .env("KES_API_KEY", ADMIN_API_KEY);
        support::Run::from_output(cmd.output().expect("run kes-go"))
    };
    let ls = go_cli(&["key", "ls", "-k"]).ok();
    let lines: Vec<&str> = ls.stdout.lines().map(str::trim).collect();
    for name in [".kes-versions", "plain", "shared"] {
        assert!(lines.contains(&name), "kes-go key ls lists {name}: {ls:?}");
    }
    let info = go_cli(&["key", "info", "shared", "-k"]).ok();
    assert!(info.stdout.contains("shared"), "{info:?}");
    // The rotation is untouched by all that.
    assert_decrypts(&c, "shared", &v2, Some("2"));
    assert_eq!(describe(&c, "shared")["version"], "2");
}
