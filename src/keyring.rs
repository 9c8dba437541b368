//! Key rings (docs/key-versions.md): the versions of one key name, which one is current, the
//! number a rotation takes next, and which version a decrypt uses.
//!
//! Pure logic over what a keystore listing found ([`VersionEntry`]) and a loader of version
//! values, so that the cache and the API share one tested implementation. Nothing here touches
//! a keystore or logs.

use crate::crypto::{self, KeyVersion, version_hint};
use crate::keystore::VersionEntry;
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// How far above the highest known version a hint may point and still make the caller read the
/// ring again (a rotation through another node); beyond it, the hint is noise.
pub const RELOAD_AHEAD: u32 = 16;

/// What is known of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    pub n: u32,
    /// It has a retirement marker: decrypts that need it are refused (409), not served.
    pub retired: bool,
    /// Its value was destroyed (step 2 of retirement); the number stays taken.
    pub destroyed: bool,
}

/// The versions of one key as a listing found them. Version 1 (the key itself) is always there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingState {
    versions: BTreeMap<u32, VersionInfo>,
}

impl RingState {
    /// The ring of a key whose later versions and markers are `entries` (from
    /// [`crate::keystore::Keystore::list_versions`]).
    pub fn new(entries: &[VersionEntry]) -> RingState {
        let mut versions = BTreeMap::from([(
            1,
            VersionInfo {
                n: 1,
                retired: false,
                destroyed: false,
            },
        )]);
        for e in entries {
            versions.insert(
                e.n,
                VersionInfo {
                    n: e.n,
                    retired: e.retired,
                    destroyed: !e.value,
                },
            );
        }
        RingState { versions }
    }

    /// The version generate and encrypt use: the highest one that has a value and is not
    /// retired. The API never retires the current version, but a marker that got there anyway
    /// (written by hand, a crash, a bug) must not make new data go to a version on its way to
    /// destruction. Version 1 when nothing else qualifies (it always has a value).
    pub fn current(&self) -> u32 {
        self.versions
            .values()
            .rev()
            .find(|v| !v.destroyed && !v.retired)
            .map_or(1, |v| v.n)
    }

    /// Whether the key was ever rotated (replies then carry `"version"`).
    pub fn is_rotated(&self) -> bool {
        self.current() >= 2
    }

    /// The number the next rotation creates: above every number ever taken, destroyed ones and
    /// markers included, so a number is never reused. `None` when u32 is exhausted.
    pub fn next(&self) -> Option<u32> {
        self.versions
            .keys()
            .next_back()
            .and_then(|n| n.checked_add(1))
    }

    pub fn get(&self, n: u32) -> Option<&VersionInfo> {
        self.versions.get(&n)
    }

    /// Every version, newest first (for describe).
    pub fn newest_first(&self) -> impl Iterator<Item = &VersionInfo> {
        self.versions.values().rev()
    }

    /// Whether a decrypt names (or hints at) a version above the highest one known, close enough
    /// to be a rotation made through another node: the caller then reads the ring again once.
    pub fn needs_reload(&self, requested: Option<u32>, ciphertext: &[u8]) -> bool {
        self.needs_reload_for(requested.or_else(|| version_hint::of(ciphertext)))
    }

    /// [`RingState::needs_reload`] for the version a decrypt names, or else its hint
    /// ([`version_hint::of`], computed once by a caller that also decrypts).
    pub fn needs_reload_for(&self, version: Option<u32>) -> bool {
        let max = self.versions.keys().next_back().copied().unwrap_or(1);
        version.is_some_and(|n| n > max && n - max <= RELOAD_AHEAD)
    }
}

/// The request's `version` is not a canonical decimal in 1..=u32::MAX (400 `invalid key version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidVersion;

/// Reads the `version` of a request: `""` is none (the kms-go client omits it when empty);
/// otherwise a canonical decimal (no sign, no leading zero) in 1..=u32::MAX.
pub fn parse_version(s: &str) -> Result<Option<u32>, InvalidVersion> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 10 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidVersion);
    }
    let n: u64 = s.parse().map_err(|_| InvalidVersion)?;
    u32::try_from(n).map(Some).map_err(|_| InvalidVersion)
}

/// Why a decrypt through a ring failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptError<E> {
    /// 404 `key version does not exist`: the named version is unknown or destroyed.
    UnknownVersion,
    /// 409 `key version is retired`: the ciphertext authenticates under this retired version.
    Retired(u32),
    /// 400 `decryption failed: ciphertext is not authentic`.
    NotAuthentic,
    /// 500 `failed to decrypt ciphertext`: any other failure of the crypto layer.
    Failed,
    /// Loading a version's value failed (the caller's error: keystore, 502).
    Load(E),
}

