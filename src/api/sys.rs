//! System handlers: version, readiness, status, metrics, the route table, and log streams.
//!
//! None of these touch key material. `/v1/status` and `/v1/ready` ask the keystore for its health
//! (through the cache, which answers "unreachable" at once while the keystore is known offline).
//! The keystore is healthy only when it can serve keys (for Vault: reachable, unsealed, logged
//! in, the K/V engine as configured); `/v1/status` says why not in `keystore_error`
//! (docs/operations.md).

use super::Ctx;
use super::error::{self, ApiError};
use super::json;
use crate::keystore;
use crate::logstream::{Hub, Subscription};
use crate::metrics::{counter, gauge};
use crate::server::{EventSource, Response, Waker};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The server's version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (set by build.rs; `<unknown>` outside a git checkout).
pub const COMMIT: &str = env!("KES_BUILD_COMMIT");

fn ok_json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(Response::bytes(200, "application/json", json::reply(value)))
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
    commit: &'static str,
}

pub fn version(_: &Ctx<'_>) -> Result<Response, ApiError> {
    ok_json(&Version {
        version: VERSION,
        commit: COMMIT,
    })
}

pub fn ready(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    match ctx.api.cache.status() {
        Ok(_) => Ok(Response::empty(200)),
        Err(keystore::Error::Unreachable { .. }) => Err(error::KEYSTORE_UNREACHABLE),
        Err(_) => Err(error::KEYSTORE_UNAVAILABLE),
    }
}

/// Go's names for the operating system and architecture, as the Go server reports them.
pub fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    }
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        arch => arch,
    }
}

/// Memory figures of this process from /proc (zero where unavailable).
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub stack_bytes: u64,
    pub threads: u64,
}

pub fn process_stats() -> ProcessStats {
    let mut stats = ProcessStats {
        rss_bytes: 0,
        stack_bytes: 0,
        threads: 0,
    };
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let mut parts = line.split_whitespace();
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value: u64 = value.parse().unwrap_or(0);
            match key {
                "VmRSS:" => stats.rss_bytes = value * 1024,
                "VmStk:" => stats.stack_bytes = value * 1024,
                "Threads:" => stats.threads = value,
                _ => {}
            }
        }
    }
    stats
}

pub fn num_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    os: &'static str,
    arch: &'static str,
    uptime: u64,
    num_cpu: usize,
    num_cpu_used: usize,
    mem_heap_used: u64,
    mem_stack_used: u64,
    /// Nanoseconds: the Go client decodes this field as a `time.Duration` (the Go server sends
    /// milliseconds, which the client misreads).
    #[serde(skip_serializing_if = "is_zero")]
    keystore_latency: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keystore_unavailable: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keystore_unreachable: bool,
    /// Why the keystore is not healthy (an extension; omitted while it is): the keystore's error,
    /// e.g. `vault is sealed`. Never holds a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    keystore_error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// (keystore_latency in ns, keystore_unavailable, keystore_unreachable) of a keystore health
