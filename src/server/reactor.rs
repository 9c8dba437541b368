//! The event loops. Each loop thread owns a set of connections, waits for their sockets with
//! `mio` (epoll on Linux, edge-triggered) and drives them ([`Connection::drive`]); other threads
//! reach it only through its [`Inbox`]: new connections from the accept thread, replies from
//! workers, and "new data" notices from log streams, each followed by one wake-up of the loop
//! (coalesced: a loop that is already awake is not woken again).
//!
//! A loop never blocks on anything but `poll`. Every [`TICK`] it checks the deadlines of its
//! connections. A panic while driving one connection closes that connection only.

use super::conn::{Connection, Status};
use super::env::Ctx;
use super::inbox::{Inbox, NewConn, Taken};
use super::{Handler, Shared};
use mio::{Events, Interest, Poll, Token};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often deadlines are checked. Timeouts are therefore up to this much late.
const TICK: Duration = Duration::from_millis(200);
const WAKER: Token = Token(usize::MAX);

pub struct Loop<H: Handler> {
    id: usize,
    poll: Poll,
    inbox: Arc<Inbox>,
    conns: Vec<Option<Connection<H>>>,
    free: Vec<usize>,
    /// Connections to drive again without waiting for readiness (their read budget ran out).
    again: Vec<usize>,
    shutting_down: bool,
}

impl<H: Handler> Loop<H> {
    pub fn new(id: usize) -> std::io::Result<(Loop<H>, Arc<Inbox>)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let inbox = Arc::new(Inbox::new(waker));
        Ok((
            Loop {
                id,
                poll,
                inbox: inbox.clone(),
                conns: Vec::new(),
                free: Vec::new(),
                again: Vec::new(),
                shutting_down: false,
            },
            inbox,
        ))
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn run(mut self, shared: &Arc<Shared<H>>) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        let mut ready: Vec<(usize, bool, bool)> = Vec::with_capacity(1024);
        loop {
            let timeout = if self.again.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("event loop {}: poll failed: {e}", self.id);
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let mut woken = false;
            ready.clear();
            for event in events.iter() {
                if event.token() == WAKER {
                    woken = true;
                } else {
                    ready.push((
                        event.token().0,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable() || event.is_write_closed(),
                    ));
                }
            }
            let now = Instant::now();
            for &(slot, r, w) in &ready {
                self.drive(shared, slot, now, |c, ctx| c.drive(ctx, r, w));
            }
            if woken && self.drain_inbox(shared, now) {
                break;
            }
            for slot in std::mem::take(&mut self.again) {
                self.drive(shared, slot, now, |c, ctx| c.drive(ctx, false, false));
            }
            // A loop that has just served many connections lets other runnable threads (the
            // clients on the same machine, the other loop, workers) have the CPU before it polls
            // again: measured with 64 keep-alive connections on 2 cores, p99 1.5-1.7 ms instead of
            // 2.9-5.2 ms at the same throughput (docs/architecture.md).
            if ready.len() >= 8 {
                std::thread::yield_now();
            }
            if now >= next_tick {
                next_tick = now + TICK;
                for slot in 0..self.conns.len() {
                    if self.conns[slot].is_some() {
                        self.drive(shared, slot, now, |c, ctx| c.tick(ctx));
                    }
                }
            }
        }
        for slot in 0..self.conns.len() {
            if self.conns[slot].is_some() {
                self.close(shared, slot, Instant::now());
            }
        }
    }

    /// Runs `f` on the connection in `slot`, containing a panic to that connection, and closes
    /// the connection when it is done.
    fn drive(
        &mut self,
        shared: &Arc<Shared<H>>,
        slot: usize,
        now: Instant,
        f: impl FnOnce(&mut Connection<H>, &Ctx<'_, H>) -> Status,
    ) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let ctx = Ctx {
            shared,
            inbox: &self.inbox,
            slot,
            now,
        };
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn, &ctx)))
            .unwrap_or_else(|_| {
                log::error!("internal error: panic while serving a connection; it is closed");
                Status::Closed
            });
        match status {
            Status::Open => {}
            Status::Again => {
                if !self.again.contains(&slot) {
                    self.again.push(slot);
                }
            }
            Status::Closed => self.close(shared, slot, now),
        }
    }

    fn close(&mut self, shared: &Arc<Shared<H>>, slot: usize, now: Instant) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let ctx = Ctx {
            shared,
            inbox: &self.inbox,
            slot,
            now,
        };
        conn.closed(&ctx);
        let _ = self.poll.registry().deregister(conn.socket());
        shared.admission.release(conn.id);
        shared.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.free.push(slot);
    }

    /// Handles what other threads sent. Returns true when the loop must end.
    fn drain_inbox(&mut self, shared: &Arc<Shared<H>>, now: Instant) -> bool {
        let Taken {
            conns,
            done,
            ready,
            evict,
            shutdown,
            stop,
        } = self.inbox.take();
        if stop {
            return true;
        }
        for c in done {
            shared.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            let live = matches!(self.conns.get(c.slot), Some(Some(conn)) if conn.id == c.conn_id);
            if live {
                let (stream, response) = (c.stream, c.response);
                self.drive(shared, c.slot, now, |conn, ctx| {
                    conn.complete(ctx, stream, response)
                });
            }
        }
        for (slot, conn_id, stream) in ready {
            let live = matches!(self.conns.get(slot), Some(Some(conn)) if conn.id == conn_id);
            if live {
                self.drive(shared, slot, now, |conn, ctx| {
                    conn.stream_ready(ctx, stream)
                });
            }
        }
        // New connections before evictions: the connection admission chose to make room may
        // be one that was handed to this loop in the same batch (it is idle in its handshake),
        // and an eviction that found nothing would leave it open beyond the limits.
        for c in conns {
            self.accept(shared, c, now);
        }
        for id in evict {
            if let Some(slot) = self
                .conns
                .iter()
                .position(|c| c.as_ref().is_some_and(|c| c.id == id))
            {
                self.drive(shared, slot, now, |conn, ctx| conn.retire(ctx));
            }
        }
        if shutdown && !self.shutting_down {
            self.shutting_down = true;
            for slot in 0..self.conns.len() {
                if self.conns[slot].is_some() {
                    self.drive(shared, slot, now, |conn, ctx| conn.shutdown(ctx));
                }
            }
        }
        false
    }

    /// Takes a new connection and starts its handshake.
    fn accept(&mut self, shared: &Arc<Shared<H>>, c: NewConn, now: Instant) {
        if self.shutting_down {
            shared.admission.release(c.id);
            return;
        }
        let config = shared.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
        let tls = match rustls::ServerConnection::new(config) {
            Ok(tls) => tls,
            Err(e) => {
                log::error!("cannot start TLS for a connection from {}: {e}", c.peer);
                shared.admission.release(c.id);
                return;
            }
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let mut conn = Connection::new(
            c.id,
            c.stream,
            tls,
            c.peer,
            c.idle,
            shared.limits.handshake_timeout,
            now,
        );
        // Edge-triggered, both directions, registered once: no re-registration per request.
        if let Err(e) = self.poll.registry().register(
            conn.socket(),
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("cannot watch a connection from {}: {e}", c.peer);
            shared.admission.release(c.id);
            self.free.push(slot);
            return;
        }
        shared.stats.open_connections.fetch_add(1, Ordering::AcqRel);
        self.conns[slot] = Some(conn);
    }
}
