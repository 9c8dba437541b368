//! The Go `kes` command line, side by side with this one (issue 13, item 3: "the Go `kes` CLI's
//! command line works unchanged").
//!
//! The Go server and CLI (`kes-go` of the reference peers) and this server start with the same
//! config file (each with its own keystore directory). Every invocation of [`cases`] runs twice:
//! * **stack**: the Go CLI against the Go server, our CLI against ours;
//! * **cli**: both CLIs against our server (for read-only commands, where the servers' own
//!   differences would hide the CLIs'), or without a server at all (offline commands, each CLI
//!   in its own working directory).
//!
//! Exit codes, standard output and standard error are compared after normalising what
//! legitimately varies ([`normalize`]: dates, identities and API keys made during the run,
//! ciphertexts, latencies, uptimes, memory figures, versions, the servers' ports). Every
//! remaining difference must be in [`ALLOWED`], with its reason and a check that the difference
//! is exactly the one described; the test fails on any other difference, and on an allow-list
//! entry that no longer matches a difference (so the list stays true).
//!
//! Standard output is never a terminal here: this is the output scripts see. The terminal
//! output is tested in `tests/it/cli.rs`. `KES_COMPAT_SHOW=1` prints every normalised pair.

use crate::support;

use crate::support::gokes::GoKes;
use crate::support::pki::Ca;
use crate::support::{Kes, TempDir};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN_API_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";
const ADMIN_IDENTITY: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";
const APP_API_KEY: &str = "kes:v1:AEv36dn+NpCR0tOMpyvxAdADIyODNQE2qzmdfNB0ZR6l";
const APP_IDENTITY: &str = "0cba02372c848d0f51e5ca2b8dcab415fc67c78617fc1c630204e0d951670916";
/// 32 bytes, base64: a key to import.
const IMPORT_KEY: &str = "Xlnr/nOgAWE5cA7GAsl3L2goCvmfs6KE0gNgB1T93wE=";

/// What one command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each CLI against its own server.
    Stack,
    /// Both CLIs against our server, or offline.
    Cli,
}

/// One side of the comparison: a CLI binary, the server it talks to, its directories.
struct Side {
    name: &'static str,
    bin: PathBuf,
    /// host:port of the server.
    server: String,
    /// Working directory (offline commands write files here).
    cwd: PathBuf,
    /// $HOME (for --auto-completion).
    home: PathBuf,
    /// Ciphertext of "hello" under key k1 made by this side's CLI on this side's server.
    ciphertext: String,
}

impl Side {
    fn command(&self, args: &[String], server: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).current_dir(&self.cwd);
        for var in support::CLIENT_VARS {
            cmd.env_remove(var);
        }
        cmd.env("KES_SERVER", server)
            .env("KES_API_KEY", ADMIN_API_KEY)
            .env("HOME", &self.home)
            .env("TZ", "UTC")
            .env("TERM", "dumb")
            .env("SHELL", "/bin/bash");
        for (k, v) in env {
            match *v {
                "{unset}" => cmd.env_remove(k),
                "{server}" => cmd.env(k, server),
                v => cmd.env(k, v),
            };
        }
        cmd
    }

    fn run(&self, args: &[String], server: &str, env: &[(&str, &str)]) -> Out {
        let out = self
            .command(args, server, env)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()));
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// An argument that differs between the sides.
#[derive(Debug, Clone)]
enum Arg {
    Lit(String),
    /// The server the side talks to (host:port).
    Server,
    /// The side's own ciphertext of "hello" under k1.
    Ciphertext,
}

/// One invocation, run by both CLIs.
struct Case {
    /// Unique name; the allow-list refers to it.
    name: &'static str,
    args: Vec<Arg>,
    mode: Mode,
    env: Vec<(&'static str, String)>,
    /// Replace every JSON number by 0 (status and metric figures).
    numbers: bool,
    /// Sort the rows of a route table (the Go command prints them in random order).
    sort_routes: bool,
}

fn case(name: &'static str, mode: Mode, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| Arg::Lit(a.to_string())).collect(),
        mode,
        env: Vec::new(),
        numbers: false,
        sort_routes: false,
    }
}

impl Case {
    fn env(mut self, k: &'static str, v: &str) -> Case {
        self.env.push((k, v.to_string()));
        self
    }
    fn numbers(mut self) -> Case {
        self.numbers = true;
        self
    }
    fn sort_routes(mut self) -> Case {
        self.sort_routes = true;
        self
    }
    fn with_server(mut self) -> Case {
        self.args.push(Arg::Server);
        self
    }
    fn with_ciphertext(mut self, at: usize) -> Case {
        self.args.insert(at, Arg::Ciphertext);
        self
    }
}

/// Which part of the outcome differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Code,
    Stdout,
    Stderr,
}

/// A difference that is known and accepted: the case, the part, why, and a check that the two
/// (normalised) outcomes differ exactly as described.
struct Allowed {
    case: &'static str,
    part: Part,
    reason: &'static str,
    check: fn(go: &Out, ours: &Out) -> Result<(), String>,
}

