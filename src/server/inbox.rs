//! How other threads reach an event loop ([`super::reactor`]): the accept thread hands over new
//! connections ([`NewConn`], each with the [`IdleMark`] admission watches), workers their replies
//! ([`Completion`]), log streams "new data" notices, admission its evictions; each push wakes the
//! loop once (coalesced: a loop that is already awake is not woken again).
//!
//! A leaf of the server: the accept thread, the connections and the loops use it; it uses none
//! of them.

use super::message::Response;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection's idle mark: milliseconds since admission's epoch, plus one, at which it
/// became idle; 0 while it is busy.
#[derive(Debug, Clone)]
pub struct IdleMark {
    epoch: Instant,
    mark: Arc<AtomicU64>,
}

impl IdleMark {
    /// A mark for a new connection, busy until it is [set](IdleMark::set).
    pub fn new(epoch: Instant) -> IdleMark {
        IdleMark {
            epoch,
            mark: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records that the connection is idle since `since`, or busy (`None`).
    pub fn set(&self, since: Option<Instant>) {
        let value = since.map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(self.epoch).as_millis())
                .unwrap_or(u64::MAX - 1)
                + 1
        });
        // Most calls change nothing: skip the store (and the cache line write) then.
        if self.mark.load(Ordering::Relaxed) != value {
            self.mark.store(value, Ordering::Relaxed);
        }
    }

    /// Since when the connection is idle (in the mark's units), `None` while it is busy.
    pub fn idle_since(&self) -> Option<u64> {
        match self.mark.load(Ordering::Relaxed) {
            0 => None,
            m => Some(m),
        }
    }
}

/// A connection handed over by the accept thread, with its admission id and idle mark.
pub struct NewConn {
    pub stream: mio::net::TcpStream,
    pub peer: SocketAddr,
    pub id: u64,
    pub idle: IdleMark,
}

/// A worker's reply for stream `stream` (0 for HTTP/1.1) of connection `conn_id` in `slot`.
pub struct Completion {
    pub slot: usize,
    pub conn_id: u64,
    pub stream: u32,
    pub response: Response,
}

#[derive(Default)]
struct InboxState {
    conns: Vec<NewConn>,
    done: Vec<Completion>,
    /// (slot, connection id, stream) of stream bodies with new data.
    ready: Vec<(usize, u64, u32)>,
    /// Connections to close to make room for new ones (admission ids).
    evict: Vec<u64>,
    /// A wake-up is pending (the loop has not drained the inbox since).
    woken: bool,
    shutdown: bool,
    stop: bool,
}

/// How other threads reach a loop.
pub struct Inbox {
    waker: mio::Waker,
    state: Mutex<InboxState>,
}

impl Inbox {
    pub fn new(waker: mio::Waker) -> Inbox {
        Inbox {
            waker,
            state: Mutex::new(InboxState::default()),
        }
    }

    /// What arrived since the last call, for the loop; the next push wakes the loop again.
    /// `shutdown` and `stop` stay set once set.
    pub fn take(&self) -> Taken {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.woken = false;
        Taken {
            conns: std::mem::take(&mut s.conns),
            done: std::mem::take(&mut s.done),
            ready: std::mem::take(&mut s.ready),
            evict: std::mem::take(&mut s.evict),
            shutdown: s.shutdown,
            stop: s.stop,
        }
    }

    fn push(&self, f: impl FnOnce(&mut InboxState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        let wake = !state.woken;
        state.woken = true;
        drop(state);
        if wake && let Err(e) = self.waker.wake() {
            log::error!("cannot wake an event loop: {e}");
        }
    }

    pub fn add_connection(&self, conn: NewConn) {
        self.push(|s| s.conns.push(conn));
    }

    pub fn complete(&self, completion: Completion) {
        self.push(|s| s.done.push(completion));
    }

    pub fn stream_ready(&self, slot: usize, conn_id: u64, stream: u32) {
        self.push(|s| {
            // A busy stream wakes many times per drain: one notice is enough.
            if !s.ready.contains(&(slot, conn_id, stream)) {
                s.ready.push((slot, conn_id, stream));
            }
        });
    }

    /// Closes connection `id` to make room: at once if it is idle, else once its request is
    /// answered.
    pub fn evict(&self, id: u64) {
        self.push(|s| s.evict.push(id));
    }

    /// Begins a graceful shutdown of every connection of the loop.
    pub fn shutdown(&self) {
        self.push(|s| s.shutdown = true);
    }

    /// Ends the loop (after the shutdown grace period).
    pub fn stop(&self) {
        self.push(|s| s.stop = true);
    }
}

/// What [`Inbox::take`] hands the loop.
pub struct Taken {
    pub conns: Vec<NewConn>,
    pub done: Vec<Completion>,
    /// (slot, connection id, stream) of stream bodies with new data.
    pub ready: Vec<(usize, u64, u32)>,
    /// Connections to close to make room for new ones (admission ids).
    pub evict: Vec<u64>,
    pub shutdown: bool,
    pub stop: bool,
}
