//! Compatibility with data written by the Go server: key files in every stored format and
//! ciphertexts in every format ever produced, decrypted through the real server over TLS. The
//! vectors come from tests/vectors/gen_vectors.py, an implementation independent of this crate.

use crate::support::client::Client;
use crate::support::pki::{self, Ca, hex};
use crate::support::{Kes, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/vectors.json")).unwrap()
}

#[test]
fn go_key_files_and_every_ciphertext_format_decrypt() {
    let dir = TempDir::new("compat");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let v = vectors();

    // Key files as the Go server wrote them: one file per key, holding the stored value.
    for (i, s) in v["stored"].as_array().unwrap().iter().enumerate() {
        std::fs::write(
            keys.join(format!("stored-{i}")),
            s["value"].as_str().unwrap(),
        )
        .unwrap();
    }
    // A key file per ciphertext vector, in the legacy JSON form: without an algorithm where the
    // vector exercises the fallback of §5.4, else naming the key's algorithm.
    for (i, c) in v["ciphertexts"].as_array().unwrap().iter().enumerate() {
        let key = B64.encode(hex(c["key"].as_str().unwrap()));
        let value = if c["legacy_algorithm_fallback"].as_bool().unwrap() {
            json!({ "bytes": key })
        } else {
            json!({ "bytes": key, "algorithm": c["key_algorithm"] })
        };
        std::fs::write(keys.join(format!("ct-{i}")), value.to_string()).unwrap();
    }

    let ca = Ca::new("ca");
    ca.server().write(dir.path(), "server");
    let admin = pki::api_key_client(ADMIN_API_KEY);
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\nkeystore:\n  fs:\n    path: {d}/keys\n",
            admin.identity,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let kes = Kes::start(&dir.join("config.yaml"));
    let client = Client::new(kes.addr, &ca.cert.der, Some(&admin));

    let mut checked = 0;
    for (i, c) in v["ciphertexts"].as_array().unwrap().iter().enumerate() {
        let body = json!({
            "ciphertext": B64.encode(hex(c["ciphertext"].as_str().unwrap())),
            "context": B64.encode(hex(c["context"].as_str().unwrap())),
        });
        let r = client.post(&format!("/v1/key/decrypt/ct-{i}"), &body.to_string());
        match c["expect"].as_str().unwrap() {
            "plaintext" => {
                assert_eq!(r.status, 200, "{}: {}", c["name"], r.text());
                let plaintext = B64.decode(r.json()["plaintext"].as_str().unwrap()).unwrap();
                assert_eq!(
                    plaintext,
                    hex(c["plaintext"].as_str().unwrap()),
                    "{}",
                    c["name"]
                );
            }
            _ => r.assert_error(400, "decryption failed: ciphertext is not authentic"),
        }
        checked += 1;
    }

    for (i, s) in v["stored"].as_array().unwrap().iter().enumerate() {
        let name = format!("stored-{i}");
        let d = client.get(&format!("/v1/key/describe/{name}")).json();
        assert_eq!(d["algorithm"], s["algorithm"], "{}", s["name"]);
        if let Some(by) = s["created_by"].as_str().filter(|b| !b.is_empty()) {
            assert_eq!(d["created_by"], by, "{}", s["name"]);
        }
        // The stored key's bytes decrypt the raw vector made with the same key and algorithm.
        let raw = v["ciphertexts"].as_array().unwrap().iter().find(|c| {
            c["format"] == "raw" && c["key"] == s["key"] && c["key_algorithm"] == s["algorithm"]
        });
        if let Some(c) = raw {
            let body = json!({
                "ciphertext": B64.encode(hex(c["ciphertext"].as_str().unwrap())),
                "context": B64.encode(hex(c["context"].as_str().unwrap())),
            });
            let r = client.post(&format!("/v1/key/decrypt/{name}"), &body.to_string());
            assert_eq!(r.status, 200, "{}: {}", s["name"], r.text());
            checked += 1;
        }
        // Every stored form still generates and decrypts; HMAC only where an HMAC key is stored.
        let g = client.post(&format!("/v1/key/generate/{name}"), "").json();
        let p = client
            .post(
                &format!("/v1/key/decrypt/{name}"),
                &json!({"ciphertext": g["ciphertext"]}).to_string(),
            )
            .json();
        assert_eq!(p["plaintext"], g["plaintext"]);
        let h = client.put(
            &format!("/v1/key/hmac/{name}"),
            &json!({"message": "aGk="}).to_string(),
        );
        if s["hmac_key"].is_string() {
            assert_eq!(h.status, 200, "{}", s["name"]);
        } else {
            h.assert_error(409, "key does not support HMAC");
        }
    }
    println!("decrypted {checked} vector ciphertexts through the server");
    // The server never rewrites legacy key files.
    for (i, s) in v["stored"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(keys.join(format!("stored-{i}"))).unwrap(),
            s["value"].as_str().unwrap()
        );
    }
}

/// Switching servers on the same keystore, both ways: keys created, imported and used by kes are
/// read by the Go server (a rollback needs nothing), and keys the Go server created are read by
/// kes (an upgrade needs nothing). Each side decrypts the other's data keys and HMACs agree.
/// One fs keystore directory and one config file, used by one server at a time.
#[test]
fn peer_the_go_server_and_kes_take_over_each_others_keystore() {
    let dir = TempDir::new("takeover");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let keystore = format!(
        "keystore:\n  fs:\n    path: {}/keys\n",
        dir.path().display()
    );
    let keys = dir.join("keys");
    take_over(&dir, &keystore, &|| key_files(&keys));
}

