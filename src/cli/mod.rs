//! The `kes` command line: argument definitions (clap) and dispatch to one module per command
//! group. The same definitions produce `--help`, the man page (`kes man`) and the shell
//! completions (`kes completion`).
//!
//! The command line is the Go `kes` command's (every command, flag, short flag, environment
//! variable and output mode, with the same meaning), plus extensions that do not clash with it.
//! `tests/it/cli_compat.rs` runs both side by side.
//!
//! Commands that talk to a server share [`client::ClientOpts`] (server list, credentials, CA,
//! `--json`, `--color`) and the [`client::Client`] built from it; what they print goes through
//! [`output::Output`]: tables for a person at a terminal, what the Go command prints when the
//! output is not a terminal ([`gotext`]), JSON with `--json`. Every failure of a client command
//! is an [`Error`], printed as `Error: <what failed>: <why>` (as the Go command prints it), whose
//! kind decides the exit code: scripts can tell a refused request (1) from a wrong command line
//! (2) and from a server that could not be reached at all (3).

pub mod client;
pub mod completion;
pub mod gotext;
pub mod identity;
pub mod key;
pub mod log;
pub mod metric;
pub mod migrate;
pub mod output;
pub mod policy;
pub mod server;
pub mod status;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

/// Exit code when the server refused a request or a command failed (the server's message is
/// printed).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error (bad flags or arguments, conflicting settings).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when no server could be reached: connection refused, DNS, timeout, TLS.
pub const EXIT_CONNECTION: u8 = 3;

const AFTER_HELP: &str = "\
Connecting to a server (all commands except server, identity of|new|cert, migrate, completion):
  -s/--server (--server only for 'kes status', where -s is --short), or MINIO_KES_SERVER,
  KES_SERVER, MINIO_KMS_KES_ENDPOINT (first set wins; default 127.0.0.1:7373; a comma-separated
  list is tried in order).
  Credentials: -a/--api-key or KES_API_KEY (kes:v1:...), or --client-cert and --client-key
  (KES_CLIENT_CERT, KES_CLIENT_KEY). Server CA: --ca or KES_CAPATH; -k skips verification.
  All connection options: 'kes key ls --help' (any client command).

Output: tables on a terminal; when standard output is not a terminal, the text the Go kes
command prints there (scripts written for it keep working); JSON with --json. Colours only on
a terminal, never when NO_COLOR is set (--color auto|never|always decides otherwise).
Boolean flags also take a value, as in the Go command: --json=false, kes log --audit=false.

Exit codes:
  0  success
  1  the server refused the request (its message is printed) or the command failed
  2  usage error: bad flags or arguments, conflicting or missing settings
  3  no connection: the server could not be reached (refused, DNS, timeout, TLS)";

#[derive(Parser, Debug)]
#[command(
    name = "kes",
    version,
    about = "KES key server: manages and serves cryptographic keys for MinIO and other KES clients",
    long_about = "KES is a stateless key management server. Clients authenticate with TLS client \
certificates (mutual TLS); policies decide which API calls an identity may make; master keys \
are kept in a keystore (a directory, or HashiCorp Vault / OpenBao) and used to generate, \
encrypt and decrypt data keys.\n\n\
The same binary is the server (kes server) and its client (kes key, kes status, ...).",
    after_help = AFTER_HELP,
    disable_help_subcommand = true,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Print version information.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Install shell completion for $SHELL (bash, zsh or fish) in its startup file.
    #[arg(long = "auto-completion")]
    pub auto_completion: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a KES server.
    Server(server::ServerArgs),
    /// Create, inspect, list and delete keys; encrypt, decrypt and generate data keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// List keys, identities (-i) or policies (-p) on a server.
    Ls(key::LsArgs),
    /// Identify a certificate or API key, create a new identity, or ask a server about identities.
    #[command(long_about = identity::IDENTITY_ABOUT)]
    Identity(identity::IdentityArgs),
    /// Show and list the policies of a server.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Show the status of one or more servers (-s: one line each) and their API routes (--api).
    #[command(long_about = status::LONG_ABOUT)]
    Status(status::StatusArgs),
    /// Watch a server's request rate, error rate and latency.
    #[command(long_about = metric::LONG_ABOUT)]
    Metric(metric::MetricArgs),
    /// Follow a server's audit or error log.
    #[command(long_about = log::LONG_ABOUT)]
    Log(log::LogArgs),
    /// Copy keys from one keystore to another (e.g. the filesystem to Vault).
    #[command(long_about = migrate::ABOUT)]
    Migrate(migrate::MigrateArgs),
    /// Not available: kes is updated through its package or release, not by itself.
    Update(UpdateArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    #[command(long_about = completion::LONG_ABOUT)]
    Completion(completion::CompletionArgs),
    /// Print the kes(1) man page, or write the pages of all commands to a directory.
    #[command(hide = true)]
    Man(completion::ManArgs),
}

