//! The network side of the server: accepting connections, TLS, HTTP/1.1 and HTTP/2, and handing
//! each request to a [`Handler`] (the API layer).
//!
//! ```text
//! accept thread ──► event loop (one per core) ─┬─► TLS (rustls) ─► h1 | h2 ─► Handler::prepare
//!   admission:        owns its connections:    │                           (route, policy)
//!   per-address and   readiness (epoll), no    │   answer in memory? ─► Handler::handle, inline
//!   total limits      thread per connection    └─► may block? ───────► worker pool ─► reply
//!                                                                       back to the loop
//! ```
//!
//! * [`accept`]: the accept thread and admission: at `max_connections` (or the per-address
//!   limit) a new connection takes the place of the connection idle longest, or is refused
//!   before any TLS when none is idle.
//! * [`reactor`]: the event loops. Each owns its connections and waits on their sockets with
//!   `mio` (epoll); an idle connection, a log subscriber or a connection in its handshake costs
//!   memory, never a thread.
//! * [`conn`]: one connection: TLS, buffers, deadlines, the choice of protocol by ALPN.
//! * [`h1`] and [`h2`]: bytes to [`Request`]s and [`Response`]s to bytes; nothing else.
//! * [`pool`]: the bounded worker pool for handlers that may block (keystore and Vault calls).
//!
//! Requests whose answer is in memory (a cached key, a policy, the version) run on the event
//! loop that read them: no thread hop, no lock, replies batched into one write. A request that
//! may wait (a key not in the cache, create, delete, list, status) goes to the worker pool, so a
//! stream waiting on Vault never delays the other streams of its connection.
//!
//! Every stage has a deadline (handshake, first request, headers, body, idle, stalled writes)
//! checked by the loops, so a client that stalls or trickles loses its connection, never a
//! thread. Why this design and what it costs: docs/architecture.md.
//!
//! This module never decides what a request means: routes, policies and replies are the
//! handler's.

mod accept;
mod conn;
mod env;
pub mod h1;
pub mod h2;
mod inbox;
pub mod message;
mod pool;
mod reactor;
pub mod tls;

use crate::auth::Identity;
use crate::config::Limits;
pub use message::{Body, EventSource, Request, RequestHead, Response, Waker};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Who is on the other end of a connection, as far as the TLS handshake tells (§1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    Known(Identity),
    /// No client certificate (possible only when some route skips auth).
    Missing,
    /// More than one non-CA certificate.
    TooMany,
    /// The certificates cannot identify the client (e.g. the leaf is not the first certificate).
    Invalid(String),
}

/// The protocol a connection speaks, as ALPN chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Per-connection facts a handler may use. Shared with the worker that runs a request.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub identity: ClientIdentity,
    pub protocol: Protocol,
}

/// Where a request may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    /// Its answer never waits (the version, policies, metrics): always on the event loop.
    Always,
    /// On the event loop when the handler can answer from memory, else on a worker.
    Try,
    /// Always on a worker (keystore writes and lists, health probes).
    Never,
}

/// What the server needs to know about a request's route before reading its body.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Index into the handler's route table.
    pub id: usize,
    pub max_body: usize,
    /// The route's deadline for reading the body and answering; `None` for streams.
    pub timeout: Option<Duration>,
    pub inline: Inline,
}

/// How a request is being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On an event loop: the handler must not block, and answers [`Handled::WouldBlock`]
    /// instead.
    Inline,
    /// On a worker: the handler may block.
    Worker,
}

/// The outcome of [`Handler::handle`].
#[derive(Debug)]
pub enum Handled {
    Done(Response),
    /// Only in [`Mode::Inline`]: the answer needs a call that may block; run it again on a
    /// worker. Nothing was done, counted or logged.
    WouldBlock,
}

