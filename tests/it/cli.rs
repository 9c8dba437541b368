//! End-to-end tests of the `kes` client commands: the real binary against a real server started
//! by the test, over real TLS, as the admin (an API key) and as a policy identity (a client
//! certificate). `--json` output is parsed and checked, the text printed without a terminal (the
//! Go `kes` command's, see `tests/it/cli_compat.rs` for the side-by-side comparison) is checked
//! line by line, exit codes are asserted, and the terminal output is checked on a real
//! pseudo-terminal (Python's `pty`).

use crate::support;

use crate::support::pki::{self, Ca, Cert, KeyKind};
use crate::support::{Kes, Run, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";
const ADMIN_IDENTITY: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

/// A server with an admin API key, a policy identity `app` (a certificate), and its CA.
struct Env {
    dir: TempDir,
    kes: Kes,
    app: Cert,
    app_cert: PathBuf,
    app_key: PathBuf,
    ca_file: PathBuf,
}

fn kes_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kes"));
    cmd.args(args);
    for var in support::CLIENT_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `kes` with `env` (and nothing of the caller's KES environment), standard input from
/// `stdin`.
fn kes_in(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = kes_command(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kes");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Run::from_output(child.wait_with_output().unwrap())
}

fn kes(args: &[&str], env: &[(&str, &str)]) -> Run {
    kes_in(args, env, "")
}

/// Runs `kes` on a pseudo-terminal; when it prints `Password`, types `password`.
fn kes_on_terminal(args: &[&str], env: &[(&str, &str)], password: &str) -> Run {
    const SCRIPT: &str = r#"
import json, os, pty, select, sys, time
args = json.loads(sys.argv[1]); password = sys.argv[2].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(args[0], args)
out = b''; sent = False; deadline = time.time() + 30
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
        if password and not sent and b'Password' in out:
            os.write(fd, password + b'\n'); sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut argv = vec![env!("CARGO_BIN_EXE_kes")];
    argv.extend_from_slice(args);
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        SCRIPT,
        &serde_json::to_string(&argv).unwrap(),
        password,
    ]);
    for var in support::CLIENT_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 with the pty module");
    Run {
        code: out.status.code().unwrap_or(-1),
        // A terminal turns \n into \r\n.
        stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Env {
    fn start(tag: &str) -> Env {
        let dir = TempDir::new(tag);
        let ca = Ca::new("kes cli test CA");
        ca.server().write(dir.path(), "server");
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, &ca.cert.cert_pem).unwrap();
        let app = pki::self_signed_client(KeyKind::EcdsaP256, "app");
        let (app_cert, app_key) = app.write(dir.path(), "app");
        let config = format!(
            r#"
admin:
  identity: {ADMIN_IDENTITY}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
policy:
  app:
    allow:
    - /v1/key/create/app-*
    - /v1/key/generate/app-*
    - /v1/key/decrypt/app-*
    - /v1/key/describe/app-*
    - /v1/key/list/*
    deny:
    - /v1/key/create/app-denied*
    identities:
    - {app}
keystore:
  fs:
    path: {dir}/keys
"#,
            app = app.identity,
            dir = dir.path().display(),
        );
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        let kes = Kes::start(&dir.join("config.yaml"));
        Env {
            dir,
            kes,
            app,
            app_cert,
            app_key,
            ca_file,
        }
    }

    fn server(&self) -> String {
        format!("https://{}", self.kes.addr)
    }

    /// Environment of the admin: API key, server and CA from the environment.
    fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KES_SERVER", self.server()),
            ("KES_API_KEY", ADMIN_API_KEY.to_string()),
            ("KES_CAPATH", self.ca_file.display().to_string()),
        ]
    }

    fn admin(&self, args: &[&str]) -> Run {
        let env = self.admin_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        kes(args, &env)
    }

    /// The `app` identity: certificate, server and CA from flags.
    fn app(&self, args: &[&str]) -> Run {
        let server = self.server();
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&[
            "--server",
            &server,
            "--client-cert",
            self.app_cert.to_str().unwrap(),
            "--client-key",
            self.app_key.to_str().unwrap(),
            "--ca",
            self.ca_file.to_str().unwrap(),
        ]);
        kes(&all, &[])
    }

    fn key_files(&self) -> Vec<(String, Vec<u8>)> {
        key_files(&self.dir.join("keys"))
    }
}

fn key_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The names of a `--json` list: an array of strings, as the Go command prints it.
fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn key_commands_as_admin_with_an_api_key() {
    let start = Instant::now();
    let env = Env::start("cli-admin");

    // create: nothing on stdout when it is not a terminal; the exit code says it all.
    let run = env
        .admin(&["key", "create", "app-1", "app-2", "other"])
        .ok();
    assert_eq!(run.stdout, "");
    assert_eq!(env.key_files().len(), 3);

    // ls: without a terminal a `Key` header and the names, as the Go command prints them; with
    // --json an array of names.
    let run = env.admin(&["key", "ls"]).ok();
    assert_eq!(run.stdout, "Key\napp-1\napp-2\nother\n");
    let run = env.admin(&["key", "ls", "--json"]).ok();
    assert_eq!(names(&run.json()), ["app-1", "app-2", "other"]);
    for prefix in ["app-", "app-*"] {
        let run = env.admin(&["key", "ls", "--json", prefix]).ok();
        assert_eq!(names(&run.json()), ["app-1", "app-2"], "{prefix}");
    }
    let run = env.admin(&["ls", "oth", "--json"]).ok();
    assert_eq!(names(&run.json()), ["other"]);
    // Nothing at all (not even the header) when nothing matches.
    assert_eq!(env.admin(&["key", "ls", "zzz"]).ok().stdout, "");
    assert_eq!(
        env.admin(&["key", "ls", "zzz", "--json"]).ok().stdout,
        "[]\n"
    );

    // info: four labelled lines without a terminal, the fields with --json.
    let run = env.admin(&["key", "info", "app-1"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    assert_eq!(lines[0], "Name        app-1");
    assert!(
        lines[1] == "Algorithm   AES256" || lines[1] == "Algorithm   ChaCha20",
        "{run:?}"
    );
    assert!(lines[2].starts_with("Date        20"), "{run:?}");
    assert_eq!(lines[3], format!("Owner       {ADMIN_IDENTITY}"));
    let info = env.admin(&["key", "info", "app-1", "--json"]).ok().json();
    assert_eq!(info["name"], "app-1");
    assert!(info["algorithm"] == "AES256" || info["algorithm"] == "ChaCha20");
    assert_eq!(info["created_by"], ADMIN_IDENTITY);

    // A create never replaces a key; the other names are still created; exit code 1.
    let before = env.key_files();
    let run = env.admin(&["key", "create", "app-1", "app-3"]).fails(
        1,
        "Error: failed to create key \"app-1\": key already exists",
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let after = env.key_files();
    assert_eq!(after.len(), 4);
    assert!(before.iter().all(|k| after.contains(k)), "a key changed");

    // dek → decrypt round trip with a context.
    let ctx = B64.encode(br#"{"bucket":"photos"}"#);
    let dek = env.admin(&["key", "dek", "app-1", &ctx]).ok().json();
    let plaintext = B64.decode(dek["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(plaintext.len(), 32);
    let ciphertext = dek["ciphertext"].as_str().unwrap();
    let back = env
        .admin(&["key", "decrypt", "app-1", ciphertext, &ctx])
        .ok()
        .json();
    assert_eq!(
        B64.decode(back["plaintext"].as_str().unwrap()).unwrap(),
        plaintext
    );
    // The wrong context, or the wrong key: the server's message, exit code 1.
    env.admin(&["key", "decrypt", "app-1", ciphertext])
        .fails(1, "decryption failed: ciphertext is not authentic");
    env.admin(&["key", "decrypt", "app-2", ciphertext, &ctx])
        .fails(1, "decryption failed: ciphertext is not authentic");

    // encrypt → decrypt: the plaintext comes back base64.
    let ct = env
        .admin(&["key", "encrypt", "other", "hello world"])
        .ok()
        .json();
    let ct = ct["ciphertext"].as_str().unwrap().to_string();
    let pt = env.admin(&["key", "decrypt", "other", &ct]).ok().json();
    assert_eq!(pt["plaintext"], B64.encode("hello world"));
    // The message from standard input.
    let admin_env = env.admin_env();
    let admin_env: Vec<(&str, &str)> = admin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ct = kes_in(&["key", "encrypt", "other", "-"], &admin_env, "from stdin")
        .ok()
        .json();
    let pt = env
        .admin(&[
            "key",
            "decrypt",
            "other",
            ct["ciphertext"].as_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(pt["plaintext"], B64.encode("from stdin"));

    // import from standard input; the imported key encrypts what the server's own decrypts.
    let raw = [0x42u8; 32];
    kes_in(&["key", "import", "imported"], &admin_env, &B64.encode(raw)).ok();
    let info = env
        .admin(&["key", "info", "imported", "--json"])
        .ok()
        .json();
    assert_eq!(info["algorithm"], "AES256");
    kes_in(
        &["key", "import", "imported", "--algorithm", "ChaCha20", "-"],
        &admin_env,
        &B64.encode([1u8; 32]),
    )
    .fails(1, "key already exists");
    kes_in(
        &["key", "import", "short"],
        &admin_env,
        &B64.encode([1u8; 16]),
    )
    .fails(2, "must be 32 bytes");
    kes_in(
        &["key", "import", "bad", "--algorithm", "DES"],
        &admin_env,
        "",
    )
    .fails(2, "invalid value 'DES'");
    assert!(
        !env.key_files()
            .iter()
            .any(|(n, _)| n == "short" || n == "bad")
    );
    let ct = env.admin(&["key", "encrypt", "imported", "x"]).ok().json();
    env.admin(&[
        "key",
        "decrypt",
        "imported",
        ct["ciphertext"].as_str().unwrap(),
    ])
    .ok();

    // rm: several names; a missing one is reported, the others are deleted.
    let run = env.admin(&["key", "rm", "app-2", "nope", "app-3"]).fails(
        1,
        "Error: failed to remove key \"nope\": key does not exist",
    );
    assert_eq!(run.stdout, "");
    let left = names(&env.admin(&["key", "ls", "--json"]).ok().json());
    assert_eq!(left, ["app-1", "imported", "other"]);

    // Malformed base64 arguments are usage errors and are not echoed.
    env.admin(&["key", "decrypt", "app-1", "%%secret%%"])
        .fails(2, "the ciphertext is not valid base64");
    let run = env
        .admin(&["key", "dek", "app-1", "!!"])
        .fails(2, "context");
    assert!(!run.stderr.contains("!!"));

    println!("key commands as admin: checked in {:?}", start.elapsed());
}

#[test]
fn commands_as_a_policy_identity_with_a_client_certificate() {
    let start = Instant::now();
    let env = Env::start("cli-app");
    env.admin(&["key", "create", "app-1", "other"]).ok();

    // Allowed by the policy.
    env.app(&["key", "create", "app-2"]).ok();
    let dek = env.app(&["key", "dek", "app-1"]).ok().json();
    let back = env
        .app(&[
            "key",
            "decrypt",
            "app-1",
            dek["ciphertext"].as_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(back["plaintext"], dek["plaintext"]);
    assert_eq!(
        names(&env.app(&["key", "ls", "--json"]).ok().json()),
        ["app-1", "app-2", "other"]
    );
    let info = env.app(&["key", "info", "app-2", "--json"]).ok().json();
    assert_eq!(info["created_by"], env.app.identity.as_str());

    // Not allowed: the server's exact message, exit code 1, nothing changed.
    let before = env.key_files();
    for args in [
        &["key", "create", "other-2"][..],
        &["key", "create", "app-denied"],
        &["key", "rm", "app-1"],
        &["key", "info", "other"],
        &["policy", "ls"],
        &["status"],
    ] {
        env.app(args)
            .fails(1, "not authorized: insufficient permissions");
    }
    assert_eq!(env.key_files(), before);

    // Its own identity: the policy and its rules (in the shape the Go SDK decodes: the policy's
    // name, its rules beside it).
    let me = env.app(&["identity", "info", "--json"]).ok().json();
    assert_eq!(me["identity"], env.app.identity.as_str());
    assert_eq!(me["policy"], "app");
    assert!(me["allow"]["/v1/key/create/app-*"].is_object(), "{me}");

    // The credentials may come from the environment as well.
    let server = env.server();
    let run = kes(
        &["key", "ls", "app-", "--json"],
        &[
            ("MINIO_KMS_KES_ENDPOINT", &server),
            ("MINIO_KES_CERT_FILE", env.app_cert.to_str().unwrap()),
            ("KES_CLIENT_KEY", env.app_key.to_str().unwrap()),
            ("MINIO_KMS_KES_CAPATH", env.ca_file.to_str().unwrap()),
        ],
    )
    .ok();
    assert_eq!(names(&run.json()), ["app-1", "app-2"]);
    println!("policy identity: checked in {:?}", start.elapsed());
}

#[test]
fn policy_identity_and_list_commands() {
    let env = Env::start("cli-policy");
    env.admin(&["key", "create", "k1"]).ok();

    // Without a terminal: a header and the names (`Policy`, where the Go command's `policy ls`
    // says `Key`); with --json an array.
    assert_eq!(env.admin(&["policy", "ls"]).ok().stdout, "Policy\napp\n");
    assert_eq!(env.admin(&["ls", "-p"]).ok().stdout, "Policy\napp\n");
    assert_eq!(
        names(&env.admin(&["policy", "ls", "--json"]).ok().json()),
        ["app"]
    );
    assert_eq!(
        names(&env.admin(&["ls", "-p", "--json"]).ok().json()),
        ["app"]
    );
    assert_eq!(
        names(&env.admin(&["ls", "--policies", "x*", "--json"]).ok().json()),
        Vec::<String>::new()
    );
    // `policy show` prints the policy's JSON without a terminal, as the Go command does: the
    // rules and the creation, not the name.
    let policy = env.admin(&["policy", "show", "app"]).ok().json();
    assert!(policy.get("name").is_none(), "{policy}");
    assert!(policy["allow"]["/v1/key/list/*"].is_object(), "{policy}");
    assert!(
        policy["deny"]["/v1/key/create/app-denied*"].is_object(),
        "{policy}"
    );
    assert_eq!(policy["created_by"], ADMIN_IDENTITY);
    let run = env.admin(&["policy", "info", "app"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "Name        app", "{run:?}");
    assert!(lines[1].starts_with("Date        20"), "{run:?}");
    assert_eq!(lines[2], format!("Created by  {ADMIN_IDENTITY}"));
    let info = env.admin(&["policy", "info", "app", "--json"]).ok().json();
    assert_eq!(info["name"], "app");
    assert_eq!(info["created_by"], ADMIN_IDENTITY);
    env.admin(&["policy", "show", "nope"]).fails(
        1,
        "Error: failed to show policy 'nope': policy does not exist",
    );

    let mut expected = vec![ADMIN_IDENTITY.to_string(), env.app.identity.clone()];
    expected.sort();
    assert_eq!(
        env.admin(&["identity", "ls"]).ok().stdout,
        format!("Identity\n{}\n{}\n", expected[0], expected[1])
    );
    assert_eq!(
        names(&env.admin(&["identity", "ls", "--json"]).ok().json()),
        expected
    );
    assert_eq!(
        names(&env.admin(&["ls", "-i", "--json"]).ok().json()),
        expected
    );
    let run = env.admin(&["identity", "info", &env.app.identity]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("Identity    {}", env.app.identity));
    assert_eq!(lines[1], "Policy      app");
    assert_eq!(lines[3], "Role        User");
    let app = env
        .admin(&["identity", "info", &env.app.identity, "--json"])
        .ok()
        .json();
    assert_eq!(app["policy"], "app");
    let run = env.admin(&["identity", "info"]).ok();
    assert!(run.stdout.ends_with("Role        Admin\n"), "{run:?}");
    let me = env.admin(&["identity", "info", "--json"]).ok().json();
    assert_eq!(me["admin"], true);
    assert_eq!(me["identity"], ADMIN_IDENTITY);
    env.admin(&["identity", "info", &"0".repeat(64)])
        .fails(1, "identity does not exist");
    // -i and -p together are a usage error.
    env.admin(&["ls", "-i", "-p"])
        .fails(2, "cannot be used with");
    // The offline identity commands still work.
    let id = kes(&["identity", "of", ADMIN_API_KEY], &[]).ok();
    assert_eq!(id.stdout.trim(), ADMIN_IDENTITY);
}

#[test]
fn status_and_api_routes() {
    let env = Env::start("cli-status");
    let host = env.server().trim_start_matches("https://").to_string();
    // Without a terminal: the Go command's text.
    let run = env.admin(&["status"]).ok();
    println!("status:\n{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("● {host}"));
    assert_eq!(
        lines[1],
        format!("  Version  {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(lines[2].starts_with("  Uptime   "), "{run:?}");
    assert!(
        lines[3].starts_with("  Latency  ") && lines[3].ends_with('s'),
        "{run:?}"
    );
    assert!(lines[5].starts_with("  CPUs     "), "{run:?}");
    assert_eq!(lines[6], "  Memory  ");
    assert!(lines[7].starts_with("  · Heap   "), "{run:?}");
    assert_eq!(lines.len(), 9, "{run:?}");
    // -s is --short, as in the Go command; the server is --server.
    assert_eq!(
        env.admin(&["status", "-s"]).ok().stdout,
        format!("● {host}\n")
    );
    let status = env.admin(&["status", "--json"]).ok().json();
    println!("status: {status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["keystore_latency"].as_u64().unwrap() > 0);
    assert!(status.get("keystore_unreachable").is_none());

    // Every server of a list is asked; a dead one is reported and makes the exit code 3.
    let dead = closed_port();
    let list = format!("127.0.0.1:{dead},{}", env.server());
    let run = env.admin(&["status", "--server", &list, "--short"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout, format!("● {host}\n"), "{run:?}");
    assert!(
        run.stderr.contains("connection refused") && run.stderr.contains(&dead.to_string()),
        "{run:?}"
    );
    let run = env.admin(&["status", "--server", &list, "--json"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");

    // The routes: a table after the status, or with --json the route list only.
    let run = env.admin(&["status", "--api", "-s"]).ok();
    assert!(
        run.stdout
            .contains("\n  Method  API                          Timeout\n"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("\n  PUT     /v1/key/create/              15s\n"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("\n  GET     /v1/log/audit                Inf\n"),
        "{run:?}"
    );
    let routes = env.admin(&["status", "--api", "--json"]).ok().json();
    let routes = routes.as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["path"] == "/v1/key/create/" && r["method"] == "PUT" && r["timeout"] == 15)
    );
    assert!(
        routes
            .iter()
            .any(|r| r["path"] == "/v1/key/decrypt/" && r["max_body"] == 1_000_000)
    );
    // The keystore's health: remove its directory and the server says so; `kes status` prints
    // the status, names the reason on stderr and exits 1 (the server cannot serve keys).
    std::fs::remove_dir_all(env.dir.join("keys")).unwrap();
    let run = env.admin(&["status", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("keystore unreachable: ") && run.stderr.contains("No such file"),
        "{run:?}"
    );
    let sick = run.json();
    println!("status without a keystore directory: {sick}");
    assert_eq!(sick["keystore_unreachable"], true);
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn exit_codes_and_settings_errors() {
    let env = Env::start("cli-exit");
    let server = env.server();
    let ca = env.ca_file.to_str().unwrap();
    let dead = format!("127.0.0.1:{}", closed_port());

    // 1: the server refused; its message is printed.
    env.admin(&["key", "info", "nope"])
        .fails(1, "Error: failed to describe keys: key does not exist");
    // 3: nothing listens.
    kes(
        &["key", "ls", "-s", &dead, "--ca", ca],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .fails(3, "connection refused");
    // 3: the server's certificate is not trusted (no CA given, not in the system's roots).
    kes(
        &["key", "ls", "-s", &server],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .fails(3, "--ca");
    // -k skips the verification.
    kes(
        &["key", "ls", "-s", &server, "-k"],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .ok();
    // Failover: a dead server first, then the live one.
    let list = format!("{dead},{server}");
    let run = kes(
        &["key", "ls", "-s", &list, "--ca", ca, "--json"],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .ok();
    assert_eq!(run.json(), json!([]));
    let run = kes(
        &["key", "ls", "--ca", ca, "--json"],
        &[
            (
                "KES_SERVER",
                &format!("http://{dead}, {}", server.trim_start_matches("https://")),
            ),
            ("KES_API_KEY", ADMIN_API_KEY),
        ],
    )
    .ok();
    assert_eq!(run.json(), json!([]));

    // 2: usage errors.
    kes(&["key", "ls", "--bogus"], &[]).fails(2, "unexpected argument");
    kes(&["key", "create"], &[]).fails(2, "required");
    kes(
        &["key", "ls", "-k", "--ca", ca],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .fails(2, "cannot be used with");
    kes(
        &["key", "ls", "--ca", ca, "-s", "ftp://x"],
        &[("KES_API_KEY", ADMIN_API_KEY)],
    )
    .fails(2, "unsupported scheme");
    kes(&["key", "ls", "-s", &server, "--ca", ca], &[]).fails(2, "no credentials");
    let run = kes(
        &["key", "ls", "-s", &server, "--ca", ca],
        &[
            ("KES_API_KEY", ADMIN_API_KEY),
            ("KES_CLIENT_CERT", env.app_cert.to_str().unwrap()),
            ("KES_CLIENT_KEY", env.app_key.to_str().unwrap()),
        ],
    )
    .fails(2, "mutually exclusive");
    assert!(run.stderr.contains("KES_API_KEY") && run.stderr.contains("KES_CLIENT_CERT"));
    assert!(
        !run.stderr.contains("AD9E7FSY"),
        "the API key was printed: {run:?}"
    );
    kes(
        &["key", "ls", "-s", &server, "--ca", ca],
        &[("KES_CLIENT_CERT", env.app_cert.to_str().unwrap())],
    )
    .fails(2, "KES_CLIENT_KEY");
    kes(
        &[
            "key",
            "ls",
            "-s",
            &server,
            "--ca",
            ca,
            "-a",
            ADMIN_API_KEY,
            "--client-cert",
            "x",
        ],
        &[],
    )
    .fails(2, "cannot be used with");
    let run = kes(
        &["key", "ls", "-s", &server, "--ca", ca],
        &[(
            "KES_API_KEY",
            "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDR",
        )],
    )
    .fails(2, "KES_API_KEY: invalid API key");
    assert!(!run.stderr.contains("AD9E7FSY"), "{run:?}");
    // Flags override the environment, including a conflict there.
    kes(
        &["key", "ls", "-s", &server, "--ca", ca, "-a", ADMIN_API_KEY],
        &[("KES_CLIENT_CERT", "/nonexistent"), ("KES_SERVER", &dead)],
    )
    .ok();
    // A certificate and a key that do not belong together: a clear error, not a crash.
    let other = pki::self_signed_client(KeyKind::Ed25519, "other");
    let (_, other_key) = other.write(env.dir.path(), "other");
    kes(
        &[
            "key",
            "ls",
            "-s",
            &server,
            "--ca",
            ca,
            "--client-cert",
            env.app_cert.to_str().unwrap(),
            "--client-key",
            other_key.to_str().unwrap(),
        ],
        &[],
    )
    .fails(2, "do not belong together");
    kes(
        &[
            "key",
            "ls",
            "-s",
            &server,
            "--ca",
            ca,
            "--client-cert",
            "/nonexistent.crt",
            "--client-key",
            "/nonexistent.key",
        ],
        &[],
    )
    .fails(2, "/nonexistent.crt");

    // --help documents the exit codes.
    let help = kes(&["--help"], &[]).ok();
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
    assert!(help.stdout.contains("3  no connection"), "{help:?}");
}

#[test]
fn encrypted_client_key_password_from_env_and_prompt() {
    let env = Env::start("cli-password");
    env.admin(&["key", "create", "app-1"]).ok();
    // A legacy-encrypted EC key ("Proc-Type: 4,ENCRYPTED"), as openssl writes it.
    let encrypted = env.dir.join("app-enc.key");
    let status = Command::new("openssl")
        .args(["ec", "-aes256", "-passout", "pass:s3cret-pw", "-in"])
        .arg(&env.app_key)
        .arg("-out")
        .arg(&encrypted)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        std::fs::read_to_string(&encrypted)
            .unwrap()
            .contains("Proc-Type: 4,ENCRYPTED")
    );
    let server = env.server();
    let args = [
        "key",
        "ls",
        "-s",
        &server,
        "--ca",
        env.ca_file.to_str().unwrap(),
        "--client-cert",
        env.app_cert.to_str().unwrap(),
        "--client-key",
        encrypted.to_str().unwrap(),
    ];
    // Not a terminal and no password: a usage error that says what to do.
    kes(&args, &[]).fails(2, "KES_CLIENT_PASSWORD");
    kes(&args, &[("KES_CLIENT_PASSWORD", "wrong")]).fails(2, "failed to decrypt");
    let run = kes(&args, &[("KES_CLIENT_PASSWORD", "s3cret-pw")]).ok();
    assert_eq!(run.stdout, "Key\napp-1\n");

    // On a terminal: asked for, not echoed.
    let run = kes_on_terminal(&args, &[], "s3cret-pw");
    println!("terminal session: {:?}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Password for the private key"),
        "{run:?}"
    );
    assert!(run.stdout.contains("app-1"), "{run:?}");
    assert!(
        !run.stdout.contains("s3cret-pw"),
        "the password was echoed: {run:?}"
    );
}

#[test]
fn terminal_output_is_readable_and_coloured_unless_no_color() {
    let env = Env::start("cli-tty");
    let server = env.server();
    let ca = env.ca_file.to_str().unwrap();
    let base = [
        ("KES_SERVER", server.as_str()),
        ("KES_API_KEY", ADMIN_API_KEY),
        ("KES_CAPATH", ca),
    ];

    let run = kes_on_terminal(&["key", "create", "my-key"], &base, "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\x1b[32mCreated\x1b[0m key 'my-key'"),
        "{run:?}"
    );

    let mut no_color = base.to_vec();
    no_color.push(("NO_COLOR", "1"));
    let run = kes_on_terminal(&["key", "info", "my-key"], &no_color, "");
    println!("kes key info on a terminal:\n{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stdout.contains('\x1b'),
        "colour despite NO_COLOR: {run:?}"
    );
    // The Go command's labels, on a terminal too.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "Name        my-key");
    assert!(lines[1].starts_with("Algorithm   "), "{run:?}");
    assert!(lines[2].starts_with("Date        20"), "{run:?}");
    assert_eq!(lines[3], format!("Owner       {ADMIN_IDENTITY}"));

    // A list's header is underlined on a terminal; --color never turns that off.
    let run = kes_on_terminal(&["key", "ls"], &base, "");
    assert_eq!(run.stdout, "\x1b[4mKey\x1b[0m\nmy-key\n", "{run:?}");
    let run = kes_on_terminal(&["key", "ls", "--color", "never"], &base, "");
    assert_eq!(run.stdout, "Key\nmy-key\n", "{run:?}");
    // --color always colours without a terminal too.
    let run = kes(&["key", "ls", "--color", "always"], &base).ok();
    assert_eq!(run.stdout, "\x1b[4mKey\x1b[0m\nmy-key\n", "{run:?}");

    // --json on a terminal is JSON.
    let run = kes_on_terminal(&["key", "ls", "--json"], &base, "");
    assert_eq!(
        serde_json::from_str::<Value>(run.stdout.trim()).unwrap(),
        json!(["my-key"])
    );

    // metric redraws its view in place: cursor up over the last frame, clear, draw.
    let run = kes_on_terminal(
        &["metric", "--rate", "300ms", "--count", "2"],
        &no_color,
        "",
    );
    println!("kes metric on a terminal: {:?}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.matches("\x1b[J").count(), 2, "{run:?}");
    assert!(
        run.stdout.contains("\x1b[3A"),
        "no redraw over the first frame: {run:?}"
    );
    assert_eq!(run.stdout.matches("Requests  ").count(), 2, "{run:?}");
    assert!(run.stdout.contains("Errors    -"), "{run:?}");

    let run = kes_on_terminal(&["status"], &no_color, "");
    println!("kes status on a terminal:\n{}", run.stdout);
    assert!(
        run.stdout.starts_with(&format!("{server}  online (")),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("  Keystore  healthy (latency "),
        "{run:?}"
    );
}

#[test]
fn log_follows_the_audit_and_error_streams() {
    let env = Env::start("cli-log");
    let admin_env = env.admin_env();
    let admin_env: Vec<(&str, &str)> = admin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // With --json the server's events; without, the Go command's columns.
    let audit_text =
        "    200       3ecfcdf38fcbe141ae26    127.0.0.1          /v1/key/create/text-";
    for (flag, json, wanted) in [
        ("--audit", true, "\"path\":\"/v1/key/create/audit-"),
        ("--error", true, "secret key 'error-"),
        ("--audit=true", false, audit_text),
    ] {
        let start = Instant::now();
        let mut args = vec!["log", flag];
        if json {
            args.push("--json");
        }
        let mut child = kes_command(&args, &admin_env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The stream may not be subscribed yet when the first key is made: make keys until an
        // event for one of them arrives.
        let mut found = None;
        let mut first = None;
        let kind = if json { &flag[2..] } else { "text" };
        for i in 0..40 {
            let name = format!("{kind}-{i}");
            env.admin(&["key", "create", &name]).ok();
            let until = Instant::now() + Duration::from_millis(250);
            while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                first.get_or_insert_with(|| line.clone());
                if json {
                    // Every line is one JSON object.
                    let event: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    if line.contains(wanted) {
                        found = Some(event);
                    }
                } else if line.contains(wanted) {
                    found = Some(Value::String(line));
                }
            }
            if found.is_some() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let event = found.unwrap_or_else(|| panic!("no {flag} event for the new keys"));
        println!("kes log {flag}: {event} after {:?}", start.elapsed());
        if !json {
            assert_eq!(
                first.as_deref(),
                Some(
                    "Time        Status    Identity                IP                 API                               Latency"
                )
            );
            let line = event.as_str().unwrap();
            // 10:39:20    200       3ecfcdf38fcbe141ae26    127.0.0.1          /v1/…    1.2ms
            assert_eq!(line.as_bytes()[2], b':', "{line}");
            assert_eq!(&line[8..12], "    ", "{line}");
        } else if flag == "--audit" {
            assert_eq!(event["response"]["code"], 200);
            assert_eq!(event["request"]["identity"], ADMIN_IDENTITY);
        } else {
            assert!(event["message"].as_str().unwrap().contains(ADMIN_IDENTITY));
        }
    }
    env.admin(&["log", "--audit", "--error"]).fails(
        2,
        "Error: cannot display audit and error logs at the same time",
    );
    env.admin(&["log", "--audit=false"])
        .fails(2, "Error: no log selected");
}

#[test]
fn metric_counts_the_requests_of_each_interval() {
    let env = Env::start("cli-metric");
    env.admin(&["key", "create", "m"]).ok();
    let admin_env = env.admin_env();
    let admin_env: Vec<(&str, &str)> = admin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A long interval, so that the 8 requests fit in it even on a loaded CI machine.
    // Without a terminal: the Go command's line of counters per scrape.
    let run = kes(&["metric", "--count", "1"], &admin_env).ok();
    let counters = run.json();
    assert!(
        counters["kes_http_request_success"].as_u64().unwrap() >= 1,
        "{counters}"
    );
    assert!(
        counters["kes_http_response_time"]["10000000"].is_u64(),
        "{counters}"
    );
    assert_eq!(
        counters["kes_system_up_time"].as_u64().unwrap() % 1_000_000_000,
        0
    );
    let mut child = kes_command(
        &["metric", "--rate", "5s", "--count", "2", "--json"],
        &admin_env,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    // The second interval starts when the first line is printed: what happens now is in it.
    let client = support::client::Client::new(
        env.kes.addr,
        &ca_der(&env),
        Some(&pki::api_key_client(ADMIN_API_KEY)),
    );
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(client.put("/v1/key/generate/m", "").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(client.get("/v1/key/describe/missing").status, 404);
    }
    let busy = started.elapsed();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let status = child.wait().unwrap();
    println!("metric intervals:\n{first}\n{second}\n(8 requests took {busy:?})");
    assert!(status.success());
    assert!(
        busy < Duration::from_millis(4500),
        "the requests took too long to fit: {busy:?}"
    );
    assert_eq!(second["requests"], 8, "{second}");
    assert_eq!(second["success"], 5);
    assert_eq!(second["errors"], 3);
    assert_eq!(second["failures"], 0);
    assert_eq!(second["error_ratio"], 0.375);
    let interval = second["interval"].as_f64().unwrap();
    // At least the rate; later only by scheduling delays.
    assert!((4.9..15.0).contains(&interval), "{interval}");
    let rps = second["requests_per_second"].as_f64().unwrap();
    assert!((rps * interval - 8.0).abs() < 1e-6, "{rps}");
    assert!(second["latency_mean"].as_f64().unwrap() > 0.0);
    assert_eq!(second["endpoint"], env.server());
}

fn ca_der(env: &Env) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(&env.ca_file).unwrap()
}

#[test]
fn completions_and_man_pages() {
    let dir = TempDir::new("cli-completion");
    for shell in ["bash", "zsh", "fish"] {
        let run = kes(&["completion", shell], &[]).ok();
        assert!(
            run.stdout.contains("migrate") && run.stdout.contains("dek"),
            "{shell}"
        );
        let file = dir.join(&format!("kes.{shell}"));
        std::fs::write(&file, &run.stdout).unwrap();
        // Check the syntax with the shell itself (scripts/test.sh installs zsh and fish).
        let checker = match shell {
            "bash" => Some(("bash", vec!["-n"])),
            "zsh" => Some(("zsh", vec!["-n"])),
            "fish" => Some(("fish", vec!["--no-execute"])),
            _ => None,
        };
        if let Some((prog, args)) = checker {
            match Command::new(prog).args(&args).arg(&file).output() {
                Ok(out) => {
                    assert!(
                        out.status.success(),
                        "{shell}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    println!(
                        "{shell} completion: {} bytes, syntax checked by {prog}",
                        run.stdout.len()
                    );
                }
                Err(e) => panic!(
                    "{shell} completion: cannot run {prog} to check its syntax ({e}); install \
                     {prog} (scripts/test.sh does, as root with apt-get)"
                ),
            }
        }
    }
    kes(&["completion", "tcsh"], &[]).fails(2, "invalid value");

    let man = kes(&["man"], &[]).ok();
    assert!(
        man.stdout.starts_with(".ie"),
        "{}",
        &man.stdout[..100.min(man.stdout.len())]
    );
    assert!(man.stdout.contains(".TH kes 1"), "no title");
    assert!(man.stdout.contains("migrate"));
    // Hidden from --help, but there for packaging.
    assert!(!kes(&["--help"], &[]).stdout.contains(" man "));
    let pages = dir.join("man");
    std::fs::create_dir(&pages).unwrap();
    kes(&["man", "--dir", pages.to_str().unwrap()], &[]).ok();
    for page in ["kes.1", "kes-key.1", "kes-key-create.1", "kes-migrate.1"] {
        assert!(pages.join(page).exists(), "{page}");
    }
    let create = std::fs::read_to_string(pages.join("kes-key-create.1")).unwrap();
    assert!(
        create.contains("KES_API_KEY"),
        "the env vars are documented"
    );
}

/// The Go command's command-line forms that need no server: `kes -v`, `kes identity [KEY|FILE]`,
/// `kes identity new` (its text, and files that belong to the printed API key), `--encrypt`,
/// `kes --auto-completion`, `kes update`. (`tests/it/cli_compat.rs` compares them with the Go
/// command itself.)
#[test]
fn go_command_line_forms_offline() {
    let dir = TempDir::new("cli-go-forms");
    let cwd = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = kes_command(args, env);
        cmd.current_dir(dir.path()).stdin(Stdio::null());
        Run::from_output(cmd.output().unwrap())
    };

    // -v/--version: the Go command's layout.
    for flag in ["-v", "--version"] {
        let run = cwd(&[flag], &[]).ok();
        let first = run.stdout.lines().next().unwrap().to_string();
        assert!(
            first.starts_with(&format!("Version    {}", env!("CARGO_PKG_VERSION"))),
            "{run:?}"
        );
        assert!(first.contains(" commit="), "{run:?}");
        assert!(run.stdout.contains("\nRuntime    "), "{run:?}");
    }

    // `kes identity`: a new API key, one line; `kes identity KEY` its identity.
    let key = cwd(&["identity"], &[]).ok().stdout;
    assert!(
        key.starts_with("kes:v1:") && key.ends_with('\n') && key.len() == 52,
        "{key:?}"
    );
    let id = cwd(&["identity", key.trim()], &[]).ok().stdout;
    assert_eq!(id, cwd(&["identity", "of", key.trim()], &[]).ok().stdout);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(
        cwd(&["identity", ADMIN_API_KEY], &[]).ok().stdout,
        format!("{ADMIN_IDENTITY}\n")
    );

    // `kes identity new --key --cert`: the Go command's text; the files belong to the printed
    // API key (the certificate has its identity, the key file is that API key).
    let run = cwd(
        &[
            "identity",
            "new",
            "--key",
            "n.key",
            "--cert",
            "n.crt",
            "--ip",
            "127.0.0.1",
            "n",
        ],
        &[],
    )
    .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "Your API key:", "{run:?}");
    let api_key = lines[2].trim();
    let identity = lines[8].trim();
    assert!(api_key.starts_with("kes:v1:"), "{run:?}");
    assert_eq!(
        cwd(&["identity", "of", api_key], &[]).ok().stdout.trim(),
        identity
    );
    assert!(
        run.stdout
            .contains("The generated TLS private key is stored at: n.key\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.ends_with("    kes identity of n.crt\n"),
        "{run:?}"
    );
    assert_eq!(
        cwd(&["identity", "n.crt"], &[]).ok().stdout.trim(),
        identity
    );
    assert_eq!(
        cwd(&["identity", "of", "n.key"], &[]).ok().stdout.trim(),
        identity
    );
    assert_eq!(cwd(&["identity", "n.key"], &[]).ok().stdout.trim(), api_key);
    cwd(
        &["identity", "new", "--key", "n.key", "--cert", "n.crt"],
        &[],
    )
    .fails(
        1,
        "Error: private key already exists. Use --force to overwrite it",
    );
    // A subject alone is accepted and ignored, as in the Go command.
    assert!(
        cwd(&["identity", "new", "subject"], &[])
            .ok()
            .stdout
            .starts_with("Your API key:")
    );
    // An ECDSA key is no API key.
    let ec = pki::self_signed_client(KeyKind::EcdsaP256, "ec");
    let (_, ec_key) = ec.write(dir.path(), "ec");
    cwd(&["identity", ec_key.to_str().unwrap()], &[]).fails(1, "only Ed25519 private keys");

    // --encrypt: the password from KES_CLIENT_PASSWORD (or a terminal); the key file is
    // encrypted and opens with the password only.
    cwd(
        &[
            "identity",
            "new",
            "--key",
            "e.key",
            "--cert",
            "e.crt",
            "--encrypt",
        ],
        &[],
    )
    .fails(2, "KES_CLIENT_PASSWORD");
    cwd(
        &[
            "identity",
            "new",
            "--key",
            "e.key",
            "--cert",
            "e.crt",
            "--encrypt",
        ],
        &[("KES_CLIENT_PASSWORD", "pw-123")],
    )
    .ok();
    let pem = std::fs::read_to_string(dir.join("e.key")).unwrap();
    assert!(pem.contains("Proc-Type: 4,ENCRYPTED"), "{pem}");
    let ok = Command::new("openssl")
        .args(["pkey", "-noout", "-passin", "pass:pw-123", "-in"])
        .arg(dir.join("e.key"))
        .status()
        .unwrap();
    assert!(ok.success(), "openssl cannot read the encrypted key");

    // --auto-completion: appended to ~/.bashrc once, as the Go command does.
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let home = home.to_str().unwrap();
    let env = [("HOME", home), ("SHELL", "/bin/bash")];
    cwd(&["--auto-completion"], &env).fails(1, ".bashrc");
    std::fs::write(dir.join("home/.bashrc"), "# mine\n").unwrap();
    let run = cwd(&["--auto-completion"], &env).ok();
    assert!(run.stdout.starts_with("Added completion to '"), "{run:?}");
    assert_eq!(
        cwd(&["--auto-completion"], &env).ok().stdout,
        "Completion is already installed.\n"
    );
    let rc = std::fs::read_to_string(dir.join("home/.bashrc")).unwrap();
    assert!(rc.starts_with("# mine\nsource <('"), "{rc}");
    assert!(rc.ends_with("' completion bash)\n"), "{rc}");

    // update: not available here, said clearly, exit code 1.
    cwd(&["update", "-k", "v1.0.0"], &[]).fails(1, "Error: kes update is not available");
    // No command: the help on standard error, exit code 2 (as the Go command).
    let run = cwd(&[], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--auto-completion"), "{run:?}");
}

/// Flags of the Go command that take a value or mean something else here than before:
/// `--flag=false`, `-e`, `--color`, and `-s` of `kes status` (`--short`).
#[test]
fn go_flag_forms() {
    let env = Env::start("cli-go-flags");
    env.admin(&["key", "create", "k1"]).ok();
    assert_eq!(
        env.admin(&["key", "ls", "--json=false"]).ok().stdout,
        "Key\nk1\n"
    );
    assert_eq!(
        env.admin(&["key", "ls", "--json=true"]).ok().stdout,
        "[\"k1\"]\n"
    );
    // -k=false: verification stays on (the CA comes from KES_CAPATH here).
    env.admin(&["key", "ls", "-k=false"]).ok();
    let run = env.admin(&["key", "ls", "-e", "tenant-1"]).ok();
    assert_eq!(run.stdout, "Key\nk1\n");
    assert!(
        run.stderr
            .starts_with("Warning: enclave 'tenant-1' ignored: this server has no enclaves"),
        "{run:?}"
    );
    assert_eq!(env.admin(&["key", "ls", "-e", "default"]).ok().stderr, "");
    env.admin(&["key", "ls", "--color", "sometimes"])
        .fails(2, "invalid value 'sometimes'");
    // status: -s is --short, --server still names the server.
    let server = env.server();
    let host = server.trim_start_matches("https://");
    assert_eq!(
        env.admin(&["status", "--server", &server, "-s"])
            .ok()
            .stdout,
        format!("● {host}\n")
    );
    env.admin(&["status", "-s", &server])
        .fails(2, "unexpected argument");
    // log: --audit takes a value; both logs at once is refused.
    env.admin(&["log", "--audit=maybe"])
        .fails(2, "invalid value 'maybe'");
}
