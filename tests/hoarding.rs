//! Hoarding: connections cost little while idle and cannot be hoarded.
//!
//! The requirement: "1 000 idle TCP connections, 1 000 idle TLS connections and 1 000 abandoned
//! log streams from one address never keep another client from being served in under 100 ms;
//! the server recovers by itself." Each test holds a thousand connections of one kind from
//! 127.0.0.1 against the real `kes` binary, and meanwhile sends probes: a new client (a new TCP
//! connection, a full mutual-TLS handshake and `POST /v1/key/generate/k`) from another address
//! (127.0.0.2) and from the hoarding address itself. Then it checks that the server ends the
//! hoard by itself at the limit the configuration sets (`handshake_timeout`, `header_timeout`,
//! `idle_timeout`, or at once for a log subscriber that left) and that the metrics come back to
//! where they were. Metrics are scraped from a third address (127.0.0.3), so that scraping never
//! counts against the hoarder's per-address limit.
//!
//! Figures are printed (`cargo test --release --test hoarding -- --nocapture`). Time bounds
//! hold on the time the machine gave the test: a shared 2-core machine was seen to freeze every
//! process for a fraction of a second, or to leave the server waiting for a CPU while other
//! processes ran. A probe over its bound passes only if, for the excess, this process was
//! frozen ([`StallMonitor`]) or the probe's thread and the server's threads waited that long
//! for a CPU (their run delay in /proc/<pid>/task/<tid>/schedstat, [`RunDelays`]); and the
//! median of every series must be under the bound whatever the machine did. The raw figures
//! are printed.
//!
//! The tests run one at a time (a lock), so that one test's thousand handshakes do not land in
//! another test's probes.

// A binary of its own, not a module of tests/it (tests/it/main.rs says why). Its helpers: those
// of tests/timing/ it needs, and the support of tests/it, of which it uses a part.
#[path = "timing/flood.rs"]
mod flood;
#[path = "timing/stall.rs"]
mod stall;
#[allow(dead_code)] // a part of it
#[path = "it/support/mod.rs"]
mod support;

use flood::{Closings, ProcCost, RunDelays, connect_from, spread, wait_for};
use stall::StallMonitor;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::client::{Client, Conn};
use support::pki;
use support::prom::{self, Exposition};
use support::{Served, TempDir};

use support::ADMIN_API_KEY;

/// How many connections a hoarder holds.
const HOARD: usize = 1000;
/// The requirement: another client is served within this while the hoard is held.
const BOUND: Duration = Duration::from_millis(100);
/// Probes per client address and situation.
const PROBES: usize = 20;

/// The hoarder.
const HOARDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another client.
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where metrics are scraped from.
const SCRAPER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The event loops check deadlines every 200 ms; a connection may also wait that long to be
/// seen closing. A deadline is met if the connection is closed within this after it.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs tests one at a time; raises this process's open-file limit for the hoard.
fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limit = kes::sys::raise_fd_limit().expect("open-file limit");
    assert!(
        limit >= 4 * HOARD as u64,
        "the open-file limit ({limit}) is too low for {HOARD} connections"
    );
    guard
}

// ---------------------------------------------------------------------------------------------
// The server

// A test server (admin API key, server certificate; [`Served`]) and what these tests ask of it.
crate::served_newtype!(Server);

impl Server {
    /// Starts `kes` with an fs keystore, the admin API key, and `server` as the `server:`
    /// section (lines indented by two spaces); creates key `k` and puts it in the cache.
    fn start(tag: &str, server: &str) -> Server {
        let server = if server.is_empty() {
            String::new()
        } else {
            format!("server:\n{server}")
        };
        let srv = Server(Served::start(
            tag,
            &format!("keystore:\n  fs:\n    path: {{dir}}/keys\n{server}"),
        ));
        let c = srv.client();
        assert_eq!(c.post("/v1/key/create/k", "").status, 200);
        for _ in 0..10 {
            assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
        }
        srv.settle();
        srv
    }

    fn pid(&self) -> u32 {
        self.kes.child.id()
    }

    /// A scrape of /v1/metrics over a new connection from [`SCRAPER`].
    fn metrics(&self) -> Exposition {
        let tcp = connect_from(SCRAPER, self.kes.addr).expect("scrape: connect");
        let mut conn = self.client().connect_over(tcp).unwrap();
        let r = conn
            .request("GET", "/v1/metrics?all", None)
            .expect("scrape");
        assert_eq!(r.status, 200, "{}", r.text());
        prom::parse(&r.text()).unwrap_or_else(|e| panic!("invalid exposition: {e}"))
    }

