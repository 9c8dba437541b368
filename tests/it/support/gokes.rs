//! The Go KES server (`kes-go` of the reference peers, [`super::peers`]) as a child process, to
//! compare kes with side by side. Tests that use it are named `peer_*`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read and released: the Go server cannot report the port
/// of an `--addr 127.0.0.1:0` listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Go server; killed on drop.
pub struct GoKes {
    pub child: Child,
    pub port: u16,
    /// The admin API key that `--dev` prints.
    #[allow(dead_code)] // read by tests/h2.rs, a binary of its own, only
    pub api_key: Option<String>,
}

impl GoKes {
    /// The path of the Go `kes` binary (server and CLI).
    pub fn bin() -> PathBuf {
        super::peers().join("bin/kes-go")
    }

    /// `kes-go server --dev` on a free port of 127.0.0.1.
    #[allow(dead_code)] // used by tests/h2.rs, a binary of its own, only
    pub fn start_dev() -> GoKes {
        Self::start_in(None, &["server", "--dev"], &[])
            .unwrap_or_else(|out| panic!("kes-go did not start:\n{out}"))
    }

    /// `kes-go server --config FILE` on a free port of 127.0.0.1; on failure, what it printed.
    pub fn start_config(config: &Path) -> Result<GoKes, String> {
        Self::start_in(None, &["server", "--config", config.to_str().unwrap()], &[])
    }

    /// Runs `kes-go` with `args` plus `--addr 127.0.0.1:PORT` (a free port), in working
    /// directory `dir`, with `env` added; waits until it says it is up. On failure (exit, or
    /// not up within 20 s) returns what it printed.
    pub fn start_in(
        dir: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<GoKes, String> {
        let port = free_port();
        let mut cmd = Command::new(Self::bin());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        cmd.args(args)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (mut child, output, rx) = super::spawn_logged(cmd);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut api_key = None;
        let mut up = false;
        while Instant::now() < deadline && !up {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if line.starts_with("API Key") {
                        api_key = line.split_whitespace().last().map(str::to_string);
                    }
                    up = line.contains("Server is up and running");
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // It says so before its listener accepts: wait until a connection is taken.
        while up && std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                up = false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            return Err(output.lock().unwrap().clone());
        }
        Ok(GoKes {
            child,
            port,
            api_key,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for GoKes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
