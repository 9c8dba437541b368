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

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::client::Client;
use support::openbao::Bao;
use support::pki::{self, Ca, Cert, KeyKind, hex};
use support::{Kes, TempDir};

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
    let v: Value = serde_json::from_str(include_str!("vectors/vectors.json")).unwrap();
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
    let readme = include_str!("../README.md");
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
    let ops = include_str!("../docs/operations.md");
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
