//! The fault suite: what clients see while Vault is sealed, killed, restarted, slow or
//! unreachable, or its leader dies, and while the server itself is overloaded or fed garbage.
//!
//! Everything runs for real: the `kes` binary over TLS, OpenBao servers (`support::openbao`),
//! and, for slow and dropped connections, a TCP proxy of our own between the two
//! (`support::proxy`). Vault settings are the defaults (`timeout.read` 1.5 s, `status.ping`
//! 10 s), so the figures are those an operator gets. Each test prints what it measured
//! (`cargo test --test faults -- --nocapture`); the README's "Failure modes" quotes them.
//!
//! The streams are paced (a cached-key decrypt every 20 ms, an uncached-key generate every
//! 100 ms) so that the suite does not need the whole CPU of a small CI machine.
//!
//! Time bounds and a busy machine: a bound that is the requirement itself ("an uncached key
//! fails within 2 s") is asserted on the time the machine actually ran. A [`StallMonitor`]
//! thread sleeps 10 ms at a time and records every oversleep; a request that breaks the bound
//! only passes when the machine was frozen during it for at least the excess (shared machines
//! were seen to freeze every process for seconds). The output shows both figures.

// A binary of its own, not a module of tests/it (tests/it/main.rs says why). Its helpers: those
// of tests/timing/ it needs, and the support of tests/it, of which it uses a part.
#[allow(dead_code)] // a part of it; tests/hoarding.rs uses the rest
#[path = "timing/stall.rs"]
mod stall;
#[allow(dead_code)] // a part of it
#[path = "it/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use stall::StallMonitor;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::Served;
use support::client::{Client, Conn};
use support::openbao::{Bao, Cluster};
use support::proxy::{Mode, Proxy};

/// The requirement: with the default settings, a request for an uncached key fails (502)
/// within this while Vault cannot answer.
const UNCACHED_BOUND: Duration = Duration::from_secs(2);

/// A generous bound for "recovers by itself" (measured: about a second, see the output).
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// A server, its clients and the Vault side

// A test server (admin API key, server certificate; [`Served`]) and what these tests ask of it.
crate::served_newtype!(Server);

