//! Configuration that a Go deployment already has is taken as it is.
//!
//! * Every file of tests/configs/ (the Go server's documentation style: the v1 schema and the
//!   older ones, `${VAR}` in block and flow lists, comments, unknown fields, typos, duplicates,
//!   empty sections, durations, TLS CA files, Vault sections) is started with `kes server` and
//!   checked with `kes server --check`, each against the expectation in the file's header
//!   (tests/configs/README.md). `peer_config_corpus_matches_the_go_server` starts each with the
//!   Go server too and compares: the same outcome (starts and serves, or refuses), except for
//!   the cases in [`DIFFERENCES`].
//! * Unknown fields are warnings with line and suggestion at start-up.
//! * A wildcard listen address (`:PORT`, `0.0.0.0`, `[::]`) serves IPv4 and IPv6, as the Go
//!   server's does, and the banner lists usable URLs.

use crate::support;

use crate::support::client::Client;
use crate::support::gokes::{GoKes, free_port};
use crate::support::pki::{self, Ca, KeyKind};
use crate::support::{Kes, TempDir};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Cases where the Go server's outcome differs from ours on purpose, and why.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "v0.14-root-and-paths",
        "the older schema (root:, policy.<name>.paths) is read here; the Go server dropped it in \
         2022 and refuses the file for want of an admin identity",
    ),
    (
        "v0.13-keys-is-the-keystore",
        "the oldest schema (the keystore under keys:) is read here; the Go server refuses it \
         (keys: must be a list there)",
    ),
    (
        "vault-approle-unreachable",
        "with Vault unreachable at start-up kes starts, not ready (/v1/ready 504), and logs in \
         once Vault answers, so a Vault outage at boot is not a restart loop; the Go server exits \
         (as kes does with --fail-fast)",
    ),
];

const ADMIN: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

/// The environment every case is run with.
const ENV: &[(&str, &str)] = &[
    ("KES_ADMIN_IDENTITY", ADMIN),
    (
        "MY_APP_IDENTITY",
        "aaaa5aba0c5bd64f3d3b6e1a1f2e2c7a6b6e8f7d5c4b3a29180706050403aaaa",
    ),
    ("OTHER_IDENTITY", "other-identity"),
    ("THIRD_IDENTITY", "third-identity"),
    ("KES_KEYSTORE_DIR", "./keys"),
    ("VAULT_APPROLE_ID", "role-id"),
    ("VAULT_APPROLE_SECRET", "secret-id"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Starts,
    Refuses(String),
}

impl Expect {
    fn parse(text: &str) -> Expect {
        let text = text.trim();
        if text == "starts" || text == "ok" {
            return Expect::Starts;
        }
        let message = text
            .strip_prefix("refuses:")
            .or_else(|| text.strip_prefix("fails:"))
            .unwrap_or_else(|| panic!("bad expectation '{text}'"));
        Expect::Refuses(message.trim().to_owned())
    }
}

struct Case {
    name: String,
    path: PathBuf,
    ours: Expect,
    go: Expect,
    check: Expect,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    let cases: Vec<Case> = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let header = |tag: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {tag}:")))
                    .map(Expect::parse)
            };
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let ours = header("ours").unwrap_or_else(|| panic!("{name}: no '# ours:'"));
            let go = header("go").unwrap_or_else(|| panic!("{name}: no '# go:'"));
            let check = header("check").unwrap_or_else(|| ours.clone());
            Case {
                name,
                path,
                ours,
                go,
                check,
            }
        })
        .collect();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    cases
}

/// The working directory the cases run in: server key and certificate, a CA file, `keys/`.
struct Workdir {
    dir: TempDir,
    ca: Ca,
}

fn workdir() -> Workdir {
    let dir = TempDir::new("config-corpus");
    let ca = Ca::new("corpus CA");
    let server = ca.server();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(dir.join("server.cert"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.cert.cert_pem).unwrap();
    std::fs::create_dir(dir.join("keys")).unwrap();
    Workdir { dir, ca }
}

/// What a server did with a config file: started (and answered `GET /version`), or refused.
#[derive(Debug)]
enum Outcome {
    Served,
    Refused(String),
}

impl Outcome {
    fn matches(&self, expect: &Expect) -> bool {
        match (self, expect) {
            (Outcome::Served, Expect::Starts) => true,
            (Outcome::Refused(out), Expect::Refuses(text)) => out.contains(text.as_str()),
            _ => false,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Outcome::Served => "starts",
            Outcome::Refused(_) => "refuses",
        }
    }
}

fn expect_kind(e: &Expect) -> &'static str {
    match e {
        Expect::Starts => "starts",
        Expect::Refuses(_) => "refuses",
    }
}

