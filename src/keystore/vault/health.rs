//! Vault's health as the keystore sees it: the background loop that the keystore runs (see
//! [`super::VaultKeystore::start`]) to keep the fail-fast flag of [`super::flag`] current, with
//! probes the [`super::client`] sends, and the answer to `status`.
//!
//! The flag is only *set* by a health probe (`/v1/sys/health` on every node), never by a single
//! failed request: a failed request marks its node and wakes the loop, which probes at once. It
//! is *cleared* by a probe or by any request a node answers normally. While the flag is set the
//! loop probes every second (not every `ping`), so the keystore recovers within about a second
//! of Vault coming back.

use std::time::{Duration, Instant};

use super::client::{Client, NodeState, Probe};
use super::flag::{Unusable, Wake};
use crate::keystore::{Error, Status, UnreachableReason};

/// Probe interval while the flag is set.
const RECOVERY_PING: Duration = Duration::from_secs(1);

/// Probes all nodes once, updates the flag and returns the keystore status: the latency of the
/// probe of the active node (or of the first usable node when there is no active one). The
/// probes have the per-call timeouts: only a Vault that fails them is declared unusable (which
/// makes every key operation fail at once), not one that is merely slow.
pub(crate) fn check_now(client: &Client) -> Result<Status, Error> {
    match evaluate(&client.probe_all(None)) {
        Ok(status) => {
            client.health.set_ok();
            Ok(status)
        }
        Err(unusable) => {
            client.health.set(&unusable);
            Err(unusable.into())
        }
    }
}

/// The status for `/v1/status` and the key cache's probe: like [`check_now`], but it answers by
/// `deadline` (a Vault that cannot answer its health check in time counts as unreachable,
/// like a read that cannot), and it never sets the fail-fast flag, only clears it.
pub(crate) fn status_until(client: &Client, deadline: Instant) -> Result<Status, Error> {
    let status = evaluate(&client.probe_all(Some(deadline)))?;
    client.health.set_ok();
    Ok(status)
}

fn evaluate(probes: &[Probe]) -> Result<Status, Unusable> {
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
            Err(Unusable::Sealed)
        }
        None => {
            let (reason, why) = probes
                .iter()
                .rev()
                .find_map(|p| p.result.as_ref().err())
                .map_or((UnreachableReason::Network, ""), |no| {
                    (no.reason, no.why.as_str())
                });
            Err(Unusable::Unreachable {
                reason,
                why: format!("vault is unreachable: {why}"),
            })
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
