//! The filesystem keystore: one file per key in a directory, named after the key and holding the
//! stored value (the Go server's layout, so a directory it wrote works as it is).
//!
//! A create is atomic and durable and never overwrites: the value is written and fsynced to a
//! temporary file, then hard-linked to the key's name (`link` fails if the name exists, so two
//! racing creates cannot both win and a crash never leaves a half-written key under a real name),
//! and the directory is fsynced. Temporary files start with `.`, which no key name can.
//!
//! Later key versions (docs/key-versions.md §1) live in `.kes-versions/<name>/<ring>/<n>`
//! (markers: `<n>.retired`), directories of mode 0700 made on demand, each file written the same
//! way as a key. The listing of keys leaves `.kes-versions` out like every `.` entry.

use super::{
    Error, Keystore, MAX_VALUE_SIZE, Page, Status, UnreachableReason, VERSIONS_DIR, VersionEntry,
    collect_versions, page_of, valid_ring,
};
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

    /// The directory of a ring: `<dir>/.kes-versions/<name>/<ring>`.
    fn ring_dir(&self, name: &str, ring: &str) -> Result<PathBuf, Error> {
        self.key_path(name)?;
        if !valid_ring(ring) {
            return Err(Error::Failed(format!("invalid key ring '{ring}'")));
        }
        Ok(self.dir.join(VERSIONS_DIR).join(name).join(ring))
    }

    /// Makes the ring's directory (and its parents, mode 0700) when missing, durably: every
    /// directory that got a new entry is synced.
    fn make_ring_dir(&self, ring_dir: &Path) -> Result<(), Error> {
        if fs::metadata(ring_dir).map(|m| m.is_dir()).unwrap_or(false) {
            return Ok(());
        }
        let fail = |e: io::Error| {
            Error::Failed(format!(
                "cannot create directory '{}': {e}",
                ring_dir.display()
            ))
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(ring_dir)
            .map_err(fail)?;
        // The ring directory, `<name>`, `.kes-versions` and the keystore directory itself may
        // each have got a new entry.
        let mut d = ring_dir.parent();
        while let Some(dir) = d {
            File::open(dir).and_then(|f| f.sync_all()).map_err(fail)?;
            if dir == self.dir {
                break;
            }
            d = dir.parent();
        }
        Ok(())
    }
}

/// Writes `value` to `dir/file` only if that name is free: a temporary file `.<file>.<pid>.<n>.tmp`
/// (mode 0600) written and synced, hard-linked to the name (`link` fails when it exists), removed,
/// and the directory synced. `label` names the file in errors.
fn create_file(dir: &Path, file: &str, value: &[u8], label: &str) -> Result<(), Error> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::Failed("value too large".into()));
    }
    let path = dir.join(file);
    if fs::symlink_metadata(&path).is_ok() {
        return Err(Error::Exists);
    }
    let tmp = dir.join(format!(
        ".{file}.{}.{}.tmp",
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
        Err(e) => {
            return Err(Error::Failed(format!(
                "cannot create '{}': {e}",
                dir.join(label).display()
            )));
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::Failed(format!(
            "cannot sync directory of '{}': {e}",
            dir.join(label).display()
        ))
    })
}

/// Removes `dir/file` (none → `NotFound`) and syncs the directory.
fn remove_file_synced(dir: &Path, file: &str) -> Result<(), Error> {
    let path = dir.join(file);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
        Err(e) => {
            return Err(Error::Failed(format!(
                "cannot delete '{}': {e}",
                path.display()
            )));
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        Error::Failed(format!(
            "cannot sync directory of '{}': {e}",
            path.display()
        ))
    })
}

/// Reads a whole file of at most [`MAX_VALUE_SIZE`] bytes (none → `NotFound`).
fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
        Err(e) => {
            return Err(Error::Failed(format!(
                "cannot open '{}': {e}",
                path.display()
            )));
        }
    };
    let mut value = Zeroizing::new(Vec::with_capacity(256));
    f.take(MAX_VALUE_SIZE as u64 + 1)
        .read_to_end(&mut value)
        .map_err(|e| Error::Failed(format!("cannot read '{}': {e}", path.display())))?;
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::Failed(format!(
            "key file '{}' is larger than 1 MiB",
            path.display()
        )));
    }
    Ok(value)
}

