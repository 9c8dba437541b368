//! End-to-end tests of `kes migrate`: keys made by a real server are copied between keystores
//! by the real binary, the bytes are compared, and a second server on the destination decrypts
//! data keys generated before the migration. Re-runs, conflicts, `--force`, `--merge`, patterns
//! and an interrupted migration (SIGKILL) are covered.

use crate::support;

use crate::support::openbao;

use crate::support::client::Client;
use crate::support::pki::{self, Ca};
use crate::support::{Kes, Run, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";
const ADMIN_IDENTITY: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

/// `kes migrate ARGS --json`: the summary as JSON.
fn migrate(args: &[&str]) -> Run {
    let mut argv = vec!["migrate"];
    argv.extend_from_slice(args);
    argv.push("--json");
    support::kes_cmd(&argv, &[])
}

/// `kes migrate ARGS` without a terminal: the Go command's text.
fn migrate_text(args: &[&str]) -> Run {
    let mut argv = vec!["migrate"];
    argv.extend_from_slice(args);
    support::kes_cmd(&argv, &[])
}

/// A full server config for a filesystem keystore at `keys`.
fn server_config(dir: &Path, keys: &Path) -> String {
    format!(
        "admin:\n  identity: {ADMIN_IDENTITY}\ntls:\n  key: {dir}/server.key\n  cert: {dir}/server.crt\n\
         keystore:\n  fs:\n    path: {keys}\n",
        dir = dir.display(),
        keys = keys.display()
    )
}

/// A config with nothing but a keystore section.
fn keystore_config(keys: &Path) -> String {
    format!("keystore:\n  fs:\n    path: {}\n", keys.display())
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

fn write(path: PathBuf, text: &str) -> PathBuf {
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn fs_to_fs_keeps_every_key_and_old_data_keys_decrypt() {
    let start = Instant::now();
    let dir = TempDir::new("migrate-fs");
    let ca = Ca::new("kes migrate test CA");
    ca.server().write(dir.path(), "server");
    let admin = pki::api_key_client(ADMIN_API_KEY);
    let src_keys = dir.join("src-keys");
    let dst_keys = dir.join("dst-keys");
    let src_cfg = write(dir.join("src.yaml"), &server_config(dir.path(), &src_keys));
    let dst_cfg = write(dir.join("dst.yaml"), &keystore_config(&dst_keys));

    // A server on the source makes keys (one imported ChaCha20 key) and data keys.
    let src_server = Kes::start(&src_cfg);
    let client = Client::new(src_server.addr, &ca.cert.der, Some(&admin));
    let mut deks = Vec::new();
    for name in ["k-1", "k-2", "k-20", "other"] {
        assert_eq!(
            client.put(&format!("/v1/key/create/{name}"), "").status,
            200
        );
    }
    let import = format!(
        "{{\"key\":\"{}\",\"cipher\":\"ChaCha20\"}}",
        B64.encode([9u8; 32])
    );
    assert_eq!(client.put("/v1/key/import/chacha", &import).status, 200);
    for name in ["k-1", "k-2", "k-20", "other", "chacha"] {
        let ctx = B64.encode(format!("{{\"key\":\"{name}\"}}"));
        let reply = client.put(
            &format!("/v1/key/generate/{name}"),
            &format!("{{\"context\":\"{ctx}\"}}"),
        );
        assert_eq!(reply.status, 200);
        let v = reply.json();
        deks.push((
            name,
            ctx,
            v["plaintext"].as_str().unwrap().to_string(),
            v["ciphertext"].as_str().unwrap().to_string(),
        ));
    }
    let source = files(&src_keys);
    assert_eq!(source.len(), 5);

    // Migrate: JSON summary (--json), byte-identical copies.
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    println!("first run: {report}");
    assert_eq!(report["total"], 5);
    assert_eq!(report["copied"], 5);
    assert_eq!(report["failed"], serde_json::json!([]));
    assert!(report["from"].as_str().unwrap().contains("src-keys"));
    assert_eq!(files(&dst_keys), source);
    assert_eq!(files(&src_keys), source, "the source changed");

    // A server on the destination decrypts the data keys made before the migration.
    let dst_server_cfg = write(
        dir.join("dst-server.yaml"),
        &server_config(dir.path(), &dst_keys),
    );
    let dst_server = Kes::start(&dst_server_cfg);
    let dst_client = Client::new(dst_server.addr, &ca.cert.der, Some(&admin));
    for (name, ctx, plaintext, ciphertext) in &deks {
        let reply = dst_client.put(
            &format!("/v1/key/decrypt/{name}"),
            &format!("{{\"ciphertext\":\"{ciphertext}\",\"context\":\"{ctx}\"}}"),
        );
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.json()["plaintext"], plaintext.as_str(), "{name}");
    }

    // Running it again changes nothing. Without --json, the Go command's text.
    let run = migrate_text(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Starting key migration:\n\nMigration succeeded! No keys migrated.\n"
    );
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        (report["copied"].as_u64(), report["present"].as_u64()),
        (Some(0), Some(5))
    );

    // A destination key with another value is a conflict: not replaced, exit code 1.
    assert_eq!(
        dst_client
            .request("DELETE", "/v1/key/delete/k-1", None)
            .status,
        200
    );
    assert_eq!(dst_client.put("/v1/key/create/k-1", "").status, 200);
    let replaced = std::fs::read(dst_keys.join("k-1")).unwrap();
    assert_ne!(replaced, std::fs::read(src_keys.join("k-1")).unwrap());
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["conflicts"], serde_json::json!(["k-1"]));
    assert_eq!(std::fs::read(dst_keys.join("k-1")).unwrap(), replaced);
    // --merge accepts it, still without replacing.
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
        "--merge",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(std::fs::read(dst_keys.join("k-1")).unwrap(), replaced);
    // --force replaces exactly that key with the source's value.
    let text = migrate_text(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(text.code, 1, "{text:?}");
    assert_eq!(text.stdout, "Starting key migration:\n\n");
    assert!(text.stderr.contains("Error: key 'k-1'"), "{text:?}");
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        (report["replaced"].as_u64(), report["present"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(files(&dst_keys), source);

    // A pattern selects keys by name.
    let partial = dir.join("partial-keys");
    let partial_cfg = write(dir.join("partial.yaml"), &keystore_config(&partial));
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        partial_cfg.to_str().unwrap(),
        "k-2*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let names: Vec<String> = files(&partial).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["k-2", "k-20"]);

    // Mistakes are usage errors that change nothing.
    let same = write(
        dir.join("same.yaml"),
        &keystore_config(&dir.join("src-keys/../src-keys")),
    );
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        same.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("same keystore"), "{run:?}");
    let typo = write(dir.join("typo.yaml"), "keystore:\n  fs:\n    pth: /tmp/x\n");
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        typo.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("typo.yaml") && run.stderr.contains("pth"),
        "{run:?}"
    );
    let run = migrate(&[
        "--from",
        "/nonexistent.yaml",
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    let missing = write(
        dir.join("missing.yaml"),
        &keystore_config(&dir.join("no-such-dir")),
    );
    let run = migrate(&[
        "--from",
        missing.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    assert!(
        !dir.join("no-such-dir").exists(),
        "the source directory was created"
    );
    let run = migrate(&["--from", src_cfg.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(files(&src_keys), source);
    println!("fs → fs migration checks took {:?}", start.elapsed());
}

#[test]
fn an_interrupted_migration_completes_when_run_again() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("migrate-interrupted");
    let src_keys = dir.join("src");
    let dst_keys = dir.join("dst");
    let src_cfg = write(dir.join("src.yaml"), &keystore_config(&src_keys));
    let dst_cfg = write(dir.join("dst.yaml"), &keystore_config(&dst_keys));
    let count = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count()
            })
            .unwrap_or(0)
    };

    // Kill the migration (SIGKILL: no chance to clean up) once it has copied some keys. Each
    // copy is fsynced, so it takes milliseconds; on a machine where the whole run is faster
    // than the kill, try again with more keys.
    let mut keys = 300;
    let (total, copied_before) = loop {
        std::fs::create_dir_all(&src_keys).unwrap();
        for i in 0..keys {
            let path = src_keys.join(format!("key-{i:05}"));
            if !path.exists() {
                std::fs::write(path, format!("value of key {i}")).unwrap();
            }
        }
        let _ = std::fs::remove_dir_all(&dst_keys);
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kes"))
            .args([
                "migrate",
                "--from",
                src_cfg.to_str().unwrap(),
                "--to",
                dst_cfg.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while count(&dst_keys) < 20 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let copied = count(&dst_keys);
        println!(
            "killed after {:?} with {copied} of {keys} keys copied ({status})",
            started.elapsed()
        );
        if status.signal() == Some(9) && copied < keys {
            break (keys, copied);
        }
        assert!(
            keys < 20_000,
            "the migration always ended before it could be killed"
        );
        keys *= 4;
    };

    // Run again: it completes, counting what the first run copied as present.
    let started = Instant::now();
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    println!("second run in {:?}: {report}", started.elapsed());
    assert_eq!(report["total"], total);
    assert_eq!(report["present"], copied_before);
    assert_eq!(report["copied"], total - copied_before);
    assert_eq!(files(&dst_keys), files(&src_keys));
}

#[test]
fn progress_bar_and_summary_on_a_terminal() {
    let dir = TempDir::new("migrate-tty");
    let src_keys = dir.join("src");
    {
        use kes::keystore::Keystore;
        let src = kes::keystore::fs::FsKeystore::open(&src_keys).unwrap();
        for i in 0..20 {
            src.create(&format!("k{i}"), b"v").unwrap();
        }
    }
    let src_cfg = write(dir.join("src.yaml"), &keystore_config(&src_keys));
    let dst_cfg = write(dir.join("dst.yaml"), &keystore_config(&dir.join("dst")));
    const SCRIPT: &str = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b''
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, env!("CARGO_BIN_EXE_kes"), "migrate", "--from"])
        .arg(&src_cfg)
        .arg("--to")
        .arg(&dst_cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("terminal output: {text:?}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("] 20/20"), "no progress bar: {text:?}");
    assert!(
        text.contains("Migrated 20 of 20 keys matching '*'"),
        "{text:?}"
    );
    assert!(text.contains("copied                    20"), "{text:?}");
}

/// Reads the value of `name` stored in Vault K/V v1 at `mount` (root token).
fn vault_v1_value(bao: &openbao::Bao, mount: &str, name: &str) -> String {
    let (status, reply) = bao.read(None, &format!("{mount}/{name}"));
    assert_eq!(status, 200, "{name}: {reply}");
    reply["data"][name].as_str().unwrap().to_string()
}

fn vault_v1_count(bao: &openbao::Bao, mount: &str) -> usize {
    let (_, reply) = bao.call(None, "LIST", &format!("/v1/{mount}"), None);
    reply["data"]["keys"].as_array().map_or(0, Vec::len)
}

#[test]
fn fs_to_vault_v1_to_vault_v2_with_namespace_prefix_and_transit() {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let dir = TempDir::new("migrate-vault");
    let ca = Ca::new("kes migrate vault test CA");
    ca.server().write(dir.path(), "server");
    let admin = pki::api_key_client(ADMIN_API_KEY);

    // OpenBao: K/V v1 at kv1 in the root namespace; in namespace tenant1, K/V v2 at kv2 and
    // transit key kes, each with an AppRole whose policy allows only what KES needs (no update:
    // nothing can be written over).
    let bao = openbao::Bao::dev();
    let v1_role = bao.seed_setup(None, "kv1", 1, true);
    bao.create_namespace("tenant1");
    let ns = Some("tenant1");
    bao.enable_kv(ns, "kv2", 2);
    bao.enable_transit(ns, "transit", "kes");
    bao.write_policy(
        ns,
        "kes-v2",
        &(openbao::Bao::seed_policy("kv2", 2, true)
            + "path \"transit/encrypt/kes\" { capabilities = [\"update\"] }\n\
               path \"transit/decrypt/kes\" { capabilities = [\"update\"] }\n"),
    );
    let v2_role = bao.approle(
        ns,
        "kes-v2",
        serde_json::json!({"token_policies": ["kes-v2"], "period": "5m"}),
    );
    let v1_yaml = bao.keystore_yaml("kv1", 1, &v1_role);
    let v2_yaml = format!(
        "keystore:\n  vault:\n    endpoint: {addr}\n    engine: kv2\n    version: v2\n    namespace: tenant1\n    \
         prefix: kes/prod\n    transit:\n      engine: transit\n      key: kes\n    approle:\n      \
         id: {id}\n      secret: {secret}\n      retry: 1s\n    status:\n      ping: 1s\n",
        addr = bao.addr,
        id = v2_role.0,
        secret = v2_role.1,
    );
    let v1_cfg = write(dir.join("vault-v1.yaml"), &v1_yaml);
    let v2_cfg = write(dir.join("vault-v2.yaml"), &v2_yaml);

    // The source: a filesystem keystore with keys and data keys made by a real server, plus
    // many more stored values so that the migration to Vault can be interrupted.
    let src_keys = dir.join("src-keys");
    let src_cfg = write(dir.join("src.yaml"), &server_config(dir.path(), &src_keys));
    let mut deks = Vec::new();
    {
        let server = Kes::start(&src_cfg);
        let client = Client::new(server.addr, &ca.cert.der, Some(&admin));
        for name in ["minio-1", "minio-2"] {
            assert_eq!(
                client.put(&format!("/v1/key/create/{name}"), "").status,
                200
            );
        }
        let import = format!(
            "{{\"key\":\"{}\",\"cipher\":\"ChaCha20\"}}",
            B64.encode([5u8; 32])
        );
        assert_eq!(
            client.put("/v1/key/import/minio-chacha", &import).status,
            200
        );
        for name in ["minio-1", "minio-2", "minio-chacha"] {
            let ctx = B64.encode(format!("{{\"bucket\":\"{name}\"}}"));
            let v = client
                .put(
                    &format!("/v1/key/generate/{name}"),
                    &format!("{{\"context\":\"{ctx}\"}}"),
                )
                .json();
            deks.push((name, ctx, v["plaintext"].clone(), v["ciphertext"].clone()));
        }
    }
    const EXTRA: usize = 150;
    for i in 0..EXTRA {
        std::fs::write(src_keys.join(format!("bulk-{i:04}")), format!("value {i}")).unwrap();
    }
    let source = files(&src_keys);
    let total = source.len();

    // fs → Vault v1, killed part-way, then run again to completion.
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kes"))
        .args([
            "migrate",
            "--from",
            src_cfg.to_str().unwrap(),
            "--to",
            v1_cfg.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while vault_v1_count(&bao, "kv1") < 20 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    // A write that the killed process had sent may still land in Vault after the kill: count
    // once the number of stored keys has stopped changing.
    let mut before = vault_v1_count(&bao, "kv1");
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = vault_v1_count(&bao, "kv1");
        if now == before {
            break;
        }
        before = now;
    }
    println!(
        "fs → vault v1 killed after {:?} with {before} of {total} keys copied ({status})",
        started.elapsed()
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "the migration ended before it was killed"
    );
    assert!(before < total);
    let started = Instant::now();
    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        v1_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    println!("fs → vault v1 re-run in {:?}: {report}", started.elapsed());
    assert_eq!(report["present"], before);
    assert_eq!(report["copied"], total - before);
    assert!(report["to"].as_str().unwrap().contains("vault"), "{report}");
    for (name, value) in &source {
        assert_eq!(
            vault_v1_value(&bao, "kv1", name).as_bytes(),
            value.as_slice(),
            "{name}"
        );
    }

    // Vault v1 → Vault v2 in a namespace, under a prefix, wrapped with transit.
    let started = Instant::now();
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v2_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    println!("vault v1 → v2 in {:?}: {report}", started.elapsed());
    assert_eq!(report["copied"], total);
    // Stored wrapped by transit: Vault holds a transit ciphertext, not the KES value.
    let (status, stored) = bao.read(ns, "kv2/data/kes/prod/minio-1");
    assert_eq!(status, 200, "{stored}");
    let stored = stored["data"]["data"]["minio-1"].as_str().unwrap();
    assert!(stored.starts_with("vault:v1:"), "{stored}");
    // A re-run reads the values back through transit and finds them all present.
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v2_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["present"], total);

    // An export (docs/operations.md, "Runbook"): Vault v2 → a directory. The files hold the
    // KES values byte for byte, unwrapped from transit: the source directory's files again.
    let started = Instant::now();
    let export = dir.join("export");
    let export_cfg = write(dir.join("export.yaml"), &keystore_config(&export));
    let run = migrate(&[
        "--from",
        v2_cfg.to_str().unwrap(),
        "--to",
        export_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["copied"], total);
    assert_eq!(files(&export), source);
    println!("vault v2 → directory (export) in {:?}", started.elapsed());

    // A server on Vault v2 decrypts the data keys made on the filesystem before the migrations.
    let v2_server_cfg = write(
        dir.join("v2-server.yaml"),
        &format!(
            "admin:\n  identity: {ADMIN_IDENTITY}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n{v2_yaml}",
            d = dir.path().display()
        ),
    );
    let server = Kes::start(&v2_server_cfg);
    let client = Client::new(server.addr, &ca.cert.der, Some(&admin));
    for (name, ctx, plaintext, ciphertext) in &deks {
        let reply = client.put(
            &format!("/v1/key/decrypt/{name}"),
            &format!("{{\"ciphertext\":{ciphertext},\"context\":\"{ctx}\"}}"),
        );
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(&reply.json()["plaintext"], plaintext, "{name}");
    }

    // A differing key in Vault v2 is a conflict; --force replaces it with the source's value.
    assert_eq!(
        client
            .request("DELETE", "/v1/key/delete/minio-2", None)
            .status,
        200
    );
    assert_eq!(client.put("/v1/key/create/minio-2", "").status, 200);
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v2_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["conflicts"], serde_json::json!(["minio-2"]));
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v2_cfg.to_str().unwrap(),
        "--force",
        "minio-*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        (report["total"].as_u64(), report["replaced"].as_u64()),
        (Some(3), Some(1))
    );
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v2_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.json()["present"], total, "{run:?}");

    // The same Vault mount twice is refused.
    let run = migrate(&[
        "--from",
        v1_cfg.to_str().unwrap(),
        "--to",
        v1_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    println!("vault migrations took {:?}", start.elapsed());
}

/// Every file under `dir`, recursively, as (relative path, bytes), sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn rotated_keys_are_migrated_with_every_version() {
    // Issue 16: `kes migrate` copies every version (and retirement marker) of a rotated key, so
    // data encrypted with any version decrypts at the destination, with and without `version`.
    let dir = TempDir::new("migrate-versions");
    let ca = Ca::new("kes migrate test CA");
    ca.server().write(dir.path(), "server");
    let admin = pki::api_key_client(ADMIN_API_KEY);
    let src_keys = dir.join("src-keys");
    let dst_keys = dir.join("dst-keys");
    let src_cfg = write(dir.join("src.yaml"), &server_config(dir.path(), &src_keys));
    let dst_cfg = write(dir.join("dst.yaml"), &keystore_config(&dst_keys));

    let src_server = Kes::start(&src_cfg);
    let client = Client::new(src_server.addr, &ca.cert.der, Some(&admin));
    assert_eq!(client.put("/v1/key/create/rot", "").status, 200);
    assert_eq!(client.put("/v1/key/create/plain", "").status, 200);
    // (version, ciphertext, plaintext) made by each version of `rot`.
    let mut made = Vec::new();
    for v in 1..=3u32 {
        if v > 1 {
            let r = client.put("/v1/key/rotate/rot", "");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["version"], v.to_string());
        }
        let r = client.put("/v1/key/generate/rot", "{}");
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(
            j.get("version").and_then(|x| x.as_str()),
            (v > 1).then(|| v.to_string()).as_deref()
        );
        made.push((
            v,
            j["ciphertext"].as_str().unwrap().to_string(),
            j["plaintext"].as_str().unwrap().to_string(),
        ));
    }
    drop(src_server);
    let source = tree(&src_keys);
    assert_eq!(
        source
            .iter()
            .filter(|(p, _)| p.starts_with(".kes-versions/rot/"))
            .count(),
        2,
        "versions 2 and 3 stored beside the key: {:?}",
        source.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );

    let run = migrate(&[
        "--from",
        src_cfg.to_str().unwrap(),
        "--to",
        dst_cfg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["copied"], 2, "keys are counted, not versions");
    assert_eq!(
        tree(&dst_keys),
        source,
        "every version copied byte for byte"
    );

    let dst_server_cfg = write(
        dir.join("dst-server.yaml"),
        &server_config(dir.path(), &dst_keys),
    );
    let dst_server = Kes::start(&dst_server_cfg);
    let client = Client::new(dst_server.addr, &ca.cert.der, Some(&admin));
    for (v, ct, pt) in &made {
        for body in [
            format!("{{\"ciphertext\":\"{ct}\"}}"),
            format!("{{\"ciphertext\":\"{ct}\",\"version\":\"{v}\"}}"),
        ] {
            let r = client.put("/v1/key/decrypt/rot", &body);
            assert_eq!(r.status, 200, "version {v}: {}", r.text());
            assert_eq!(r.json()["plaintext"], pt.as_str());
        }
    }
    let d = client.get("/v1/key/describe/rot").json();
    assert_eq!(d["version"], "3");
    assert_eq!(d["versions"].as_array().unwrap().len(), 3);
    let r = client.put("/v1/key/generate/rot", "{}");
    assert_eq!(
        r.json()["version"],
        "3",
        "the destination uses the current version"
    );
}