/// Why a command failed. The variant decides the exit code; the text is printed as
/// `kes: <text>` on standard error. Texts never contain secrets (keys, plaintexts, API keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command line or the environment is wrong: conflicting or missing settings,
    /// unreadable certificate files, malformed arguments (exit code 2).
    Usage(String),
    /// No server could be reached: connection refused, name resolution, timeout, TLS (exit 3).
    Connection(String),
    /// The server answered with an error; `message` is the server's own text (exit 1).
    Server {
        status: u16,
        message: String,
        /// What was being done, e.g. `key 'my-key'` (may be empty).
        context: String,
    },
    /// Something else failed (exit 1).
    Failed(String),
    /// Standard output was closed by the reader (`kes log | head`): stop quietly (exit 0).
    BrokenPipe,
    /// The failures were printed already (a command working on several names reports each);
    /// exit with this code.
    Reported(u8),
}

impl Error {
    /// Adds what was being done (`key 'k'`) to a server error, so that a command working on
    /// several names says which one failed.
    pub fn context(self, what: impl Into<String>) -> Error {
        match self {
            Error::Server {
                status, message, ..
            } => Error::Server {
                status,
                message,
                context: what.into(),
            },
            Error::Connection(m) => Error::Connection(format!("{}: {m}", what.into())),
            other => other,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Connection(_) => EXIT_CONNECTION,
            Error::Server { .. } | Error::Failed(_) => EXIT_FAILURE,
            Error::BrokenPipe => 0,
            Error::Reported(code) => *code,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(m) | Error::Connection(m) | Error::Failed(m) => f.write_str(m),
            Error::Server {
                message, context, ..
            } if context.is_empty() => f.write_str(message),
            Error::Server {
                message, context, ..
            } => write!(f, "{context}: {message}"),
            Error::BrokenPipe => f.write_str("standard output closed"),
            Error::Reported(code) => write!(f, "failed (exit code {code})"),
        }
    }
}

impl std::error::Error for Error {}

/// `kes update`: the Go command's flags, accepted so that the command is recognised.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Not available in this kes: it is updated through its package (deb, rpm, the \
container image) or by installing a new release, never by downloading itself. The command exists \
so that scripts calling the Go kes command's 'kes update' get a clear answer; it exits with 1."
)]
pub struct UpdateArgs {
    /// Ignored (Go: skip TLS certificate validation).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Ignored (Go: allow downgrading to a previous version).
    #[arg(short = 'd', long)]
    pub downgrade: bool,
    /// Ignored (Go: save the new binary to a file).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Ignored (Go: download a binary for this OS).
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// Ignored (Go: download a binary for this CPU architecture).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Ignored (Go: the minisign key that verifies the binary).
    #[arg(long = "minisign-key", value_name = "KEY")]
    pub minisign_key: Option<String>,
    /// Ignored (Go: the version to update to).
    #[arg(value_name = "VERSION")]
    pub version: Option<String>,
}

fn update(_: UpdateArgs) -> Result<(), Error> {
    Err(Error::Failed(format!(
        "kes update is not available: this kes ({}) is updated through its package (deb, rpm, \
         container image) or by installing a new release; it never downloads itself",
        env!("CARGO_PKG_VERSION")
    )))
}

