//! The `kes` command line: argument definitions (clap) and dispatch to one module per command
//! group. The same definitions produce `--help`, the man page and the shell completions.

pub mod identity;
pub mod server;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for a usage error (bad flags or arguments).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kes",
    version,
    about = "KES key server: manages and serves cryptographic keys for MinIO and other KES clients",
    long_about = "KES is a stateless key management server. Clients authenticate with TLS client \
certificates (mutual TLS); policies decide which API calls an identity may make; master keys \
are kept in a keystore (a directory, or HashiCorp Vault / OpenBao) and used to generate, \
encrypt and decrypt data keys.",
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
    /// Identify a certificate or API key, or create a new identity.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
}

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
    match cli.command {
        Command::Server(args) => server::run(args),
        Command::Identity(cmd) => identity::run(cmd),
    }
}

/// Prints `kes: <message>` to stderr (the one format for command errors).
pub fn print_error(message: impl std::fmt::Display) {
    eprintln!("kes: {message}");
}
