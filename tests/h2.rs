//! HTTP/2 end to end, with real peers: conformance (h2spec), curl, MinIO's own client library
//! (kesclient, kesload) beside the Go server, TLS resumption, streams served concurrently, log
//! streams, graceful shutdown, and every flood that src/server/h2/mod.rs's module docs list, each
//! held to the bound the server promises.
//!
//! What each test needs:
//! * `peer_*` tests run the programs of `../shared/peers` (or `$KES_PEERS`): h2spec, kesclient,
//!   kesload, kes-go. scripts/test.sh skips them, and says so, when the directory is absent.
//! * Python scripts in tests/h2/ play the clients and attackers that must break the rules; they
//!   need the PyPI package `h2` (with hpack and hyperframe), which scripts/test.sh installs into
//!   target/tools/venv (`$KES_TEST_PYTHON` names another interpreter).
//! * curl with HTTP/2; OpenBao (as in tests/faults.rs) for the slow keystore.
//!
//! Every test prints what it measured (`cargo test --release --test h2 -- --nocapture`).
//!
//! Floods and a busy machine: while a flood runs, a bystander (the HTTP/1.1 test client) asks
//! for a cached key every 10 ms, every fifth time on a new connection, and must be answered
//! within [`BYSTANDER_BOUND`]; the server's VmRSS is sampled with each request. Floods use both
//! cores, so the tests that measure time run alone ([`alone`]); the others run side by side
//! ([`beside_others`]). A [`StallMonitor`] (as in tests/faults.rs) records when the machine
//! itself froze; a request that breaks the bound only passes when the machine was frozen during
//! it for at least the excess.

// A binary of its own, not a module of tests/it (tests/it/main.rs says why). Its helpers: those
// of tests/timing/ it needs, and the support of tests/it, of which it uses a part.
#[allow(dead_code)] // a part of it; tests/hoarding.rs uses the rest
#[path = "timing/stall.rs"]
mod stall;
#[allow(dead_code)] // a part of it
#[path = "it/support/mod.rs"]
mod support;

use support::gokes::GoKes;

use serde_json::{Value, json};
use stall::StallMonitor;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::client::{Client, Conn, resuming_config};
use support::openbao::Bao;
use support::pki::{Cert, KeyKind};
use support::proxy::{Mode, Proxy};
use support::{Kes, Served};

/// How long the bystander may wait for an answer during and after a flood. What is guarded
/// against is waiting for the flood to end or be cut off (seconds: the write-stall and flood
/// limits); a busy 2-core machine alone has delayed one request by 104 ms with no stall the
/// monitor could see, so the bound leaves room for that. The waits are printed with each test.
const BYSTANDER_BOUND: Duration = Duration::from_millis(250);

/// How much the server's resident memory may grow during a flood. One connection may hold up
/// to about 2.3 MiB of buffers (src/server/conn.rs: MAX_INPUT, MAX_OUTPUT); the HPACK bomb alone
/// would need 240 MB if it were expanded.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

// ---------------------------------------------------------------------------------------------
// Running alone or side by side

static QUIET: RwLock<()> = RwLock::new(());

/// For tests that measure time: nothing else of this file runs meanwhile.
fn alone() -> RwLockWriteGuard<'static, ()> {
    QUIET.write().unwrap_or_else(|e| e.into_inner())
}

/// For tests that do not measure time: they run beside each other, never beside one that does.
fn beside_others() -> RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// A server and its files

// A test server ([`Served`]) whose admin has a CA-signed ECDSA certificate, written with the CA
// into its directory (`admin.crt`, `admin.key`, `ca.pem`) for curl and the Python clients.
crate::served_newtype!(Server);

impl Server {
    /// Starts `kes` with `rest` of the config (which must name a keystore; `{dir}` stands for
    /// the server's directory).
    fn start(tag: &str, rest: &str) -> Server {
        let srv = Served::start_as(tag, rest, |ca| ca.client(KeyKind::EcdsaP256, "admin"));
        srv.admin.write(srv.dir.path(), "admin");
        std::fs::write(srv.dir.join("ca.pem"), &srv.ca.cert.cert_pem).unwrap();
        Server(srv)
    }

    /// A server with a filesystem keystore and key `k`, cached.
    fn fs(tag: &str, rest: &str) -> Server {
        let srv = Server::start(
            tag,
            &format!("keystore:\n  fs:\n    path: {{dir}}/keys\n{rest}"),
        );
        srv.create_key("k");
        srv
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.kes.addr.port())
    }

    /// Creates key `name` and generates with it once, so that it is cached.
    fn create_key(&self, name: &str) {
        let c = self.client();
        let r = c.put(&format!("/v1/key/create/{name}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c.post(&format!("/v1/key/generate/{name}"), "");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// The server's resident memory (VmRSS), in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.kes.child.id())
    }

    /// The value of an unlabelled metric (NaN when missing).
    fn metric(&self, name: &str) -> f64 {
        let text = self.client().get("/v1/metrics?all").text();
        text.lines()
            .find_map(|line| {
                let mut parts = line.split_whitespace();
                (parts.next() == Some(name))
                    .then(|| parts.next().and_then(|v| v.parse().ok()))
                    .flatten()
            })
            .unwrap_or(f64::NAN)
    }

    /// Waits until `metric` has `value`; returns how long that took.
    fn wait_metric(&self, metric: &str, value: f64, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.metric(metric) == value {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// The arguments every Python script takes: where the server is, and the admin's files.
    fn py_args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "--port".into(),
            self.kes.addr.port().to_string(),
            "--ca".into(),
            d.join("ca.pem").display().to_string(),
            "--cert".into(),
            d.join("admin.crt").display().to_string(),
            "--key".into(),
            d.join("admin.key").display().to_string(),
        ]
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Python scripts (tests/h2/)

/// A Python with the h2 package: `$KES_TEST_PYTHON`, or the venv scripts/test.sh makes.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("KES_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/python")
            });
        let works = Command::new(&python)
            .args(["-c", "import h2, hpack, hyperframe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            panic!(
                "{} cannot import h2: this test did not run; run scripts/test.sh (it installs the \
                 PyPI package h2 into target/tools/venv) or set KES_TEST_PYTHON",
                python.display()
            );
        }
        python
    })
}

/// Maps the times a script reports (`time.monotonic()`) onto this process's clock: both are
/// CLOCK_MONOTONIC, and the script prints its clock first thing.
#[derive(Debug, Clone, Copy)]
struct Clock {
    at: Instant,
    script: f64,
}

impl Clock {
    fn at(&self, t: &Value) -> Instant {
        let t = t.as_f64().unwrap_or_else(|| panic!("not a time: {t}"));
        let d = t - self.script;
        if d >= 0.0 {
            self.at + Duration::from_secs_f64(d)
        } else {
            self.at
                .checked_sub(Duration::from_secs_f64(-d))
                .unwrap_or(self.at)
        }
    }

