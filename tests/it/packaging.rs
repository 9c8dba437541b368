//! The fast packaging tests, part of the default suite: what the .deb and .rpm install (the
//! systemd unit, /etc/kes/config.yaml, the kes-setup script their maintainer scripts run) checked
//! against the debug binary, in a temporary directory, in a few seconds.
//!
//! The slow tests (build the static binary, the .deb, the .rpm and the source tarball, install
//! them into a Debian chroot, build the tarball with no network) are `packaging/test.sh`, run
//! with `KES_TEST_PACKAGING=1 scripts/test.sh`; see packaging/README.md.

use crate::support::client::Client;
use crate::support::{Kes, TempDir, pki};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs packaging/kes-setup MODE against a test root (KES_SETUP_ROOT) with the debug binary.
fn kes_setup(root: &Path, mode: &str) -> String {
    let out = Command::new("sh")
        .arg(repo("packaging/kes-setup"))
        .arg(mode)
        .env("KES_SETUP_ROOT", root)
        .env("KES_BIN", env!("CARGO_BIN_EXE_kes"))
        .output()
        .expect("run sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kes-setup {mode} failed:\n{text}");
    text
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file under `dir` with its contents, for before/after comparisons.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The shipped config with its absolute paths moved under `root`. Asserts that the paths are the
/// ones the packages use, so that the rewrite cannot silently do nothing.
fn installed_config(root: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("packaging/config.yaml")).unwrap();
    for line in [
        "  key: /etc/kes/server.key",
        "  cert: /etc/kes/server.cert",
        "    path: /var/lib/kes/keys",
        "  identity: ${KES_ADMIN_IDENTITY}",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "packaging/config.yaml lacks the line {line:?}"
        );
    }
    let text = text
        .replace("/etc/kes/", &format!("{}/etc/kes/", root.display()))
        .replace("/var/lib/kes/", &format!("{}/var/lib/kes/", root.display()));
    let path = root.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn env_file_value(path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in {}:\n{text}", path.display()))
        .to_string()
}