/// check. Latency has a 1 ns floor so that a healthy keystore always reports one (0 = omitted).
/// Unreachable implies unavailable: the Go client treats "unreachable" without "unavailable" as
/// an error, while "unavailable" alone means the keystore answered but is not usable.
fn keystore_health(r: &Result<keystore::Status, keystore::Error>) -> (u64, bool, bool) {
    match r {
        Ok(s) => (
            u64::try_from(s.latency.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            false,
            false,
        ),
        Err(keystore::Error::Unreachable { .. }) => (0, true, true),
        Err(_) => (0, true, false),
    }
}

/// The text of a keystore health check's error, for `keystore_error`.
fn keystore_error(r: &Result<keystore::Status, keystore::Error>) -> Option<String> {
    match r {
        Ok(_) => None,
        Err(e) => Some(e.detail().map_or_else(|| e.to_string(), str::to_string)),
    }
}

pub fn status(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let proc = process_stats();
    let health = ctx.api.cache.status();
    let (latency, unavailable, unreachable) = keystore_health(&health);
    ok_json(&Status {
        version: VERSION,
        os: go_os(),
        arch: go_arch(),
        uptime: ctx.api.started.elapsed().as_secs(),
        num_cpu: num_cpu(),
        num_cpu_used: num_cpu(),
        mem_heap_used: proc.rss_bytes,
        mem_stack_used: proc.stack_bytes,
        keystore_latency: latency,
        keystore_unavailable: unavailable,
        keystore_unreachable: unreachable,
        keystore_error: keystore_error(&health),
    })
}

/// `/v1/metrics`: the Go server's families (§8.3) and this server's own. See the module docs of
/// [`crate::metrics`] for the rule every family follows so that the Go SDK can read them.
pub fn metrics(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let api = ctx.api;
    let mut out = String::with_capacity(16 * 1024);
    api.metrics.write_requests(&mut out);
    let proc = process_stats();
    gauge(
        &mut out,
        "kes_system_up_time",
        "The time the server has been up and running in seconds.",
        api.started.elapsed().as_secs_f64(),
    );
    gauge(
        &mut out,
        "kes_system_num_cpu",
        "The number of logical CPU cores available on the system.",
        num_cpu() as f64,
    );
    gauge(
        &mut out,
        "kes_system_num_cpu_used",
        "The number of logical CPU cores usable by the server.",
        num_cpu() as f64,
    );
    gauge(
        &mut out,
        "kes_system_num_threads",
        "The number of concurrently running threads.",
        proc.threads as f64,
    );
    gauge(
        &mut out,
        "kes_system_mem_heap_used",
        "The number of bytes of memory in use (resident set size).",
        proc.rss_bytes as f64,
    );
    gauge(
        &mut out,
        "kes_system_mem_heap_objects",
        "The number of objects currently allocated on the heap.",
        crate::alloc::heap_objects().unwrap_or(0) as f64,
    );
    gauge(
        &mut out,
        "kes_system_mem_stack_used",
        "The number of bytes currently used on the stack.",
        proc.stack_bytes as f64,
    );
    let _ = writeln!(
        out,
        "# HELP kes_build_info The server's version and commit (value 1).\n# TYPE kes_build_info gauge\nkes_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"
    );

    let name = "kes_http_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Number of requests by API route (every route, also those the Go server does not count).\n# TYPE {name} counter"
    );
    for (method, path, n) in api.route_counts() {
        let _ = writeln!(out, "{name}{{method=\"{method}\",path=\"{path}\"}} {n}");
    }

    let s = &api.server_stats;
    gauge(
        &mut out,
        "kes_server_connections_open",
        "Number of open client connections (in their TLS handshake, idle, busy or streaming).",
        s.open_connections.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_connections_http2",
        "Number of open client connections that speak HTTP/2.",
        s.h2_connections.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_connections_max",
        "Most client connections open at once (server.max_connections).",
        api.max_connections as f64,
    );
    counter(
        &mut out,
        "kes_server_connections_accepted_total",
        "Number of client connections accepted.",
        s.accepted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_connections_evicted_total",
        "Number of idle client connections closed to make room for a new one at server.max_connections or server.max_connections_per_address.",
        s.evicted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_connections_rejected_total",
        "Number of client connections refused at a connection limit because no connection was idle.",
        s.rejected.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_tls_handshake_failures_total",
        "Number of TLS handshakes that failed or timed out (bad or missing client certificates, port scans, TCP health checks).",
        s.handshake_failures.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_tls_resumed_total",
        "Number of TLS handshakes that resumed an earlier session (no certificate exchange).",
        s.resumed.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_http2_errors_total",
        "Number of HTTP/2 connections ended with a GOAWAY error (protocol violations and floods).",
        s.h2_errors.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "kes_server_requests_in_flight",
        "Number of requests received and not answered yet.",
        s.in_flight.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_workers",
        "Number of worker threads (started on demand up to server.workers; they run requests that may wait for the keystore).",
        s.workers.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_workers_busy",
        "Number of worker threads running a request now.",
        s.busy.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_workers_queued",
        "Number of requests waiting for a free worker thread.",
        s.queued.load(Ordering::Relaxed) as f64,
    );
    api.metrics
        .write_certificate(&mut out, crate::certs::unix_now());
    if let Some(backlog) = api.listen.get().and_then(|addr| accept_backlog(*addr)) {
        gauge(
            &mut out,
            "kes_server_accept_backlog",
            "Connections waiting in the kernel's accept queue of the listening socket (Linux).",
            backlog as f64,
        );
    }

    let c = &api.cache.stats;
    counter(
        &mut out,
        "kes_cache_hits_total",
        "Number of key lookups served from the cache.",
        c.hits.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_cache_misses_total",
        "Number of key lookups that went to the keystore.",
        c.misses.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_cache_offline_hits_total",
        "Number of key lookups served from the cache past expiry while the keystore was offline.",
        c.stale_hits.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "kes_cache_size",
        "Number of keys in the cache.",
        api.cache.len() as f64,
    );
    gauge(
        &mut out,
        "kes_keystore_offline",
        "1 while the keystore is known to be unreachable, else 0.",
        if api.cache.is_offline() { 1.0 } else { 0.0 },
    );
    c.keystore.write(&mut out);
    counter(
        &mut out,
        "kes_cache_version_reloads_total",
        "Number of times a decrypt naming a key version newer than the cached ones made the server list the key's versions again.",
        c.ring_reloads.load(Ordering::Relaxed),
    );
    api.metrics.versions.write(&mut out);

    gauge(
        &mut out,
        "kes_log_audit_subscribers",
        "Number of clients subscribed to /v1/log/audit.",
        api.audit.subscriber_count() as f64,
    );
    gauge(
        &mut out,
        "kes_log_error_subscribers",
        "Number of clients subscribed to /v1/log/error.",
        api.errors.subscriber_count() as f64,
    );
    let name = "kes_log_dropped_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Number of log events not delivered because a stream subscriber was too slow (counted once per subscriber).\n# TYPE {name} counter\n{name}{{log=\"audit\"}} {}\n{name}{{log=\"error\"}} {}",
        api.audit.dropped.load(Ordering::Relaxed),
        api.errors.dropped.load(Ordering::Relaxed),
    );
    let out = if wants_all_metrics(&ctx.head.query) {
        out
    } else {
        single_series_only(&out)
    };
    Ok(Response::bytes(200, METRICS_CONTENT_TYPE, out.into_bytes()))
}