    /// Script time `t` as time since `t0`.
    fn since(&self, t0: Instant, t: &Value) -> Duration {
        self.at(t).saturating_duration_since(t0)
    }
}

/// A running script of tests/h2/; killed on drop.
struct Py {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    clock: Clock,
}

impl Py {
    fn spawn(script: &str, args: &[String]) -> Py {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/h2")
            .join(script);
        let mut child = Command::new(python())
            .arg(&path)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, pipe) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                err.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut py = Py {
            name: script.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            clock: Clock {
                at: Instant::now(),
                script: 0.0,
            },
        };
        let first = py.next(Duration::from_secs(20));
        py.clock = Clock {
            at: Instant::now(),
            script: first["clock"].as_f64().expect("the clock line"),
        };
        py
    }

    /// The next JSON line, or `None` if none came within `timeout`.
    fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("{}: not JSON ({e}): {line}\n{}", self.name, self.stderr())
            })),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait();
                panic!(
                    "{} ended ({status:?}) without its result:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    #[track_caller]
    fn next(&mut self, timeout: Duration) -> Value {
        self.next_within(timeout).unwrap_or_else(|| {
            panic!(
                "{}: no output within {timeout:?}:\n{}",
                self.name,
                self.stderr()
            )
        })
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The result (the last line) and a clean exit.
    #[track_caller]
    fn finish(mut self, timeout: Duration) -> Value {
        let result = self.next(timeout);
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "{}: {status}\n{}",
            self.name,
            self.stderr()
        );
        result
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The machine, the bystander and the figures of a flood

/// One request of the bystander.
#[derive(Debug, Clone, Copy)]
struct Probe {
    at: Duration,
    took: Duration,
    /// 0: no answer (connection failed).
    status: u16,
    /// On a new connection (TLS handshake included).
    fresh: bool,
    /// The server's VmRSS right after.
    rss_kib: u64,
}

/// A client that asks for the cached key `k` every 10 ms: on a keep-alive HTTP/1.1 connection,
/// and every fifth time on a new one.
struct Bystander {
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    thread: Option<JoinHandle<()>>,
}

impl Bystander {
    fn start(srv: &Server, t0: Instant) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let (s, out, client, pid) = (
            stop.clone(),
            probes.clone(),
            srv.client(),
            srv.kes.child.id(),
        );
        let thread = std::thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                let fresh = n % 5 == 4 || conn.is_none();
                n += 1;
                let start = Instant::now();
                if fresh {
                    conn = client.try_connect().ok();
                }
                let status = match conn
                    .as_mut()
                    .map(|c| c.request("PUT", "/v1/key/generate/k", Some("")))
                {
                    Some(Ok(reply)) => reply.status,
                    _ => {
                        conn = None;
                        0
                    }
                };
                let took = start.elapsed();
                out.lock().unwrap().push(Probe {
                    at: start - t0,
                    took,
                    status,
                    fresh,
                    rss_kib: rss_kib(pid),
                });
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Bystander {
            stop,
            probes,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.probes.lock().unwrap().clone()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches a server while something happens to it: the bystander, the machine's stalls and the
/// server's memory. Holds [`alone`] while it watches.
struct Watch {
    t0: Instant,
    stalls: StallMonitor,
    bystander: Bystander,
    rss_before: u64,
    _alone: RwLockWriteGuard<'static, ()>,
}

impl Watch {
    fn start(srv: &Server) -> Watch {
        let alone = alone();
        let t0 = Instant::now();
        let stalls = StallMonitor::start_at(t0);
        let bystander = Bystander::start(srv, t0);
        // A few requests before: the bystander's connection is open, the server warm.
        std::thread::sleep(Duration::from_millis(200));
        Watch {
            t0,
            stalls,
            bystander,
            rss_before: srv.rss_kib(),
            _alone: alone,
        }
    }

    /// Stops watching a moment after `during` (an interval since `t0`) ended.
    fn stop(self, what: &str, during: (Duration, Duration)) -> Watched {
        std::thread::sleep(Duration::from_millis(300));
        Watched {
            what: what.to_string(),
            probes: self.bystander.stop(),
            stalls: self.stalls,
            rss_before: self.rss_before,
            during,
        }
    }
}

struct Watched {
    what: String,
    probes: Vec<Probe>,
    stalls: StallMonitor,
    rss_before: u64,
    during: (Duration, Duration),
}

impl Watched {
    /// Asserts that the bystander was answered within the bound during and after, and that
    /// the server's memory stayed bounded; prints the figures.
    #[track_caller]
    fn check(&self) {
        let (from, to) = self.during;
        let what = &self.what;
        let during: Vec<&Probe> = self
            .probes
            .iter()
            .filter(|p| p.at <= to && p.at + p.took >= from)
            .collect();
        let after: Vec<&Probe> = self.probes.iter().filter(|p| p.at > to).collect();
        let listing = || {
            self.probes
                .iter()
                .map(|p| format!("  at {:?}: {} in {:?}", p.at, p.status, p.took))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            !during.is_empty() && !after.is_empty(),
            "{what}: the bystander must have asked during ({from:?}..{to:?}) and after:\n{}",
            listing()
        );
        let mut excused = Vec::new();
        for p in &self.probes {
            assert_eq!(
                p.status,
                200,
                "{what}: the bystander was refused: {p:?}\n{}",
                listing()
            );
            if p.took >= BYSTANDER_BOUND {
                let frozen = self.stalls.during(p.at, p.at + p.took);
                assert!(
                    p.took.saturating_sub(frozen) < BYSTANDER_BOUND,
                    "{what}: the bystander waited {:?} (machine frozen for {frozen:?} of it), more than {BYSTANDER_BOUND:?}:\n{}",
                    p.took,
                    listing()
                );
                excused.push((p.took, frozen));
            }
        }
        let peak = self.probes.iter().map(|p| p.rss_kib).max().unwrap_or(0);
        let last = self.probes.last().map_or(0, |p| p.rss_kib);
        let growth = peak.saturating_sub(self.rss_before);
        let slowest = |v: &[&Probe]| v.iter().map(|p| p.took).max().unwrap_or_default();
        let mut took: Vec<Duration> = during.iter().map(|p| p.took).collect();
        took.sort();
        println!(
            "  {what}: bystander: {} requests during the flood ({} on new connections), median {:?}, max {:?}; {} after, max {:?}; machine stalls: {}{}",
            during.len(),
            during.iter().filter(|p| p.fresh).count(),
            took[took.len() / 2],
            slowest(&during),
            after.len(),
            slowest(&after),
            self.stalls.summary(),
            if excused.is_empty() {
                String::new()
            } else {
                format!("; excused (took, frozen): {excused:?}")
            }
        );
        println!(
            "  {what}: server VmRSS {} before, {} at the peak, {} after",
            mib(self.rss_before),
            mib(peak),
            mib(last)
        );
        assert!(
            growth < RSS_GROWTH_BOUND_KIB,
            "{what}: the server's memory grew by {} (bound {})",
            mib(growth),
            mib(RSS_GROWTH_BOUND_KIB)
        );
    }
}

/// Runs a script of tests/h2/ against `srv` while watching it; returns its result.
fn flood(srv: &Server, script: &str, args: &[&str]) -> (Value, Watched) {
    let watch = Watch::start(srv);
    let mut all = srv.py_args();
    all.extend(args.iter().map(|a| a.to_string()));
    let py = Py::spawn(script, &all);
    let clock = py.clock;
    let result = py.finish(Duration::from_secs(60));
    let during = (
        clock.since(watch.t0, &result["started"]),
        clock.since(watch.t0, &result["ended"]),
    );
    let what = args
        .windows(2)
        .find(|w| w[0] == "--attack")
        .map_or(script.to_string(), |w| w[1].to_string());
    (result, watch.stop(&what, during))
}

/// The connections of a flood.py result.
fn connections(result: &Value) -> &Vec<Value> {
    result["connections"].as_array().expect("connections")
}

/// Asserts that every connection of a flood ended with a GOAWAY with `code` (and a debug text
/// containing `why`), followed by the server closing; returns "N connections, ...".
#[track_caller]
fn assert_goaway(result: &Value, code: &str, why: &str) -> String {
    let conns = connections(result);
    assert!(!conns.is_empty());
    for c in conns {
        assert_eq!(c["alpn"], "h2", "{c}");
        assert_eq!(
            c["goaway"]["code"], code,
            "every connection must end so: {c}"
        );
        assert!(
            c["goaway"]["debug"].as_str().unwrap_or("").contains(why),
            "{c}"
        );
        assert!(
            c["closed"].is_number(),
            "the server must close after its GOAWAY: {c}"
        );
    }
    let secs = result["ended"].as_f64().unwrap() - result["started"].as_f64().unwrap();
    format!(
        "{} connections in {secs:.2} s, each ended by GOAWAY({code}, \"{}\")",
        conns.len(),
        conns[0]["goaway"]["debug"].as_str().unwrap_or("")
    )
}

/// `min-max` of a per-connection figure.
fn range(conns: &[Value], f: impl Fn(&Value) -> u64) -> String {
    let v: Vec<u64> = conns.iter().map(f).collect();
    format!(
        "{}-{}",
        v.iter().min().unwrap_or(&0),
        v.iter().max().unwrap_or(&0)
    )
}

/// How many streams the server took before its GOAWAY (client stream ids are odd).
fn streams_before_goaway(c: &Value) -> u64 {
    c["goaway"]["last_stream"].as_u64().unwrap().div_ceil(2)
}

/// Waits until no request is in flight any more (the metrics request itself is one).
#[track_caller]
fn assert_nothing_left_running(srv: &Server, what: &str) {
    let took = srv.wait_metric("kes_server_requests_in_flight", 1.0, Duration::from_secs(3));
    assert!(
        took.is_some(),
        "{what}: requests still in flight: {}",
        srv.metric("kes_server_requests_in_flight")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Conformance: h2spec

/// "147 tests, 147 passed, 0 skipped, 0 failed" → (tests, passed, skipped, failed).
fn h2spec_summary(out: &str) -> Option<(u64, u64, u64, u64)> {
    let line = out.lines().rev().find(|l| l.contains(" tests, "))?;
    let n: Vec<u64> = line
        .split(',')
        .map(|part| part.split_whitespace().next()?.parse().ok())
        .collect::<Option<_>>()?;
    match n[..] {
        [tests, passed, skipped, failed] => Some((tests, passed, skipped, failed)),
        _ => None,
    }
}

#[test]
fn peer_h2spec_strict_passes_every_test() {
    let h2spec = support::peers().join("bin/h2spec");
    // h2spec presents no client certificate: a route that skips auth lets the handshake through.
    let srv = Server::fs("h2spec", "api:\n  /version:\n    skip_auth: true\n");
    let _side = beside_others();
    for (strict, path, expected) in [
        (true, Some("/version"), 147),
        (false, Some("/version"), 146),
        (true, None, 147),
        (false, None, 146),
    ] {
        let report = srv.dir.join("h2spec.xml");
        let _ = std::fs::remove_file(&report);
        let mut cmd = Command::new(&h2spec);
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(srv.kes.addr.port().to_string())
            .args(["-t", "-k", "--junit-report"])
            .arg(&report);
        if strict {
            cmd.arg("-S");
        }
        if let Some(p) = path {
            cmd.args(["-P", p]);
        }
        let out = cmd.output().expect("run h2spec");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mode = format!(
            "h2spec{} -P {}",
            if strict { " -S" } else { "" },
            path.unwrap_or("/ (default; 404)")
        );
        let (tests, passed, skipped, failed) =
            h2spec_summary(&stdout).unwrap_or_else(|| panic!("{mode}: no summary line:\n{stdout}"));
        let junit = std::fs::read_to_string(&report).expect("junit report");
        let cases = junit.matches("<testcase ").count() as u64;
        let bad = ["<failure", "<error", "<skipped"]
            .iter()
            .map(|t| junit.matches(t).count())
            .sum::<usize>();
        println!(
            "{mode}: {tests} tests, {passed} passed, {skipped} skipped, {failed} failed; junit: {cases} test cases, {bad} failed or skipped"
        );
        assert!(
            out.status.success() && failed == 0 && skipped == 0 && passed == tests,
            "{mode}: not every test passed:\n{stdout}"
        );
        assert_eq!(tests, expected, "{mode}: h2spec ran another set of tests");
        assert_eq!(cases, tests, "{mode}: junit report:\n{junit}");
        assert_eq!(bad, 0, "{mode}: junit report:\n{junit}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. curl over HTTP/2 and HTTP/1.1; HTTP/2 turned off

/// One curl exchange.
#[derive(Debug)]
struct Curl {
    status: u16,
    /// `%{http_version}`: "2" or "1.1".
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} {}",
                self,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

fn curl(srv: &Server, proto: &str, method: &str, path: &str, body: Option<&str>) -> Curl {
    let d = srv.dir.path();
    let (head_file, body_file) = (d.join("curl.head"), d.join("curl.body"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", proto, "--cacert"])
        .arg(d.join("ca.pem"))
        .arg("--cert")
        .arg(d.join("admin.crt"))
        .arg("--key")
        .arg(d.join("admin.key"))
        .arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-w", "%{http_code} %{http_version}"]);
    if method == "HEAD" {
        cmd.arg("--head");
    } else {
        cmd.args(["-X", method]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.arg(srv.url(path)).output().expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {proto} {method} {path}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, version) = stdout.split_once(' ').expect("curl -w output");
    let heads = std::fs::read_to_string(&head_file).unwrap();
    let headers = heads
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        status: status.parse().unwrap(),
        version: version.to_string(),
        headers,
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

#[test]
fn curl_over_http2_matches_http1() {
    let srv = Server::fs("curl", "");
    let _side = beside_others();
    let mut seen: BTreeMap<&str, Vec<Curl>> = BTreeMap::new();
    let mut ciphertexts = Vec::new();
    for (proto, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let key = if version == "2" { "over-h2" } else { "over-h1" };
        let run = |seen: &mut BTreeMap<&str, Vec<Curl>>, name, method, path: &str, body| {
            let c = curl(&srv, proto, method, path, body);
            assert_eq!(c.version, version, "{proto} {name}: {c:?}");
            seen.entry(name).or_default().push(c);
        };
        let s = &mut seen;
        run(s, "version", "GET", "/version", None);
        run(s, "create", "PUT", &format!("/v1/key/create/{key}"), None);
        run(
            s,
            "create again",
            "PUT",
            &format!("/v1/key/create/{key}"),
            None,
        );
        let generate = format!("/v1/key/generate/{key}");
        run(
            s,
            "generate",
            "POST",
            &generate,
            Some(r#"{"context":"e30="}"#),
        );
        let generated = s["generate"].last().unwrap().json();
        let decrypt = json!({"ciphertext": generated["ciphertext"], "context": "e30="}).to_string();
        ciphertexts.push((key, decrypt.clone(), generated["plaintext"].clone()));
        let path = format!("/v1/key/decrypt/{key}");
        run(s, "decrypt", "POST", &path, Some(&decrypt));
        run(s, "not found", "GET", "/no/such/path", None);
        run(
            s,
            "wrong method",
            "GET",
            &format!("/v1/key/create/{key}"),
            None,
        );
        run(s, "head", "HEAD", "/version", None);
    }
    for (name, pair) in &seen {
        let (h2, h1) = (&pair[0], &pair[1]);
        println!(
            "{name}: HTTP/{} {} / HTTP/{} {}: {}",
            h2.version,
            h2.status,
            h1.version,
            h1.status,
            String::from_utf8_lossy(&h2.body).trim()
        );
        assert_eq!(h2.status, h1.status, "{name}: {h2:?} / {h1:?}");
        assert_eq!(
            h2.header("content-type"),
            h1.header("content-type"),
            "{name}"
        );
        match *name {
            "generate" => {
                let keys = |c: &Curl| {
                    let v = c.json();
                    v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
                };
                assert_eq!(keys(h2), ["ciphertext", "plaintext"]);
                assert_eq!(keys(h1), keys(h2));
            }
            "decrypt" => {
                for (c, (_, _, plaintext)) in pair.iter().zip(&ciphertexts) {
                    assert_eq!(&c.json()["plaintext"], plaintext, "{name}");
                }
            }
            "create" => assert!(h2.body.is_empty() && h1.body.is_empty(), "{name}"),
            "head" => {
                // (curl --head writes the head where the body would go: the framing is
                // checked below.)
                assert_eq!(
                    h2.header("content-length"),
                    h1.header("content-length"),
                    "{name}"
                );
                assert_eq!(h2.header("accept"), h1.header("accept"), "{name}");
            }
            _ => assert_eq!(
                String::from_utf8_lossy(&h2.body),
                String::from_utf8_lossy(&h1.body),
                "{name}"
            ),
        }
    }
    assert_eq!(seen["version"][0].status, 200);
    assert_eq!(seen["create"][0].status, 200);
    assert_eq!(seen["create again"][0].status, 400);
    assert_eq!(seen["not found"][0].status, 404);
    let wrong = &seen["wrong method"];
    assert_eq!(wrong[0].status, 405);
    assert_eq!(wrong[0].header("accept"), Some("PUT"), "{:?}", wrong[0]);
    assert_eq!(wrong[1].header("accept"), Some("PUT"), "{:?}", wrong[1]);
    // Keys made over one protocol work over the other.
    for (proto, (key, decrypt, plaintext)) in ["--http1.1", "--http2"].iter().zip(&ciphertexts) {
        let c = curl(
            &srv,
            proto,
            "POST",
            &format!("/v1/key/decrypt/{key}"),
            Some(decrypt),
        );
        assert_eq!((c.status, &c.json()["plaintext"]), (200, plaintext));
    }

    // HEAD over HTTP/2: the reply's HEADERS end the stream, no DATA frame; over HTTP/1.1 no
    // body follows the head; both connections serve the next request.
    let r = Py::spawn(
        "request.py",
        &[
            srv.py_args(),
            [
                "--request",
                "HEAD",
                "/version",
                "--request",
                "GET",
                "/version",
            ]
            .map(String::from)
            .to_vec(),
        ]
        .concat(),
    )
    .finish(Duration::from_secs(20));
    let (head, get) = (&r["answers"][0], &r["answers"][1]);
    println!("HEAD over HTTP/2: {head}");
    assert_eq!(head["end_on_headers"], true, "{head}");
    assert_eq!(head["data_frames"], 0, "{head}");
    assert_eq!(head["status"], seen["head"][0].status, "{head}");
    assert_eq!(get["status"], 200, "{get}");
    let mut conn = srv.client().connect();
    conn.send_raw(b"HEAD /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.stream.read(&mut byte).unwrap(), 1, "EOF in the head");
        reply.push(byte[0]);
    }
    conn.stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let more = conn.stream.read(&mut byte);
    assert!(
        more.is_err(),
        "bytes after the head of a HEAD reply: {more:?}"
    );
    conn.stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(conn.request("GET", "/version", None).unwrap().status, 200);
}

#[test]
fn with_http2_off_only_http1_is_offered() {
    let on = Server::fs("h2-on", "");
    let off = Server::fs("h2-off", "server:\n  http2: off\n");
    let _side = beside_others();
    let version = |srv: &Server| curl(srv, "--http2", "GET", "/version", None).version;
    let alpn = |srv: &Server, offer: &[&str]| {
        let mut args = srv.py_args();
        for o in offer {
            args.extend(["--offer".to_string(), o.to_string()]);
        }
        Py::spawn("alpn.py", &args).finish(Duration::from_secs(20))
    };
    let (on_curl, off_curl) = (version(&on), version(&off));
    let on_h2 = alpn(&on, &["h2"]);
    let off_h2 = alpn(&off, &["h2"]);
    let off_both = alpn(&off, &["h2", "http/1.1"]);
    println!("http2 on: curl --http2 got HTTP/{on_curl}; a client offering only h2: {on_h2}");
    println!(
        "http2 off: curl --http2 got HTTP/{off_curl}; a client offering only h2: {off_h2}; offering h2 and http/1.1: {off_both}"
    );
    assert_eq!(on_curl, "2");
    assert_eq!(on_h2["alpn"], "h2", "{on_h2}");
    assert_eq!(off_curl, "1.1");
    assert_eq!(off_both["alpn"], "http/1.1", "{off_both}");
    assert_eq!(
        off_h2["ok"], false,
        "an h2-only client must be refused: {off_h2}"
    );
    assert!(
        off_h2["error"]
            .as_str()
            .unwrap_or("")
            .contains("no application protocol"),
        "refused with the TLS alert no_application_protocol: {off_h2}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. MinIO's client library: kesclient and kesload

/// What kesclient printed: each call's PASS/FAIL line by name, and its raw exchanges.
struct KesClientRun {
    results: BTreeMap<String, (bool, String)>,
    summary: String,
    exchanges: Vec<String>,
    output: String,
}

fn kesclient(peers: &Path, port: u16, api_key: &str) -> KesClientRun {
    let out = Command::new(peers.join("bin/kesclient"))
        .arg("-server")
        .arg(format!("https://127.0.0.1:{port}"))
        .args(["-api-key", api_key, "-k"])
        .output()
        .expect("run kesclient");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut results = BTreeMap::new();
    for line in output.lines() {
        let pass = line.starts_with("PASS ");
        if pass || line.starts_with("FAIL ") {
            let name = line[5..].split(" expect=").next().unwrap().trim();
            results.insert(name.to_string(), (pass, line.to_string()));
        }
    }
    KesClientRun {
        results,
        summary: output
            .lines()
            .rfind(|l| l.contains(" passed, "))
            .unwrap_or("no summary line")
            .to_string(),
        exchanges: output
            .lines()
            .filter(|l| l.trim_start().starts_with("http: "))
            .map(str::to_string)
            .collect(),
        output,
    }
}

#[test]
fn peer_kesclient_every_call_over_h2_as_against_the_go_server() {
    let peers = support::peers();
    let _side = beside_others();
    let kes = Kes::start_with(&["server", "--dev", "--addr", "127.0.0.1:0"], &[])
        .unwrap_or_else(|out| panic!("kes did not start:\n{out}"));
    let key = kes
        .dev_api_key
        .clone()
        .expect("kes --dev printed no API key");
    let go = GoKes::start_dev();
    // Side by side: each run waits 3 s on the error log stream.
    let (p, port) = (peers.clone(), go.port);
    let go_key = go.api_key.clone().expect("kes-go printed no API key");
    let against_go = std::thread::spawn(move || kesclient(&p, port, &go_key));
    let ours = kesclient(&peers, kes.addr.port(), &key);
    let theirs = against_go.join().unwrap();

    let failed = |r: &KesClientRun| -> Vec<String> {
        r.results
            .iter()
            .filter(|(_, (pass, _))| !pass)
            .map(|(n, _)| n.clone())
            .collect()
    };
    // Streamed replies are traced without the ALPN; the others say which it was.
    let h2 = ours
        .exchanges
        .iter()
        .filter(|l| l.contains("-> HTTP/2.0 "))
        .count();
    let other: Vec<&String> = ours
        .exchanges
        .iter()
        .filter(|l| {
            !l.contains("-> HTTP/2.0 ") || (l.contains(" alpn=") && !l.contains(" alpn=h2 "))
        })
        .collect();
    println!(
        "kesclient against kes: {}; failed: {:?}",
        ours.summary,
        failed(&ours)
    );
    println!(
        "kesclient against kes-go: {}; failed: {:?}",
        theirs.summary,
        failed(&theirs)
    );
    println!(
        "kes answered {h2} of {} exchanges over HTTP/2 (ALPN h2), {} otherwise",
        ours.exchanges.len(),
        other.len()
    );
    assert!(
        ours.results.len() >= 60 && theirs.results.len() >= 60,
        "kesclient did not run its calls:\n{}\n{}",
        ours.output,
        theirs.output
    );
    assert!(
        h2 >= 50 && other.is_empty(),
        "kes must answer kesclient over h2: {other:?}\n{}",
        ours.output
    );
    let regressions: Vec<String> = theirs
        .results
        .iter()
        .filter(|(_, (pass, _))| *pass)
        .filter(|(name, _)| !ours.results.get(*name).is_some_and(|(pass, _)| *pass))
        .map(|(name, (_, go_line))| {
            let kes_line = ours
                .results
                .get(name)
                .map_or("(not run)", |(_, l)| l.as_str());
            format!("  kes:    {kes_line}\n  kes-go: {go_line}")
        })
        .collect();
    assert!(
        regressions.is_empty(),
        "calls that pass against kes-go fail against kes:\n{}",
        regressions.join("\n")
    );
}

#[test]
fn peer_kesload_over_h2() {
    let peers = support::peers();
    let _side = beside_others();
    let kes = Kes::start_with(&["server", "--dev", "--addr", "127.0.0.1:0"], &[])
        .unwrap_or_else(|out| panic!("kes did not start:\n{out}"));
    let key = kes
        .dev_api_key
        .clone()
        .expect("kes --dev printed no API key");
    let load = |op: &str, extra: &[&str]| -> Value {
        let out = Command::new(peers.join("bin/kesload"))
            .arg("-server")
            .arg(format!("https://127.0.0.1:{}", kes.addr.port()))
            .args(["-api-key", &key, "-c", "64", "-d", "2s", "-op", op])
            .args(extra)
            .output()
            .expect("run kesload");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rfind(|l| l.starts_with('{')).unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "kesload printed no result ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let n = |v: &Value, f: &str| v[f].as_f64().unwrap_or(f64::NAN);
    for op in ["generate", "decrypt"] {
        let r = load(op, &[]);
        println!(
            "kesload -c 64 -op {op} over h2: {:.0} req/s, p50 {} µs, p99 {} µs, {} errors, {} dials, {} handshakes",
            n(&r, "rps"),
            r["p50_us"],
            r["p99_us"],
            r["errors"],
            r["dials"],
            r["handshakes"]
        );
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(
            r["dials"], 0,
            "every request over the open h2 connection: {r}"
        );
        assert!(n(&r, "ok") > 0.0, "{r}");
    }
    let r = load("generate", &["-no-h2"]);
    let ratio = n(&r, "resumed") / n(&r, "handshakes");
    println!(
        "kesload -c 64 -op generate -no-h2: {:.0} req/s, p99 {} µs, {} errors, {} dials, {} handshakes, {} resumed ({:.1} %)",
        n(&r, "rps"),
        r["p99_us"],
        r["errors"],
        r["dials"],
        r["handshakes"],
        r["resumed"],
        ratio * 100.0
    );
    assert_eq!(r["errors"], 0, "{r}");
    assert!(n(&r, "handshakes") > 0.0, "{r}");
    assert!(ratio >= 0.95, "TLS sessions must resume: {r}");
}

// ---------------------------------------------------------------------------------------------
// 5. TLS resumption keeps the identity of the first handshake

#[test]
fn tls_resumption_keeps_the_identity_of_the_first_handshake() {
    let a = support::pki::self_signed_client(KeyKind::EcdsaP256, "a");
    let b = support::pki::self_signed_client(KeyKind::EcdsaP256, "b");
    let policy = |name: &str, prefix: &str, who: &Cert| {
        format!(
            "  {name}:\n    allow:\n    - /v1/identity/self/describe\n    - /v1/key/generate/{prefix}-*\n    identities:\n    - {}\n",
            who.identity
        )
    };
    let srv = Server::fs(
        "resume",
        &format!(
            "policy:\n{}{}",
            policy("only-a", "a", &a),
            policy("only-b", "b", &b)
        ),
    );
    srv.create_key("a-key");
    srv.create_key("b-key");
    let _side = beside_others();
    for (name, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        // What a connection sees: handshake kind, identity, and which keys it may use.
        let look = |config: &Arc<rustls::ClientConfig>| {
            let mut conn = Client::with_config(srv.kes.addr, config.clone()).connect();
            conn.handshake().unwrap();
            let kind = conn.stream.conn.handshake_kind();
            let me = conn
                .request("GET", "/v1/identity/self/describe", None)
                .unwrap();
            assert_eq!(me.status, 200, "{}", me.text());
            let mut generate = |key: &str| {
                conn.request("PUT", &format!("/v1/key/generate/{key}"), Some(""))
                    .unwrap()
                    .status
            };
            let (a_key, b_key) = (generate("a-key"), generate("b-key"));
            let identity = me.json()["identity"].as_str().unwrap().to_string();
            (kind, identity, a_key, b_key)
        };
        let (config, switch) = resuming_config(&srv.ca.cert.der, &a, version);
        let first = look(&config);
        // From now on the configuration presents B; its session store holds A's sessions.
        switch.set(&b);
        let resumed = look(&config);
        // B with sessions of its own.
        let (own_config, _) = resuming_config(&srv.ca.cert.der, &b, version);
        let own = look(&own_config);
        println!("{name}: first connection, certificate A: {first:?}");
        println!("{name}: certificate B, A's session store: {resumed:?}");
        println!("{name}: certificate B, a store of its own: {own:?}");
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(first, (Some(Full), a.identity.clone(), 200, 403), "{name}");
        assert_eq!(
            resumed,
            (Some(Resumed), a.identity.clone(), 200, 403),
            "{name}: a resumed session is A's: A's identity and policy, not B's"
        );
        assert_eq!(own, (Some(Full), b.identity.clone(), 403, 200), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Floods

#[test]
fn rapid_reset_is_cut_off() {
    let srv = Server::fs("rapid-reset", "");
    println!("rapid reset (CVE-2023-44487), HEADERS + RST_STREAM pairs as fast as possible:");
    for attack in ["rapid-reset-body", "rapid-reset-worker"] {
        let (r, watched) = flood(&srv, "flood.py", &["--attack", attack, "--seconds", "0.7"]);
        let how = assert_goaway(&r, "ENHANCE_YOUR_CALM", "rapid reset");
        let conns = connections(&r);
        // GOAWAY's last stream id: the streams the server took before it said stop.
        for c in conns {
            let streams = streams_before_goaway(c);
            assert!(
                streams <= 1000,
                "{attack}: {streams} streams reset before GOAWAY: {c}"
            );
        }
        println!(
            "  {attack}: {how}, after {} streams ({} frames queued per connection)",
            range(conns, streams_before_goaway),
            range(conns, |c| c["frames"].as_u64().unwrap())
        );
        watched.check();
        assert_nothing_left_running(&srv, attack);
    }
    // Requests answered at once (on the event loop) are answered before their reset arrives:
    // nothing is reset before its reply, nothing to cut off; each pair costs one request.
    let (r, watched) = flood(
        &srv,
        "flood.py",
        &["--attack", "rapid-reset-inline", "--seconds", "0.7"],
    );
    let conns = connections(&r);
    let mut answered = 0;
    for c in conns {
        assert!(
            c["goaway"].is_null() || c["goaway"]["code"] == "ENHANCE_YOUR_CALM",
            "{c}"
        );
        for (status, n) in c["statuses"].as_object().unwrap() {
            assert_eq!(status, "200", "{c}");
            answered += n.as_u64().unwrap();
        }
    }
    println!(
        "  rapid-reset-inline (GET /version): {} connection(s), {answered} requests answered in 0.7 s, each before its reset arrived",
        conns.len()
    );
    assert!(answered > 0);
    watched.check();
    assert_nothing_left_running(&srv, "rapid-reset-inline");
}

#[test]
fn continuation_floods_are_cut_off() {
    let srv = Server::fs("continuation", "server:\n  header_timeout: 1s\n");
    println!("CONTINUATION floods (a header block that never ends):");
    let (r, watched) = flood(
        &srv,
        "flood.py",
        &["--attack", "continuation", "--seconds", "0.7"],
    );
    let how = assert_goaway(&r, "ENHANCE_YOUR_CALM", "header block too large");
    println!(
        "  continuation (16 KiB frames): {how}, after {} bytes sent per connection",
        range(connections(&r), |c| c["bytes_sent"].as_u64().unwrap())
    );
    watched.check();

    let (r, watched) = flood(
        &srv,
        "flood.py",
        &["--attack", "continuation-empty", "--seconds", "0.7"],
    );
    let how = assert_goaway(&r, "ENHANCE_YOUR_CALM", "flood");
    println!("  continuation-empty: {how}");
    watched.check();

    // A header block that trickles in (a byte every 100 ms) after a first request is cut at
    // server.header_timeout.
    let (r, watched) = flood(
        &srv,
        "flood.py",
        &[
            "--attack",
            "slow-headers",
            "--seconds",
            "10",
            "--connections",
            "1",
        ],
    );
    let c = &connections(&r)[0];
    let code = c["goaway"]["code"].as_str().unwrap_or("none");
    assert!(
        matches!(code, "PROTOCOL_ERROR" | "ENHANCE_YOUR_CALM"),
        "a header block that never ends must be cut with a GOAWAY: {c}"
    );
    assert!(c["closed"].is_number(), "{c}");
    let cut = Duration::from_secs_f64(
        c["goaway"]["at"].as_f64().unwrap() - c["attack_started"].as_f64().unwrap(),
    );
    let frozen = watched.stalls.during(watched.during.0, watched.during.1);
    println!(
        "  slow-headers: GOAWAY({code}, {:?}) {cut:?} after its HEADERS (header_timeout 1s; machine frozen {frozen:?} meanwhile)",
        c["goaway"]["debug"]
    );
    assert_eq!(c["statuses"], json!({"200": 1}), "the request before: {c}");
    assert!(
        cut >= Duration::from_millis(900) && cut.saturating_sub(frozen) < Duration::from_secs(2),
        "cut after {cut:?}, header_timeout is 1s: {c}"
    );
    watched.check();
}

#[test]
fn hpack_bomb_is_answered_431_and_the_connection_stays_usable() {
    let srv = Server::fs("hpack-bomb", "");
    let (r, watched) = flood(&srv, "hpack_bomb.py", &["--seconds", "0.7"]);
    let rounds = r["rounds"].as_array().unwrap();
    for round in rounds {
        assert_eq!(round["bomb"], 431, "{round}");
        assert_eq!(
            round["bomb_body"], "{\"message\":\"request header fields too large\"\n}",
            "{round}"
        );
        assert_eq!(
            round["after"], 200,
            "the next request on the connection: {round}"
        );
    }
    assert!(r["goaway"].is_null() && r["closed"].is_null(), "{r}");
    let slowest = rounds
        .iter()
        .map(|r| r["ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    println!(
        "HPACK bomb: {} bombs on one connection in 0.7 s, each {} bytes that decode to {} MB: all answered 431, the next request on the connection 200 (slowest round {slowest:.1} ms)",
        rounds.len(),
        r["block_bytes"],
        r["decoded_bytes"].as_u64().unwrap() / 1_000_000
    );
    watched.check();
}

#[test]
fn frame_floods_end_with_enhance_your_calm() {
    let srv = Server::fs("frame-floods", "");
    println!("floods of frames that carry no request:");
    for attack in ["settings", "ping", "ping-noread", "empty-data", "priority"] {
        let (r, watched) = flood(&srv, "flood.py", &["--attack", attack, "--seconds", "0.5"]);
        let how = assert_goaway(&r, "ENHANCE_YOUR_CALM", "flood");
        let conns = connections(&r);
        // What the server answered before it stopped: bounded, whether the client reads or not.
        let answers = |c: &Value| {
            c["frames_in"]["PingFrame"].as_u64().unwrap_or(0)
                + c["frames_in"]["SettingsFrame"].as_u64().unwrap_or(0)
        };
        for c in conns {
            assert!(answers(c) <= 1100, "{attack}: {c}");
        }
        println!(
            "  {attack}: {how}; {} frames queued, {} PING/SETTINGS answered per connection",
            range(conns, |c| c["frames"].as_u64().unwrap()),
            range(conns, answers)
        );
        watched.check();
    }
}

#[test]
fn a_client_that_never_reads_is_closed_once_its_writes_stall() {
    let srv = Server::fs("noread", "");
    // Only the connection that asks is open (the setup's have been closed).
    let settled = srv.wait_metric("kes_server_connections_open", 1.0, Duration::from_secs(5));
    assert!(settled.is_some(), "connections left open by the setup");
    // Requests written without end, replies never read: the server stops reading once its
    // output is full, and closes the connection when its writes make no progress.
    let watch = Watch::start(&srv);
    let t0 = watch.t0;
    let mut args = srv.py_args();
    args.extend(
        [
            "--attack",
            "requests-noread",
            "--seconds",
            "40",
            "--connections",
            "1",
        ]
        .map(String::from),
    );
    let mut py = Py::spawn("flood.py", &args);
    std::thread::sleep(Duration::from_secs(2));
    let watched = watch.stop(
        "requests-noread (first 2 s)",
        (Duration::ZERO, t0.elapsed()),
    );
    watched.check();
    // The rest takes 15 s or so and no CPU (the server neither reads nor can write this
    // connection): it holds no lock, so that the other tests run meanwhile.
    let mut peak = 0;
    let result = loop {
        peak = peak.max(srv.rss_kib());
        if let Some(v) = py.next_within(Duration::from_millis(100)) {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(45), "still open");
    };
    let c = &connections(&result)[0];
    let open_for = Duration::from_secs_f64(
        c["closed"].as_f64().expect("closed by the server") - c["started"].as_f64().unwrap(),
    );
    // The attacker's connection and the bystander's are gone; only the one that asks is open.
    let gone = srv.wait_metric("kes_server_connections_open", 1.0, Duration::from_secs(5));
    println!(
        "requests-noread: {} requests written ({} bytes) without reading; the server closed the connection after {open_for:?} ({}); server VmRSS {} before, {} at the peak",
        c["frames"],
        c["bytes_sent"],
        c["close_reason"].as_str().unwrap_or(""),
        mib(watched.rss_before),
        mib(peak)
    );
    assert!(
        open_for < Duration::from_secs(30),
        "a connection whose writes stall must be closed"
    );
    assert!(
        peak.saturating_sub(watched.rss_before) < RSS_GROWTH_BOUND_KIB,
        "memory grew by {}",
        mib(peak.saturating_sub(watched.rss_before))
    );
    assert!(
        gone.is_some(),
        "the connection must be gone: {} open",
        srv.metric("kes_server_connections_open")
    );
}

#[test]
fn streams_over_the_limit_are_refused() {
    let srv = Server::fs("streams", "");
    let (r, watched) = flood(&srv, "streams.py", &["--streams", "200"]);
    let refused = r["refused"].as_object().unwrap();
    let ids: Vec<u64> = refused.keys().map(|k| k.parse().unwrap()).collect();
    println!(
        "200 streams opened at once (limit advertised: {}): {} refused (streams {:?}..{:?}, {:?}), the others answered {}",
        r["max_concurrent_streams"],
        refused.len(),
        ids.iter().min(),
        ids.iter().max(),
        refused.values().next(),
        r["answered"]
    );
    assert_eq!(r["max_concurrent_streams"], 128, "{r}");
    // Streams 1, 3, … 255 are the first 128; 257 … 399 are over the limit.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, (257..=399).step_by(2).collect::<Vec<u64>>(), "{r}");
    assert!(refused.values().all(|v| v == "REFUSED_STREAM"), "{r}");
    assert_eq!(r["answered"], json!({"200": 128}), "{r}");
    assert!(r["goaway"].is_null(), "{r}");
    watched.check();
}

// ---------------------------------------------------------------------------------------------
// 7. Streams of one connection are served concurrently

/// A stored key value (§6.1) as the Go server writes it.
fn stored_value() -> String {
    let v: Value = serde_json::from_str(include_str!("vectors/vectors.json")).unwrap();
    v["stored"][0]["value"].as_str().unwrap().to_string()
}

#[test]
fn streams_of_one_connection_are_served_concurrently() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    // A key kes has never seen: its first use reads Vault.
    let value = stored_value();
    bao.ok(
        None,
        "PUT",
        "/v1/kv/data/cold",
        Some(&json!({ "data": { "cold": value } })),
    );
    let proxy = Proxy::start(format!("127.0.0.1:{}", bao.port).parse().unwrap());
    let srv = Server::start(
        "concurrent",
        &format!(
            "keystore:\n  vault:\n    endpoint: {}\n    engine: kv\n    version: v2\n    approle:\n      id: {}\n      secret: {}\n",
            proxy.url("http"),
            role.0,
            role.1
        ),
    );
    srv.create_key("hot");
    // Every answer of Vault 600 ms late (within timeout.read, 1.5 s).
    let delay = Duration::from_millis(600);
    proxy.set(Mode::Delay(delay));

    let _alone = alone();
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut args = srv.py_args();
    args.extend(
        [
            "--slow",
            "/v1/key/generate/cold",
            "--fast",
            "/v1/key/generate/hot",
            "--fast-streams",
            "20",
        ]
        .map(String::from),
    );
    let py = Py::spawn("concurrent.py", &args);
    let clock = py.clock;
    let r = py.finish(Duration::from_secs(30));
    let streams = r["streams"].as_object().unwrap();
    let slow = &streams["1"];
    let span = |s: &Value| {
        let (sent, ended) = (clock.since(t0, &s["sent"]), clock.since(t0, &s["ended"]));
        (sent, ended.saturating_sub(sent))
    };
    let (slow_sent, slow_took) = span(slow);
    let slow_ended = slow_sent + slow_took;
    let mut fast: Vec<(Duration, Duration)> = Vec::new();
    for (id, s) in streams.iter().filter(|(id, _)| *id != "1") {
        assert_eq!(s["status"], 200, "stream {id}: {s}");
        let (sent, took) = span(s);
        assert!(
            sent + took < slow_ended,
            "stream {id} must be answered before the slow stream 1: {r}"
        );
        let frozen = stalls.during(sent, sent + took);
        assert!(
            took.saturating_sub(frozen) < BYSTANDER_BOUND,
            "stream {id} took {took:?} (machine frozen {frozen:?}): {r}"
        );
        fast.push((sent, took));
    }
    println!(
        "one h2 connection, Vault {delay:?} late: stream 1 (uncached key) answered {} after {slow_took:?}; streams 3-41 (cached key, sent 50 ms later) all 200, slowest in {:?}, all before stream 1; machine stalls: {}",
        slow["status"],
        fast.iter().map(|f| f.1).max().unwrap_or_default(),
        stalls.summary()
    );
    assert_eq!(fast.len(), 20);
    assert_eq!(slow["status"], 200, "{slow}");
    assert!(
        slow_took >= delay,
        "stream 1 must have waited for Vault: {slow_took:?}"
    );
    assert!(r["goaway"].is_null(), "{r}");
}

// ---------------------------------------------------------------------------------------------
// 8. Log streams over HTTP/2

#[test]
fn audit_log_streams_over_h2() {
    let srv = Server::fs("audit", "log:\n  audit: on\n");
    let mut args = srv.py_args();
    args.extend(
        [
            "--expect",
            "/v1/key/generate/k",
            "--expect",
            "/no/such/path",
        ]
        .map(String::from),
    );
    let mut py = Py::spawn("audit.py", &args);
    let clock = py.clock;
    let subscribed = py.next(Duration::from_secs(20));
    for stream in ["1", "3"] {
        assert_eq!(
            subscribed["subscribed"][stream],
            json!(["200", "application/x-ndjson"]),
            "{subscribed}"
        );
    }
    let subscribers = srv.metric("kes_log_audit_subscribers");
    // A reload (SIGHUP) leaves open streams alone: the events of the requests below, made after
    // it, arrive on the streams opened before it.
    srv.kes.signal("HUP");
    assert!(
        srv.kes.wait_for_output("reloaded", Duration::from_secs(20)),
        "no reload:\n{}",
        srv.kes.output()
    );
    let c = srv.client();
    assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
    assert_eq!(c.get("/no/such/path").status, 404);
    let received = py.next(Duration::from_secs(20));
    for stream in ["1", "3"] {
        let events = received["received"][stream].as_array().unwrap();
        for expected in [
            json!(["POST", "/v1/key/generate/k", 200]),
            json!(["GET", "/no/such/path", 404]),
        ] {
            assert!(
                events.contains(&expected),
                "stream {stream} must carry {expected}: {received}"
            );
        }
    }

    let _alone = alone();
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    // Stream 3 cancelled, the connection kept: one subscriber left.
    let reset = py.next(Duration::from_secs(20));
    let reset_at = clock.since(t0, &reset["reset"]);
    let one_left = srv.wait_metric("kes_log_audit_subscribers", 1.0, Duration::from_secs(5));
    let gone_after_reset = t0.elapsed().saturating_sub(reset_at);
    // The connection closed (TCP FIN, no GOAWAY): none left.
    py.send_line("close");
    let closed = py.finish(Duration::from_secs(20));
    let closed_at = clock.since(t0, &closed["closed"]);
    let none_left = srv.wait_metric("kes_log_audit_subscribers", 0.0, Duration::from_secs(5));
    let gone_after_close = t0.elapsed().saturating_sub(closed_at);
    println!(
        "audit log over h2: 2 subscriptions on one connection ({subscribers} subscribers counted), both got the events of requests made after a reload (SIGHUP); after RST_STREAM on one: 1 left within {gone_after_reset:?}; after the connection closed: 0 within {gone_after_close:?}; machine stalls: {}",
        stalls.summary()
    );
    assert_eq!(subscribers, 2.0);
    assert!(one_left.is_some(), "a cancelled log stream must end");
    assert!(
        none_left.is_some(),
        "a closed connection's log streams must end"
    );
    for (what, took, at) in [
        ("RST_STREAM", gone_after_reset, reset_at),
        ("closed connection", gone_after_close, closed_at),
    ] {
        let frozen = stalls.during(at, at + took);
        assert!(
            took.saturating_sub(frozen) < Duration::from_secs(1),
            "{what}: the subscriber was counted for {took:?} (machine frozen {frozen:?})"
        );
    }
}

#[test]
fn shutdown_over_h2_finishes_streams_then_closes() {
    let mut srv = Server::fs("shutdown", "");
    let _side = beside_others();
    let mut args = srv.py_args();
    args.extend(["--pid".to_string(), srv.kes.child.id().to_string()]);
    let r = Py::spawn("shutdown.py", &args).finish(Duration::from_secs(30));
    let code = srv.kes.wait_exit(Duration::from_secs(10));
    let (log, request) = (&r["log_stream"], &r["request"]);
    println!(
        "SIGTERM with an audit stream and a request in progress on one h2 connection: GOAWAY {} after {:.1} ms; the log stream ended after {:.1} ms; the request, completed after the GOAWAY, answered {}; connection closed after {:.1} ms; exit code {code:?}",
        r["goaway"]["code"],
        r["goaway"]["at"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        log["ended"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        request["status"],
        r["closed"].as_f64().unwrap_or(f64::NAN) * 1000.0
    );
    assert_eq!(r["goaway"]["code"], "NO_ERROR", "{r}");
    assert_eq!(
        r["goaway"]["last_stream"], 3,
        "streams 1 and 3 are processed: {r}"
    );
    assert_eq!(log["status"], 200, "{r}");
    assert!(
        log["ended"].is_number() && log["reset"].is_null(),
        "the log stream ends cleanly: {r}"
    );
    assert_eq!(
        request["status"], 200,
        "the request in progress is answered: {r}"
    );
    assert!(r["closed"].is_number(), "{r}");
    assert_eq!(code, Some(0));
}
