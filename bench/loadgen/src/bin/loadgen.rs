//! `loadgen`: a closed-loop HTTPS load generator that presents a client certificate.
//!
//! Every connection sends a request, reads the whole reply, and sends the next (closed loop,
//! keep-alive), or opens a new TLS connection for every request (`--new-conn`, a full handshake:
//! session resumption is off). Keep-alive connections are driven by a few event-loop threads
//! (epoll, one per core by default), so that 1 000 connections do not mean 1 000 client threads
//! competing with the server for the cores; `--threaded` uses one blocking thread per connection
//! instead (always so with `--new-conn`). Latencies go into a log-bucketed histogram; the server's CPU time is
//! read from `/proc/<pid>/stat` at the start and end of the measured window. The result is one
//! JSON line on stdout (the benchmark script collects them) and a summary on stderr.
//!
//! It reports; it never judges speed. It exits non-zero when the run is broken: no successful
//! request, any non-2xx reply, or any I/O error (so a smoke run cannot pass on a harness that
//! measures nothing).
//!
//! ```text
//! loadgen [run] --url https://127.0.0.1:7373/v1/key/generate/k --cert c.crt --key c.key \
//!         --method POST --body '{}' -c 8 -d 5 --warmup 1 --server-pid 1234 --label kes/generate
//! loadgen run ... --keys 10000 --dup 4 (path holds {key}: every key index asked for 4 times)
//! loadgen hold  --url ... -c 1000 --server-pid 1234     (RSS with 1000 open connections)
//! loadgen startup --url ... [--timeout 30] -- kes server --config kes.yaml
//! ```

use kes_bench::hist::Histogram;
use kes_bench::{json_str, process_cpu_seconds, read_reply, rss_kib};
use rustls::pki_types::ServerName;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: loadgen [run|hold|startup] --url https://HOST:PORT/PATH [options] [-- command]

  --method M          request method (default GET; POST when --body is given)
  --body TEXT         request body; --body-file FILE reads it from a file
  --header 'N: V'     extra request header (repeatable)
  --cert F --key F    client certificate and key (PEM)
  --cacert F          verify the server against this CA (default: check the handshake
                      signature only, the same cost for every server under test)
  -c N                connections (default 1)
  -d SECS             measured duration (default 5)
  --warmup SECS       unmeasured warm-up before it (default 1)
  -n N                send exactly N requests instead (no warm-up)
  --new-conn          a new TLS connection (full handshake) for every request
  --threaded          one blocking thread per keep-alive connection instead of event loops
  --threads N         event-loop threads (default: the number of cores, at most -c)
  --keys N --dup D    the path's {key} takes values 0..N-1, each D times in a row (cold path)
  --server-pid P[,P]  processes whose CPU time (and RSS for `hold`) to report
  --label TEXT        copied into the JSON result
  --hold-secs S       `hold`: how long to keep the connections open after the last opened (1)
  --timeout S         `startup`: give up after S seconds (default 30)
  --allow-errors      exit 0 even when some requests failed (still reported)";