fn open<E>(
    key: &KeyVersion,
    ciphertext: &[u8],
    context: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, DecryptError<E>> {
    match key
        .key
        .decrypt(ciphertext, context, !key.algorithm_explicit)
    {
        Ok(plaintext) => Ok(Some(plaintext)),
        Err(crypto::Error::NotAuthentic) => Ok(None),
        Err(_) => Err(DecryptError::Failed),
    }
}

/// Decrypts with the ring (docs/key-versions.md §4): with `requested`, exactly that version;
/// without, the version the ciphertext's hint names (if the ring has it), then version 1 (every
/// ciphertext without a valid hint, legacy formats included, was made by version 1). So at most
/// two versions are loaded and tried, whatever the ring's size. A retired version that
/// authenticates the ciphertext answers [`DecryptError::Retired`]. Returns the plaintext and
/// the version that decrypted it.
pub fn decrypt<E>(
    ring: &RingState,
    requested: Option<u32>,
    ciphertext: &[u8],
    context: &[u8],
    load: impl FnMut(u32) -> Result<Arc<KeyVersion>, E>,
) -> Result<(Zeroizing<Vec<u8>>, u32), DecryptError<E>> {
    let hint = if requested.is_none() {
        version_hint::of(ciphertext)
    } else {
        None
    };
    decrypt_hinted(ring, requested, hint, ciphertext, context, load)
}

/// [`decrypt`] with the ciphertext's hint already read (`version_hint::of`; only used when
/// `requested` is `None`), for a caller that needed it before.
pub fn decrypt_hinted<E>(
    ring: &RingState,
    requested: Option<u32>,
    hint: Option<u32>,
    ciphertext: &[u8],
    context: &[u8],
    mut load: impl FnMut(u32) -> Result<Arc<KeyVersion>, E>,
) -> Result<(Zeroizing<Vec<u8>>, u32), DecryptError<E>> {
    let mut try_version =
        |info: &VersionInfo| -> Result<Option<Zeroizing<Vec<u8>>>, DecryptError<E>> {
            let key = load(info.n).map_err(DecryptError::Load)?;
            match open(&key, ciphertext, context)? {
                Some(_) if info.retired => Err(DecryptError::Retired(info.n)),
                found => Ok(found),
            }
        };
    if let Some(n) = requested {
        let info = match ring.get(n) {
            Some(info) if !info.destroyed => *info,
            _ => return Err(DecryptError::UnknownVersion),
        };
        return match try_version(&info)? {
            Some(plaintext) => Ok((plaintext, n)),
            None => Err(DecryptError::NotAuthentic),
        };
    }
    if let Some(info) = hint
        .and_then(|n| ring.get(n))
        .filter(|info| !info.destroyed)
        .copied()
        && let Some(plaintext) = try_version(&info)?
    {
        return Ok((plaintext, info.n));
    }
    let first = *ring.get(1).ok_or(DecryptError::NotAuthentic)?;
    match try_version(&first)? {
        Some(plaintext) => Ok((plaintext, 1)),
        None => Err(DecryptError::NotAuthentic),
    }
}

/// The most times a rotation takes the next number after losing it to another rotation.
pub const ROTATE_TRIES: usize = 16;

/// Why a rotation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateError {
    /// The key does not exist (404).
    NotFound,
    /// Version 1's stored value cannot be read as a key (502 `failed to read key`).
    InvalidKey(String),
    /// Every one of [`ROTATE_TRIES`] numbers was taken by a concurrent rotation (503).
    Contended,
    /// No number is left (u32 exhausted).
    Exhausted,
    /// The keystore failed (502 `failed to rotate key`).
    Keystore(crate::keystore::Error),
    /// `make` failed (500 `failed to generate encryption key`).
    Make(String),
}

/// Waits before another attempt after a lost race: a random time below min(2^attempt, 64) ms,
/// so that rotators that keep colliding spread out.
fn backoff(attempt: usize) {
    let cap_ms = 1u64 << attempt.min(6);
    let mut r = [0u8; 2];
    let jitter = match crate::crypto::random(&mut r) {
        Ok(()) => u64::from(u16::from_le_bytes(r)),
        Err(_) => 0x7fff,
    };
    let micros = jitter * cap_ms * 1000 / 65_536;
    std::thread::sleep(std::time::Duration::from_micros(micros));
}

/// The ring id of a key: the key-id (§5.4) of its version 1, from version 1's stored value.
pub fn ring_id(version_1: &[u8]) -> Result<String, RotateError> {
    KeyVersion::decode(version_1)
        .map(|v| v.key.key_id())
        .map_err(|e| RotateError::InvalidKey(e.to_string()))
}

/// Adds a version to the key `name` (docs/key-versions.md §3): reads version 1 (for the ring
/// id) and the ring from the keystore itself (never from a cache), takes the next number, and
/// creates it only if absent; when another rotation took that number first, reads the ring again
/// and takes the next, up to [`ROTATE_TRIES`] times. `make` builds the stored value (§6.1) of
/// the new version; it is called once per attempt. Returns the new version's number. Nothing is
/// ever overwritten: the keystore's create-if-absent decides every race.
pub fn rotate(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
    mut make: impl FnMut() -> Result<Zeroizing<Vec<u8>>, String>,
) -> Result<u32, RotateError> {
    use crate::keystore::Error as KsError;
    let v1 = ks.get(name).map_err(|e| match e {
        KsError::NotFound => RotateError::NotFound,
        e => RotateError::Keystore(e),
    })?;
    let ring = ring_id(&v1)?;
    drop(v1);
    for attempt in 0..ROTATE_TRIES {
        if attempt > 0 {
            backoff(attempt);
        }
        let entries = ks
            .list_versions(name, &ring)
            .map_err(RotateError::Keystore)?;
        let n = RingState::new(&entries)
            .next()
            .ok_or(RotateError::Exhausted)?;
        let value = make().map_err(RotateError::Make)?;
        match ks.create_version(name, &ring, n, &value) {
            Ok(()) => return Ok(n),
            Err(KsError::Exists) => continue,
            Err(e) => return Err(RotateError::Keystore(e)),
        }
    }
    Err(RotateError::Contended)
}

