//! `kes metric`: a live view of a server's request rate, error rate and latency.
//!
//! The server exposes counters (Prometheus text format, `/v1/metrics`, §8.3); rates are the
//! difference between two scrapes divided by the time between them. On a terminal the view is
//! redrawn in place every interval; with `--json` one JSON object per interval is printed. When
//! standard output is not a terminal (and without `--json`), the Go `kes` command's output: one
//! JSON object of the raw counters per scrape, the first at once ([`GoMetric`]).
//!
//! Latency comes from the `kes_http_response_time` histogram: the mean is exact (sum / count);
//! the percentiles are reported as the upper bound of the bucket they fall in ("p99 ≤ 50ms"),
//! which is what a histogram knows, rather than an interpolated guess.

use crate::cli::Error;
use crate::cli::client::{Client, ClientOpts};
use crate::cli::output::{Output, Style, Table, human_duration};
use serde::Serialize;
use std::time::{Duration, Instant};
use ureq::http::Method;

/// The long help of `kes metric` (also set on the command's entry in [`crate::cli::Command`]).
pub const LONG_ABOUT: &str = "Watch a server's request rate, error rate and latency.\n\n\
Every RATE, kes reads the server's metrics and shows what happened since the last reading: \
requests per second (by class of status code), the share of requests that failed, and the \
response time. On a terminal the view is refreshed in place until you press Ctrl-C; with \
--json one JSON object is printed per interval. Only key, policy and identity API calls are \
counted.\n\n\
When standard output is not a terminal (and without --json), the Go kes command's output is \
printed instead: one JSON object of the server's counters per scrape (kes_http_request_success, \
kes_http_response_time, kes_system_up_time in nanoseconds, ...), the first one at once.";

#[derive(clap::Args, Debug)]
#[command(
    long_about = LONG_ABOUT,
    after_help = "Examples:\n  kes metric\n  kes metric --rate 1s\n  kes metric --rate 10s --count 6 --json"
)]
pub struct MetricArgs {
    /// How often to read the metrics: a duration like 1s, 5s or 1m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_rate)]
    pub rate: Duration,
    /// Stop after this many intervals, or scrapes without a terminal (default: run until
    /// interrupted).
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

fn parse_rate(text: &str) -> Result<Duration, String> {
    let d = crate::config::duration::parse(text)?;
    if d < Duration::from_millis(100) {
        return Err("the rate must be at least 100ms".into());
    }
    Ok(d)
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text exposition format (version 0.0.4). Comments and malformed lines
/// are skipped: a line this parser does not understand must not stop the view.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                None => return None,
                _ => {}
            }
            let mut label = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                label.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return None,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
            labels.push((label.trim().to_string(), value));
        }
        rest = &after[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The figures of one scrape that the view needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub success: f64,
    pub error: f64,
    pub failure: f64,
    pub active: f64,
    pub uptime: f64,
    /// Cumulative histogram buckets (upper bound in seconds, count), sorted by bound.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Snapshot {
    pub fn from_samples(samples: &[Sample]) -> Snapshot {
        let mut s = Snapshot::default();
        for sample in samples {
            match sample.name.as_str() {
                "kes_http_request_success" => s.success += sample.value,
                "kes_http_request_error" => s.error += sample.value,
                "kes_http_request_failure" => s.failure += sample.value,
                "kes_http_request_active" => s.active = sample.value,
                "kes_system_up_time" => s.uptime = sample.value,
                "kes_http_response_time_bucket" => {
                    if let Some(le) = sample.label("le").and_then(|le| match le {
                        "+Inf" => Some(f64::INFINITY),
                        le => le.parse().ok(),
                    }) {
                        s.buckets.push((le, sample.value));
                    }
                }
                "kes_http_response_time_count" => s.count = sample.value,
                "kes_http_response_time_sum" => s.sum = sample.value,
                _ => {}
            }
        }
        s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        s
    }
}

/// One scrape as the Go `kes metric` prints it without a terminal: the counters summed over
/// status codes, the response-time histogram as cumulative counts by upper bound in
/// nanoseconds (without +Inf), the uptime in nanoseconds (whole seconds).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GoMetric {
    pub kes_http_request_success: u64,
    pub kes_http_request_error: u64,
    pub kes_http_request_failure: u64,
    pub kes_http_request_active: u64,
    pub kes_log_audit_events: u64,
    pub kes_log_error_events: u64,
    pub kes_http_response_time: std::collections::BTreeMap<String, u64>,
    pub kes_system_up_time: u64,
    pub kes_system_num_cpu: u64,
    pub kes_system_num_cpu_used: u64,
    pub kes_system_num_threads: u64,
    pub kes_system_mem_heap_used: u64,
    pub kes_system_mem_heap_objects: u64,
    pub kes_system_mem_stack_used: u64,
}

