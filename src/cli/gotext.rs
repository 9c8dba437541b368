//! What the Go `kes` command prints when its standard output is not a terminal, so that the
//! scripts operators wrote around it (`kes key ls | tail -n +2`, `kes status | awk …`) keep
//! working with this one. Every format here was observed by running the Go command (never by
//! reading its source), and `tests/it/cli_compat.rs` compares the two side by side.
//!
//! Where the Go command's output is visibly wrong, it is fixed here, and the fix is listed in the
//! README ("Command line") and in the allow-list of `tests/it/cli_compat.rs`:
//! * `key info`, `identity of`, `identity` (bare) and the JSON of `key dek|encrypt|decrypt` end
//!   without a newline in Go; here every output ends with one;
//! * `key ls --json` (and `policy ls`, `identity ls`) print the JSON *and* the table in Go;
//!   here only the JSON;
//! * `policy ls` is headed `Key` in Go; here `Policy` (as Go's own `kes ls -p`);
//! * an empty list is `null` with `--json` in Go; here `[]`.
//!
//! The helpers take the server's JSON as [`Value`] and read it leniently: a missing field prints
//! as the Go command prints a zero value.

use crate::cli::output::{Output, Style, sanitize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A string field of a JSON object, or "".
fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Go's `time.Duration.String()`: `0s`, `999ns`, `1.5µs`, `12.3ms`, `1m1.2s`, `1h0m0s`.
pub fn duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".into(),
            1..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (frac, int) = fraction(u, prec);
        out.push_str(&format!("{int}{frac}{unit}"));
    } else {
        let (frac, secs) = fraction(u, 9);
        out.push_str(&format!("{}{frac}s", secs % 60));
        u = secs / 60;
        if u > 0 {
            out.insert_str(0, &format!("{}m", u % 60));
            u /= 60;
            if u > 0 {
                out.insert_str(0, &format!("{u}h"));
            }
        }
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// The fraction of `v` below 10^`prec` as Go prints it (`.5`, nothing for zero; trailing zeros
/// dropped), and `v / 10^prec`.
fn fraction(v: u64, prec: u32) -> (String, u64) {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (String::new(), int);
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (format!(".{}", digits.trim_end_matches('0')), int)
}

/// Go's `Duration.Round(m)`: to the nearest multiple of `m`, halves away from zero.
pub fn round(nanos: i64, m: i64) -> i64 {
    if m <= 0 {
        return nanos;
    }
    if nanos < 0 {
        return -round(-nanos, m);
    }
    let r = nanos % m;
    if r + r < m {
        nanos - r
    } else {
        nanos + (m - r)
    }
}

/// The latency column of `kes log`: the response time rounded to three or so significant
/// digits (1.2s, 123ms, 1.1ms, 543µs), below 10µs as it is.
pub fn log_latency(nanos: i64) -> String {
    const MS: i64 = 1_000_000;
    const US: i64 = 1_000;
    let rounded = match nanos {
        n if n >= 1_000 * MS => round(n, 100 * MS),
        n if n >= 10 * MS => round(n, MS),
        n if n >= MS => round(n, 100 * US),
        n if n >= 10 * US => round(n, US),
        n => n,
    };
    duration(rounded)
}

/// A number of bytes in decimal units with one decimal (`0B`, `999.0B`, `1.5KB`, `12.3GB`); the
/// decimal is the remainder rounded on its own, so 999 999 bytes are `999.0KB`, as in Go.
pub fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1_000_000_000_000_000, "PB"),
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "KB"),
        (1, "B"),
    ];
    if bytes == 0 {
        return "0B".into();
    }
    let (base, unit) = UNITS
        .iter()
        .copied()
        .find(|(base, _)| bytes >= *base)
        .unwrap_or((1, "B"));
    let (m, r) = (bytes / base, bytes % base);
    if r == 0 {
        return format!("{m}.0{unit}");
    }
    let frac = format!("{:.1}", r as f64 / base as f64);
    format!("{m}{}{unit}", &frac[1..])
}

/// The uptime of `kes status`: `59 seconds`, `60 minutes`, `24 hours`, `2 days 8 hours`
/// (rounded, and never in a larger unit before it is exceeded).
pub fn uptime(secs: u64) -> String {
    let d = secs as f64;
    if secs > 86_400 {
        let days = (d / 86_400.0).round();
        let hours = ((secs % 86_400) as f64 / 3_600.0).round();
        format!("{days} days {hours} hours")
    } else if secs > 3_600 {
        format!("{} hours", (d / 3_600.0).round())
    } else if secs > 60 {
        format!("{} minutes", (d / 60.0).round())
    } else {
        format!("{secs} seconds")
    }
}

