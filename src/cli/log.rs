//! `kes log`: follow a server's audit log (one event per request) or error log.
//!
//! The server streams one JSON object per line (`/v1/log/audit`, `/v1/log/error`, §2.3, §8).
//! With `--json` the lines are passed through as they come, flushed one by one, so
//! `kes log --json | jq` works live. Otherwise each event becomes one line in the Go command's
//! columns (coloured on a terminal).
//!
//! Server text is untrusted: control characters are removed before anything reaches a
//! terminal.

use crate::cli::client::{Client, ClientOpts};
use crate::cli::output::{sanitize, write_stdout};
use crate::cli::{Error, gotext};
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _};

/// Longest log line kept; the rest of a longer line is dropped.
const MAX_LINE: u64 = 1 << 20;

/// The long help of `kes log` (also set on the command's entry in [`crate::cli::Command`]).
pub const LONG_ABOUT: &str = "Follow a server's audit log (the default: one event per API request, with the \
caller's identity, the path and the status) or its error log, until you press Ctrl-C.\n\n\
Each audit event is shown as one line (time, status, identity, IP, API path, latency) under a \
header, as the Go kes command shows it; each error event as its message. With --json, the \
server's JSON events are printed as they arrive, one per line.\n\n\
--audit and --error take a value as in the Go command: 'kes log --audit=false --error' is \
'kes log --error'.";

#[derive(clap::Args, Debug)]
#[command(
    long_about = LONG_ABOUT,
    after_help = "Examples:\n  kes log\n  kes log --error\n  kes log --json | jq 'select(.response.code >= 400)'"
)]
pub struct LogArgs {
    /// Follow the audit log (the default).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub audit: Option<bool>,
    /// Follow the error log.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub error: Option<bool>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// Which log `--audit` and `--error` select: `Ok(true)` for the error log.
pub fn error_log(audit: Option<bool>, error: Option<bool>) -> Result<bool, Error> {
    match (audit, error) {
        (Some(true), Some(true)) => Err(Error::Usage(
            "cannot display audit and error logs at the same time".into(),
        )),
        (_, Some(true)) => Ok(true),
        (Some(false), _) => Err(Error::Usage(
            "no log selected: --audit=false needs --error".into(),
        )),
        _ => Ok(false),
    }
}

pub fn run(args: LogArgs) -> Result<(), Error> {
    let error = error_log(args.audit, args.error)?;
    let client = Client::new(&args.opts)?;
    let out = args.opts.output();
    let (path, what) = if error {
        ("/v1/log/error", "error log")
    } else {
        ("/v1/log/audit", "audit log")
    };
    let stream = client
        .stream(path)
        .map_err(|e| e.context(format!("failed to connect to {what}")))?;
    if !out.json && !error {
        out.print(&gotext::audit_header(&out))?;
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
                Ok(event) if error => gotext::error_line(&event),
                Ok(event) => gotext::audit_line(&out, &event),
                Err(_) => format!("{}\n", sanitize(text.trim_end())),
            };
            out.print(&pretty)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_and_error_flags() {
        assert_eq!(error_log(None, None), Ok(false));
        assert_eq!(error_log(Some(true), None), Ok(false));
        assert_eq!(error_log(None, Some(true)), Ok(true));
        assert_eq!(error_log(Some(false), Some(true)), Ok(true));
        assert_eq!(error_log(None, Some(false)), Ok(false));
        assert!(matches!(
            error_log(Some(true), Some(true)),
            Err(Error::Usage(_))
        ));
        assert!(matches!(error_log(Some(false), None), Err(Error::Usage(_))));
        assert!(matches!(
            error_log(Some(false), Some(false)),
            Err(Error::Usage(_))
        ));
    }
}
