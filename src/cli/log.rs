//! `kes log`: follow a server's audit log (one event per request) or error log.
//!
//! The server streams one JSON object per line (`/v1/log/audit`, `/v1/log/error`, §2.3, §8).
//! For scripts (`--json`, or standard output not a terminal) the lines are passed through as
//! they come, flushed one by one, so `kes log | jq` works live. On a terminal each event becomes
//! one readable line with the status code coloured.
//!
//! Server text is untrusted: control characters are removed before anything reaches a
//! terminal.

use crate::cli::Error;
use crate::cli::client::{Client, ClientOpts};
use crate::cli::key::str_of;
use crate::cli::output::{Output, Style, human_duration, sanitize, write_stdout};
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _};
use std::time::Duration;

/// Longest log line kept; the rest of a longer line is dropped.
const MAX_LINE: u64 = 1 << 20;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Follow a server's audit log (the default: one event per API request, with the \
caller's identity, the path and the status) or its error log, until you press Ctrl-C.\n\n\
On a terminal each event is shown as one line; with --json, or when the output is not a \
terminal, the server's JSON events are printed as they arrive, one per line.",
    after_help = "Examples:\n  kes log\n  kes log --error\n  kes log --json | jq 'select(.response.code >= 400)'"
)]
pub struct LogArgs {
    /// Follow the audit log (the default).
    #[arg(long, conflicts_with = "error")]
    pub audit: bool,
    /// Follow the error log.
    #[arg(long)]
    pub error: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: LogArgs) -> Result<(), Error> {
    let client = Client::new(&args.opts)?;
    let out = Output::new(args.opts.json);
    let (path, what) = if args.error {
        ("/v1/log/error", "error log")
    } else {
        ("/v1/log/audit", "audit log")
    };
    let stream = client
        .stream(path)
        .map_err(|e| e.context(format!("cannot follow the {what}")))?;
    if !out.json {
        let header = format!(
            "Following the {what} of {} (Ctrl-C to stop)",
            client.current_endpoint()
        );
        out.print(&format!("{}\n", out.paint(Style::Dim, &header)))?;
    }
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Connection(format!("the {what} stream broke off: {e}")))?;
        if n == 0 {
            return Err(Error::Connection(format!(
                "the server closed the {what} stream"
            )));
        }
        if line.last() != Some(&b'\n') {
            // Over-long line: drop the rest of it.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            line.push(b'\n');
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.json {
            write_stdout(&line)?;
        } else {
            let text = String::from_utf8_lossy(&line);
            let pretty = match serde_json::from_str::<Value>(&text) {
                Ok(event) if args.error => format_error(&event),
                Ok(event) => format_audit(&out, &event),
                Err(_) => sanitize(text.trim_end()),
            };
            out.print(&format!("{pretty}\n"))?;
        }
    }
}

/// `10:39:20  200  PUT /v1/key/create/my-key  3ecfcdf38fcb…  127.0.0.1  1.2ms`
pub fn format_audit(out: &Output, event: &Value) -> String {
    let request = event.get("request").unwrap_or(&Value::Null);
    let response = event.get("response").unwrap_or(&Value::Null);
    let time = clock(str_of(event, "time"));
    let code = response.get("code").and_then(Value::as_u64).unwrap_or(0);
    let style = match code {
        200..=299 => Style::Green,
        400..=499 => Style::Yellow,
        _ => Style::Red,
    };
    let method = str_of(request, "method");
    let path = str_of(request, "path");
    let target = if method.is_empty() {
        sanitize(path)
    } else {
        sanitize(&format!("{method} {path}"))
    };
    let identity = str_of(request, "identity");
    let identity = if identity.is_empty() {
        "-".to_string()
    } else {
        let id = sanitize(identity);
        match id.get(..12) {
            Some(short) if id.len() > 13 => format!("{short}…"),
            _ => id,
        }
    };
    // This server and servers before 2023-10 send nanoseconds.
    let took = response
        .get("time")
        .and_then(Value::as_u64)
        .map(|n| human_duration(Duration::from_nanos(n)))
        .unwrap_or_default();
    format!(
        "{}  {}  {:<40}  {:<13}  {:<15}  {took}",
        out.paint(Style::Dim, &time),
        out.paint(style, &format!("{code:3}")),
        target,
        identity,
        sanitize(str_of(request, "ip")),
    )
    .trim_end()
    .to_string()
}

/// The message of an error-log event.
pub fn format_error(event: &Value) -> String {
    let message = str_of(event, "message");
    if message.is_empty() {
        sanitize(&event.to_string())
    } else {
        sanitize(message)
    }
}

/// `2024-01-12T10:39:20.886816Z` → `2024-01-12 10:39:20` (the date helps across midnight).
fn clock(rfc3339: &str) -> String {
    let t = sanitize(rfc3339);
    match (t.get(..10), t.get(11..19)) {
        (Some(date), Some(clock)) if t.as_bytes().get(10) == Some(&b'T') => {
            format!("{date} {clock}")
        }
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_lines() {
        let out = Output::with(false, true, true);
        let event = json!({
            "time": "2024-01-12T10:39:20.886816Z",
            "request": {"ip": "127.0.0.1", "method": "PUT", "path": "/v1/key/create/k",
                        "identity": "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22"},
            "response": {"code": 200, "time": 1_200_000}
        });
        let line = format_audit(&out, &event);
        assert!(
            line.starts_with("2024-01-12 10:39:20  200  PUT /v1/key/create/k"),
            "{line}"
        );
        assert!(line.contains("3ecfcdf38fcb…"), "{line}");
        assert!(line.ends_with("127.0.0.1        1.2ms"), "{line}");
        // Hostile or missing fields neither panic nor reach the terminal raw.
        let line = format_audit(&out, &json!({"request": {"path": "/\x1b[2Jx"}}));
        assert!(!line.contains('\x1b'), "{line:?}");
        assert_eq!(format_error(&json!({"message": "a\x07b"})), "ab");
        assert_eq!(format_error(&json!({"x": 1})), "{\"x\":1}");
    }
}