/// `kes -v`: the layout of the Go command's, so that `kes -v | awk '/^Version/{print $2}'`
/// works with both.
fn version_text() -> String {
    format!(
        "Version    {:<22} commit={}\nRuntime    {:<22} compiler=rustc\nLicense    {}\n",
        crate::api::sys::VERSION,
        crate::api::sys::COMMIT,
        format!(
            "{}/{}",
            crate::api::sys::go_os(),
            crate::api::sys::go_arch()
        ),
        env!("CARGO_PKG_LICENSE"),
    )
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let args = go_bool_values(&Cli::command(), std::env::args_os().collect());
    let cli = match Cli::command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.version {
        return exit(output::write_stdout(version_text().as_bytes()));
    }
    if cli.auto_completion {
        return exit(completion::auto_completion());
    }
    let Some(command) = cli.command else {
        // As the Go command: the help on standard error, exit code 2.
        let _ = Cli::command().write_help(&mut std::io::stderr());
        return ExitCode::from(EXIT_USAGE);
    };
    let result = match command {
        Command::Server(args) => return server::run(args),
        Command::Identity(args) => identity::run(args),
        Command::Key(cmd) => key::run(cmd),
        Command::Ls(args) => key::run_ls(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Metric(args) => metric::run(args),
        Command::Log(args) => log::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Update(args) => update(args),
        Command::Completion(args) => completion::run_completion(args),
        Command::Man(args) => completion::run_man(args),
    };
    exit(result)
}

/// Rewrites `--flag=true|false` (and `-f=true|false`) of boolean flags the way the Go command
/// reads them: `=true` is the flag, `=false` leaves it out. (`kes log --audit=false` is
/// handled by `kes log` itself, whose `--audit` and `--error` take a value.) Only flags of the
/// command being parsed are rewritten; everything after `--` is left alone.
pub fn go_bool_values(root: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = root;
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut rest = false;
    for arg in iter {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if rest || text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        if !text.starts_with('-') {
            if let Some(sub) = cmd.find_subcommand(text) {
                cmd = sub;
            }
            out.push(arg);
            continue;
        }
        let flag = text
            .strip_prefix("--")
            .and_then(|t| t.split_once('='))
            .and_then(|(name, value)| {
                cmd.get_arguments()
                    .find(|a| {
                        a.get_long() == Some(name)
                            || a.get_all_aliases().is_some_and(|all| all.contains(&name))
                    })
                    .map(|a| (a, value))
            })
            .or_else(|| {
                let t = text.strip_prefix('-')?;
                let (short, value) = t.split_once('=')?;
                let mut chars = short.chars();
                let c = chars.next()?;
                if chars.next().is_some() {
                    return None;
                }
                cmd.get_arguments()
                    .find(|a| a.get_short() == Some(c))
                    .map(|a| (a, value))
            });
        match flag {
            Some((a, value)) if matches!(a.get_action(), clap::ArgAction::SetTrue) => {
                match value.to_ascii_lowercase().as_str() {
                    "true" | "t" | "1" => {
                        out.push(OsString::from(text.split('=').next().unwrap_or(text)))
                    }
                    "false" | "f" | "0" => {}
                    _ => out.push(arg),
                }
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Prints the error of a command, if any, and turns the result into the process exit code.
pub fn exit(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) | Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(Error::Reported(code)) => ExitCode::from(code),
        Err(e) => {
            print_error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints `Error: <message>` to stderr (the one format for command errors, as the Go command
/// prints them).
pub fn print_error(message: impl std::fmt::Display) {
    eprintln!("Error: {message}");
}

/// Prints `kes: <message>` to stderr: the server's errors before its log is set up.
pub fn print_server_error(message: impl std::fmt::Display) {
    eprintln!("kes: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_bool_values_rewrites_only_boolean_flags() {
        let cmd = Cli::command();
        let rewrite = |v: &[&str]| go_bool_values(&cmd, args(v));
        assert_eq!(
            rewrite(&[
                "kes",
                "key",
                "ls",
                "--json=false",
                "-k=true",
                "--color=never"
            ]),
            args(&["kes", "key", "ls", "-k", "--color=never"])
        );
        assert_eq!(
            rewrite(&["kes", "ls", "--identities=TRUE", "-p=0"]),
            args(&["kes", "ls", "--identities"])
        );
        // `kes log` takes --audit's and --error's value itself.
        assert_eq!(
            rewrite(&["kes", "log", "--audit=false", "--error"]),
            args(&["kes", "log", "--audit=false", "--error"])
        );
        // Values that are not booleans, flags that take values, and everything after `--`
        // are left alone.
        assert_eq!(
            rewrite(&[
                "kes",
                "key",
                "ls",
                "--json=maybe",
                "--server=a:1",
                "--",
                "--json=true"
            ]),
            args(&[
                "kes",
                "key",
                "ls",
                "--json=maybe",
                "--server=a:1",
                "--",
                "--json=true"
            ])
        );
        // Only the flags of the command being parsed: `-s` is --short for `kes status`.
        assert_eq!(
            rewrite(&["kes", "status", "-s=true"]),
            args(&["kes", "status", "-s"])
        );
        assert_eq!(
            rewrite(&["kes", "key", "ls", "-s=true"]),
            args(&["kes", "key", "ls", "-s=true"])
        );
    }

    #[test]
    fn version_has_the_go_layout() {
        let text = version_text();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("Version    "), "{text}");
        assert_eq!(first.split_whitespace().count(), 3, "{text}");
        assert!(text.contains("\nRuntime    "), "{text}");
    }
}
