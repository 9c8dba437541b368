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

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::client::{Client, Reply};
use support::{ADMIN_API_KEY, Served, TempDir};

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
    serde_json::from_str(include_str!("vectors/vectors.json")).unwrap()
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
