//! The Vault keystore against real OpenBao servers (see `support/openbao.rs`).
//!
//! Each test starts its own server(s) on free ports, so tests run in parallel. Tests print what
//! they measured (run with `--nocapture` to see it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::support::openbao::{self, Bao, Cluster};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use kes::config::{VaultAppRole, VaultConfig, VaultKubernetes, VaultTls, VaultTransit};
use kes::keystore::vault::{Startup, VaultKeystore};
use kes::keystore::{Error, Keystore, UnreachableReason};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// helpers

/// A value that looks like a stored key (§6.1): base64 of random bytes. Opaque to the keystore.
fn value() -> Vec<u8> {
    let mut bytes = [0u8; 48];
    SystemRandom::new().fill(&mut bytes).unwrap();
    STANDARD.encode(bytes).into_bytes()
}

fn approle(ids: (String, String)) -> VaultAppRole {
    VaultAppRole {
        engine: "approle".into(),
        namespace: String::new(),
        id: ids.0,
        secret: ids.1,
        retry: Duration::from_secs(1),
    }
}

/// A config for `endpoints` with AppRole `ids`: K/V at `kv`, ping every second, short timeouts.
fn config(endpoints: Vec<String>, engine: &str, v2: bool, ids: (String, String)) -> VaultConfig {
    VaultConfig {
        endpoints,
        engine: engine.into(),
        kv_v2: v2,
        approle: Some(approle(ids)),
        ping: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        // These tests are about correctness, not latency: a read may wait as long as any
        // other call, so that a machine that freezes for a second or two (shared CI runners
        // do) cannot fail them. tests/faults.rs measures the default read deadline.
        read_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Keeps every log line of the process (all levels), so tests can check what the keystore
/// logs; prints them too when `RUST_LOG` is set (`RUST_LOG=1 cargo test --test it
/// vault_keystore:: -- --nocapture`).
struct CaptureLog {
    lines: Mutex<Vec<String>>,
    print: bool,
}

impl log::Log for CaptureLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if !record.target().starts_with("kes") {
            return;
        }
        let line = format!("[{} {}] {}", record.level(), record.target(), record.args());
        if self.print {
            eprintln!("{line}");
        }
        self.lines.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

fn captured_log() -> &'static CaptureLog {
    static LOG: std::sync::OnceLock<&'static CaptureLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static CaptureLog = Box::leak(Box::new(CaptureLog {
            lines: Mutex::new(Vec::new()),
            print: std::env::var_os("RUST_LOG").is_some(),
        }));
        let _ = log::set_logger(log);
        log::set_max_level(log::LevelFilter::Trace);
        log
    })
}

fn connect(cfg: &VaultConfig) -> VaultKeystore {
    captured_log();
    VaultKeystore::connect(cfg).unwrap_or_else(|e| panic!("connect: {e}"))
}

/// create/get/list/delete, create over an existing key, missing keys.
fn exercise(store: &VaultKeystore, tag: &str) {
    let a = format!("{tag}-a");
    let b = format!("{tag}-b");
    let other = format!("other-{tag}");
    let (va, vb, vo) = (value(), value(), value());
    store.create(&a, &va).unwrap();
    store.create(&b, &vb).unwrap();
    store.create(&other, &vo).unwrap();
    assert_eq!(&store.get(&a).unwrap()[..], &va[..]);
    assert_eq!(&store.get(&b).unwrap()[..], &vb[..]);

    // Never overwrite: Exists, and the stored value stays.
    assert_eq!(store.create(&a, &value()), Err(Error::Exists));
    assert_eq!(&store.get(&a).unwrap()[..], &va[..]);

    assert_eq!(
        store.get(&format!("{tag}-missing")).map(|_| ()),
        Err(Error::NotFound)
    );

    let page = store.list(tag, 1024).unwrap();
    assert_eq!(page.names, vec![a.clone(), b.clone()]);
    assert_eq!(page.continue_at, "");
    let page = store.list(tag, 1).unwrap();
    assert_eq!(page.names, vec![a.clone()]);
    assert_eq!(page.continue_at, b);
    let all = store.list("", 1024).unwrap();
    assert!(all.names.contains(&other), "{:?}", all.names);

    store.delete(&a).unwrap();
    assert_eq!(store.get(&a).map(|_| ()), Err(Error::NotFound));
    assert_eq!(store.delete(&a), Err(Error::NotFound));
    // The name is free again.
    store.create(&a, &va).unwrap();
    assert_eq!(&store.get(&a).unwrap()[..], &va[..]);
    store.status().unwrap();
}

// ---------------------------------------------------------------------------------------------
// K/V v1 and v2, prefix, namespaces, policies

/// What every key operation answers while Vault is sealed.
fn sealed() -> Error {
    Error::unreachable(UnreachableReason::Sealed, "vault is sealed")
}

