//! The key cache in front of the keystore (§6.6), with the Go server's quirks fixed.
//!
//! Semantics (also documented in kes.yaml.example):
//! * `any`: an entry is reloaded from the keystore at its first use after `any` has passed since it
//!   was loaded.
//! * `unused`: an entry not used for `unused` is dropped.
//! * `offline`: when the keystore becomes unreachable, cached keys (expired or not) keep serving
//!   for up to `offline` after the outage began; after that they expire as usual. Disabled (None):
//!   entries expire as usual during an outage.
//! * Concurrent misses for one name make one keystore call; the others wait for its result.
//! * Delete evicts; a load that raced with a delete is not cached.
//!
//! The cache holds decoded keys; it never logs them.
//!
//! Every keystore call goes through `Cache::timed`, which records its latency and failures by
//! operation in `Stats::keystore` for `/v1/metrics`.

use crate::config::CacheConfig;
use crate::crypto::KeyVersion;
use crate::keystore::{self, Keystore, Page, Status};
use crate::metrics::{KeystoreFailure, KeystoreMetrics, KeystoreOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the background probe checks the keystore's health.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);

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
    key: Arc<KeyVersion>,
    loaded_ms: u64,
    used_ms: AtomicU64,
}

#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<KeyVersion>, Error>>>,
    done: Condvar,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale_hits: AtomicU64,
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
    stopped: AtomicBool,
    pub stats: Stats,
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
            stopped: AtomicBool::new(false),
            stats: Stats::default(),
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
                            Ok(_) => cache.set_online(),
                            Err(keystore::Error::Unreachable(_)) => cache.set_offline(),
                            Err(_) => {}
                        }
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
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub fn is_offline(&self) -> bool {
        self.offline_since.load(Ordering::Relaxed) != 0
    }

    fn set_offline(&self) {
        let now = self.now_ms();
        if self
            .offline_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // Logged on the transition only: an outage is one record, not one per request.
            log::warn!("keystore is not reachable: serving cached keys only, checking again");
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

    /// True while cached keys may be served past their expiry.
    fn in_offline_window(&self, now: u64) -> bool {
        let since = self.offline_since.load(Ordering::Relaxed);
        let window = self.offline_ms.load(Ordering::Relaxed);
        since != 0 && window != 0 && now.saturating_sub(since) < window
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        let any = self.any_ms.load(Ordering::Relaxed);
        let unused = self.unused_ms.load(Ordering::Relaxed);
        (any != 0 && now.saturating_sub(e.loaded_ms) >= any)
            || (unused != 0 && now.saturating_sub(e.used_ms.load(Ordering::Relaxed)) >= unused)
    }

    /// The key named `name`, from the cache or the keystore.
    pub fn get(&self, name: &str) -> Result<Arc<KeyVersion>, Error> {
        let now = self.now_ms();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(e) = &cached
            && (!self.expired(e, now) || self.in_offline_window(now))
        {
            e.used_ms.store(now, Ordering::Relaxed);
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(e.key.clone());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        match self.load(name) {
            Ok(key) => Ok(key),
            Err(Error::Store(keystore::Error::Unreachable(why))) => {
                self.set_offline();
                // The outage has just been noticed: a stale entry may still serve.
                if let Some(e) = cached
                    && self.in_offline_window(self.now_ms())
                {
                    e.used_ms.store(now, Ordering::Relaxed);
                    self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.key.clone());
                }
                Err(Error::Store(keystore::Error::Unreachable(why)))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads a key, coalescing concurrent loads of the same name into one keystore call.
    fn load(&self, name: &str) -> Result<Arc<KeyVersion>, Error> {
        let (flight, leader) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
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
                self.0
                    .inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(self.1);
            }
        }
        let _release = Release(self, name, &flight);

        let generation = self.generation.load(Ordering::Acquire);
        let result = match self.timed(KeystoreOp::Get, || self.store.get(name)) {
            Ok(value) => KeyVersion::decode(&value)
                .map(Arc::new)
                .map_err(|e| Error::Corrupt(e.to_string())),
            Err(e) => Err(Error::Store(e)),
        };
        match &result {
            Ok(key) => {
                self.set_online();
                let now = self.now_ms();
                let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
                if self.generation.load(Ordering::Acquire) == generation {
                    entries.insert(
                        name.to_owned(),
                        Arc::new(Entry {
                            key: key.clone(),
                            loaded_ms: now,
                            used_ms: AtomicU64::new(now),
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

    /// Drops expired entries (outside an offline window).
    fn sweep(&self) {
        let now = self.now_ms();
        if self.in_offline_window(now) {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| !self.expired(e, now));
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
        let r = self.timed(KeystoreOp::Delete, || self.store.delete(name));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.evict(name);
        self.note(&r);
        r
    }

    pub fn list(&self, prefix: &str, limit: usize) -> Result<Page, keystore::Error> {
        let r = self.timed(KeystoreOp::List, || self.store.list(prefix, limit));
        self.note(&r);
        r
    }

    /// The keystore's status; unreachable at once while the keystore is known to be offline.
    pub fn status(&self) -> Result<Status, keystore::Error> {
        if self.is_offline() {
            return Err(keystore::Error::Unreachable("key store is offline".into()));
        }
        let r = self.timed(KeystoreOp::Status, || self.store.status());
        self.note(&r);
        r
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
            Err(keystore::Error::Unreachable(_)) => Some(KeystoreFailure::Unreachable),
            Err(keystore::Error::Failed(_)) => Some(KeystoreFailure::Failed),
            Ok(_) | Err(keystore::Error::NotFound) | Err(keystore::Error::Exists) => None,
        };
        self.stats.keystore.observe(op, start.elapsed(), failure);
        r
    }

    fn note<T>(&self, r: &Result<T, keystore::Error>) {
        match r {
            Err(keystore::Error::Unreachable(_)) => self.set_offline(),
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