fn expect(cond: bool, what: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

/// Go's output without the trailing newline it forgets; ours has it.
fn newline_added(go: &Out, ours: &Out) -> Result<(), String> {
    expect(
        !go.stdout.is_empty()
            && !go.stdout.ends_with('\n')
            && ours.stdout == format!("{}\n", go.stdout),
        "ours is Go's output plus the missing final newline",
    )
}

/// `--json` of a list: Go prints the JSON and then the table; ours only the JSON.
fn json_then_table(go: &Out, ours: &Out) -> Result<(), String> {
    let first = go.stdout.lines().next().unwrap_or_default();
    expect(
        ours.stdout == format!("{first}\n") && go.stdout.lines().count() > 1,
        "ours is the first line (the JSON) of Go's output",
    )
}

/// A usage error: Go exits with 1 and says `See 'kes … --help'`; ours exits with 2 (the
/// documented usage exit code) with clap's or our own message.
fn usage_code(go: &Out, ours: &Out) -> Result<(), String> {
    expect(go.code == 1 && ours.code == 2, "Go exits 1, ours 2")
}

fn usage_text(go: &Out, ours: &Out) -> Result<(), String> {
    expect(
        go.stderr.starts_with("Error: ")
            && !ours.stderr.is_empty()
            && go.stdout.is_empty()
            && ours.stdout.is_empty(),
        "both print an error on standard error only",
    )
}

/// The same error text, with our exit code 2 for a usage error.
fn same_text_usage_code(go: &Out, ours: &Out) -> Result<(), String> {
    usage_code(go, ours)
}

/// Without ANSI escape sequences, the two are the same, and both had some.
fn same_without_colours(go: &Out, ours: &Out) -> Result<(), String> {
    expect(
        go.stdout.contains('\x1b')
            && ours.stdout.contains('\x1b')
            && strip_ansi(&go.stdout) == strip_ansi(&ours.stdout),
        "the same text apart from the colour codes",
    )
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Removes `"field":"…",` from a JSON line.
fn without_field(line: &str, field: &str) -> String {
    let key = format!("\"{field}\":\"");
    match line.find(&key) {
        Some(start) => {
            let rest = &line[start + key.len()..];
            let end = rest
                .find('"')
                .map_or(line.len(), |e| start + key.len() + e + 1);
            let end = if line[end..].starts_with(',') {
                end + 1
            } else {
                end
            };
            format!("{}{}", &line[..start], &line[end..])
        }
        None => line.to_string(),
    }
}

/// The allow-list: every difference the comparison may find, and why it is right.
const ALLOWED: &[Allowed] = &[
    Allowed {
        case: "status --json (keystore gone)",
        part: Part::Code,
        reason: "a server whose keystore is unreachable or unavailable cannot serve keys: ours \
                 exits 1 (health checks and scripts need to know), Go exits 0",
        check: |go, ours| expect(go.code == 0 && ours.code == 1, "Go 0, ours 1"),
    },
    Allowed {
        case: "status --json (keystore gone)",
        part: Part::Stderr,
        reason: "ours says on standard error which server's keystore is not healthy, and why \
                 (the server's keystore_error)",
        check: |go, ours| {
            expect(
                go.stderr.is_empty()
                    && ours
                        .stderr
                        .starts_with("Error: https://<server>: keystore unreachable: ")
                    && ours.stderr.contains("No such file or directory"),
                "Go silent, ours names the keystore's state and reason",
            )
        },
    },
    Allowed {
        case: "status (keystore gone)",
        part: Part::Code,
        reason: "a server whose keystore is unreachable or unavailable cannot serve keys: ours \
                 exits 1 (health checks and scripts need to know), Go exits 0",
        check: |go, ours| expect(go.code == 0 && ours.code == 1, "Go 0, ours 1"),
    },
    Allowed {
        case: "status (keystore gone)",
        part: Part::Stderr,
        reason: "ours says on standard error which server's keystore is not healthy, and why \
                 (the server's keystore_error)",
        check: |go, ours| {
            expect(
                go.stderr.is_empty()
                    && ours
                        .stderr
                        .starts_with("Error: https://<server>: keystore unreachable: ")
                    && ours.stderr.contains("No such file or directory"),
                "Go silent, ours names the keystore's state and reason",
            )
        },
    },
    Allowed {
        case: "key ls --json (empty)",
        part: Part::Stdout,
        reason: "Go prints `null` for an empty list; ours prints `[]`, which `jq '.[]'` can iterate",
        check: |go, ours| expect(go.stdout == "null\n" && ours.stdout == "[]\n", "null vs []"),
    },
    Allowed {
        case: "key ls --json",
        part: Part::Stdout,
        reason: "Go bug: `--json` prints the JSON and then the table",
        check: json_then_table,
    },
    Allowed {
        case: "key ls k*",
        part: Part::Stdout,
        reason: "the Go server keeps a trailing `*` in a key listing prefix and finds nothing; \
                 ours (and our CLI) treat it as the prefix the help text promises",
        check: |go, ours| {
            expect(
                go.stdout.is_empty() && ours.stdout.starts_with("Key\nk1\n"),
                "Go lists nothing, ours the k… keys",
            )
        },
    },
    Allowed {
        case: "key info",
        part: Part::Stdout,
        reason: "Go bug: no newline after the last line",
        check: newline_added,
    },
    Allowed {
        case: "key info --json",
        part: Part::Stdout,
        reason: "ours also prints the key's algorithm (which Go's text output shows too)",
        check: |go, ours| {
            expect(
                without_field(ours.stdout.trim_end(), "algorithm") == go.stdout.trim_end(),
                "the same JSON without \"algorithm\"",
            )
        },
    },
    Allowed {
        case: "key import short",
        part: Part::Code,
        reason: "a malformed key is a usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "key import short",
        part: Part::Stderr,
        reason: "worded by us (`the key is not valid base64`, without echoing the key)",
        check: usage_text,
    },
    Allowed {
        case: "key dek",
        part: Part::Stdout,
        reason: "Go bug: no newline after the JSON",
        check: newline_added,
    },
    Allowed {
        case: "key dek context",
        part: Part::Stdout,
        reason: "Go bug: no newline after the JSON",
        check: newline_added,
    },
    Allowed {
        case: "key encrypt",
        part: Part::Stdout,
        reason: "Go bug: no newline after the JSON",
        check: newline_added,
    },
    Allowed {
        case: "key decrypt",
        part: Part::Stdout,
        reason: "Go bug: no newline after the JSON",
        check: newline_added,
    },
    Allowed {
        case: "key decrypt --json",
        part: Part::Code,
        reason: "extension: every client command takes --json (Go: `unknown flag: --json`)",
        check: |go, ours| expect(go.code == 1 && ours.code == 0, "Go refuses, ours runs"),
    },
    Allowed {
        case: "key decrypt --json",
        part: Part::Stdout,
        reason: "extension: every client command takes --json",
        check: |go, ours| {
            expect(
                go.stdout.is_empty() && ours.stdout == "{\"plaintext\":\"aGVsbG8=\"}\n",
                "ours prints the plaintext's JSON",
            )
        },
    },
    Allowed {
        case: "key decrypt --json",
        part: Part::Stderr,
        reason: "extension: every client command takes --json",
        check: |go, ours| {
            expect(
                go.stderr.contains("unknown flag: --json") && ours.stderr.is_empty(),
                "Go: unknown flag",
            )
        },
    },
    Allowed {
        case: "key decrypt garbage",
        part: Part::Code,
        reason: "a malformed ciphertext is a usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "key decrypt garbage",
        part: Part::Stderr,
        reason: "worded by us (`the ciphertext is not valid base64`)",
        check: usage_text,
    },
    Allowed {
        case: "key create (no name)",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "key create (no name)",
        part: Part::Stderr,
        reason: "usage errors are clap's (`the following required arguments were not provided`)",
        check: usage_text,
    },
    Allowed {
        case: "key info a b",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "key info a b",
        part: Part::Stderr,
        reason: "usage errors are clap's (`unexpected argument 'b'`)",
        check: usage_text,
    },
    Allowed {
        case: "key ls -e foo",
        part: Part::Stderr,
        reason: "no server has enclaves; Go ignores -e silently, ours warns that it is ignored",
        check: |go, ours| {
            expect(
                go.stderr.is_empty() && ours.stderr.starts_with("Warning: enclave 'foo' ignored"),
                "a warning",
            )
        },
    },
    Allowed {
        case: "key ls --color always",
        part: Part::Stdout,
        reason: "colour codes differ (Go underlines each letter of the header)",
        check: same_without_colours,
    },
    Allowed {
        case: "policy ls",
        part: Part::Stdout,
        reason: "Go bug: `policy ls` is headed `Key`; ours `Policy`, as Go's own `kes ls -p`",
        check: |go, ours| {
            expect(
                go.stdout.starts_with("Key\n")
                    && ours.stdout == go.stdout.replacen("Key\n", "Policy\n", 1),
                "only the header differs",
            )
        },
    },
    Allowed {
        case: "policy ls --json",
        part: Part::Stdout,
        reason: "Go bug: `--json` prints the JSON and then the table",
        check: json_then_table,
    },
    Allowed {
        case: "identity ls --json",
        part: Part::Stdout,
        reason: "Go bug: `--json` prints the JSON and then the table",
        check: json_then_table,
    },
    Allowed {
        case: "identity info --json",
        part: Part::Stdout,
        reason: "Go bug: `--json` is ignored and the text printed; ours prints the server's JSON",
        check: |go, ours| {
            expect(
                go.stdout.starts_with("Identity    ")
                    && serde_json::from_str::<serde_json::Value>(&ours.stdout)
                        .is_ok_and(|v| v["admin"] == true),
                "Go's text, our JSON",
            )
        },
    },
    Allowed {
        case: "identity info (as app)",
        part: Part::Code,
        reason: "server difference: the Go server answers a non-admin's self-description with \
                 404 (README, compatibility notes); ours describes it",
        check: |go, ours| expect(go.code == 1 && ours.code == 0, "Go fails, ours works"),
    },
    Allowed {
        case: "identity info (as app)",
        part: Part::Stdout,
        reason: "server difference (see the exit code)",
        check: |go, ours| {
            expect(
                go.stdout.is_empty()
                    && ours.stdout
                        == format!(
                            "Identity    {APP_IDENTITY}\nPolicy      app\nCreated At  <date>\nRole        User\nCreated By  {ADMIN_IDENTITY}\n"
                        ),
                "ours: the Go command's layout for an identity",
            )
        },
    },
    Allowed {
        case: "identity info (as app)",
        part: Part::Stderr,
        reason: "server difference (see the exit code)",
        check: |go, ours| {
            expect(
                go.stderr == "Error: identity does not exist\n" && ours.stderr.is_empty(),
                "Go: identity does not exist",
            )
        },
    },
    Allowed {
        case: "policy ls (as app)",
        part: Part::Stderr,
        reason: "Go bug: says `failed to list keys` when listing policies",
        check: |go, ours| {
            expect(
                ours.stderr == go.stderr.replace("list keys", "list policies"),
                "only the noun differs",
            )
        },
    },
    Allowed {
        case: "key ls (no server)",
        part: Part::Code,
        reason: "no connection: exit code 3 (documented), so scripts can tell it from a refusal",
        check: |go, ours| expect(go.code == 1 && ours.code == 3, "Go 1, ours 3"),
    },
    Allowed {
        case: "key ls (no server)",
        part: Part::Stderr,
        reason: "connection errors are worded by us (Go prints the Go HTTP client's error)",
        check: |go, ours| {
            expect(
                go.stderr.starts_with("Error: failed to list keys: ")
                    && ours.stderr.starts_with("Error: failed to list keys: ")
                    && go.stderr.contains("connection refused")
                    && ours.stderr.contains("connection refused"),
                "both: failed to list keys … connection refused",
            )
        },
    },
    Allowed {
        case: "env API key and certificate",
        part: Part::Code,
        reason: "conflicting settings are a usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "env API key and certificate",
        part: Part::Stderr,
        reason: "worded by us: names the two variables that conflict",
        check: |go, ours| {
            expect(
                go.stderr.contains("cannot be used at the same time")
                    && ours
                        .stderr
                        .contains("KES_API_KEY and KES_CLIENT_CERT are both set"),
                "both refuse the pair",
            )
        },
    },
    Allowed {
        case: "env no credentials",
        part: Part::Code,
        reason: "missing settings are a usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "env no credentials",
        part: Part::Stderr,
        reason: "worded by us: names KES_API_KEY and the certificate variables",
        check: |go, ours| {
            expect(
                go.stderr.starts_with("Error: no API key specified")
                    && ours
                        .stderr
                        .starts_with("Error: no credentials: set KES_API_KEY"),
                "both: no credentials",
            )
        },
    },
    Allowed {
        case: "log --json",
        part: Part::Stdout,
        reason: "ours passes the server's events through; Go re-encodes them and drops the \
                 fields it does not know (`method`)",
        check: |go, ours| {
            let stripped: Vec<String> = ours
                .stdout
                .lines()
                .map(|l| without_field(l, "method"))
                .collect();
            expect(
                !go.stdout.is_empty()
                    && stripped == go.stdout.lines().map(str::to_string).collect::<Vec<_>>(),
                "the same events without \"method\"",
            )
        },
    },
    Allowed {
        case: "log --audit --error",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: same_text_usage_code,
    },
    Allowed {
        case: "log --audit=false",
        part: Part::Stderr,
        reason: "Go prints its help (exit 2); ours says what is missing (exit 2)",
        check: |go, ours| {
            expect(
                go.stderr.starts_with("Usage:")
                    && ours.stderr.starts_with("Error: no log selected"),
                "help vs message",
            )
        },
    },
    Allowed {
        case: "identity (new API key)",
        part: Part::Stdout,
        reason: "Go bug: no newline after the API key",
        check: newline_added,
    },
    Allowed {
        case: "identity API-KEY",
        part: Part::Stdout,
        reason: "Go bug: no newline after the identity",
        check: newline_added,
    },
    Allowed {
        case: "identity of API-KEY",
        part: Part::Stdout,
        reason: "Go bug: no newline after the identity",
        check: newline_added,
    },
    Allowed {
        case: "identity KEY-FILE",
        part: Part::Stdout,
        reason: "Go bug: no newline after the API key",
        check: newline_added,
    },
    Allowed {
        case: "identity CERT-FILE",
        part: Part::Stdout,
        reason: "Go bug: no newline after the identity",
        check: newline_added,
    },
    Allowed {
        case: "identity of CERT-FILE",
        part: Part::Stdout,
        reason: "Go bug: no newline after the identity",
        check: newline_added,
    },
    Allowed {
        case: "identity new --key (no --cert)",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "identity new --key (no --cert)",
        part: Part::Stderr,
        reason: "usage errors are clap's (`--cert <FILE>` is required)",
        check: usage_text,
    },
    Allowed {
        case: "-v",
        part: Part::Stdout,
        reason: "the versions differ; the layout is the same (Version/Runtime/License lines; Go \
                 adds a Copyright line)",
        check: |go, ours| {
            let first = |o: &Out| o.stdout.lines().next().unwrap_or_default().to_string();
            let shape = |line: &str| {
                let words: Vec<&str> = line.split_whitespace().collect();
                line.starts_with("Version    ")
                    && words.len() == 3
                    && words[2].starts_with("commit=")
            };
            expect(
                shape(&first(go))
                    && shape(&first(ours))
                    && ours.stdout.contains("\nRuntime    ")
                    && ours.stdout.contains("\nLicense    "),
                "Version … commit=…, Runtime, License",
            )
        },
    },
    Allowed {
        case: "--help",
        part: Part::Code,
        reason: "Go prints its help on standard error with exit code 2; ours on standard output \
                 with 0 (clap)",
        check: |go, ours| expect(go.code == 2 && ours.code == 0, "2 vs 0"),
    },
    Allowed {
        case: "--help",
        part: Part::Stdout,
        reason: "the help texts are our own",
        check: |go, ours| {
            expect(
                go.stdout.is_empty()
                    && ours.stdout.contains("--auto-completion")
                    && ours.stdout.contains("-v, --version"),
                "our help names Go's top-level flags",
            )
        },
    },
    Allowed {
        case: "--help",
        part: Part::Stderr,
        reason: "the help texts are our own",
        check: |go, ours| {
            expect(
                go.stderr.contains("--auto-completion") && ours.stderr.is_empty(),
                "Go's help on standard error",
            )
        },
    },
    Allowed {
        case: "(no command)",
        part: Part::Stderr,
        reason: "the help texts are our own (both print them on standard error, exit code 2)",
        check: |go, ours| {
            expect(
                go.stderr.starts_with("Usage:") && ours.stderr.contains("Usage: kes"),
                "help on standard error",
            )
        },
    },
    Allowed {
        case: "bogus command",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "bogus command",
        part: Part::Stderr,
        reason: "usage errors are clap's (`unrecognized subcommand 'bogus'`)",
        check: usage_text,
    },
    Allowed {
        case: "--auto-completion (no .bashrc)",
        part: Part::Stderr,
        reason: "both refuse (exit 1) and name the missing file; ours also says which line to add",
        check: |go, ours| {
            expect(
                go.stderr.contains("/.bashrc") && ours.stderr.contains("/.bashrc"),
                "both name ~/.bashrc",
            )
        },
    },
    Allowed {
        case: "--auto-completion",
        part: Part::Stdout,
        reason: "the line added differs: Go registers itself (`complete -C <go binary>`), ours \
                 loads its generated script (`source <(kes completion bash)`); the messages \
                 are the same",
        check: |go, ours| {
            let shape = |o: &Out| {
                o.stdout
                    .lines()
                    .map(|l| if l.starts_with("   ") { "   <line>" } else { l })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            expect(
                shape(go) == shape(ours)
                    && ours.stdout.contains("completion bash)")
                    && go.stdout.contains("complete -o default -C "),
                "the same message around a different line",
            )
        },
    },
    Allowed {
        case: "migrate (no --to)",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "migrate (no --to)",
        part: Part::Stderr,
        reason: "ours does not suggest --server (migrating to MinIO KMS is not supported)",
        check: |go, ours| {
            expect(
                go.stderr.starts_with("Error: missing migration target")
                    && ours.stderr.starts_with("Error: missing migration target"),
                "both: missing migration target",
            )
        },
    },
    Allowed {
        case: "migrate --to -s",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented); the message is Go's",
        check: same_text_usage_code,
    },
    Allowed {
        case: "migrate -s (MinIO KMS)",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "migrate -s (MinIO KMS)",
        part: Part::Stderr,
        reason: "migrating to a MinIO KMS server is not supported: ours says so (Go goes on to ask \
                 for the enclave)",
        check: |_, ours| {
            expect(
                ours.stderr
                    .contains("to a MinIO KMS server (--server, --enclave, --api-key"),
                "ours: not supported",
            )
        },
    },
    Allowed {
        case: "migrate --force --merge",
        part: Part::Code,
        reason: "usage error: exit code 2 (documented)",
        check: usage_code,
    },
    Allowed {
        case: "migrate --force --merge",
        part: Part::Stderr,
        reason: "usage errors are clap's (`cannot be used with`)",
        check: usage_text,
    },
    Allowed {
        case: "migrate (identical keys present)",
        part: Part::Code,
        reason: "a key already in the destination with the same value counts as migrated: an \
                 interrupted migration can be run again (Go fails with `key already exists`)",
        check: |go, ours| expect(go.code == 1 && ours.code == 0, "Go 1, ours 0"),
    },
    Allowed {
        case: "migrate (identical keys present)",
        part: Part::Stdout,
        reason: "see the exit code",
        check: |go, ours| {
            expect(
                go.stdout == "Starting key migration:\n\n"
                    && ours.stdout
                        == "Starting key migration:\n\nMigration succeeded! No keys migrated.\n",
                "ours: nothing to do",
            )
        },
    },
    Allowed {
        case: "migrate (identical keys present)",
        part: Part::Stderr,
        reason: "see the exit code",
        check: |go, ours| {
            expect(
                go.stderr == "Error: key already exists\n" && ours.stderr.is_empty(),
                "Go: key already exists",
            )
        },
    },
];

/// The invocations, in order (later ones depend on the keys earlier ones made). `cert` and
/// `key` are the admin's certificate files, `ca` the servers' CA certificate.
fn cases(cert: &str, key: &str, ca: &str) -> Vec<Case> {
    use Mode::{Cli, Stack};
    vec![
        case("key ls (empty)", Stack, &["key", "ls", "-k"]),
        case(
            "key ls --json (empty)",
            Stack,
            &["key", "ls", "-k", "--json"],
        ),
        case("key create", Stack, &["key", "create", "-k", "k1"]),
        case(
            "key create two",
            Stack,
            &["key", "create", "-k", "k2", "k3"],
        ),
        case("key create (exists)", Stack, &["key", "create", "-k", "k1"]),
        case(
            "key create bad/name",
            Stack,
            &["key", "create", "-k", "bad/name"],
        ),
        case("key ls", Stack, &["key", "ls", "-k"]),
        case("key ls --json", Stack, &["key", "ls", "-k", "--json"]),
        case("key ls prefix", Stack, &["key", "ls", "-k", "k"]),
        case("key ls k*", Stack, &["key", "ls", "-k", "k*"]),
        case(
            "key ls --json=false",
            Stack,
            &["key", "ls", "-k", "--json=false"],
        ),
        case("key ls -k=true", Stack, &["key", "ls", "-k=true"]),
        case(
            "key ls --color never",
            Stack,
            &["key", "ls", "-k", "--color", "never"],
        ),
        case(
            "key ls --color always",
            Stack,
            &["key", "ls", "-k", "--color", "always"],
        ),
        case("key ls -e foo", Stack, &["key", "ls", "-k", "-e", "foo"]),
        case("key info", Stack, &["key", "info", "-k", "k1"]),
        case(
            "key info --json",
            Stack,
            &["key", "info", "-k", "k1", "--json"],
        ),
        case("key info (missing)", Stack, &["key", "info", "-k", "nope"]),
        case(
            "key import",
            Stack,
            &["key", "import", "-k", "imp", IMPORT_KEY],
        ),
        case(
            "key import (exists)",
            Stack,
            &["key", "import", "-k", "imp", IMPORT_KEY],
        ),
        case(
            "key import short",
            Stack,
            &["key", "import", "-k", "imp2", "short"],
        ),
        case("key dek", Stack, &["key", "dek", "-k", "k1"]),
        case(
            "key dek context",
            Stack,
            &["key", "dek", "-k", "k1", "Y3R4"],
        ),
        case("key dek (missing)", Stack, &["key", "dek", "-k", "nope"]),
        case(
            "key encrypt",
            Stack,
            &["key", "encrypt", "-k", "k1", "hello"],
        ),
        case(
            "key encrypt (missing)",
            Stack,
            &["key", "encrypt", "-k", "nope", "hi"],
        ),
        case("key decrypt", Stack, &["key", "decrypt", "-k", "k1"]).with_ciphertext(4),
        case(
            "key decrypt wrong context",
            Stack,
            &["key", "decrypt", "-k", "k1", "Y3R4"],
        )
        .with_ciphertext(4),
        case(
            "key decrypt --json",
            Stack,
            &["key", "decrypt", "-k", "k1", "--json"],
        )
        .with_ciphertext(4),
        case(
            "key decrypt garbage",
            Stack,
            &["key", "decrypt", "-k", "k1", "garbage"],
        ),
        case("key rm", Stack, &["key", "rm", "-k", "k3"]),
        case("key rm (missing)", Stack, &["key", "rm", "-k", "k3"]),
        case("key create (no name)", Stack, &["key", "create", "-k"]),
        case("key info a b", Stack, &["key", "info", "-k", "a", "b"]),
        case("ls", Stack, &["ls", "-k"]),
        case("ls --json", Stack, &["ls", "-k", "--json"]),
        case("ls prefix", Stack, &["ls", "-k", "k"]),
        case("ls -p", Stack, &["ls", "-k", "-p"]),
        case("ls -i", Stack, &["ls", "-k", "-i"]),
        case("ls -i --json", Stack, &["ls", "-k", "-i", "--json"]),
        case("policy ls", Stack, &["policy", "ls", "-k"]),
        case("policy ls --json", Stack, &["policy", "ls", "-k", "--json"]),
        case("policy info", Stack, &["policy", "info", "-k", "app"]),
        case(
            "policy info --json",
            Stack,
            &["policy", "info", "-k", "app", "--json"],
        ),
        case(
            "policy info (missing)",
            Stack,
            &["policy", "info", "-k", "nope"],
        ),
        case("policy show", Stack, &["policy", "show", "-k", "app"]),
        case(
            "policy show --json",
            Stack,
            &["policy", "show", "-k", "app", "--json"],
        ),
        case(
            "policy show (missing)",
            Stack,
            &["policy", "show", "-k", "nope"],
        ),
        case("identity ls", Stack, &["identity", "ls", "-k"]),
        case(
            "identity ls --json",
            Stack,
            &["identity", "ls", "-k", "--json"],
        ),
        case("identity info", Stack, &["identity", "info", "-k"]),
        case(
            "identity info --json",
            Stack,
            &["identity", "info", "-k", "--json"],
        ),
        case(
            "identity info app",
            Stack,
            &["identity", "info", "-k", APP_IDENTITY],
        ),
        case(
            "identity info (missing)",
            Stack,
            &["identity", "info", "-k", "0000"],
        ),
        case("identity info (as app)", Stack, &["identity", "info", "-k"])
            .env("KES_API_KEY", APP_API_KEY),
        case(
            "key create (as app, denied)",
            Stack,
            &["key", "create", "-k", "app-denied1"],
        )
        .env("KES_API_KEY", APP_API_KEY),
        case(
            "key create (as app, allowed)",
            Stack,
            &["key", "create", "-k", "app-1"],
        )
        .env("KES_API_KEY", APP_API_KEY),
        case("key ls (as app)", Stack, &["key", "ls", "-k"]).env("KES_API_KEY", APP_API_KEY),
        case("policy ls (as app)", Stack, &["policy", "ls", "-k"]).env("KES_API_KEY", APP_API_KEY),
        case("status", Stack, &["status", "-k"]),
        case("status -s", Stack, &["status", "-k", "-s"]),
        case("status --short", Stack, &["status", "-k", "--short"]),
        case("status --json", Stack, &["status", "-k", "--json"]).numbers(),
        case("status (our server)", Cli, &["status", "-k"]),
        case("status --api -s", Cli, &["status", "-k", "--api", "-s"]).sort_routes(),
        case(
            "status --api --json",
            Cli,
            &["status", "-k", "--api", "--json"],
        ),
        case("key ls (no server)", Stack, &["key", "ls", "-k"]).env("KES_SERVER", "127.0.0.1:1"),
        // The environment variables of the Go command, and their precedence.
        case("env MINIO_KES_SERVER", Stack, &["key", "ls", "-k"])
            .env("KES_SERVER", "{unset}")
            .env("MINIO_KES_SERVER", "{server}"),
        case("env MINIO_KMS_KES_ENDPOINT", Stack, &["key", "ls", "-k"])
            .env("KES_SERVER", "{unset}")
            .env("MINIO_KMS_KES_ENDPOINT", "{server}"),
        case(
            "env MINIO_KES_SERVER before KES_SERVER",
            Stack,
            &["key", "ls", "-k"],
        )
        .env("KES_SERVER", "127.0.0.1:1")
        .env("MINIO_KES_SERVER", "{server}"),
        case("env MINIO_KES_API_KEY", Stack, &["ls", "-k", "-p"])
            .env("KES_API_KEY", "{unset}")
            .env("MINIO_KES_API_KEY", ADMIN_API_KEY),
        case("env MINIO_KMS_KES_API_KEY", Stack, &["ls", "-k", "-p"])
            .env("KES_API_KEY", "{unset}")
            .env("MINIO_KMS_KES_API_KEY", ADMIN_API_KEY),
        case(
            "env MINIO_KES_API_KEY before KES_API_KEY",
            Stack,
            &["ls", "-k", "-p"],
        )
        .env("KES_API_KEY", APP_API_KEY)
        .env("MINIO_KES_API_KEY", ADMIN_API_KEY),
        case("env KES_CLIENT_CERT/KEY", Stack, &["ls", "-k", "-p"])
            .env("KES_API_KEY", "{unset}")
            .env("KES_CLIENT_CERT", cert)
            .env("KES_CLIENT_KEY", key),
        case(
            "env MINIO_KES_CERT_FILE/KEY_FILE",
            Stack,
            &["ls", "-k", "-p"],
        )
        .env("KES_API_KEY", "{unset}")
        .env("MINIO_KES_CERT_FILE", cert)
        .env("MINIO_KES_KEY_FILE", key),
        case("env API key and certificate", Stack, &["ls", "-k", "-p"])
            .env("KES_CLIENT_CERT", cert)
            .env("KES_CLIENT_KEY", key),
        // Without -k: the servers' CA from SSL_CERT_FILE (the Go command reads neither --ca nor
        // KES_CAPATH, which are extensions here).
        case("env SSL_CERT_FILE", Stack, &["key", "ls", "k"]).env("SSL_CERT_FILE", ca),
        case("env no credentials", Stack, &["ls", "-k", "-p"]).env("KES_API_KEY", "{unset}"),
        case("ls -a -s", Stack, &["ls", "-k", "-a", APP_API_KEY, "-s"])
            .env("KES_SERVER", "127.0.0.1:1")
            .with_server(),
        case("key rm nope k2", Stack, &["key", "rm", "-k", "nope", "k2"]),
        case("identity (new API key)", Cli, &["identity"]),
        case("identity API-KEY", Cli, &["identity", ADMIN_API_KEY]),
        case(
            "identity of API-KEY",
            Cli,
            &["identity", "of", ADMIN_API_KEY],
        ),
        case("identity new", Cli, &["identity", "new"]),
        case("identity new subject", Cli, &["identity", "new", "my-name"]),
        case(
            "identity new --key --cert",
            Cli,
            &[
                "identity",
                "new",
                "--key",
                "n.key",
                "--cert",
                "n.crt",
                "--ip",
                "127.0.0.1",
                "n",
            ],
        ),
        case(
            "identity new (exists)",
            Cli,
            &["identity", "new", "--key", "n.key", "--cert", "n.crt"],
        ),
        case(
            "identity new --key (no --cert)",
            Cli,
            &["identity", "new", "--key", "x.key"],
        ),
        case("identity KEY-FILE", Cli, &["identity", "n.key"]),
        case("identity CERT-FILE", Cli, &["identity", "n.crt"]),
        case("identity of CERT-FILE", Cli, &["identity", "of", "n.crt"]),
        case("-v", Cli, &["-v"]),
        case("--help", Cli, &["--help"]),
        case("(no command)", Cli, &[]),
        case("bogus command", Cli, &["bogus"]),
        case(
            "migrate",
            Cli,
            &["migrate", "--from", "a.yaml", "--to", "b.yaml", "m*"],
        ),
        case(
            "migrate --merge",
            Cli,
            &["migrate", "--from", "a.yaml", "--to", "b.yaml", "--merge"],
        ),
        case(
            "migrate (identical keys present)",
            Cli,
            &["migrate", "--from", "a.yaml", "--to", "b.yaml"],
        ),
        case("migrate (no --to)", Cli, &["migrate", "--from", "a.yaml"]),
        case(
            "migrate --to -s",
            Cli,
            &["migrate", "--from", "a.yaml", "--to", "b.yaml", "-s", "x"],
        ),
        case(
            "migrate -s (MinIO KMS)",
            Cli,
            &[
                "migrate",
                "--from",
                "a.yaml",
                "-s",
                "127.0.0.1:1",
                "-a",
                ADMIN_API_KEY,
            ],
        ),
        case(
            "migrate --force --merge",
            Cli,
            &[
                "migrate", "--from", "a.yaml", "--to", "b.yaml", "-f", "--merge",
            ],
        ),
    ]
}

/// Replaces what legitimately differs between two runs: servers' ports, dates, identities and
/// API keys made during the run, ciphertexts and data keys, status and metric figures.
fn normalize(
    text: &str,
    servers: &[&str],
    dirs: &[&Path],
    numbers: bool,
    sort_routes: bool,
) -> String {
    let mut s = text.to_string();
    for server in servers {
        s = s.replace(server, "<server>");
    }
    for dir in dirs {
        s = s.replace(&dir.display().to_string(), "<dir>");
    }
    s = dates(&s);
    s = words(&s);
    for field in ["ciphertext", "plaintext"] {
        s = json_strings(&s, field, |v| v.len() >= 44);
    }
    s = json_strings(&s, "version", |_| true);
    if numbers {
        s = json_numbers(&s);
    }
    let mut lines: Vec<String> = s.split('\n').map(status_and_log_line).collect();
    if sort_routes && let Some(head) = lines.iter().position(|l| l.starts_with("  Method  API")) {
        let end = lines.len() - usize::from(lines.last().is_some_and(String::is_empty));
        lines[head + 1..end].sort();
    }
    lines.join("\n")
}

/// `2024-01-12T10:39:20.886Z` → `<time>`, `2024-01-12 10:39:20` → `<date>`.
fn dates(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| {
        b.get(from..from + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let date = digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
            && digits(i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(i + 17, 2);
        if date && b[i + 10] == b' ' {
            out.push_str("<date>");
            i += 19;
            continue;
        }
        if date && b[i + 10] == b'T' {
            let mut j = i + 19;
            if b.get(j) == Some(&b'.') {
                j += 1;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            if b.get(j) == Some(&b'Z') {
                j += 1;
            } else if matches!(b.get(j), Some(b'+' | b'-')) && digits(j + 1, 2) {
                j += 6;
            }
            out.push_str("<time>");
            i = j;
            continue;
        }
        let c = s[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Identities (64 hex digits) and API keys other than the test's own.
fn words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_ascii_alphanumeric() || c == ':')
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '+' | '/' | '=')))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let known = [ADMIN_API_KEY, APP_API_KEY, ADMIN_IDENTITY, APP_IDENTITY];
        if word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()) && !known.contains(&word)
        {
            out.push_str("<identity>");
        } else if word.starts_with("kes:v1:") && word.len() == 51 && !known.contains(&word) {
            out.push_str("<api-key>");
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    out
}

/// `"field":"value"` → `"field":"<field>"` where `which(value)`.
fn json_strings(s: &str, field: &str, which: impl Fn(&str) -> bool) -> String {
    let key = format!("\"{field}\":\"");
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find(&key) {
        let value_start = at + key.len();
        out.push_str(&rest[..value_start]);
        let value_end = rest[value_start..]
            .find('"')
            .map_or(rest.len(), |e| value_start + e);
        let value = &rest[value_start..value_end];
        if which(value) {
            out.push_str(&format!("<{field}>"));
        } else {
            out.push_str(value);
        }
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

/// Every JSON number value → 0.
fn json_numbers(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ':' && out.ends_with("\":") && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            out.push('0');
        }
    }
    out
}

/// The figures of `kes status` and the clock and latency of `kes log`.
fn status_and_log_line(line: &str) -> String {
    for label in [
        "  Version  ",
        "  Uptime   ",
        "  Latency  ",
        "  · Heap   ",
        "  · Stack  ",
    ] {
        if line.starts_with(label) {
            return format!("{label}<value>");
        }
    }
    let b = line.as_bytes();
    if b.len() > 12
        && b[2] == b':'
        && b[5] == b':'
        && &line[8..12] == "    "
        && b[..8].iter().all(|c| c.is_ascii_digit() || *c == b':')
    {
        let latency_at = line.trim_end().rfind(' ').map_or(line.len(), |i| i + 1);
        return format!("<clock>{}<latency>", &line[8..latency_at]);
    }
    line.to_string()
}

/// Compares one case; returns the differences that are not allowed (and notes the allowed
/// ones that matched).
fn compare(
    case: &Case,
    go: &Out,
    ours: &Out,
    used: &mut Vec<(&'static str, Part)>,
    failures: &mut Vec<String>,
) {
    if std::env::var_os("KES_COMPAT_SHOW").is_some() {
        println!("=== {}\n  Go:   {go:?}\n  ours: {ours:?}", case.name);
    }
    let parts = [
        (Part::Code, go.code != ours.code),
        (Part::Stdout, go.stdout != ours.stdout),
        (Part::Stderr, go.stderr != ours.stderr),
    ];
    for (part, differs) in parts {
        if !differs {
            continue;
        }
        match ALLOWED
            .iter()
            .find(|a| a.case == case.name && a.part == part)
        {
            Some(allowed) => {
                used.push((allowed.case, part));
                if let Err(why) = (allowed.check)(go, ours) {
                    failures.push(format!(
                        "{}: {part:?} differs, but not as the allow-list says ({}; expected: \
                         {why})\n  Go:   {go:?}\n  ours: {ours:?}",
                        case.name, allowed.reason
                    ));
                }
            }
            None => failures.push(format!(
                "{}: {part:?} differs (not in the allow-list)\n  Go:   {go:?}\n  ours: {ours:?}",
                case.name
            )),
        }
    }
}

/// The server config: the admin and the `app` policy, with the keystore in `keys`.
fn config(dir: &Path, keys: &str) -> PathBuf {
    let path = dir.join(format!("{keys}.yaml"));
    std::fs::write(
        &path,
        format!(
            r#"version: v1
admin:
  identity: {ADMIN_IDENTITY}
tls:
  key: {dir}/server.key
  cert: {dir}/server.crt
policy:
  app:
    allow:
    - /v1/key/create/app-*
    - /v1/key/list/*
    - /v1/identity/self/describe
    deny:
    - /v1/key/create/app-denied*
    identities:
    - {APP_IDENTITY}
keystore:
  fs:
    path: {dir}/{keys}
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

/// A key store config for `kes migrate` (a full server config: the Go command needs one).
fn migrate_config(dir: &Path, name: &str, keys: &Path) {
    std::fs::write(
        dir.join(name),
        format!(
            "admin:\n  identity: disabled\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\nkeystore:\n  fs:\n    path: {k}\n",
            d = dir.parent().unwrap().display(),
            k = keys.display()
        ),
    )
    .unwrap();
}

/// Runs `args` as a long-running command (log, metric), collecting its output lines.
struct Follower {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(side: &Side, server: &str, args: &[&str]) -> Follower {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut child = side
            .command(&args, server, &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Follower { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn peer_cli_compat_same_invocations_same_output() {
    let started = Instant::now();
    let go_bin = GoKes::bin();
    let dir = TempDir::new("cli-compat");
    let ca = Ca::new("cli compat CA");
    ca.server().write(dir.path(), "server");
    let go_server = GoKes::start_config(&config(dir.path(), "go-keys"))
        .unwrap_or_else(|out| panic!("kes-go did not start:\n{out}"));
    let our_server = Kes::start(&config(dir.path(), "our-keys"));
    let go_addr = format!("127.0.0.1:{}", go_server.port);
    let our_addr = our_server.addr.to_string();

    let mut sides = Vec::new();
    for (name, bin, server) in [
        ("go", go_bin.clone(), go_addr.clone()),
        (
            "ours",
            PathBuf::from(env!("CARGO_BIN_EXE_kes")),
            our_addr.clone(),
        ),
    ] {
        let cwd = dir.join(&format!("{name}-cwd"));
        let home = dir.join(&format!("{name}-home"));
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        // The keys of `kes migrate`: a source with three keys, an empty destination.
        let (src, dst) = (cwd.join("src"), cwd.join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        for (key, n) in [("m1", 1u8), ("m2", 2), ("x1", 3)] {
            let bytes = base64_of(&[n; 32]);
            std::fs::write(
                src.join(key),
                format!(r#"{{"bytes":"{bytes}","algorithm":"AES256","created_at":"2024-01-01T00:00:00Z"}}"#),
            )
            .unwrap();
        }
        migrate_config(&cwd, "a.yaml", &src);
        migrate_config(&cwd, "b.yaml", &dst);
        sides.push(Side {
            name,
            bin,
            server,
            cwd,
            home,
            ciphertext: String::new(),
        });
    }
    let servers = [go_addr.as_str(), our_addr.as_str()];
    let cwds: Vec<PathBuf> = sides.iter().map(|s| s.cwd.clone()).collect();
    let dirs: Vec<&Path> = cwds.iter().map(PathBuf::as_path).collect();

    let mut failures = Vec::new();
    let mut used = Vec::new();
    let mut count = 0;
    // The admin's certificate files (the Go command reads them as well).
    let (cert, key) = (dir.join("admin.crt"), dir.join("admin.key"));
    let made = support::kes_cmd(
        &[
            "identity",
            "cert",
            "--key",
            key.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            ADMIN_API_KEY,
        ],
        &[],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.cert.cert_pem).unwrap();
    for case in cases(
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca_file.to_str().unwrap(),
    ) {
        // Before `key decrypt`: each side's own ciphertext of "hello".
        if case.args.iter().any(|a| matches!(a, Arg::Ciphertext)) {
            for side in &mut sides {
                if side.ciphertext.is_empty() {
                    let out = side.run(
                        &["key", "encrypt", "-k", "k1", "hello"].map(String::from),
                        &side.server.clone(),
                        &[],
                    );
                    let v: serde_json::Value = serde_json::from_str(&out.stdout)
                        .unwrap_or_else(|e| panic!("{}: encrypt: {e}: {out:?}", side.name));
                    side.ciphertext = v["ciphertext"].as_str().unwrap().to_string();
                }
            }
        }
        let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let outs: Vec<Out> = sides
            .iter()
            .map(|side| {
                let args: Vec<String> = case
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Lit(s) => s.clone(),
                        Arg::Ciphertext => side.ciphertext.clone(),
                        Arg::Server => match case.mode {
                            Mode::Stack => side.server.clone(),
                            Mode::Cli => our_addr.clone(),
                        },
                    })
                    .collect();
                let server = match case.mode {
                    Mode::Stack => side.server.clone(),
                    Mode::Cli => our_addr.clone(),
                };
                let out = side.run(&args, &server, &env);
                let norm = |t: &str| normalize(t, &servers, &dirs, case.numbers, case.sort_routes);
                Out {
                    code: out.code,
                    stdout: norm(&out.stdout),
                    stderr: norm(&out.stderr),
                }
            })
            .collect();
        compare(&case, &outs[0], &outs[1], &mut used, &mut failures);
        count += 1;
    }

    // After `key rm nope k2`: the Go command stops at the first name it cannot delete; ours
    // goes on with the others (a missing key is reported, the other names are still deleted).
    let left: Vec<String> = sides
        .iter()
        .map(|side| {
            side.run(
                &["key", "ls", "-k", "k"].map(String::from),
                &side.server,
                &[],
            )
            .stdout
        })
        .collect();
    if !(left[0] == "Key\nk1\nk2\n" && left[1] == "Key\nk1\n") {
        failures.push(format!(
            "key rm nope k2: expected Go to keep k2 and ours to delete it: {left:?}"
        ));
    }

    // A private key file of either command is the same API key to the other.
    let go_key = sides[0].cwd.join("n.key");
    let ours_reading_go = sides[1].run(
        &["identity".to_string(), go_key.display().to_string()],
        &our_addr,
        &[],
    );
    let go_reading_go = sides[0].run(
        &["identity".to_string(), go_key.display().to_string()],
        &our_addr,
        &[],
    );
    if ours_reading_go.stdout != format!("{}\n", go_reading_go.stdout) {
        failures.push(format!(
            "the Go command's key file: ours {ours_reading_go:?}, Go {go_reading_go:?}"
        ));
    }

    count += log_and_metric(
        &sides,
        &our_addr,
        &go_addr,
        &servers,
        &dirs,
        &mut used,
        &mut failures,
    );
    count += auto_completion(&sides, &servers, &mut used, &mut failures);

    // A keystore that is gone: `status --json` says so (both CLIs against our server).
    std::fs::remove_dir_all(dir.join("our-keys")).unwrap();
    for c in [
        case(
            "status --json (keystore gone)",
            Mode::Cli,
            &["status", "-k", "--json"],
        )
        .numbers(),
        case("status (keystore gone)", Mode::Cli, &["status", "-k"]),
    ] {
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| match a {
                Arg::Lit(s) => s.clone(),
                Arg::Ciphertext | Arg::Server => unreachable!(),
            })
            .collect();
        let outs: Vec<Out> = sides
            .iter()
            .map(|side| {
                let o = side.run(&args, &our_addr, &[]);
                let norm = |t: &str| normalize(t, &servers, &dirs, c.numbers, false);
                Out {
                    code: o.code,
                    stdout: norm(&o.stdout),
                    stderr: norm(&o.stderr),
                }
            })
            .collect();
        if c.numbers && !outs[1].stdout.contains("\"keystore_unreachable\":true") {
            failures.push(format!("{}: {:?}", c.name, outs[1]));
        }
        compare(&c, &outs[0], &outs[1], &mut used, &mut failures);
        count += 1;
    }

    // `kes update` is not compared: the Go command would try to reach GitHub.
    let update = sides[1].run(&["update".to_string()], &our_addr, &[]);
    if update.code != 1
        || !update
            .stderr
            .starts_with("Error: kes update is not available")
    {
        failures.push(format!("kes update: {update:?}"));
    }

    for allowed in ALLOWED {
        if !used.contains(&(allowed.case, allowed.part)) {
            failures.push(format!(
                "allow-list entry not needed any more (no such difference): {} / {:?}",
                allowed.case, allowed.part
            ));
        }
    }
    println!(
        "{count} invocations compared, {} allowed differences, in {:?}",
        used.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} difference(s) between the Go kes command and ours:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `kes log` (both CLIs against our server: the Go server's log streams deliver no events) and
/// `kes metric` (first line; each CLI against its own server and both against ours).
fn log_and_metric(
    sides: &[Side],
    our_addr: &str,
    go_addr: &str,
    servers: &[&str],
    dirs: &[&Path],
    used: &mut Vec<(&'static str, Part)>,
    failures: &mut Vec<String>,
) -> usize {
    let variants: [(&'static str, &[&str]); 5] = [
        ("log", &["log", "-k"]),
        ("log --json", &["log", "-k", "--json"]),
        ("log --error", &["log", "-k", "--error"]),
        ("log --error --json", &["log", "-k", "--error", "--json"]),
        (
            "log --audit=false --error",
            &["log", "-k", "--audit=false", "--error"],
        ),
    ];
    let followers: Vec<Vec<Follower>> = variants
        .iter()
        .map(|(_, args)| {
            sides
                .iter()
                .map(|side| Follower::start(side, our_addr, args))
                .collect()
        })
        .collect();
    // Make marked events until every follower has seen a round of them, then compare that
    // round's lines.
    let admin = &sides[1];
    let mut round = None;
    for i in 0..30 {
        let name = format!("logmark-{i}-x");
        for args in [
            vec!["key", "create", "-k", &name],
            vec!["key", "create", "-k", &name],
            vec!["key", "rm", "-k", &name],
        ] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            admin.run(&args, our_addr, &[]);
        }
        std::thread::sleep(Duration::from_millis(300));
        let all = followers
            .iter()
            .flatten()
            .all(|f| f.lines().iter().filter(|l| l.contains(&name)).count() >= 2);
        if all {
            round = Some(name);
            break;
        }
    }
    let Some(mark) = round else {
        failures.push("kes log: the followers did not see the marked events".into());
        return 0;
    };
    let mut count = 0;
    for ((name, _), pair) in variants.iter().zip(&followers) {
        let out = |f: &Follower, header: bool| {
            let lines = f.lines();
            let mut text: Vec<String> = Vec::new();
            if header && let Some(first) = lines.first() {
                text.push(first.clone());
            }
            text.extend(lines.into_iter().filter(|l| l.contains(&mark)));
            Out {
                code: 0,
                stdout: normalize(&(text.join("\n") + "\n"), servers, dirs, false, false),
                stderr: String::new(),
            }
        };
        let header = *name == "log";
        let c = case(name, Mode::Cli, &[]);
        compare(
            &c,
            &out(&pair[0], header),
            &out(&pair[1], header),
            used,
            failures,
        );
        count += 1;
    }
    drop(followers);

    // Usage errors of `kes log` run to completion.
    for (name, args) in [
        (
            "log --audit --error",
            &["log", "-k", "--audit", "--error"][..],
        ),
        ("log --audit=false", &["log", "-k", "--audit=false"]),
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let outs: Vec<Out> = sides
            .iter()
            .map(|s| {
                let o = s.run(&args, our_addr, &[]);
                Out {
                    code: o.code,
                    stdout: normalize(&o.stdout, servers, dirs, false, false),
                    stderr: normalize(&o.stderr, servers, dirs, false, false),
                }
            })
            .collect();
        compare(
            &case(name, Mode::Cli, &[]),
            &outs[0],
            &outs[1],
            used,
            failures,
        );
        count += 1;
    }

    // metric: the first line, at once; the Go command's line of counters.
    for (name, servers_of) in [
        ("metric", [go_addr, our_addr]),
        ("metric (our server)", [our_addr, our_addr]),
    ] {
        let lines: Vec<String> = sides
            .iter()
            .zip(servers_of)
            .map(|(side, server)| {
                let f = Follower::start(side, server, &["metric", "-k"]);
                let until = Instant::now() + Duration::from_secs(5);
                while f.lines().is_empty() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                f.lines().first().cloned().unwrap_or_default()
            })
            .collect();
        let out = |line: &str| Out {
            code: 0,
            stdout: normalize(line, servers, dirs, true, false),
            stderr: String::new(),
        };
        compare(
            &case(name, Mode::Cli, &[]),
            &out(&lines[0]),
            &out(&lines[1]),
            used,
            failures,
        );
        if lines[1].is_empty() {
            failures.push(format!("{name}: no line"));
        }
        count += 1;
    }
    count
}

/// `kes --auto-completion` in a scratch $HOME: refused without ~/.bashrc, added once, then
/// "already installed".
fn auto_completion(
    sides: &[Side],
    servers: &[&str],
    used: &mut Vec<(&'static str, Part)>,
    failures: &mut Vec<String>,
) -> usize {
    let homes: Vec<&Path> = sides.iter().map(|s| s.home.as_path()).collect();
    let args = ["--auto-completion".to_string()];
    let mut count = 0;
    for (name, prepare) in [
        ("--auto-completion (no .bashrc)", false),
        ("--auto-completion", true),
        ("--auto-completion (installed)", false),
    ] {
        let outs: Vec<Out> = sides
            .iter()
            .map(|side| {
                if prepare {
                    let mut rc = std::fs::File::create(side.home.join(".bashrc")).unwrap();
                    writeln!(rc, "# the user's own").unwrap();
                }
                let o = side.run(&args, &side.server, &[]);
                Out {
                    code: o.code,
                    stdout: normalize(&o.stdout, servers, &homes, false, false),
                    stderr: normalize(&o.stderr, servers, &homes, false, false),
                }
            })
            .collect();
        compare(
            &case(name, Mode::Cli, &[]),
            &outs[0],
            &outs[1],
            used,
            failures,
        );
        count += 1;
    }
    // Appended, never replaced: the user's line is still first.
    let rc = std::fs::read_to_string(sides[1].home.join(".bashrc")).unwrap_or_default();
    if !(rc.starts_with("# the user's own\n") && rc.lines().count() == 2) {
        failures.push(format!("--auto-completion: ~/.bashrc is now {rc:?}"));
    }
    count
}
