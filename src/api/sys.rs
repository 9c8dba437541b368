//! System handlers: version, readiness, status, metrics, the route table, and log streams.

use super::Ctx;
use super::error::{self, ApiError};
use super::json;
use crate::keystore;
use crate::metrics::{counter, gauge};
use crate::server::http::{Body, Response};
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

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
        Err(keystore::Error::Unreachable(_)) => Err(error::KEYSTORE_UNREACHABLE),
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
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn status(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let proc = process_stats();
    let (latency, unavailable, unreachable) = match ctx.api.cache.status() {
        Ok(s) => (
            u64::try_from(s.latency.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            false,
            false,
        ),
        // The Go client treats "unreachable" without "unavailable" as an error: set both.
        Err(keystore::Error::Unreachable(_)) => (0, true, true),
        Err(_) => (0, true, false),
    };
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
    })
}

pub fn metrics(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let api = ctx.api;
    let mut out = String::with_capacity(4096);
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
        "The number of bytes currently allocated (resident set size).",
        proc.rss_bytes as f64,
    );
    gauge(
        &mut out,
        "kes_system_mem_heap_objects",
        "The number of objects currently allocated on the heap (not tracked: 0).",
        0.0,
    );
    gauge(
        &mut out,
        "kes_system_mem_stack_used",
        "The number of bytes currently used on the stack.",
        proc.stack_bytes as f64,
    );
    let s = &api.server_stats;
    gauge(
        &mut out,
        "kes_server_connections_open",
        "Number of open client connections.",
        s.open_connections.load(Ordering::Relaxed) as f64,
    );
    counter(
        &mut out,
        "kes_server_connections_accepted_total",
        "Number of client connections accepted.",
        s.accepted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_connections_rejected_total",
        "Number of client connections refused because server.max_connections was reached.",
        s.rejected.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "kes_server_tls_handshake_failures_total",
        "Number of failed TLS handshakes.",
        s.handshake_failures.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "kes_server_workers",
        "Number of worker threads (busy or idle).",
        s.workers.load(Ordering::Relaxed) as f64,
    );
    gauge(
        &mut out,
        "kes_server_workers_busy",
        "Number of worker threads processing a request.",
        s.busy.load(Ordering::Relaxed) as f64,
    );
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
        "Number of key lookups served from the cache while the keystore was offline.",
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
    counter(
        &mut out,
        "kes_log_dropped_events_total",
        "Number of log events dropped because a stream subscriber was too slow.",
        api.audit.dropped.load(Ordering::Relaxed) + api.errors.dropped.load(Ordering::Relaxed),
    );
    Ok(Response::bytes(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        out.into_bytes(),
    ))
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

fn stream(hub: &std::sync::Arc<crate::logstream::Hub>, api: &super::Api) -> Response {
    let rx = hub.subscribe();
    let stopping = api.stopping.clone();
    let writer = move |w: &mut dyn Write| loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                if w.write_all(&line).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    };
    Response {
        status: 200,
        headers: Vec::new(),
        body: Body::Stream {
            content_type: "application/x-ndjson",
            writer: Box::new(writer),
        },
    }
}

pub fn log_error(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    Ok(stream(&ctx.api.errors, ctx.api))
}

pub fn log_audit(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    Ok(stream(&ctx.api.audit, ctx.api))
}
