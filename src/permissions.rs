//! File permission checks at start-up, in the spirit of ssh's StrictModes: a config file,
//! private key or keystore that other users can write lets them take the server over (a new
//! admin identity, a key of their choice, a key file replaced under a name MinIO uses); a
//! private key or keystore that they can read hands them the keys.
//!
//! Refused (an error): the config file, `tls.key`, the Vault client key, the keystore directory
//! or a key file in it writable by the group or by others. Warned about: a private key, the
//! keystore directory or a key file readable by others (group-readable is how the packages give
//! the `kes` user its key: `root:kes`, mode 0640). `kes server --allow-insecure-permissions`
//! turns the errors into warnings, for setups that enforce access otherwise (e.g. ACLs).
//! Only the files themselves are checked, not the directories above them.

use crate::config::{Config, KeystoreConfig};
use std::path::Path;

/// What the checks found: problems that refuse a start, and warnings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks the files of `cfg`, read from `config_path`.
pub fn check(cfg: &Config, config_path: &Path) -> Findings {
    let mut f = Findings::default();
    f.not_writable(config_path, "the config file");
    f.private_key(&cfg.tls.key, "tls.key");
    match &cfg.keystore {
        KeystoreConfig::Fs { path } => f.keystore(path),
        KeystoreConfig::Vault(vault) => {
            if let Some(key) = &vault.tls.key {
                f.private_key(key, "keystore.vault.tls.key");
            }
        }
        KeystoreConfig::Memory => {}
    }
    f
}

#[cfg(unix)]
fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode(_path: &Path) -> Option<u32> {
    None
}

impl Findings {
    /// An error when `path` is writable by its group or by others.
    fn not_writable(&mut self, path: &Path, what: &str) -> Option<u32> {
        let mode = mode(path)?;
        if mode & 0o022 != 0 {
            self.errors.push(format!(
                "{what} '{}' is writable by other users (mode {mode:04o}): chmod go-w '{}'",
                path.display(),
                path.display()
            ));
        }
        Some(mode)
    }

    fn private_key(&mut self, path: &Path, what: &str) {
        if let Some(mode) = self.not_writable(path, what)
            && mode & 0o004 != 0
        {
            self.warnings.push(format!(
                "{what} '{}' is readable by every user (mode {mode:04o}): chmod o-rwx '{}'",
                path.display(),
                path.display()
            ));
        }
    }

    /// The keystore directory and its key files (one message for all files of a kind).
    fn keystore(&mut self, dir: &Path) {
        let Some(mode) = self.not_writable(dir, "the keystore directory") else {
            return; // created at start, with mode 0700
        };
        if mode & 0o005 != 0 {
            self.warnings.push(format!(
                "the keystore directory '{}' is readable by every user (mode {mode:04o}), so \
                 are the names of its keys: chmod 0700 '{}'",
                dir.display(),
                dir.display()
            ));
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let (mut writable, mut readable) = (Vec::new(), Vec::new());
        for entry in entries.flatten() {
            let path = entry.path();
            match self::mode(&path) {
                Some(m) if m & 0o022 != 0 => writable.push(path),
                Some(m) if m & 0o004 != 0 => readable.push(path),
                _ => {}
            }
        }
        let name = |files: &[std::path::PathBuf]| {
            let first = files[0].display();
            match files.len() {
                1 => format!("'{first}' is"),
                n => format!("{n} key files (e.g. '{first}') are"),
            }
        };
        if !writable.is_empty() {
            self.errors.push(format!(
                "{} writable by other users: chmod go-w '{}'/*",
                name(&writable),
                dir.display()
            ));
        }
        if !readable.is_empty() {
            self.warnings.push(format!(
                "{} readable by every user: chmod o-rwx '{}'/*",
                name(&readable),
                dir.display()
            ));
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn writable_files_are_errors_readable_keys_warnings() {
        let dir = std::env::temp_dir().join(format!("kes-perms-{}", std::process::id()));
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let (config, key) = (dir.join("config.yaml"), dir.join("server.key"));
        for file in [&config, &key, &keys.join("a"), &keys.join("b")] {
            std::fs::write(file, "x").unwrap();
            chmod(file, 0o600);
        }
        chmod(&keys, 0o700);
        let mut f = Findings::default();
        f.not_writable(&config, "the config file");
        f.private_key(&key, "tls.key");
        f.keystore(&keys);
        assert_eq!(f, Findings::default());
        // The packages' modes: root:kes 0640 key, 0640 config.
        chmod(&key, 0o640);
        chmod(&config, 0o640);
        let mut f = Findings::default();
        f.not_writable(&config, "the config file");
        f.private_key(&key, "tls.key");
        assert_eq!(f, Findings::default());

        chmod(&config, 0o666);
        chmod(&key, 0o644);
        chmod(&keys, 0o755);
        chmod(&keys.join("a"), 0o666);
        chmod(&keys.join("b"), 0o644);
        let mut f = Findings::default();
        f.not_writable(&config, "the config file");
        f.private_key(&key, "tls.key");
        f.keystore(&keys);
        assert_eq!(f.errors.len(), 2, "{f:?}");
        assert!(f.errors[0].starts_with("the config file '"), "{f:?}");
        assert!(f.errors[0].contains("(mode 0666): chmod go-w"), "{f:?}");
        assert!(
            f.errors[1].contains("/keys/a' is writable by other users"),
            "{f:?}"
        );
        assert_eq!(f.warnings.len(), 3, "{f:?}");
        assert!(f.warnings[0].starts_with("tls.key '") && f.warnings[0].contains("(mode 0644)"));
        assert!(f.warnings[1].contains("keystore directory") && f.warnings[1].contains("0755"));
        assert!(
            f.warnings[2].contains("/keys/b' is readable by every user"),
            "{f:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
