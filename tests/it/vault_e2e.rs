//! The Vault keystore end to end: the real `kes` binary over TLS, in front of a real OpenBao,
//! configured the way the seed procedure (and the README's "Using Vault") does it.
//!
//! * The seed procedure's config file, in the older schema it uses (`root:`, `policy.<n>.paths`),
//!   with AppRole, K/V v1 and a `prefix`, `tls.ca` for `bao server -dev -dev-tls`,
//!   `status.ping` and `keys:`; MinIO's start-up and hot path through it.
//! * K/V v2 inside a namespace.
//! * Values that the Go server wrote into Vault (protobuf, the legacy JSON forms, a
//!   transit-wrapped one) are used as they are.
//! * Listing with the seed policy (no `list`): 502 for the client, the missing capability in the
//!   server's log.
//! * A Vault certificate kes does not trust stops kes at start-up with a clear error.
//! * Key versions (docs/key-versions.md) on K/V v1 and v2 through two kes nodes: rotations seen
//!   by the other node, every version decrypting on both, the version errors, the stored layout
//!   (§1) read back from OpenBao; racing rotations (§3); delete of a rotated key; the setup
//!   procedure's policy without `list` (unrotated keys serve, rotate is 502 and says why).

use crate::support;

use crate::support::client::Client;
use crate::support::openbao::Bao;
use crate::support::pki::{self, Ca, Cert, KeyKind, hex};
use crate::support::{Kes, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

/// A kes server with its TLS files, an admin (API key) and a MinIO identity (certificate).
struct Env {
    _dir: TempDir,
    ca: Ca,
    admin: Cert,
    minio: Cert,
    kes: Kes,
}

impl Env {
    /// Writes the server's TLS files and starts kes with `config(dir, admin, minio)`.
    fn start(tag: &str, config: impl FnOnce(&str, &str, &str) -> String) -> Env {
        let dir = TempDir::new(tag);
        let ca = Ca::new("kes e2e CA");
        ca.server().write(dir.path(), "server");
        let admin = pki::api_key_client(ADMIN_API_KEY);
        let minio = pki::self_signed_client(KeyKind::EcdsaP256, "minio");
        let text = config(
            &dir.path().display().to_string(),
            &admin.identity,
            &minio.identity,
        );
        std::fs::write(dir.join("kes.yaml"), text).unwrap();
        let kes = Kes::start(&dir.join("kes.yaml"));
        Env {
            _dir: dir,
            ca,
            admin,
            minio,
            kes,
        }
    }

    fn client(&self, who: &Cert) -> Client {
        Client::new(self.kes.addr, &self.ca.cert.der, Some(who))
    }
}

/// What MinIO does at start-up and on every object (§11): generate → (404 → create →
/// generate) → decrypt, with MinIO's context. Returns the key's name.
fn minio_hot_path(minio: &Client, key: &str) {
    let ctx = B64.encode(br#"{"MinIO admin API":"ServerInfoHandler"}"#);
    let body = json!({ "context": ctx }).to_string();
    let r = minio.post(&format!("/v1/key/generate/{key}"), &body);
    r.assert_error(404, "key does not exist");
    assert_eq!(minio.post(&format!("/v1/key/create/{key}"), "").status, 200);
    minio
        .post(&format!("/v1/key/create/{key}"), "")
        .assert_error(400, "key already exists");
    let g = minio.post(&format!("/v1/key/generate/{key}"), &body);
    assert_eq!(g.status, 200, "{}", g.text());
    let g = g.json();
    assert_eq!(
        B64.decode(g["plaintext"].as_str().unwrap()).unwrap().len(),
        32
    );
    let d = minio.post(
        &format!("/v1/key/decrypt/{key}"),
        &json!({"ciphertext": g["ciphertext"], "context": ctx}).to_string(),
    );
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(d.json()["plaintext"], g["plaintext"]);
}

/// Checks that `secret` (the `data` of a Vault secret) is one field named after the key, holding
/// a stored key value in the current format (§6.1: base64 of a protobuf KeyVersion whose
/// first field is a 32-byte key).
#[track_caller]
fn assert_stored_value(secret: &Value, name: &str) {
    let fields = secret.as_object().unwrap_or_else(|| panic!("{secret}"));
    assert_eq!(fields.len(), 1, "{secret}");
    let value = fields[name].as_str().unwrap();
    let bytes = B64.decode(value).unwrap();
    assert_eq!(&bytes[..4], &[0x0a, 0x24, 0x0a, 0x20], "{value}");
}

#[test]
fn seed_procedure_config_serves_minio() {
    let bao = Bao::dev_tls();
    // The seed procedure: K/V v1 at kv, AppRole, policy create/read/delete (no list).
    let role = bao.seed_setup(None, "kv", 1, false);
    let ca = bao.ca_file.clone().unwrap();
    let started = Instant::now();
    let env = Env::start("seed", |dir, admin, minio| {
        format!(
            r#"# The seed procedure's config: the older schema (root, policy paths).
address: 0.0.0.0:7373
root: {admin}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
policy:
  minio:
    paths:
    - /v1/key/create/minio-*
    - /v1/key/generate/minio-*
    - /v1/key/decrypt/minio-*
    - /v1/key/list/*
    - /v1/status
    identities:
    - {minio}
cache:
  expiry:
    any: 5m0s
    unused: 20s
log:
  error: on
  audit: off
keys:
  - name: minio-default-key
keystore:
  vault:
    endpoint: {endpoint}
    engine: kv
    version: v1
    prefix: my-minio
    approle:
      engine: approle
      id: {id}
      secret: {secret}
      retry: 15s
    tls:
      ca: {ca}
    status:
      ping: 10s
"#,
            endpoint = bao.addr,
            id = role.0,
            secret = role.1,
            ca = ca.display(),
        )
    });
    let startup = started.elapsed();
    let minio = env.client(&env.minio);

    // MinIO's start-up: the default key exists (created from `keys:`), so generate works.
    let r = minio.post("/v1/key/generate/minio-default-key", "");
    assert_eq!(r.status, 200, "{}", r.text());
    // A key MinIO has not seen: generate → 404 → create → generate → decrypt.
    let start = Instant::now();
    minio_hot_path(&minio, "minio-tenant-1");
    let hot_path = start.elapsed();

    // In Vault: <engine>/<prefix>/<name>, one field named after the key.
    for name in ["minio-default-key", "minio-tenant-1"] {
        let (status, secret) = bao.read(None, &format!("kv/my-minio/{name}"));
        assert_eq!(status, 200, "{name}: {secret}");
        assert_stored_value(&secret["data"], name);
    }
    assert_eq!(
        bao.read(None, "kv/minio-tenant-1").0,
        404,
        "not outside the prefix"
    );

    // The policy: MinIO may not delete or use other keys.
    minio
        .request("DELETE", "/v1/key/delete/minio-tenant-1", None)
        .assert_error(403, "not authorized: insufficient permissions");
    minio
        .post("/v1/key/generate/other", "")
        .assert_error(403, "not authorized: insufficient permissions");

    // Listing: the seed policy has no `list`. The client gets 502; the log says what is missing.
    minio
        .get("/v1/key/list/*")
        .assert_error(502, "failed to list keys");
    let wanted = "the Vault policy needs the 'list' capability on 'kv/my-minio/'";
    assert!(
        env.kes.wait_for_output(wanted, Duration::from_secs(5)),
        "the error log must name the capability and path:\n{}",
        env.kes.output()
    );
    let log_line = env
        .kes
        .output()
        .lines()
        .find(|l| l.contains(wanted))
        .unwrap()
        .to_string();

    // Status over TLS to Vault.
    let status = minio.get("/v1/status").json();
    assert!(status["keystore_latency"].as_u64().unwrap() > 0, "{status}");
    assert!(status.get("keystore_unreachable").is_none(), "{status}");
    println!(
        "seed config (older schema, K/V v1, prefix, dev-tls CA): kes started in {startup:?}; MinIO's hot path for a new key took {hot_path:?}"
    );
    println!("listing without the list capability, server log: {log_line}");
}

#[test]
fn kv_v2_in_a_namespace() {
    let bao = Bao::dev();
    bao.create_namespace("tenant-1");
    let role = bao.seed_setup(Some("tenant-1"), "kv", 2, true);
    let env = Env::start("kv2ns", |dir, admin, minio| {
        format!(
            r#"admin:
  identity: {admin}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
policy:
  minio:
    allow:
    - /v1/key/create/minio-*
    - /v1/key/generate/minio-*
    - /v1/key/decrypt/minio-*
    - /v1/key/list/*
    identities:
    - {minio}
keystore:
  vault:
    endpoint: {endpoint}
    engine: kv
    version: v2
    namespace: tenant-1
    prefix: kes/a
    approle:
      id: {id}
      secret: {secret}
    timeout:
      read: 5s  # about correctness, not latency: tolerate a machine that freezes a second
"#,
            endpoint = bao.addr,
            id = role.0,
            secret = role.1,
        )
    });
    let minio = env.client(&env.minio);
    minio_hot_path(&minio, "minio-key");
    let (status, secret) = bao.read(Some("tenant-1"), "kv/data/kes/a/minio-key");
    assert_eq!(status, 200, "{secret}");
    assert_stored_value(&secret["data"]["data"], "minio-key");
    assert_eq!(secret["data"]["metadata"]["version"], 1);
    // Only in the namespace.
    assert_ne!(bao.read(None, "kv/data/kes/a/minio-key").0, 200);
    // The v2 policy has list (on metadata): listing works.
    let names = minio.get("/v1/key/list/*").json();
    assert_eq!(names["names"], json!(["minio-key"]), "{names}");
    // Delete (admin) removes every version; the name can be created again.
    let admin = env.client(&env.admin);
    assert_eq!(
        admin
            .request("DELETE", "/v1/key/delete/minio-key", None)
            .status,
        200
    );
    assert_eq!(
        bao.read(Some("tenant-1"), "kv/metadata/kes/a/minio-key").0,
        404
    );
    minio_hot_path(&minio, "minio-key");
    println!("K/V v2 in namespace tenant-1 with prefix kes/a: hot path, list and delete work");
}

#[test]
fn values_written_by_the_go_server_are_used_as_they_are() {
    let v: Value = serde_json::from_str(include_str!("../vectors/vectors.json")).unwrap();
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 1, true);
    bao.enable_transit(None, "transit", "kes-wrap");
    bao.write_policy(
        None,
        "kes-kv",
        &(Bao::seed_policy("kv", 1, true)
            + "path \"transit/encrypt/kes-wrap\" { capabilities = [\"update\"] }\n\
               path \"transit/decrypt/kes-wrap\" { capabilities = [\"update\"] }\n"),
    );
    // Stored values exactly as the Go server wrote them, each in a secret at kv/go/<name> with
    // one field named after the key.
    let mut written: Vec<(String, String)> = Vec::new();
    for (i, s) in v["stored"].as_array().unwrap().iter().enumerate() {
        written.push((format!("stored-{i}"), s["value"].as_str().unwrap().into()));
    }
    for (i, c) in v["ciphertexts"].as_array().unwrap().iter().enumerate() {
        let key = B64.encode(hex(c["key"].as_str().unwrap()));
        let value = if c["legacy_algorithm_fallback"].as_bool().unwrap() {
            json!({ "bytes": key })
        } else {
            json!({ "bytes": key, "algorithm": c["key_algorithm"] })
        };
        written.push((format!("ct-{i}"), value.to_string()));
    }
    // A transit-wrapped value (the Go server with `transit:`): stored[0] encrypted by Vault.
    let plain = v["stored"][0]["value"].as_str().unwrap();
    let wrapped = bao.ok(
        None,
        "POST",
        "/v1/transit/encrypt/kes-wrap",
        Some(&json!({ "plaintext": B64.encode(plain) })),
    )["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(wrapped.starts_with("vault:v1:"));
    written.push(("wrapped-0".into(), wrapped));
    for (name, value) in &written {
        bao.ok(
            None,
            "PUT",
            &format!("/v1/kv/go/{name}"),
            Some(&json!({ name.clone(): value })),
        );
    }

    let env = Env::start("govalues", |dir, admin, _| {
        format!(
            "admin:\n  identity: {admin}\ntls:\n  key: {dir}/server.key\n  cert: {dir}/server.crt\n\
             keystore:\n  vault:\n    endpoint: {}\n    engine: kv\n    prefix: go\n    transit:\n      key: kes-wrap\n    approle:\n      id: {}\n      secret: {}\n    timeout:\n      read: 5s\n",
            bao.addr, role.0, role.1
        )
    });
    let admin = env.client(&env.admin);

    let mut checked = 0;
    for (i, c) in v["ciphertexts"].as_array().unwrap().iter().enumerate() {
        let body = json!({
            "ciphertext": B64.encode(hex(c["ciphertext"].as_str().unwrap())),
            "context": B64.encode(hex(c["context"].as_str().unwrap())),
        });
        let r = admin.post(&format!("/v1/key/decrypt/ct-{i}"), &body.to_string());
        match c["expect"].as_str().unwrap() {
            "plaintext" => {
                assert_eq!(
                    r.status,
                    200,
                    "{}: {}\n{}",
                    c["name"],
                    r.text(),
                    env.kes.output()
                );
                assert_eq!(
                    B64.decode(r.json()["plaintext"].as_str().unwrap()).unwrap(),
                    hex(c["plaintext"].as_str().unwrap()),
                    "{}",
                    c["name"]
                );
            }
            _ => r.assert_error(400, "decryption failed: ciphertext is not authentic"),
        }
        checked += 1;
    }
    let stored = v["stored"].as_array().unwrap();
    let mut names: Vec<(String, &Value)> = stored
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("stored-{i}"), s))
        .collect();
    names.push(("wrapped-0".into(), &stored[0]));
    for (name, s) in &names {
        let d = admin.get(&format!("/v1/key/describe/{name}")).json();
        assert_eq!(d["algorithm"], s["algorithm"], "{name}");
        // The stored key decrypts the vector made with its bytes.
        let raw = v["ciphertexts"].as_array().unwrap().iter().find(|c| {
            c["format"] == "raw" && c["key"] == s["key"] && c["key_algorithm"] == s["algorithm"]
        });
        if let Some(c) = raw {
            let body = json!({
                "ciphertext": B64.encode(hex(c["ciphertext"].as_str().unwrap())),
                "context": B64.encode(hex(c["context"].as_str().unwrap())),
            });
            let r = admin.post(&format!("/v1/key/decrypt/{name}"), &body.to_string());
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            checked += 1;
        }
        let g = admin.post(&format!("/v1/key/generate/{name}"), "").json();
        let p = admin
            .post(
                &format!("/v1/key/decrypt/{name}"),
                &json!({"ciphertext": g["ciphertext"]}).to_string(),
            )
            .json();
        assert_eq!(p["plaintext"], g["plaintext"], "{name}");
    }
    // Nothing was rewritten in Vault.
    for (name, value) in &written {
        let (status, secret) = bao.read(None, &format!("kv/go/{name}"));
        assert_eq!(status, 200);
        assert_eq!(
            secret["data"][name.as_str()],
            json!(value),
            "{name} was changed"
        );
    }
    println!(
        "{} Go-written values in Vault (protobuf, legacy JSON, transit-wrapped): {checked} vector ciphertexts decrypted, every key generates and decrypts, no value rewritten",
        written.len()
    );
}

#[test]
fn untrusted_vault_certificate_stops_startup() {
    let bao = Bao::dev_tls();
    let role = bao.seed_setup(None, "kv", 1, true);
    let other = Ca::new("not the Vault CA");
    let dir = TempDir::new("untrusted");
    let ca = Ca::new("kes e2e CA");
    ca.server().write(dir.path(), "server");
    std::fs::write(dir.join("wrong-ca.pem"), &other.cert.cert_pem).unwrap();
    let admin = pki::api_key_client(ADMIN_API_KEY);
    for (what, tls) in [
        ("the system roots", String::new()),
        (
            "a CA that did not issue it",
            format!(
                "    tls:\n      ca: {}/wrong-ca.pem\n",
                dir.path().display()
            ),
        ),
    ] {
        let config = format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n\
             keystore:\n  vault:\n    endpoint: {}\n    approle:\n      id: {}\n      secret: {}\n{tls}",
            admin.identity,
            bao.addr,
            role.0,
            role.1,
            d = dir.path().display()
        );
        std::fs::write(dir.join("kes.yaml"), config).unwrap();
        let start = Instant::now();
        let path = dir.join("kes.yaml");
        let args = [
            "server",
            "--config",
            path.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ];
        let out = match Kes::start_with(&args, &[]) {
            Ok(kes) => panic!("kes started against an untrusted Vault:\n{}", kes.output()),
            Err(out) => out,
        };
        let took = start.elapsed();
        // The last word of a failed start: `kes: <error>` on stderr.
        let error = out
            .lines()
            .find(|l| l.starts_with("kes: "))
            .unwrap_or_else(|| panic!("no error line:\n{out}"))
            .to_string();
        println!("Vault certificate checked against {what}: kes stopped after {took:?}: {error}");
        assert!(error.contains("cannot connect to Vault"), "{error}");
        assert!(error.contains(&bao.addr), "{error}");
        assert!(error.contains("not trusted"), "{error}");
        assert!(error.contains("keystore.vault.tls.ca"), "{error}");
    }
}

/// The fenced code blocks of a README section, in order: (language, text without the list
/// indentation).
fn code_blocks(section: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut text = String::new();
        for line in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            text.push_str(line.get(indent..).unwrap_or(line.trim_start()));
            text.push('\n');
        }
        blocks.push((lang.trim().to_string(), text));
    }
    blocks
}

/// Runs a shell script with bash (`-eu -o pipefail`) in `dir`; returns stdout, or panics with
/// everything it printed.
fn bash(dir: &std::path::Path, script: &str, env: &[(String, String)]) -> String {
    let out = std::process::Command::new("bash")
        .args(["-eu", "-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env_remove("BAO_ADDR")
        .env_remove("BAO_TOKEN")
        .env_remove("KES_API_KEY")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "the README's commands failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
}

#[test]
fn readme_using_vault_walkthrough() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Using Vault\n")
        .nth(1)
        .expect("README has a section 'Using Vault'")
        .split("\n## ")
        .next()
        .unwrap();
    let blocks = code_blocks(section);
    let bao = Bao::dev_tls();
    let dir = TempDir::new("readme");
    // Step 1 starts `bao server -dev -dev-tls` on 127.0.0.1:8200 with its CA in ./vault-tls;
    // the test's own dev-tls server stands in for it on a free port.
    std::fs::create_dir_all(dir.join("vault-tls")).unwrap();
    std::fs::copy(
        bao.ca_file.as_ref().unwrap(),
        dir.join("vault-tls/vault-ca.pem"),
    )
    .unwrap();
    let vault_addr = format!("127.0.0.1:{}", bao.port);
    let path_of = |p: &std::path::Path| p.parent().unwrap().display().to_string();
    let path = format!(
        "{}:{}:{}",
        path_of(support::openbao::bao_binary()),
        path_of(std::path::Path::new(env!("CARGO_BIN_EXE_kes"))),
        std::env::var("PATH").unwrap_or_default()
    );
    let server_block = blocks
        .iter()
        .position(|(_, text)| text.contains("kes server"))
        .expect("a block that starts kes");
    let exported = [
        "BAO_ADDR",
        "BAO_CACERT",
        "BAO_TOKEN",
        "VAULT_APPROLE_ID",
        "VAULT_APPROLE_SECRET",
        "KES_API_KEY",
        "KES_ADMIN_IDENTITY",
    ];

    // Steps 2 and 3: Vault setup, certificate, API key; then the variables they exported.
    let mut setup = String::new();
    for (lang, text) in &blocks[..server_block] {
        if lang == "sh" && !text.contains("bao server") {
            setup += &text.replace("127.0.0.1:8200", &vault_addr);
        }
    }
    for var in exported {
        setup += &format!("test -n \"${var}\"; echo \"{var}=${var}\"\n");
    }
    let mut env: Vec<(String, String)> = vec![("PATH".into(), path)];
    let start = Instant::now();
    for line in bash(dir.path(), &setup, &env).lines() {
        if let Some((k, v)) = line.split_once('=')
            && exported.contains(&k)
        {
            env.push((k.into(), v.into()));
        }
    }
    let setup_took = start.elapsed();

    // Step 4: the config file as written, and the server.
    let yaml = &blocks
        .iter()
        .find(|(lang, _)| lang == "yaml")
        .expect("the config file")
        .1;
    std::fs::write(
        dir.join("kes.yaml"),
        yaml.replace("127.0.0.1:8200", &vault_addr),
    )
    .unwrap();
    let command = blocks[server_block].1.trim();
    let mut args: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert_eq!(args, ["server", "--config", "kes.yaml"], "{command}");
    args.extend(["--addr", "127.0.0.1:0"]); // a free port instead of 7373
    let kes_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut kes = Kes::start_in(Some(dir.path()), &args, &kes_env)
        .unwrap_or_else(|out| panic!("kes did not start from the README's config:\n{out}"));

    // Step 5: generate and decrypt with curl, and the key as Vault stores it.
    let mut use_it = String::new();
    for (lang, text) in &blocks[server_block + 1..] {
        if lang == "sh" {
            use_it += &text
                .replace("127.0.0.1:7373", &kes.addr.to_string())
                .replace("127.0.0.1:8200", &vault_addr);
        }
    }
    let out = bash(dir.path(), &use_it, &env);
    println!(
        "README 'Using Vault': setup commands took {setup_took:?}; generate, decrypt and bao read printed:\n{out}"
    );
    let decrypted = out
        .lines()
        .find(|l| l.contains("\"plaintext\""))
        .unwrap_or_else(|| panic!("no decrypt reply:\n{out}"));
    let plaintext: Value = serde_json::from_str(decrypted).unwrap();
    assert_eq!(
        B64.decode(plaintext["plaintext"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert!(out.contains("minio-default-key"), "{out}");
    let (status, secret) = bao.read(None, "kv/kes/minio-default-key");
    assert_eq!(status, 200);
    assert_stored_value(&secret["data"], "minio-default-key");

    // docs/operations.md, "Rotating the AppRole secret ID": its commands as written, on this
    // server, with KES_PID set. The secret ID goes into the file, kes logs in with it on the
    // signal, and the old one is destroyed.
    let ops = include_str!("../../docs/operations.md");
    let rotation = ops
        .split("\n### Rotating the AppRole secret ID\n")
        .nth(1)
        .expect("docs/operations.md has 'Rotating the AppRole secret ID'")
        .split("\n### ")
        .next()
        .unwrap();
    let script: String = code_blocks(rotation)
        .into_iter()
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, text)| text)
        .collect();
    assert!(script.contains("kill -HUP \"$KES_PID\""), "{script}");
    env.push(("KES_PID".into(), kes.child.id().to_string()));
    let t = Instant::now();
    let out = bash(dir.path(), &script, &env);
    assert!(
        kes.wait_for_output(
            "keystore login credentials (logged in with them)",
            Duration::from_secs(10)
        ),
        "{}",
        kes.output()
    );
    let rotated_in = t.elapsed();
    let yaml = std::fs::read_to_string(dir.join("kes.yaml")).unwrap();
    assert!(!yaml.contains("${VAULT_APPROLE_SECRET}"), "{yaml}");
    let old_secret = &env
        .iter()
        .find(|(k, _)| k == "VAULT_APPROLE_SECRET")
        .unwrap()
        .1;
    let role_id = &env.iter().find(|(k, _)| k == "VAULT_APPROLE_ID").unwrap().1;
    let (status, _) = bao.request(
        None,
        None,
        "PUT",
        "/v1/auth/approle/login",
        Some(&json!({"role_id": role_id, "secret_id": old_secret})),
    );
    assert_eq!(status, 400, "the old secret ID still logs in");
    assert!(kes.child.try_wait().unwrap().is_none());
    assert_eq!(kes.output().matches("Version ").count(), 1, "restarted");
    // Every token of the role revoked: the next request that needs Vault makes kes log in
    // again, with the new secret ID (with the old one, the create would fail with 502).
    bao.revoke_logins(None, "approle");
    let create = format!(
        "curl -sf --cacert server.cert --cert client.crt --key client.key -X POST \
         https://{}/v1/key/create/after-rotation\n",
        kes.addr
    );
    bash(dir.path(), &create, &env);
    assert!(
        kes.output()
            .contains("the token was rejected (expired or revoked); logging in again"),
        "{}",
        kes.output()
    );
    let (status, _) = bao.read(None, "kv/kes/after-rotation");
    assert_eq!(status, 200);
    println!(
        "docs/operations.md 'Rotating the AppRole secret ID': logged in with the new secret ID {rotated_in:?} after the commands started; printed:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Key versions (docs/key-versions.md) on OpenBao, through the HTTP API of two kes nodes

/// One K/V mount that kes uses with a `prefix`, seen with OpenBao's root token.
struct Kv<'a> {
    bao: &'a Bao,
    mount: &'a str,
    version: u8,
    prefix: &'a str,
}

impl Kv<'_> {
    /// The API path of the secret (or, ending in `/`, the directory) `path` below the prefix:
    /// v1 `<mount>/<prefix>/<path>`, v2 `<mount>/<part>/<prefix>/<path>`.
    fn api_path(&self, part: &str, path: &str) -> String {
        if self.version == 2 {
            format!("/v1/{}/{part}/{}/{path}", self.mount, self.prefix)
        } else {
            format!("/v1/{}/{}/{path}", self.mount, self.prefix)
        }
    }

    /// The secret at `path` below the prefix: its only field, which must be named `name`
    /// (the stored value as kes wrote it), and on v2 the secret's metadata. `None`: no secret.
    #[track_caller]
    fn read(&self, path: &str, name: &str) -> Option<(String, Value)> {
        let (status, reply) = self
            .bao
            .call(None, "GET", &self.api_path("data", path), None);
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "{path}: {reply}");
        let (data, meta) = if self.version == 2 {
            (&reply["data"]["data"], reply["data"]["metadata"].clone())
        } else {
            (&reply["data"], Value::Null)
        };
        assert_stored_value(data, name);
        Some((data[name].as_str().unwrap().to_string(), meta))
    }

    /// The K/V v2 metadata of the secret at `path` (`current_version`, `versions`).
    fn metadata(&self, path: &str) -> Value {
        self.bao
            .ok(None, "GET", &self.api_path("metadata", path), None)["data"]
            .clone()
    }

    /// The entries of directory `dir` (ending in `/`) below the prefix, sorted; none when it
    /// does not exist.
    #[track_caller]
    fn list(&self, dir: &str) -> Vec<String> {
        let (status, reply) = self
            .bao
            .call(None, "LIST", &self.api_path("metadata", dir), None);
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{dir}: {reply}");
        let mut keys: Vec<String> = reply["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// The `keystore:` block for this mount and prefix, logging in with AppRole `role`.
    fn keystore(&self, role: &(String, String)) -> String {
        self.bao
            .keystore_yaml(self.mount, self.version, role)
            .replace(
                "    engine:",
                &format!("    prefix: {}\n    engine:", self.prefix),
            )
    }
}

/// The ring id of a key (docs/key-versions.md §1): hex of the first 16 bytes of SHA-256 of
/// version 1's 32-byte secret key, from version 1's stored value (base64 of the protobuf).
fn ring_of(stored_v1: &str) -> String {
    let bytes = B64.decode(stored_v1).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes[4..36]);
    hex_string(&digest.as_ref()[..16])
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A kes node on `keystore` with `extra` config lines; its admin is [`Env::admin`].
fn versions_node(tag: &str, keystore: &str, extra: &str) -> Env {
    Env::start(tag, |dir, admin, _| {
        format!(
            "admin:\n  identity: {admin}\ntls:\n  key: {dir}/server.key\n  cert: {dir}/server.crt\n\
             log:\n  error: on\n{extra}{keystore}"
        )
    })
}

const VERSION_CONTEXT: &[u8] = br#"{"bucket":"versions","object":"a/b"}"#;

/// A data key generated through `client`: (reply, its version: `None` when the reply has no
/// `version`, which must then be the Go server's shape).
#[track_caller]
fn generate(client: &Client, name: &str) -> (Value, Option<u32>) {
    let body = json!({ "context": B64.encode(VERSION_CONTEXT) }).to_string();
    let r = client.post(&format!("/v1/key/generate/{name}"), &body);
    assert_eq!(r.status, 200, "generate {name}: {}", r.text());
    let g = r.json();
    let fields: Vec<&String> = g.as_object().unwrap().keys().collect();
    let version = match g.get("version") {
        None => {
            assert_eq!(fields, ["ciphertext", "plaintext"], "{g}");
            None
        }
        Some(v) => {
            assert_eq!(fields, ["ciphertext", "plaintext", "version"], "{g}");
            let n: u32 = v.as_str().unwrap().parse().unwrap();
            assert!(n >= 2, "{g}");
            assert_eq!(v.as_str().unwrap(), n.to_string(), "canonical decimal");
            Some(n)
        }
    };
    (g, version)
}

/// Decrypts the ciphertext of `g` (a generate reply) through `client`, with `version` or
/// without; the reply.
fn decrypt(
    client: &Client,
    name: &str,
    g: &Value,
    version: Option<&str>,
) -> support::client::Reply {
    let mut body = json!({
        "ciphertext": g["ciphertext"],
        "context": B64.encode(VERSION_CONTEXT),
    });
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    client.post(&format!("/v1/key/decrypt/{name}"), &body.to_string())
}

/// Asserts that `client` decrypts the data key of `g` with `version` (or without).
#[track_caller]
fn assert_decrypts(client: &Client, name: &str, g: &Value, version: Option<&str>, who: &str) {
    let r = decrypt(client, name, g, version);
    assert_eq!(
        r.status,
        200,
        "{who} cannot decrypt {g} with version {version:?}: {}",
        r.text()
    );
    assert_eq!(r.json()["plaintext"], g["plaintext"], "{who}");
}

/// `POST /v1/key/rotate/<name>` through `client`: the new version (the reply must be exactly
/// `{"version":"<n>"}`).
#[track_caller]
fn rotate(client: &Client, name: &str) -> u32 {
    let r = client.post(&format!("/v1/key/rotate/{name}"), "");
    assert_eq!(r.status, 200, "rotate {name}: {}", r.text());
    let reply = r.json();
    let n: u32 = reply["version"].as_str().unwrap().parse().unwrap();
    assert_eq!(reply, json!({ "version": n.to_string() }));
    n
}

/// Sets up K/V v1 at `kv1` and v2 at `kv2` on `bao`, each with the setup procedure's policy
/// (with `list`), and returns them with their AppRole logins.
fn both_engines<'a>(bao: &'a Bao, prefix: &'a str) -> Vec<(Kv<'a>, (String, String))> {
    [("kv1", 1u8), ("kv2", 2u8)]
        .into_iter()
        .map(|(mount, version)| {
            let role = bao.seed_setup(None, mount, version, true);
            let kv = Kv {
                bao,
                mount,
                version,
                prefix,
            };
            (kv, role)
        })
        .collect()
}

/// Issue 16 end to end on K/V v1 and v2: two kes nodes on one OpenBao, a rotation through one
/// seen by the other (at once for decrypt, within `cache.expiry.any` for generate), every
/// ciphertext decrypting on both nodes with and without `version`, the documented errors for a
/// wrong version, and the layout of docs/key-versions.md §1 as OpenBao stores it.
#[test]
fn key_versions_through_two_nodes_on_kv_v1_and_v2() {
    let bao = Bao::dev();
    for (kv, role) in both_engines(&bao, "tenant/kes") {
        let started = Instant::now();
        let v = kv.version;
        let yaml = kv.keystore(&role);
        // A sees a rotation made through B within 1 s (its cache re-reads keys after 1 s).
        let a = versions_node(
            &format!("ver-a-{}", kv.mount),
            &yaml,
            "cache:\n  expiry:\n    any: 1s\n",
        );
        let b = versions_node(&format!("ver-b-{}", kv.mount), &yaml, "");
        let (ca, cb) = (a.client(&a.admin), b.client(&b.admin));
        let nodes = [(&ca, "A"), (&cb, "B")];

        assert_eq!(ca.post("/v1/key/create/rot", "").status, 200);
        let (g1, version) = generate(&ca, "rot");
        assert_eq!(
            version, None,
            "a key never rotated answers as the Go server"
        );
        let (stored_v1, meta) = kv.read("rot", "rot").expect("version 1 at <prefix>/rot");
        let ring = ring_of(&stored_v1);
        assert!(
            kv.list(".kes-versions/").is_empty(),
            "no ring before a rotation"
        );

        // Rotate through B; B generates with version 2 at once.
        assert_eq!(rotate(&cb, "rot"), 2);
        let (g2, version) = generate(&cb, "rot");
        assert_eq!(version, Some(2));
        // A decrypts B's version-2 data key at once: without version (the iv's hint names a
        // version A has not listed yet, so A lists the versions), and naming it.
        assert_decrypts(&ca, "rot", &g2, None, "A (hint)");
        assert_decrypts(&ca, "rot", &g2, Some("2"), "A (explicit)");
        // The listing that decrypt made is cached: A generates with version 2 from now on.
        let (_, version) = generate(&ca, "rot");
        assert_eq!(
            version,
            Some(2),
            "A generates with version 1 after listing version 2"
        );

        // Rotate again, through A.
        assert_eq!(rotate(&ca, "rot"), 3);
        let (g3, version) = generate(&ca, "rot");
        assert_eq!(version, Some(3));

        // And through B, with no decrypt on A this time: A generates with it within 1.1 s
        // (`cache.expiry.any: 1s`: the key is read again, versions included).
        assert_eq!(rotate(&cb, "rot"), 4);
        let (g4, version) = generate(&cb, "rot");
        assert_eq!(version, Some(4));
        std::thread::sleep(Duration::from_millis(1100));
        let (_, version) = generate(&ca, "rot");
        assert_eq!(
            version,
            Some(4),
            "A did not see version 4 within its cache expiry"
        );

        // Every data key decrypts on both nodes, with and without its version.
        for (g, n) in [(&g1, "1"), (&g2, "2"), (&g3, "3"), (&g4, "4")] {
            for (client, who) in nodes {
                assert_decrypts(client, "rot", g, None, who);
                assert_decrypts(client, "rot", g, Some(n), who);
                // `""` is no version (the kms-go client omits an empty one).
                assert_decrypts(client, "rot", g, Some(""), who);
                // Another existing version: not authentic, no fallback to the right one.
                let wrong = if n == "2" { "3" } else { "2" };
                decrypt(client, "rot", g, Some(wrong))
                    .assert_error(400, "decryption failed: ciphertext is not authentic");
                decrypt(client, "rot", g, Some("999"))
                    .assert_error(404, "key version does not exist");
                decrypt(client, "rot", g, Some("v2")).assert_error(400, "invalid key version");
            }
        }
        // describe on both: the current version and all four, newest first.
        for (client, who) in nodes {
            let d = client.get("/v1/key/describe/rot").json();
            assert_eq!(d["version"], "4", "{who}: {d}");
            let listed: Vec<&str> = d["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_str().unwrap())
                .collect();
            assert_eq!(listed, ["4", "3", "2", "1"], "{who}: {d}");
        }

        // The layout in OpenBao (§1): version 1 untouched at <prefix>/rot ...
        let (after, meta_after) = kv.read("rot", "rot").unwrap();
        assert_eq!(after, stored_v1, "version 1 was rewritten");
        if v == 2 {
            assert_eq!(meta_after["version"], 1, "{meta_after}");
            assert_eq!(meta["version"], 1);
            assert_eq!(kv.metadata("rot")["current_version"], 1);
        }
        // ... and versions 2 to 4 under .kes-versions/rot/<ring>/, one secret each, holding a
        // key of their own.
        assert_eq!(kv.list(".kes-versions/"), ["rot/"]);
        assert_eq!(kv.list(".kes-versions/rot/"), [format!("{ring}/")]);
        let dir = format!(".kes-versions/rot/{ring}/");
        assert_eq!(kv.list(&dir), ["2", "3", "4"]);
        let mut values = vec![stored_v1.clone()];
        for n in ["2", "3", "4"] {
            let path = format!("{dir}{n}");
            let (value, meta) = kv.read(&path, "rot").unwrap();
            assert!(!values.contains(&value), "version {n} repeats a value");
            values.push(value);
            if v == 2 {
                // Written once with cas 0: exactly one K/V version per key version.
                assert_eq!(meta["version"], 1, "{path}: {meta}");
                let m = kv.metadata(&path);
                assert_eq!(m["current_version"], 1, "{path}: {m}");
                assert_eq!(m["versions"].as_object().unwrap().len(), 1, "{path}: {m}");
            }
        }
        // kes's own listing does not show the rings.
        for (client, who) in nodes {
            for path in ["/v1/key/list/", "/v1/key/list/*"] {
                let names = client.get(path).json();
                assert_eq!(names["names"], json!(["rot"]), "{who} {path}: {names}");
            }
        }
        println!(
            "K/V v{v}: rotations through B seen by A (decrypt at once, generate within 1.1 s), 4 versions decrypt on both nodes with and without version, layout checked, in {:?}",
            started.elapsed()
        );
    }
}

/// Racing rotations of one key through two kes nodes (docs/key-versions.md §3), on K/V v1 and v2:
/// 2 nodes × 8 threads × 3 rotations. Every rotation gets its own number (exactly 2..=49, all
/// stored), and the data key generated right after each rotation decrypts on the other node
/// with the version its reply names.
#[test]
fn racing_rotations_through_two_nodes_on_kv_v1_and_v2() {
    const THREADS: usize = 8;
    const ROTATIONS: usize = 3;
    let bao = Bao::dev();
    for (kv, role) in both_engines(&bao, "race") {
        let v = kv.version;
        let yaml = kv.keystore(&role);
        let envs = [
            versions_node(&format!("race-a-{}", kv.mount), &yaml, ""),
            versions_node(&format!("race-b-{}", kv.mount), &yaml, ""),
        ];
        let clients = [
            envs[0].client(&envs[0].admin),
            envs[1].client(&envs[1].admin),
        ];
        assert_eq!(clients[0].post("/v1/key/create/race", "").status, 200);
        // Both nodes have the key cached (version 1 only) when the race starts.
        for c in &clients {
            assert_eq!(generate(c, "race").1, None);
        }

        let barrier = Arc::new(Barrier::new(2 * THREADS));
        let contended = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let threads: Vec<_> = (0..2 * THREADS)
            .map(|t| {
                let here = clients[t % 2].clone();
                let other = clients[(t + 1) % 2].clone();
                let (barrier, contended) = (barrier.clone(), contended.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut won = Vec::new();
                    for _ in 0..ROTATIONS {
                        let (n, retried) = here.rotate_retrying("race");
                        contended.fetch_add(retried, Ordering::Relaxed);
                        // This node's rotation invalidated its cache: it generates with the new
                        // version or a later one (another rotation in between), never older.
                        let (g, m) = generate(&here, "race");
                        let m = m.expect("a rotated key's reply names its version");
                        assert!(m >= n, "rotated to {n}, then generated with {m}");
                        let r = decrypt(&other, "race", &g, Some(&m.to_string()));
                        assert_eq!(
                            r.status,
                            200,
                            "the other node cannot decrypt version {m} (rotated to {n}): {}",
                            r.text()
                        );
                        assert_eq!(r.json()["plaintext"], g["plaintext"]);
                        won.push((n, m, g));
                    }
                    won
                })
            })
            .collect();
        let won: Vec<(u32, u32, Value)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let took = start.elapsed();
        let mut numbers: Vec<u32> = won.iter().map(|w| w.0).collect();
        numbers.sort_unstable();
        let total = (2 * THREADS * ROTATIONS) as u32;
        assert_eq!(
            numbers,
            (2..=total + 1).collect::<Vec<_>>(),
            "every rotation got its own number, none skipped"
        );
        let same = won.iter().filter(|w| w.0 == w.1).count();

        // Nothing lost: the ring in OpenBao holds exactly versions 2..=49, each one secret.
        let (stored_v1, _) = kv.read("race", "race").unwrap();
        let ring = ring_of(&stored_v1);
        let mut stored: Vec<u32> = kv
            .list(&format!(".kes-versions/race/{ring}/"))
            .iter()
            .map(|e| e.parse().unwrap())
            .collect();
        stored.sort_unstable();
        assert_eq!(stored, numbers);
        // Every version is a key of its own that both nodes can load: describe reads them all.
        for c in &clients {
            let d = c.get("/v1/key/describe/race");
            assert_eq!(d.status, 200, "{}", d.text());
            let d = d.json();
            assert_eq!(d["version"], (total + 1).to_string(), "{d}");
            assert_eq!(d["versions"].as_array().unwrap().len(), total as usize + 1);
            assert!(
                d["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|v| v["algorithm"].is_string() && v.get("destroyed").is_none()),
                "{d}"
            );
        }
        // Each data key decrypts on both nodes without version (the hint finds it).
        for (_, m, g) in &won {
            for c in &clients {
                assert_decrypts(c, "race", g, None, &format!("version {m}"));
            }
        }
        let contended = contended.load(Ordering::Relaxed);
        // Each node counted the rotations it made (lost races are not counted: they are
        // retried inside the rotation; only a 503 would show them).
        let rotations = envs
            .each_ref()
            .map(|e| metric(e, "kes_key_rotations_total"));
        assert_eq!(
            rotations.iter().sum::<u64>(),
            u64::from(total),
            "{rotations:?}"
        );
        let reloads = envs
            .each_ref()
            .map(|e| metric(e, "kes_cache_version_reloads_total"));
        println!(
            "K/V v{v}: 2 nodes x {THREADS} threads x {ROTATIONS} rotations in {took:?}: versions 2..={} all distinct and stored; {contended} replies 503 (retried); rotations per node {rotations:?}; {same} of {total} generates right after used the rotation's own version; decrypts that made a node list the versions again: {reloads:?}",
            total + 1
        );
    }
}

/// The value of the single-series metric `name` of `env`'s server.
#[track_caller]
fn metric(env: &Env, name: &str) -> u64 {
    let text = env.client(&env.admin).get("/v1/metrics").text();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap() as u64
}

/// Delete through kes of a rotated key removes version 1 and the whole ring from OpenBao, and
/// the name starts again at version 1 (K/V v1 and v2).
#[test]
fn delete_of_a_rotated_key_removes_every_version() {
    let bao = Bao::dev();
    for (kv, role) in both_engines(&bao, "del") {
        let env = versions_node(&format!("del-{}", kv.mount), &kv.keystore(&role), "");
        let admin = env.client(&env.admin);
        assert_eq!(admin.post("/v1/key/create/gone", "").status, 200);
        assert_eq!(rotate(&admin, "gone"), 2);
        assert_eq!(rotate(&admin, "gone"), 3);
        let (old_v1, _) = kv.read("gone", "gone").unwrap();
        let old_ring = ring_of(&old_v1);
        assert_eq!(
            kv.list(&format!(".kes-versions/gone/{old_ring}/")),
            ["2", "3"]
        );
        let (old_g, version) = generate(&admin, "gone");
        assert_eq!(version, Some(3));

        let r = admin.request("DELETE", "/v1/key/delete/gone", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            kv.read("gone", "gone").is_none(),
            "version 1 is still stored"
        );
        assert_eq!(kv.list(".kes-versions/gone/"), Vec::<String>::new());
        assert_eq!(kv.list(".kes-versions/"), Vec::<String>::new());
        if kv.version == 2 {
            // Not only deleted K/V versions: no metadata left either.
            for path in [
                "gone".to_string(),
                format!(".kes-versions/gone/{old_ring}/2"),
                format!(".kes-versions/gone/{old_ring}/3"),
            ] {
                let (status, _) = bao.call(None, "GET", &kv.api_path("metadata", &path), None);
                assert_eq!(status, 404, "{path}");
            }
        }
        admin
            .post("/v1/key/generate/gone", "")
            .assert_error(404, "key does not exist");

        // Created again: version 1 of a new ring, nothing of the old key.
        assert_eq!(admin.post("/v1/key/create/gone", "").status, 200);
        let (g, version) = generate(&admin, "gone");
        assert_eq!(version, None, "the new key starts at version 1");
        assert_decrypts(&admin, "gone", &g, None, "new key");
        let d = admin.get("/v1/key/describe/gone").json();
        assert!(
            d.get("version").is_none() && d.get("versions").is_none(),
            "{d}"
        );
        decrypt(&admin, "gone", &old_g, None)
            .assert_error(400, "decryption failed: ciphertext is not authentic");
        decrypt(&admin, "gone", &old_g, Some("3")).assert_error(404, "key version does not exist");
        let (new_v1, _) = kv.read("gone", "gone").unwrap();
        assert_ne!(ring_of(&new_v1), old_ring);
        assert_eq!(rotate(&admin, "gone"), 2, "numbering starts again");
        assert_eq!(
            kv.list(".kes-versions/gone/"),
            [format!("{}/", ring_of(&new_v1))]
        );
        println!(
            "K/V v{}: delete of a key with 3 versions left nothing in OpenBao; re-created at version 1, rotated to 2",
            kv.version
        );
    }
}

/// The setup procedure's K/V v1 policy (`create, read, delete`, no `list`). What happens, as
/// asserted: keys never rotated keep working (the cache cannot list their versions; it logs one
/// warning for all keys, no error per load, and serves version 1; `"version":"2"` is 404); a
/// rotation lists the ring first, Vault answers 403, and kes answers 502 `failed to rotate key`
/// with the ring's path and the missing capability in its error log, having written nothing;
/// delete still deletes the key (its rings cannot be listed: a warning).
#[test]
fn restrictive_policy_without_list() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 1, false);
    let kv = Kv {
        bao: &bao,
        mount: "kv",
        version: 1,
        prefix: "my-minio",
    };
    let env = versions_node("nolist", &kv.keystore(&role), "");
    let admin = env.client(&env.admin);
    for name in ["plain-1", "plain-2"] {
        assert_eq!(
            admin.post(&format!("/v1/key/create/{name}"), "").status,
            200
        );
        let (g, version) = generate(&admin, name);
        assert_eq!(version, None);
        assert_decrypts(&admin, name, &g, None, name);
        assert_decrypts(&admin, name, &g, Some("1"), name);
        decrypt(&admin, name, &g, Some("2")).assert_error(404, "key version does not exist");
    }
    // One warning for all keys, not one per key or load.
    let warning = "cannot list the versions of key";
    let out = env.kes.output();
    assert_eq!(out.matches(warning).count(), 1, "{out}");
    let warned = out
        .lines()
        .find(|l| l.contains(warning))
        .unwrap()
        .to_string();
    assert!(warned.contains("serving version 1 only"), "{warned}");

    // Rotation needs to list the ring: Vault refuses (403), kes answers 502 and its error log
    // names the capability and path. Nothing is written.
    let r = admin.post("/v1/key/rotate/plain-1", "");
    r.assert_error(502, "failed to rotate key");
    let (v1, _) = kv.read("plain-1", "plain-1").unwrap();
    let wanted = format!(
        "the Vault policy needs the 'list' capability on 'kv/my-minio/.kes-versions/plain-1/{}/'",
        ring_of(&v1)
    );
    assert!(
        env.kes.wait_for_output(&wanted, Duration::from_secs(5)),
        "{wanted}\n{}",
        env.kes.output()
    );
    let logged = env
        .kes
        .output()
        .lines()
        .find(|l| l.contains("failed to rotate key 'plain-1'"))
        .unwrap_or_else(|| panic!("{}", env.kes.output()))
        .to_string();
    assert!(logged.contains(&wanted), "{logged}");
    // That is the only error: loading the keys logged the one warning above, not an error per
    // load (nor per re-list, every 60 s per key in use).
    let errors: Vec<String> = env
        .kes
        .output()
        .lines()
        .filter(|l| l.contains("level=ERROR"))
        .map(str::to_string)
        .collect();
    assert_eq!(errors, std::slice::from_ref(&logged));
    assert_eq!(kv.list(".kes-versions/"), Vec::<String>::new());
    // The key is unchanged and still serves.
    let (g, version) = generate(&admin, "plain-1");
    assert_eq!(version, None);
    assert_decrypts(&admin, "plain-1", &g, None, "after the failed rotation");
    // Delete cannot list rings either; it deletes the key (and says why it could not look for
    // versions).
    let r = admin.request("DELETE", "/v1/key/delete/plain-2", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(kv.read("plain-2", "plain-2").is_none());
    assert!(
        env.kes.wait_for_output(
            "deleting key 'plain-2': cannot list its versions",
            Duration::from_secs(5)
        ),
        "{}",
        env.kes.output()
    );
    println!(
        "K/V v1 without 'list': unrotated keys serve (warned once: {warned}); rotate: 502, logged: {logged}"
    );
}
