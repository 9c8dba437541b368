//! Request metrics (§8.3) and their Prometheus text exposition.
//!
//! Counters are atomics updated on the request path without locks. The exposition contains the
//! Go server's families (same names, types and buckets) plus what an operator of this server needs
//! besides: keystore and cache figures, connections, workers and TLS handshake failures.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the response-time histogram, as in the Go server.
pub const BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 5.0, 10.0];

#[derive(Debug)]
pub struct Metrics {
    /// Requests by status code (index = code, 100..=599).
    by_code: Vec<AtomicU64>,
    pub active: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    pub audit_events: AtomicU64,
    pub error_events: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            by_code: (0..600).map(|_| AtomicU64::new(0)).collect(),
            active: AtomicU64::new(0),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            audit_events: AtomicU64::new(0),
            error_events: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.by_code.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Requests answered with `status`.
    pub fn count_of(&self, status: u16) -> u64 {
        self.by_code
            .get(usize::from(status))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Writes the request families in Prometheus text format.
    pub fn write_requests(&self, out: &mut String) {
        for (family, help, range) in [
            (
                "kes_http_request_success",
                "Number of requests that have been served successfully.",
                200..300,
            ),
            (
                "kes_http_request_error",
                "Number of request that failed due to some error. (HTTP 4xx status code)",
                400..500,
            ),
            (
                "kes_http_request_failure",
                "Number of request that failed due to some internal failure. (HTTP 5xx status code)",
                500..600,
            ),
        ] {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            let mut any = false;
            for code in range.clone() {
                let n = self.count_of(code);
                if n > 0 {
                    any = true;
                    let _ = writeln!(out, "{family}{{code=\"{code}\"}} {n}");
                }
            }
            if !any {
                // The Go SDK rejects families without samples.
                let _ = writeln!(out, "{family}{{code=\"{}\"}} 0", range.start);
            }
        }
        gauge(
            out,
            "kes_http_request_active",
            "Number of active requests that are not finished, yet.",
            self.active.load(Ordering::Relaxed) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP kes_http_response_time Histogram of request response times spawning from 10ms to 10s.\n# TYPE kes_http_response_time histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "kes_http_response_time_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "kes_http_response_time_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "kes_http_response_time_sum {}",
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "kes_http_response_time_count {count}");
        counter(
            out,
            "kes_log_error_events",
            "Number of error log events written to error log targets.",
            self.error_events.load(Ordering::Relaxed),
        );
        counter(
            out,
            "kes_log_audit_events",
            "Number of audit log events written to audit log targets.",
            self.audit_events.load(Ordering::Relaxed),
        );
    }
}

/// Writes a gauge family with one unlabelled sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Writes a counter family with one unlabelled sample.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}
