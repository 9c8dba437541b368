//! What a protocol session (HTTP/1.1 in [`super::conn`], HTTP/2 in [`super::h2`]) works with
//! while it turns input into requests: the event loop's context ([`Ctx`]), the connection's output
//! and its requests in progress ([`Jobs`]), and the running of a request ([`Env::run`]): on the
//! event loop when its route allows, else on a worker, whose reply comes back through the loop's
//! [`Inbox`].
//!
//! Below the connection and both protocols: it uses neither (they use it).

use super::inbox::{Completion, Inbox};
use super::message::{Request, Response, Waker};
use super::{ConnInfo, Handled, Handler, Inline, Mode, Route, Shared};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Most plaintext waiting to be encrypted and sent before a connection stops producing more
/// (streams pause, HTTP/2 stops reading frames that would make replies).
pub const MAX_OUTPUT: usize = 256 * 1024;
/// Requests one connection may start per call of `drive`; then the loop serves its other
/// connections before this one goes on (a client pipelining thousands of requests cannot hold
/// its loop for long).
const REQUESTS_PER_TURN: usize = 64;

/// What the event loop passes down: the server, and how to reach this loop from other threads.
pub(crate) struct Ctx<'a, H: Handler> {
    pub shared: &'a Arc<Shared<H>>,
    pub inbox: &'a Arc<Inbox>,
    pub slot: usize,
    pub now: Instant,
}

/// Requests of one connection that run or wait for a worker.
#[derive(Default)]
pub struct Jobs {
    /// Submitted to the pool and not answered yet, by stream, each with a flag that cancels it
    /// if no worker has started it yet (its stream was reset, or the connection closed): work
    /// for a client that has gone is not done.
    submitted: HashMap<u32, Arc<AtomicBool>>,
    /// Over the connection's share of workers: waiting here, in order.
    waiting: VecDeque<(Route, Request, u32)>,
    /// Requests started in the current turn (see [`REQUESTS_PER_TURN`]).
    this_turn: usize,
}

impl Jobs {
    /// Requests of the connection on (or queued for) a worker.
    pub fn submitted(&self) -> usize {
        self.submitted.len()
    }

    /// A new call of `drive`: the connection may start [`REQUESTS_PER_TURN`] requests again.
    pub fn new_turn(&mut self) {
        self.this_turn = 0;
    }

    /// Whether this turn's share of requests is used.
    pub fn turn_used(&self) -> bool {
        self.this_turn >= REQUESTS_PER_TURN
    }

    /// The connection closes: requests waiting for a worker are forgotten (their number is
    /// returned), those queued in the pool are not started.
    pub fn abandon(&mut self) -> usize {
        let forgotten = self.waiting.len();
        self.waiting.clear();
        for flag in self.submitted.values() {
            flag.store(true, Ordering::Release);
        }
        forgotten
    }
}

/// What a protocol session may use while it handles input or replies.
pub(crate) struct Env<'a, 'c, H: Handler> {
    pub ctx: &'a Ctx<'c, H>,
    pub conn_id: u64,
    pub info: &'a Arc<ConnInfo>,
    pub state: &'a mut H::ConnState,
    /// Plaintext to send.
    pub out: &'a mut Vec<u8>,
    pub jobs: &'a mut Jobs,
}

impl<H: Handler> Env<'_, '_, H> {
    pub fn handler(&self) -> &H {
        &self.ctx.shared.handler
    }

    pub fn now(&self) -> Instant {
        self.ctx.now
    }

    pub fn shutting_down(&self) -> bool {
        self.ctx.shared.is_shutting_down()
    }

    pub fn limits(&self) -> &crate::config::Limits {
        &self.ctx.shared.limits
    }

    /// Bytes of output not yet handed to TLS (the protocols stop producing more above
    /// [`MAX_OUTPUT`]).
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Whether the protocol should stop taking requests for now and let the loop serve other
    /// connections (it is called again soon): this turn's share is used, or the output is full.
    pub fn should_yield(&self) -> bool {
        self.jobs.turn_used() || self.out.len() >= MAX_OUTPUT
    }

