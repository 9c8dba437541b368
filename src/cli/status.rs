//! `kes status`: is each server up, how long did it take to answer, is its keystore healthy;
//! `kes status --api`: the server's route table. `-s` is `--short`, as in the Go command.
//!
//! Every configured server is asked (not only the first that answers), because the point is an
//! overview of a cluster. `/v1/status` has changed shape over the Go server's history (§2.3,
//! §2.4), so the reply is read field by field and whatever is missing is left out:
//! * `uptime` is seconds, or nanoseconds from servers before 2023-10 (no server is up for 10¹²
//!   seconds, so larger values are nanoseconds);
//! * `keystore_latency` is nanoseconds from this server and milliseconds from the Go server,
//!   whose version is a release timestamp (`2025-03-12T09-35-18Z`);
//! * v0.17 servers send `kms: {state, latency}` instead.

use crate::cli::client::{Client, ClientOpts, parse_json};
use crate::cli::key::str_of;
use crate::cli::output::{Output, Style, Table, human_bytes, human_duration, sanitize};
use crate::cli::{EXIT_FAILURE, Error, gotext, print_error};
use serde_json::Value;
use std::time::Duration;

/// The long help of `kes status` (also set on the command's entry in [`crate::cli::Command`]).
pub const LONG_ABOUT: &str = "Show the status of each server: whether it answers and how fast, its version, \
uptime and memory, and (on a terminal) the health and latency of its keystore. With --api, also \
show the API routes of the first server that answers, with their body limits and timeouts.\n\n\
When standard output is not a terminal, the Go kes command's text is printed: a '● HOST:PORT' \
line per server, then (without --short) Version, Uptime, Latency, OS, CPUs and Memory. With \
--json, the server's status object (one line per server), or with --api the route list.\n\n\
-s is --short, as in the Go kes command; the server is --server here (or KES_SERVER). The exit \
code is 0 only when every server answered and can serve keys: a server whose keystore is \
unreachable or unavailable is reported on standard error with the reason (1).";

#[derive(clap::Args, Debug)]
#[command(
    long_about = LONG_ABOUT,
    after_help = "Examples:\n  kes status\n  kes status -s\n  kes status --server kes-1:7373,kes-2:7373\n  kes status --api\n  kes status --json | jq .version",
    mut_arg("server", |a| a.short(None))
)]
pub struct StatusArgs {
    /// Also show the API routes (method, path, body limit, timeout).
    #[arg(long)]
    pub api: bool,
    /// Print only one line per server.
    #[arg(short = 's', long)]
    pub short: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: StatusArgs) -> Result<(), Error> {
    let client = Client::new(&args.opts)?;
    let out = args.opts.output();
    if args.api && args.opts.json {
        // As the Go command: only the routes.
        return api(&client, &out);
    }
    let mut failure = None;
    for (index, endpoint) in client.endpoints().iter().enumerate() {
        let result = client
            .get_from(index, "/v1/status")
            .and_then(|(body, latency)| Ok((parse_json(&body)?, latency)));
        match result {
            Ok((status, latency)) => {
                // A server that answers but cannot serve keys is not healthy: say why, and
                // fail (the Go command exits 0 then; scripts and health checks need to know).
                let parsed = Status::parse(&status);
                if matches!(
                    parsed.keystore,
                    Keystore::Unreachable | Keystore::Unavailable
                ) {
                    let state = match parsed.keystore {
                        Keystore::Unreachable => "unreachable",
                        _ => "unavailable",
                    };
                    let why = parsed
                        .keystore_error
                        .as_deref()
                        .map(|e| format!(": {}", sanitize(e)))
                        .unwrap_or_default();
                    print_error(format!("{endpoint}: keystore {state}{why}"));
                    failure.get_or_insert(EXIT_FAILURE);
                }
                if out.json {
                    out.print_json(&StatusJson::of(&status))?;
                } else if !out.terminal {
                    let nanos = i64::try_from(latency.as_nanos()).unwrap_or(i64::MAX);
                    out.print(&if args.short {
                        gotext::status_head(&out, endpoint)
                    } else {
                        gotext::status(&out, endpoint, nanos, &status)
                    })?;
                } else {
                    out.print(&render(&out, endpoint, latency, &status, args.short))?;
                }
            }
            Err(e) => {
                if out.terminal && !out.json {
                    let line = format!(
                        "{}  {}\n",
                        out.paint(Style::Bold, endpoint),
                        out.paint(Style::Red, "offline")
                    );
                    out.print(&line)?;
                }
                print_error(&e);
                failure.get_or_insert(e.exit_code());
            }
        }
    }
    if args.api && failure.is_none() {
        api(&client, &out)?;
    }
    match failure {
        // Printed above.
        Some(code) => Err(Error::Reported(code)),
        None => Ok(()),
    }
}