    /// An unlabelled metric.
    fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics(), name)
    }

    /// TCP connections the server process holds (its listening socket not counted): read from
    /// /proc (its socket descriptors, matched with the established sockets of /proc/net/tcp),
    /// so counting takes no connection and no place at a limit.
    fn tcp_connections(&self) -> usize {
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .filter_map(|t| {
                            let t = t.to_string_lossy();
                            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| {
                text.lines()
                    .skip(1)
                    .filter_map(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        // Column 3 is the state (0A: listening), column 9 the inode.
                        (cols.get(3)? != &"0A").then(|| cols.get(9).map(|i| i.to_string()))?
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|inode| inodes.contains(inode))
            .count()
    }

    /// Connections open besides the scrape that asks.
    fn open(&self) -> usize {
        self.metric("kes_server_connections_open") as usize - 1
    }

    /// Waits until no connection but the scrape's is open (the baseline).
    #[track_caller]
    fn settle(&self) {
        let mut open = usize::MAX;
        assert!(
            wait_for(Duration::from_secs(5), || {
                open = self.open();
                open == 0
            })
            .is_some(),
            "{open} connections stay open on an idle server"
        );
    }
}

fn metric(m: &Exposition, name: &str) -> f64 {
    m.get(name)
        .unwrap_or_else(|| panic!("no metric family {name}"))
        .value()
}

// ---------------------------------------------------------------------------------------------
// Probes: new clients, served or not within the bound

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    took: Duration,
    /// How long the probe waited for a CPU: its own thread's run delay plus the longest run
    /// delay of a server thread meanwhile.
    waited: Duration,
}

/// One new client from `from`: TCP connect, TLS handshake, `POST /v1/key/generate/k`, to the
/// server whose process is `pid`.
fn probe(c: &Client, pid: u32, from: Ipv4Addr) -> (Sample, Conn) {
    let (server, own) = (RunDelays::of(pid), RunDelays::this_thread());
    let start = Instant::now();
    let tcp = connect_from(from, c.addr).unwrap_or_else(|e| panic!("{from}: connect: {e}"));
    let mut conn = c.connect_over(tcp).unwrap();
    let r = conn
        .request("POST", "/v1/key/generate/k", Some(""))
        .unwrap_or_else(|e| panic!("a new client from {from} was not served: {e}"));
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let waited = own.longest_wait_until(&RunDelays::this_thread())
        + server.longest_wait_until(&RunDelays::of(pid));
    (
        Sample {
            start,
            took,
            waited,
        },
        conn,
    )
}

/// [`PROBES`] new clients from `from`, one after another, each closed after its request.
fn probes(srv: &Server, from: Ipv4Addr) -> Vec<Sample> {
    let c = srv.client();
    (0..PROBES)
        .map(|_| {
            let (sample, conn) = probe(&c, srv.pid(), from);
            drop(conn);
            std::thread::sleep(Duration::from_millis(5));
            sample
        })
        .collect()
}

/// Asserts that every probe was served within [`BOUND`] of the time the machine gave it: a
/// probe over the bound passes only if, for the excess, this process was frozen
/// ([`StallMonitor`]) or the probe waited for a CPU (run delays). Returns the figures.
#[track_caller]
fn assert_served(what: &str, samples: &[Sample], stalls: &StallMonitor) -> String {
    let took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    let mut excused = Vec::new();
    for s in samples.iter().filter(|s| s.took >= BOUND) {
        let frozen = stalls.between(s.start, s.start + s.took);
        let lost = frozen.max(s.waited);
        assert!(
            s.took.saturating_sub(lost) < BOUND,
            "{what}: a new client waited {:?} (the machine was frozen {frozen:?} of it, the probe waited {:?} for a CPU); all: {took:?}",
            s.took,
            s.waited
        );
        excused.push(format!("{:?} (no CPU for {lost:?})", s.took));
    }
    // Whatever the machine does, a server that serves at once does so most of the time.
    let mut sorted = took.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < BOUND,
        "{what}: half the new clients waited {median:?} or more; all: {took:?}"
    );
    let mut out = format!("{what}: {} served, {}", samples.len(), spread(&took));
    if !excused.is_empty() {
        out += &format!("; over {BOUND:?} while the machine was busy elsewhere: {excused:?}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Hoards

/// Runs `open(i)` for `i` in `0..n` on a few threads at once; results in the order of `i`.
fn open_many<T: Send>(n: usize, open: impl Fn(usize) -> T + Sync) -> Vec<T> {
    const THREADS: usize = 4;
    let open = &open;
    let mut out: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(THREADS)
                        .map(|i| (i, open(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// `n` TCP connections from `from` that never send a byte, opened one after another (so that
/// the first is the longest idle), each with the time it was opened.
fn idle_tcp(srv: &Server, from: Ipv4Addr, n: usize) -> Vec<(TcpStream, Instant)> {
    (0..n)
        .map(|_| {
            let tcp = connect_from(from, srv.kes.addr).expect("connect");
            (tcp, Instant::now())
        })
        .collect()
}

/// A TLS connection whose handshake is done; the TLS state is dropped, the TCP connection
/// kept, with the time the handshake was done.
fn handshaken(c: &Client, from: Ipv4Addr) -> (TcpStream, Instant) {
    let tcp = connect_from(from, c.addr).expect("connect");
    let mut conn = c.connect_over(tcp).unwrap();
    conn.handshake().expect("handshake");
    while conn.stream.conn.wants_write() {
        conn.stream
            .conn
            .write_tls(&mut conn.stream.sock)
            .expect("handshake");
    }
    (conn.stream.sock, Instant::now())
}

/// A keep-alive connection that made one request; the TCP connection, with the time its reply
/// arrived.
fn kept_alive(c: &Client, from: Ipv4Addr) -> (TcpStream, Instant) {
    let tcp = connect_from(from, c.addr).expect("connect");
    let mut conn = c.connect_over(tcp).unwrap();
    conn.handshake().expect("handshake");
    // The server's idle time starts after it has the request, never before it was sent; the
    // reply may reach this thread much later on a loaded machine (a lifetime counted from the
    // reply was once 170 ms short). Counted from the send, a lifetime is never short.
    let sent = Instant::now();
    let r = conn.request("GET", "/version", None).expect("request");
    assert_eq!(r.status, 200);
    (conn.stream.sock, sent)
}

/// An HTTP/2 connection (ALPN h2) that made one request (`GET /version` on stream 1) and then
/// sends nothing more; the TCP connection, with the time the request was sent (see
/// [`kept_alive`]). The frames are
/// written by hand: the preface, an empty SETTINGS, its ACK of the server's, one HEADERS frame.
fn h2_kept_alive(c: &Client, from: Ipv4Addr) -> (TcpStream, Instant) {
    use std::io::Write;
    let tcp = connect_from(from, c.addr).expect("connect");
    let mut conn = c.connect_over(tcp).unwrap();
    conn.handshake().expect("handshake");
    assert_eq!(conn.stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS (type 4), empty; SETTINGS ACK (flag 1).
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    // HPACK: :method GET (static 2), :scheme https (7), :path (name 4) "/version" and
    // :authority (name 1) "localhost", as literals without indexing.
    let mut block = vec![0x82, 0x87, 0x04, 8];
    block.extend_from_slice(b"/version");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    // HEADERS (type 1), END_STREAM | END_HEADERS (0x5), stream 1.
    out.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    let sent = Instant::now();
    conn.stream.write_all(&out).expect("send");
    conn.stream.flush().expect("send");
    // Frames until one on stream 1 ends it (END_STREAM on HEADERS or DATA).
    loop {
        let mut head = [0u8; 9];
        conn.stream.read_exact(&mut head).expect("reply");
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        conn.stream.read_exact(&mut payload).expect("reply");
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        assert_ne!(head[3], 7, "GOAWAY: {payload:?}");
        assert!(stream != 1 || head[3] != 3, "RST_STREAM: {payload:?}");
        if stream == 1 && matches!(head[3], 0 | 1) && head[4] & 1 == 1 {
            break;
        }
    }
    (conn.stream.sock, sent)
}

/// A subscription to `/v1/log/audit`: the TCP connection once the reply's head has arrived.
/// Nothing more is read from it: the server's events pile up in the socket buffers.
fn subscribe(c: &Client, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let tcp = connect_from(from, c.addr)?;
    let mut conn = c.connect_over(tcp)?;
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
    Ok(conn.stream.sock)
}

/// Asserts that every watched connection was closed by the server `limit` after it was opened
/// (within [`DEADLINE_SLACK`], more if the machine was frozen meanwhile), except the first
/// `early` ones, which must have been closed before; returns the figures.
#[track_caller]
fn assert_closed_at(
    what: &str,
    watch: &mut Closings,
    limit: Duration,
    early: usize,
    stalls: &StallMonitor,
) -> String {
    let open = watch.wait(Instant::now() + limit + DEADLINE_SLACK + Duration::from_secs(5));
    assert_eq!(open, 0, "{what}: {open} connections were never closed");
    let lifetimes: Vec<Duration> = watch.lifetimes().into_iter().map(Option::unwrap).collect();
    let (before, at_limit) = lifetimes.split_at(early);
    for (i, life) in before.iter().enumerate() {
        assert!(
            *life < limit,
            "{what}: connection {i} should have made room at once, closed after {life:?}"
        );
    }
    let first = *at_limit.iter().min().unwrap();
    let last = *at_limit.iter().max().unwrap();
    assert!(
        first + Duration::from_millis(50) >= limit,
        "{what}: closed after {first:?}, before the limit ({limit:?})"
    );
    for (life, closed) in at_limit
        .iter()
        .zip(&watch.closed_at()[early..])
        .filter(|(life, _)| **life > limit + DEADLINE_SLACK)
    {
        let closed = closed.unwrap();
        let frozen = stalls.between(closed - *life, closed);
        assert!(
            *life - frozen <= limit + DEADLINE_SLACK,
            "{what}: closed {life:?} after opening ({frozen:?} frozen), limit {limit:?}"
        );
    }
    assert_eq!(
        watch.resets(),
        0,
        "{what}: connections reset instead of closed"
    );
    format!(
        "{what}: {} closed by the server (EOF) {first:?} to {last:?} after opening (limit {limit:?})",
        at_limit.len()
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Idle TCP connections (connected, nothing sent)

/// 1 000 TCP connections that never start their TLS handshake: other clients are served at
/// once (from another address and from the same one), the server closes the hoard after
/// `handshake_timeout` and counts it as failed handshakes.
#[test]
fn idle_tcp_connections_do_not_keep_anyone_waiting() {
    let _serial = serial();
    let timeout = Duration::from_secs(2);
    let srv = Server::start("hoard-tcp", "  handshake_timeout: 2s\n");
    let stalls = StallMonitor::start();
    let start = Instant::now();
    let hoard = idle_tcp(&srv, HOARDER, HOARD);
    let open_took = start.elapsed();
    let mut watch = Closings::new(hoard);
    let held = wait_for(Duration::from_secs(5), || srv.open() == HOARD);
    assert!(
        held.is_some(),
        "the server holds {} connections",
        srv.open()
    );
    let other = assert_served("from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    let own = assert_served("from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    let m = srv.metrics();
    watch.check();
    assert_eq!(watch.open(), HOARD, "nothing is closed before its deadline");
    assert_eq!(metric(&m, "kes_server_connections_evicted_total"), 0.0);
    assert_eq!(metric(&m, "kes_server_connections_rejected_total"), 0.0);
    let closed = assert_closed_at("idle TCP", &mut watch, timeout, 0, &stalls);
    srv.settle();
    let failures = srv.metric("kes_server_tls_handshake_failures_total");
    let after = assert_served("after, from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    println!(
        "{HOARD} idle TCP connections from 127.0.0.1 opened in {open_took:?}, all held by the server\n  {other}\n  {own}\n  {closed}; the server is back to 0 other connections\n  counted as failed TLS handshakes: {failures}\n  {after}\n  machine stalls: {}",
        stalls.summary()
    );
    assert_eq!(failures, HOARD as f64);
}

/// The same hoard against `max_connections_per_address: 256`: the hoarder's own idle
/// connections make room for its newer ones (the longest idle first); another address is not
/// touched.
#[test]
fn idle_tcp_connections_over_the_per_address_limit_replace_their_own() {
    let _serial = serial();
    let timeout = Duration::from_secs(2);
    let per_address = 256;
    let srv = Server::start(
        "hoard-tcp-per-address",
        "  handshake_timeout: 2s\n  max_connections_per_address: 256\n",
    );
    let stalls = StallMonitor::start();
    let hoard = idle_tcp(&srv, HOARDER, HOARD);
    let mut watch = Closings::new(hoard);
    let mut open = 0;
    let held = wait_for(Duration::from_secs(1), || {
        open = srv.open();
        open == per_address
    });
    assert!(
        held.is_some(),
        "{open} connections from 127.0.0.1 are open, max_connections_per_address is {per_address} (evictions lost: see a_burst_over_the_limits_leaves_nothing_beyond_them)"
    );
    let evicted_by_hoard = srv.metric("kes_server_connections_evicted_total");
    assert_eq!(evicted_by_hoard, (HOARD - per_address) as f64);
    let other = assert_served("from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    assert_eq!(
        srv.metric("kes_server_connections_evicted_total"),
        evicted_by_hoard,
        "another address makes no one's connection close"
    );
    let own = assert_served("from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    let evicted = srv.metric("kes_server_connections_evicted_total");
    // Each probe closes its connection when served: the next finds room again, unless the
    // server has not seen the close yet.
    assert!(
        (1.0..=PROBES as f64).contains(&(evicted - evicted_by_hoard)),
        "{evicted} evicted"
    );
    let evicted = evicted as usize;
    let closed = assert_closed_at("idle TCP", &mut watch, timeout, evicted, &stalls);
    srv.settle();
    let failures = srv.metric("kes_server_tls_handshake_failures_total");
    let after = assert_served("after, from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    println!(
        "{HOARD} idle TCP connections from 127.0.0.1, max_connections_per_address {per_address}: the server holds {per_address}; {evicted_by_hoard} of the hoard made room for its newer ones\n  {other} (evicted none)\n  {own} (evicted {} more of the hoard)\n  the {evicted} longest idle closed at once; {closed}\n  counted as failed TLS handshakes: {failures}\n  {after}\n  machine stalls: {}",
        evicted - evicted_by_hoard as usize,
        stalls.summary()
    );
    assert_eq!(failures, (HOARD - evicted) as f64);
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Idle TLS, keep-alive and HTTP/2 connections

/// What one idle hoard showed, for the report.
struct Hoarded {
    open_took: Duration,
    /// Probes from another address and from the hoarder's, while the hoard is held.
    other: String,
    own: String,
    /// When the server closed them.
    closed: String,
    /// From the last close until the server had let go of every connection.
    settled: Duration,
    /// Probes after.
    after: String,
    /// The metrics while the hoard was held.
    held: Exposition,
}

/// [`HOARD`] connections opened by `open` from 127.0.0.1 and left idle: other clients, from
/// another address and the same one, are served while they are held; none is closed before
/// `timeout` (the deadline of that kind of idleness), all are closed after it; the server lets
/// go of them (back to the scrape's connection only); clients are served after.
fn idle_hoard(
    srv: &Server,
    what: &str,
    timeout: Duration,
    stalls: &StallMonitor,
    open: impl Fn(usize) -> (TcpStream, Instant) + Sync,
) -> Hoarded {
    let start = Instant::now();
    let hoard = open_many(HOARD, open);
    let open_took = start.elapsed();
    let mut watch = Closings::new(hoard);
    let held = wait_for(Duration::from_secs(5), || srv.open() == HOARD);
    assert!(
        held.is_some(),
        "the server holds {} connections (opening them took {open_took:?}, the deadline is {timeout:?})",
        srv.open()
    );
    let m = srv.metrics();
    let other = assert_served("from 127.0.0.2", &probes(srv, OTHER), stalls);
    let own = assert_served("from 127.0.0.1", &probes(srv, HOARDER), stalls);
    watch.check();
    assert_eq!(watch.open(), HOARD, "nothing is closed before its deadline");
    assert_eq!(metric(&m, "kes_server_connections_evicted_total"), 0.0);
    let closed = assert_closed_at(what, &mut watch, timeout, 0, stalls);
    let closed_all = Instant::now();
    srv.settle();
    let settled = closed_all.elapsed();
    drop(watch);
    let after = assert_served("after, from 127.0.0.2", &probes(srv, OTHER), stalls);
    Hoarded {
        open_took,
        other,
        own,
        closed,
        settled,
        after,
        held: m,
    }
}

#[test]
fn idle_tls_connections_do_not_keep_anyone_waiting() {
    let _serial = serial();
    // 1 000 TLS handshakes take about 2 s here (debug build, both cores): the deadline leaves
    // room for a loaded machine to open them all before the first ones are due.
    let srv = Server::start("hoard-tls", "  header_timeout: 6s\n");
    let c = srv.client();
    let stalls = StallMonitor::start();
    let h = idle_hoard(&srv, "idle TLS", Duration::from_secs(6), &stalls, |_| {
        handshaken(&c, HOARDER)
    });
    let m = srv.metrics();
    println!(
        "{HOARD} idle TLS connections (handshake done, no request) from 127.0.0.1 opened in {:?}\n  {}\n  {}\n  {}; the server is back to 0 other connections\n  TLS handshake failures {}, resumed handshakes {}\n  {}\n  machine stalls: {}",
        h.open_took,
        h.other,
        h.own,
        h.closed,
        metric(&m, "kes_server_tls_handshake_failures_total"),
        metric(&m, "kes_server_tls_resumed_total"),
        h.after,
        stalls.summary()
    );
    assert_eq!(metric(&m, "kes_server_tls_handshake_failures_total"), 0.0);
}

#[test]
fn idle_keep_alive_connections_do_not_keep_anyone_waiting() {
    let _serial = serial();
    let srv = Server::start("hoard-keepalive", "  idle_timeout: 3s\n");
    let c = srv.client();
    let stalls = StallMonitor::start();
    let h = idle_hoard(
        &srv,
        "idle keep-alive",
        Duration::from_secs(3),
        &stalls,
        |_| kept_alive(&c, HOARDER),
    );
    println!(
        "{HOARD} idle keep-alive connections (one request each) from 127.0.0.1 opened in {:?}\n  {}\n  {}\n  {}; the server is back to 0 other connections\n  {}\n  machine stalls: {}",
        h.open_took,
        h.other,
        h.own,
        h.closed,
        h.after,
        stalls.summary()
    );
}

/// The same over HTTP/2, as MinIO connects: each connection made one request and keeps its
/// stream 1 closed and nothing else open. The server ends each with a GOAWAY after
/// `idle_timeout`, then closes.
#[test]
fn idle_http2_connections_do_not_keep_anyone_waiting() {
    let _serial = serial();
    let srv = Server::start("hoard-h2", "  idle_timeout: 3s\n");
    let h2 = srv.client().with_alpn(&[b"h2"]);
    let stalls = StallMonitor::start();
    let h = idle_hoard(&srv, "idle HTTP/2", Duration::from_secs(3), &stalls, |_| {
        h2_kept_alive(&h2, HOARDER)
    });
    assert_eq!(
        metric(&h.held, "kes_server_connections_http2"),
        HOARD as f64,
        "HTTP/2 connections"
    );
    // After its GOAWAY and FIN the server waits a little (2 s) for the client to close; these
    // clients never do.
    println!(
        "{HOARD} idle HTTP/2 connections (one request each) from 127.0.0.1 opened in {:?}\n  {}\n  {}\n  {}; the server is back to 0 other connections {:?} later, without the clients closing\n  {}\n  machine stalls: {}",
        h.open_took,
        h.other,
        h.own,
        h.closed,
        h.settled,
        h.after,
        stalls.summary()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Abandoned log streams

/// A child process (tests/h2/hold_streams.py, standard-library Python) that holds `n` audit
/// subscriptions from 127.0.0.1 until it is killed. Killed (SIGKILL) on drop.
struct Holder {
    child: Child,
    _dir: TempDir,
}

impl Holder {
    fn start(srv: &Server, n: usize) -> Holder {
        let dir = TempDir::new("hoard-holder");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &srv.ca.cert.cert_pem).unwrap();
        let (cert, key) = pki::api_key_client(ADMIN_API_KEY).write(dir.path(), "holder");
        let python = std::env::var_os("KES_TEST_PYTHON").unwrap_or_else(|| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h2/hold_streams.py");
        let mut child = Command::new(python)
            .arg("-B")
            .arg(script)
            .args([
                srv.kes.addr.ip().to_string(),
                srv.kes.addr.port().to_string(),
                n.to_string(),
            ])
            .args([&ca, &cert, &key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the holder (python3)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut holder = Holder { child, _dir: dir };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line == "holder: ready" => {}
            other => {
                holder.kill();
                panic!("the holder did not get ready: {other:?}");
            }
        }
        holder
    }

    /// SIGKILL: the process ends without closing anything itself.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the server has no audit subscriber and no connection but the scrape's; returns
/// how long that took from `since`, and the longest machine stall meanwhile.
#[track_caller]
fn assert_freed(what: &str, srv: &Server, since: Instant, stalls: &StallMonitor) -> Duration {
    let freed = wait_for(Duration::from_secs(30), || {
        let m = srv.metrics();
        metric(&m, "kes_log_audit_subscribers") == 0.0
            && metric(&m, "kes_server_connections_open") == 1.0
    });
    assert!(
        freed.is_some(),
        "{what}: the subscriptions were never freed"
    );
    let took = since.elapsed();
    let frozen = stalls.between(since, Instant::now());
    assert!(
        took.saturating_sub(frozen) <= Duration::from_secs(1),
        "{what}: freed after {took:?} ({frozen:?} frozen)"
    );
    took
}

/// 1 000 audit subscriptions from 127.0.0.1 that stop reading: other clients are served while
/// they are open; when their sockets are closed, and when the process that holds them is
/// killed, the server frees them within a second.
#[test]
fn abandoned_log_streams_are_freed_at_once() {
    let _serial = serial();
    let srv = Server::start("hoard-streams", "");
    let c = srv.client();
    let stalls = StallMonitor::start();

    // Closed by their owner.
    let start = Instant::now();
    let subs = open_many(HOARD, |_| subscribe(&c, HOARDER).expect("subscribe"));
    let open_took = start.elapsed();
    let m = srv.metrics();
    assert_eq!(metric(&m, "kes_log_audit_subscribers"), HOARD as f64);
    assert_eq!(
        metric(&m, "kes_server_connections_open"),
        HOARD as f64 + 1.0
    );
    let held = ProcCost::of(srv.pid());
    let other = assert_served("from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    let own = assert_served("from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    // Each request's audit event goes to every subscriber: what a new client costs the server.
    let cpu_held = (ProcCost::of(srv.pid()).cpu_ms - held.cpu_ms) as f64 / (2 * PROBES) as f64;
    let closed = Instant::now();
    drop(subs);
    let freed_closed = assert_freed("closed sockets", &srv, closed, &stalls);
    let before = ProcCost::of(srv.pid());
    let after_closed = assert_served("after, from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    let cpu_after = (ProcCost::of(srv.pid()).cpu_ms - before.cpu_ms) as f64 / PROBES as f64;

    // Held by a process that is killed.
    let start = Instant::now();
    let mut holder = Holder::start(&srv, HOARD);
    let child_took = start.elapsed();
    let m = srv.metrics();
    assert_eq!(metric(&m, "kes_log_audit_subscribers"), HOARD as f64);
    let other_child = assert_served("from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    let own_child = assert_served("from 127.0.0.1", &probes(&srv, HOARDER), &stalls);
    let killed = Instant::now();
    holder.kill();
    let freed_killed = assert_freed("holder killed", &srv, killed, &stalls);
    let after_killed = assert_served("after, from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    let m = srv.metrics();
    println!(
        "{HOARD} audit subscriptions from 127.0.0.1 that read nothing, opened in {open_took:?} (server RSS {} KiB)\n  {other}\n  {own}\n  server CPU per new client (handshake, request, its audit event to every subscriber): {cpu_held:.1} ms; without subscribers: {cpu_after:.1} ms\n  sockets closed: subscribers and connections back to 0 after {freed_closed:?}\n  {after_closed}\n{HOARD} more held by a child process (opened in {child_took:?})\n  {other_child}\n  {own_child}\n  child killed (SIGKILL): back to 0 after {freed_killed:?}\n  {after_killed}\n  events dropped for slow subscribers: {}; machine stalls: {}",
        held.rss_kib,
        m["kes_log_dropped_events_total"]
            .get("", &[("log", "audit")])
            .unwrap_or(f64::NAN),
        stalls.summary()
    );
}

/// `max_connections: 64` held by 64 live audit subscriptions: nothing is idle, so a new client
/// is refused before TLS (documented in kes.yaml.example, `server.max_connections`); once the
/// process that holds them is killed, new clients are served again, without a restart.
#[test]
fn log_streams_at_the_connection_limit_are_refused_then_freed() {
    let _serial = serial();
    let max = 64;
    let srv = Server::start("hoard-streams-limit", "  max_connections: 64\n");
    let c = srv.client();
    let stalls = StallMonitor::start();
    let mut holder = Holder::start(&srv, max);
    let mut refusals = Vec::new();
    for from in [OTHER, HOARDER, SCRAPER] {
        let start = Instant::now();
        let refused = connect_from(from, c.addr)
            .and_then(|tcp| c.connect_over(tcp))
            .and_then(|mut conn| conn.request("GET", "/version", None));
        let took = start.elapsed();
        assert!(
            refused.is_err(),
            "a client from {from} was served beyond max_connections: {refused:?}"
        );
        refusals.push(took);
    }
    let killed = Instant::now();
    holder.kill();
    let mut tries = 0;
    let served = wait_for(Duration::from_secs(10), || {
        tries += 1;
        connect_from(OTHER, c.addr)
            .and_then(|tcp| c.connect_over(tcp))
            .and_then(|mut conn| conn.request("POST", "/v1/key/generate/k", Some("")))
            .is_ok_and(|r| r.status == 200)
    });
    let served = served.expect("clients are served again once the subscribers are gone");
    let frozen = stalls.between(killed, Instant::now());
    let after = assert_served("after, from 127.0.0.2", &probes(&srv, OTHER), &stalls);
    let freed = assert_freed("holder killed", &srv, killed, &stalls);
    let m = srv.metrics();
    println!(
        "max_connections {max} held by {max} audit subscribers of a child process\n  new clients from 127.0.0.2, .1, .3 refused before TLS in {refusals:?}\n  child killed (SIGKILL): a new client served {served:?} later ({tries} tries), all freed after {freed:?}\n  {after}\n  counted: {} rejected, {} evicted; machine stalls: {}",
        metric(&m, "kes_server_connections_rejected_total"),
        metric(&m, "kes_server_connections_evicted_total"),
        stalls.summary()
    );
    assert!(
        served.saturating_sub(frozen) <= Duration::from_secs(1),
        "served again only {served:?} after the subscribers left"
    );
    assert_eq!(
        metric(&m, "kes_server_connections_rejected_total"),
        (refusals.len() + tries - 1) as f64
    );
    assert_eq!(metric(&m, "kes_server_connections_evicted_total"), 0.0);
}

// ---------------------------------------------------------------------------------------------
// 5. What idle connections cost

/// Thread count and resident memory with 1 000 idle TLS connections against the baseline.
/// Measured (2-core VM, glibc, 5 runs): 8.9 to 9.3 KiB per idle connection, no thread, no CPU
/// while they sit. Asserted with headroom: no more than 8 threads more (the worker pool may
/// grow a little while the hoard is opened; the event loops are fixed), at most
/// [`RSS_PER_IDLE_CONNECTION`] KiB each, and at most 10% of a CPU while they sit.
#[test]
fn idle_connections_cost_memory_not_threads() {
    const RSS_PER_IDLE_CONNECTION: u64 = 32; // KiB
    let _serial = serial();
    let srv = Server::start("hoard-cost", "  header_timeout: 60s\n");
    let c = srv.client();
    // Warm up: the worker pool and the allocator arenas as they are under a few clients.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(c.post("/v1/key/generate/k", "").status, 200);
                }
            });
        }
    });
    srv.settle();
    let base = ProcCost::of(srv.pid());
    let hoard = open_many(HOARD, |_| handshaken(&c, HOARDER));
    assert!(wait_for(Duration::from_secs(5), || srv.open() == HOARD).is_some());
    std::thread::sleep(Duration::from_millis(300));
    let held = ProcCost::of(srv.pid());
    // CPU while they sit idle for two seconds.
    std::thread::sleep(Duration::from_secs(2));
    let idle = ProcCost::of(srv.pid());
    let idle_cpu_ms = idle.cpu_ms - held.cpu_ms;
    drop(hoard);
    srv.settle();
    let after = ProcCost::of(srv.pid());
    // The allocator keeps what the hoard used: a second hoard must reuse it, not add to it.
    let hoard = open_many(HOARD, |_| handshaken(&c, HOARDER));
    assert!(wait_for(Duration::from_secs(5), || srv.open() == HOARD).is_some());
    let again = ProcCost::of(srv.pid());
    drop(hoard);
    srv.settle();
    let per_conn = held.rss_kib.saturating_sub(base.rss_kib) as f64 / HOARD as f64;
    println!(
        "{HOARD} idle TLS connections: threads {} -> {} (after: {}), VmRSS {} KiB -> {} KiB ({per_conn:.1} KiB per connection; {} KiB once they closed, {} KiB with a second hoard), server CPU while they sat idle for 2 s: {idle_cpu_ms} ms",
        base.threads,
        held.threads,
        after.threads,
        base.rss_kib,
        held.rss_kib,
        after.rss_kib,
        again.rss_kib
    );
    let regrowth = again.rss_kib.saturating_sub(held.rss_kib);
    assert!(
        regrowth * 10 <= held.rss_kib - base.rss_kib,
        "a second hoard grew the server by {regrowth} KiB more"
    );
    assert!(
        held.threads <= base.threads + 8,
        "threads grew with idle connections: {} -> {}",
        base.threads,
        held.threads
    );
    assert!(
        per_conn <= RSS_PER_IDLE_CONNECTION as f64,
        "{per_conn:.1} KiB per idle connection"
    );
    assert!(
        idle_cpu_ms <= 200,
        "{idle_cpu_ms} ms of CPU in 2 s for idle connections"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The total limit

/// `max_connections: 200` filled by 200 idle connections from one address: clients from
/// another address are still served, each in the place of the connection idle longest; the
/// metrics say how many were evicted and that none was refused.
#[test]
fn the_total_limit_makes_room_for_another_address() {
    let _serial = serial();
    let max = 200;
    let srv = Server::start("hoard-total", "  max_connections: 200\n");
    let c = srv.client();
    let stalls = StallMonitor::start();
    // Opened one after another, so the first is the longest idle. No scrape until the end: it
    // would take a place too.
    // The setup's last connection (a scrape) must be gone before the hoard, or the hoard's
    // last connection takes its place.
    assert!(
        wait_for(Duration::from_secs(5), || srv.tcp_connections() == 0).is_some(),
        "the server holds {} connections before the hoard",
        srv.tcp_connections()
    );
    let hoard = idle_tcp(&srv, HOARDER, max);
    let mut watch = Closings::new(hoard);
    // The new clients keep their connections (idle once served): each new one takes the place
    // of the longest-idle connection of the hoard, not of the previous new client's.
    let mut samples = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..PROBES {
        let (sample, conn) = probe(&c, srv.pid(), OTHER);
        samples.push(sample);
        kept.push(conn);
    }
    let other = assert_served("from 127.0.0.2", &samples, &stalls);
    std::thread::sleep(Duration::from_millis(300));
    watch.check();
    let closed: Vec<usize> = (0..watch.len())
        .filter(|&i| watch.closed_at()[i].is_some())
        .collect();
    for conn in &mut kept {
        assert_eq!(
            conn.request("GET", "/version", None).unwrap().status,
            200,
            "a new client's idle connection was closed instead of the hoard's"
        );
    }
    drop(kept);
    drop(watch);
    // The scrape below needs a place: wait (without a connection) until the server has closed
    // what the clients closed, or the scrape itself would evict one more.
    assert!(
        wait_for(Duration::from_secs(5), || srv.tcp_connections() == 0).is_some(),
        "the server still holds {} connections",
        srv.tcp_connections()
    );
    srv.settle();
    let m = srv.metrics();
    let evicted = metric(&m, "kes_server_connections_evicted_total");
    let rejected = metric(&m, "kes_server_connections_rejected_total");
    println!(
        "max_connections {max} held by {max} idle TCP connections from 127.0.0.1\n  {other}\n  hoard connections closed to make room: {closed:?}\n  counted: {evicted} evicted, {rejected} rejected; machine stalls: {}",
        stalls.summary()
    );
    // Each new client took the place of the hoard's oldest connection left.
    assert_eq!(closed, (0..PROBES).collect::<Vec<_>>());
    assert_eq!(evicted, PROBES as f64);
    assert_eq!(rejected, 0.0);
}

/// Bursts of connections over the limits, from several threads at once: a connection over a
/// limit may evict one that the server admitted but whose event loop has not taken it yet.
/// That one must close too, or more connections stay open than the limits allow (each until
/// its `handshake_timeout`), and admission, which forgot it, lets in more still.
///
/// Fails on e2ddf0d: up to 621 connections open with a per-address limit of 200, and 1 163
/// with `max_connections: 300`. The accept thread sends the new connection and, for a later
/// one, its eviction to the same loop's inbox; when the loop drains both at once it looks for
/// the victim among its connections before taking the new ones in (`Loop::drain_inbox`,
/// src/server/reactor.rs), does not find it, and the eviction is lost: the connection is
/// served although admission has already removed it from its register.
#[test]
fn a_burst_over_the_limits_leaves_nothing_beyond_them() {
    let _serial = serial();
    let (max, per_address) = (300, 200);
    let srv = Server::start(
        "hoard-burst",
        "  max_connections: 300\n  max_connections_per_address: 200\n",
    );
    let burst = |from: Ipv4Addr| open_many(HOARD, |_| connect_from(from, srv.kes.addr).unwrap());
    let mut seen = Vec::new();
    // The per-address limit, three times.
    for _ in 0..3 {
        let hoard = burst(HOARDER);
        std::thread::sleep(Duration::from_millis(300));
        let m = srv.metrics();
        let open = metric(&m, "kes_server_connections_open") as usize - 1;
        let mut watch = Closings::new(hoard.into_iter().map(|s| (s, Instant::now())).collect());
        watch.check();
        seen.push(("per address", open, watch.open()));
        drop(watch);
        srv.settle();
    }
    // The total limit: two addresses, each under its own limit, together over the total.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| burst(HOARDER));
        let b = s.spawn(|| burst(Ipv4Addr::new(127, 0, 0, 4)));
        (a.join().unwrap(), b.join().unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    // The scrape takes a place too (in place of an idle one).
    let open = srv.open() + 1;
    let mut watch = Closings::new(
        a.into_iter()
            .chain(b)
            .map(|s| (s, Instant::now()))
            .collect(),
    );
    watch.check();
    seen.push(("total", open, watch.open() + 1));
    drop(watch);
    srv.settle();
    let m = srv.metrics();
    println!(
        "bursts of {HOARD} connections from 4 threads, max_connections {max}, max_connections_per_address {per_address}: (limit, open by the server's count, open by the clients' view) {seen:?}; {} evicted, {} rejected",
        metric(&m, "kes_server_connections_evicted_total"),
        metric(&m, "kes_server_connections_rejected_total")
    );
    for (limit, by_server, by_clients) in seen {
        let bound = if limit == "total" { max } else { per_address };
        assert!(
            by_server <= bound && by_clients <= bound,
            "{limit} limit {bound}: {by_server} connections open (server count), {by_clients} (clients' view)"
        );
    }
}
