//! The key cache in front of the keystore (§6.6), with the Go server's quirks fixed.
//!
//! Semantics (also documented in kes.yaml.example; every expiry is per entry):
//! * An entry is *fresh* until `any` has passed since it was loaded from the keystore, and while
//!   it was used within the last `unused`. A fresh entry is served without asking the keystore.
//! * A request for an entry that is no longer fresh reloads it (the keystore's answer replaces
//!   it; "not found" evicts it). The background sweep (every 0.5 s) drops entries that are no
//!   longer fresh.
//! * `offline` (0 = off): when a reload fails because the keystore is unreachable (down, sealed,
//!   no answer in time), the cached key is served anyway ("stale"), for at most `offline` after
//!   the first failed reload of that entry. While the keystore is known to be offline, a stale
//!   entry is served without asking the keystore again, and the sweep keeps entries that expire
//!   meanwhile (their `offline` period starts then). The first successful reload ends it. The
//!   period is per entry, so an unreachable keystore that answers health checks now and then
//!   cannot extend it.
//! * Concurrent misses for one name make one keystore call; the others wait for its result.
//! * Keys that could not be created because the keystore was unreachable (`keys:` of the config
//!   while Vault is down at start-up) are created by the background thread once it answers
//!   ([`Cache::create_later`]).
//! * Delete evicts, whether or not the keystore's delete succeeds (a delete that timed out may
//!   have happened); a load that raced with a delete is not cached, and a request that arrives
//!   after the delete does not share a load that started before it.
//!
//! * Key versions (docs/key-versions.md §5): an entry is a [`Ring`]: version 1, the list of
//!   later versions and the values loaded so far (the current one with the ring, others on first
//!   use). The list is checked again when it is older than [`RING_MAX_AGE`] (60 s), whatever
//!   `cache.expiry` says, so a rotation through another node reaches this node's generate and
//!   encrypt within 60 s; a decrypt naming a newer version lists at once (after a listing that
//!   found nothing new, not again for a second). Rotate, retire, restore and destroy through
//!   this node invalidate the entry. A failed re-check keeps the entry (its life is
//!   `cache.expiry`'s, not the list's).
//!
//! The cache holds decoded keys; it never logs them.
//!
//! Every keystore call goes through `Cache::timed`, which records its latency and failures by
//! operation in `Stats::keystore` for `/v1/metrics`.

use crate::config::CacheConfig;
use crate::crypto::KeyVersion;
use crate::keyring::RingState;
use crate::keystore::{self, Keystore, Page, Status, UnreachableReason};
use crate::metrics::{KeystoreFailure, KeystoreMetrics, KeystoreOp};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the background probe checks the keystore's health.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// How long the version list of a cached key is trusted (docs/key-versions.md §5), whatever
/// `cache.expiry` says: a rotation through another node reaches this node's generate and
/// encrypt within this time (plus the time to the next request for the key).
pub const RING_MAX_AGE: Duration = Duration::from_secs(60);
const RING_MAX_AGE_MS: u64 = 60_000;

/// Least time after a reload of one key forced by a decrypt that names (or hints at) a version
/// above the highest one cached, when that reload found no new version, before the next one
/// (docs/key-versions.md §9a): junk hints cannot make a node list a key more than once a second.
const FORCED_RELOAD_MS: u64 = 1_000;

/// A cached key: version 1 (the key as the Go server knows it), the ring of later versions as
/// listed when it was loaded, and the values of the later versions loaded so far (the current
/// one at once, the others on demand).
pub struct Ring {
    /// Version 1.
    pub v1: Arc<KeyVersion>,
    /// The ring id (key-id of version 1); empty when the keystore could not list versions.
    pub id: String,
    pub state: RingState,
    /// When the versions were listed (or a listing last failed).
    listed_ms: AtomicU64,
    /// A request is listing the versions again; the others go on with this ring meanwhile.
    relisting: AtomicBool,
    /// When a listing forced by a decrypt last found nothing new (0 = never): the next forced
    /// listing waits a second after it ([`Cache::reload_ring`]).
    futile_ms: AtomicU64,
    /// Serializes forced listings of this ring: concurrent decrypts that need one wait for it
    /// and take its result.
    forcing: Mutex<()>,
    values: RwLock<BTreeMap<u32, Arc<KeyVersion>>>,
    /// Serializes loads of version values of this ring (one keystore read per version).
    loading: Mutex<()>,
}

impl Ring {
    /// Version `n` if its value is loaded (version 1 always is).
    pub fn loaded(&self, n: u32) -> Option<Arc<KeyVersion>> {
        if n == 1 {
            return Some(self.v1.clone());
        }
        self.values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n)
            .cloned()
    }

    /// The current version's number and value (loaded with the ring).
    pub fn current(&self) -> (u32, Arc<KeyVersion>) {
        let n = self.state.current();
        match self.loaded(n) {
            Some(v) => (n, v),
            // Not reachable: `Cache::load_ring` loads the current value or falls back to 1.
            None => (1, self.v1.clone()),
        }
    }
}

/// Errors of a cached read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Store(keystore::Error),
    /// The stored value cannot be decoded (the text says why, without secrets).
    Corrupt(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Store(e) => e.fmt(f),
            Error::Corrupt(why) => write!(f, "stored key is invalid: {why}"),
        }
    }
}

struct Entry {
    ring: Arc<Ring>,
    loaded_ms: u64,
    used_ms: AtomicU64,
    /// When a reload of this entry first failed with the keystore unreachable (or the sweep found
    /// it expired while the keystore was offline); 0 = never. Starts its `offline` period.
    stale_since_ms: AtomicU64,
}

#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<Ring>, Error>>>,
    done: Condvar,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_hits: AtomicU64,
    /// Reloads of a key's version list forced by a decrypt naming a newer version.
    pub ring_reloads: AtomicU64,
    /// Latency and failures of the keystore calls made through the cache.
    pub keystore: KeystoreMetrics,
}