/// A first install: kes-setup makes a server certificate, an admin API key and the keystore
/// directory with tight modes; the installed config, unchanged but for the root prefix, starts
/// a server that the admin key can use for a create / generate / decrypt round trip, over TLS
/// that verifies the generated certificate.
#[test]
fn first_install_setup_and_installed_config_serve_a_round_trip() {
    let started = Instant::now();
    let root = TempDir::new("pkg-setup");
    let out = kes_setup(root.path(), "install");
    println!("kes-setup install printed:\n{out}");

    let etc = root.join("etc/kes");
    let expected = [
        (etc.join("server.key"), 0o640),
        (etc.join("server.cert"), 0o644),
        (etc.join("admin.key"), 0o600),
        (etc.join("kes.env"), 0o640),
        (root.join("var/lib/kes"), 0o700),
        (root.join("var/lib/kes/keys"), 0o700),
    ];
    for (path, mode) in &expected {
        let got = mode_of(path);
        println!("{:o} {}", got, path.display());
        assert_eq!(got, *mode, "mode of {}", path.display());
    }

    let api_key = std::fs::read_to_string(etc.join("admin.key")).unwrap();
    let api_key = api_key.trim();
    assert!(api_key.starts_with("kes:v1:"), "admin.key: {api_key}");
    let identity = env_file_value(&etc.join("kes.env"), "KES_ADMIN_IDENTITY");
    let client_cert = pki::api_key_client(api_key);
    assert_eq!(
        identity, client_cert.identity,
        "kes.env names the identity of admin.key"
    );

    let config = installed_config(root.path());
    let kes = Kes::start_with(
        &[
            "server",
            "--config",
            config.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        &[("KES_ADMIN_IDENTITY", &identity)],
    )
    .unwrap_or_else(|out| panic!("kes did not start with the installed config:\n{out}"));

    // The client verifies the server against the generated certificate (name: localhost).
    let server_cert = CertificateDer::from_pem_file(etc.join("server.cert")).unwrap();
    let client = Client::new(kes.addr, &server_cert, Some(&client_cert));
    let reply = client.post("/v1/key/create/pkg-test", "");
    assert_eq!(reply.status, 200, "create: {}", reply.text());
    let key_file = root.join("var/lib/kes/keys/pkg-test");
    assert!(key_file.is_file(), "{} was not written", key_file.display());

    let reply = client.post("/v1/key/generate/pkg-test", r#"{"context":"e30="}"#);
    assert_eq!(reply.status, 200, "generate: {}", reply.text());
    let data_key = reply.json();
    let plaintext = data_key["plaintext"].as_str().unwrap().to_string();
    let ciphertext = data_key["ciphertext"].as_str().unwrap().to_string();
    let body = serde_json::json!({"ciphertext": ciphertext, "context": "e30="}).to_string();
    let reply = client.post("/v1/key/decrypt/pkg-test", &body);
    assert_eq!(reply.status, 200, "decrypt: {}", reply.text());
    assert_eq!(reply.json()["plaintext"].as_str(), Some(plaintext.as_str()));

    // Only the admin may do this: MinIO's policy names no identity yet.
    let stranger = pki::self_signed_client(pki::KeyKind::Ed25519, "stranger");
    let reply = Client::new(kes.addr, &server_cert, Some(&stranger)).post("/v1/key/create/x", "");
    assert_eq!(reply.status, 403, "a stranger: {}", reply.text());
    println!(
        "round trip create/generate/decrypt OK against the installed config; stranger got 403; {:?}",
        started.elapsed()
    );
}

/// Upgrades and repeated runs never replace anything: keys, certificates, the environment file
/// and the keystore are byte for byte what they were; `upgrade` never creates keys.
#[test]
fn setup_never_overwrites_and_upgrade_creates_no_keys() {
    let root = TempDir::new("pkg-upgrade");
    kes_setup(root.path(), "install");
    std::fs::write(root.join("var/lib/kes/keys/existing"), b"a stored key").unwrap();
    let before = snapshot(root.path());
    println!("after install: {} files", before.len());
    assert!(before.len() >= 5, "{before:?}");
    kes_setup(root.path(), "upgrade");
    kes_setup(root.path(), "install");
    let after = snapshot(root.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, contents) in &before {
        assert!(
            after[path] == *contents,
            "{} changed on upgrade",
            path.display()
        );
    }

    // An operator who replaced the certificate but deleted the key file by mistake gets a
    // warning, not a new key that no longer matches the certificate.
    std::fs::remove_file(root.join("etc/kes/server.key")).unwrap();
    let out = kes_setup(root.path(), "install");
    println!("with server.key missing: {out}");
    assert!(out.contains("warning"), "{out}");
    assert!(!root.join("etc/kes/server.key").exists());

    let fresh = TempDir::new("pkg-upgrade-fresh");
    kes_setup(fresh.path(), "upgrade");
    let made = snapshot(fresh.path());
    assert!(made.is_empty(), "upgrade created files: {made:?}");
    assert_eq!(mode_of(&fresh.join("var/lib/kes/keys")), 0o700);
}

/// The settings of packaging/kes.service, in order: (key, value).
fn unit_settings() -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(repo("packaging/kes.service")).unwrap();
    unit.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// Every value of `key` in `settings`.
fn unit_values<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One number of the unit.
fn unit_number(settings: &[(String, String)], key: &str) -> usize {
    let values = unit_values(settings, key);
    assert_eq!(values.len(), 1, "{key}= in kes.service: {values:?}");
    values[0]
        .parse()
        .unwrap_or_else(|e| panic!("{key}={}: {e}", values[0]))
}

/// The most event loops the server starts (one per CPU, capped), read from src/server/mod.rs
/// so that a change of the cap shows here.
fn max_event_loops() -> usize {
    let source = std::fs::read_to_string(repo("src/server/mod.rs")).unwrap();
    let at = source
        .find("loops: cpus.clamp(1, ")
        .expect("src/server/mod.rs no longer caps the event loops with `loops: cpus.clamp(1, N)`: update this test");
    let rest = &source[at + "loops: cpus.clamp(1, ".len()..];
    rest[..rest.find(')').unwrap()].trim().parse().unwrap()
}

/// TasksMax and LimitNOFILE leave room for the server at its default limits (read from the
/// code, not repeated here): threads do not grow with connections (event loops hold them) but
/// with `server.workers`; open files grow with `server.max_connections`.
#[test]
fn systemd_unit_limits_fit_the_server_defaults() {
    let settings = unit_settings();
    let limits = kes::config::Limits::default();
    let loops = max_event_loops();
    // Threads besides the event loops and workers: main, accept, cache, certificate watcher,
    // Vault health and token, one per Vault endpoint during a probe (up to 8 here), and the two
    // processes of a reload (the check and kill).
    let others = 1 + 1 + 1 + 1 + 2 + 8 + 2;
    let threads = loops + limits.workers + others;
    let tasks_max = unit_number(&settings, "TasksMax");
    println!(
        "TasksMax={tasks_max}: at most {threads} tasks ({loops} loops + {} workers + {others})",
        limits.workers
    );
    assert!(
        tasks_max >= 2 * threads,
        "TasksMax={tasks_max} leaves less than twice the {threads} tasks the server may run"
    );
    // Open files: the connections, plus the 128 the server keeps for itself (it lowers
    // max_connections below that), plus per loop (epoll, waker) and per worker (a keystore
    // file and a temporary file, or a Vault connection) and a few more.
    let files = limits.max_connections + 128 + 2 * loops + 2 * limits.workers + 16;
    let nofile = unit_number(&settings, "LimitNOFILE");
    println!(
        "LimitNOFILE={nofile}: {files} needed with {} connections",
        limits.max_connections
    );
    assert!(
        nofile >= 2 * files,
        "LimitNOFILE={nofile} leaves less than twice the {files} files the server may open"
    );
}

/// The reload's first command (`kes server --check`) passes the installed config and fails a
/// broken one, so systemd never signals the server with it (a failed ExecReload= command stops
/// the reload) and `systemctl reload kes` fails.
#[test]
fn systemd_unit_reload_check_refuses_an_invalid_config() {
    let settings = unit_settings();
    let check = unit_values(&settings, "ExecReload")[0];
    let root = TempDir::new("pkg-reload");
    kes_setup(root.path(), "install");
    let config = installed_config(root.path());
    let identity = env_file_value(&root.join("etc/kes/kes.env"), "KES_ADMIN_IDENTITY");
    let run = |config: &Path| {
        let line = check.replace("/etc/kes/config.yaml", config.to_str().unwrap());
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("/usr/bin/kes"), "{line}");
        let out = Command::new(env!("CARGO_BIN_EXE_kes"))
            .args(words)
            .env("KES_ADMIN_IDENTITY", &identity)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run(&config);
    println!("valid: {code:?} {text}");
    assert_eq!(code, Some(0), "{text}");
    // A misspelt field (which a start only warns about: the policy would have no identities)
    // and a file that is not YAML.
    let broken = root.join("broken.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\n    identities:\n"));
    std::fs::write(
        &broken,
        text.replace("\n    identities:\n", "\n    identites:\n"),
    )
    .unwrap();
    let (code, text) = run(&broken);
    println!("misspelt: {code:?} {text}");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("identites"), "{text}");
    std::fs::write(&broken, "admin: [\n").unwrap();
    let (code, text) = run(&broken);
    println!("not YAML: {code:?} {text}");
    assert_eq!(code, Some(1), "{text}");
}