/// The API layer, as seen by the server.
pub trait Handler: Send + Sync + 'static {
    /// What the handler keeps per connection between requests (e.g. the client's policy,
    /// resolved once). Lives on the connection's event loop.
    type ConnState: Default + Send;
    /// Finds the route of a request and checks who may call it, or answers it at once (404,
    /// 405, 403, …). Runs on the event loop before the body is read.
    fn prepare(
        &self,
        head: &RequestHead,
        conn: &ConnInfo,
        state: &mut Self::ConnState,
    ) -> Result<Route, Response>;
    /// Answers a request whose body has been read.
    fn handle(&self, route: &Route, request: &Request, conn: &ConnInfo, mode: Mode) -> Handled;
    /// Called for requests refused before reaching `handle` (malformed framing, oversized body,
    /// body timeout). `head` is `None` when not even the head could be read.
    fn refused(&self, status: u16, head: Option<&RequestHead>, conn: &ConnInfo);
    /// The error reply for a request the server refuses by itself (framing, limits).
    fn error(&self, status: u16, message: &str) -> Response;
}

/// Counters of the network layer, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now (every state: handshake, idle, busy, streaming).
    pub open_connections: AtomicUsize,
    /// Of those, connections speaking HTTP/2.
    pub h2_connections: AtomicUsize,
    /// Requests received and not answered yet (inline or on a worker).
    pub in_flight: AtomicUsize,
    /// Worker threads that exist (busy or idle).
    pub workers: AtomicUsize,
    /// Worker threads running a request now.
    pub busy: AtomicUsize,
    /// Requests waiting for a worker.
    pub queued: AtomicUsize,
    pub accepted: AtomicU64,
    /// Connections closed at once because a limit was reached and no connection was idle.
    pub rejected: AtomicU64,
    /// Idle connections closed to make room for a new one at a limit.
    pub evicted: AtomicU64,
    pub handshake_failures: AtomicU64,
    /// TLS handshakes that resumed an earlier session (tickets).
    pub resumed: AtomicU64,
    /// HTTP/2 connections closed for a protocol error or a flood (GOAWAY sent).
    pub h2_errors: AtomicU64,
}

/// Settings of the listening server beyond the config's `server:` limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Event loop threads (default: one per CPU).
    pub loops: usize,
}

impl Settings {
    pub fn new(limits: Limits) -> Settings {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            limits,
            loops: cpus.clamp(1, 16),
        }
    }
}

/// What every loop and worker of one server shares.
pub(crate) struct Shared<H: Handler> {
    pub handler: Arc<H>,
    pub limits: Limits,
    pub tls: RwLock<Arc<rustls::ServerConfig>>,
    pub stats: Arc<Stats>,
    pub pool: pool::Pool,
    pub shutting_down: AtomicBool,
    /// Requests one connection may have on workers at once.
    pub jobs_per_connection: usize,
    pub admission: accept::Admission,
    pub loops: Vec<Arc<inbox::Inbox>>,
    /// When refusals were last logged, and the `rejected` count then.
    refusal_warning: Mutex<Option<(Instant, u64)>>,
}

/// Least time between two warnings about refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

impl<H: Handler> Shared<H> {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Counts a refused connection and logs refusals at most once every
    /// [`REFUSAL_WARNING_EVERY`], with the reason of the latest.
    pub fn refused(&self, why: &str) {
        let rejected = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .refusal_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let since = match *last {
            Some((at, _)) if at.elapsed() < REFUSAL_WARNING_EVERY => return,
            Some((_, count)) => rejected.saturating_sub(count),
            None => rejected,
        };
        *last = Some((Instant::now(), rejected));
        log::warn!("overload: refused {since} connection(s) since the last warning: {why}");
    }
}

/// Accept backlog of the listening socket. When every MinIO node reconnects at once after a
/// restart, more than the standard library's 128 connections can be pending.
const BACKLOG: i32 = 4096;

