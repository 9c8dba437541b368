//! `kes server`. Work in progress.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {}

pub fn run(args: ServerArgs) -> ExitCode {
    let _ = args;
    ExitCode::FAILURE
}