/// The content type of `/v1/metrics`, whatever the request's `Accept` asks for: the text format,
/// with the parameters the Go server's Prometheus library sends (`escaping=underscores`: metric
/// names are in the legacy character set, which every name here is).
pub const METRICS_CONTENT_TYPE: &str =
    "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

/// The families of several series that MinIO's KES client library reads (per status code).
const MULTI_SERIES_READ_BY_MINIO: [&str; 3] = [
    "kes_http_request_success",
    "kes_http_request_error",
    "kes_http_request_failure",
];

/// `/v1/metrics?all` (or `all=true`, `all=1`): every family, for Prometheus.
fn wants_all_metrics(query: &str) -> bool {
    query
        .split('&')
        .any(|p| matches!(p, "all" | "all=true" | "all=1" | "all=on"))
}

/// The exposition without the families MinIO's client library cannot read: it refuses a
/// counter or gauge with more than one series, except the three per-status request counters
/// (histograms it reads). Per-route, per-operation and per-level counters are therefore only in
/// `/v1/metrics?all`.
fn single_series_only(text: &str) -> String {
    // Pass 1: which families have more than one sample and are not histograms.
    let mut types: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut samples: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name, kind);
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            *samples.entry(name).or_insert(0) += 1;
        }
    }
    let dropped = |family: &str| {
        types.get(family).is_some_and(|kind| *kind != "histogram")
            && samples.get(family).copied().unwrap_or(0) > 1
            && !MULTI_SERIES_READ_BY_MINIO.contains(&family)
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let family = match line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            Some(rest) => rest.split(' ').next().unwrap_or(""),
            None => line.split(['{', ' ']).next().unwrap_or(""),
        };
        if !dropped(family) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Length of the kernel's accept queue of the listening socket at `addr`, from
/// `/proc/self/net/tcp{,6}` (the `rx_queue` column of a LISTEN socket; not `/proc/net`, a link
/// that systemd's `ProcSubset=pid` hides). `None` where that cannot be read (not Linux). The
/// kernel lists listening sockets first, so reading stops at the first socket in another
/// state: cheap even with many connections open.
fn accept_backlog(addr: std::net::SocketAddr) -> Option<u64> {
    use std::io::BufRead;
    let file = if addr.is_ipv4() {
        "/proc/self/net/tcp"
    } else {
        "/proc/self/net/tcp6"
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    for line in reader.lines().skip(1) {
        let line = line.ok()?;
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(_remote), Some(state), Some(queues)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        if state != "0A" {
            break;
        }
        let (ip_hex, port_hex) = local.split_once(':')?;
        if u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
            continue;
        }
        if proc_net_ip(ip_hex)? != addr.ip() {
            continue;
        }
        let (_, rx) = queues.split_once(':')?;
        return u64::from_str_radix(rx, 16).ok();
    }
    None
}

/// An address as `/proc/net/tcp*` prints it: each 32-bit word of the network-order address
/// printed as a native-endian number.
fn proc_net_ip(hex: &str) -> Option<std::net::IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[derive(Serialize)]
struct ApiRoute {
    method: &'static str,
    path: &'static str,
    max_body: usize,
    timeout: u64,
}

pub fn api(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let routes: Vec<ApiRoute> = ctx
        .api
        .route_table(ctx.state)
        .into_iter()
        .map(|(method, path, max_body, timeout)| ApiRoute {
            method,
            path,
            max_body,
            timeout: timeout.map_or(0, |t| t.as_secs()),
        })
        .collect();
    ok_json(&routes)
}