/// Opens the listening socket. A wildcard address (`0.0.0.0` or `::`, also written `:7373`)
/// listens on IPv4 and IPv6 through one dual-stack socket, as the Go server does; where the
/// machine has no IPv6 it listens on `0.0.0.0`.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.ip().is_unspecified()
        && let Some(listener) = crate::sys::listen_dual_stack(addr.port(), BACKLOG)?
    {
        return Ok(listener);
    }
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([0, 0, 0, 0], addr.port()))
    } else {
        addr
    };
    let listener = TcpListener::bind(addr)?;
    if let Err(e) = crate::sys::set_listen_backlog(&listener, BACKLOG) {
        log::warn!("cannot raise the listen backlog: {e}");
    }
    Ok(listener)
}

/// The listening server.
pub struct Server<H: Handler> {
    listener: TcpListener,
    shared: Arc<Shared<H>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl<H: Handler> Server<H> {
    /// Binds the listen address and starts the event loops (the accept loop is [`Server::run`]).
    pub fn bind(
        addr: SocketAddr,
        settings: Settings,
        tls: Arc<rustls::ServerConfig>,
        handler: Arc<H>,
        stats: Arc<Stats>,
    ) -> io::Result<Arc<Server<H>>> {
        let listener = listen(addr)?;
        let mut limits = settings.limits;
        // Every connection is a file descriptor: make sure the limit allows them all.
        match crate::sys::raise_fd_limit() {
            Ok(n) => {
                let room = usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(128);
                if room < limits.max_connections {
                    log::warn!(
                        "the open-file limit ({n}) allows only {room} connections: server.max_connections lowered from {} (raise LimitNOFILE / ulimit -n)",
                        limits.max_connections
                    );
                    limits.max_connections = room.max(1);
                }
            }
            Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
        }
        let mut inboxes = Vec::new();
        let mut loops = Vec::new();
        for i in 0..settings.loops.max(1) {
            let (lp, inbox) = reactor::Loop::<H>::new(i)?;
            inboxes.push(inbox);
            loops.push(lp);
        }
        let pool = pool::Pool::new(limits.workers, stats.clone());
        let shared = Arc::new(Shared {
            handler,
            jobs_per_connection: (limits.workers / 4).max(1),
            admission: accept::Admission::new(inboxes.len()),
            limits,
            tls: RwLock::new(tls),
            stats,
            pool,
            shutting_down: AtomicBool::new(false),
            loops: inboxes,
            refusal_warning: Mutex::new(None),
        });
        let mut threads = Vec::new();
        for lp in loops {
            let shared = shared.clone();
            let name = format!("kes-loop-{}", lp.id());
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || lp.run(&shared))?,
            );
        }
        Ok(Arc::new(Server {
            listener,
            shared,
            threads: Mutex::new(threads),
        }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The limits in force (after the open-file limit was taken into account).
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Installs a new TLS configuration for connections accepted from now on; open connections
    /// keep theirs.
    pub fn set_tls(&self, tls: Arc<rustls::ServerConfig>) {
        *self.shared.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    /// Accepts connections until [`Server::shutdown`] is called.
    pub fn run(self: &Arc<Self>) {
        accept::run(&self.listener, &self.shared);
    }

    /// Stops accepting and ends every connection gracefully: HTTP/2 connections get a GOAWAY,
    /// idle HTTP/1.1 connections are closed, requests in progress are answered, log streams end.
    /// Returns once no request is in progress or `timeout` has passed (false then).
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.shutting_down.store(true, Ordering::Release);
        // Wake the acceptor with a connection of our own.
        if let Ok(mut addr) = self.listener.local_addr() {
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        for inbox in &self.shared.loops {
            inbox.shutdown();
        }
        let deadline = Instant::now() + timeout;
        let mut clean = true;
        while self.shared.stats.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                clean = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Give the loops a moment to write the last replies and close.
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.shared.stats.open_connections.load(Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for inbox in &self.shared.loops {
            inbox.stop();
        }
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
        clean
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }
}