/// `GET /version` with a client certificate of the corpus CA answers 200: the server serves.
/// A server that verifies client certificates against the system's CA bundle only
/// (tls-auth-on-without-ca) refuses that certificate in the handshake: it counts as serving when
/// it says so with the TLS alert "unknown CA".
fn serves(work: &Workdir, addr: SocketAddr) -> bool {
    let client_cert = work.ca.client(KeyKind::EcdsaP256, "corpus client");
    let client = Client::new(addr, &work.ca.cert.der, Some(&client_cert));
    // The Go server may print that it is up a moment before it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut conn = loop {
        match client.try_connect() {
            Ok(conn) => break conn,
            Err(e) if Instant::now() > deadline => {
                eprintln!("connect to {addr}: {e}");
                return false;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    match conn.request("GET", "/version", None) {
        Ok(reply) if reply.status == 200 => true,
        Ok(reply) => {
            eprintln!("GET /version on {addr}: {} {}", reply.status, reply.text());
            false
        }
        Err(e) if e.to_string().contains("UnknownCA") => true,
        Err(e) => {
            eprintln!("GET /version on {addr}: {e}");
            false
        }
    }
}

fn run_ours(work: &Workdir, case: &Case) -> Outcome {
    let config = case.path.to_str().unwrap();
    match Kes::start_in(
        Some(work.dir.path()),
        &["server", "--config", config, "--addr", "127.0.0.1:0"],
        ENV,
    ) {
        Ok(kes) => {
            assert!(
                serves(work, kes.addr),
                "{}: started but does not serve",
                case.name
            );
            Outcome::Served
        }
        Err(out) => Outcome::Refused(out),
    }
}

fn run_go(work: &Workdir, case: &Case) -> Outcome {
    let config = case.path.to_str().unwrap();
    match GoKes::start_in(Some(work.dir.path()), &["server", "--config", config], ENV) {
        Ok(go) => {
            assert!(
                serves(work, go.addr()),
                "{}: kes-go started but does not serve",
                case.name
            );
            Outcome::Served
        }
        Err(out) => Outcome::Refused(out),
    }
}

/// `kes server --check --config FILE` in the working directory.
fn run_check(work: &Workdir, config: &Path) -> support::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kes"))
        .current_dir(work.dir.path())
        .args(["server", "--check", "--config", config.to_str().unwrap()])
        .envs(ENV.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    support::Run::from_output(out)
}

/// Runs `f` on every case, a few at a time (the Go server takes seconds to give up on an
/// unreachable Vault), and returns the results in case order.
fn each<T: Send>(cases: &[Case], f: impl Fn(&Case) -> T + Sync) -> Vec<T> {
    let mut results = Vec::new();
    for chunk in cases.chunks(8) {
        let done: Vec<T> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|c| s.spawn(|| f(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        results.extend(done);
    }
    results
}

#[test]
fn config_corpus_starts_or_refuses_as_expected() {
    let work = workdir();
    let cases = cases();
    let outcomes = each(&cases, |case| run_ours(&work, case));
    let mut wrong = Vec::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        if !outcome.matches(&case.ours) {
            wrong.push(format!(
                "{}: expected {:?}, got {outcome:?}",
                case.name, case.ours
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn config_corpus_check_validates_as_expected() {
    let work = workdir();
    let cases = cases();
    let runs = each(&cases, |case| run_check(&work, &case.path));
    let mut wrong = Vec::new();
    for (case, run) in cases.iter().zip(&runs) {
        let ok = match &case.check {
            // (stderr may hold the log's warnings, e.g. that tls.proxy is ignored)
            Expect::Starts => {
                run.code == 0 && run.stdout.contains(": OK (") && !run.stderr.contains("kes: ")
            }
            Expect::Refuses(text) => run.code == 1 && run.stderr.contains(text.as_str()),
        };
        if !ok {
            wrong.push(format!(
                "{}: expected {:?}, got {run:?}",
                case.name, case.check
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn peer_config_corpus_matches_the_go_server() {
    support::peers();
    let work = workdir();
    let cases = cases();
    for (name, _) in DIFFERENCES {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "DIFFERENCES names no case '{name}'"
        );
    }
    let outcomes = each(&cases, |case| (run_go(&work, case), run_ours(&work, case)));
    let mut table = vec![format!("{:<36} {:<8} {:<8} note", "case", "kes-go", "kes")];
    let mut wrong = Vec::new();
    for (case, (go, ours)) in cases.iter().zip(&outcomes) {
        let difference = DIFFERENCES.iter().find(|(n, _)| *n == case.name);
        table.push(format!(
            "{:<36} {:<8} {:<8} {}",
            case.name,
            go.kind(),
            ours.kind(),
            difference.map_or("", |(_, why)| why)
        ));
        if !go.matches(&case.go) {
            wrong.push(format!(
                "{}: kes-go: expected {:?}, got {go:?}",
                case.name, case.go
            ));
        }
        if !ours.matches(&case.ours) {
            wrong.push(format!(
                "{}: kes: expected {:?}, got {ours:?}",
                case.name, case.ours
            ));
        }
        let same = expect_kind(&case.go) == expect_kind(&case.ours);
        match (same, difference) {
            (false, None) => wrong.push(format!(
                "{}: the servers differ ({} / {}) and DIFFERENCES does not list it",
                case.name,
                expect_kind(&case.go),
                expect_kind(&case.ours)
            )),
            (true, Some(_)) => wrong.push(format!(
                "{}: listed in DIFFERENCES, but both servers {}",
                case.name,
                expect_kind(&case.ours)
            )),
            _ => {}
        }
    }
    println!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn unknown_fields_are_logged_with_line_and_suggestion_and_the_server_runs() {
    let work = workdir();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/unknown-fields.yml");
    let kes = Kes::start_in(
        Some(work.dir.path()),
        &[
            "server",
            "--config",
            config.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        ENV,
    )
    .unwrap();
    assert!(serves(&work, kes.addr));
    for expected in [
        "unknown-fields.yml: line 10: unknown field 'identiti' in 'admin': did you mean 'identity'?",
        "unknown-fields.yml: line 14: unknown field 'certificate' in 'tls' (known fields: key, cert, password, auth, ca, proxy)",
        "unknown-fields.yml: line 17: unknown field 'unusd' in 'cache.expiry': did you mean 'unused'?",
        "unknown-fields.yml: line 18: unknown field 'metrics' (known fields:",
    ] {
        assert!(
            kes.wait_for_output(expected, Duration::from_secs(2)),
            "{expected}\n---\n{}",
            kes.output()
        );
    }
    assert!(
        kes.output().contains(" level=WARN msg="),
        "{}",
        kes.output()
    );
    // --check lists every one of them as an error.
    let run = run_check(&work, &config);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.matches("unknown field").count(), 4, "{run:?}");
    assert!(run.stderr.ends_with("4 problems found\n"), "{run:?}");
}

#[test]
fn check_reads_the_files_the_config_names() {
    let work = workdir();
    let write = |name: &str, tls: &str| {
        let path = work.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "admin:\n  identity: disabled\ntls:\n{tls}keystore:\n  fs:\n    path: ./keys\n"
            ),
        )
        .unwrap();
        path
    };
    let good = write("good.yml", "  key: ./server.key\n  cert: ./server.cert\n");
    let run = run_check(&work, &good);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("good.yml: OK (keystore fs ./keys"),
        "{run:?}"
    );

    // A key that is not the certificate's.
    let other = pki::self_signed_client(KeyKind::EcdsaP256, "other");
    std::fs::write(work.dir.join("other.key"), &other.key_pem).unwrap();
    let run = run_check(
        &work,
        &write(
            "mismatch.yml",
            "  key: ./other.key\n  cert: ./server.cert\n",
        ),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("does not match the certificate"),
        "{run:?}"
    );

    let run = run_check(
        &work,
        &write(
            "nocert.yml",
            "  key: ./server.key\n  cert: ./nothing.cert\n",
        ),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing.cert"), "{run:?}");

    // The keystore path is a file.
    std::fs::write(work.dir.join("afile"), "x").unwrap();
    let path = work.dir.join("fsfile.yml");
    std::fs::write(
        &path,
        "admin:\n  identity: disabled\ntls:\n  key: ./server.key\n  cert: ./server.cert\nkeystore:\n  fs:\n    path: ./afile\n",
    )
    .unwrap();
    let run = run_check(&work, &path);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("keystore.fs.path './afile' is not a directory"),
        "{run:?}"
    );

    // A file that cannot be read, and no file at all.
    let run = run_check(&work, &work.dir.join("missing.yml"));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("cannot read the config file"),
        "{run:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kes"))
        .args(["server", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// Listening on a wildcard address
// ---------------------------------------------------------------------------------------------

/// Whether this machine has IPv6 loopback (`::1`).
fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// Whether a TCP connection to `addr` is accepted within a second.
fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn a_wildcard_address_serves_ipv4_and_ipv6_and_the_banner_lists_urls() {
    let work = workdir();
    let ipv6 = has_ipv6();
    if !ipv6 {
        eprintln!("this machine has no IPv6 loopback: only the IPv4 half of this test ran");
    }
    // A wildcard bind of a port fails while any socket of this machine uses the port (another
    // test's client connection may get it as its ephemeral port between `free_port` and the
    // bind): such a start is tried again on another port.
    let start = |args: &dyn Fn(u16) -> Vec<String>| -> (Kes, u16) {
        for _ in 0..5 {
            let port = free_port();
            let args = args(port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match Kes::start_in(Some(work.dir.path()), &args, &[]) {
                Ok(kes) => return (kes, port),
                Err(out) if out.contains("Address already in use") => continue,
                Err(out) => panic!("{args:?}: {out}"),
            }
        }
        panic!("no free port for {:?} in 5 tries", args(0));
    };
    for address in [":{port}", "0.0.0.0:{port}", "[::]:{port}"] {
        let config = work.dir.join("wildcard.yml");
        let (kes, port) = start(&|port| {
            let address = address.replace("{port}", &port.to_string());
            std::fs::write(
                &config,
                format!(
                    "address: \"{address}\"\nadmin:\n  identity: disabled\ntls:\n  key: ./server.key\n  cert: ./server.cert\nkeystore:\n  fs:\n    path: ./keys\n"
                ),
            )
            .unwrap();
            vec![
                "server".into(),
                "--config".into(),
                config.display().to_string(),
            ]
        });
        let address = address.replace("{port}", &port.to_string());
        // The first URL is the IPv4 loopback one (what the test launcher reads).
        assert_eq!(
            kes.addr,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "{address}"
        );
        assert!(serves(&work, kes.addr), "{address}: IPv4");
        let out = kes.output();
        assert!(!out.contains("https://0.0.0.0"), "{out}");
        assert!(!out.contains("https://[::]"), "{out}");
        if ipv6 {
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            assert!(serves(&work, v6), "{address}: IPv6");
            assert!(
                out.contains(&format!("            https://[::1]:{port}\n")),
                "{out}"
            );
        }
    }
    // `--addr :PORT` too.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/v1-minimal.yml");
    let (_kes, port) = start(&|port| {
        vec![
            "server".into(),
            "--config".into(),
            config.display().to_string(),
            "--addr".into(),
            format!(":{port}"),
        ]
    });
    assert!(accepts(SocketAddr::from(([127, 0, 0, 1], port))));
    if ipv6 {
        assert!(accepts(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            port
        ))));
    }
}

/// The Go server on `address` from its config file (no `--addr`); killed on drop.
struct GoOn(std::process::Child);

impl Drop for GoOn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn peer_a_wildcard_address_listens_like_the_go_server() {
    support::peers();
    let work = workdir();
    let ipv6 = has_ipv6();
    if !ipv6 {
        eprintln!("this machine has no IPv6 loopback: only IPv4 was compared");
    }
    for address in [":{port}", "0.0.0.0:{port}", "[::]:{port}"] {
        let mut seen = Vec::new();
        for server in ["kes-go", "kes"] {
            // A free port can be taken by another test before the server binds it: then the
            // server exits, and the case is run again on another port.
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                let outcome = listen_on(&work, server, address, ipv6);
                if outcome.0 || attempt == 3 {
                    break outcome;
                }
            };
            seen.push(outcome);
        }
        assert_eq!(seen[0], (true, ipv6), "kes-go on {address}");
        assert_eq!(seen[1], seen[0], "kes and kes-go differ on {address}");
    }
}

/// Starts `server` (kes or kes-go) with `address` (`{port}` = a free port) in its config file;
/// whether it serves on 127.0.0.1 and (when the machine has IPv6) on ::1.
fn listen_on(work: &Workdir, server: &str, address: &str, ipv6: bool) -> (bool, bool) {
    let port = free_port();
    let address = address.replace("{port}", &port.to_string());
    let config = work.dir.join(&format!("{server}.yml"));
    std::fs::write(
        &config,
        format!(
            "address: \"{address}\"\nadmin:\n  identity: disabled\ntls:\n  key: ./server.key\n  cert: ./server.cert\nkeystore:\n  fs:\n    path: ./keys\n"
        ),
    )
    .unwrap();
    let bin = if server == "kes" {
        PathBuf::from(env!("CARGO_BIN_EXE_kes"))
    } else {
        GoKes::bin()
    };
    let child = Command::new(bin)
        .current_dir(work.dir.path())
        .args(["server", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = GoOn(child);
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !accepts(v4) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let on_v6 = ipv6 && serves(work, v6);
    (serves(work, v4), on_v6)
}
