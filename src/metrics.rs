//! Request and keystore metrics (§8.3) and their Prometheus text exposition.
//!
//! Everything here is a relaxed atomic updated on the request path without locks or allocation;
//! the text is only built when `/v1/metrics` is scraped.
//!
//! Compatibility rule for the exposition (§8.3, last paragraph): the Go SDK (`kes metric`, MinIO's
//! KMS metrics) rejects a family without samples, and a counter or gauge family with more than one
//! sample other than the three per-status request counters. So every family written here has at
//! least one sample, and every gauge and histogram is a single unlabelled sample (or a single
//! labelled one, like `kes_build_info`). Labels that split a family into several samples (`code`,
//! `operation`, `path`, …) are used on counters only, and `/v1/metrics` leaves out the counters
//! that have them (`/v1/metrics?all` has everything).
//! That is why the keystore latency is one histogram family per operation
//! (`kes_keystore_get_duration_seconds`, …) rather than one family with an `operation` label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of `kes_http_response_time`, as in the Go server.
pub const BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 5.0, 10.0];

/// Upper bounds (seconds) of this server's finer histograms: requests here take tens of
/// microseconds, keystore calls from microseconds (disk) to seconds (a struggling Vault), so the
/// Go server's 10 ms first bucket would put nearly everything in one bucket.
pub const FINE_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A Prometheus histogram of durations. Buckets are stored non-cumulatively (one atomic add per
/// observation, plus one for the sum); the count is derived from them when rendering, so the
/// `+Inf` bucket and `_count` always agree.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// One per bound, plus the overflow bucket (above the last bound).
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds_ns
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(self.bounds_ns.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the family (HELP, TYPE, buckets, sum, count) with one unlabelled sample.
    pub fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        if let Some(overflow) = self.buckets.last() {
            cumulative += overflow.load(Ordering::Relaxed);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The request metrics of the API.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by status code (index = code, 100..=599).
    by_code: Box<[AtomicU64]>,
    pub active: AtomicU64,
    /// `kes_http_response_time`: the Go server's histogram (buckets from 10 ms).
    response_time: Histogram,
    /// `kes_http_request_duration_seconds`: the same observations with finer buckets.
    request_duration: Histogram,
    /// Audit events written to stdout or to `/v1/log/audit` subscribers.
    pub audit_events: AtomicU64,
    /// Audit records not written because clients without a policy exceeded
    /// `log.audit_unknown_rate`.
    pub audit_dropped: AtomicU64,
    /// Error log records written to `/v1/log/error` subscribers.
    pub error_events: AtomicU64,
    /// Error log records by level (index: 0 error, 1 warn, 2 info, 3 debug, 4 trace).
    log_records: [AtomicU64; 5],
    /// notAfter (Unix seconds) of the server's TLS certificate in use; [`UNKNOWN`] when unknown.
    server_cert_not_after: AtomicI64,
    /// Key versions (docs/key-versions.md §8).
    pub versions: VersionMetrics,
}

/// Counters of key versions: rotations and retirement steps, and which version decrypts used.
#[derive(Debug, Default)]
pub struct VersionMetrics {
    pub rotations: AtomicU64,
    pub retired: AtomicU64,
    pub restored: AtomicU64,
    pub destroyed: AtomicU64,
    /// Decrypts that named their version.
    pub decrypt_explicit: AtomicU64,
    /// Decrypts without version that a version ≥ 2 decrypted (found by the iv's hint).
    pub decrypt_hinted: AtomicU64,
    /// Decrypts without version that version 1 decrypted.
    pub decrypt_v1: AtomicU64,
    /// Decrypts refused because only a retired version authenticates the ciphertext.
    pub decrypt_retired: AtomicU64,
}

impl VersionMetrics {
    /// Writes the `kes_key_*` families (single series each).
    pub fn write(&self, out: &mut String) {
        for (name, help, c) in [
            (
                "kes_key_rotations_total",
                "Number of key rotations made through this server.",
                &self.rotations,
            ),
            (
                "kes_key_versions_retired_total",
                "Number of key versions retired through this server.",
                &self.retired,
            ),
            (
                "kes_key_versions_restored_total",
                "Number of retired key versions restored through this server.",
                &self.restored,
            ),
            (
                "kes_key_versions_destroyed_total",
                "Number of retired key versions destroyed through this server.",
                &self.destroyed,
            ),
            (
                "kes_key_decrypt_explicit_version_total",
                "Number of decrypts that named the key version.",
                &self.decrypt_explicit,
            ),
            (
                "kes_key_decrypt_hinted_version_total",
                "Number of decrypts without a version that a rotated version (2 or later) decrypted.",
                &self.decrypt_hinted,
            ),
            (
                "kes_key_decrypt_version_one_total",
                "Number of decrypts without a version that version 1 decrypted (every ciphertext made before the first rotation).",
                &self.decrypt_v1,
            ),
            (
                "kes_key_decrypt_retired_total",
                "Number of decrypts refused because they need a retired key version (data not yet re-wrapped).",
                &self.decrypt_retired,
            ),
        ] {
            counter(out, name, help, c.load(Ordering::Relaxed));
        }
    }
}

/// `server_cert_not_after` before a certificate is loaded (or when it cannot be read).
const UNKNOWN: i64 = i64::MIN;

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            by_code: (0..600).map(|_| AtomicU64::new(0)).collect(),
            active: AtomicU64::new(0),
            response_time: Histogram::new(&BUCKETS),
            request_duration: Histogram::new(&FINE_BUCKETS),
            audit_events: AtomicU64::new(0),
            audit_dropped: AtomicU64::new(0),
            error_events: AtomicU64::new(0),
            log_records: Default::default(),
            server_cert_not_after: AtomicI64::new(UNKNOWN),
            versions: VersionMetrics::default(),
        }
    }
}

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl Metrics {
    /// Records one answered request of a counted route (key, policy and identity APIs).
    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.by_code.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.response_time.observe(elapsed);
        self.request_duration.observe(elapsed);
    }

    /// Requests answered with `status`.
    pub fn count_of(&self, status: u16) -> u64 {
        self.by_code
            .get(usize::from(status))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one error log record.
    pub fn log_record(&self, level: log::Level) {
        let i = level as usize - 1;
        if let Some(c) = self.log_records.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the notAfter (Unix seconds) of the server certificate now in use (at start-up and
    /// whenever the TLS configuration is rebuilt); `None` when it could not be read.
    pub fn set_server_certificate_not_after(&self, not_after: Option<i64>) {
        self.server_cert_not_after
            .store(not_after.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// The notAfter recorded by [`Metrics::set_server_certificate_not_after`].
    pub fn server_certificate_not_after(&self) -> Option<i64> {
        let t = self.server_cert_not_after.load(Ordering::Relaxed);
        (t != UNKNOWN).then_some(t)
    }

    /// Writes `kes_server_certificate_expiry_seconds`: seconds from `now` (Unix seconds) to the
    /// notAfter of the server certificate, negative once it has expired. One unlabelled sample,
    /// so MinIO's client library reads it; no family at all while the time is unknown (the
    /// library refuses a family without samples).
    pub fn write_certificate(&self, out: &mut String, now: i64) {
        if let Some(not_after) = self.server_certificate_not_after() {
            gauge(
                out,
                "kes_server_certificate_expiry_seconds",
                "Seconds until the server's TLS certificate expires (the earliest notAfter of the certificates in tls.cert); negative once expired.",
                not_after.saturating_sub(now) as f64,
            );
        }
    }

    /// Writes the Go server's request and log families, plus the finer request histogram and
    /// the log record counts.
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
        self.response_time.write(
            out,
            "kes_http_response_time",
            "Histogram of request response times spawning from 10ms to 10s.",
        );
        self.request_duration.write(
            out,
            "kes_http_request_duration_seconds",
            "Time to process a key, policy or identity request, from the complete request to the reply (finer buckets than kes_http_response_time).",
        );
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
        counter(
            out,
            "kes_log_audit_dropped_total",
            "Number of audit records of clients without a policy not written because they exceeded log.audit_unknown_rate.",
            self.audit_dropped.load(Ordering::Relaxed),
        );
        let name = "kes_log_records_total";
        let _ = writeln!(
            out,
            "# HELP {name} Number of error log records written, by level.\n# TYPE {name} counter"
        );
        for (level, c) in LEVELS.iter().zip(self.log_records.iter()) {
            let _ = writeln!(
                out,
                "{name}{{level=\"{level}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// A keystore operation, as counted by the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreOp {
    Create,
    Get,
    Delete,
    List,
    Status,
}

impl KeystoreOp {
    pub const ALL: [KeystoreOp; 5] = [
        KeystoreOp::Create,
        KeystoreOp::Get,
        KeystoreOp::Delete,
        KeystoreOp::List,
        KeystoreOp::Status,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeystoreOp::Create => "create",
            KeystoreOp::Get => "get",
            KeystoreOp::Delete => "delete",
            KeystoreOp::List => "list",
            KeystoreOp::Status => "status",
        }
    }
}

/// How a keystore call failed (not-found and already-exists are answers, not failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreFailure {
    Unreachable,
    Failed,
}

/// Latency histogram and failure counts of every keystore call, by operation.
#[derive(Debug)]
pub struct KeystoreMetrics {
    latency: [Histogram; 5],
    /// [operation][0 = unreachable, 1 = failed]
    failures: [[AtomicU64; 2]; 5],
}

impl Default for KeystoreMetrics {
    fn default() -> Self {
        KeystoreMetrics {
            latency: std::array::from_fn(|_| Histogram::new(&FINE_BUCKETS)),
            failures: Default::default(),
        }
    }
}

impl KeystoreMetrics {
    /// Records one keystore call.
    pub fn observe(&self, op: KeystoreOp, elapsed: Duration, failure: Option<KeystoreFailure>) {
        let i = op as usize;
        self.latency[i].observe(elapsed);
        if let Some(f) = failure {
            self.failures[i][f as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: KeystoreOp) -> u64 {
        self.latency[op as usize].count()
    }

    pub fn write(&self, out: &mut String) {
        for op in KeystoreOp::ALL {
            let name = format!("kes_keystore_{}_duration_seconds", op.name());
            let help = format!(
                "Duration of keystore {} calls (every call, failed ones included).",
                op.name()
            );
            self.latency[op as usize].write(out, &name, &help);
        }
        let name = "kes_keystore_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Number of keystore calls that failed, by operation and reason (unreachable: network, timeout, sealed; failed: the keystore refused or broke). Not-found and already-exists answers are not errors.\n# TYPE {name} counter"
        );
        for op in KeystoreOp::ALL {
            for (j, reason) in ["unreachable", "failed"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{operation=\"{}\",reason=\"{reason}\"}} {}",
                    op.name(),
                    self.failures[op as usize][j].load(Ordering::Relaxed)
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_agree_with_count() {
        let h = Histogram::new(&BUCKETS);
        for ms in [1u64, 10, 11, 600, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.write(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.05\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"1\"} 4\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"10\"} 4\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("h_count 5\n"), "{out}");
        assert!(out.contains("h_sum 20.622\n"), "{out}");
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn empty_request_families_still_have_a_sample() {
        let m = Metrics::default();
        let mut out = String::new();
        m.write_requests(&mut out);
        assert!(out.contains("kes_http_request_success{code=\"200\"} 0\n"));
        assert!(out.contains("kes_http_request_error{code=\"400\"} 0\n"));
        assert!(out.contains("kes_http_request_failure{code=\"500\"} 0\n"));
        m.observe(404, Duration::from_micros(50));
        m.log_record(log::Level::Warn);
        let mut out = String::new();
        m.write_requests(&mut out);
        assert!(out.contains("kes_http_request_error{code=\"404\"} 1\n"));
        assert!(!out.contains("kes_http_request_error{code=\"400\"}"));
        assert!(out.contains("kes_log_records_total{level=\"warn\"} 1\n"));
        assert!(out.contains("kes_http_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
    }

    #[test]
    fn certificate_expiry_gauge() {
        let m = Metrics::default();
        let mut out = String::new();
        m.write_certificate(&mut out, 1_000);
        assert_eq!(out, "", "no family while the time is unknown");
        m.set_server_certificate_not_after(Some(1_000 + 86_400));
        m.write_certificate(&mut out, 1_000);
        assert!(
            out.ends_with(
                "# TYPE kes_server_certificate_expiry_seconds gauge\nkes_server_certificate_expiry_seconds 86400\n"
            ),
            "{out}"
        );
        let mut out = String::new();
        m.write_certificate(&mut out, 1_000 + 86_400 + 60);
        assert!(
            out.ends_with("kes_server_certificate_expiry_seconds -60\n"),
            "{out}"
        );
        m.set_server_certificate_not_after(None);
        assert_eq!(m.server_certificate_not_after(), None);
    }
}