impl GoMetric {
    pub fn from_samples(samples: &[Sample]) -> GoMetric {
        let count = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v as u64
            } else {
                0
            }
        };
        let mut m = GoMetric::default();
        for sample in samples {
            let v = count(sample.value);
            match sample.name.as_str() {
                "kes_http_request_success" => m.kes_http_request_success += v,
                "kes_http_request_error" => m.kes_http_request_error += v,
                "kes_http_request_failure" => m.kes_http_request_failure += v,
                "kes_http_request_active" => m.kes_http_request_active = v,
                "kes_log_audit_events" => m.kes_log_audit_events = v,
                "kes_log_error_events" => m.kes_log_error_events = v,
                "kes_system_up_time" => m.kes_system_up_time = v.saturating_mul(1_000_000_000),
                "kes_system_num_cpu" => m.kes_system_num_cpu = v,
                "kes_system_num_cpu_used" => m.kes_system_num_cpu_used = v,
                "kes_system_num_threads" => m.kes_system_num_threads = v,
                "kes_system_mem_heap_used" => m.kes_system_mem_heap_used = v,
                "kes_system_mem_heap_objects" => m.kes_system_mem_heap_objects = v,
                "kes_system_mem_stack_used" => m.kes_system_mem_stack_used = v,
                "kes_http_response_time_bucket" => {
                    if let Some(le) = sample
                        .label("le")
                        .and_then(|le| le.parse::<f64>().ok())
                        .filter(|le| le.is_finite())
                    {
                        let nanos = (le * 1e9) as i64;
                        m.kes_http_response_time.insert(nanos.to_string(), v);
                    }
                }
                _ => {}
            }
        }
        m
    }
}

/// What happened between two scrapes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Interval {
    /// End of the interval (RFC 3339).
    pub time: String,
    pub endpoint: String,
    /// Length of the interval in seconds.
    pub interval: f64,
    /// Requests answered in the interval: all, 2xx, 4xx, 5xx.
    pub requests: u64,
    pub success: u64,
    pub errors: u64,
    pub failures: u64,
    pub requests_per_second: f64,
    pub errors_per_second: f64,
    pub failures_per_second: f64,
    /// Share of requests answered with 4xx or 5xx (0 to 1); null without requests.
    pub error_ratio: Option<f64>,
    /// Mean response time in seconds; null without requests.
    pub latency_mean: Option<f64>,
    /// Upper bounds (seconds) of the histogram buckets holding the 50th and 99th percentile;
    /// null without requests, +Inf reported as null too (above the largest bucket).
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
    /// Requests in progress at the end of the interval.
    pub active: f64,
    /// Server uptime in seconds.
    pub uptime: f64,
}

/// Difference of two counter readings; a smaller new value means the server restarted, and the
/// new value is then what happened since (as Prometheus' rate() treats a reset).
fn delta(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(b, _)| b.total_cmp(le).is_eq())
                .map_or(0.0, |(_, n)| *n);
            (*le, delta(old, *n))
        })
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    deltas
        .iter()
        .find(|(_, n)| *n >= rank)
        .map(|(le, _)| *le)
        .filter(|le| le.is_finite())
}

impl Interval {
    pub fn between(
        before: &Snapshot,
        after: &Snapshot,
        elapsed: Duration,
        endpoint: &str,
    ) -> Interval {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let success = delta(before.success, after.success);
        let errors = delta(before.error, after.error);
        let failures = delta(before.failure, after.failure);
        let requests = success + errors + failures;
        let count = delta(before.count, after.count);
        let sum = delta(before.sum, after.sum);
        let round = |f: f64| f.round().max(0.0) as u64;
        Interval {
            time: crate::api::json::go_time(Some(time::OffsetDateTime::now_utc())),
            endpoint: endpoint.to_string(),
            interval: secs,
            requests: round(requests),
            success: round(success),
            errors: round(errors),
            failures: round(failures),
            requests_per_second: requests / secs,
            errors_per_second: errors / secs,
            failures_per_second: failures / secs,
            error_ratio: (requests > 0.0).then(|| (errors + failures) / requests),
            latency_mean: (count > 0.0).then(|| sum / count),
            latency_p50: quantile_bound(&before.buckets, &after.buckets, 0.5),
            latency_p99: quantile_bound(&before.buckets, &after.buckets, 0.99),
            active: after.active,
            uptime: after.uptime,
        }
    }
}