/// How long the version after a retired one must have existed: far longer than the 60 s in
/// which other nodes may still encrypt with the version it replaced (docs/key-versions.md §5).
pub const RETIRE_AFTER_SUCCESSOR: time::Duration = time::Duration::minutes(10);

/// Why retire, restore or destroy refused or failed (statuses of docs/key-versions.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleError {
    /// 404 `key does not exist`.
    KeyNotFound,
    /// 404 `key version does not exist`.
    UnknownVersion,
    /// 409 `the current key version cannot be retired`.
    Current,
    /// 409 `key version was superseded too recently to retire`.
    SupersededTooRecently,
    /// 409 `key version is retired` (retire twice).
    AlreadyRetired,
    /// 409 `key version is not retired` (restore or destroy of a live version).
    NotRetired,
    /// 409 `key version was retired too recently to destroy`.
    RetiredTooRecently,
    /// 409 `version 1 can only be destroyed by deleting the key`.
    VersionOne,
    /// 502: the keystore failed, or a stored value or marker cannot be read.
    Keystore(crate::keystore::Error),
}

/// A retirement marker: when and by whom (JSON, the marker's stored bytes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// Unix seconds.
    pub retired_at: i64,
    pub retired_by: String,
}

fn ks_err(e: crate::keystore::Error) -> LifecycleError {
    match e {
        crate::keystore::Error::NotFound => LifecycleError::UnknownVersion,
        e => LifecycleError::Keystore(e),
    }
}

/// The ring id and state of `name`, read from the keystore itself.
fn read_ring(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
) -> Result<(String, RingState), LifecycleError> {
    let v1 = ks.get(name).map_err(|e| match e {
        crate::keystore::Error::NotFound => LifecycleError::KeyNotFound,
        e => LifecycleError::Keystore(e),
    })?;
    let ring = ring_id(&v1)
        .map_err(|e| LifecycleError::Keystore(crate::keystore::Error::Failed(format!("{e:?}"))))?;
    let entries = ks
        .list_versions(name, &ring)
        .map_err(LifecycleError::Keystore)?;
    Ok((ring, RingState::new(&entries)))
}

/// Step 1 of retirement: marks version `n` retired (decrypts that need it answer 409 from then
/// on; reversible with [`restore`]). Refused for the current version, and until the version
/// after it has existed for [`RETIRE_AFTER_SUCCESSOR`] (judged by its stored creation time;
/// a successor without one counts as new).
pub fn retire(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
    n: u32,
    identity: &str,
    now: time::OffsetDateTime,
) -> Result<(), LifecycleError> {
    let (ring, state) = read_ring(ks, name)?;
    let info = match state.get(n) {
        Some(info) if !info.destroyed => *info,
        _ => return Err(LifecycleError::UnknownVersion),
    };
    if info.retired {
        return Err(LifecycleError::AlreadyRetired);
    }
    if n >= state.current() {
        return Err(LifecycleError::Current);
    }
    let successor = state
        .newest_first()
        .filter(|v| v.n > n && !v.destroyed)
        .map(|v| v.n)
        .min()
        .ok_or(LifecycleError::Current)?;
    let value = ks.get_version(name, &ring, successor).map_err(ks_err)?;
    let created = KeyVersion::decode(&value).ok().and_then(|v| v.created_at);
    match created {
        Some(t) if now - t >= RETIRE_AFTER_SUCCESSOR => {}
        _ => return Err(LifecycleError::SupersededTooRecently),
    }
    let marker = serde_json::to_vec(&Marker {
        retired_at: now.unix_timestamp(),
        retired_by: identity.to_owned(),
    })
    .unwrap_or_default();
    match ks.create_marker(name, &ring, n, &marker) {
        Ok(()) => Ok(()),
        Err(crate::keystore::Error::Exists) => Err(LifecycleError::AlreadyRetired),
        Err(e) => Err(LifecycleError::Keystore(e)),
    }
}

/// Undoes step 1: removes the marker of a retired version whose value still exists.
pub fn restore(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
    n: u32,
) -> Result<(), LifecycleError> {
    let (ring, state) = read_ring(ks, name)?;
    match state.get(n) {
        Some(info) if !info.destroyed && info.retired => {}
        Some(info) if !info.destroyed => return Err(LifecycleError::NotRetired),
        _ => return Err(LifecycleError::UnknownVersion),
    }
    ks.delete_marker(name, &ring, n).map_err(|e| match e {
        crate::keystore::Error::NotFound => LifecycleError::NotRetired,
        e => LifecycleError::Keystore(e),
    })
}

