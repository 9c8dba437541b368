//! The shared state of the Vault keystore's health: the flag that makes key operations fail at
//! once while Vault is sealed or unreachable, and the [`Signal`] that wakes the health loop and
//! stops the background threads.
//!
//! A leaf: the [`super::client`] writes the flag as it sees nodes answer or fail, the loop in
//! [`super::health`] sets it from its probes, the keystore reads it; none of them is needed here.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::keystore::{Error, UnreachableReason};

/// Why Vault cannot serve keys right now: what the flag records, and what callers that decide
/// on it (the flag, the choice of error of a request that tried every node) match on. It
/// becomes an [`Error::Unreachable`] with the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Every node that answered is sealed: `vault is sealed`.
    Sealed,
    /// No node answered usefully: why (of the last failure), and the whole text, e.g.
    /// `vault is unreachable: <why>`.
    Unreachable {
        reason: UnreachableReason,
        why: String,
    },
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Sealed => f.write_str("vault is sealed"),
            Unusable::Unreachable { why, .. } => f.write_str(why),
        }
    }
}

impl From<Unusable> for Error {
    fn from(unusable: Unusable) -> Error {
        match unusable {
            Unusable::Sealed => Error::unreachable(UnreachableReason::Sealed, "vault is sealed"),
            Unusable::Unreachable { reason, why } => Error::unreachable(reason, why),
        }
    }
}

const OK: u8 = 0;
const SEALED_STATE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The shared "Vault is usable" flag, and the signal that wakes and stops the background threads.
pub(crate) struct HealthFlag {
    state: AtomicU8,
    /// What the last probe that set the flag found.
    reason: Mutex<Option<Unusable>>,
    signal: Signal,
}

impl HealthFlag {
    pub fn new() -> HealthFlag {
        HealthFlag {
            state: AtomicU8::new(OK),
            reason: Mutex::new(None),
            signal: Signal::default(),
        }
    }

    /// Fails at once while Vault is known to be sealed or unreachable.
    pub fn check(&self) -> Result<(), Error> {
        match self.state.load(Ordering::Acquire) {
            OK => Ok(()),
            SEALED_STATE => Err(Unusable::Sealed.into()),
            _ => Err(self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .map_or_else(
                    || Error::unreachable(UnreachableReason::NotServing, ""),
                    Error::from,
                )),
        }
    }

    pub fn set_ok(&self) {
        if self.state.swap(OK, Ordering::AcqRel) != OK {
            log::info!("vault: reachable again");
        }
    }

    /// Records what a health probe found wrong (only probes set the flag).
    pub fn set(&self, unusable: &Unusable) {
        let state = match unusable {
            Unusable::Sealed => SEALED_STATE,
            Unusable::Unreachable { .. } => UNREACHABLE,
        };
        let why = unusable.to_string();
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(unusable.clone());
        if self.state.swap(state, Ordering::AcqRel) != state {
            log::warn!("vault: {why}; key operations fail at once until it recovers");
        }
    }

    pub fn is_ok(&self) -> bool {
        self.state.load(Ordering::Acquire) == OK
    }

    /// Asks the health loop for a probe now.
    pub fn kick(&self) {
        self.signal.kick();
    }

    pub fn signal(&self) -> &Signal {
        &self.signal
    }
}

/// Why [`Signal::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Stop,
    Kick,
    Timeout,
}

/// Stops the background threads at once (on drop of the keystore) and wakes the health loop.
#[derive(Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Default)]
struct SignalState {
    stop: bool,
    kick: bool,
}

impl Signal {
    pub fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cv.notify_all();
    }

    pub fn clear_kick(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).kick = false;
    }

    pub fn kick(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).kick = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout`; returns early on stop, and on a kick when `kickable`.
    pub fn wait(&self, timeout: Duration, kickable: bool) -> Wake {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.stop {
                return Wake::Stop;
            }
            if kickable && state.kick {
                state.kick = false;
                return Wake::Kick;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Timeout;
            }
            state = self
                .cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
