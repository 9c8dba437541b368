//! Test support: a certificate factory, a launcher for the real `kes` binary, a TLS client
//! that speaks raw HTTP/1.1 (so tests control framing byte by byte), real OpenBao servers
//! ([`openbao`]) and a TCP proxy that injects network faults between `kes` and OpenBao
//! ([`proxy`]).
//!
//! Compiled into the `it` binary (`mod support` in main.rs, where an unused helper is a dead-code
//! warning) and, with `#[path]`, into the timing binaries of tests/*.rs, which use a part of it.

pub mod client;
pub mod gokes;
pub mod openbao;
pub mod pki;
pub mod prom;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory of the reference peers (the Go KES server, MinIO's client drivers, h2spec):
/// `$KES_PEERS`, or `../shared/peers` beside the project. Tests that need them are named
/// `peer_*`; scripts/test.sh skips those, and says so, when the directory is absent.
pub fn peers() -> PathBuf {
    let dir = match std::env::var_os("KES_PEERS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers"),
    };
    if !dir.join("bin").is_dir() {
        panic!("../shared/peers not found: this test did not run; set KES_PEERS");
    }
    dir
}

/// A fresh directory under cargo's temporary directory for integration tests, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns `cmd` with stdout and stderr piped; every line it prints is appended to the returned
/// text and sent on the returned channel (closed when both streams end).
pub fn spawn_logged(
    mut cmd: Command,
) -> (Child, Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let output = output.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                output.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
    }
    (child, output, rx)
}

/// Variables the `kes` command (and the Go one) read: removed for every command a test runs, so
/// that the developer's own environment cannot change a test.
pub const CLIENT_VARS: &[&str] = &[
    "MINIO_KES_SERVER",
    "KES_SERVER",
    "MINIO_KMS_KES_ENDPOINT",
    "MINIO_KES_API_KEY",
    "KES_API_KEY",
    "MINIO_KMS_KES_API_KEY",
    "MINIO_KES_CERT_FILE",
    "KES_CLIENT_CERT",
    "MINIO_KES_CLIENT_CERT",
    "MINIO_KMS_KES_CERT_FILE",
    "MINIO_KES_KEY_FILE",
    "KES_CLIENT_KEY",
    "MINIO_KES_CLIENT_KEY",
    "MINIO_KMS_KES_KEY_FILE",
    "KES_CAPATH",
    "MINIO_KMS_KES_CAPATH",
    "KES_CLIENT_PASSWORD",
    "MINIO_KMS_SERVER",
    "MINIO_KMS_ENCLAVE",
    "MINIO_KMS_API_KEY",
    "NO_COLOR",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The admin API key of the test servers; clients make its certificate in memory
/// ([`pki::api_key_client`]).
pub const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

/// A `kes` server of a test with what its clients need: its directory (config, certificates),
/// the CA of its certificate and its admin.
pub struct Served {
    pub dir: TempDir,
    pub ca: pki::Ca,
    pub admin: pki::Cert,
    pub kes: Kes,
}

impl Served {
    /// Starts `kes` with the admin of [`ADMIN_API_KEY`] and `rest` of the config.
    pub fn start(tag: &str, rest: &str) -> Served {
        Self::start_as(tag, rest, |_| pki::api_key_client(ADMIN_API_KEY))
    }

    /// Starts `kes` in a new directory with a server certificate of a new CA, the admin that
    /// `admin` makes (from that CA, or not) and `rest` of the config (which names the keystore;
    /// `{dir}` stands for the directory).
    pub fn start_as(tag: &str, rest: &str, admin: impl FnOnce(&pki::Ca) -> pki::Cert) -> Served {
        let dir = TempDir::new(tag);
        let ca = pki::Ca::new(&format!("kes {tag} CA"));
        ca.server().write(dir.path(), "server");
        let admin = admin(&ca);
        let d = dir.path().display().to_string();
        let config = format!(
            "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n{rest}",
            admin.identity,
        )
        .replace("{dir}", &d);
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        let kes = Kes::start(&dir.join("config.yaml"));
        Served {
            dir,
            ca,
            admin,
            kes,
        }
    }

    /// A client with the admin's certificate.
    pub fn client(&self) -> client::Client {
        client::Client::new(self.kes.addr, &self.ca.cert.der, Some(&self.admin))
    }
}

/// `struct $name(Served)`, dereferencing to [`Served`]: a test file's server type, for the
/// methods of its own that it adds.
#[macro_export]
macro_rules! served_newtype {
    ($name:ident) => {
        struct $name($crate::support::Served);

        impl std::ops::Deref for $name {
            type Target = $crate::support::Served;
            fn deref(&self) -> &$crate::support::Served {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::support::Served {
                &mut self.0
            }
        }
    };
}

/// A running `kes` server process; killed on drop.
pub struct Kes {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the server printed on stdout and stderr so far.
    pub output: Arc<Mutex<String>>,
    /// The admin API key printed by `--dev`.
    pub dev_api_key: Option<String>,
}

impl Kes {
    /// Starts `kes server --config <path> --addr 127.0.0.1:0` and waits until it listens.
    pub fn start(config: &Path) -> Kes {
        Self::start_with(
            &[
                "server",
                "--config",
                config.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ],
            &[],
        )
        .unwrap_or_else(|out| panic!("kes did not start:\n{out}"))
    }

    /// Starts `kes` with arguments and environment; on failure returns what it printed.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Result<Kes, String> {
        Self::start_in(None, args, env)
    }

    /// Like [`Kes::start_with`], in working directory `dir` (relative paths of a config file
    /// are relative to it).
    pub fn start_in(
        dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Kes, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kes"));
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        cmd.args(args);
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (mut child, output, rx) = spawn_logged(cmd);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut addr = None;
        let mut api_key = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("Endpoint    https://") {
                        addr = rest.trim().parse().ok();
                    }
                    if let Some(key) = line.trim().strip_prefix("kes:v1:") {
                        api_key = Some(format!("kes:v1:{key}"));
                    }
                    if line.starts_with("MLock") && addr.is_some() {
                        // The banner is complete once the dev key (if any) follows; give it a moment.
                        let until = Instant::now() + Duration::from_millis(200);
                        while Instant::now() < until {
                            if let Ok(line) = rx.recv_timeout(Duration::from_millis(20))
                                && let Some(key) = line.trim().strip_prefix("kes:v1:")
                            {
                                api_key = Some(format!("kes:v1:{key}"));
                            }
                        }
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            return Err(output.lock().unwrap().clone());
        };
        Ok(Kes {
            child,
            addr,
            output,
            dev_api_key: api_key,
        })
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the output contains `text`.
    pub fn wait_for_output(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Kes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of one `kes` command run to completion.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32, stderr_has: &str) -> Run {
        assert_eq!(self.code, code, "{self:?}");
        assert!(self.stderr.contains(stderr_has), "{self:?}");
        self
    }
}

/// Runs the `kes` binary to completion, standard input from /dev/null.
pub fn kes_cmd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kes"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from_output(cmd.output().expect("run kes"))
}