#[derive(Default, Clone)]
struct Opts {
    url: String,
    method: Option<String>,
    body: Vec<u8>,
    headers: Vec<String>,
    cert: Option<String>,
    key: Option<String>,
    cacert: Option<String>,
    connections: usize,
    duration: f64,
    warmup: f64,
    count: Option<u64>,
    new_conn: bool,
    threaded: bool,
    threads: usize,
    keys: u64,
    dup: u64,
    server_pids: Vec<String>,
    label: String,
    hold_secs: f64,
    timeout: f64,
    allow_errors: bool,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<(String, Opts), String> {
    let mut o = Opts {
        connections: 1,
        duration: 5.0,
        warmup: 1.0,
        dup: 1,
        hold_secs: 1.0,
        timeout: 30.0,
        ..Opts::default()
    };
    let mut mode = "run".to_string();
    let mut i = 0;
    if let Some(first) = args.first()
        && !first.starts_with('-')
    {
        mode = first.clone();
        i = 1;
    }
    while i < args.len() {
        let a = args[i].as_str();
        let mut val = || -> Result<String, String> {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let num = |s: String| -> Result<f64, String> {
            s.parse::<f64>()
                .map_err(|_| format!("{a}: not a number: {s}"))
        };
        match a {
            "--url" => o.url = val()?,
            "--method" | "-m" => o.method = Some(val()?),
            "--body" => o.body = val()?.into_bytes(),
            "--body-file" => {
                let f = val()?;
                o.body = std::fs::read(&f).map_err(|e| format!("{f}: {e}"))?;
            }
            "--header" | "-H" => o.headers.push(val()?),
            "--cert" => o.cert = Some(val()?),
            "--key" => o.key = Some(val()?),
            "--cacert" => o.cacert = Some(val()?),
            "-c" => o.connections = num(val()?)? as usize,
            "-d" => o.duration = num(val()?)?,
            "--warmup" => o.warmup = num(val()?)?,
            "-n" => o.count = Some(num(val()?)? as u64),
            "--new-conn" => o.new_conn = true,
            "--threaded" => o.threaded = true,
            "--threads" => o.threads = num(val()?)? as usize,
            "--keys" => o.keys = num(val()?)? as u64,
            "--dup" => o.dup = (num(val()?)? as u64).max(1),
            "--server-pid" => o.server_pids.extend(
                val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "--label" => o.label = val()?,
            "--hold-secs" => o.hold_secs = num(val()?)?,
            "--timeout" => o.timeout = num(val()?)?,
            "--allow-errors" => o.allow_errors = true,
            "--" => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
        i += 1;
    }
    if o.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    if o.connections == 0 {
        return Err("-c must be at least 1".into());
    }
    if o.keys > 0 {
        o.count = Some(o.keys * o.dup);
    }
    Ok((mode, o))
}

/// What a worker needs to open connections and build requests.
struct Target {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: ServerName<'static>,
    /// The request up to the path, the path (may hold `{key}`), and everything after it.
    method: String,
    path: String,
    rest: Vec<u8>,
    rest_close: Vec<u8>,
}

impl Target {
    fn new(o: &Opts) -> Result<Target, String> {
        let url = o
            .url
            .strip_prefix("https://")
            .ok_or("--url must start with https://")?;
        let (hostport, path) = match url.find('/') {
            Some(p) => (&url[..p], &url[p..]),
            None => (url, "/"),
        };
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("{hostport}: {e}"))?
            .next()
            .ok_or_else(|| format!("{hostport}: no address"))?;
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        let config =
            kes_bench::client_config(o.cert.as_deref(), o.key.as_deref(), o.cacert.as_deref())?;
        let method = o.method.clone().unwrap_or_else(|| {
            if o.body.is_empty() {
                "GET".into()
            } else {
                "POST".into()
            }
        });
        let build = |close: bool| {
            let mut r = format!(" HTTP/1.1\r\nHost: {hostport}\r\n");
            for h in &o.headers {
                r.push_str(h);
                r.push_str("\r\n");
            }
            if !o.body.is_empty() || method != "GET" {
                r.push_str(&format!("Content-Length: {}\r\n", o.body.len()));
            }
            if close {
                r.push_str("Connection: close\r\n");
            }
            r.push_str("\r\n");
            let mut bytes = r.into_bytes();
            bytes.extend_from_slice(&o.body);
            bytes
        };
        Ok(Target {
            config,
            addr,
            name,
            method: method.clone(),
            path: path.to_string(),
            rest: build(false),
            rest_close: build(true),
        })
    }

    fn request(&self, key: Option<u64>, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.method.len() + self.path.len() + self.rest.len() + 8);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        match key {
            Some(k) => out.extend_from_slice(self.path.replace("{key}", &k.to_string()).as_bytes()),
            None => out.extend_from_slice(self.path.as_bytes()),
        }
        out.extend_from_slice(if close { &self.rest_close } else { &self.rest });
        out
    }

    fn connect(&self) -> Result<Conn, String> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
        let conn = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| format!("tls: {e}"))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }
}

struct Conn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Sends a request and reads its reply: (status, server wants to close, body).
    fn exchange(&mut self, request: &[u8]) -> Result<kes_bench::Reply, String> {
        self.stream
            .write_all(request)
            .and_then(|_| self.stream.flush())
            .map_err(|e| format!("write: {e}"))?;
        read_reply(&mut self.stream, &mut self.buf).map_err(|e| format!("read: {e}"))
    }

    fn close(mut self) {
        self.stream.conn.send_close_notify();
        let _ = self.stream.conn.write_tls(&mut self.stream.sock);
    }

    fn tls_info(&self) -> String {
        let version = self
            .stream
            .conn
            .protocol_version()
            .map_or("?".to_string(), |v| format!("{v:?}"));
        let suite = self
            .stream
            .conn
            .negotiated_cipher_suite()
            .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
        format!("{version} {suite}")
    }
}