/// How a date is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// In the offset the server sent (UTC for every server there is).
    AsSent,
    /// In the local time zone (`kes policy info`).
    Local,
}

fn parse_time(rfc3339: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(rfc3339, &Rfc3339).ok()
}

fn in_zone(t: OffsetDateTime, zone: Zone) -> OffsetDateTime {
    match zone {
        Zone::AsSent => t,
        Zone::Local => crate::sys::local_utc_offset(t.unix_timestamp())
            .and_then(|s| i32::try_from(s).ok())
            .and_then(|s| time::UtcOffset::from_whole_seconds(s).ok())
            .map_or(t, |offset| t.to_offset(offset)),
    }
}

/// `2024-01-12 10:39:20`; a missing time is Go's zero time, `0001-01-01 00:00:00`; an
/// unparsable one is shown as it is (without control characters).
pub fn date(rfc3339: &str, zone: Zone) -> String {
    if rfc3339.is_empty() {
        return "0001-01-01 00:00:00".into();
    }
    match parse_time(rfc3339) {
        Some(t) => crate::gojson::date_time(in_zone(t, zone), ' '),
        None => sanitize(rfc3339),
    }
}

/// `10:39:20` in the offset the server sent; a missing time is `00:00:00`.
pub fn clock(rfc3339: &str) -> String {
    if rfc3339.is_empty() {
        return "00:00:00".into();
    }
    match parse_time(rfc3339) {
        Some(t) => format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        None => sanitize(rfc3339),
    }
}

/// A label padded as the Go command pads it (11 characters and a space), styled on a terminal.
fn label(out: &Output, style: Style, name: &str) -> String {
    out.paint(style, &format!("{name:<11}")) + " "
}

/// A list with its header (`Key`, `Policy`, `Identity`) on the first line; nothing at all when
/// it is empty. On a terminal the header is underlined.
pub fn list(out: &Output, header: &str, names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let mut text = out.paint(Style::Underline, header);
    text.push('\n');
    for name in names {
        text.push_str(&sanitize(name));
        text.push('\n');
    }
    text
}

/// `kes key info`: name, algorithm, creation date, creator.
pub fn key_info(out: &Output, v: &Value) -> String {
    let mut s = format!(
        "{}{}\n{}{}\n{}{}\n{}{}\n",
        label(out, Style::Dim, "Name"),
        out.paint(Style::Blue, &sanitize(text(v, "name"))),
        label(out, Style::Dim, "Algorithm"),
        sanitize(text(v, "algorithm")),
        label(out, Style::Dim, "Date"),
        date(text(v, "created_at"), Zone::AsSent),
        label(out, Style::Dim, "Owner"),
        sanitize(text(v, "created_by")),
    );
    // A rotated key (this server's extension): the current version, then one line per version,
    // newest first. A key never rotated prints the Go command's four lines only.
    if let Some(versions) = v.get("versions").and_then(Value::as_array) {
        s += &format!(
            "{}{}\n",
            label(out, Style::Dim, "Version"),
            sanitize(text(v, "version"))
        );
        for ver in versions {
            let state = if ver.get("destroyed").and_then(Value::as_bool) == Some(true) {
                format!(
                    "destroyed (retired {} by {})",
                    date(text(ver, "retired_at"), Zone::AsSent),
                    sanitize(text(ver, "retired_by"))
                )
            } else if !text(ver, "retired_at").is_empty() {
                format!(
                    "{} created {} by {}, retired {} by {}",
                    sanitize(text(ver, "algorithm")),
                    date(text(ver, "created_at"), Zone::AsSent),
                    sanitize(text(ver, "created_by")),
                    date(text(ver, "retired_at"), Zone::AsSent),
                    sanitize(text(ver, "retired_by"))
                )
            } else {
                format!(
                    "{} created {} by {}{}",
                    sanitize(text(ver, "algorithm")),
                    date(text(ver, "created_at"), Zone::AsSent),
                    sanitize(text(ver, "created_by")),
                    if text(ver, "version") == text(v, "version") {
                        " (current)"
                    } else {
                        ""
                    }
                )
            };
            s += &format!(
                "{}{state}\n",
                label(
                    out,
                    Style::Dim,
                    &format!("  v{}", sanitize(text(ver, "version")))
                )
            );
        }
    }
    s
}

