//! Vault's health as the keystore sees it: a flag that makes key operations fail at once while
//! Vault is sealed or unreachable, the background loop that keeps it current, and `status`.
//!
//! The flag is only *set* by a health probe (`/v1/sys/health` on every node), never by a single
//! failed request: a failed request marks its node and wakes the loop, which probes at once. It
//! is *cleared* by a probe or by any request a node answers normally. While the flag is set the
//! loop probes every second (not every `ping`), so the keystore recovers within about a second
//! of Vault coming back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::client::{Client, NodeState, SEALED};
use crate::keystore::{Error, Status};

/// Probe interval while the flag is set.
const RECOVERY_PING: Duration = Duration::from_secs(1);

const OK: u8 = 0;
const SEALED_STATE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The shared "Vault is usable" flag, and the signal that wakes and stops the background threads.
pub(crate) struct Health {
    state: AtomicU8,
    reason: Mutex<String>,
    signal: Signal,
}

impl Health {
    pub fn new() -> Health {
        Health {
            state: AtomicU8::new(OK),
            reason: Mutex::new(String::new()),
            signal: Signal::default(),
        }
    }

    /// Fails at once while Vault is known to be sealed or unreachable.
    pub fn check(&self) -> Result<(), Error> {
        match self.state.load(Ordering::Acquire) {
            OK => Ok(()),
            SEALED_STATE => Err(Error::Unreachable(SEALED.into())),
            _ => Err(Error::Unreachable(
                self.reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            )),
        }
    }

    pub fn set_ok(&self) {
        if self.state.swap(OK, Ordering::AcqRel) != OK {
            log::info!("vault: reachable again");
        }
    }

    fn set(&self, err: &Error) {
        let (state, why) = match err {
            Error::Unreachable(why) if why == SEALED => (SEALED_STATE, why.clone()),
            Error::Unreachable(why) | Error::Failed(why) => (UNREACHABLE, why.clone()),
            _ => (UNREACHABLE, "vault is unreachable".to_string()),
        };
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = why.clone();
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

/// Probes all nodes once, updates the flag and returns the keystore status: the latency of the
/// probe of the active node (or of the first usable node when there is no active one). The
/// probes have the per-call timeouts: only a Vault that fails them is declared unusable (which
/// makes every key operation fail at once), not one that is merely slow.
pub(crate) fn check_now(client: &Client) -> Result<Status, Error> {
    let result = evaluate(&client.probe_all(None));
    match &result {
        Ok(_) => client.health.set_ok(),
        Err(err) => client.health.set(err),
    }
    result
}

/// The status for `/v1/status` and the key cache's probe: like [`check_now`], but it answers by
/// `deadline` (a Vault that cannot answer its health check in time counts as unreachable,
/// like a read that cannot), and it never sets the fail-fast flag, only clears it.
pub(crate) fn status_until(client: &Client, deadline: Instant) -> Result<Status, Error> {
    let result = evaluate(&client.probe_all(Some(deadline)));
    if result.is_ok() {
        client.health.set_ok();
    }
    result
}

fn evaluate(probes: &[super::client::Probe]) -> Result<Status, Error> {
    let best = probes
        .iter()
        .find(|p| matches!(p.result, Ok(NodeState::Active)))
        .or_else(|| {
            probes
                .iter()
                .find(|p| matches!(p.result, Ok(NodeState::Standby | NodeState::Unknown)))
        });
    match best {
        Some(p) => Ok(Status { latency: p.latency }),
        None if probes
            .iter()
            .any(|p| matches!(p.result, Ok(NodeState::Sealed))) =>
        {
            Err(Error::Unreachable(SEALED.into()))
        }
        None => {
            let why = probes
                .iter()
                .rev()
                .find_map(|p| p.result.as_ref().err().cloned())
                .unwrap_or_default();
            Err(Error::Unreachable(format!("vault is unreachable: {why}")))
        }
    }
}

/// The background loop: a probe every `ping` (every second while Vault is not usable, and at
/// once when a request saw a node fail), until stopped. After each probe that found Vault
/// usable, `after_probe` runs (the token and engine checks of the keystore); its argument says
/// whether Vault was unusable before this probe.
pub(crate) fn run(client: &Client, ping: Duration, after_probe: impl Fn(bool)) {
    let mut was_usable = client.health.is_ok();
    loop {
        let started = Instant::now();
        let usable = check_now(client).is_ok();
        if usable {
            after_probe(!was_usable);
        }
        was_usable = usable;
        // Kicks raised while probing (often by the probe itself) are answered by this round.
        client.health.signal().clear_kick();
        let every = if client.health.is_ok() {
            ping
        } else {
            ping.min(RECOVERY_PING)
        };
        let wait = every.saturating_sub(started.elapsed());
        match client.health.signal().wait(wait, true) {
            Wake::Stop => return,
            // Rounds at most every 100 ms, however often requests report failing nodes.
            Wake::Kick => {
                let pause = Duration::from_millis(100).saturating_sub(started.elapsed());
                if client.health.signal().wait(pause, false) == Wake::Stop {
                    return;
                }
            }
            Wake::Timeout => {}
        }
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

    fn clear_kick(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).kick = false;
    }

    fn kick(&self) {
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