#[test]
fn kv_v1_and_v2_with_seed_policies() {
    let bao = Bao::dev();
    let v1 = bao.seed_setup(None, "kv", 1, true);
    let v2 = bao.seed_setup(None, "kv2", 2, true);

    // The launcher's config block for end-to-end tests is valid YAML of the §7.1 shape.
    let yaml: serde_json::Value = yaml_serde::from_str(&bao.keystore_yaml("kv", 1, &v1)).unwrap();
    assert_eq!(yaml["keystore"]["vault"]["endpoint"][0], bao.addr);
    assert_eq!(yaml["keystore"]["vault"]["approle"]["secret"], v1.1);
    assert_eq!(yaml["keystore"]["vault"]["version"], "v1");

    let start = Instant::now();
    let store = connect(&config(vec![bao.addr.clone()], "kv", false, v1.clone()));
    exercise(&store, "v1");
    // The layout of §6.3: one secret per key, one field named after the key.
    let (status, secret) = bao.read(None, "kv/v1-b");
    assert_eq!(status, 200);
    assert!(secret["data"]["v1-b"].is_string(), "{secret}");
    println!("kv v1: connect + exercise in {:?}", start.elapsed());

    let start = Instant::now();
    let store = connect(&config(vec![bao.addr.clone()], "kv2", true, v2.clone()));
    exercise(&store, "v2");
    let (status, secret) = bao.read(None, "kv2/data/v2-b");
    assert_eq!(status, 200);
    assert!(secret["data"]["data"]["v2-b"].is_string(), "{secret}");
    assert_eq!(secret["data"]["metadata"]["version"], 1);
    println!("kv v2: connect + exercise in {:?}", start.elapsed());

    // A prefix (with sloppy slashes) puts the keys below it.
    for (v2, ids, mount) in [(false, v1, "kv"), (true, v2, "kv2")] {
        let mut cfg = config(vec![bao.addr.clone()], &format!("/{mount}/"), v2, ids);
        cfg.prefix = "/tenant-a//keys/".into();
        let store = connect(&cfg);
        exercise(&store, "pre");
        let path = if v2 {
            format!("{mount}/data/tenant-a/keys/pre-b")
        } else {
            format!("{mount}/tenant-a/keys/pre-b")
        };
        assert_eq!(bao.read(None, &path).0, 200, "{path}");
        // The listing only sees the prefix.
        assert!(
            !store
                .list("", 1024)
                .unwrap()
                .names
                .iter()
                .any(|n| n.starts_with("v1") || n.starts_with("v2"))
        );
    }
}

