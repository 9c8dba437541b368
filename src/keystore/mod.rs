//! Keystores: where stored key values live (§6). A keystore stores opaque values (the §6.1 bytes)
//! under key names; it never parses or logs them.
//!
//! * [`fs`]: one file per key in a directory (the Go server's layout).
//! * [`mem`]: in memory, for `kes server --dev`.
//! * [`vault`]: HashiCorp Vault / OpenBao K/V (v1, v2), optionally wrapped with transit.

pub mod fs;
pub mod mem;
pub mod vault;

use std::time::Duration;
use zeroize::Zeroizing;

/// The most names one `list` call returns (§2.3: page size ≤ 1024).
pub const LIST_PAGE: usize = 1024;

/// The largest stored value a keystore accepts or returns (§6.2).
pub const MAX_VALUE_SIZE: usize = 1 << 20;

/// A keystore error. Lower layers describe what happened; the API layer chooses the HTTP reply.
/// The variants are what callers decide on; the texts are for the error log and `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The key does not exist.
    NotFound,
    /// A key with that name exists already; nothing was written.
    Exists,
    /// The keystore cannot be reached (network, timeout, sealed Vault): `reason` says why, for
    /// callers that decide on it; `detail` is the text for the error log.
    Unreachable {
        reason: UnreachableReason,
        detail: String,
    },
    /// The keystore refused the operation: the token's policy does not allow it (Vault's 403
    /// "permission denied" on a key or transit path). Text for the error log.
    Denied(String),
    /// The keystore answered but failed the operation. Text for the error log.
    Failed(String),
}

/// Why a keystore cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableReason {
    /// Every Vault node that answered is sealed.
    Sealed,
    /// No answer: connection refused or reset, host not found, an I/O error.
    Network,
    /// A TLS failure (a certificate not trusted, a host name it does not name, a protocol
    /// version): a configuration problem rather than an outage.
    Tls,
    /// No answer in time: a per-call timeout, or the deadline of the whole operation.
    Timeout,
    /// A node answered, but cannot serve now: a redirect during an election, 429, a gateway or
    /// 5xx error, not initialized, an answer to the health check that makes no sense.
    NotServing,
    /// No usable login token (no login has succeeded yet).
    NoToken,
    /// The storage itself is not there (the fs keystore's directory).
    Storage,
}

impl Error {
    /// An [`Error::Unreachable`].
    pub fn unreachable(reason: UnreachableReason, detail: impl Into<String>) -> Error {
        Error::Unreachable {
            reason,
            detail: detail.into(),
        }
    }