/// The same on OpenBao through AppRole, K/V v1 and v2 (the setup procedure's policies): the
/// Go server's keys in Vault are served by kes as they are, and the other way round.
#[test]
fn peer_the_go_server_and_kes_take_over_each_others_vault_keys() {
    use crate::support::openbao::Bao;
    let bao = Bao::dev();
    for version in [1u8, 2] {
        let mount = format!("kv{version}");
        let role = bao.seed_setup(None, &mount, version, true);
        let dir = TempDir::new(&format!("takeover-v{version}"));
        // The Go server's schema: one endpoint, a string (kes also takes a list).
        let keystore = format!(
            "keystore:\n  vault:\n    endpoint: {}\n    engine: {mount}\n    version: v{version}\n    approle:\n      id: {}\n      secret: {}\n",
            bao.addr, role.0, role.1
        );
        let stored = || {
            ["by-kes", "imported", "by-go"]
                .iter()
                .map(|name| {
                    let path = match version {
                        1 => format!("{mount}/{name}"),
                        _ => format!("{mount}/data/{name}"),
                    };
                    let (status, body) = bao.read(None, &path);
                    // The secret (and on v2 its version metadata), not the per-request fields.
                    (
                        format!("{name} {status}"),
                        body["data"].to_string().into_bytes(),
                    )
                })
                .collect()
        };
        take_over(&dir, &keystore, &stored);
    }
}

/// kes, then the Go server, then kes again on one config file with `keystore` (a `keystore:`
/// block); `stored` reads what the keystore holds, which the last kes run must not change.
fn take_over(dir: &TempDir, keystore: &str, stored: &dyn Fn() -> Vec<(String, Vec<u8>)>) {
    use crate::support::gokes::GoKes;
    let ca = Ca::new("ca");
    ca.server().write(dir.path(), "server");
    let admin = pki::api_key_client(ADMIN_API_KEY);
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n{keystore}",
            admin.identity,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let context = B64.encode(br#"{"bucket":"b","object":"o"}"#);
    let imported = B64.encode([7u8; 32]);
    let message = json!({ "message": B64.encode(b"hello") }).to_string();
    // What one server made, for the other to check.
    struct Made {
        plaintext: Value,
        ciphertext: Value,
        hmac: Value,
    }
    let make = |client: &Client, key: &str| -> Made {
        let g = client.post(
            &format!("/v1/key/generate/{key}"),
            &json!({ "context": context }).to_string(),
        );
        assert_eq!(g.status, 200, "{}", g.text());
        let h = client.put(&format!("/v1/key/hmac/{key}"), &message);
        assert_eq!(h.status, 200, "{}", h.text());
        Made {
            plaintext: g.json()["plaintext"].clone(),
            ciphertext: g.json()["ciphertext"].clone(),
            hmac: h.json()["sum"].clone(),
        }
    };
    let check = |client: &Client, key: &str, made: &Made, who: &str| {
        let d = client.post(
            &format!("/v1/key/decrypt/{key}"),
            &json!({ "ciphertext": made.ciphertext, "context": context }).to_string(),
        );
        assert_eq!(d.status, 200, "{who} decrypts {key}: {}", d.text());
        assert_eq!(d.json()["plaintext"], made.plaintext, "{who}: {key}");
        let h = client.put(&format!("/v1/key/hmac/{key}"), &message);
        assert_eq!(h.json()["sum"], made.hmac, "{who}: HMAC of {key}");
        let info = client.get(&format!("/v1/key/describe/{key}"));
        assert_eq!(info.status, 200, "{who} describes {key}: {}", info.text());
        assert_eq!(info.json()["algorithm"], "AES256", "{who}: {key}");
    };

    // kes creates and imports keys and uses them.
    let kes = Kes::start(&config);
    let client = Client::new(kes.addr, &ca.cert.der, Some(&admin));
    assert_eq!(client.put("/v1/key/create/by-kes", "").status, 200);
    let r = client.put(
        "/v1/key/import/imported",
        &json!({ "key": imported, "cipher": "AES256" }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let by_kes = make(&client, "by-kes");
    let by_kes_imported = make(&client, "imported");
    drop(kes);

    // The Go server on the same keystore reads kes's keys and adds its own.
    let go = GoKes::start_config(&config).unwrap_or_else(|out| panic!("kes-go:\n{out}"));
    let client = Client::new(go.addr(), &ca.cert.der, Some(&admin));
    check(&client, "by-kes", &by_kes, "kes-go");
    check(&client, "imported", &by_kes_imported, "kes-go");
    let from_go_on_kes_key = make(&client, "by-kes");
    assert_eq!(client.put("/v1/key/create/by-go", "").status, 200);
    let by_go = make(&client, "by-go");
    let listed = client.get("/v1/key/list/*").text();
    for name in ["by-kes", "imported", "by-go"] {
        assert!(listed.contains(name), "kes-go lists {name}: {listed}");
    }
    drop(go);

    // kes again: the Go server's key and its data keys, and kes's keys untouched.
    let before = stored();
    let kes = Kes::start(&config);
    let client = Client::new(kes.addr, &ca.cert.der, Some(&admin));
    check(&client, "by-go", &by_go, "kes");
    check(&client, "by-kes", &from_go_on_kes_key, "kes");
    check(&client, "by-kes", &by_kes, "kes");
    let r = client.put("/v1/key/create/by-go", "");
    r.assert_error(400, "key already exists");
    drop(kes);
    let after = stored();
    assert_eq!(before, after, "reading keys never rewrites them");
    println!(
        "keys moved both ways: {:?}",
        after.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
}

/// The files of an fs keystore, sorted by name, with their contents.
fn key_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}