/// A log stream: NDJSON, one event per line, written as soon as it is available, until the
/// client goes away or the server shuts down. Events queued while the connection was busy are
/// written together in one chunk. A subscriber too slow to keep up loses events (counted in
/// `kes_log_dropped_events_total`, and warned about at most once a minute), never slows requests.
/// A log subscription as a stream reply: events as they are published, as NDJSON.
struct LogStream {
    subscription: Subscription,
    log: &'static str,
    who: crate::auth::Identity,
    /// Drops already reported in a warning, and when the last warning was.
    reported: u64,
    last_warning: Option<Instant>,
}

impl EventSource for LogStream {
    fn poll(&mut self, out: &mut Vec<u8>) -> bool {
        self.subscription.try_recv(out);
        let dropped = self.subscription.dropped();
        if dropped > self.reported && self.last_warning.is_none_or(|t| t.elapsed() >= MINUTE) {
            log::warn!(
                "{} log subscriber {} is too slow: {} events dropped ({dropped} in total)",
                self.log,
                self.who,
                dropped - self.reported
            );
            self.reported = dropped;
            self.last_warning = Some(Instant::now());
        }
        // A subscription ends only with its connection (or at shutdown).
        true
    }

    fn set_waker(&mut self, waker: Waker) {
        self.subscription.set_notify(Arc::new(move || waker.wake()));
    }
}

fn stream(ctx: &Ctx<'_>, hub: &Arc<Hub>, log: &'static str) -> Response {
    Response::stream(
        200,
        "application/x-ndjson",
        Box::new(LogStream {
            subscription: hub.subscribe(),
            log,
            who: ctx.identity.clone(),
            reported: 0,
            last_warning: None,
        }),
    )
}

const MINUTE: Duration = Duration::from_secs(60);

pub fn log_error(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    Ok(stream(ctx, &ctx.api.errors, "error"))
}

pub fn log_audit(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    Ok(stream(ctx, &ctx.api.audit, "audit"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::{Error, Status, UnreachableReason};

    #[test]
    fn the_default_exposition_has_one_series_per_family_except_what_minio_reads() {
        let text = "# HELP a A.\n# TYPE a counter\na{x=\"1\"} 1\na{x=\"2\"} 2\n\
            # HELP b B.\n# TYPE b gauge\nb 3\n\
            # HELP kes_http_request_error E.\n# TYPE kes_http_request_error counter\n\
            kes_http_request_error{code=\"400\"} 1\nkes_http_request_error{code=\"404\"} 2\n\
            # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        let out = single_series_only(text);
        assert!(!out.contains("a{"), "{out}");
        assert!(!out.contains("# TYPE a "), "{out}");
        assert!(out.contains("b 3\n"));
        assert!(out.contains("kes_http_request_error{code=\"404\"} 2\n"));
        assert!(out.contains("h_bucket{le=\"+Inf\"} 1\n"));
        assert!(wants_all_metrics("all"));
        assert!(wants_all_metrics("x=1&all=true"));
        assert!(!wants_all_metrics("all=false"));
        assert!(!wants_all_metrics(""));
    }

    #[test]
    fn status_flags_are_consistent() {
        let ok = Ok(Status {
            latency: Duration::from_micros(1500),
        });
        assert_eq!(keystore_health(&ok), (1_500_000, false, false));
        let instant = Ok(Status {
            latency: Duration::ZERO,
        });
        assert_eq!(keystore_health(&instant), (1, false, false));
        assert_eq!(
            keystore_health(&Err(Error::unreachable(
                UnreachableReason::Sealed,
                "vault is sealed"
            ))),
            (0, true, true)
        );
        assert_eq!(
            keystore_health(&Err(Error::Failed("permission denied".into()))),
            (0, true, false)
        );
        assert_eq!(
            keystore_health(&Err(Error::Denied("permission denied".into()))),
            (0, true, false)
        );
        assert_eq!(keystore_error(&ok), None);
        assert_eq!(
            keystore_error(&Err(Error::unreachable(
                UnreachableReason::Sealed,
                "vault is sealed"
            )))
            .as_deref(),
            Some("vault is sealed")
        );
        assert_eq!(
            keystore_error(&Err(Error::Denied("vault: permission denied".into()))).as_deref(),
            Some("vault: permission denied")
        );
        assert_eq!(
            keystore_error(&Err(Error::NotFound)).as_deref(),
            Some("key does not exist")
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_net_addresses() {
        // As /proc/net/tcp{,6} print 127.0.0.1 and ::1 on a little-endian machine.
        assert_eq!(
            proc_net_ip("0100007F"),
            Some(std::net::IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(
            proc_net_ip("00000000000000000000000001000000"),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(proc_net_ip("xyz"), None);
        assert_eq!(proc_net_ip("0100007"), None);
    }
}