    /// The text without the kind's prefix (`Display` adds "key store is not reachable: " or
    /// "key store failed: "); `None` for the variants without text.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::Unreachable { detail, .. } => Some(detail),
            Error::Denied(why) | Error::Failed(why) => Some(why),
            Error::NotFound | Error::Exists => None,
        }
    }

    /// Why the keystore cannot be reached, for an [`Error::Unreachable`].
    pub fn unreachable_reason(&self) -> Option<UnreachableReason> {
        match self {
            Error::Unreachable { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound => f.write_str("key does not exist"),
            Error::Exists => f.write_str("key already exists"),
            Error::Unreachable { detail, .. } => write!(f, "key store is not reachable: {detail}"),
            // A denial is a failure of the operation to everyone who reads the text.
            Error::Denied(why) | Error::Failed(why) => write!(f, "key store failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// The health of a keystore as `/v1/status` and `/v1/ready` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Round-trip time of the health check.
    pub latency: Duration,
}

/// A page of key names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Sorted names starting with the prefix.
    pub names: Vec<String>,
    /// The first name not returned; empty when the listing is complete.
    pub continue_at: String,
}

/// The reserved top-level entry under which later key versions live (docs/key-versions.md §1).
/// No key name can have it: the name rule (§2.1) forbids `.`.
pub const VERSIONS_DIR: &str = ".kes-versions";

/// One version of a key as a ring listing finds it: its value, its retirement marker, or both
/// (docs/key-versions.md §1, §6). Values are versions 2 and up; version 1 (the key itself) only
/// appears when it has a marker (`1.retired`), and then with `value: true`, since its value is
/// the key, which only deleting the key removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version number, 2 or more.
    pub n: u32,
    /// The version's value is stored (false: destroyed, only the marker is left).
    pub value: bool,
    /// The version has a retirement marker.
    pub retired: bool,
}

/// Whether `ring` is a ring id: the key-id of version 1 (§5.4), 32 lowercase hex characters.
pub fn valid_ring(ring: &str) -> bool {
    ring.len() == 32
        && ring
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads one entry name of a ring listing: `<n>` (a value, `n` a canonical decimal in
/// 2..=u32::MAX) or `<n>.retired` (a marker, 1..=u32::MAX). `None` for anything else
/// (temporary files, junk).
pub fn parse_version_entry(entry: &str) -> Option<(u32, bool)> {
    let (digits, marker) = match entry.strip_suffix(".retired") {
        Some(d) => (d, true),
        None => (entry, false),
    };
    if digits.is_empty()
        || digits.len() > 10
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let n = u32::try_from(n).ok()?;
    (n >= 2 || (n == 1 && marker)).then_some((n, marker))
}

/// Builds the sorted version list of a ring from the entry names a keystore found in it.
pub fn collect_versions<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<VersionEntry> {
    let mut found = std::collections::BTreeMap::<u32, VersionEntry>::new();
    for (n, marker) in entries.into_iter().filter_map(parse_version_entry) {
        let e = found.entry(n).or_insert(VersionEntry {
            n,
            value: n == 1,
            retired: false,
        });
        if marker {
            e.retired = true;
        } else {
            e.value = true;
        }
    }
    found.into_values().collect()
}

fn no_versions() -> Error {
    Error::Failed("this keystore does not support key versions".into())
}

/// The contract every keystore fulfils (§6.2). Implementations are shared between worker threads.
pub trait Keystore: Send + Sync {
    /// Stores `value` under `name` if no key of that name exists; never overwrites (→ `Exists`).
    fn create(&self, name: &str, value: &[u8]) -> Result<(), Error>;
    /// Returns the stored value (→ `NotFound`).
    fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// Deletes the key (→ `NotFound` where the keystore can tell).
    fn delete(&self, name: &str) -> Result<(), Error>;
    /// Lists names starting with `prefix`, sorted, at most `limit` of them.
    fn list(&self, prefix: &str, limit: usize) -> Result<Page, Error>;
    /// Checks that the keystore is reachable and usable: that keys can be served. The error's
    /// text says why not (`/v1/status` reports it as `keystore_error`).
    fn status(&self) -> Result<Status, Error>;
    /// Checks the keystore's settings against the keystore again (on SIGHUP), for keystores that
    /// check any at start-up; logs what it finds. Returns at once (the check may run later).
    fn recheck(&self) {}
    /// Takes new login credentials from a reloaded config (on SIGHUP, when [`reload_change`]
    /// says [`Reload::Credentials`]): logs in with them at once and, when that works, uses them
    /// from then on. When it fails, the running credentials and token stay in force and the
    /// error says why. Keystores without credentials refuse.
    fn set_credentials(&self, _cfg: &crate::config::KeystoreConfig) -> Result<(), Error> {
        Err(Error::Failed(
            "this keystore has no login credentials".into(),
        ))
    }

    // Later key versions (docs/key-versions.md §2). Version 1 is the key itself (`create`,
    // `get`); versions 2 and up live in the ring `ring` (the key-id of version 1) of `name`
    // under [`VERSIONS_DIR`]. Like `create`, nothing here ever replaces a stored value.
    // Keystores that do not implement them refuse, so rotation fails instead of misbehaving.

    /// The later versions and markers of the ring, sorted by number; empty when the ring does
    /// not exist.
    fn list_versions(&self, _name: &str, _ring: &str) -> Result<Vec<VersionEntry>, Error> {
        Err(no_versions())
    }
    /// Stores version `n` (≥ 2) of the ring only if the ring has no value of that number;
    /// never overwrites (→ `Exists`).
    fn create_version(
        &self,
        _name: &str,
        _ring: &str,
        _n: u32,
        _value: &[u8],
    ) -> Result<(), Error> {
        Err(no_versions())
    }
    /// Returns the value of version `n` (→ `NotFound`).
    fn get_version(&self, _name: &str, _ring: &str, _n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        Err(no_versions())
    }
    /// Stores the retirement marker of version `n` (≥ 1) if it has none (→ `Exists`).
    fn create_marker(
        &self,
        _name: &str,
        _ring: &str,
        _n: u32,
        _marker: &[u8],
    ) -> Result<(), Error> {
        Err(no_versions())
    }
    /// Returns the retirement marker of version `n` (→ `NotFound`).
    fn get_marker(&self, _name: &str, _ring: &str, _n: u32) -> Result<Zeroizing<Vec<u8>>, Error> {
        Err(no_versions())
    }
    /// Deletes the value of version `n` (≥ 2), keeping its marker (→ `NotFound`). Only for the
    /// second step of retirement (destroy) and for deleting a whole key.
    fn delete_version(&self, _name: &str, _ring: &str, _n: u32) -> Result<(), Error> {
        Err(no_versions())
    }
    /// Deletes the retirement marker of version `n` (restore; deleting a key) (→ `NotFound`).
    fn delete_marker(&self, _name: &str, _ring: &str, _n: u32) -> Result<(), Error> {
        Err(no_versions())
    }
    /// The ring ids stored for `name`: the live ring (of the current version 1) and stale ones
    /// left by deleted keys of that name. Empty when there are none.
    fn list_rings(&self, _name: &str) -> Result<Vec<String>, Error> {
        Err(no_versions())
    }
    /// Removes what is left of an empty ring (directories; nothing on keystores without them).
    /// Fails when the ring still has entries.
    fn delete_ring(&self, _name: &str, _ring: &str) -> Result<(), Error> {
        Err(no_versions())
    }
}

/// How the `keystore:` section of a reloaded config differs from the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Not at all.
    Same,
    /// Only in the Vault login credentials (`approle.id`/`secret`, `kubernetes.role`/`jwt`): the
    /// running keystore can take them ([`Keystore::set_credentials`]).
    Credentials,
    /// In anything else: only a restart applies it.
    Restart,
}

/// Compares a reloaded `keystore:` section with the running one (see [`Reload`]).
pub fn reload_change(
    running: &crate::config::KeystoreConfig,
    new: &crate::config::KeystoreConfig,
) -> Reload {
    use crate::config::KeystoreConfig;
    match (running, new) {
        (KeystoreConfig::Vault(running), KeystoreConfig::Vault(new)) => {
            vault::reload_change(running, new)
        }
        (KeystoreConfig::Fs { path: a }, KeystoreConfig::Fs { path: b }) if a == b => Reload::Same,
        (KeystoreConfig::Memory, KeystoreConfig::Memory) => Reload::Same,
        _ => Reload::Restart,
    }
}

/// Builds a page from an unsorted list of all names (for keystores that list everything at once).
pub fn page_of(mut names: Vec<String>, prefix: &str, limit: usize) -> Page {
    names.retain(|n| n.starts_with(prefix));
    names.sort_unstable();
    names.dedup();
    let limit = limit.max(1);
    if names.len() > limit {
        let continue_at = names[limit].clone();
        names.truncate(limit);
        Page { names, continue_at }
    } else {
        Page {
            names,
            continue_at: String::new(),
        }
    }
}

/// Opens the keystore a configuration names; returns it with a one-line description for logs and
/// the start-up banner. A Vault keystore logs in here: failure aborts start-up.
pub fn open(
    cfg: &crate::config::KeystoreConfig,
) -> Result<(std::sync::Arc<dyn Keystore>, String), String> {
    open_with(cfg, vault::Startup::FailFast)
}

/// Like [`open`], for `kes server`: with [`vault::Startup::Wait`] a Vault keystore starts even
/// when Vault cannot be reached or is sealed (not ready, logging in once Vault answers); a
/// configuration that is provably wrong still aborts start-up. See README, "Failure modes".
pub fn open_with(
    cfg: &crate::config::KeystoreConfig,
    startup: vault::Startup,
) -> Result<(std::sync::Arc<dyn Keystore>, String), String> {
    use crate::config::KeystoreConfig;
    use std::sync::Arc;
    match cfg {
        KeystoreConfig::Fs { path } => {
            let ks = fs::FsKeystore::open(path)?;
            Ok((Arc::new(ks), format!("filesystem {}", path.display())))
        }
        KeystoreConfig::Memory => Ok((
            Arc::new(mem::MemKeystore::new()),
            "in-memory (keys are lost at exit)".into(),
        )),
        KeystoreConfig::Vault(v) => {
            let ks = vault::VaultKeystore::start(v, startup)
                .map_err(|e| format!("cannot connect to Vault: {e}"))?;
            let mut desc = format!(
                "vault {} (K/V {} at '{}'",
                v.endpoints.join(","),
                if v.kv_v2 { "v2" } else { "v1" },
                v.engine
            );
            if !v.namespace.is_empty() {
                desc.push_str(&format!(", namespace '{}'", v.namespace));
            }
            if !v.prefix.is_empty() {
                desc.push_str(&format!(", prefix '{}'", v.prefix));
            }
            if let Some(t) = &v.transit {
                desc.push_str(&format!(", transit key '{}'", t.key));
            }
            desc.push(')');
            Ok((Arc::new(ks), desc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_entry_names() {
        assert_eq!(parse_version_entry("2"), Some((2, false)));
        assert_eq!(parse_version_entry("4294967295"), Some((u32::MAX, false)));
        assert_eq!(parse_version_entry("17.retired"), Some((17, true)));
        assert_eq!(parse_version_entry("1.retired"), Some((1, true)));
        for junk in [
            "",
            "0",
            "1",
            "02",
            "4294967296",
            "99999999999",
            "+3",
            "3 ",
            "x",
            ".3.1.2.tmp",
            "3.retired.tmp",
            ".retired",
            "0.retired",
            "3.RETIRED",
            "٣",
        ] {
            assert_eq!(parse_version_entry(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn collected_versions_are_sorted_and_merged() {
        let got = collect_versions([
            "10",
            "3.retired",
            "2",
            "junk",
            "3",
            "4.retired",
            "1.retired",
        ]);
        let e = |n, value, retired| VersionEntry { n, value, retired };
        assert_eq!(
            got,
            vec![
                e(1, true, true),
                e(2, true, false),
                e(3, true, true),
                e(4, false, true),
                e(10, true, false)
            ]
        );
        assert!(collect_versions([]).is_empty());
    }

    #[test]
    fn ring_ids() {
        assert!(valid_ring("630dcd2966c4336691125448bbb25b4f"));
        assert!(!valid_ring("630DCD2966C4336691125448BBB25B4F"));
        assert!(!valid_ring("630dcd2966c4336691125448bbb25b4"));
        assert!(!valid_ring("../dcd2966c4336691125448bbb25b4f"));
        assert!(!valid_ring(""));
    }
}