fn scrape_samples(client: &Client) -> Result<(Vec<Sample>, Instant), Error> {
    let body = client
        .call(Method::GET, "/v1/metrics", None)
        .map_err(|e| e.context("failed to fetch metrics"))?;
    let at = Instant::now();
    let text = String::from_utf8_lossy(&body);
    Ok((parse_prometheus(&text), at))
}

fn scrape(client: &Client) -> Result<(Snapshot, Instant), Error> {
    let (samples, at) = scrape_samples(client)?;
    Ok((Snapshot::from_samples(&samples), at))
}

/// Without a terminal: the Go command's lines, one per scrape, the first at once.
fn go_lines(client: &Client, out: &Output, args: &MetricArgs) -> Result<(), Error> {
    let mut shown = 0u64;
    loop {
        let started = Instant::now();
        let (samples, _) = scrape_samples(client)?;
        out.print_json(&GoMetric::from_samples(&samples))?;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        std::thread::sleep(args.rate.saturating_sub(started.elapsed()));
    }
}

pub fn run(args: MetricArgs) -> Result<(), Error> {
    let client = Client::new(&args.opts)?;
    let out = args.opts.output();
    if out.plain() {
        return go_lines(&client, &out, &args);
    }
    let live = !out.json && out.terminal;
    let (mut before, mut at) = scrape(&client)?;
    let mut endpoint = client.current_endpoint().to_string();
    let mut lines_drawn = 0;
    if live {
        let first = format!(
            "{}  every {}  (Ctrl-C to stop)\n\ncollecting the first {} ...\n",
            out.paint(Style::Bold, &endpoint),
            human_duration(args.rate),
            human_duration(args.rate)
        );
        lines_drawn = first.lines().count();
        out.print(&first)?;
    }
    let mut shown = 0u64;
    loop {
        std::thread::sleep(args.rate.saturating_sub(at.elapsed()));
        let (after, now) = scrape(&client)?;
        let current = client.current_endpoint().to_string();
        if current != endpoint {
            // Another server answered: its counters are not comparable with the last reading.
            endpoint = current;
            before = after;
            at = now;
            continue;
        }
        let interval = Interval::between(&before, &after, now - at, &endpoint);
        if out.json {
            out.print_json(&interval)?;
        } else {
            let frame = render(&out, &interval, args.rate);
            let mut text = String::new();
            if live && lines_drawn > 0 {
                // Back to the top of the previous frame and clear to the end of the screen.
                text.push_str(&format!("\x1b[{lines_drawn}A\r\x1b[J"));
            }
            text.push_str(&frame);
            lines_drawn = frame.lines().count();
            out.print(&text)?;
        }
        before = after;
        at = now;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

fn per_second(n: f64) -> String {
    if n >= 100.0 {
        format!("{n:.0}/s")
    } else {
        format!("{n:.1}/s")
    }
}

fn seconds(s: f64) -> String {
    human_duration(Duration::from_secs_f64(s.max(0.0)))
}

fn render(out: &Output, i: &Interval, rate: Duration) -> String {
    let mut t = Table::new();
    t.row([
        out.paint(Style::Bold, "Requests"),
        format!(
            "{}   2xx {}  4xx {}  5xx {}",
            per_second(i.requests_per_second),
            per_second(i.requests_per_second - i.errors_per_second - i.failures_per_second),
            per_second(i.errors_per_second),
            per_second(i.failures_per_second)
        ),
    ]);
    let ratio = match i.error_ratio {
        Some(r) => {
            let text = format!("{:.1}%", r * 100.0);
            let style = if i.failures > 0 {
                Style::Red
            } else if r > 0.0 {
                Style::Yellow
            } else {
                Style::Green
            };
            out.paint(style, &text)
        }
        None => "-".into(),
    };
    t.row([out.paint(Style::Bold, "Errors"), ratio]);
    let bound = |b: Option<f64>| match b {
        Some(b) => format!("≤ {}", seconds(b)),
        None if i.requests > 0 => "> 10s".into(),
        None => "-".into(),
    };
    t.row([
        out.paint(Style::Bold, "Latency"),
        match i.latency_mean {
            Some(mean) => format!(
                "mean {}   p50 {}   p99 {}",
                seconds(mean),
                bound(i.latency_p50),
                bound(i.latency_p99)
            ),
            None => "-".into(),
        },
    ]);
    t.row([out.paint(Style::Bold, "Active"), format!("{:.0}", i.active)]);
    t.row([out.paint(Style::Bold, "Uptime"), seconds(i.uptime)]);
    format!(
        "{}  every {}  (Ctrl-C to stop)\n\n{}",
        out.paint(Style::Bold, &i.endpoint),
        human_duration(rate),
        t.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE_1: &str = r#"# HELP kes_http_request_success Number of requests.
# TYPE kes_http_request_success counter
kes_http_request_success{code="200"} 10
kes_http_request_error{code="404"} 2
kes_http_request_error{code="403"} 1
kes_http_request_failure{code="500"} 0
kes_http_request_active 1
kes_http_response_time_bucket{le="0.01"} 12
kes_http_response_time_bucket{le="0.05"} 13
kes_http_response_time_bucket{le="+Inf"} 13
kes_http_response_time_sum 0.05
kes_http_response_time_count 13
kes_system_up_time 42.5
"#;

    const SCRAPE_2: &str = r#"kes_http_request_success{code="200"} 90
kes_http_request_error{code="404"} 12
kes_http_request_error{code="403"} 1
kes_http_request_failure{code="502"} 10
kes_http_request_active 0
kes_http_response_time_bucket{le="0.01"} 100
kes_http_response_time_bucket{le="0.05"} 112
kes_http_response_time_bucket{le="+Inf"} 113
kes_http_response_time_sum 1.05
kes_http_response_time_count 113
kes_system_up_time 52.5
"#;

    #[test]
    fn prometheus_lines() {
        let s = parse_prometheus(
            "a 1\nb{x=\"1\",y=\"q\\\"\\\\\"} 2.5 1700000000\n# c 3\nd{} +Inf\nbad{x=\"1\" 4\n{x=\"\"} 5\ne nan?\nf{le=\"0.1\",} 6\n",
        );
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d", "f"]);
        assert_eq!(s[1].label("y"), Some("q\"\\"));
        assert_eq!(s[1].value, 2.5);
        assert!(s[2].value.is_infinite());
        assert_eq!(s[3].label("le"), Some("0.1"));
    }

    #[test]
    fn rates_between_scrapes() {
        let a = Snapshot::from_samples(&parse_prometheus(SCRAPE_1));
        let b = Snapshot::from_samples(&parse_prometheus(SCRAPE_2));
        assert_eq!((a.success, a.error, a.failure), (10.0, 3.0, 0.0));
        let i = Interval::between(&a, &b, Duration::from_secs(10), "https://x");
        assert_eq!(
            (i.requests, i.success, i.errors, i.failures),
            (100, 80, 10, 10)
        );
        assert_eq!(i.requests_per_second, 10.0);
        assert_eq!(i.error_ratio, Some(0.2));
        assert_eq!(i.latency_mean, Some(0.01));
        assert_eq!(i.latency_p50, Some(0.01));
        // 99 of 100 new requests are within 50ms; the 100th is beyond every bucket.
        assert_eq!(i.latency_p99, Some(0.05));
        assert_eq!(i.uptime, 52.5);
        // No requests: no ratio and no latency.
        let idle = Interval::between(&b, &b, Duration::from_secs(5), "https://x");
        assert_eq!(
            (idle.requests, idle.error_ratio, idle.latency_mean),
            (0, None, None)
        );
        assert_eq!(idle.latency_p99, None);
        // A restarted server: counters start again from zero.
        let i = Interval::between(&b, &a, Duration::from_secs(1), "https://x");
        assert_eq!(i.requests, 13);
        // The JSON form.
        let v = serde_json::to_value(&idle).unwrap();
        assert!(v["error_ratio"].is_null());
        assert_eq!(v["requests"], 0);
    }

    #[test]
    fn go_metric_lines() {
        let m = GoMetric::from_samples(&parse_prometheus(SCRAPE_2));
        assert_eq!(
            (
                m.kes_http_request_success,
                m.kes_http_request_error,
                m.kes_http_request_failure
            ),
            (90, 13, 10)
        );
        assert_eq!(m.kes_system_up_time, 52_000_000_000);
        let line = serde_json::to_string(&m).unwrap();
        assert!(
            line.starts_with(r#"{"kes_http_request_success":90,"kes_http_request_error":13,"#),
            "{line}"
        );
        assert!(
            line.contains(r#""kes_http_response_time":{"10000000":100,"50000000":112},"#),
            "{line}"
        );
    }

    #[test]
    fn rate_flag() {
        assert_eq!(parse_rate("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_rate("10ms").is_err());
        assert!(parse_rate("5").is_err());
    }
}
