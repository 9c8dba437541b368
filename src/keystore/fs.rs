//! The filesystem keystore: one file per key in a directory, named after the key and holding the
//! stored value (the Go server's layout, so a directory it wrote works as it is).
//!
//! A create is atomic and durable and never overwrites: the value is written and fsynced to a
//! temporary file, then hard-linked to the key's name (`link` fails if the name exists, so two
//! racing creates cannot both win and a crash never leaves a half-written key under a real name),
//! and the directory is fsynced. Temporary files start with `.`, which no key name can.

use super::{Error, Keystore, MAX_VALUE_SIZE, Page, Status, page_of};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use zeroize::Zeroizing;

pub struct FsKeystore {
    dir: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FsKeystore {
    /// Opens the keystore directory, creating it (mode 0755, like the Go server) if missing.
    pub fn open(dir: &Path) -> Result<FsKeystore, String> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "keystore path '{}' is not a directory",
                    dir.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Only the server's user: key names are not everyone's business either.
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| {
                        format!("cannot create keystore directory '{}': {e}", dir.display())
                    })?;
            }
            Err(e) => {
                return Err(format!(
                    "cannot access keystore directory '{}': {e}",
                    dir.display()
                ));
            }
        }
        Ok(FsKeystore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self, name: &str) -> Result<PathBuf, Error> {
        // The API validates names more strictly; this keeps the store safe on its own.
        if name.is_empty() || name.contains(['/', '\\', '.', '\0']) {
            return Err(Error::Failed(format!("invalid key name '{name}'")));
        }
        Ok(self.dir.join(name))
    }

    fn io_error(&self, op: &str, name: &str, e: io::Error) -> Error {
        Error::Failed(format!("{op} '{}': {e}", self.dir.join(name).display()))
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Keystore for FsKeystore {
    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        let path = self.key_path(name)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::Failed("value too large".into()));
        }
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::Exists);
        }
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(value)?;
            f.sync_all()?;
            drop(f);
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(Error::Exists),
            Err(e) => return Err(self.io_error("cannot create", name, e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io_error("cannot sync directory of", name, e))
    }

    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let path = self.key_path(name)?;
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(self.io_error("cannot open", name, e)),
        };
        let mut value = Zeroizing::new(Vec::with_capacity(256));
        f.take(MAX_VALUE_SIZE as u64 + 1)
            .read_to_end(&mut value)
            .map_err(|e| self.io_error("cannot read", name, e))?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::Failed(format!(
                "key file '{}' is larger than 1 MiB",
                path.display()
            )));
        }
        Ok(value)
    }

    fn delete(&self, name: &str) -> Result<(), Error> {
        let path = self.key_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(self.io_error("cannot delete", name, e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io_error("cannot sync directory of", name, e))
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Page, Error> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| Error::Failed(format!("cannot list '{}': {e}", self.dir.display())))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::Failed(format!("cannot list '{}': {e}", self.dir.display())))?;
            // Skip temporary files of in-progress creates and anything not valid UTF-8.
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
                && name.starts_with(prefix)
            {
                names.push(name.to_owned());
            }
        }
        Ok(page_of(names, prefix, limit))
    }

    fn status(&self) -> Result<Status, Error> {
        let start = Instant::now();
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(Status {
                latency: start.elapsed(),
            }),
            Ok(_) => Err(Error::Unreachable(format!(
                "'{}' is not a directory",
                self.dir.display()
            ))),
            Err(e) => Err(Error::Unreachable(format!("'{}': {e}", self.dir.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kes-fs-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn create_is_exclusive_and_durable() {
        let dir = tempdir("excl");
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create("my-key", b"value-1").unwrap();
        assert_eq!(ks.create("my-key", b"value-2"), Err(Error::Exists));
        assert_eq!(&ks.get("my-key").unwrap()[..], b"value-1");
        let mode = fs::metadata(dir.join("my-key")).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        // No temporary files are left behind.
        let n = fs::read_dir(&dir).unwrap().count();
        assert_eq!(n, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn racing_creates_have_one_winner() {
        let dir = tempdir("race");
        let ks = std::sync::Arc::new(FsKeystore::open(&dir).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ks = ks.clone();
                std::thread::spawn(move || ks.create("k", format!("v{i}").as_bytes()).is_ok())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn get_delete_list_and_errors() {
        let dir = tempdir("misc");
        let ks = FsKeystore::open(&dir).unwrap();
        assert_eq!(ks.get("nope"), Err(Error::NotFound));
        assert_eq!(ks.delete("nope"), Err(Error::NotFound));
        assert!(matches!(ks.get("../etc"), Err(Error::Failed(_))));
        for n in ["b", "a", "ab", "c"] {
            ks.create(n, b"x").unwrap();
        }
        fs::write(dir.join(".a.tmp"), b"junk").unwrap();
        let page = ks.list("a", 10).unwrap();
        assert_eq!(page.names, vec!["a", "ab"]);
        let page = ks.list("", 2).unwrap();
        assert_eq!(page.names, vec!["a", "ab"]);
        assert_eq!(page.continue_at, "b");
        ks.delete("a").unwrap();
        assert_eq!(ks.get("a"), Err(Error::NotFound));
        assert!(ks.status().is_ok());
        fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(ks.status(), Err(Error::Unreachable(_))));
    }

    #[test]
    fn open_refuses_a_file() {
        let dir = tempdir("file");
        fs::write(&dir, b"x").unwrap();
        assert!(FsKeystore::open(&dir).is_err());
        fs::remove_file(&dir).unwrap();
    }
}
