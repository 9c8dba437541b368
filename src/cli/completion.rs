//! `kes completion SHELL` and `kes man`: shell completion scripts and man pages, generated from
//! the same clap definitions as `--help`, so that they cannot disagree with the command.

use crate::cli::output::write_stdout;
use crate::cli::{Cli, Error};
use clap::CommandFactory as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Print a completion script for a shell. Load it in the shell's startup file, \
or install it where the shell looks for completions.",
    after_help = "Examples:\n  \
bash:  kes completion bash > /etc/bash_completion.d/kes\n         \
or, in ~/.bashrc:  source <(kes completion bash)\n  \
zsh:   kes completion zsh > \"${fpath[1]}/_kes\"\n  \
fish:  kes completion fish > ~/.config/fish/completions/kes.fish"
)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write kes.1 and one page per command (kes-key-create.1, ...) into DIR instead of
    /// printing kes(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run_completion(args: CompletionArgs) -> Result<(), Error> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kes", &mut script);
    write_stdout(&script)
}

pub fn run_man(args: ManArgs) -> Result<(), Error> {
    match args.dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
            Error::Failed(format!(
                "cannot write the man pages to '{}': {e}",
                dir.display()
            ))
        }),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::Failed(format!("cannot render the man page: {e}")))?;
            write_stdout(&page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definitions_are_consistent() {
        // clap checks conflicting short flags, bad references in conflicts_with, and so on.
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_name_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kes", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in ["migrate", "dek", "api-key", "client-cert"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }
}