/// `kes policy info`: name, creation date (local time), creator.
pub fn policy_info(out: &Output, v: &Value) -> String {
    format!(
        "{}{}\n{}{}\n{}{}\n",
        label(out, Style::Dim, "Name"),
        out.paint(Style::Blue, &sanitize(text(v, "name"))),
        label(out, Style::Dim, "Date"),
        date(text(v, "created_at"), Zone::Local),
        label(out, Style::Dim, "Created by"),
        sanitize(text(v, "created_by")),
    )
}

/// `kes identity info`: the admin's role, or the identity's policy, creation and creator.
pub fn identity_info(out: &Output, identity: &str, v: &Value) -> String {
    let bold_dim = Style::BoldDim;
    let mut s = format!(
        "{}{}\n",
        label(out, bold_dim, "Identity"),
        out.paint(Style::Blue, &sanitize(identity))
    );
    let admin = v.get("admin").and_then(Value::as_bool) == Some(true);
    let policy = match v.get("policy") {
        Some(Value::String(name)) => name.as_str(),
        Some(p @ Value::Object(_)) => text(p, "name"),
        _ => "",
    };
    if !admin {
        s.push_str(&format!(
            "{}{}\n",
            label(out, bold_dim, "Policy"),
            out.paint(Style::Yellow, &sanitize(policy))
        ));
    }
    s.push_str(&format!(
        "{}{}\n",
        label(out, bold_dim, "Created At"),
        date(text(v, "created_at"), Zone::AsSent)
    ));
    s.push_str(&format!(
        "{}{}\n",
        label(out, bold_dim, "Role"),
        if admin { "Admin" } else { "User" }
    ));
    if !admin {
        s.push_str(&format!(
            "{}{}\n",
            label(out, bold_dim, "Created By"),
            sanitize(text(v, "created_by"))
        ));
    }
    s
}

/// The patterns of a policy's allow or deny rules: object keys (current servers) or array items
/// (v0.22), sorted.
pub fn patterns(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// `kes policy show` on a terminal: the allow and deny rules, then creation date and creator.
pub fn policy_show(out: &Output, v: &Value) -> String {
    let mut s = String::new();
    for (field, title, style) in [
        ("allow", "Allow:", Style::Green),
        ("deny", "Deny:", Style::Red),
    ] {
        let rules = patterns(v.get(field));
        if rules.is_empty() {
            continue;
        }
        s.push_str(&out.paint(style, title));
        s.push('\n');
        for rule in rules {
            s.push_str(&format!("  · {}\n", sanitize(&rule)));
        }
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&format!(
        "{} {}\n{} {}\n",
        out.paint(Style::Cyan, "Created at:"),
        date(text(v, "created_at"), Zone::AsSent),
        out.paint(Style::Cyan, "Created by:"),
        sanitize(text(v, "created_by"))
    ));
    s
}

/// `kes policy show` without a terminal, and with `--json`: the policy as the Go command encodes
/// it (rules that are empty are left out; the name is not part of it).
#[derive(Debug, serde::Serialize)]
pub struct PolicyJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<std::collections::BTreeMap<String, serde_json::Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<std::collections::BTreeMap<String, serde_json::Map<String, Value>>>,
    created_at: String,
    created_by: String,
}

pub fn policy_json(v: &Value) -> PolicyJson {
    let rules = |field: &str| {
        let rules = patterns(v.get(field));
        (!rules.is_empty()).then(|| {
            rules
                .into_iter()
                .map(|r| (r, serde_json::Map::new()))
                .collect()
        })
    };
    PolicyJson {
        allow: rules("allow"),
        deny: rules("deny"),
        created_at: text(v, "created_at").to_string(),
        created_by: text(v, "created_by").to_string(),
    }
}

/// The host:port of an endpoint URL (`https://127.0.0.1:7373` → `127.0.0.1:7373`).
pub fn host_of(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .split('/')
        .next()
        .unwrap_or(endpoint)
}