    /// Runs a complete request. Answered at once (`Some`) when its route allows running on the
    /// event loop and the handler needed nothing that blocks; otherwise it goes to the worker
    /// pool (or waits for this connection's share of it) and its reply comes back later as a
    /// [`Completion`] for `stream`.
    pub fn run(&mut self, route: Route, request: Request, stream: u32) -> Option<Response> {
        let shared = self.ctx.shared;
        shared.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        self.jobs.this_turn += 1;
        if route.inline != Inline::Never {
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shared
                    .handler
                    .handle(&route, &request, self.info, Mode::Inline)
            }));
            match handled {
                Ok(Handled::Done(response)) => {
                    shared.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                    return Some(response);
                }
                Ok(Handled::WouldBlock) => {}
                Err(_) => {
                    shared.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                    log::error!(
                        "internal error: a handler panicked serving {} {}",
                        request.head.method,
                        request.head.path
                    );
                    return Some(shared.handler.error(500, "internal server error"));
                }
            }
        }
        if self.jobs.submitted() < shared.jobs_per_connection {
            self.submit(route, request, stream);
        } else {
            self.jobs.waiting.push_back((route, request, stream));
        }
        None
    }

    fn submit(&mut self, route: Route, request: Request, stream: u32) {
        let cancelled = Arc::new(AtomicBool::new(false));
        self.jobs.submitted.insert(stream, cancelled.clone());
        let shared = self.ctx.shared.clone();
        let reply = Reply {
            inbox: self.ctx.inbox.clone(),
            slot: self.ctx.slot,
            conn_id: self.conn_id,
            stream,
            shared: shared.clone(),
            sent: false,
        };
        let info = self.info.clone();
        let deadline = route.timeout.map(|t| self.ctx.now + t);
        shared.clone().pool.submit(Box::new(move || {
            let mut reply = reply;
            let handler = &shared.handler;
            // A request whose client went away (stream reset, connection closed) is not started;
            // its reply goes nowhere.
            let response = if cancelled.load(Ordering::Acquire) {
                Response::empty(503)
            // A request that waited for a worker past its route's timeout is not started: the
            // client has likely given up, and the SDK retries a 503.
            } else if deadline.is_some_and(|d| Instant::now() > d) {
                handler.refused(503, Some(&request.head), &info);
                handler.error(503, "request timeout exceeded")
            } else {
                match handler.handle(&route, &request, &info, Mode::Worker) {
                    Handled::Done(response) => response,
                    Handled::WouldBlock => handler.error(500, "internal server error"),
                }
            };
            drop(request);
            reply.send(response);
        }));
    }

    /// Called when a worker's reply for `stream` arrives: starts the next waiting request.
    pub fn job_done(&mut self, stream: u32) {
        self.jobs.submitted.remove(&stream);
        if self.jobs.submitted() < self.ctx.shared.jobs_per_connection
            && let Some((route, request, stream)) = self.jobs.waiting.pop_front()
        {
            self.submit(route, request, stream);
        }
    }

    /// The client gave up `stream` (reset it): a request still waiting for a worker is
    /// forgotten, one queued in the pool is not started. (One that runs finishes; its reply is
    /// dropped.)
    pub fn cancel(&mut self, stream: u32) {
        if let Some(flag) = self.jobs.submitted.get(&stream) {
            flag.store(true, Ordering::Release);
        }
        let before = self.jobs.waiting.len();
        self.jobs.waiting.retain(|(_, _, s)| *s != stream);
        let removed = before - self.jobs.waiting.len();
        self.ctx
            .shared
            .stats
            .in_flight
            .fetch_sub(removed, Ordering::AcqRel);
    }

    /// A waker for a stream body of this connection.
    pub fn waker(&self, stream: u32) -> Waker {
        let inbox = self.ctx.inbox.clone();
        let (slot, conn_id) = (self.ctx.slot, self.conn_id);
        Waker::new(move || inbox.stream_ready(slot, conn_id, stream))
    }
}

/// Delivers a worker's reply to the loop that owns the connection; answers 500 if the job ends
/// without a reply (a panic in the handler), so that no request is left without an answer.
struct Reply<H: Handler> {
    inbox: Arc<Inbox>,
    slot: usize,
    conn_id: u64,
    stream: u32,
    shared: Arc<Shared<H>>,
    sent: bool,
}

impl<H: Handler> Reply<H> {
    fn send(&mut self, response: Response) {
        self.sent = true;
        self.inbox.complete(Completion {
            slot: self.slot,
            conn_id: self.conn_id,
            stream: self.stream,
            response,
        });
    }
}

impl<H: Handler> Drop for Reply<H> {
    fn drop(&mut self) {
        if !self.sent {
            log::error!("internal error: a handler panicked on a worker");
            let response = self.shared.handler.error(500, "internal server error");
            self.send(response);
        }
    }
}