pub struct Cache {
    store: Arc<dyn Keystore>,
    epoch: Instant,
    // Expiry settings in ms; 0 = disabled. Atomics so that a config reload can change them.
    any_ms: AtomicU64,
    unused_ms: AtomicU64,
    offline_ms: AtomicU64,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    inflight: Mutex<HashMap<String, Arc<Flight>>>,
    /// Bumped by every delete, so that a load that started before it is not cached.
    generation: AtomicU64,
    /// ms since epoch at which the keystore was seen offline; 0 = online.
    offline_since: AtomicU64,
    /// Why the keystore was last seen offline (the keystore's unreachable error).
    offline_reason: Mutex<Option<keystore::Error>>,
    /// Keys to create once the keystore answers: (name, value, last error logged).
    pending: Mutex<Vec<Pending>>,
    stopped: AtomicBool,
    pub stats: Stats,
    /// Added to the clock, so that unit tests can let time pass without sleeping.
    #[cfg(test)]
    skew_ms: AtomicU64,
}

/// A create that waits for the keystore (see [`Cache::create_later`]).
struct Pending {
    name: String,
    value: zeroize::Zeroizing<Vec<u8>>,
    /// The text of the last failure logged, so that a repeat is not logged again.
    logged: Option<String>,
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

impl Cache {
    pub fn new(store: Arc<dyn Keystore>, cfg: CacheConfig) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            store,
            epoch: Instant::now(),
            any_ms: AtomicU64::new(0),
            unused_ms: AtomicU64::new(0),
            offline_ms: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            offline_since: AtomicU64::new(0),
            offline_reason: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            stats: Stats::default(),
            #[cfg(test)]
            skew_ms: AtomicU64::new(0),
        });
        cache.configure(cfg);
        cache
    }

    /// Starts the background sweeper and keystore probe. They stop when the cache is dropped.
    pub fn start_background(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("kes-cache".into())
            .spawn(move || {
                let mut last_probe = Instant::now();
                let mut last_pending = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    let Some(cache) = weak.upgrade() else { return };
                    if cache.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    cache.sweep();
                    if last_probe.elapsed() >= PROBE_INTERVAL || cache.is_offline() {
                        last_probe = Instant::now();
                        match cache.timed(KeystoreOp::Status, || cache.store.status()) {
                            Err(e @ keystore::Error::Unreachable { .. }) => cache.set_offline(&e),
                            // It answered (a failure, e.g. a refused login, is not an outage).
                            _ => cache.set_online(),
                        }
                    }
                    if !cache.is_offline() && last_pending.elapsed() >= Duration::from_secs(1) {
                        last_pending = Instant::now();
                        cache.create_pending();
                    }
                }
            });
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Applies new expiry settings (config reload).
    pub fn configure(&self, cfg: CacheConfig) {
        self.any_ms.store(ms(cfg.any), Ordering::Relaxed);
        self.unused_ms.store(ms(cfg.unused), Ordering::Relaxed);
        self.offline_ms.store(ms(cfg.offline), Ordering::Relaxed);
    }

    pub fn keystore(&self) -> &Arc<dyn Keystore> {
        &self.store
    }

    fn now_ms(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        #[cfg(test)]
        let now = now.saturating_add(self.skew_ms.load(Ordering::Relaxed));
        now
    }

    pub fn is_offline(&self) -> bool {
        self.offline_since.load(Ordering::Relaxed) != 0
    }

    /// Marks the keystore offline; `err` is the (unreachable) error that showed it.
    fn set_offline(&self, err: &keystore::Error) {
        let now = self.now_ms();
        let why = err.detail().unwrap_or_default();
        *self
            .offline_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(err.clone());
        if self
            .offline_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // Logged on the transition only: an outage is one record, not one per request.
            log::warn!(
                "keystore is not reachable ({why}): serving cached keys only, checking again"
            );
        }
    }

    fn set_online(&self) {
        let since = self.offline_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            log::info!(
                "keystore is reachable again (offline for {:.1} s)",
                self.now_ms().saturating_sub(since) as f64 / 1000.0
            );
        }
    }

    /// Whether `e` may be served without asking the keystore.
    fn fresh(&self, e: &Entry, now: u64) -> bool {
        let any = self.any_ms.load(Ordering::Relaxed);
        let unused = self.unused_ms.load(Ordering::Relaxed);
        !((any != 0 && now.saturating_sub(e.loaded_ms) >= any)
            || (unused != 0 && now.saturating_sub(e.used_ms.load(Ordering::Relaxed)) >= unused))
    }

    /// Whether `e`, no longer fresh, is within its `offline` period (which `start` begins now if
    /// it has not begun).
    fn stale_ok(&self, e: &Entry, now: u64, start: bool) -> bool {
        let window = self.offline_ms.load(Ordering::Relaxed);
        if window == 0 {
            return false;
        }
        let mut since = e.stale_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            if !start {
                return false;
            }
            since = match e.stale_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => now,
                Err(earlier) => earlier,
            };
        }
        now.saturating_sub(since) < window
    }

    fn serve_stale(&self, e: &Entry, now: u64) -> Arc<Ring> {
        e.used_ms.store(now, Ordering::Relaxed);
        self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
        e.ring.clone()
    }

    /// Whether the version list of `e` is older than [`RING_MAX_AGE`] (then it is listed again,
    /// even while the entry is fresh for `cache.expiry`).
    fn ring_due(e: &Entry, now: u64) -> bool {
        now.saturating_sub(e.ring.listed_ms.load(Ordering::Relaxed)) >= RING_MAX_AGE_MS
            && !e.ring.relisting.load(Ordering::Relaxed)
    }

    /// Version 1 of the key named `name` (the key as the Go server knows it), from the cache or
    /// the keystore.
    pub fn get(&self, name: &str) -> Result<Arc<KeyVersion>, Error> {
        self.ring(name).map(|r| r.v1.clone())
    }

    /// The key named `name` with its versions, from the cache or the keystore.
    pub fn ring(&self, name: &str) -> Result<Arc<Ring>, Error> {
        let now = self.now_ms();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(e) = &cached {
            if self.fresh(e, now) {
                e.used_ms.store(now, Ordering::Relaxed);
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                if Self::ring_due(e, now) {
                    return Ok(self.relist(name, e, false));
                }
                return Ok(e.ring.clone());
            }
            // A reload already failed and the keystore is still down: don't wait for it again.
            if self.is_offline() && self.stale_ok(e, now, false) {
                return Ok(self.serve_stale(e, now));
            }
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        match self.load(name) {
            Ok(ring) => Ok(ring),
            Err(Error::Store(err @ keystore::Error::Unreachable { .. })) => {
                self.set_offline(&err);
                let now = self.now_ms();
                if let Some(e) = cached
                    && self.stale_ok(&e, now, true)
                {
                    return Ok(self.serve_stale(&e, now));
                }
                Err(Error::Store(err))
            }
            Err(e) => Err(e),
        }
    }

    /// The key `name` if the cache holds it fresh (version list included); never asks the
    /// keystore (so it never waits). `None` leaves the request to [`Cache::ring`], which counts
    /// the hit or miss.
    pub fn ring_cached(&self, name: &str) -> Option<Arc<Ring>> {
        let now = self.now_ms();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(name)?;
        if !self.fresh(e, now) || Self::ring_due(e, now) {
            return None;
        }
        e.used_ms.store(now, Ordering::Relaxed);
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.ring.clone())
    }

    /// Version `n` of the cached ring `ring` of `name`: loaded from the keystore on first use
    /// (one read per version, however many requests ask at once) and kept with the ring.
    /// `NotFound` for a version the keystore does not have.
    pub fn version(&self, name: &str, ring: &Ring, n: u32) -> Result<Arc<KeyVersion>, Error> {
        if let Some(v) = ring.loaded(n) {
            return Ok(v);
        }
        if ring.id.is_empty() {
            return Err(Error::Store(keystore::Error::NotFound));
        }
        let _one = ring.loading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = ring.loaded(n) {
            return Ok(v);
        }
        let value = self.timed(KeystoreOp::Get, || {
            self.store.get_version(name, &ring.id, n)
        });
        self.note(&value);
        let key = KeyVersion::decode(&value.map_err(Error::Store)?)
            .map(Arc::new)
            .map_err(|e| Error::Corrupt(format!("version {n}: {e}")))?;
        ring.values
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, key.clone());
        Ok(key)
    }

    /// The ring of `name` listed again, because a decrypt names (or hints at) a version above
    /// the highest one in `ring` (a rotation through another node). Concurrent callers wait for
    /// one listing and share it. A listing that finds no new version (a hint that names nothing,
    /// a version not made yet) holds off the next forced listing of the key for a second:
    /// meanwhile `ring` itself is returned. A listing that finds new versions holds off nothing,
    /// so a node learns each rotation made elsewhere at the first decrypt that needs it, also
    /// right after it loaded the key. Called on workers only.
    pub fn reload_ring(&self, name: &str, ring: &Arc<Ring>) -> Arc<Ring> {
        let _one = ring.forcing.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .filter(|e| Arc::ptr_eq(&e.ring, ring))
            .cloned();
        let Some(e) = entry else {
            // Replaced meanwhile (a forced listing that just ended, a reload, an eviction): the
            // newest one there is.
            return self.ring(name).unwrap_or_else(|_| ring.clone());
        };
        let futile = ring.futile_ms.load(Ordering::Relaxed);
        if futile != 0 && self.now_ms().saturating_sub(futile) < FORCED_RELOAD_MS {
            return ring.clone();
        }
        self.stats.ring_reloads.fetch_add(1, Ordering::Relaxed);
        // Forced: it lists even while the 60 s re-list of this ring is under way, which would
        // otherwise hand back the old ring, be taken for "nothing new" and fail the decrypt.
        let listed = self.relist(name, &e, true);
        if listed.state.next() == ring.state.next() {
            let now = self.now_ms();
            ring.futile_ms.store(now, Ordering::Relaxed);
            listed.futile_ms.store(now, Ordering::Relaxed);
        }
        listed
    }

    /// Lists the versions of the cached entry `e` again (its version list is older than
    /// [`RING_MAX_AGE`], or a decrypt named a newer version) and caches the result, keeping
    /// version 1, the values loaded so far and the entry's `cache.expiry` times. One request
    /// lists; the others go on with the ring they have. When the keystore cannot answer, the
    /// entry is kept as it is (it is fresh for `cache.expiry`) and listed again after
    /// [`RING_MAX_AGE`].
    fn relist(&self, name: &str, e: &Arc<Entry>, forced: bool) -> Arc<Ring> {
        let old = &e.ring;
        if !forced && old.relisting.swap(true, Ordering::AcqRel) {
            return old.clone();
        }
        let values = old.values.read().unwrap_or_else(|e| e.into_inner()).clone();
        let generation = self.generation.load(Ordering::Acquire);
        let result = self.list_ring(name, old.v1.clone(), values);
        old.listed_ms.store(self.now_ms(), Ordering::Relaxed);
        if !forced {
            old.relisting.store(false, Ordering::Release);
        }
        let ring = match result {
            Ok(ring) => Arc::new(ring),
            Err(_) => return old.clone(),
        };
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) == generation
            && entries.get(name).is_some_and(|cur| Arc::ptr_eq(cur, e))
        {
            entries.insert(
                name.to_owned(),
                Arc::new(Entry {
                    ring: ring.clone(),
                    loaded_ms: e.loaded_ms,
                    used_ms: AtomicU64::new(e.used_ms.load(Ordering::Relaxed)),
                    stale_since_ms: AtomicU64::new(e.stale_since_ms.load(Ordering::Relaxed)),
                }),
            );
        }
        ring
    }

    /// Forgets `name` after this node changed its versions (rotate, retire, restore, destroy),
    /// so the next request reads the keystore; a load that started before is not cached.
    pub fn invalidate(&self, name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.evict(name);
        self.forget_flight(name);
    }

    /// Reads `name` from the keystore: version 1, the list of later versions and the value of
    /// the current one.
    fn load_ring(&self, name: &str) -> Result<Ring, Error> {
        let value = self
            .timed(KeystoreOp::Get, || self.store.get(name))
            .map_err(Error::Store)?;
        let v1 = Arc::new(KeyVersion::decode(&value).map_err(|e| Error::Corrupt(e.to_string()))?);
        drop(value);
        self.list_ring(name, v1, BTreeMap::new())
    }

    /// The ring of `name` whose version 1 is `v1`, listed from the keystore, with the values
    /// of later versions known so far (`values`) and the current one loaded.
    fn list_ring(
        &self,
        name: &str,
        v1: Arc<KeyVersion>,
        values: BTreeMap<u32, Arc<KeyVersion>>,
    ) -> Result<Ring, Error> {
        let id = v1.key.key_id();
        let listed = self.timed(KeystoreOp::List, || self.store.list_versions(name, &id));
        let (id, entries) = match listed {
            Ok(entries) => (id, entries),
            Err(err @ keystore::Error::Unreachable { .. }) => {
                self.set_offline(&err);
                return Err(Error::Store(err));
            }
            // The keystore cannot list versions (a policy without `list` on the ring's path, a
            // keystore without versions): version 1 is served, as before key versions existed;
            // rotations fail with the keystore's error. Said once, not per load.
            Err(e) => {
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "cannot list the versions of key '{name}' ({e}): serving version 1 \
                         only; data encrypted with later versions of rotated keys cannot be \
                         decrypted until this is fixed"
                    );
                }
                (String::new(), Vec::new())
            }
        };
        let ring = Ring {
            v1,
            id,
            state: RingState::new(&entries),
            listed_ms: AtomicU64::new(self.now_ms()),
            relisting: AtomicBool::new(false),
            futile_ms: AtomicU64::new(0),
            forcing: Mutex::new(()),
            values: RwLock::new(values),
            loading: Mutex::new(()),
        };
        let current = ring.state.current();
        if current >= 2 {
            self.version(name, &ring, current)?;
        }
        Ok(ring)
    }

    /// Loads a key, coalescing concurrent loads of the same name into one keystore call.
    fn load(&self, name: &str) -> Result<Arc<Ring>, Error> {
        let (flight, leader) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // (A delete removes the flight of its name, so a request after the delete starts anew.)
            match inflight.get(name) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    inflight.insert(name.to_owned(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut result = flight.result.lock().unwrap_or_else(|e| e.into_inner());
            while result.is_none() {
                result = flight.done.wait(result).unwrap_or_else(|e| e.into_inner());
            }
            return result
                .clone()
                .unwrap_or_else(|| Err(Error::Corrupt("internal error".into())));
        }

        // Whatever happens below (even a panic), waiters must be released and the flight removed.
        struct Release<'a>(&'a Cache, &'a str, &'a Flight);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut result = self.2.result.lock().unwrap_or_else(|e| e.into_inner());
                if result.is_none() {
                    *result = Some(Err(Error::Corrupt(
                        "internal error while loading key".into(),
                    )));
                }
                self.2.done.notify_all();
                drop(result);
                let mut inflight = self.0.inflight.lock().unwrap_or_else(|e| e.into_inner());
                // Only our own flight: a delete may have replaced it with a newer one.
                if inflight
                    .get(self.1)
                    .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), self.2))
                {
                    inflight.remove(self.1);
                }
            }
        }
        let _release = Release(self, name, &flight);

        // The caller missed the cache before it took the lead; a load that finished in between
        // (its flight already gone) has cached the key since. Reading the keystore again would
        // break "one keystore read per key", so look once more.
        let now = self.now_ms();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(e) = cached
            && self.fresh(&e, now)
            && !Self::ring_due(&e, now)
        {
            e.used_ms.store(now, Ordering::Relaxed);
            let result = Ok(e.ring.clone());
            *flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
            return result;
        }

        let generation = self.generation.load(Ordering::Acquire);
        let result = self.load_ring(name).map(Arc::new);
        match &result {
            Ok(ring) => {
                self.set_online();
                let now = self.now_ms();
                let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
                if self.generation.load(Ordering::Acquire) == generation {
                    entries.insert(
                        name.to_owned(),
                        Arc::new(Entry {
                            ring: ring.clone(),
                            loaded_ms: now,
                            used_ms: AtomicU64::new(now),
                            stale_since_ms: AtomicU64::new(0),
                        }),
                    );
                }
            }
            Err(Error::Store(keystore::Error::NotFound)) => {
                self.set_online();
                self.evict(name);
            }
            Err(_) => {}
        }
        *flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        result
    }

    fn evict(&self, name: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Makes requests from now on start their own load of `name` instead of waiting for one
    /// that started before a delete.
    fn forget_flight(&self, name: &str) {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Drops entries that are no longer fresh, except those within their `offline` period; while
    /// the keystore is offline, an entry that expires starts its period instead of being dropped.
    fn sweep(&self) {
        let now = self.now_ms();
        let offline = self.is_offline();
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| self.fresh(e, now) || self.stale_ok(e, now, offline));
    }

    /// Creates a key in the keystore (not cached until first use).
    pub fn create(&self, name: &str, value: &[u8]) -> Result<(), keystore::Error> {
        let r = self.timed(KeystoreOp::Create, || self.store.create(name, value));
        self.note(&r);
        r
    }

    /// Deletes a key from the keystore and evicts it.
    pub fn delete(&self, name: &str) -> Result<(), keystore::Error> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.evict(name);
        // With every version of it (docs/key-versions.md §6): `<name>` first, then its rings.
        let r = self.timed(KeystoreOp::Delete, || {
            crate::keyring::delete_key(self.store.as_ref(), name)
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.evict(name);
        self.forget_flight(name);
        self.note(&r);
        r
    }

    pub fn list(&self, prefix: &str, limit: usize) -> Result<Page, keystore::Error> {
        let r = self.timed(KeystoreOp::List, || self.store.list(prefix, limit));
        self.note(&r);
        r
    }

    /// The keystore's status; unreachable at once while the keystore is known to be offline
    /// (with the keystore's error that showed it).
    pub fn status(&self) -> Result<Status, keystore::Error> {
        if self.is_offline() {
            let why = self
                .offline_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(why.unwrap_or_else(|| {
                keystore::Error::unreachable(UnreachableReason::Network, "key store is offline")
            }));
        }
        let r = self.timed(KeystoreOp::Status, || self.store.status());
        match &r {
            Err(e @ keystore::Error::Unreachable { .. }) => self.set_offline(e),
            // It answered: not offline, even when it is not usable.
            _ => self.set_online(),
        }
        r
    }

    /// Creates `name` once the keystore answers: the background thread tries every second while
    /// the keystore is not known offline, until the key is created or exists. For the config's
    /// `keys:` while Vault cannot be reached at start-up.
    /// `why` is the error of the create that failed (logged here once).
    pub fn create_later(
        &self,
        name: &str,
        value: zeroize::Zeroizing<Vec<u8>>,
        why: &keystore::Error,
    ) {
        let text = why.to_string();
        log::warn!("cannot create key '{name}' (keys: in the config) yet: {text}; trying again");
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.iter().any(|p| p.name == name) {
            pending.push(Pending {
                name: name.to_string(),
                value,
                logged: Some(text),
            });
        }
    }

    /// One try of every pending create.
    fn create_pending(&self) {
        let mut work = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if work.is_empty() {
            return;
        }
        work.retain_mut(|p| match self.create(&p.name, &p.value) {
            Ok(()) => {
                log::info!("created key '{}' (keys: in the config)", p.name);
                false
            }
            Err(keystore::Error::Exists) => false,
            Err(e) => {
                let text = e.to_string();
                if p.logged.as_deref() != Some(text.as_str()) {
                    log::warn!(
                        "cannot create key '{}' (keys: in the config) yet: {text}; trying again",
                        p.name
                    );
                    p.logged = Some(text);
                }
                true
            }
        });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for p in work {
            if !pending.iter().any(|q| q.name == p.name) {
                pending.push(p);
            }
        }
    }

    /// Runs one keystore call and records its latency and outcome.
    fn timed<T>(
        &self,
        op: KeystoreOp,
        call: impl FnOnce() -> Result<T, keystore::Error>,
    ) -> Result<T, keystore::Error> {
        let start = Instant::now();
        let r = call();
        let failure = match &r {
            Err(keystore::Error::Unreachable { .. }) => Some(KeystoreFailure::Unreachable),
            // A denial counts as a failure, as it did before it had a variant of its own.
            Err(keystore::Error::Denied(_) | keystore::Error::Failed(_)) => {
                Some(KeystoreFailure::Failed)
            }
            Ok(_) | Err(keystore::Error::NotFound) | Err(keystore::Error::Exists) => None,
        };
        self.stats.keystore.observe(op, start.elapsed(), failure);
        r
    }

    fn note<T>(&self, r: &Result<T, keystore::Error>) {
        match r {
            Err(e @ keystore::Error::Unreachable { .. }) => self.set_offline(e),
            Ok(_) => self.set_online(),
            Err(_) => {}
        }
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    //! Each semantic of the module docs against a keystore double whose answers, delays and
    //! reachability the test controls. Time is advanced with `Cache::advance`, not slept.
    use super::*;

    fn down() -> keystore::Error {
        keystore::Error::unreachable(UnreachableReason::Network, "test: down")
    }
    use crate::crypto::{Algorithm, HmacKey, SecretKey};
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;
    use zeroize::Zeroizing;

    #[derive(Default)]
    struct FakeStore {
        values: Mutex<HashMap<String, Vec<u8>>>,
        gets: AtomicUsize,
        unreachable: AtomicBool,
        /// When set, every get reads the value, then waits here twice before answering.
        gate: Mutex<Option<Arc<Barrier>>>,
        get_delay: Mutex<Duration>,
    }

    impl FakeStore {
        fn put(&self, name: &str) -> Vec<u8> {
            let key = KeyVersion {
                key: SecretKey::generate(Algorithm::Aes256).unwrap(),
                hmac_key: Some(HmacKey::generate().unwrap()),
                created_at: None,
                created_by: String::new(),
                algorithm_explicit: true,
            };
            let value = key.encode();
            self.values
                .lock()
                .unwrap()
                .insert(name.into(), value.clone());
            value
        }
        fn gets(&self) -> usize {
            self.gets.load(Ordering::SeqCst)
        }
        fn down(&self, down: bool) {
            self.unreachable.store(down, Ordering::SeqCst);
        }
        fn check(&self) -> Result<(), keystore::Error> {
            if self.unreachable.load(Ordering::SeqCst) {
                Err(down())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_load_that_starts_after_another_finished_reads_nothing() {
        // Request A misses the cache, then request B loads and caches the key and its flight
        // ends, then A takes the lead of a new flight: A must find B's entry instead of reading
        // the keystore again (found by the benchmark's cold-path count: 10 005 reads for 10 000
        // keys).
        let store = Arc::new(FakeStore::default());
        store.put("k");
        let cache = Cache::new(store.clone(), CacheConfig::default());
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 1);
        cache.load("k").unwrap();
        assert_eq!(
            store.gets(),
            1,
            "the second load must be served by the entry the first cached"
        );
    }

    impl Keystore for FakeStore {
        fn create(&self, name: &str, value: &[u8]) -> Result<(), keystore::Error> {
            self.check()?;
            let mut values = self.values.lock().unwrap();
            if values.contains_key(name) {
                return Err(keystore::Error::Exists);
            }
            values.insert(name.into(), value.to_vec());
            Ok(())
        }
        fn get(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, keystore::Error> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let delay = *self.get_delay.lock().unwrap();
            std::thread::sleep(delay);
            let result = self.check().and_then(|()| {
                self.values
                    .lock()
                    .unwrap()
                    .get(name)
                    .cloned()
                    .map(Zeroizing::new)
                    .ok_or(keystore::Error::NotFound)
            });
            // The value is read; the answer waits for the test.
            let gate = self.gate.lock().unwrap().clone();
            if let Some(gate) = gate {
                gate.wait();
                gate.wait();
            }
            result
        }
        fn delete(&self, name: &str) -> Result<(), keystore::Error> {
            self.check()?;
            self.values
                .lock()
                .unwrap()
                .remove(name)
                .map(|_| ())
                .ok_or(keystore::Error::NotFound)
        }
        fn list(&self, _: &str, _: usize) -> Result<Page, keystore::Error> {
            self.check()?;
            Ok(Page::default())
        }
        fn list_versions(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Vec<keystore::VersionEntry>, keystore::Error> {
            self.check()?;
            Ok(Vec::new())
        }
        fn status(&self) -> Result<Status, keystore::Error> {
            self.check()?;
            Ok(Status {
                latency: Duration::ZERO,
            })
        }
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn cache(
        any: Option<Duration>,
        unused: Option<Duration>,
        offline: Option<Duration>,
    ) -> (Arc<FakeStore>, Arc<Cache>) {
        let store = Arc::new(FakeStore::default());
        let cache = Cache::new(
            store.clone(),
            CacheConfig {
                any,
                unused,
                offline,
            },
        );
        (store, cache)
    }

    impl Cache {
        fn advance(&self, d: Duration) {
            self.skew_ms
                .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn same_key(a: &KeyVersion, b: &[u8]) -> bool {
        a.encode() == b
    }

    #[test]
    fn any_reloads_at_first_use_after_it_passes() {
        let (store, cache) = cache(secs(60), None, None);
        let v = store.put("k");
        assert!(same_key(&cache.get("k").unwrap(), &v));
        cache.advance(Duration::from_secs(59));
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 1, "fresh for `any`");
        cache.advance(Duration::from_secs(1));
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 2, "reloaded once `any` has passed");
        // Use does not extend `any`.
        for _ in 0..5 {
            cache.advance(Duration::from_secs(30));
            cache.get("k").unwrap();
        }
        assert_eq!(store.gets(), 4);
    }

    #[test]
    fn unused_drops_entries_not_used_for_that_long() {
        let (store, cache) = cache(None, secs(30), None);
        store.put("k");
        cache.get("k").unwrap();
        // Used every 29 s: stays cached indefinitely (`any` is off).
        for _ in 0..10 {
            cache.advance(Duration::from_secs(29));
            cache.get("k").unwrap();
        }
        assert_eq!(store.gets(), 1);
        cache.advance(Duration::from_secs(30));
        cache.sweep();
        assert_eq!(cache.len(), 0, "swept after 30 s unused");
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 2);
    }

    #[test]
    fn a_configured_any_is_not_overwritten_when_unused_is_off() {
        // §12: the Go server replaces `any` with 30 s when `unused` is 0.
        let (store, cache) = cache(secs(600), None, None);
        store.put("k");
        cache.get("k").unwrap();
        cache.advance(Duration::from_secs(599));
        cache.sweep();
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 1);
    }

    #[test]
    fn everything_disabled_caches_until_deleted() {
        let (store, cache) = cache(None, None, None);
        store.put("k");
        cache.get("k").unwrap();
        cache.advance(Duration::from_secs(1_000_000));
        cache.sweep();
        cache.get("k").unwrap();
        assert_eq!(store.gets(), 1);
    }

    #[test]
    fn concurrent_misses_make_one_keystore_call() {
        let (store, cache) = cache(secs(60), secs(30), None);
        let v = store.put("k");
        *store.get_delay.lock().unwrap() = Duration::from_millis(200);
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.get("k").map(|k| k.encode()))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap(), v);
        }
        assert_eq!(store.gets(), 1);
        // Failures are shared too, and not cached.
        store.down(true);
        cache.advance(Duration::from_secs(61));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.get("k").map(|_| ()))
            })
            .collect();
        for t in threads {
            assert!(matches!(
                t.join().unwrap(),
                Err(Error::Store(keystore::Error::Unreachable { .. }))
            ));
        }
        assert!(store.gets() <= 1 + 8);
        assert!(cache.is_offline());
    }

    #[test]
    fn offline_off_fails_expired_keys_but_fresh_ones_keep_serving() {
        let (store, cache) = cache(secs(60), None, None);
        store.put("a");
        store.put("b");
        cache.get("a").unwrap();
        cache.advance(Duration::from_secs(30));
        cache.get("b").unwrap();
        store.down(true);
        cache.advance(Duration::from_secs(31));
        // "a" is 61 s old: reload fails. "b" is 31 s old: fresh.
        assert!(matches!(
            cache.get("a"),
            Err(Error::Store(keystore::Error::Unreachable { .. }))
        ));
        cache.get("b").unwrap();
        assert_eq!(cache.stats.stale_hits.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn offline_serves_expired_keys_for_that_long_per_entry() {
        let (store, cache) = cache(secs(60), secs(30), secs(120));
        let v = store.put("k");
        cache.get("k").unwrap();
        store.down(true);
        cache.advance(Duration::from_secs(61));
        // The reload fails: the cached key serves, and the entry's offline period begins.
        assert!(same_key(&cache.get("k").unwrap(), &v));
        assert!(cache.is_offline());
        let calls = store.gets();
        // While the keystore is known to be down, no further reloads are attempted.
        for _ in 0..10 {
            cache.advance(Duration::from_secs(10));
            cache.get("k").unwrap();
            cache.sweep();
        }
        assert_eq!(store.gets(), calls);
        assert_eq!(cache.stats.stale_hits.load(Ordering::Relaxed), 11);
        // 120 s after the first failed reload, it stops.
        cache.advance(Duration::from_secs(20));
        assert!(matches!(
            cache.get("k"),
            Err(Error::Store(keystore::Error::Unreachable { .. }))
        ));
        cache.sweep();
        assert_eq!(cache.len(), 0);
        // The keystore comes back: served again, from the keystore.
        store.down(false);
        cache.set_online();
        assert!(same_key(&cache.get("k").unwrap(), &v));
    }

    #[test]
    fn offline_period_is_not_extended_by_a_flapping_keystore() {
        let (store, cache) = cache(secs(60), None, secs(120));
        store.put("k");
        cache.get("k").unwrap();
        store.down(true);
        cache.advance(Duration::from_secs(61));
        cache.get("k").unwrap(); // stale; period starts
        for _ in 0..5 {
            // A health check succeeds now and then, but reloads keep failing.
            cache.set_online();
            cache.advance(Duration::from_secs(20));
            cache.get("k").unwrap();
        }
        cache.set_online();
        cache.advance(Duration::from_secs(21));
        assert!(
            cache.get("k").is_err(),
            "121 s after the first failed reload"
        );
    }

    #[test]
    fn sweep_keeps_entries_that_expire_while_offline() {
        let (store, cache) = cache(secs(60), secs(30), secs(120));
        let v = store.put("k");
        cache.get("k").unwrap();
        store.down(true);
        cache.set_offline(&down());
        cache.advance(Duration::from_secs(31)); // unused for 31 s
        cache.sweep(); // keeps it, starts its period
        assert_eq!(cache.len(), 1);
        assert!(same_key(&cache.get("k").unwrap(), &v));
        assert_eq!(store.gets(), 1, "no reload while known offline");
        cache.advance(Duration::from_secs(120));
        cache.sweep();
        assert_eq!(cache.len(), 0);
        // Online, the sweep drops expired entries as usual.
        store.down(false);
        cache.set_online();
        cache.get("k").unwrap();
        cache.advance(Duration::from_secs(31));
        cache.sweep();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn delete_evicts_and_not_found_evicts() {
        let (store, cache) = cache(secs(60), secs(30), secs(120));
        store.put("k");
        cache.get("k").unwrap();
        cache.delete("k").unwrap();
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.get("k").map(|_| ()),
            Err(Error::Store(keystore::Error::NotFound))
        );
        // Deleted behind our back: found missing at the reload, evicted, not served stale.
        store.put("j");
        cache.get("j").unwrap();
        store.values.lock().unwrap().remove("j");
        cache.advance(Duration::from_secs(61));
        assert_eq!(
            cache.get("j").map(|_| ()),
            Err(Error::Store(keystore::Error::NotFound))
        );
        assert_eq!(cache.len(), 0);
        // A delete that fails (keystore down) still evicts: the delete may have happened.
        store.put("m");
        cache.get("m").unwrap();
        store.down(true);
        assert!(cache.delete("m").is_err());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_request_after_a_delete_does_not_share_an_older_load() {
        let (store, cache) = cache(secs(60), secs(30), None);
        store.put("k");
        let gate = Arc::new(Barrier::new(2));
        *store.gate.lock().unwrap() = Some(gate.clone());
        // A load that reads the key before the delete and answers after it.
        let early = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get("k").map(|_| ()))
        };
        gate.wait(); // the early load has read the key
        *store.gate.lock().unwrap() = None;
        store.values.lock().unwrap().remove("k");
        // The keystore's delete happened (directly here, the cache's delete below finds nothing).
        assert_eq!(cache.delete("k"), Err(keystore::Error::NotFound));
        // A request after the delete: its own load, which finds nothing.
        assert_eq!(
            cache.get("k").map(|_| ()),
            Err(Error::Store(keystore::Error::NotFound))
        );
        gate.wait(); // let the early load answer
        let _ = early.join().unwrap();
        assert_eq!(
            cache.len(),
            0,
            "a load that raced with a delete is not cached"
        );
        assert_eq!(store.gets(), 2);
    }

    #[test]
    fn a_load_racing_with_a_delete_is_not_cached() {
        let (store, cache) = cache(secs(60), secs(30), None);
        store.put("k");
        let gate = Arc::new(Barrier::new(2));
        *store.gate.lock().unwrap() = Some(gate.clone());
        let early = {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get("k").map(|_| ()))
        };
        gate.wait();
        *store.gate.lock().unwrap() = None;
        cache.delete("k").unwrap();
        gate.wait();
        early.join().unwrap().unwrap(); // it read the key before the delete
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.get("k").map(|_| ()),
            Err(Error::Store(keystore::Error::NotFound))
        );
    }

    #[test]
    fn creates_wait_for_the_keystore() {
        let (store, cache) = cache(None, None, None);
        store.down(true);
        assert!(matches!(
            cache.create("k", b"v1"),
            Err(keystore::Error::Unreachable { .. })
        ));
        let down = down();
        cache.create_later("k", zeroize::Zeroizing::new(b"v1".to_vec()), &down);
        cache.create_later("k", zeroize::Zeroizing::new(b"v2".to_vec()), &down);
        cache.create_pending();
        assert_eq!(cache.pending.lock().unwrap().len(), 1, "kept while down");
        store.down(false);
        cache.create_pending();
        assert!(cache.pending.lock().unwrap().is_empty());
        assert_eq!(store.values.lock().unwrap()["k"], b"v1");
        // An existing key is not an error, and not overwritten.
        cache.create_later("k", zeroize::Zeroizing::new(b"v3".to_vec()), &down);
        cache.create_pending();
        assert!(cache.pending.lock().unwrap().is_empty());
        assert_eq!(store.values.lock().unwrap()["k"], b"v1");
    }

    #[test]
    fn status_says_why_the_keystore_is_offline() {
        let (store, cache) = cache(None, None, None);
        store.down(true);
        assert_eq!(cache.status(), Err(down()));
        assert!(cache.is_offline());
        // Answered from the flag, with the keystore's reason.
        assert_eq!(cache.status(), Err(down()));
    }

    #[test]
    fn status_is_unreachable_at_once_while_offline() {
        let (store, cache) = cache(secs(60), secs(30), None);
        store.put("k");
        cache.status().unwrap();
        store.down(true);
        assert!(cache.status().is_err());
        assert!(cache.is_offline());
        store.down(false);
        // Until the background probe (or any successful call) says otherwise.
        assert!(cache.status().is_err());
        cache.get("k").unwrap();
        cache.status().unwrap();
    }

    /// A memory keystore holding key `k` (version 1) and a cache over it.
    fn ring_cache(any: Option<Duration>) -> (Arc<crate::keystore::mem::MemKeystore>, Arc<Cache>) {
        let store = Arc::new(crate::keystore::mem::MemKeystore::new());
        let v1 = KeyVersion {
            key: SecretKey::generate(Algorithm::Aes256).unwrap(),
            hmac_key: Some(HmacKey::generate().unwrap()),
            created_at: None,
            created_by: String::new(),
            algorithm_explicit: true,
        };
        store.create("k", &v1.encode()).unwrap();
        let cache = Cache::new(
            store.clone(),
            CacheConfig {
                any,
                unused: None,
                offline: None,
            },
        );
        (store, cache)
    }

    /// Rotates `k` in the keystore directly (as another node would), returning the number.
    fn rotate_behind(store: &crate::keystore::mem::MemKeystore) -> u32 {
        crate::keyring::rotate(store, "k", || {
            Ok(Zeroizing::new(
                KeyVersion {
                    key: SecretKey::generate(Algorithm::Aes256).unwrap(),
                    hmac_key: Some(HmacKey::generate().unwrap()),
                    created_at: None,
                    created_by: String::new(),
                    algorithm_explicit: true,
                }
                .encode(),
            ))
        })
        .unwrap()
    }

    #[test]
    fn a_ring_loads_its_current_version_and_others_on_demand() {
        let (store, cache) = ring_cache(None);
        assert_eq!(rotate_behind(&store), 2);
        assert_eq!(rotate_behind(&store), 3);
        let ring = cache.ring("k").unwrap();
        assert_eq!(ring.state.current(), 3);
        let (n, current) = ring.current();
        assert_eq!(n, 3);
        assert!(
            ring.loaded(2).is_none(),
            "version 2 is loaded on demand only"
        );
        let id = ring.id.clone();
        assert_eq!(
            cache.version("k", &ring, 2).unwrap().encode(),
            &store.get_version("k", &id, 2).unwrap()[..]
        );
        assert!(ring.loaded(2).is_some());
        assert_eq!(
            current.encode(),
            &store.get_version("k", &id, 3).unwrap()[..]
        );
        assert_eq!(
            cache.version("k", &ring, 7).unwrap_err(),
            Error::Store(keystore::Error::NotFound)
        );
        // Version 1 is what `get` serves, as before versions.
        assert_eq!(
            cache.get("k").unwrap().encode(),
            &store.get("k").unwrap()[..]
        );
    }

    #[test]
    fn a_rotation_elsewhere_is_seen_within_the_ring_age() {
        let (store, cache) = ring_cache(None);
        assert_eq!(cache.ring("k").unwrap().state.current(), 1);
        assert_eq!(rotate_behind(&store), 2);
        cache.advance(RING_MAX_AGE - Duration::from_secs(1));
        assert_eq!(
            cache.ring("k").unwrap().state.current(),
            1,
            "within the window"
        );
        assert!(cache.ring_cached("k").is_some());
        cache.advance(Duration::from_secs(1));
        assert!(
            cache.ring_cached("k").is_none(),
            "an old version list is not served inline: a worker lists again"
        );
        let ring = cache.ring("k").unwrap();
        assert_eq!(
            ring.state.current(),
            2,
            "listed again after {RING_MAX_AGE:?}"
        );
        assert!(
            ring.loaded(2).is_some(),
            "the new current version is loaded with it"
        );
        assert_eq!(cache.ring_cached("k").unwrap().state.current(), 2);
    }

    #[test]
    fn a_decrypt_naming_a_newer_version_lists_again_at_once_and_futile_lists_once_a_second() {
        let (store, cache) = ring_cache(None);
        let ring = cache.ring("k").unwrap();
        assert_eq!(rotate_behind(&store), 2);
        // Right after the key was loaded (and listed): listed again at once.
        let newer = cache.reload_ring("k", &ring);
        assert_eq!(newer.state.current(), 2);
        assert_eq!(cache.stats.ring_reloads.load(Ordering::Relaxed), 1);
        // A request still holding the old ring takes the new one, without listing again.
        let shared = cache.reload_ring("k", &ring);
        assert!(Arc::ptr_eq(&shared, &newer));
        assert_eq!(cache.stats.ring_reloads.load(Ordering::Relaxed), 1);
        // A second rotation right after the first listing: found at once too.
        assert_eq!(rotate_behind(&store), 3);
        let third = cache.reload_ring("k", &newer);
        assert_eq!(third.state.current(), 3);
        // A listing that finds nothing new (a hint naming a version nobody made) holds off the
        // next forced listing for a second.
        let futile = cache.reload_ring("k", &third);
        assert_eq!(futile.state.current(), 3);
        assert_eq!(cache.stats.ring_reloads.load(Ordering::Relaxed), 3);
        assert_eq!(rotate_behind(&store), 4);
        let held = cache.reload_ring("k", &futile);
        assert_eq!(held.state.current(), 3, "rate limited");
        assert_eq!(cache.stats.ring_reloads.load(Ordering::Relaxed), 3);
        cache.advance(Duration::from_millis(1000));
        assert_eq!(cache.reload_ring("k", &held).state.current(), 4);
    }

    #[test]
    fn invalidate_makes_the_next_request_read_the_keystore() {
        let (store, cache) = ring_cache(None);
        assert_eq!(cache.ring("k").unwrap().state.current(), 1);
        assert_eq!(rotate_behind(&store), 2);
        cache.invalidate("k");
        assert!(cache.ring_cached("k").is_none());
        assert_eq!(cache.ring("k").unwrap().state.current(), 2);
    }

    #[test]
    fn the_ring_age_does_not_end_the_offline_life_of_a_fresh_entry() {
        // `cache.expiry.any` 10 min: the key must survive a keystore outage for that long even
        // though its version list is re-checked every minute.
        let (store, cache) = cache(secs(600), None, None);
        store.put("k");
        cache.get("k").unwrap();
        store.down(true);
        cache.advance(Duration::from_secs(120));
        assert!(
            cache.get("k").is_ok(),
            "fresh for `any`: served while the keystore is down"
        );
        cache.advance(Duration::from_secs(480));
        assert!(cache.get("k").is_err(), "`any` has passed");
    }

    #[test]
    fn a_forced_listing_does_not_wait_for_the_periodic_one() {
        // The 60 s re-list of the ring is under way (its flag set) when a decrypt needs a
        // version made elsewhere: the forced listing must list itself, not take the old ring.
        let (store, cache) = ring_cache(None);
        let ring = cache.ring("k").unwrap();
        assert_eq!(rotate_behind(&store), 2);
        ring.relisting.store(true, Ordering::Relaxed);
        assert_eq!(cache.reload_ring("k", &ring).state.current(), 2);
        assert!(
            ring.relisting.load(Ordering::Relaxed),
            "the periodic listing's flag is its own"
        );
    }
}