#[derive(Default)]
struct Tally {
    hist: Histogram,
    ok: u64,
    /// Replies with a non-2xx status, by status.
    bad_status: Vec<(u16, u64)>,
    io_errors: u64,
    first_error: Option<String>,
    connections: u64,
}

impl Tally {
    fn status(&mut self, s: u16) {
        match self.bad_status.iter_mut().find(|(c, _)| *c == s) {
            Some((_, n)) => *n += 1,
            None => self.bad_status.push((s, 1)),
        }
    }
    fn error(&mut self, e: String) {
        self.io_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
    fn merge(&mut self, o: Tally) {
        self.hist.merge(&o.hist);
        self.ok += o.ok;
        for (s, n) in o.bad_status {
            for _ in 0..n {
                self.status(s);
            }
        }
        self.io_errors += o.io_errors;
        self.connections += o.connections;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
    fn errors(&self) -> u64 {
        self.io_errors + self.bad_status.iter().map(|(_, n)| n).sum::<u64>()
    }
}

struct Shared {
    target: Target,
    stop: AtomicBool,
    /// Requests completing in [from, until) are counted (until = None: count mode, all of them).
    /// Set once every connection is open, so that opening 1 000 connections (1 000 handshakes)
    /// is neither inside the measured window nor eating into the warm-up.
    window: OnceLock<(Instant, Option<Instant>)>,
    /// Workers whose connection is open (or failed to open) and that wait for `go`.
    ready: AtomicU64,
    go: AtomicBool,
    /// Count mode: tickets handed out so far, and how many there are.
    tickets: AtomicU64,
    count: Option<u64>,
    dup: u64,
    keyed: bool,
    new_conn: bool,
    /// Protocol version and cipher suite of the first connection (no lock on the request path).
    tls_info: OnceLock<String>,
}

impl Shared {
    /// The next request to send: None when the run is over; Some(key index) otherwise.
    fn ticket(&self) -> Option<Option<u64>> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        match self.count {
            None => Some(None),
            Some(n) => {
                let t = self.tickets.fetch_add(1, Ordering::Relaxed);
                if t >= n {
                    None
                } else if self.keyed {
                    Some(Some(t / self.dup))
                } else {
                    Some(None)
                }
            }
        }
    }

    fn counted(&self, done: Instant) -> bool {
        match self.window.get() {
            Some((from, Some(until))) => done >= *from && done < *until,
            Some((_, None)) => true,
            None => false,
        }
    }
}

fn worker(s: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<Conn> = None;
    if !s.new_conn {
        // Open the connection before the run starts; a failure is retried (and counted) in the
        // loop.
        if let Ok(c) = s.target.connect() {
            t.connections += 1;
            let _ = s.tls_info.set(c.tls_info());
            conn = Some(c);
        }
    }
    s.ready.fetch_add(1, Ordering::AcqRel);
    while !s.go.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    while let Some(key) = s.ticket() {
        let start = Instant::now();
        if conn.is_none() {
            match s.target.connect() {
                Ok(c) => {
                    t.connections += 1;
                    if s.tls_info.get().is_none() {
                        let _ = s.tls_info.set(c.tls_info());
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    if s.counted(Instant::now()) {
                        t.error(e);
                    }
                    // Do not spin on a refusing server.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let request = s.target.request(key, s.new_conn);
        let result = c.exchange(&request);
        let done = Instant::now();
        let counted = s.counted(done);
        match result {
            Ok(reply) => {
                if counted {
                    t.hist
                        .record(u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX));
                    if (200..300).contains(&reply.status) {
                        t.ok += 1;
                    } else {
                        t.status(reply.status);
                        if t.first_error.is_none() {
                            t.first_error = Some(format!(
                                "HTTP {}: {}",
                                reply.status,
                                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
                            ));
                        }
                    }
                }
                if (reply.close || s.new_conn)
                    && let Some(c) = conn.take()
                {
                    c.close();
                }
            }
            Err(e) => {
                if counted {
                    t.error(e);
                }
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        c.close();
    }
    t
}

fn cpu_of(pids: &[String]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for p in pids {
        sum += process_cpu_seconds(p)?;
    }
    Some(sum)
}

fn self_cpu() -> f64 {
    process_cpu_seconds("self").unwrap_or(0.0)
}

fn opt_num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "null".into(),
    }
}

fn run(o: &Opts) -> Result<bool, String> {
    let target = Target::new(o)?;
    let shared = Arc::new(Shared {
        target,
        stop: AtomicBool::new(false),
        window: OnceLock::new(),
        ready: AtomicU64::new(0),
        go: AtomicBool::new(false),
        tickets: AtomicU64::new(0),
        count: o.count,
        dup: o.dup,
        keyed: o.keys > 0,
        new_conn: o.new_conn,
        tls_info: OnceLock::new(),
    });
    let mut handles = Vec::with_capacity(o.connections);
    if o.threaded || o.new_conn {
        for i in 0..o.connections {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("conn-{i}"))
                .stack_size(128 * 1024)
                .spawn(move || worker(s))
                .map_err(|e| format!("cannot start thread {i}: {e}"))?;
            handles.push(h);
        }
    } else {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if o.threads > 0 { o.threads } else { cores }.clamp(1, o.connections);
        for i in 0..threads {
            let n = o.connections / threads + usize::from(i < o.connections % threads);
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || evloop::worker(s, n))
                .map_err(|e| format!("cannot start thread {i}: {e}"))?;
            handles.push(h);
        }
    }

    let setup_deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Acquire) < o.connections as u64
        && Instant::now() < setup_deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let begin = Instant::now();
    let (from, until) = match o.count {
        Some(_) => (begin, None),
        None => {
            let from = begin + Duration::from_secs_f64(o.warmup);
            (from, Some(from + Duration::from_secs_f64(o.duration)))
        }
    };
    let _ = shared.window.set((from, until));
    shared.go.store(true, Ordering::Release);

    let (server_cpu0, client_cpu0, t0);
    let (server_cpu1, client_cpu1, t1);
    let mut tally = Tally::default();
    match until {
        Some(until) => {
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            (server_cpu0, client_cpu0, t0) = (cpu_of(&o.server_pids), self_cpu(), Instant::now());
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            (server_cpu1, client_cpu1, t1) = (cpu_of(&o.server_pids), self_cpu(), Instant::now());
            shared.stop.store(true, Ordering::Relaxed);
            for h in handles {
                tally.merge(h.join().unwrap_or_default());
            }
        }
        None => {
            (server_cpu0, client_cpu0, t0) = (cpu_of(&o.server_pids), self_cpu(), begin);
            for h in handles {
                tally.merge(h.join().unwrap_or_default());
            }
            (server_cpu1, client_cpu1, t1) = (cpu_of(&o.server_pids), self_cpu(), Instant::now());
        }
    }
    let elapsed = (t1 - t0).as_secs_f64();
    let rps = tally.ok as f64 / elapsed;
    let server_cpu = match (server_cpu0, server_cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let client_cpu = client_cpu1 - client_cpu0;
    let per_req = |cpu: Option<f64>| {
        cpu.and_then(|c| {
            let n = tally.ok + tally.errors();
            (n > 0).then(|| c * 1e6 / n as f64)
        })
    };
    let h = &tally.hist;
    let us = |ns: u64| ns as f64 / 1000.0;
    let statuses: Vec<String> = tally
        .bad_status
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    let tls = shared.tls_info.get().cloned().unwrap_or_default();
    let client = if o.new_conn || o.threaded {
        "threads"
    } else {
        "event-loop"
    };
    println!(
        "{{\"label\":{},\"path\":{},\"mode\":\"{}\",\"client\":\"{}\",\"connections\":{},\"seconds\":{:.3},\"ok\":{},\"errors\":{},\"io_errors\":{},\"bad_status\":{{{}}},\"rps\":{:.1},\"latency_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"mean\":{:.1}}},\"server_cpu_s\":{},\"server_cpu_us_per_req\":{},\"client_cpu_s\":{:.3},\"client_cpu_us_per_req\":{},\"tcp_connections\":{},\"tls\":{},\"first_error\":{}}}",
        json_str(&o.label),
        json_str(&shared.target.path),
        if o.new_conn { "new-conn" } else { "keep-alive" },
        client,
        o.connections,
        elapsed,
        tally.ok,
        tally.errors(),
        tally.io_errors,
        statuses.join(","),
        rps,
        us(h.quantile(0.5)),
        us(h.quantile(0.9)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
        us(h.max()),
        h.mean() / 1000.0,
        opt_num(server_cpu, 3),
        opt_num(per_req(server_cpu), 2),
        client_cpu,
        opt_num(per_req(Some(client_cpu)), 2),
        tally.connections,
        json_str(&tls),
        tally
            .first_error
            .as_deref()
            .map_or("null".to_string(), json_str),
    );
    eprintln!(
        "{:<28} c={:<4} {:>10.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  server {} us/req  ok {} errors {}{}",
        o.label,
        o.connections,
        rps,
        us(h.quantile(0.5)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
        opt_num(per_req(server_cpu), 1),
        tally.ok,
        tally.errors(),
        tally
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    );
    Ok(tally.ok > 0 && (tally.errors() == 0 || o.allow_errors))
}

/// Opens `-c` connections, sends one request on each, keeps them all open, and reports the
/// servers' RSS while they are open.
fn hold(o: &Opts) -> Result<bool, String> {
    let target = Arc::new(Target::new(o)?);
    let release = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut handles = Vec::new();
    for i in 0..o.connections {
        let (target, release, opened, failed, first_error) = (
            target.clone(),
            release.clone(),
            opened.clone(),
            failed.clone(),
            first_error.clone(),
        );
        handles.push(
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let result = target.connect().and_then(|mut c| {
                        let r = c.exchange(&target.request(None, false))?;
                        if (200..300).contains(&r.status) {
                            Ok(c)
                        } else {
                            Err(format!("HTTP {}", r.status))
                        }
                    });
                    match result {
                        Ok(c) => {
                            opened.fetch_add(1, Ordering::AcqRel);
                            while !release.load(Ordering::Acquire) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            c.close();
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::AcqRel);
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                        }
                    }
                })
                .map_err(|e| format!("cannot start thread {i}: {e}"))?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < o.connections as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs_f64(o.hold_secs));
    let rss: Option<u64> = o
        .server_pids
        .iter()
        .map(|p| rss_kib(p))
        .sum::<Option<u64>>();
    release.store(true, Ordering::Release);
    for h in handles {
        let _ = h.join();
    }
    let (opened, failed) = (
        opened.load(Ordering::Acquire),
        failed.load(Ordering::Acquire),
    );
    let err = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "{{\"label\":{},\"connections\":{},\"opened\":{},\"failed\":{},\"rss_kib\":{},\"first_error\":{}}}",
        json_str(&o.label),
        o.connections,
        opened,
        failed,
        rss.map_or("null".into(), |r| r.to_string()),
        err.as_deref().map_or("null".into(), json_str)
    );
    eprintln!(
        "{:<28} {} connections open ({} failed): server RSS {} KiB",
        o.label,
        opened,
        failed,
        rss.map_or("?".into(), |r| r.to_string())
    );
    Ok(failed == 0 && opened == o.connections as u64)
}

/// Starts a command and measures the time until its first 2xx reply to the request.
fn startup(o: &Opts) -> Result<bool, String> {
    let target = Target::new(o)?;
    let Some((program, args)) = o.command.split_first() else {
        return Err("startup needs a command after --".into());
    };
    let t0 = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let deadline = t0 + Duration::from_secs_f64(o.timeout);
    let mut attempts = 0u64;
    let mut last_error = String::new();
    let result = loop {
        if Instant::now() > deadline {
            break None;
        }
        if let Ok(Some(status)) = child.try_wait() {
            last_error = format!("{program} exited: {status}");
            break None;
        }
        attempts += 1;
        match target
            .connect()
            .and_then(|mut c| c.exchange(&target.request(None, true)))
        {
            Ok(r) if (200..300).contains(&r.status) => break Some(t0.elapsed()),
            Ok(r) => last_error = format!("HTTP {}", r.status),
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    let ms = result.map(|d| d.as_secs_f64() * 1000.0);
    println!(
        "{{\"label\":{},\"startup_ms\":{},\"attempts\":{},\"error\":{}}}",
        json_str(&o.label),
        opt_num(ms, 1),
        attempts,
        if ms.is_some() {
            "null".to_string()
        } else {
            json_str(&last_error)
        }
    );
    eprintln!(
        "{:<28} first served request after {} ms ({} attempts){}",
        o.label,
        opt_num(ms, 1),
        attempts,
        if ms.is_none() {
            format!(": {last_error}")
        } else {
            String::new()
        }
    );
    Ok(ms.is_some())
}

fn main() -> ExitCode {
    kes_bench::raise_nofile_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, opts) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match mode.as_str() {
        "run" => run(&opts),
        "hold" => hold(&opts),
        "startup" => startup(&opts),
        other => Err(format!("unknown mode {other}\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen: the run failed (see errors above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// The keep-alive client as epoll event loops: each thread owns some connections, sends the next
/// request on a connection as soon as its reply is complete, and sleeps in `epoll_wait` otherwise.
mod evloop {
    use super::{Conn, Shared, Tally};
    use kes_bench::parse_reply;
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    struct Ev {
        tls: rustls::ClientConnection,
        sock: TcpStream,
        buf: Vec<u8>,
        start: Instant,
        in_flight: bool,
        want_write: bool,
    }

    /// A thin wrapper over the three epoll calls.
    struct Epoll(i32);

    impl Epoll {
        fn new() -> io::Result<Epoll> {
            // SAFETY: epoll_create1 has no memory-safety preconditions.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Epoll(fd))
        }
        fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event { events, u64: token };
            // SAFETY: `ev` is a valid epoll_event for the duration of the call.
            if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
        fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
            // SAFETY: the pointer and length describe `events`, which outlives the call.
            let n = unsafe {
                libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(0)
                } else {
                    Err(e)
                };
            }
            Ok(n as usize)
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: we own this descriptor and close it once.
            unsafe { libc::close(self.0) };
        }
    }

    const IN: u32 = libc::EPOLLIN as u32;
    const OUT: u32 = libc::EPOLLOUT as u32;

    /// Writes what TLS has buffered; asks for EPOLLOUT while the socket is full.
    fn flush(ep: &Epoll, token: u64, c: &mut Ev) -> Result<(), String> {
        while c.tls.wants_write() {
            match c.tls.write_tls(&mut c.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.want_write {
                        ep.ctl(libc::EPOLL_CTL_MOD, c.sock.as_raw_fd(), IN | OUT, token)
                            .map_err(|e| format!("epoll: {e}"))?;
                        c.want_write = true;
                    }
                    return Ok(());
                }
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if c.want_write {
            ep.ctl(libc::EPOLL_CTL_MOD, c.sock.as_raw_fd(), IN, token)
                .map_err(|e| format!("epoll: {e}"))?;
            c.want_write = false;
        }
        Ok(())
    }

    fn send(
        s: &Shared,
        ep: &Epoll,
        token: u64,
        c: &mut Ev,
        key: Option<u64>,
    ) -> Result<(), String> {
        let request = s.target.request(key, false);
        c.start = Instant::now();
        c.in_flight = true;
        c.tls
            .writer()
            .write_all(&request)
            .map_err(|e| format!("write: {e}"))?;
        flush(ep, token, c)
    }

    /// Reads what the socket has; returns the replies now complete (status, close).
    fn receive(ep: &Epoll, token: u64, c: &mut Ev) -> Result<Vec<(u16, bool)>, String> {
        loop {
            match c.tls.read_tls(&mut c.sock) {
                Ok(0) => return Err("read: connection closed by the server".into()),
                Ok(_) => {
                    c.tls
                        .process_new_packets()
                        .map_err(|e| format!("tls: {e}"))?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match c.tls.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        flush(ep, token, c)?;
        let mut replies = Vec::new();
        while let Some((reply, used)) = parse_reply(&c.buf).map_err(|e| format!("read: {e}"))? {
            c.buf.drain(..used);
            replies.push((reply.status, reply.close));
        }
        Ok(replies)
    }

    pub(super) fn worker(s: Arc<Shared>, n: usize) -> Tally {
        let mut t = Tally::default();
        let ep = match Epoll::new() {
            Ok(ep) => ep,
            Err(e) => {
                t.error(format!("epoll: {e}"));
                s.ready.fetch_add(n as u64, Ordering::AcqRel);
                return t;
            }
        };
        let mut conns: Vec<Option<Ev>> = Vec::with_capacity(n);
        for i in 0..n {
            let ev = s.target.connect().and_then(|Conn { stream, buf }| {
                let rustls::StreamOwned { conn: tls, sock } = stream;
                sock.set_nonblocking(true)
                    .map_err(|e| format!("nonblocking: {e}"))?;
                ep.ctl(libc::EPOLL_CTL_ADD, sock.as_raw_fd(), IN, i as u64)
                    .map_err(|e| format!("epoll: {e}"))?;
                Ok(Ev {
                    tls,
                    sock,
                    buf,
                    start: Instant::now(),
                    in_flight: false,
                    want_write: false,
                })
            });
            match ev {
                Ok(ev) => {
                    t.connections += 1;
                    if s.tls_info.get().is_none() {
                        let _ = s.tls_info.set(format!(
                            "{} {}",
                            ev.tls
                                .protocol_version()
                                .map_or("?".to_string(), |v| format!("{v:?}")),
                            ev.tls
                                .negotiated_cipher_suite()
                                .map_or("?".to_string(), |c| format!("{:?}", c.suite()))
                        ));
                    }
                    conns.push(Some(ev));
                }
                Err(e) => {
                    // Reported once the run starts (a connection that never opened is an error).
                    t.first_error.get_or_insert(e);
                    t.io_errors += 1;
                    conns.push(None);
                }
            }
        }
        s.ready.fetch_add(n as u64, Ordering::AcqRel);
        while !s.go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut active = 0usize;
        for (i, slot) in conns.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            match s.ticket() {
                Some(key) => match send(&s, &ep, i as u64, c, key) {
                    Ok(()) => active += 1,
                    Err(e) => {
                        t.error(e);
                        *slot = None;
                    }
                },
                None => break,
            }
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut stop_seen: Option<Instant> = None;
        while active > 0 {
            if s.stop.load(Ordering::Relaxed) {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    t.error(format!("{active} replies still missing 30 s after the end"));
                    break;
                }
            }
            let ready = match ep.wait(&mut events, 100) {
                Ok(n) => n,
                Err(e) => {
                    t.error(format!("epoll_wait: {e}"));
                    break;
                }
            };
            for ev in &events[..ready] {
                let token = ev.u64;
                let flags = ev.events;
                let Some(slot) = conns.get_mut(token as usize) else {
                    continue;
                };
                let Some(c) = slot.as_mut() else { continue };
                let result = if flags & OUT != 0 && flags & IN == 0 {
                    flush(&ep, token, c).map(|_| Vec::new())
                } else {
                    receive(&ep, token, c)
                };
                let replies = match result {
                    Ok(r) => r,
                    Err(e) => {
                        if c.in_flight && s.counted(Instant::now()) {
                            t.error(e);
                        }
                        if c.in_flight {
                            active -= 1;
                        }
                        *slot = None;
                        continue;
                    }
                };
                for (status, close) in replies {
                    let done = Instant::now();
                    c.in_flight = false;
                    if s.counted(done) {
                        t.hist
                            .record(u64::try_from((done - c.start).as_nanos()).unwrap_or(u64::MAX));
                        if (200..300).contains(&status) {
                            t.ok += 1;
                        } else {
                            t.status(status);
                            t.first_error
                                .get_or_insert_with(|| format!("HTTP {status}"));
                        }
                    }
                    if close {
                        // The server ended the connection: this model keeps a fixed set.
                        if s.counted(done) {
                            t.error("the server closed a keep-alive connection".into());
                        }
                        break;
                    }
                    if let Some(key) = s.ticket()
                        && let Err(e) = send(&s, &ep, token, c, key)
                    {
                        t.error(e);
                        c.in_flight = false;
                    }
                }
                if !c.in_flight {
                    active -= 1;
                    c.tls.send_close_notify();
                    let _ = c.tls.write_tls(&mut c.sock);
                    *slot = None;
                }
            }
        }
        for c in conns.iter_mut().flatten() {
            c.tls.send_close_notify();
            let _ = c.tls.write_tls(&mut c.sock);
        }
        t
    }
}