#[test]
fn kv_v1_seed_policy_without_list_says_what_is_missing() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 1, false);
    let store = connect(&config(vec![bao.addr.clone()], "kv", false, ids));
    store.create("k1", &value()).unwrap();
    store.get("k1").unwrap();
    let start = Instant::now();
    let err = store.list("", 100).unwrap_err();
    println!(
        "list without the list capability: {err} (in {:?})",
        start.elapsed()
    );
    match &err {
        Error::Denied(msg) => {
            assert!(msg.contains("permission denied listing 'kv/'"), "{msg}");
            assert!(
                msg.contains("needs the 'list' capability on 'kv/'"),
                "{msg}"
            );
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    store.delete("k1").unwrap();

    // With `list` added to the policy, listing works (same token: policies are looked up live).
    bao.write_policy(None, "kes-kv", &Bao::seed_policy("kv", 1, true));
    store.create("k2", &value()).unwrap();
    assert_eq!(store.list("", 100).unwrap().names, vec!["k2"]);
}

#[test]
fn namespaces() {
    let bao = Bao::dev();
    bao.create_namespace("tenant1");
    let ns = Some("tenant1");
    let v1 = bao.seed_setup(ns, "kv", 1, true);
    let v2 = bao.seed_setup(ns, "kv2", 2, true);

    // AppRole inside the namespace (approle.namespace empty = the keystore's namespace).
    for (v2, ids, mount) in [(false, v1, "kv"), (true, v2, "kv2")] {
        let mut cfg = config(vec![bao.addr.clone()], mount, v2, ids);
        cfg.namespace = "tenant1".into();
        let store = connect(&cfg);
        exercise(&store, "ns");
        let path = if v2 {
            format!("{mount}/data/ns-b")
        } else {
            format!("{mount}/ns-b")
        };
        assert_eq!(bao.read(ns, &path).0, 200);
        // Not in the root namespace.
        assert_eq!(bao.read(None, &path).0, 404);
    }

    // AppRole in the root namespace (approle.namespace "/"), data in tenant1.
    bao.write_policy(
        None,
        "kes-root",
        "path \"tenant1/kv/*\" { capabilities = [\"create\", \"read\", \"delete\", \"list\"] }",
    );
    let ids = bao.approle(
        None,
        "kes-root",
        json!({"token_policies": ["kes-root"], "period": "5m"}),
    );
    let mut cfg = config(vec![bao.addr.clone()], "kv", false, ids);
    cfg.namespace = "tenant1".into();
    cfg.approle.as_mut().unwrap().namespace = "/".into();
    let store = connect(&cfg);
    store.create("from-root-login", &value()).unwrap();
    assert_eq!(bao.read(ns, "kv/from-root-login").0, 200);

    // Without the namespace, the same AppRole credentials of tenant1 do not log in.
    let ids = bao.approle(
        ns,
        "kes-kv",
        json!({"token_policies": ["kes-kv"], "period": "5m"}),
    );
    let err =
        VaultKeystore::connect(&config(vec![bao.addr.clone()], "kv", false, ids)).unwrap_err();
    println!("login outside the namespace: {err}");
    assert!(err.to_string().contains("/v1/auth/approle/login"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Tokens: renewal, re-login, expired tokens

#[test]
fn short_tokens_never_fail_a_request() {
    let bao = Bao::dev();
    bao.seed_setup(None, "kv", 1, true);
    let ids = bao.approle(
        None,
        "short",
        json!({"token_ttl": "3s", "token_max_ttl": "6s", "token_policies": ["kes-kv"]}),
    );
    let store = Arc::new(connect(&config(vec![bao.addr.clone()], "kv", false, ids)));
    let keys = create_keys(&store, "k", 8);
    let started = Instant::now();
    let readers = Readers::start(store, keys, 4);
    std::thread::sleep(Duration::from_secs(20));
    let (ok, errors, slowest) = readers.finish();
    println!(
        "{:?} of gets with token_ttl=3s token_max_ttl=6s: {ok} ok, {} failed, slowest per thread {slowest:?}, live tokens now {}",
        started.elapsed(),
        errors.len(),
        bao.token_count(None)
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(ok > 500);
}

#[test]
fn logs_and_errors_never_show_secrets() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 1, false);
    let secret_id = ids.1.clone();
    let store = connect(&config(vec![bao.addr.clone()], "kv", false, ids.clone()));
    let v = value();
    store.create("secret-key", &v).unwrap();
    let mut errors = Vec::new();
    // Re-logins, a policy denial, a failing login, a sealed Vault: everything that logs.
    bao.revoke_logins(None, "approle");
    store.get("secret-key").unwrap();
    errors.push(store.list("", 10).unwrap_err().to_string());
    bao.ok(
        None,
        "POST",
        "/v1/auth/approle/role/kes-kv/secret-id/destroy",
        Some(&json!({"secret_id": secret_id})),
    );
    bao.revoke_logins(None, "approle");
    errors.push(store.get("secret-key").unwrap_err().to_string());
    bao.seal();
    std::thread::sleep(Duration::from_millis(1500));
    errors.push(store.get("secret-key").unwrap_err().to_string());
    bao.unseal();
    errors.push(
        VaultKeystore::connect(&config(vec![bao.addr.clone()], "kv", false, ids))
            .unwrap_err()
            .to_string(),
    );

    let log = captured_log().lines.lock().unwrap().clone();
    let text = log.join("\n") + "\n" + &errors.join("\n");
    println!(
        "checked {} log lines and {} errors, e.g. {:?}",
        log.len(),
        errors.len(),
        errors
    );
    let value_text = std::str::from_utf8(&v).unwrap();
    assert!(!text.contains(&secret_id), "the AppRole secret ID leaked");
    assert!(!text.contains(value_text), "a stored value leaked");
    // OpenBao tokens look like `s.` + 24 characters.
    for (i, _) in text.match_indices("s.") {
        let rest: String = text[i + 2..].chars().take(24).collect();
        assert!(
            !(rest.len() == 24 && rest.chars().all(|c| c.is_ascii_alphanumeric())),
            "something like a token leaked: s.{rest}"
        );
    }
}

#[test]
fn non_renewable_tokens_are_replaced_in_time() {
    // Batch tokens cannot be renewed: the keystore must log in again before they expire.
    let bao = Bao::dev();
    bao.seed_setup(None, "kv", 2, true);
    let ids = bao.approle(
        None,
        "batch",
        json!({"token_type": "batch", "token_ttl": "3s", "token_max_ttl": "3s", "token_policies": ["kes-kv"]}),
    );
    let store = Arc::new(connect(&config(vec![bao.addr.clone()], "kv", true, ids)));
    let keys = create_keys(&store, "b", 4);
    let started = Instant::now();
    let readers = Readers::start(store, keys, 2);
    std::thread::sleep(Duration::from_secs(10));
    let (ok, errors, slowest) = readers.finish();
    println!(
        "{:?} of gets with non-renewable 3 s batch tokens: {ok} ok, {} failed, slowest {slowest:?}",
        started.elapsed(),
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn revoked_token_causes_one_login_and_a_retry() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 2, true);
    let store = Arc::new(connect(&config(vec![bao.addr.clone()], "kv", true, ids)));
    store.create("k", &value()).unwrap();
    assert_eq!(bao.token_count(None), 2); // root + ours

    for round in 0..3 {
        bao.revoke_logins(None, "approle");
        assert_eq!(bao.token_count(None), 1);
        // A burst of requests, all with the revoked token.
        let barrier = Arc::new(Barrier::new(16));
        let start = Instant::now();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.get("k").map(|_| ())
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let tokens = bao.token_count(None);
        println!(
            "round {round}: 16 concurrent gets after revocation: {} ok in {:?}; live tokens now {tokens} (root + logins)",
            results.iter().filter(|r| r.is_ok()).count(),
            start.elapsed()
        );
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(tokens, 2, "a burst of 403s must cause exactly one login");
    }
    // A create right after revocation also works (its write gets 403 like an existing key would).
    bao.revoke_logins(None, "approle");
    store.create("after-revoke", &value()).unwrap();
    assert_eq!(store.create("after-revoke", &value()), Err(Error::Exists));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes-style login (JWT auth mounted at `kubernetes`)

/// An ES256 key pair: the signer and the public key as PEM.
fn es256_key() -> (ring::signature::EcdsaKeyPair, String) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo for a P-256 key: fixed header + the uncompressed point.
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = STANDARD.encode(spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    (
        pair,
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        ),
    )
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A JWT signed with `key` (ES256: the signature is r‖s).
fn jwt(key: &ring::signature::EcdsaKeyPair, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"sub": sub, "aud": "bao-test", "iss": "kes-test", "iat": now, "nbf": now - 5, "exp": now + 3600})
            .to_string(),
    );
    let input = format!("{header}.{claims}");
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[test]
fn kubernetes_login_with_jwt_file() {
    let bao = Bao::dev();
    bao.enable_kv(None, "kv", 1);
    bao.write_policy(None, "kes", &Bao::seed_policy("kv", 1, true));
    let (key, pubkey) = es256_key();
    bao.ok(
        None,
        "POST",
        "/v1/sys/auth/kubernetes",
        Some(&json!({"type": "jwt"})),
    );
    bao.ok(
        None,
        "POST",
        "/v1/auth/kubernetes/config",
        Some(&json!({"jwt_validation_pubkeys": [pubkey]})),
    );
    bao.ok(
        None,
        "POST",
        "/v1/auth/kubernetes/role/kes",
        Some(&json!({"role_type": "jwt", "bound_audiences": ["bao-test"], "user_claim": "sub", "token_policies": ["kes"], "token_ttl": "1h"})),
    );

    // The JWT as a value.
    let mut cfg = config(
        vec![bao.addr.clone()],
        "kv",
        false,
        (String::new(), String::new()),
    );
    cfg.approle = None;
    cfg.kubernetes = Some(VaultKubernetes {
        engine: String::new(), // default: kubernetes
        namespace: String::new(),
        role: "kes".into(),
        jwt: jwt(&key, "system:serviceaccount:kes:kes"),
        retry: Duration::from_secs(1),
    });
    let store = connect(&cfg);
    store.create("k8s-value", &value()).unwrap();
    drop(store);

    // The JWT as a file path, re-read at every login.
    let jwt_file = bao.dir.join("sa-token");
    std::fs::write(&jwt_file, jwt(&key, "system:serviceaccount:kes:kes") + "\n").unwrap();
    cfg.kubernetes.as_mut().unwrap().jwt = jwt_file.display().to_string();
    let store = connect(&cfg);
    store.create("k8s-file", &value()).unwrap();

    // A broken file: the next login fails, the request fails.
    std::fs::write(&jwt_file, "not-a-jwt").unwrap();
    bao.revoke_logins(None, "kubernetes");
    let err = store.get("k8s-file").unwrap_err();
    println!("get with a revoked token and an invalid JWT file: {err}");
    // A fresh JWT in the file (a rotated service-account token): picked up by the next login.
    std::fs::write(&jwt_file, jwt(&key, "system:serviceaccount:kes:kes")).unwrap();
    let start = Instant::now();
    loop {
        match store.get("k8s-file") {
            Ok(_) => break,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "never recovered: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "re-login with the rewritten JWT file after {:?} (retry = 1 s)",
        start.elapsed()
    );

    // A wrong role: connect fails with the path and status, and no JWT in the message.
    cfg.kubernetes.as_mut().unwrap().role = "nope".into();
    let err = VaultKeystore::connect(&cfg).unwrap_err().to_string();
    println!("wrong role: {err}");
    assert!(
        err.contains("PUT /v1/auth/kubernetes/login") && err.contains("400"),
        "{err}"
    );
    assert!(!err.contains("eyJ"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Transit

#[test]
fn transit_wrapping() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 2, true);
    bao.enable_transit(None, "transit", "kes-wrap");
    bao.write_policy(
        None,
        "kes-kv",
        &(Bao::seed_policy("kv", 2, true)
            + "path \"transit/encrypt/kes-wrap\" { capabilities = [\"update\"] }\n\
               path \"transit/decrypt/kes-wrap\" { capabilities = [\"update\"] }\n"),
    );
    let mut cfg = config(vec![bao.addr.clone()], "kv", true, ids.clone());
    cfg.transit = Some(VaultTransit {
        engine: String::new(),
        key: "kes-wrap".into(),
    });
    let store = connect(&cfg);

    let v = value();
    store.create("wrapped", &v).unwrap();
    let stored = bao.read(None, "kv/data/wrapped").1["data"]["data"]["wrapped"]
        .as_str()
        .unwrap()
        .to_string();
    println!("stored with transit: {}…", &stored[..20]);
    assert!(stored.starts_with("vault:v1:"), "{stored}");
    assert_ne!(stored.as_bytes(), &v[..]);
    assert_eq!(&store.get("wrapped").unwrap()[..], &v[..]);
    exercise(&store, "transit");

    // After a rotation of the transit key, creates still work (vault:v2:) and old values read.
    bao.ok(None, "POST", "/v1/transit/keys/kes-wrap/rotate", None);
    let v2 = value();
    store.create("wrapped-2", &v2).unwrap();
    let stored = bao.read(None, "kv/data/wrapped-2").1["data"]["data"]["wrapped-2"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stored.starts_with("vault:v2:"), "{stored}");
    assert_eq!(&store.get("wrapped-2").unwrap()[..], &v2[..]);
    assert_eq!(&store.get("wrapped").unwrap()[..], &v[..]);

    // Without the transit settings a wrapped value is an error, not a key.
    let plain = connect(&config(vec![bao.addr.clone()], "kv", true, ids));
    let err = plain.get("wrapped").unwrap_err();
    println!("wrapped value without transit config: {err}");
    assert!(
        matches!(&err, Error::Failed(m) if m.contains("transit")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

#[test]
fn https_needs_the_right_ca() {
    let bao = Bao::dev_tls();
    let ids = bao.seed_setup(None, "kv", 1, true);
    let ca = bao.ca_file.clone().unwrap();

    // tls.ca as a file.
    let mut cfg = config(vec![bao.addr.clone()], "kv", false, ids.clone());
    cfg.tls = VaultTls {
        ca: Some(ca.clone()),
        ..Default::default()
    };
    let store = connect(&cfg);
    exercise(&store, "tls");

    // tls.ca as a directory of PEM files (with a file that is not a certificate).
    let dir = bao.dir.join("ca-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&ca, dir.join("vault-ca.pem")).unwrap();
    std::fs::write(dir.join("README"), "not a certificate\n").unwrap();
    cfg.tls.ca = Some(dir);
    connect(&cfg).get("tls-b").unwrap();

    // Without tls.ca: the system roots do not know the dev CA → refused, clearly.
    cfg.tls.ca = None;
    let start = Instant::now();
    let err = VaultKeystore::connect(&cfg).unwrap_err();
    println!("https without tls.ca: {err} (after {:?})", start.elapsed());
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(
        err.unreachable_reason(),
        Some(UnreachableReason::Tls),
        "{err:?}"
    );
    // A TLS failure is a configuration problem: it stops even a start that waits for Vault.
    let err = VaultKeystore::start(&cfg, Startup::Wait).unwrap_err();
    assert_eq!(
        err.unreachable_reason(),
        Some(UnreachableReason::Tls),
        "{err:?}"
    );

    // A client certificate whose key does not match is refused at construction.
    let other = rcgen::KeyPair::generate().unwrap();
    let key_file = bao.dir.join("other-key.pem");
    std::fs::write(&key_file, other.serialize_pem()).unwrap();
    cfg.tls = VaultTls {
        ca: Some(ca),
        cert: Some(bao.dir.join("vault-cert.pem")),
        key: Some(key_file),
    };
    let err = VaultKeystore::connect(&cfg).unwrap_err().to_string();
    println!("mismatched client certificate: {err}");
    assert!(err.contains("does not match"), "{err}");
    // The matching pair is accepted (OpenBao does not ask for it; it must not break anything).
    cfg.tls.key = Some(bao.dir.join("vault-key.pem"));
    connect(&cfg).get("tls-b").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Sealed, dead, restarted

#[test]
fn sealed_vault_fails_fast_and_recovers() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 1, true);
    let store = connect(&config(vec![bao.addr.clone()], "kv", false, ids));
    store.create("k", &value()).unwrap();

    bao.seal();
    let sealed_at = Instant::now();
    // The next ping (every second) sees it; a request meanwhile sees 503 itself.
    let seen = loop {
        match store.get("k") {
            Err(Error::Unreachable {
                reason: UnreachableReason::Sealed,
                detail,
            }) if detail == "vault is sealed" => break sealed_at.elapsed(),
            Err(e) => panic!("unexpected error while sealed: {e:?}"),
            Ok(_) => assert!(sealed_at.elapsed() < Duration::from_secs(5)),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every operation now fails at once.
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(store.get("k").map(|_| ()), Err(sealed()));
        assert_eq!(store.create("k2", &value()), Err(sealed()));
        assert_eq!(store.list("", 10), Err(sealed()));
        assert_eq!(store.delete("k"), Err(sealed()));
    }
    let per_call = start.elapsed() / 400;
    assert_eq!(store.status(), Err(sealed()));
    println!("sealed: noticed after {seen:?}; then each call failed in {per_call:?}");
    assert!(per_call < Duration::from_millis(10));
    assert!(seen < Duration::from_secs(3));

    bao.unseal();
    let unsealed_at = Instant::now();
    loop {
        match store.get("k") {
            Ok(_) => break,
            Err(Error::Unreachable { .. }) => assert!(
                unsealed_at.elapsed() < Duration::from_secs(5),
                "no recovery"
            ),
            Err(e) => panic!("unexpected error after unseal: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "unsealed: keystore usable again after {:?}",
        unsealed_at.elapsed()
    );
    store.create("k3", &value()).unwrap();
}

#[test]
fn raft_node_killed_and_restarted() {
    let mut bao = Bao::raft();
    let ids = bao.seed_setup(None, "kv", 2, true);
    let store = connect(&config(vec![bao.addr.clone()], "kv", true, ids));
    let v = value();
    store.create("durable", &v).unwrap();

    bao.kill();
    let start = Instant::now();
    let err = store.get("durable").unwrap_err();
    println!("get right after the kill: {err} (in {:?})", start.elapsed());
    assert!(matches!(err, Error::Unreachable { .. }));
    // After the health loop saw it: immediate.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let err = store.get("durable").unwrap_err();
    println!("get while down: {err} (in {:?})", start.elapsed());
    assert!(start.elapsed() < Duration::from_millis(50));

    let restart = Instant::now();
    bao.restart();
    println!("restarted and unsealed in {:?}", restart.elapsed());
    let start = Instant::now();
    loop {
        match store.get("durable") {
            Ok(got) => {
                assert_eq!(&got[..], &v[..]);
                break;
            }
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "no recovery: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "usable again {:?} after the unseal (token survived)",
        start.elapsed()
    );
    store.create("after-restart", &value()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Timeouts, dead endpoints

#[test]
fn a_silent_server_cannot_hang_a_caller() {
    // Accepts connections, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let mut cfg = config(vec![addr], "kv", false, ("id".into(), "secret".into()));
    cfg.response_timeout = Duration::from_millis(700);
    let start = Instant::now();
    let err = VaultKeystore::connect(&cfg).unwrap_err();
    let took = start.elapsed();
    println!("login against a silent server: {err} after {took:?} (response timeout 700 ms)");
    assert_eq!(
        err.unreachable_reason(),
        Some(UnreachableReason::Timeout),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn dead_endpoints_are_skipped() {
    let bao = Bao::dev();
    let ids = bao.seed_setup(None, "kv", 2, true);
    let dead = format!("http://127.0.0.1:{}", openbao::free_port_pair());
    let store = connect(&config(
        vec![dead.clone(), bao.addr.clone()],
        "kv",
        true,
        ids,
    ));
    let start = Instant::now();
    exercise(&store, "ha");
    println!("exercise with a dead first endpoint: {:?}", start.elapsed());
    assert!(store.status().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Racing creates

/// Successful creates per name: (thread, value).
type Wins = HashMap<String, Vec<(usize, Vec<u8>)>>;

/// Two keystores (as two KES servers would have) create the same 50 names from 8 threads each.
fn race(stores: [Arc<VaultKeystore>; 2], read: impl Fn(&str) -> String) {
    let names: Vec<String> = (0..50).map(|i| format!("race-{i:02}")).collect();
    let wins: Arc<Mutex<Wins>> = Arc::default();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(16));
    let start = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = stores[t % 2].clone();
            let (names, wins, errors, barrier) =
                (names.clone(), wins.clone(), errors.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Each thread walks the names from a different place.
                for k in 0..names.len() {
                    let name = &names[(k + t * 7) % names.len()];
                    let v = value();
                    match store.create(name, &v) {
                        Ok(()) => wins
                            .lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push((t, v)),
                        Err(Error::Exists) => {}
                        Err(e) => errors.lock().unwrap().push(format!("{name}: {e}")),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wins = wins.lock().unwrap();
    println!(
        "race: 16 threads x 50 creates in {:?}; errors: {:?}",
        start.elapsed(),
        errors.lock().unwrap()
    );
    assert!(errors.lock().unwrap().is_empty());
    for name in &names {
        let w = wins.get(name).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(w.len(), 1, "{name}: {} creates succeeded", w.len());
        // The value in Vault is the winner's, and both keystores read it.
        assert_eq!(read(name).as_bytes(), &w[0].1[..], "{name} was overwritten");
        for store in &stores {
            assert_eq!(&store.get(name).unwrap()[..], &w[0].1[..]);
        }
    }
}

#[test]
fn racing_creates_never_overwrite() {
    let bao = Bao::dev();
    for (mount, version) in [("kv1", 1u8), ("kv2", 2u8)] {
        let ids = bao.seed_setup(None, mount, version, true);
        let cfg = config(vec![bao.addr.clone()], mount, version == 2, ids);
        let stores = [Arc::new(connect(&cfg)), Arc::new(connect(&cfg))];
        println!("K/V v{version}:");
        race(stores, |name| {
            let (path, field) = if version == 2 {
                (format!("{mount}/data/{name}"), &["data", "data", name][..])
            } else {
                (format!("{mount}/{name}"), &["data", name][..])
            };
            let (_, reply) = bao.read(None, &path);
            field
                .iter()
                .fold(&reply, |v, k| &v[*k])
                .as_str()
                .unwrap()
                .to_string()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A three-node Raft cluster

/// Threads that `get` known keys in a loop until stopped, counting successes and failures.
struct Readers {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<Duration>>,
}

impl Readers {
    fn start(
        store: Arc<VaultKeystore>,
        keys: Arc<Vec<(String, Vec<u8>)>>,
        threads: usize,
    ) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (store, keys, stop, reads, errors) = (
                    store.clone(),
                    keys.clone(),
                    stop.clone(),
                    reads.clone(),
                    errors.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = t;
                    let mut slowest = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, v) = &keys[i % keys.len()];
                        let start = Instant::now();
                        match store.get(name) {
                            Ok(got) => {
                                assert_eq!(&got[..], &v[..]);
                                reads.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => errors
                                .lock()
                                .unwrap()
                                .push(format!("after {:?}: {e}", start.elapsed())),
                        }
                        slowest = slowest.max(start.elapsed());
                        i += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    slowest
                })
            })
            .collect();
        Readers {
            stop,
            reads,
            errors,
            threads,
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Stops the readers: (successful reads, errors, slowest read per thread).
    fn finish(self) -> (usize, Vec<String>, Vec<Duration>) {
        self.stop.store(true, Ordering::Relaxed);
        let slowest = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (self.reads.load(Ordering::Relaxed), errors, slowest)
    }
}

/// Creates `n` keys named `<tag>-<i>` and returns them with their values.
fn create_keys(store: &VaultKeystore, tag: &str, n: usize) -> Arc<Vec<(String, Vec<u8>)>> {
    let keys: Vec<_> = (0..n).map(|i| (format!("{tag}-{i}"), value())).collect();
    for (name, v) in &keys {
        store.create(name, v).unwrap();
    }
    Arc::new(keys)
}

#[test]
fn raft_cluster_survives_the_leader() {
    let mut cluster = Cluster::raft3();
    let ids = cluster.active().seed_setup(None, "kv", 2, true);
    let short = cluster.active().approle(
        None,
        "short",
        json!({"token_ttl": "3s", "token_max_ttl": "6s", "token_policies": ["kes-kv"]}),
    );
    // Give the mount and the roles a moment to reach the standbys (a new KV v2 mount answers
    // 400 "Waiting for the primary to upgrade …" on standbys for a few hundred ms).
    std::thread::sleep(Duration::from_millis(800));
    let endpoints = cluster.endpoints();
    let mut reversed = endpoints.clone();
    reversed.reverse();
    let stores = [
        Arc::new(connect(&config(endpoints.clone(), "kv", true, ids.clone()))),
        Arc::new(connect(&config(reversed, "kv", true, ids))),
    ];

    // Short tokens on a cluster: renewals and re-logins (each new token replacing the old after
    // a short delay, see `auth`) while reads go on, as long as there is a leader. (A token that
    // expires during an election cannot be helped: no node can log in, and a standby answers an
    // expired token with 307.)
    let short_store = Arc::new(connect(&config(endpoints, "kv", true, short)));
    let started = Instant::now();
    let short_keys = create_keys(&short_store, "short", 10);
    let short_readers = Readers::start(short_store, short_keys, 2);

    // Racing creates through different node orders.
    let leader = cluster.leader().unwrap();
    race(stores.clone(), |name| {
        let (_, reply) = cluster.nodes[leader].read(None, &format!("kv/data/{name}"));
        reply["data"]["data"][name].as_str().unwrap().to_string()
    });
    let keys = create_keys(&stores[0], "ha", 20);

    std::thread::sleep(Duration::from_secs(8).saturating_sub(started.elapsed()));
    let (ok, errors, slowest) = short_readers.finish();
    println!(
        "short tokens (3s/6s) on the cluster: {ok} reads in {:?}, {} failed, slowest {slowest:?}",
        started.elapsed(),
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");

    // Kill the leader while readers run.
    let readers = Readers::start(stores[0].clone(), keys, 3);
    std::thread::sleep(Duration::from_millis(500));
    let before = readers.reads();
    let old = cluster.leader().unwrap();
    cluster.nodes[old].kill();
    let killed = Instant::now();
    println!(
        "killed leader node{} ({})",
        old + 1,
        cluster.nodes[old].addr
    );

    // A create during the election waits for the new leader and succeeds.
    let v = value();
    stores[0].create("after-kill", &v).unwrap();
    let first_create = killed.elapsed();
    let new = cluster
        .wait_leader(Duration::from_secs(30))
        .expect("a new leader");
    println!(
        "first create after the kill succeeded after {first_create:?}; new leader node{}",
        new + 1
    );
    for i in 0..10 {
        let start = Instant::now();
        stores[i % 2]
            .create(&format!("post-election-{i}"), &value())
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(stores[1].create("after-kill", &value()), Err(Error::Exists));
    assert_eq!(&stores[1].get("after-kill").unwrap()[..], &v[..]);

    std::thread::sleep(Duration::from_secs(4).saturating_sub(killed.elapsed()));
    let (total, errors, slowest) = readers.finish();
    println!(
        "reads: {before} before the kill, {total} in total; {} failed; slowest per reader {slowest:?}",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "reads failed during the election: {errors:?}"
    );
    assert!(stores[0].status().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Key versions (docs/key-versions.md)

/// A real stored key value (§6.1): rotation reads version 1 to find the ring.
fn key_value(seed: u8) -> Vec<u8> {
    kes::crypto::KeyVersion {
        key: kes::crypto::SecretKey::new(kes::crypto::Algorithm::Aes256, [seed; 32]),
        hmac_key: Some(kes::crypto::HmacKey::new([seed; 32])),
        created_at: None,
        created_by: String::new(),
        algorithm_explicit: true,
    }
    .encode()
}

#[test]
fn key_versions_and_racing_rotations_on_kv_v1_and_v2() {
    let bao = Bao::dev();
    for (mount, version) in [("kv1", 1u8), ("kv2", 2u8)] {
        let ids = bao.seed_setup(None, mount, version, true);
        let cfg = config(vec![bao.addr.clone()], mount, version == 2, ids);
        let stores = [Arc::new(connect(&cfg)), Arc::new(connect(&cfg))];
        stores[0].create("rot", &key_value(1)).unwrap();
        let ring = kes::keyring::ring_id(&stores[1].get("rot").unwrap()).unwrap();
        assert_eq!(stores[1].list_versions("rot", &ring).unwrap(), vec![]);

        // Two "nodes", four threads each, three rotations per thread, all at once.
        let start = Instant::now();
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (store, barrier) = (stores[usize::from(t % 2)].clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..3u8)
                        .map(|j| {
                            let seed = 10 + t * 3 + j;
                            let n = kes::keyring::rotate(&*store, "rot", || {
                                Ok(zeroize::Zeroizing::new(key_value(seed)))
                            })
                            .unwrap_or_else(|e| panic!("rotate: {e:?}"));
                            (n, seed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut won: Vec<(u32, u8)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        won.sort();
        println!(
            "K/V v{version}: 8 threads x 3 rotations through 2 keystores in {:?}",
            start.elapsed()
        );
        assert_eq!(
            won.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (2..26).collect::<Vec<_>>(),
            "every rotation got its own number"
        );
        for (n, seed) in &won {
            for store in &stores {
                assert_eq!(
                    &store.get_version("rot", &ring, *n).unwrap()[..],
                    &key_value(*seed)[..],
                    "version {n} was overwritten"
                );
            }
        }
        // Version 1 is untouched; never overwrite a version.
        assert_eq!(&stores[0].get("rot").unwrap()[..], &key_value(1)[..]);
        assert_eq!(
            stores[0].create_version("rot", &ring, 2, &key_value(99)),
            Err(Error::Exists)
        );
        assert_eq!(
            stores[0].get_version("rot", &ring, 26).map(|_| ()),
            Err(Error::NotFound)
        );
        // Markers.
        stores[1].create_marker("rot", &ring, 3, b"{}").unwrap();
        assert_eq!(
            stores[0].create_marker("rot", &ring, 3, b"{}"),
            Err(Error::Exists)
        );
        assert_eq!(&stores[0].get_marker("rot", &ring, 3).unwrap()[..], b"{}");
        let listed = stores[0].list_versions("rot", &ring).unwrap();
        assert_eq!(listed.len(), 24);
        assert!(listed.iter().all(|e| e.value && e.retired == (e.n == 3)));
        // The layout: a secret per version beside the key, one field named after the key.
        let (path, field) = if version == 2 {
            (
                format!("{mount}/data/.kes-versions/rot/{ring}/2"),
                &["data", "data", "rot"][..],
            )
        } else {
            (
                format!("{mount}/.kes-versions/rot/{ring}/2"),
                &["data", "rot"][..],
            )
        };
        let (status, reply) = bao.read(None, &path);
        assert_eq!(status, 200, "{path}");
        assert!(
            field.iter().fold(&reply, |v, k| &v[*k]).is_string(),
            "{reply}"
        );
        // This server's listing of keys does not show the rings.
        assert_eq!(stores[0].list("", 1024).unwrap().names, vec!["rot"]);

        // Destroy keeps the marker; restore removes one; a stale ring is found and cleaned.
        stores[0].delete_version("rot", &ring, 3).unwrap();
        assert_eq!(
            stores[1].delete_version("rot", &ring, 3),
            Err(Error::NotFound)
        );
        assert_eq!(
            stores[1].get_version("rot", &ring, 3).map(|_| ()),
            Err(Error::NotFound)
        );
        let three = stores[1].list_versions("rot", &ring).unwrap();
        assert!(three.iter().any(|e| e.n == 3 && !e.value && e.retired));
        stores[1].create_marker("rot", &ring, 4, b"{}").unwrap();
        stores[0].delete_marker("rot", &ring, 4).unwrap();
        assert_eq!(
            stores[0].delete_marker("rot", &ring, 4),
            Err(Error::NotFound)
        );
        let stale = "00000000000000000000000000000000";
        stores[0]
            .create_version("rot", stale, 2, &key_value(7))
            .unwrap();
        let mut rings = vec![ring.clone(), stale.to_string()];
        rings.sort();
        assert_eq!(stores[1].list_rings("rot").unwrap(), rings);
        assert!(stores[0].delete_ring("rot", stale).is_err());
        stores[0].delete_version("rot", stale, 2).unwrap();
        stores[0].delete_ring("rot", stale).unwrap();
        assert_eq!(stores[1].list_rings("rot").unwrap(), vec![ring.clone()]);
        assert_eq!(stores[1].list_rings("none").unwrap(), Vec::<String>::new());
    }
}