/// The names (valid UTF-8 only) in directory `dir`; a missing directory is empty when
/// `missing_is_empty`, an error otherwise.
fn entry_names(dir: &Path, missing_is_empty: bool) -> Result<Vec<String>, Error> {
    let fail = |e: io::Error| Error::Failed(format!("cannot list '{}': {e}", dir.display()));
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing_is_empty && e.kind() == io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(fail(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry.map_err(fail)?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

use std::os::unix::fs::DirBuilderExt;

impl Keystore for FsKeystore {
    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.key_path(name)?;
        create_file(&self.dir, name, value, name)
    }

    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_file(&self.key_path(name)?)
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
        // Temporary files of in-progress creates and `.kes-versions` start with `.`.
        let names = entry_names(&self.dir, false)?
            .into_iter()
            .filter(|name| !name.starts_with('.') && name.starts_with(prefix))
            .collect();
        Ok(page_of(names, prefix, limit))
    }

    fn list_versions(&self, name: &str, ring: &str) -> Result<Vec<VersionEntry>, Error> {
        let names = entry_names(&self.ring_dir(name, ring)?, true)?;
        Ok(collect_versions(names.iter().map(String::as_str)))
    }

    fn create_version(&self, name: &str, ring: &str, n: u32, value: &[u8]) -> Result<(), Error> {
        let dir = self.ring_dir(name, ring)?;
        if n < 2 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        self.make_ring_dir(&dir)?;
        create_file(&dir, &n.to_string(), value, &n.to_string())
    }

    fn get_version(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_file(&self.ring_dir(name, ring)?.join(n.to_string()))
    }

    fn create_marker(&self, name: &str, ring: &str, n: u32, marker: &[u8]) -> Result<(), Error> {
        let dir = self.ring_dir(name, ring)?;
        if n < 1 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        self.make_ring_dir(&dir)?;
        let file = format!("{n}.retired");
        create_file(&dir, &file, marker, &file)
    }

    fn get_marker(&self, name: &str, ring: &str, n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_file(&self.ring_dir(name, ring)?.join(format!("{n}.retired")))
    }

    fn delete_version(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        if n < 2 {
            return Err(Error::Failed(format!("invalid key version {n}")));
        }
        remove_file_synced(&self.ring_dir(name, ring)?, &n.to_string())
    }

    fn delete_marker(&self, name: &str, ring: &str, n: u32) -> Result<(), Error> {
        remove_file_synced(&self.ring_dir(name, ring)?, &format!("{n}.retired"))
    }

    fn list_rings(&self, name: &str) -> Result<Vec<String>, Error> {
        self.key_path(name)?;
        let mut rings: Vec<String> = entry_names(&self.dir.join(VERSIONS_DIR).join(name), true)?
            .into_iter()
            .filter(|ring| valid_ring(ring))
            .collect();
        rings.sort_unstable();
        Ok(rings)
    }

    fn delete_ring(&self, name: &str, ring: &str) -> Result<(), Error> {
        let dir = self.ring_dir(name, ring)?;
        let fail = |e: io::Error| Error::Failed(format!("cannot remove '{}': {e}", dir.display()));
        // Temporary files of creates that crashed may be left; anything else keeps the ring.
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries {
                let entry = entry.map_err(fail)?;
                let file = entry.file_name();
                match file.to_str() {
                    Some(f) if f.starts_with('.') && f.ends_with(".tmp") => {
                        fs::remove_file(entry.path()).map_err(fail)?;
                    }
                    _ => {
                        return Err(Error::Failed(format!(
                            "cannot remove '{}': the ring is not empty",
                            dir.display()
                        )));
                    }
                }
            }
        }
        match fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(fail(e)),
        }
        // `<name>` too once it is empty (another ring keeps it).
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
            if let Some(versions) = parent.parent() {
                File::open(versions)
                    .and_then(|d| d.sync_all())
                    .map_err(fail)?;
            }
        }
        Ok(())
    }

    fn status(&self) -> Result<Status, Error> {
        let start = Instant::now();
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(Status {
                latency: start.elapsed(),
            }),
            Ok(_) => Err(Error::unreachable(
                UnreachableReason::Storage,
                format!("'{}' is not a directory", self.dir.display()),
            )),
            Err(e) => Err(Error::unreachable(
                UnreachableReason::Storage,
                format!("'{}': {e}", self.dir.display()),
            )),
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
        assert!(matches!(
            ks.status(),
            Err(Error::Unreachable {
                reason: UnreachableReason::Storage,
                ..
            })
        ));
    }

    const RING: &str = "630dcd2966c4336691125448bbb25b4f";
    const OTHER_RING: &str = "00000000000000000000000000000000";

    fn v(n: u32, value: bool, retired: bool) -> VersionEntry {
        VersionEntry { n, value, retired }
    }

    #[test]
    fn versions_are_created_once_beside_the_key() {
        let dir = tempdir("versions");
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create("k", b"version-1").unwrap();
        assert_eq!(ks.list_versions("k", RING).unwrap(), vec![]);
        assert_eq!(ks.get_version("k", RING, 2), Err(Error::NotFound));

        ks.create_version("k", RING, 2, b"version-2").unwrap();
        ks.create_version("k", RING, 3, b"version-3").unwrap();
        assert_eq!(
            ks.create_version("k", RING, 2, b"other"),
            Err(Error::Exists)
        );
        assert_eq!(&ks.get_version("k", RING, 2).unwrap()[..], b"version-2");
        assert_eq!(&ks.get_version("k", RING, 3).unwrap()[..], b"version-3");
        assert_eq!(
            ks.list_versions("k", RING).unwrap(),
            vec![v(2, true, false), v(3, true, false)]
        );
        // Version 1 is the key, untouched, and the listing of keys does not show the rings.
        assert_eq!(&ks.get("k").unwrap()[..], b"version-1");
        assert_eq!(ks.list("", 10).unwrap().names, vec!["k"]);
        // The files: mode 0600 in directories of mode 0700, no temporary files left.
        use std::os::unix::fs::PermissionsExt;
        let ring_dir = dir.join(".kes-versions/k").join(RING);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ring_dir.join("2")), 0o600);
        assert_eq!(mode(&ring_dir), 0o700);
        assert_eq!(mode(&dir.join(".kes-versions")), 0o700);
        assert_eq!(fs::read_dir(&ring_dir).unwrap().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rings_of_different_version_1s_are_apart() {
        let dir = tempdir("rings");
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create_version("k", RING, 2, b"a").unwrap();
        ks.create_version("k", OTHER_RING, 2, b"b").unwrap();
        ks.create_version("other", RING, 5, b"c").unwrap();
        assert_eq!(
            ks.list_versions("k", RING).unwrap(),
            vec![v(2, true, false)]
        );
        assert_eq!(&ks.get_version("k", OTHER_RING, 2).unwrap()[..], b"b");
        assert_eq!(
            ks.list_versions("other", RING).unwrap(),
            vec![v(5, true, false)]
        );
        assert_eq!(
            ks.list_versions("k", "00").unwrap_err(),
            Error::Failed("invalid key ring '00'".into())
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn markers_and_junk() {
        let dir = tempdir("markers");
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create_version("k", RING, 2, b"v2").unwrap();
        ks.create_marker("k", RING, 2, b"{}").unwrap();
        ks.create_marker("k", RING, 1, b"{}").unwrap();
        assert_eq!(ks.create_marker("k", RING, 2, b"x"), Err(Error::Exists));
        assert_eq!(&ks.get_marker("k", RING, 2).unwrap()[..], b"{}");
        assert_eq!(ks.get_marker("k", RING, 3), Err(Error::NotFound));
        let ring_dir = dir.join(".kes-versions/k").join(RING);
        for junk in [".2.1.0.tmp", "02", "x", "1"] {
            fs::write(ring_dir.join(junk), b"junk").unwrap();
        }
        fs::create_dir(ring_dir.join("7")).unwrap_or(());
        let listed = ks.list_versions("k", RING).unwrap();
        // A directory named like a version is listed (and fails on read): the listing does not
        // stat every entry.
        assert_eq!(
            listed,
            vec![v(1, true, true), v(2, true, true), v(7, true, false)]
        );
        assert!(matches!(
            ks.get_version("k", RING, 7),
            Err(Error::Failed(_))
        ));
        // Invalid numbers and names are refused before touching the disk.
        assert!(matches!(
            ks.create_version("k", RING, 1, b"x"),
            Err(Error::Failed(_))
        ));
        assert!(matches!(
            ks.create_version("k", RING, 0, b"x"),
            Err(Error::Failed(_))
        ));
        assert!(matches!(
            ks.create_marker("k", RING, 0, b"x"),
            Err(Error::Failed(_))
        ));
        assert!(matches!(
            ks.create_version("../k", RING, 2, b"x"),
            Err(Error::Failed(_))
        ));
        assert!(matches!(
            ks.create_version("k", "../../../../tmp/xxxxxxxxxxxxxxxxxx", 2, b"x"),
            Err(Error::Failed(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn destroy_restore_and_ring_cleanup() {
        let dir = tempdir("cleanup");
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create("k", b"v1").unwrap();
        for n in 2..=3 {
            ks.create_version("k", RING, n, b"v").unwrap();
        }
        ks.create_marker("k", RING, 2, b"{}").unwrap();
        ks.create_version("k", OTHER_RING, 2, b"stale").unwrap();
        assert_eq!(ks.list_rings("k").unwrap(), vec![OTHER_RING, RING]);
        assert_eq!(ks.list_rings("none").unwrap(), Vec::<String>::new());
        // Destroy: the value goes, the marker stays (the number stays taken).
        ks.delete_version("k", RING, 2).unwrap();
        assert_eq!(ks.delete_version("k", RING, 2), Err(Error::NotFound));
        assert!(matches!(
            ks.delete_version("k", RING, 1),
            Err(Error::Failed(_))
        ));
        assert_eq!(
            ks.list_versions("k", RING).unwrap(),
            vec![v(2, false, true), v(3, true, false)]
        );
        // Restore of a live version: the marker goes.
        ks.create_marker("k", RING, 3, b"{}").unwrap();
        ks.delete_marker("k", RING, 3).unwrap();
        assert_eq!(ks.delete_marker("k", RING, 3), Err(Error::NotFound));
        // A ring with entries is not removed; an emptied one is, with `<name>` once empty.
        assert!(matches!(ks.delete_ring("k", RING), Err(Error::Failed(_))));
        ks.delete_version("k", RING, 3).unwrap();
        ks.delete_marker("k", RING, 2).unwrap();
        fs::write(
            dir.join(".kes-versions/k").join(RING).join(".3.1.2.tmp"),
            b"x",
        )
        .unwrap();
        ks.delete_ring("k", RING).unwrap();
        ks.delete_ring("k", RING).unwrap();
        assert_eq!(ks.list_rings("k").unwrap(), vec![OTHER_RING]);
        ks.delete_version("k", OTHER_RING, 2).unwrap();
        ks.delete_ring("k", OTHER_RING).unwrap();
        assert!(!dir.join(".kes-versions/k").exists());
        assert_eq!(&ks.get("k").unwrap()[..], b"v1");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn racing_version_creates_have_one_winner_per_number() {
        // The rotation loop of docs/key-versions.md §3 in miniature: each thread takes the next
        // free number and retries on `Exists`; every thread ends with its own number and no
        // value is overwritten.
        let dir = tempdir("vrace");
        let ks = std::sync::Arc::new(FsKeystore::open(&dir).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let ks = ks.clone();
                std::thread::spawn(move || {
                    let value = format!("thread-{i}");
                    for _ in 0..64 {
                        let next = ks
                            .list_versions("k", RING)
                            .unwrap()
                            .last()
                            .map_or(2, |e| e.n + 1);
                        match ks.create_version("k", RING, next, value.as_bytes()) {
                            Ok(()) => return (next, value),
                            Err(Error::Exists) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    panic!("no free version after 64 tries");
                })
            })
            .collect();
        let mut won: Vec<(u32, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        won.sort();
        let numbers: Vec<u32> = won.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (2..10).collect::<Vec<_>>());
        for (n, value) in won {
            assert_eq!(&ks.get_version("k", RING, n).unwrap()[..], value.as_bytes());
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_refuses_a_file() {
        let dir = tempdir("file");
        fs::write(&dir, b"x").unwrap();
        assert!(FsKeystore::open(&dir).is_err());
        fs::remove_file(&dir).unwrap();
    }
}