impl Server {
    /// Starts `kes` with `rest` of the config (where `{dir}` stands for the server's directory).
    fn start(tag: &str, rest: &str) -> Server {
        Server(Served::start(tag, rest))
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

    /// CPU time (user + system) the server process has used, in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.kes.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // After the name: state is field 3, utime 14, stime 15.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

/// A `keystore:` block for Vault at `endpoints` (K/V v2 at `kv`, AppRole), all other Vault
/// settings at their defaults.
fn vault_keystore(endpoints: &[String], role: &(String, String)) -> String {
    let mut yaml = String::from("keystore:\n  vault:\n    endpoint:\n");
    for e in endpoints {
        yaml += &format!("      - {e}\n");
    }
    yaml + &format!(
        "    engine: kv\n    version: v2\n    approle:\n      id: {}\n      secret: {}\n",
        role.0, role.1
    )
}

/// A stored key value (§6.1) as the Go server writes it.
fn stored_value() -> String {
    let v: Value = serde_json::from_str(include_str!("vectors/vectors.json")).unwrap();
    v["stored"][0]["value"].as_str().unwrap().to_string()
}

/// Writes `n` keys `cold-0`… straight into Vault (K/V v2 at `kv`), so that `kes` has never
/// seen them: each is an uncached key until its first use.
fn write_cold_keys(bao: &Bao, n: usize) {
    let value = stored_value();
    for i in 0..n {
        let name = format!("cold-{i}");
        bao.ok(
            None,
            "PUT",
            &format!("/v1/kv/data/{name}"),
            Some(&json!({ "data": { name.clone(): value } })),
        );
    }
}

/// Creates key `hot` and returns a decrypt request body for it.
fn hot_key(srv: &Server) -> String {
    let c = srv.client();
    let r = c.post("/v1/key/create/hot", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let g = c
        .post("/v1/key/generate/hot", r#"{"context":"e30="}"#)
        .json();
    json!({"ciphertext": g["ciphertext"], "context": "e30="}).to_string()
}

// ---------------------------------------------------------------------------------------------
// Request streams

/// One request. A fault window holds the requests sent after the fault began and answered
/// before it ended.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When the request was sent, since the start of the test.
    at: Duration,
    took: Duration,
    /// 0: no reply (connection failed).
    status: u16,
}

/// A paced stream of requests on one keep-alive connection (reopened after an error).
struct Stream {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Stream {
    /// Sends the request `next(previous status)` returns every `every`.
    fn start(
        client: Client,
        t0: Instant,
        every: Duration,
        mut next: impl FnMut(Option<u16>) -> (String, String) + Send + 'static,
    ) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            let mut last = None;
            while !s.load(Ordering::SeqCst) {
                let (path, body) = next(last);
                let start = Instant::now();
                if conn.is_none() {
                    conn = client.try_connect().ok();
                }
                let status = match conn.as_mut().map(|c| c.request("POST", &path, Some(&body))) {
                    Some(Ok(reply)) => reply.status,
                    _ => {
                        conn = None;
                        0
                    }
                };
                let took = start.elapsed();
                out.lock().unwrap().push(Sample {
                    at: start - t0,
                    took,
                    status,
                });
                last = Some(status);
                std::thread::sleep(every.saturating_sub(took));
            }
        });
        Stream {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Decrypts with the cached key `hot` every 20 ms.
    fn hot(srv: &Server, t0: Instant, body: String) -> Stream {
        Stream::start(srv.client(), t0, Duration::from_millis(20), move |_| {
            ("/v1/key/decrypt/hot".into(), body.clone())
        })
    }

    /// Generates with `cold-<i>` every 100 ms, moving to the next (uncached) key after each
    /// success: every request needs a Vault read.
    fn cold(srv: &Server, t0: Instant) -> Stream {
        let mut i = 0;
        Stream::start(srv.client(), t0, Duration::from_millis(100), move |last| {
            if last == Some(200) {
                i += 1;
            }
            (format!("/v1/key/generate/cold-{i}"), String::new())
        })
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until a request sent at or after `after` succeeds; returns the time from `after`
    /// to the end of that request.
    fn recovered(&self, after: Duration, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self
                .samples()
                .iter()
                .find(|s| s.at >= after && s.status == 200)
            {
                return Some((s.at + s.took).saturating_sub(after));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stop(&mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.samples()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// "n requests: 198×200 2×502; latency median 3ms, max 1.52s".
fn summary(samples: &[Sample]) -> String {
    if samples.is_empty() {
        return "no requests".into();
    }
    let mut by_status = std::collections::BTreeMap::new();
    for s in samples {
        *by_status.entry(s.status).or_insert(0) += 1;
    }
    let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    took.sort();
    format!(
        "{} requests: {}; latency median {:?}, max {:?}",
        samples.len(),
        by_status
            .iter()
            .map(|(status, n)| format!("{n}×{status}"))
            .collect::<Vec<_>>()
            .join(" "),
        took[took.len() / 2],
        took[took.len() - 1]
    )
}

fn failures(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.status != 200).count()
}

/// Every request, one per line, for failure messages.
fn listing(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| format!("  at {:?}: {} in {:?}", s.at, s.status, s.took))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that every uncached request of a fault window failed with 502 within the bound.
/// A request that did not, during which the machine was frozen for 500 ms or more, proves
/// nothing either way (after a freeze, a late answer and the timer race): it is reported, not
/// failed. At least one request of the window must meet the bound.
#[track_caller]
fn assert_fast_502(what: &str, samples: &[Sample], stalls: &StallMonitor) {
    let ok = |s: &Sample| s.status == 502 && s.took < UNCACHED_BOUND;
    assert!(
        samples.iter().any(ok),
        "{what}: no uncached key failed with 502 within {UNCACHED_BOUND:?}:\n{}",
        listing(samples)
    );
    let mut excused = Vec::new();
    for s in samples.iter().filter(|s| !ok(s)) {
        let frozen = stalls.during(s.at, s.at + s.took);
        assert!(
            frozen >= Duration::from_millis(500),
            "{what}: every uncached key must fail with 502 within {UNCACHED_BOUND:?}:\n{}",
            listing(samples)
        );
        excused.push((*s, frozen));
    }
    if !excused.is_empty() {
        println!("  ({what}: not counted, the machine was frozen during them: {excused:?})");
    }
}

fn since(t0: Instant) -> Duration {
    t0.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Vault faults

#[test]
fn vault_sealed_then_unsealed() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    write_cold_keys(&bao, 120);
    let srv = Server::start(
        "sealed",
        &vault_keystore(std::slice::from_ref(&bao.addr), &role),
    );
    let body = hot_key(&srv);
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut hot = Stream::hot(&srv, t0, body);
    let mut cold = Stream::cold(&srv, t0);

    std::thread::sleep(Duration::from_millis(1500));
    bao.seal();
    let sealed = since(t0);
    std::thread::sleep(Duration::from_secs(4));
    let status = srv.client().get("/v1/status").json();
    bao.unseal();
    let unsealed = since(t0);
    let recovery = cold.recovered(unsealed, RECOVERY_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let (hot, cold) = (hot.stop(), cold.stop());

    let during: Vec<Sample> = cold
        .iter()
        .filter(|s| s.at >= sealed && s.at + s.took <= unsealed)
        .copied()
        .collect();
    println!("vault sealed for {:?}:", unsealed - sealed);
    println!("  machine stalls seen by the test: {}", stalls.summary());
    println!("  cached key, whole run: {}", summary(&hot));
    println!("  uncached keys while sealed: {}", summary(&during));
    println!("  /v1/status while sealed: {status}");
    println!("  uncached keys served again {recovery:?} after the unseal");
    assert_eq!(failures(&hot), 0, "cached key failed: {}", summary(&hot));
    assert_fast_502("sealed", &during, &stalls);
    assert_eq!(status["keystore_unreachable"], true);
    assert!(recovery.is_some(), "no recovery after the unseal");
}

#[test]
fn vault_killed_then_restarted() {
    let mut bao = Bao::raft();
    let role = bao.seed_setup(None, "kv", 2, true);
    write_cold_keys(&bao, 120);
    // A short `any` makes the cached key expire during the outage: `offline` keeps it serving.
    let srv = Server::start(
        "killed",
        &format!(
            "cache:\n  expiry:\n    any: 2s\n    offline: 1m\n{}",
            vault_keystore(std::slice::from_ref(&bao.addr), &role)
        ),
    );
    let body = hot_key(&srv);
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut hot = Stream::hot(&srv, t0, body);
    let mut cold = Stream::cold(&srv, t0);

    std::thread::sleep(Duration::from_millis(2500));
    bao.kill();
    let killed = since(t0);
    std::thread::sleep(Duration::from_secs(4));
    let restart = Instant::now();
    bao.restart(); // starts, and unseals once it answers
    let back = since(t0);
    let restart_took = restart.elapsed();
    let recovery = cold.recovered(back, RECOVERY_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let (hot, cold) = (hot.stop(), cold.stop());
    let stale = srv.metric("kes_cache_offline_hits_total");

    let down: Vec<Sample> = cold
        .iter()
        .filter(|s| s.at >= killed && s.at + s.took <= back)
        .copied()
        .collect();
    let dead: Vec<Sample> = down
        .iter()
        .filter(|s| s.at < killed + Duration::from_secs(4))
        .copied()
        .collect();
    println!("vault killed for 4s, then restarted and unsealed (took {restart_took:?}):");
    println!("  machine stalls seen by the test: {}", stalls.summary());
    println!(
        "  cached key (any 2s, offline 1m), whole run: {}; served from the cache past its expiry: {stale} times",
        summary(&hot)
    );
    println!("  uncached keys while killed: {}", summary(&dead));
    println!(
        "  uncached keys while restarting: {}",
        summary(&down[dead.len()..])
    );
    println!("  uncached keys served again {recovery:?} after the unseal");
    assert_eq!(failures(&hot), 0, "cached key failed: {}", summary(&hot));
    assert!(stale > 0.0, "the cached key never outlived its expiry");
    assert_fast_502("killed", &down, &stalls);
    assert!(recovery.is_some(), "no recovery after the restart");
}

#[test]
fn vault_slow_or_busy() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    write_cold_keys(&bao, 150);
    let proxy = Proxy::start(format!("127.0.0.1:{}", bao.port).parse().unwrap());
    let srv = Server::start("slow", &vault_keystore(&[proxy.url("http")], &role));
    let body = hot_key(&srv);
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut hot = Stream::hot(&srv, t0, body);
    let mut cold = Stream::cold(&srv, t0);

    std::thread::sleep(Duration::from_millis(1500));
    // Busy: every answer 300 ms late. Slow, but within timeout.read: nothing may fail.
    proxy.set(Mode::Delay(Duration::from_millis(300)));
    let busy = since(t0);
    std::thread::sleep(Duration::from_secs(3));
    // Slow: every answer 3 s late, beyond timeout.read.
    proxy.set(Mode::Delay(Duration::from_secs(3)));
    let slow = since(t0);
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    let status = srv.client().get("/v1/status");
    let status_took = start.elapsed();
    std::thread::sleep(Duration::from_secs(3).saturating_sub(status_took));
    proxy.set(Mode::Pass);
    let fast = since(t0);
    let recovery = cold.recovered(fast, RECOVERY_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let (hot, cold_all) = (hot.stop(), cold.stop());

    let window = |from: Duration, to: Duration| -> Vec<Sample> {
        cold_all
            .iter()
            .filter(|s| s.at >= from && s.at + s.took <= to)
            .copied()
            .collect()
    };
    let busy_samples = window(busy, slow);
    let slow_samples = window(slow, fast);
    println!("vault answering 300 ms late for 3s, then 3 s late for 6s:");
    println!("  machine stalls seen by the test: {}", stalls.summary());
    println!("  cached key, whole run: {}", summary(&hot));
    println!("  uncached keys, 300 ms late: {}", summary(&busy_samples));
    println!("  uncached keys, 3 s late: {}", summary(&slow_samples));
    println!(
        "  /v1/status while 3 s late: {} {} in {status_took:?}",
        status.status,
        status.text()
    );
    println!("  uncached keys served again {recovery:?} after the delay ended");
    assert_eq!(failures(&hot), 0, "cached key failed: {}", summary(&hot));
    // A read 300 ms late must not fail, unless the machine froze for long enough to push it
    // past timeout.read (1.5 s).
    for s in &busy_samples {
        let frozen = stalls.during(s.at, s.at + s.took);
        assert!(
            s.status == 200 || frozen >= Duration::from_millis(1000),
            "a busy Vault (300 ms) must not fail reads (machine frozen {frozen:?} during {s:?}):\n{}",
            listing(&busy_samples)
        );
    }
    assert_fast_502("slow", &slow_samples, &stalls);
    assert_eq!(
        status.json()["keystore_unreachable"],
        true,
        "{}",
        status.text()
    );
    assert!(recovery.is_some(), "no recovery after the delay ended");
}

#[test]
fn concurrent_misses_make_one_vault_read() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    write_cold_keys(&bao, 1);
    let proxy = Proxy::start(format!("127.0.0.1:{}", bao.port).parse().unwrap());
    let srv = Server::start("coalesce", &vault_keystore(&[proxy.url("http")], &role));
    // Answers 500 ms late, so that all requests arrive while the first read is under way.
    proxy.set(Mode::Delay(Duration::from_millis(500)));
    let start = Instant::now();
    let threads: Vec<JoinHandle<u16>> = (0..20)
        .map(|_| {
            let c = srv.client();
            std::thread::spawn(move || c.post("/v1/key/generate/cold-0", "").status)
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = start.elapsed();
    let reads = proxy.sent_count("GET /v1/kv/data/cold-0");
    println!(
        "20 concurrent requests for one uncached key (Vault 500 ms late): {} × 200 in {took:?}, {reads} Vault read(s)",
        statuses.iter().filter(|s| **s == 200).count()
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(reads, 1);
}

#[test]
fn vault_connections_refused_or_swallowed() {
    let bao = Bao::dev();
    let role = bao.seed_setup(None, "kv", 2, true);
    write_cold_keys(&bao, 150);
    let proxy = Proxy::start(format!("127.0.0.1:{}", bao.port).parse().unwrap());
    let srv = Server::start("dropped", &vault_keystore(&[proxy.url("http")], &role));
    let body = hot_key(&srv);
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut hot = Stream::hot(&srv, t0, body);
    let mut cold = Stream::cold(&srv, t0);

    std::thread::sleep(Duration::from_millis(1500));
    proxy.set(Mode::Refuse); // open connections are cut, new ones closed at once
    let refused = since(t0);
    std::thread::sleep(Duration::from_secs(3));
    proxy.set(Mode::Pass);
    let back1 = since(t0);
    let recovery1 = cold.recovered(back1, RECOVERY_BOUND);
    std::thread::sleep(Duration::from_secs(1));
    proxy.set(Mode::Swallow); // connections accepted, nothing ever answered
    let swallowed = since(t0);
    std::thread::sleep(Duration::from_secs(5));
    proxy.set(Mode::Pass);
    let back2 = since(t0);
    let recovery2 = cold.recovered(back2, RECOVERY_BOUND);
    std::thread::sleep(Duration::from_millis(500));
    let (hot, cold) = (hot.stop(), cold.stop());

    let window = |from: Duration, to: Duration| -> Vec<Sample> {
        cold.iter()
            .filter(|s| s.at >= from && s.at + s.took <= to)
            .copied()
            .collect()
    };
    let (r, s) = (window(refused, back1), window(swallowed, back2));
    println!("connections to vault refused for 3s, later swallowed (never answered) for 5s:");
    println!("  machine stalls seen by the test: {}", stalls.summary());
    println!("  cached key, whole run: {}", summary(&hot));
    println!("  uncached keys, refused: {}", summary(&r));
    println!("  uncached keys served again {recovery1:?} after connections were accepted again");
    println!("  uncached keys, swallowed: {}", summary(&s));
    println!("  uncached keys served again {recovery2:?} after answers flowed again");
    assert_eq!(failures(&hot), 0, "cached key failed: {}", summary(&hot));
    assert_fast_502("refused", &r, &stalls);
    assert_fast_502("swallowed", &s, &stalls);
    assert!(recovery1.is_some() && recovery2.is_some(), "no recovery");
}

/// A setup call on the cluster's active node, retried while the young cluster is electing a
/// leader (a loaded machine can make it lose one: "leadership lost while committing log").
fn cluster_ok(cluster: &Cluster, method: &str, path: &str, body: Option<&Value>) -> Value {
    let start = Instant::now();
    loop {
        let mut last = None;
        if let Some(i) = cluster.leader() {
            let (status, reply) = cluster.nodes[i].call(None, method, path, body);
            if (200..300).contains(&status) {
                return reply;
            }
            if reply.to_string().contains("path is already in use") {
                return Value::Null; // an earlier try of this step got through
            }
            last = Some((status, reply));
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{method} {path}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The setup procedure (K/V v2 at `kv`, AppRole) and the cold keys, on a cluster.
fn cluster_setup(cluster: &Cluster, cold: usize) -> (String, String) {
    cluster_ok(
        cluster,
        "POST",
        "/v1/sys/mounts/kv",
        Some(&json!({"type": "kv", "options": {"version": "2"}})),
    );
    cluster_ok(
        cluster,
        "POST",
        "/v1/sys/auth/approle",
        Some(&json!({"type": "approle"})),
    );
    cluster_ok(
        cluster,
        "PUT",
        "/v1/sys/policies/acl/kes",
        Some(&json!({"policy": Bao::seed_policy("kv", 2, true)})),
    );
    cluster_ok(
        cluster,
        "POST",
        "/v1/auth/approle/role/kes",
        Some(
            &json!({"token_num_uses": 0, "secret_id_num_uses": 0, "period": "5m", "token_policies": ["kes"]}),
        ),
    );
    let id =
        cluster_ok(cluster, "GET", "/v1/auth/approle/role/kes/role-id", None)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
    let secret = cluster_ok(
        cluster,
        "POST",
        "/v1/auth/approle/role/kes/secret-id",
        Some(&json!({})),
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let value = stored_value();
    for i in 0..cold {
        let name = format!("cold-{i}");
        cluster_ok(
            cluster,
            "PUT",
            &format!("/v1/kv/data/{name}"),
            Some(&json!({ "data": { name.clone(): value } })),
        );
    }
    (id, secret)
}

#[test]
fn vault_leader_killed() {
    let started = Instant::now();
    let mut cluster = Cluster::raft3();
    let setup = started.elapsed();
    let role = cluster_setup(&cluster, 150);
    let srv = Server::start("leader", &vault_keystore(&cluster.endpoints(), &role));
    let body = hot_key(&srv);
    let t0 = Instant::now();
    let stalls = StallMonitor::start_at(t0);
    let mut hot = Stream::hot(&srv, t0, body);
    let mut cold = Stream::cold(&srv, t0);
    let mut n = 0;
    let mut creates = Stream::start(srv.client(), t0, Duration::from_millis(250), move |last| {
        if last.is_some() {
            n += 1;
        }
        (format!("/v1/key/create/new-{n}"), String::new())
    });

    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader().expect("a leader");
    cluster.nodes[leader].kill();
    let killed = since(t0);
    let elected = cluster.wait_leader(Duration::from_secs(30));
    let election = since(t0) - killed;
    std::thread::sleep(Duration::from_secs(3));
    let (hot, cold, creates) = (hot.stop(), cold.stop(), creates.stop());

    let after =
        |s: &[Sample]| -> Vec<Sample> { s.iter().filter(|s| s.at >= killed).copied().collect() };
    let (cold_after, creates_after) = (after(&cold), after(&creates));
    println!(
        "3-node raft cluster (ready in {setup:?}); leader killed, new leader after {election:?} ({elected:?}):"
    );
    println!("  machine stalls seen by the test: {}", stalls.summary());
    println!("  cached key, whole run: {}", summary(&hot));
    println!("  uncached keys after the kill: {}", summary(&cold_after));
    println!("  creates after the kill: {}", summary(&creates_after));
    assert!(elected.is_some(), "no new leader");
    assert_eq!(failures(&hot), 0, "cached key failed: {}", summary(&hot));
    for s in &cold_after {
        let frozen = stalls.during(s.at, s.at + s.took);
        assert!(
            s.status == 200 || (s.status == 502 && s.took.saturating_sub(frozen) < UNCACHED_BOUND),
            "uncached key: {s:?} (machine frozen for {frozen:?})"
        );
    }
    for s in &creates_after {
        assert!(matches!(s.status, 200 | 502), "create: {s:?}");
    }
    // Every create that succeeded made a usable key: nothing was lost in the election.
    let c = srv.client();
    let mut made = 0;
    for (i, s) in creates.iter().enumerate() {
        if s.status == 200 {
            let r = c.post(&format!("/v1/key/generate/new-{i}"), "");
            assert_eq!(r.status, 200, "new-{i}: {}", r.text());
            made += 1;
        }
    }
    println!("  all {made} keys created during the run are usable");
}

// ---------------------------------------------------------------------------------------------
// Overload, slow clients, garbage

/// A server with a filesystem keystore (no Vault) and key `k`.
fn fs_server(tag: &str, extra: &str) -> Server {
    let srv = Server::start(
        tag,
        &format!("keystore:\n  fs:\n    path: {{dir}}/keys\n{extra}"),
    );
    assert_eq!(srv.client().post("/v1/key/create/k", "").status, 200);
    srv
}

#[test]
fn stalled_connections_do_not_block_a_normal_client() {
    let srv = fs_server("stalled", "");
    // 300 connections that never send a byte (no TLS handshake), held open.
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(srv.kes.addr).unwrap())
        .collect();
    let open_took = opened.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let c = srv.client();
    let mut took = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let r = c.post("/v1/key/generate/k", ""); // a new TLS connection each
        took.push(start.elapsed());
        assert_eq!(r.status, 200);
    }
    let proc_status =
        std::fs::read_to_string(format!("/proc/{}/status", srv.kes.child.id())).unwrap();
    let field = |name: &str| {
        proc_status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    println!(
        "server with 300 stalled connections: Threads {}, VmRSS {}, VmLck {}",
        field("Threads:"),
        field("VmRSS:"),
        field("VmLck:")
    );
    took.sort();
    // The stalled connections are closed once the handshake timeout (5 s) passes.
    let probe = &mut stalled[0];
    probe
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = matches!(probe.read(&mut buf), Ok(0) | Err(_));
    let cut_after = opened.elapsed();
    println!(
        "300 stalled connections (opened in {open_took:?}): a normal client's 20 requests on new connections took median {:?}, max {:?}; the stalled ones were closed after {cut_after:?}",
        took[10], took[19]
    );
    assert!(closed);
    assert!(cut_after < Duration::from_secs(20));
}

/// Opens `/v1/log/audit` on a new connection and reads the reply head: a connection that is
/// busy (streaming), never idle.
fn subscribe(c: &Client) -> std::io::Result<Conn> {
    let mut conn = c.try_connect()?;
    conn.send_raw(b"GET /v1/log/audit HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(conn)
}

#[test]
fn connection_limit_driven_past_its_size() {
    let srv = fs_server("limit", "server:\n  max_connections: 16\n");
    let c = srv.client();
    // Idle keep-alive connections fill the limit; more clients take their places (the longest
    // idle first) and are served.
    let mut idle: Vec<Conn> = (0..16)
        .map(|_| {
            let mut conn = c.connect();
            assert_eq!(
                conn.request("POST", "/v1/key/generate/k", Some(""))
                    .unwrap()
                    .status,
                200
            );
            conn
        })
        .collect();
    let start = Instant::now();
    let served_over_idle = (0..8)
        .filter(|_| c.post("/v1/key/generate/k", "").status == 200)
        .count();
    let over_idle_took = start.elapsed();
    // Idle connections made room, the longest idle first (each new client closes its
    // connection after its request, so fewer than 8 may have been needed).
    let evicted = idle
        .iter_mut()
        .take(8)
        .map(|conn| conn.request("GET", "/version", None).is_err())
        .filter(|closed| *closed)
        .count();
    idle.clear();
    std::thread::sleep(Duration::from_millis(300));

    // Busy connections (16 log subscribers) fill the limit: one more is refused at once,
    // before TLS.
    let mut held: Vec<Conn> = (0..16).map(|_| subscribe(&c).unwrap()).collect();
    let start = Instant::now();
    let refused = c.try_connect().and_then(|mut conn| conn.handshake());
    let refusal = start.elapsed();
    assert!(refused.is_err(), "a 17th connection must be refused");
    // A burst of 48 clients at once: all refused quickly, none hangs.
    let burst_start = Instant::now();
    let burst: Vec<JoinHandle<(bool, Duration)>> = (0..48)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let ok = c
                    .try_connect()
                    .and_then(|mut conn| conn.request("POST", "/v1/key/generate/k", Some("")))
                    .is_ok_and(|r| r.status == 200);
                (ok, start.elapsed())
            })
        })
        .collect();
    let results: Vec<(bool, Duration)> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    let burst_took = burst_start.elapsed();
    let served = results.iter().filter(|r| r.0).count();
    let slowest = results.iter().map(|r| r.1).max().unwrap();
    // What a refusal costs the server (while the limit is reached), compared with a TLS
    // handshake (what answering 503 would cost at least).
    let ticks = srv.cpu_ticks();
    for _ in 0..300 {
        assert!(
            c.try_connect()
                .and_then(|mut conn| conn.handshake())
                .is_err()
        );
    }
    let refusal_ticks = srv.cpu_ticks() - ticks;
    // Subscribers that go away free their places at once: new clients are served again.
    held.truncate(8);
    std::thread::sleep(Duration::from_millis(300));
    let again: usize = (0..8)
        .filter(|_| c.post("/v1/key/generate/k", "").status == 200)
        .count();
    held.clear();
    std::thread::sleep(Duration::from_millis(300));
    let ticks = srv.cpu_ticks();
    for _ in 0..300 {
        let mut conn = c.connect();
        conn.handshake().unwrap();
        assert_eq!(conn.request("GET", "/version", None).unwrap().status, 200);
    }
    let handshake_ticks = srv.cpu_ticks() - ticks;
    let rejected = srv.metric("kes_server_connections_rejected_total");
    let evictions = srv.metric("kes_server_connections_evicted_total");
    println!(
        "max_connections 16 held by idle connections: 8 more clients served in {over_idle_took:?} ({evicted} idle connections closed to make room)"
    );
    println!(
        "max_connections 16 held by 16 log subscribers: a 17th connection was refused in {refusal:?}; a burst of 48 took {burst_took:?}: {served} served, slowest answer {slowest:?}; after 8 subscribers left, {again}/8 new clients served"
    );
    println!(
        "server CPU for 300 refused connections: {} ms; for 300 connections with a TLS handshake and one request: {} ms; counted: {rejected} rejected, {evictions} evicted",
        refusal_ticks * 10,
        handshake_ticks * 10
    );
    assert_eq!(served_over_idle, 8, "idle connections must make room");
    assert!(evicted >= 1, "idle connections must make room");
    assert_eq!(
        evictions, evicted as f64,
        "the longest-idle connections made room"
    );
    assert_eq!(served, 0, "nothing beyond the limit may be served");
    assert!(
        slowest < Duration::from_secs(5),
        "a refused client waited {slowest:?}"
    );
    assert_eq!(again, 8);
    assert!(rejected >= 349.0);
    assert!(
        srv.kes
            .wait_for_output("overload: refused", Duration::from_secs(2)),
        "refusals must be logged:\n{}",
        srv.kes.output()
    );
}

#[test]
fn big_bodies_are_refused() {
    let srv = fs_server("bodies", "");
    let c = srv.client();
    let big = format!("{{\"plaintext\":\"{}\"}}", "A".repeat(3 * 1024 * 1024));
    let start = Instant::now();
    let r = c.post("/v1/key/encrypt/k", &big);
    let declared = start.elapsed();
    r.assert_error(413, "request body too large");
    let mut conn = c.connect();
    let chunks: Vec<&str> = big
        .as_bytes()
        .chunks(64 * 1024)
        .map(|b| std::str::from_utf8(b).unwrap())
        .collect();
    let start = Instant::now();
    let r = conn
        .request_chunked("POST", "/v1/key/encrypt/k", &chunks)
        .unwrap();
    let chunked = start.elapsed();
    assert_eq!(r.status, 413);
    assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
    println!(
        "3 MB bodies: with Content-Length refused (413) in {declared:?}, chunked refused (413) in {chunked:?}; the server serves on"
    );
}

#[test]
fn random_bytes_on_the_port() {
    let srv = fs_server("garbage", "");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // Before TLS: random bytes instead of a ClientHello.
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let mut tcp = TcpStream::connect(srv.kes.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = Instant::now();
        let _ = tcp.write_all(&random(64 + i * 97));
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        slowest = slowest.max(start.elapsed());
    }
    // After TLS: random bytes instead of HTTP.
    let c = srv.client();
    let mut http_replies = std::collections::BTreeMap::new();
    for i in 0..20 {
        let mut conn = c.connect();
        conn.handshake().unwrap();
        let mut bytes = random(200 + i * 31);
        bytes.extend_from_slice(b"\r\n\r\n");
        let _ = conn.send_raw(&bytes);
        let status = conn.read_reply().map(|r| r.status).unwrap_or(0);
        *http_replies.entry(status).or_insert(0) += 1;
        assert!(
            conn.is_closed(),
            "a connection that sent garbage must be closed"
        );
    }
    assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
    println!(
        "random bytes: 50 connections with garbage instead of TLS were closed within {slowest:?} (slowest); 20 TLS connections with garbage instead of HTTP got {http_replies:?} (status: count; 0 = closed without reply) and were closed; the server serves on"
    );
    assert!(slowest < Duration::from_secs(6), "{slowest:?}");
    assert!(
        http_replies.keys().all(|s| *s == 400 || *s == 0),
        "{http_replies:?}"
    );
}

#[test]
fn slow_clients_are_cut_off() {
    let srv = fs_server("slowclients", ""); // default header (5 s) and body (10 s) timeouts
    let c = srv.client();
    let trickle = |request: &'static [u8]| {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut conn = c.connect();
            conn.handshake().unwrap();
            let start = Instant::now();
            for b in request {
                if conn.send_raw(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let closed = conn.is_closed();
            (start.elapsed(), closed)
        })
    };
    let header =
        trickle(b"POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    let body = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut conn = c.connect();
            conn.send_raw(
                b"POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n",
            )
            .unwrap();
            let start = Instant::now();
            for _ in 0..60 {
                if conn.send_raw(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            (start.elapsed(), conn.is_closed())
        })
    };
    // Meanwhile a normal client is served.
    let start = Instant::now();
    for _ in 0..10 {
        assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let normal = start.elapsed();
    let (header_cut, header_closed) = header.join().unwrap();
    let (body_cut, body_closed) = body.join().unwrap();
    println!(
        "slow clients: headers at 2 bytes/s cut off after {header_cut:?}, a body at 2 bytes/s after {body_cut:?}; meanwhile 10 normal requests (100 ms apart) took {normal:?}"
    );
    assert!(header_closed && body_closed);
    assert!(header_cut < Duration::from_secs(15) && body_cut < Duration::from_secs(20));
}

#[test]
fn server_process_is_hardened() {
    let srv = fs_server("hardened", "");
    let pid = srv.kes.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let output = srv.kes.output();
    let mlock = output
        .lines()
        .find(|l| l.starts_with("MLock"))
        .unwrap()
        .to_string();
    println!("{core}\nbanner: {mlock}\nVmLck: {locked_kb} kB");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "core dumps must be off: {core}");
    if mlock.contains("enabled") {
        assert!(locked_kb > 0, "banner says locked, but VmLck is 0");
    } else if mlock.contains("disabled (RLIMIT_MEMLOCK") {
        // Not root and no CAP_IPC_LOCK: locking is skipped (it would make allocations fail
        // later), and the log says what to do.
        assert!(output.contains("memory is not locked"), "{output}");
        assert_eq!(locked_kb, 0);
    } else {
        assert!(mlock.contains("failed ("), "{mlock}");
        assert!(
            output.contains("cannot lock memory (mlockall)"),
            "a failed mlockall must be logged with what to do:\n{output}"
        );
        assert_eq!(locked_kb, 0);
    }
}