/// Step 2 of retirement: deletes the value of version `n` (≥ 2), which must have been retired
/// for at least `destroy_after`; the marker stays as a tombstone, so the number stays taken.
pub fn destroy(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
    n: u32,
    destroy_after: time::Duration,
    now: time::OffsetDateTime,
) -> Result<(), LifecycleError> {
    if n == 1 {
        return Err(LifecycleError::VersionOne);
    }
    let (ring, state) = read_ring(ks, name)?;
    match state.get(n) {
        Some(info) if !info.destroyed && info.retired => {}
        Some(info) if !info.destroyed => return Err(LifecycleError::NotRetired),
        _ => return Err(LifecycleError::UnknownVersion),
    }
    let marker = ks.get_marker(name, &ring, n).map_err(|e| match e {
        crate::keystore::Error::NotFound => LifecycleError::NotRetired,
        e => LifecycleError::Keystore(e),
    })?;
    let marker: Marker = serde_json::from_slice(&marker).map_err(|_| {
        LifecycleError::Keystore(crate::keystore::Error::Failed(format!(
            "the retirement marker of version {n} of '{name}' cannot be read"
        )))
    })?;
    if now.unix_timestamp() - marker.retired_at < destroy_after.whole_seconds() {
        return Err(LifecycleError::RetiredTooRecently);
    }
    ks.delete_version(name, &ring, n).map_err(ks_err)
}