/// `systemd-analyze security` rates the unit's sandbox (lower is better; 3.3 before
/// ProtectProc=, ProcSubset=, PrivateMounts= and SystemCallFilter= were added, 1.5 with them).
#[test]
fn systemd_unit_security_exposure() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo("packaging/kes.service"))
        .output()
        .expect("systemd-analyze (package systemd) is needed for this test");
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level:\n{text}{stderr}"));
    println!("{line}");
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(score <= 2.0, "the unit's exposure rose to {score}:\n{text}");
}

/// The unit passes `systemd-analyze verify` (with the debug binary in place of /usr/bin/kes), has
/// the sandbox and memory-locking settings the server relies on, and lets the server write to
/// exactly the keystore directory of the installed config.
#[test]
fn systemd_unit_verifies_and_matches_the_config() {
    let unit = std::fs::read_to_string(repo("packaging/kes.service")).unwrap();
    let settings = unit_settings();
    let get = |key: &str| unit_values(&settings, key);
    for (key, value) in [
        ("User", "kes"),
        ("Group", "kes"),
        (
            "ExecStart",
            "/usr/bin/kes server --config /etc/kes/config.yaml",
        ),
        ("Type", "notify"),
        ("WorkingDirectory", "/etc/kes"),
        ("Restart", "on-failure"),
        ("LimitMEMLOCK", "infinity"),
        ("AmbientCapabilities", "CAP_IPC_LOCK"),
        ("CapabilityBoundingSet", "CAP_IPC_LOCK"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("SystemCallErrorNumber", "EPERM"),
    ] {
        assert_eq!(get(key), vec![value], "{key}= in kes.service");
    }
    // The reload checks the file the server runs with before it signals.
    assert_eq!(
        get("ExecReload"),
        vec![
            "/usr/bin/kes server --check --config /etc/kes/config.yaml",
            "/bin/kill -HUP $MAINPID"
        ]
    );
    assert_eq!(
        get("SystemCallFilter"),
        vec!["@system-service", "~@privileged"]
    );
    // Type=notify: the notification socket is a Unix socket.
    let families = get("RestrictAddressFamilies");
    assert_eq!(families.len(), 1, "{families:?}");
    assert!(
        families[0].split_whitespace().any(|f| f == "AF_UNIX"),
        "{families:?}"
    );
    // The only writable path is the keystore of the installed config.
    let config = std::fs::read_to_string(repo("packaging/config.yaml")).unwrap();
    let cfg: serde_json::Value = {
        let yaml: yaml_serde::Value = yaml_serde::from_str(&config).unwrap();
        serde_json::to_value(yaml).unwrap()
    };
    let keystore = cfg["keystore"]["fs"]["path"].as_str().unwrap();
    assert_eq!(get("ReadWritePaths"), vec![format!("-{keystore}").as_str()]);
    println!("kes.service: {} settings checked", settings.len());

    let dir = TempDir::new("pkg-unit");
    let path = dir.join("kes.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/kes ", &format!("{} ", env!("CARGO_BIN_EXE_kes"))),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "systemd-analyze verify: {} {stderr}",
        if out.status.success() { "ok" } else { "FAILED" }
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze warned:\n{stderr}"
    );
}

/// The maintainer scripts run under /bin/sh, which is dash on Debian: they must parse as POSIX sh.
#[test]
fn maintainer_scripts_parse_as_posix_sh() {
    let shell = if Path::new("/bin/dash").exists() {
        "/bin/dash"
    } else {
        "/bin/sh"
    };
    for script in [
        "packaging/kes-setup",
        "packaging/deb/postinst",
        "packaging/deb/prerm",
        "packaging/deb/postrm",
    ] {
        let out = Command::new(shell)
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap();
        println!("{shell} -n {script}: {}", out.status);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = std::fs::read_to_string(repo(script)).unwrap();
        assert!(
            first.starts_with("#!/bin/sh\n"),
            "{script} must start with #!/bin/sh"
        );
    }
    for script in ["packaging/build.sh", "packaging/test.sh"] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap();
        println!("bash -n {script}: {}", out.status);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
