//! `kes completion SHELL`, `kes --auto-completion` and `kes man`: shell completion scripts and
//! man pages, generated from the same clap definitions as `--help`, so that they cannot disagree
//! with the command.
//!
//! `kes --auto-completion` does what the Go command's does, for the shell in `$SHELL`: it adds
//! lines to the shell's startup file (`~/.bashrc`, `~/.zshrc`) that load the completion, and
//! says which lines to remove to uninstall it; run again, it says that it is installed already.
//! Like the Go command, it needs the startup file to exist, and it only ever appends to it. For
//! fish (which the Go command does not support) it writes `~/.config/fish/completions/kes.fish`,
//! but never over an existing file.

use crate::cli::output::write_stdout;
use crate::cli::{Cli, Error};
use clap::CommandFactory as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The long help of `kes completion` (also set on the command's entry in [`crate::cli::Command`]).
pub const LONG_ABOUT: &str = "Print a completion script for a shell. Load it in the shell's startup file, \
or install it where the shell looks for completions.";

#[derive(clap::Args, Debug)]
#[command(
    long_about = LONG_ABOUT,
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

/// `kes --auto-completion`: installs the completion for `$SHELL` in `$HOME`.
pub fn auto_completion() -> Result<(), Error> {
    let shell = std::env::var("SHELL").unwrap_or_default();
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Failed("cannot install the completion: HOME is not set".into()))?;
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| Error::Failed("cannot tell where this kes binary is".into()))?;
    let message = install_completion(&shell, &home, &exe)?;
    write_stdout(message.as_bytes())
}

/// Installs the completion of `exe` for `shell` (a path such as `/bin/bash`) under `home`;
/// returns what to tell the user.
pub fn install_completion(shell: &str, home: &Path, exe: &Path) -> Result<String, Error> {
    // The path is put in a shell command: quote it.
    let exe = exe.display().to_string().replace('\'', "'\\''");
    let name = Path::new(shell)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (rc, lines): (PathBuf, Vec<String>) = match name.as_str() {
        "bash" => (
            home.join(".bashrc"),
            vec![format!("source <('{exe}' completion bash)")],
        ),
        "zsh" => (
            home.join(".zshrc"),
            vec![
                "autoload -U +X compinit && compinit".to_string(),
                format!("source <('{exe}' completion zsh)"),
            ],
        ),
        "fish" => return install_fish(home, &exe),
        _ => {
            return Err(Error::Failed(format!(
                "auto-completion for '{shell}' is not available (bash, zsh and fish are; \
                 'kes completion --help' shows how to install it by hand)"
            )));
        }
    };
    let text = std::fs::read_to_string(&rc).map_err(|e| {
        Error::Failed(format!(
            "cannot read '{}': {e} (create it, or add this line yourself: {})",
            rc.display(),
            lines.last().map(String::as_str).unwrap_or_default()
        ))
    })?;
    let last = lines.last().map(String::as_str).unwrap_or_default();
    if text.lines().any(|l| l.trim() == last) {
        return Ok("Completion is already installed.\n".into());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&rc)
        .map_err(|e| Error::Failed(format!("cannot open '{}': {e}", rc.display())))?;
    let mut append = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        append.push('\n');
    }
    for line in &lines {
        append.push_str(line);
        append.push('\n');
    }
    file.write_all(append.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Failed(format!("cannot write '{}': {e}", rc.display())))?;
    let mut message = format!(
        "Added completion to '{}'\n\nTo uninstall completion remove the following lines from '{}':\n",
        rc.display(),
        rc.display()
    );
    for line in &lines {
        message.push_str(&format!("   {line}\n"));
    }
    Ok(message)
}

/// fish loads `~/.config/fish/completions/kes.fish` by itself.
fn install_fish(home: &Path, exe: &str) -> Result<String, Error> {
    let dir = home.join(".config/fish/completions");
    let file = dir.join("kes.fish");
    let line = format!("'{exe}' completion fish | source\n");
    match std::fs::read_to_string(&file) {
        Ok(existing) if existing == line => return Ok("Completion is already installed.\n".into()),
        Ok(_) => {
            return Err(Error::Failed(format!(
                "'{}' exists already and was left as it is: remove it first to install kes's \
                 completion there",
                file.display()
            )));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Failed(format!(
                "cannot read '{}': {e}",
                file.display()
            )));
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Failed(format!("cannot create '{}': {e}", dir.display())))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .map_err(|e| Error::Failed(format!("cannot create '{}': {e}", file.display())))?;
    f.write_all(line.as_bytes())
        .map_err(|e| Error::Failed(format!("cannot write '{}': {e}", file.display())))?;
    Ok(format!(
        "Added completion to '{}'\n\nTo uninstall completion remove '{}'\n",
        file.display(),
        file.display()
    ))
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
    fn auto_completion_appends_once_and_never_clobbers() {
        let home = std::env::temp_dir().join(format!("kes-autocomp-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let exe = Path::new("/opt/kes dir/kes");
        // Like the Go command: the startup file must exist.
        assert!(install_completion("/bin/bash", &home, exe).is_err());
        std::fs::write(home.join(".bashrc"), "# mine").unwrap();
        let msg = install_completion("/bin/bash", &home, exe).unwrap();
        assert!(msg.starts_with("Added completion to '"), "{msg}");
        let rc = std::fs::read_to_string(home.join(".bashrc")).unwrap();
        assert_eq!(rc, "# mine\nsource <('/opt/kes dir/kes' completion bash)\n");
        assert_eq!(
            install_completion("/bin/bash", &home, exe).unwrap(),
            "Completion is already installed.\n"
        );
        assert_eq!(std::fs::read_to_string(home.join(".bashrc")).unwrap(), rc);
        // fish: a file of its own, never over another one.
        install_completion("/usr/bin/fish", &home, exe).unwrap();
        let fish = home.join(".config/fish/completions/kes.fish");
        assert!(
            std::fs::read_to_string(&fish)
                .unwrap()
                .contains("completion fish | source")
        );
        std::fs::write(&fish, "mine").unwrap();
        assert!(install_completion("/usr/bin/fish", &home, exe).is_err());
        assert_eq!(std::fs::read_to_string(&fish).unwrap(), "mine");
        assert!(install_completion("/bin/sh", &home, exe).is_err());
        std::fs::remove_dir_all(&home).unwrap();
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
