//! The `kes` command line: argument definitions (clap) and dispatch to one module per command
//! group. The same definitions produce `--help`, the man page (`kes man`) and the shell
//! completions (`kes completion`).
//!
//! Commands that talk to a server share [`client::ClientOpts`] (server list, credentials, CA,
//! `--json`) and the [`client::Client`] built from it; what they print goes through
//! [`output::Output`], which decides between tables for a person at a terminal and JSON for
//! scripts. Every failure of a client command is an [`Error`], whose kind decides the exit code:
//! scripts can tell a refused request (1) from a wrong command line (2) and from a server that
//! could not be reached at all (3).

pub mod client;
pub mod completion;
pub mod identity;
pub mod key;
pub mod log;
pub mod metric;
pub mod migrate;
pub mod output;
pub mod policy;
pub mod server;
pub mod status;

use clap::{Parser, Subcommand};
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
  -s/--server, or MINIO_KES_SERVER, KES_SERVER, MINIO_KMS_KES_ENDPOINT (first set wins;
  default 127.0.0.1:7373; a comma-separated list is tried in order).
  Credentials: -a/--api-key or KES_API_KEY (kes:v1:...), or --client-cert and --client-key
  (KES_CLIENT_CERT, KES_CLIENT_KEY). Server CA: --ca or KES_CAPATH; -k skips verification.
  All connection options: 'kes key ls --help' (any client command).

Output: tables on a terminal; JSON with --json or when standard output is not a terminal.
Colours only on a terminal, never when NO_COLOR is set.

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
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Show and list the policies of a server.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Show the status of one or more servers, or their API routes (--api).
    Status(status::StatusArgs),
    /// Watch a server's request rate, error rate and latency.
    Metric(metric::MetricArgs),
    /// Follow a server's audit or error log.
    Log(log::LogArgs),
    /// Copy keys from one keystore to another (e.g. the filesystem to Vault).
    Migrate(migrate::MigrateArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
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

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    let result = match cli.command {
        Command::Server(args) => return server::run(args),
        Command::Identity(cmd) => return identity::run(cmd),
        Command::Key(cmd) => key::run(cmd),
        Command::Ls(args) => key::run_ls(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Metric(args) => metric::run(args),
        Command::Log(args) => log::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Completion(args) => completion::run_completion(args),
        Command::Man(args) => completion::run_man(args),
    };
    exit(result)
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

/// Prints `kes: <message>` to stderr (the one format for command errors).
pub fn print_error(message: impl std::fmt::Display) {
    eprintln!("kes: {message}");
}