/// `kes status --json`: the status object in the Go command's field order (fields it does not
/// know are left out, and so are a zero keystore latency and false flags; numbers as the
/// server sent them).
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    version: &'a str,
    os: &'a str,
    arch: &'a str,
    uptime: u64,
    num_cpu: u64,
    num_cpu_used: u64,
    mem_heap_used: u64,
    mem_stack_used: u64,
    #[serde(skip_serializing_if = "is_zero")]
    keystore_latency: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keystore_unreachable: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    keystore_unavailable: bool,
}

impl<'a> StatusJson<'a> {
    fn of(v: &'a Value) -> StatusJson<'a> {
        let n = |f: &str| num(v, f).unwrap_or(0);
        let flag = |f: &str| v.get(f).and_then(Value::as_bool) == Some(true);
        StatusJson {
            version: str_of(v, "version"),
            os: str_of(v, "os"),
            arch: str_of(v, "arch"),
            uptime: n("uptime"),
            num_cpu: n("num_cpu"),
            num_cpu_used: n("num_cpu_used"),
            mem_heap_used: n("mem_heap_used"),
            mem_stack_used: n("mem_stack_used"),
            keystore_latency: n("keystore_latency"),
            keystore_unreachable: flag("keystore_unreachable"),
            keystore_unavailable: flag("keystore_unavailable"),
        }
    }
}

/// What a status reply says, read leniently.
#[derive(Debug, Default, PartialEq)]
pub struct Status {
    pub version: String,
    pub os: String,
    pub arch: String,
    pub uptime: Option<Duration>,
    pub cpus: Option<u64>,
    pub cpus_used: Option<u64>,
    pub heap: Option<u64>,
    pub stack: Option<u64>,
    pub keystore: Keystore,
    /// Why the keystore is not healthy (`keystore_error`, sent by this server only).
    pub keystore_error: Option<String>,
}

#[derive(Debug, Default, PartialEq)]
pub enum Keystore {
    /// Healthy, with the latency of its health check when the server reports it.
    Healthy(Option<Duration>),
    Unreachable,
    Unavailable,
    /// An old server's own word for the state.
    Other(String),
    #[default]
    Unknown,
}

fn num(v: &Value, field: &str) -> Option<u64> {
    let value = v.get(field)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// True for the Go server's version strings, which are release timestamps.
fn is_go_release(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

impl Status {
    pub fn parse(v: &Value) -> Status {
        let version = str_of(v, "version").to_string();
        let go = is_go_release(&version);
        let uptime = num(v, "uptime").map(|n| {
            if n >= 1_000_000_000_000 {
                Duration::from_nanos(n)
            } else {
                Duration::from_secs(n)
            }
        });
        let flag = |f: &str| v.get(f).and_then(Value::as_bool) == Some(true);
        let keystore = if flag("keystore_unreachable") {
            Keystore::Unreachable
        } else if flag("keystore_unavailable") {
            Keystore::Unavailable
        } else if let Some(kms) = v.get("kms") {
            Keystore::Other(str_of(kms, "state").to_string())
        } else {
            Keystore::Healthy(num(v, "keystore_latency").map(|n| {
                if go {
                    Duration::from_millis(n)
                } else {
                    Duration::from_nanos(n)
                }
            }))
        };
        Status {
            os: str_of(v, "os").to_string(),
            arch: str_of(v, "arch").to_string(),
            version,
            uptime,
            cpus: num(v, "num_cpu"),
            cpus_used: num(v, "num_cpu_used"),
            heap: num(v, "mem_heap_used"),
            stack: num(v, "mem_stack_used"),
            keystore,
            keystore_error: v
                .get("keystore_error")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        }
    }
}

fn render(out: &Output, endpoint: &str, latency: Duration, v: &Value, short: bool) -> String {
    let s = Status::parse(v);
    let keystore = match &s.keystore {
        Keystore::Healthy(Some(l)) => out.paint(
            Style::Green,
            &format!("healthy (latency {})", human_duration(*l)),
        ),
        Keystore::Healthy(None) => out.paint(Style::Green, "healthy"),
        Keystore::Unreachable => out.paint(Style::Red, "unreachable"),
        Keystore::Unavailable => out.paint(Style::Red, "unavailable"),
        Keystore::Other(state) => sanitize(state),
        Keystore::Unknown => "unknown".into(),
    };
    let head = format!(
        "{}  {} ({})",
        out.paint(Style::Bold, endpoint),
        out.paint(Style::Green, "online"),
        human_duration(latency)
    );
    if short {
        return format!("{head}  keystore {keystore}\n");
    }
    let mut t = Table::new();
    if !s.version.is_empty() {
        t.row(["  Version".to_string(), sanitize(&s.version)]);
    }
    let mut system = Vec::new();
    if !s.os.is_empty() || !s.arch.is_empty() {
        system.push(sanitize(&format!("{}/{}", s.os, s.arch)));
    }
    match (s.cpus, s.cpus_used) {
        (Some(n), Some(u)) if u != n => system.push(format!("{n} CPUs ({u} used)")),
        (Some(n), _) => system.push(format!("{n} CPUs")),
        _ => {}
    }
    if !system.is_empty() {
        t.row(["  System".to_string(), system.join(", ")]);
    }
    if let Some(up) = s.uptime {
        t.row(["  Uptime".to_string(), human_duration(up)]);
    }
    let mut memory = Vec::new();
    if let Some(h) = s.heap {
        memory.push(format!("{} used", human_bytes(h)));
    }
    if let Some(st) = s.stack {
        memory.push(format!("{} stack", human_bytes(st)));
    }
    if !memory.is_empty() {
        t.row(["  Memory".to_string(), memory.join(", ")]);
    }
    t.row(["  Keystore".to_string(), keystore]);
    format!("{head}\n{}", t.render())
}

/// `kes status --api`: the route table of `/v1/api`.
fn api(client: &Client, out: &Output) -> Result<(), Error> {
    let routes = client
        .get_json("/v1/api")
        .map_err(|e| e.context("failed to list server APIs"))?;
    if out.json {
        // The Go command's shape: zero limits and timeouts are left out.
        let routes: Vec<ApiRoute> = routes
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| ApiRoute {
                method: str_of(r, "method"),
                path: str_of(r, "path"),
                max_body: num(r, "max_body").unwrap_or(0),
                timeout: num(r, "timeout").unwrap_or(0),
            })
            .collect();
        return out.print_json(&routes);
    }
    if !out.terminal {
        return out.print(&gotext::api(out, &routes));
    }
    let mut rows: Vec<(String, String, Option<u64>, Option<u64>)> = routes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        sanitize(str_of(r, "path")),
                        sanitize(str_of(r, "method")),
                        num(r, "max_body"),
                        num(r, "timeout"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    let mut t = Table::new();
    t.row(["METHOD", "PATH", "MAX BODY", "TIMEOUT"].map(|h| out.paint(Style::Bold, h)));
    out.print("\n")?;
    for (path, method, max_body, timeout) in rows {
        t.row([
            method,
            path,
            max_body.map_or_else(|| "-".into(), decimal_size),
            match timeout {
                Some(0) => "none".into(),
                Some(s) => format!("{s}s"),
                None => "-".into(),
            },
        ]);
    }
    out.print(&t.render())
}

/// A route of `kes status --api --json`.
#[derive(serde::Serialize)]
struct ApiRoute<'a> {
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    max_body: u64,
    #[serde(skip_serializing_if = "is_zero")]
    timeout: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Body limits are decimal in the protocol (1 MB = 1 000 000 bytes).
fn decimal_size(n: u64) -> String {
    match n {
        0 => "0".into(),
        n if n % 1_000_000 == 0 => format!("{} MB", n / 1_000_000),
        n if n % 1000 == 0 => format!("{} KB", n / 1000),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_of_every_era() {
        // This server.
        let s = Status::parse(&json!({
            "version": "0.1.0", "os": "linux", "arch": "amd64", "uptime": 3725,
            "num_cpu": 4, "num_cpu_used": 2, "mem_heap_used": 1048576, "mem_stack_used": 4096,
            "keystore_latency": 1500
        }));
        assert_eq!(s.uptime, Some(Duration::from_secs(3725)));
        assert_eq!(
            s.keystore,
            Keystore::Healthy(Some(Duration::from_nanos(1500)))
        );
        assert_eq!(
            (s.cpus, s.cpus_used, s.heap),
            (Some(4), Some(2), Some(1 << 20))
        );
        // The Go server: latency in milliseconds, unreachable flag alone.
        let s = Status::parse(&json!({"version": "2025-03-12T09-35-18Z", "keystore_latency": 3}));
        assert_eq!(
            s.keystore,
            Keystore::Healthy(Some(Duration::from_millis(3)))
        );
        let s = Status::parse(
            &json!({"version": "2025-03-12T09-35-18Z", "keystore_unreachable": true}),
        );
        assert_eq!(s.keystore, Keystore::Unreachable);
        let s = Status::parse(&json!({"keystore_unavailable": true}));
        assert_eq!(s.keystore, Keystore::Unavailable);
        // Before 2023-10: uptime in nanoseconds; v0.17: kms state.
        let s = Status::parse(&json!({"uptime": 7_200_000_000_000u64}));
        assert_eq!(s.uptime, Some(Duration::from_secs(7200)));
        let s = Status::parse(&json!({"version": "v0.17.0", "kms": {"state": "reachable"}}));
        assert_eq!(s.keystore, Keystore::Other("reachable".into()));
        // Wrong types are left out, never a panic.
        let s = Status::parse(&json!({"uptime": "x", "num_cpu": -1, "version": 5}));
        assert_eq!(
            s,
            Status {
                keystore: Keystore::Healthy(None),
                ..Status::default()
            }
        );
        let _ = Status::parse(&json!([]));
    }

    #[test]
    fn sizes() {
        assert_eq!(decimal_size(1_000_000), "1 MB");
        assert_eq!(decimal_size(1000), "1 KB");
        assert_eq!(decimal_size(1024), "1024 B");
        assert_eq!(decimal_size(0), "0");
    }
}