/// Deletes the key `name` with every version of it (docs/key-versions.md §6): lists the rings
/// stored for the name, deletes `<name>` (the key is gone for every server at once), then empties
/// and removes each listed ring. Rings are listed **before** the delete, so the ring of a key
/// created under the same name afterwards (through another node) is never touched: its version 1
/// is new, so its ring id is not in the list. When `<name>` does not exist, stale rings (a Go
/// server's delete, a crash) are still removed and the answer is `NotFound`. A rotation still
/// in flight may leave a version in a removed ring: unreachable, removed by the next delete.
pub fn delete_key(
    ks: &dyn crate::keystore::Keystore,
    name: &str,
) -> Result<(), crate::keystore::Error> {
    use crate::keystore::Error as KsError;
    let rings = match ks.list_rings(name) {
        Ok(rings) => rings,
        Err(e @ KsError::Unreachable { .. }) => return Err(e),
        // Rings that cannot be listed (a Vault policy without `list` there) stay behind: stale,
        // bound to this version 1, never used again; deleting the key matters more.
        Err(e) => {
            log::warn!(
                "deleting key '{name}': cannot list its versions ({e}); they stay stored, unreachable"
            );
            Vec::new()
        }
    };
    let deleted = ks.delete(name);
    if let Err(e) = &deleted
        && *e != KsError::NotFound
    {
        return deleted;
    }
    let ignore_missing = |r: Result<(), KsError>| match r {
        Ok(()) | Err(KsError::NotFound) => Ok(()),
        Err(e) => Err(e),
    };
    let remove_ring = |ring: &str| -> Result<(), KsError> {
        for e in ks.list_versions(name, ring)? {
            if e.value && e.n >= 2 {
                ignore_missing(ks.delete_version(name, ring, e.n))?;
            }
            if e.retired {
                ignore_missing(ks.delete_marker(name, ring, e.n))?;
            }
        }
        ks.delete_ring(name, ring)
    };
    for ring in rings {
        // The key itself is gone; a ring left behind is unreachable and goes with the next
        // delete of this name, so its failure does not fail the delete.
        if let Err(e) = remove_ring(&ring) {
            log::warn!(
                "deleted key '{name}', but not all of its old versions ({e}); deleting the key again removes them"
            );
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, SecretKey};
    use std::cell::RefCell;

    fn version(seed: u8) -> Arc<KeyVersion> {
        Arc::new(KeyVersion {
            key: SecretKey::new(Algorithm::Aes256, [seed; 32]),
            hmac_key: None,
            created_at: None,
            created_by: String::new(),
            algorithm_explicit: true,
        })
    }

    fn entry(n: u32, value: bool, retired: bool) -> VersionEntry {
        VersionEntry { n, value, retired }
    }

    /// A ring of versions 1..=3 (values seeded 1, 2, 3), version 2 retired, and a loader that
    /// counts its calls.
    struct Fixture {
        ring: RingState,
        keys: BTreeMap<u32, Arc<KeyVersion>>,
        loads: RefCell<Vec<u32>>,
    }

    impl Fixture {
        fn new(entries: &[VersionEntry]) -> Fixture {
            let ring = RingState::new(entries);
            let keys = (1..=ring.next().unwrap() - 1)
                .map(|n| (n, version(n as u8)))
                .collect();
            Fixture {
                ring,
                keys,
                loads: RefCell::new(Vec::new()),
            }
        }

        fn decrypt(
            &self,
            requested: Option<u32>,
            ct: &[u8],
            ctx: &[u8],
        ) -> Result<(Vec<u8>, u32), DecryptError<&'static str>> {
            self.loads.borrow_mut().clear();
            decrypt(&self.ring, requested, ct, ctx, |n| {
                self.loads.borrow_mut().push(n);
                self.keys.get(&n).cloned().ok_or("no such value")
            })
            .map(|(p, n)| (p.to_vec(), n))
        }

        fn encrypt(&self, n: u32, ctx: &[u8]) -> Vec<u8> {
            self.keys[&n]
                .key
                .encrypt_version(n, b"secret", ctx)
                .unwrap()
        }
    }

    #[test]
    fn ring_state() {
        let ring = RingState::new(&[]);
        assert_eq!(
            (ring.current(), ring.next(), ring.is_rotated()),
            (1, Some(2), false)
        );
        let ring = RingState::new(&[
            entry(2, true, false),
            entry(3, true, true),
            entry(4, true, false),
        ]);
        assert_eq!(
            (ring.current(), ring.next(), ring.is_rotated()),
            (4, Some(5), true)
        );
        assert!(ring.get(3).unwrap().retired);
        let order: Vec<u32> = ring.newest_first().map(|v| v.n).collect();
        assert_eq!(order, vec![4, 3, 2, 1]);
        // A destroyed number stays taken; a marker of version 1 retires the key itself.
        let ring = RingState::new(&[
            entry(1, true, true),
            entry(2, true, false),
            entry(3, false, true),
        ]);
        assert_eq!((ring.current(), ring.next()), (2, Some(4)));
        assert!(ring.get(1).unwrap().retired && ring.get(3).unwrap().destroyed);
        assert_eq!(RingState::new(&[entry(u32::MAX, true, false)]).next(), None);
        // A retired highest version is never current; the number stays taken.
        let ring = RingState::new(&[entry(2, true, false), entry(3, true, true)]);
        assert_eq!((ring.current(), ring.next()), (2, Some(4)));
        let ring = RingState::new(&[entry(1, true, true), entry(2, true, true)]);
        assert_eq!(ring.current(), 1);
    }

    #[test]
    fn version_strings() {
        assert_eq!(parse_version(""), Ok(None));
        assert_eq!(parse_version("1"), Ok(Some(1)));
        assert_eq!(parse_version("999"), Ok(Some(999)));
        assert_eq!(parse_version("4294967295"), Ok(Some(u32::MAX)));
        for bad in [
            "0",
            "01",
            "v2",
            "-1",
            "+1",
            " 1",
            "1 ",
            "4294967296",
            "99999999999",
            "1.0",
            "٣",
        ] {
            assert_eq!(parse_version(bad), Err(InvalidVersion), "{bad:?}");
        }
    }

    #[test]
    fn every_version_decrypts_with_and_without_version() {
        let f = Fixture::new(&[entry(2, true, false), entry(3, true, false)]);
        for n in 1..=3 {
            let ct = f.encrypt(n, b"ctx");
            assert_eq!(f.decrypt(Some(n), &ct, b"ctx"), Ok((b"secret".to_vec(), n)));
            assert_eq!(*f.loads.borrow(), vec![n], "explicit: one load");
            assert_eq!(f.decrypt(None, &ct, b"ctx"), Ok((b"secret".to_vec(), n)));
            assert!(
                f.loads.borrow().len() <= 2,
                "without version: at most two tries"
            );
            // Wrong context: not authentic, whatever the way.
            assert_eq!(
                f.decrypt(Some(n), &ct, b"other"),
                Err(DecryptError::NotAuthentic)
            );
            assert_eq!(
                f.decrypt(None, &ct, b"other"),
                Err(DecryptError::NotAuthentic)
            );
            // Another version named explicitly does not fall back.
            let other = n % 3 + 1;
            assert_eq!(
                f.decrypt(Some(other), &ct, b"ctx"),
                Err(DecryptError::NotAuthentic)
            );
        }
    }

    #[test]
    fn legacy_and_version_1_ciphertexts_go_to_version_1() {
        // The §5.4 MessagePack example was made with key 00..1f: make that version 1.
        let mut f = Fixture::new(&[entry(2, true, false)]);
        f.keys.insert(
            1,
            Arc::new(KeyVersion {
                key: SecretKey::new(Algorithm::Aes256, core::array::from_fn(|i| i as u8)),
                hmac_key: None,
                created_at: None,
                created_by: String::new(),
                algorithm_explicit: true,
            }),
        );
        use base64::Engine;
        let msgpack = base64::engine::general_purpose::STANDARD
            .decode("laZBRVMyNTbZIDYzMGRjZDI5NjZjNDMzNjY5MTEyNTQ0OGJiYjI1YjRmxBBAQUJDREVGR0hJSktMTU5PxAxgYWJjZGVmZ2hpamvEGoNq9tb7Y5qLTEpC6sUYJ/HCMMQSU+VyvP9C")
            .unwrap();
        assert_eq!(
            f.decrypt(None, &msgpack, b"{}"),
            Ok((b"hello, KES".to_vec(), 1))
        );
        assert_eq!(*f.loads.borrow(), vec![1]);
        // A version-1 ciphertext whose random iv happens to decode to a live version: found
        // after one failed try (1 in 2^31 by chance: built here).
        let key1 = f.keys[&1].key.clone();
        let mut ct = key1.encrypt(b"x", b"").unwrap();
        let len = ct.len();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&ct[len - 28..len - 12]);
        crate::crypto::version_hint::set_for_tests(&mut iv, 2);
        // Re-encrypt with that iv so that the ciphertext is authentic under version 1.
        ct = key1.encrypt_with_iv_for_tests(&iv, b"x", b"");
        assert_eq!(version_hint::of(&ct), Some(2));
        assert_eq!(f.decrypt(None, &ct, b""), Ok((b"x".to_vec(), 1)));
        assert_eq!(*f.loads.borrow(), vec![2, 1]);
    }

    #[test]
    fn unknown_destroyed_and_retired_versions() {
        let f = Fixture::new(&[
            entry(2, true, true),
            entry(3, false, true),
            entry(4, true, false),
        ]);
        let ct = f.encrypt(1, b"");
        assert_eq!(
            f.decrypt(Some(5), &ct, b""),
            Err(DecryptError::UnknownVersion)
        );
        assert_eq!(
            f.decrypt(Some(999), &ct, b""),
            Err(DecryptError::UnknownVersion)
        );
        assert_eq!(
            f.decrypt(Some(3), &ct, b""),
            Err(DecryptError::UnknownVersion)
        );
        assert!(f.loads.borrow().is_empty());
        // Retired: 409 only when it would decrypt; otherwise not authentic.
        let ct2 = f.encrypt(2, b"");
        assert_eq!(f.decrypt(Some(2), &ct2, b""), Err(DecryptError::Retired(2)));
        assert_eq!(f.decrypt(None, &ct2, b""), Err(DecryptError::Retired(2)));
        assert_eq!(
            f.decrypt(Some(2), &ct, b""),
            Err(DecryptError::NotAuthentic)
        );
        // A loader failure is the caller's error.
        let f = Fixture::new(&[entry(2, true, false)]);
        let ct = f.encrypt(2, b"");
        let got = decrypt(&f.ring, None, &ct, b"", |_| Err("down"));
        assert_eq!(got.map(|_| ()), Err(DecryptError::Load("down")));
    }

    #[test]
    fn reload_when_a_newer_version_is_named() {
        let f = Fixture::new(&[entry(2, true, false)]);
        let ct5 = f.keys[&2].key.encrypt_version(5, b"", b"").unwrap();
        assert!(f.ring.needs_reload(Some(3), b""));
        assert!(f.ring.needs_reload(Some(18), b""));
        assert!(!f.ring.needs_reload(Some(19), b""));
        assert!(!f.ring.needs_reload(Some(2), b""));
        assert!(!f.ring.needs_reload(Some(1), b""));
        assert!(f.ring.needs_reload(None, &ct5));
        // Far above: noise, no reload (a client cannot make every request read the keystore).
        let far = f.keys[&2].key.encrypt_version(1000, b"", b"").unwrap();
        assert!(!f.ring.needs_reload(None, &far));
        assert!(!f.ring.needs_reload(None, b"short"));
    }

    fn new_value(seed: u8) -> Zeroizing<Vec<u8>> {
        crate::testing::stored_key(Algorithm::ChaCha20, seed)
    }

    #[test]
    fn rotations_take_distinct_numbers_and_keep_version_1() {
        use crate::keystore::{Keystore, mem::MemKeystore};
        let ks = MemKeystore::new();
        assert_eq!(
            rotate(&ks, "k", || Ok(new_value(0))),
            Err(RotateError::NotFound)
        );
        ks.create("k", &new_value(1)).unwrap();
        let ring = ring_id(&ks.get("k").unwrap()).unwrap();
        assert_eq!(ring, SecretKey::new(Algorithm::ChaCha20, [1; 32]).key_id());
        for want in 2..=5 {
            assert_eq!(rotate(&ks, "k", || Ok(new_value(want as u8))), Ok(want));
        }
        assert_eq!(&ks.get("k").unwrap()[..], &new_value(1)[..]);
        for n in 2..=5u32 {
            assert_eq!(
                &ks.get_version("k", &ring, n).unwrap()[..],
                &new_value(n as u8)[..]
            );
        }
        assert_eq!(
            rotate(&ks, "k", || Err("no randomness".into())),
            Err(RotateError::Make("no randomness".into()))
        );
        ks.create("junk", b"not a key").unwrap();
        assert!(matches!(
            rotate(&ks, "junk", || Ok(new_value(0))),
            Err(RotateError::InvalidKey(_))
        ));
    }

    #[test]
    fn racing_rotations_on_the_fs_keystore_lose_nothing() {
        use crate::keystore::{Keystore, fs::FsKeystore};
        let dir = std::env::temp_dir().join(format!("kes-ring-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Two "nodes": two keystore handles on one directory, four threads each.
        let a = Arc::new(FsKeystore::open(&dir).unwrap());
        let b = Arc::new(FsKeystore::open(&dir).unwrap());
        a.create("k", &new_value(1)).unwrap();
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let ks = if i % 2 == 0 { a.clone() } else { b.clone() };
                std::thread::spawn(move || {
                    (0..5u8)
                        .map(|j| {
                            let seed = 10 + i * 5 + j;
                            let n = rotate(&*ks, "k", || Ok(new_value(seed))).unwrap();
                            (n, seed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut won: Vec<(u32, u8)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        won.sort();
        assert_eq!(
            won.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (2..42).collect::<Vec<_>>()
        );
        let ring = ring_id(&a.get("k").unwrap()).unwrap();
        for (n, seed) in won {
            assert_eq!(
                &b.get_version("k", &ring, n).unwrap()[..],
                &new_value(seed)[..]
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn delete_removes_every_version_and_stale_rings() {
        use crate::keystore::{Error as KsError, Keystore, fs::FsKeystore};
        let dir = std::env::temp_dir().join(format!("kes-ring-delete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ks = FsKeystore::open(&dir).unwrap();
        ks.create("k", &new_value(1)).unwrap();
        for seed in 2..=4 {
            rotate(&ks, "k", || Ok(new_value(seed))).unwrap();
        }
        let ring = ring_id(&new_value(1)).unwrap();
        ks.create_marker("k", &ring, 2, b"{}").unwrap();
        ks.create_marker("k", &ring, 1, b"{}").unwrap();
        ks.create("other", &new_value(9)).unwrap();
        rotate(&ks, "other", || Ok(new_value(10))).unwrap();

        delete_key(&ks, "k").unwrap();
        assert_eq!(ks.get("k").map(|_| ()), Err(KsError::NotFound));
        assert!(ks.list_rings("k").unwrap().is_empty());
        assert!(!dir.join(".kes-versions/k").exists());
        // Other keys keep theirs.
        assert_eq!(ks.list_rings("other").unwrap().len(), 1);

        // A Go server deletes only `<name>`: the stale ring is removed by our next delete,
        // which still answers "not found".
        ks.create("k", &new_value(1)).unwrap();
        rotate(&ks, "k", || Ok(new_value(2))).unwrap();
        ks.delete("k").unwrap();
        assert_eq!(ks.list_rings("k").unwrap().len(), 1);
        assert_eq!(delete_key(&ks, "k"), Err(KsError::NotFound));
        assert!(ks.list_rings("k").unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A keystore whose `delete` lets "another node" create and rotate a new key of the same
    /// name right after the delete: the new key's ring must survive `delete_key`.
    struct RecreatesOnDelete(crate::keystore::mem::MemKeystore);
    impl crate::keystore::Keystore for RecreatesOnDelete {
        fn create(&self, n: &str, v: &[u8]) -> Result<(), crate::keystore::Error> {
            self.0.create(n, v)
        }
        fn get(&self, n: &str) -> Result<Zeroizing<Vec<u8>>, crate::keystore::Error> {
            self.0.get(n)
        }
        fn delete(&self, n: &str) -> Result<(), crate::keystore::Error> {
            let r = self.0.delete(n);
            self.0.create(n, &new_value(50)).unwrap();
            rotate(&self.0, n, || Ok(new_value(51))).unwrap();
            r
        }
        fn list(&self, p: &str, l: usize) -> Result<crate::keystore::Page, crate::keystore::Error> {
            self.0.list(p, l)
        }
        fn status(&self) -> Result<crate::keystore::Status, crate::keystore::Error> {
            self.0.status()
        }
        fn list_versions(
            &self,
            n: &str,
            r: &str,
        ) -> Result<Vec<VersionEntry>, crate::keystore::Error> {
            self.0.list_versions(n, r)
        }
        fn delete_version(&self, n: &str, r: &str, v: u32) -> Result<(), crate::keystore::Error> {
            self.0.delete_version(n, r, v)
        }
        fn delete_marker(&self, n: &str, r: &str, v: u32) -> Result<(), crate::keystore::Error> {
            self.0.delete_marker(n, r, v)
        }
        fn list_rings(&self, n: &str) -> Result<Vec<String>, crate::keystore::Error> {
            self.0.list_rings(n)
        }
        fn delete_ring(&self, n: &str, r: &str) -> Result<(), crate::keystore::Error> {
            self.0.delete_ring(n, r)
        }
    }

    #[test]
    fn delete_never_touches_the_ring_of_a_key_created_meanwhile() {
        use crate::keystore::Keystore;
        let ks = RecreatesOnDelete(crate::keystore::mem::MemKeystore::new());
        ks.0.create("k", &new_value(1)).unwrap();
        rotate(&ks.0, "k", || Ok(new_value(2))).unwrap();
        delete_key(&ks, "k").unwrap();
        let new_ring = ring_id(&new_value(50)).unwrap();
        assert_eq!(ks.list_rings("k").unwrap(), vec![new_ring.clone()]);
        assert_eq!(
            &ks.0.get_version("k", &new_ring, 2).unwrap()[..],
            &new_value(51)[..]
        );
    }

    fn dated(seed: u8, created_at: time::OffsetDateTime) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(
            KeyVersion {
                key: SecretKey::new(Algorithm::Aes256, [seed; 32]),
                hmac_key: Some(crate::crypto::HmacKey::new([seed; 32])),
                created_at: Some(created_at),
                created_by: String::new(),
                algorithm_explicit: true,
            }
            .encode(),
        )
    }

    #[test]
    fn retire_restore_destroy_in_two_steps() {
        use crate::keystore::{Keystore, mem::MemKeystore};
        use LifecycleError as E;
        use time::Duration;
        let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ks = MemKeystore::new();
        ks.create("k", &dated(1, t0)).unwrap();
        rotate(&ks, "k", || Ok(dated(2, t0 + Duration::hours(1)))).unwrap();
        rotate(&ks, "k", || Ok(dated(3, t0 + Duration::hours(2)))).unwrap();
        let week = Duration::days(7);
        let at = |h: i64| t0 + Duration::hours(h);

        assert_eq!(retire(&ks, "none", 2, "me", at(3)), Err(E::KeyNotFound));
        assert_eq!(retire(&ks, "k", 9, "me", at(3)), Err(E::UnknownVersion));
        assert_eq!(retire(&ks, "k", 3, "me", at(3)), Err(E::Current));
        // Version 2's successor (3) is 5 minutes old: too recent.
        let just_after = at(2) + Duration::minutes(5);
        assert_eq!(
            retire(&ks, "k", 2, "me", just_after),
            Err(E::SupersededTooRecently)
        );
        retire(&ks, "k", 2, "me", at(3)).unwrap();
        assert_eq!(retire(&ks, "k", 2, "me", at(3)), Err(E::AlreadyRetired));
        // Restore undoes it; retire again.
        restore(&ks, "k", 2).unwrap();
        assert_eq!(restore(&ks, "k", 2), Err(E::NotRetired));
        retire(&ks, "k", 2, "me", at(3)).unwrap();
        // Destroy: only version ≥ 2, only retired, only after the wait.
        assert_eq!(destroy(&ks, "k", 1, week, at(500)), Err(E::VersionOne));
        assert_eq!(destroy(&ks, "k", 3, week, at(500)), Err(E::NotRetired));
        assert_eq!(
            destroy(&ks, "k", 2, week, at(3 + 24)),
            Err(E::RetiredTooRecently)
        );
        destroy(&ks, "k", 2, week, at(3 + 24 * 7)).unwrap();
        assert_eq!(destroy(&ks, "k", 2, week, at(500)), Err(E::UnknownVersion));
        assert_eq!(restore(&ks, "k", 2), Err(E::UnknownVersion));
        // The number stays taken; versions 1 and 3 are intact.
        let ring = ring_id(&ks.get("k").unwrap()).unwrap();
        let state = RingState::new(&ks.list_versions("k", &ring).unwrap());
        assert_eq!((state.current(), state.next()), (3, Some(4)));
        assert!(state.get(2).unwrap().destroyed);
        assert_eq!(&ks.get("k").unwrap()[..], &dated(1, t0)[..]);
        // Version 1 can be retired (a marker only; its successor is the next live version,
        // 3, since 2 is destroyed), never destroyed.
        retire(&ks, "k", 1, "me", at(500)).unwrap();
        assert_eq!(destroy(&ks, "k", 1, week, at(5000)), Err(E::VersionOne));
        let marker: Marker =
            serde_json::from_slice(&ks.get_marker("k", &ring, 1).unwrap()).unwrap();
        assert_eq!(
            marker,
            Marker {
                retired_at: at(500).unix_timestamp(),
                retired_by: "me".into()
            }
        );
    }

    /// The cost of finding the version (docs/key-versions.md §4), against the rejected
    /// alternative of trying every version newest first. Measure in release:
    /// `KES_MEASURE_ITER=20000 cargo test --release --lib keyring::tests::measure -- --nocapture`.
    /// In the test suite it runs a few iterations as a check that every path decrypts (timings
    /// of a debug build mean nothing and are not asserted).
    #[test]
    fn measure_decrypt_cost_by_ring_size() {
        use std::time::Instant;
        let iter: u32 = std::env::var("KES_MEASURE_ITER")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);

        for size in [1u32, 10, 100] {
            let entries: Vec<VersionEntry> = (2..=size).map(|n| entry(n, true, false)).collect();
            let ring = RingState::new(&entries);
            let keys: Vec<Arc<KeyVersion>> = (0..=size).map(|n| version(n as u8)).collect();
            let load = |n: u32| Ok::<_, ()>(keys[n as usize].clone());
            let (_, current_ct) = keys[size as usize]
                .key
                .generate_data_key_version(size, b"ctx")
                .unwrap();
            let (_, v1_ct) = keys[1].key.generate_data_key(b"ctx").unwrap();
            let time = |what: &str, f: &dyn Fn() -> bool| {
                let start = Instant::now();
                for _ in 0..iter {
                    assert!(f());
                }
                let per = start.elapsed() / iter;
                println!("ring of {size:>3}: {what:<44} {per:>9.2?}");
            };
            time("explicit current version", &|| {
                decrypt(&ring, Some(size), &current_ct, b"ctx", load).is_ok()
            });
            time("no version, current (hint)", &|| {
                decrypt(&ring, None, &current_ct, b"ctx", load).is_ok()
            });
            time("no version, version 1 (hint miss, v1)", &|| {
                decrypt(&ring, None, &v1_ct, b"ctx", load).is_ok()
            });
            time("no version, wrong context (fails)", &|| {
                decrypt(&ring, None, &current_ct, b"other", load).is_err()
            });
            // The rejected strategy: every version newest first until one authenticates.
            let try_all = |ct: &[u8], ctx: &[u8]| {
                (1..=size)
                    .rev()
                    .any(|n| keys[n as usize].key.decrypt(ct, ctx, false).is_ok())
            };
            time("try-all: version 1 ciphertext", &|| try_all(&v1_ct, b"ctx"));
            time("try-all: wrong context (fails)", &|| {
                !try_all(&current_ct, b"other")
            });
        }
    }
}
