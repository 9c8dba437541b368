//! `kes identity …`. INTERFACE STUB: owned by the identity helper.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Print the identity of a certificate file or an API key.
    Of {
        /// A PEM certificate file or a `kes:v1:` API key.
        input: String,
    },
}

pub fn run(cmd: IdentityCommand) -> ExitCode {
    let _ = cmd;
    todo!()
}