/// A number field, leniently (floats are truncated; negative or wrong types are 0).
fn num(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(|n| {
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
        .unwrap_or(0)
}

/// The first line of `kes status`: `● 127.0.0.1:7373`.
pub fn status_head(out: &Output, endpoint: &str) -> String {
    format!(
        "{} {}\n",
        out.paint(Style::BoldGreen, "●"),
        out.paint(Style::BoldCyan, host_of(endpoint))
    )
}

/// `kes status`: version, uptime, latency of the request, OS, CPUs, memory.
pub fn status(out: &Output, endpoint: &str, latency_nanos: i64, v: &Value) -> String {
    let row = |name: &str, value: &str| -> String {
        let name = format!("  {name:<8}");
        format!("{} {value}\n", out.paint(Style::Dim, &name))
    };
    let mut s = status_head(out, endpoint);
    s.push_str(&row("Version", &sanitize(text(v, "version"))));
    s.push_str(&row("Uptime", &uptime(num(v, "uptime"))));
    s.push_str(&row("Latency", &duration(round(latency_nanos, 1_000_000))));
    s.push_str(&row("OS", &sanitize(text(v, "os"))));
    s.push_str(&row(
        "CPUs",
        &format!("{} {}", num(v, "num_cpu_used"), sanitize(text(v, "arch"))),
    ));
    s.push_str(&out.paint(Style::Dim, "  Memory  "));
    s.push('\n');
    s.push_str(&row("· Heap", &size(num(v, "mem_heap_used"))));
    s.push_str(&row("· Stack", &size(num(v, "mem_stack_used"))));
    s
}

/// `kes status --api`: a blank line and the route table, in the server's order.
pub fn api(out: &Output, routes: &Value) -> String {
    let mut s = String::from("\n");
    let head = format!("  {:<7} {:<28} {}", "Method", "API", "Timeout");
    s.push_str(&out.paint(Style::Underline, &head));
    s.push('\n');
    for r in routes.as_array().map(Vec::as_slice).unwrap_or_default() {
        let timeout = match r.get("timeout").and_then(Value::as_i64) {
            Some(t) if t > 0 => duration(t.saturating_mul(1_000_000_000)),
            _ => "Inf".to_string(),
        };
        let path = format!("{:<28}", sanitize(text(r, "path")));
        s.push_str(&format!(
            "  {:<7} {} {timeout}\n",
            sanitize(text(r, "method")),
            out.paint(Style::Blue, &path)
        ));
    }
    s
}

/// The header of `kes log` (the audit log).
pub fn audit_header(out: &Output) -> String {
    let head = format!(
        "{:<8}    {:<6}    {:<20}    {:<15}    {:<30}    {}",
        "Time", "Status", "Identity", "IP", "API", "Latency"
    );
    format!("{}\n", out.paint(Style::Underline, &head))
}

/// One audit event of `kes log`: time, status, identity (first 20 characters), IP, path,
/// response time.
pub fn audit_line(out: &Output, event: &Value) -> String {
    let request = event.get("request").unwrap_or(&Value::Null);
    let response = event.get("response").unwrap_or(&Value::Null);
    let code = response.get("code").and_then(Value::as_u64).unwrap_or(0);
    let code_text = format!("{code:<6}");
    let code_text = match code {
        200..=299 => out.paint(Style::Green, &code_text),
        0 => code_text,
        _ => out.paint(Style::Red, &code_text),
    };
    let identity: String = sanitize(text(request, "identity"))
        .chars()
        .take(20)
        .collect();
    let ip = match sanitize(text(request, "ip")) {
        ip if ip.is_empty() => "<unknown>".to_string(),
        ip => ip,
    };
    let path = format!("{:<30}", sanitize(text(request, "path")));
    let took = response.get("time").and_then(Value::as_i64).unwrap_or(0);
    format!(
        "{:<8}    {code_text}    {}    {ip:<15}    {}    {}\n",
        clock(text(event, "time")),
        out.paint(Style::Yellow, &identity),
        out.paint(Style::Blue, &path),
        log_latency(took)
    )
}

/// One error-log event of `kes log --error`: its message as it is (a message may span lines).
pub fn error_line(event: &Value) -> String {
    let message: String = text(event, "message")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect();
    format!("{message}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_as_go_prints_them() {
        for (nanos, text) in [
            (0, "0s"),
            (999, "999ns"),
            (1_000, "1µs"),
            (1_500, "1.5µs"),
            (6_259, "6.259µs"),
            (1_234_567, "1.234567ms"),
            (1_000_000_000, "1s"),
            (61_234_567_890, "1m1.23456789s"),
            (3_600_000_000_000, "1h0m0s"),
            (90_000_000_000, "1m30s"),
            (-1_500, "-1.5µs"),
        ] {
            assert_eq!(duration(nanos), text, "{nanos}");
        }
        // The latency column rounds as observed with the Go command.
        for (nanos, text) in [
            (0, "0s"),
            (999, "999ns"),
            (6_259, "6.259µs"),
            (9_999, "9.999µs"),
            (10_500, "11µs"),
            (99_499, "99µs"),
            (99_999, "100µs"),
            (192_545, "193µs"),
            (999_999, "1ms"),
            (1_049_999, "1ms"),
            (1_050_000, "1.1ms"),
            (9_949_999, "9.9ms"),
            (9_999_999, "10ms"),
            (10_500_000, "11ms"),
            (123_456_789, "123ms"),
            (999_999_999, "1s"),
            (1_049_999_999, "1s"),
            (12_345_678_901, "12.3s"),
            (61_234_567_890, "1m1.2s"),
            (3_723_456_789_012, "1h2m3.5s"),
        ] {
            assert_eq!(log_latency(nanos), text, "{nanos}");
        }
        assert_eq!(round(1_500_000, 1_000_000), 2_000_000);
        assert_eq!(round(1_499_999, 1_000_000), 1_000_000);
        assert_eq!(round(-1_500_000, 1_000_000), -2_000_000);
    }

    #[test]
    fn sizes_and_uptimes_as_go_prints_them() {
        for (bytes, text) in [
            (0, "0B"),
            (1, "1.0B"),
            (999, "999.0B"),
            (1_000, "1.0KB"),
            (1_536, "1.5KB"),
            (688_128, "688.1KB"),
            (999_999, "999.0KB"),
            (1_048_576, "1.0MB"),
            (12_345_678_901, "12.3GB"),
            (1_500_000_000_000, "1.5TB"),
        ] {
            assert_eq!(size(bytes), text, "{bytes}");
        }
        for (secs, text) in [
            (0, "0 seconds"),
            (59, "59 seconds"),
            (61, "1 minutes"),
            (3_599, "60 minutes"),
            (3_725, "1 hours"),
            (7_200, "2 hours"),
            (86_400, "24 hours"),
            (90_061, "1 days 1 hours"),
            (172_799, "2 days 24 hours"),
            (200_000, "2 days 8 hours"),
        ] {
            assert_eq!(uptime(secs), text, "{secs}");
        }
    }

    #[test]
    fn dates_and_lines() {
        assert_eq!(
            date("2024-01-12T23:59:59.9+02:00", Zone::AsSent),
            "2024-01-12 23:59:59"
        );
        assert_eq!(date("", Zone::AsSent), "0001-01-01 00:00:00");
        assert_eq!(clock("2024-01-12T10:39:05.886816Z"), "10:39:05");
        assert_eq!(clock(""), "00:00:00");
        let plain = Output::with(false, false, false);
        assert_eq!(
            key_info(
                &plain,
                &json!({"name": "k", "algorithm": "AES256", "created_at": "2024-01-12T10:39:20Z", "created_by": "abc"})
            ),
            "Name        k\nAlgorithm   AES256\nDate        2024-01-12 10:39:20\nOwner       abc\n"
        );
        assert_eq!(list(&plain, "Key", &[]), "");
        assert_eq!(
            list(&plain, "Key", &["a".into(), "b".into()]),
            "Key\na\nb\n"
        );
        let event = json!({
            "time": "2024-01-12T10:39:07.886816Z",
            "request": {"ip": "10.1.2.3", "path": "/v1/key/create/k7",
                        "identity": "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22"},
            "response": {"code": 403, "time": 192_545}
        });
        assert_eq!(
            audit_line(&plain, &event),
            "10:39:07    403       3ecfcdf38fcbe141ae26    10.1.2.3           /v1/key/create/k7                 193µs\n"
        );
        assert_eq!(
            audit_header(&plain),
            "Time        Status    Identity                IP                 API                               Latency\n"
        );
        // Hostile fields reach no terminal raw.
        let line = audit_line(&plain, &json!({"request": {"path": "/\x1b[2Jx"}}));
        assert!(!line.contains('\x1b'), "{line:?}");
        assert_eq!(
            line,
            "00:00:00    0             <unknown>          /[2Jx                             0s\n"
        );
        assert_eq!(error_line(&json!({"message": "a\x07b\nc"})), "ab\nc\n");
        let routes = json!([{"method": "GET", "path": "/x", "timeout": 0},
                            {"method": "OPTIONS", "path": "/y", "timeout": 3600}]);
        assert_eq!(
            api(&plain, &routes),
            "\n  Method  API                          Timeout\n  GET     /x                           Inf\n  OPTIONS /y                           1h0m0s\n"
        );
    }
}
