//! The network side of the server: the listener, the worker pool, the TLS handshake, and the
//! HTTP/1.1 keep-alive loop that hands each request to a [`Handler`] (the API layer).
//!
//! Threads: one acceptor thread, and one worker thread per open connection up to
//! `limits.max_connections`. Workers are created on demand and kept for reuse (the pool grows to
//! the high-water mark and never beyond the cap). Every socket read and write has a deadline
//! (handshake, header, body, idle), so stalled clients release their worker.
//!
//! # Overload
//! Nothing waits in a queue of ours: a connection the acceptor takes either gets a worker at
//! once or, over `max_connections`, is closed at once, before any TLS (the client sees the
//! connection close during its handshake, a network error, which the KES SDK that MinIO uses
//! retries exactly as it retries a 503: twice, 200-1000 ms apart; protocol reference §3). The
//! only queue is the kernel's listen backlog
//! (128 connections), which the acceptor drains as fast as it can close them.
//!
//! Why not answer 503 with a JSON message instead: the message can only be sent after a full
//! TLS handshake with client-certificate verification, by far the most CPU-expensive step of a
//! connection (the fault suite measures it), and it would have to be spent exactly when the
//! server is short of threads, on a thread a slow client could hold. A refusal costs one
//! `accept` and one `close`. Refusals are counted (`rejected`) and logged as a warning at most
//! every 10 seconds, with the number refused since the last warning.
//!
//! This module never decides what a request means: routes, policies and replies are the API's.

pub mod h2;
pub mod http;
pub mod tls;

use crate::auth::Identity;
use crate::auth::identity::PeerIdentityError;
use crate::config::Limits;
use http::{Body, ChunkedWriter, Conn, Head, ReadError, Response, Transport};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a connection closed after an error reply keeps draining what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// Longest a log stream may wait for its client to take data before the stream is ended.
const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Stack size of worker threads: requests need little stack, and many workers may exist.
const WORKER_STACK: usize = 256 * 1024;

/// Least time between two warnings about refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

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

/// Per-connection facts a handler may use.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub identity: ClientIdentity,
    /// The client's identity resolved against the policies, with the generation of the
    /// configuration it was resolved in: the identity cannot change on a connection, so the
    /// resolution is done once and redone only after a reload.
    pub resolved: std::cell::RefCell<Option<(u64, crate::auth::policy::Resolved)>>,
}

/// What the server needs to know about a request's route before reading its body.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Index into the handler's route table.
    pub id: usize,
    pub max_body: usize,
    /// Deadline for reading the body and writing the reply; `None` for streams.
    pub timeout: Option<Duration>,
}

/// The API layer, as seen by the server.
pub trait Handler: Send + Sync {
    /// Finds the route of a request, or answers it at once (404, 405, …).
    fn prepare(&self, head: &Head, conn: &ConnInfo) -> Result<Route, Response>;
    /// Answers a request whose body has been read.
    fn handle(&self, route: &Route, head: &Head, body: &[u8], conn: &ConnInfo) -> Response;
    /// Called for requests refused before reaching `handle` (malformed framing, oversized body).
    fn refused(&self, _status: u16, _head: Option<&Head>, _conn: &ConnInfo) {}
}

/// Counters of the network layer, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections being served now.
    pub open_connections: AtomicUsize,
    /// Requests being processed now.
    pub busy: AtomicUsize,
    /// Worker threads that exist (busy or idle).
    pub workers: AtomicUsize,
    pub accepted: AtomicU64,
    /// Connections closed at once because `max_connections` was reached.
    pub rejected: AtomicU64,
    pub handshake_failures: AtomicU64,
}

/// The listening server.
pub struct Server {
    listener: TcpListener,
    limits: Limits,
    tls: RwLock<Arc<rustls::ServerConfig>>,
    handler: Arc<dyn Handler>,
    shutting_down: AtomicBool,
    pub stats: Arc<Stats>,
    jobs: Mutex<Option<SyncSender<TcpStream>>>,
    queue: Arc<Mutex<Receiver<TcpStream>>>,
    spawn_lock: Mutex<()>,
    /// When refusals were last logged, and the `rejected` count then.
    refusal_warning: Mutex<Option<(Instant, u64)>>,
}

impl Server {
    /// Binds the listen address.
    pub fn bind(
        addr: SocketAddr,
        limits: Limits,
        tls: Arc<rustls::ServerConfig>,
        handler: Arc<dyn Handler>,
        stats: Arc<Stats>,
    ) -> io::Result<Arc<Server>> {
        let listener = TcpListener::bind(addr)?;
        if let Err(e) = crate::sys::set_listen_backlog(&listener, 4096) {
            log::warn!("cannot raise the listen backlog: {e}");
        }
        let (tx, rx) = sync_channel(limits.max_connections.max(1));
        Ok(Arc::new(Server {
            listener,
            limits,
            tls: RwLock::new(tls),
            handler,
            shutting_down: AtomicBool::new(false),
            stats,
            jobs: Mutex::new(Some(tx)),
            queue: Arc::new(Mutex::new(rx)),
            spawn_lock: Mutex::new(()),
            refusal_warning: Mutex::new(None),
        }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Installs a new TLS configuration for connections accepted from now on.
    pub fn set_tls(&self, tls: Arc<rustls::ServerConfig>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    /// Accepts connections until [`Server::shutdown`] is called.
    pub fn run(self: &Arc<Self>) {
        for stream in self.listener.incoming() {
            if self.shutting_down.load(Ordering::Acquire) {
                break;
            }
            match stream {
                Ok(stream) => self.dispatch(stream),
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, stream: TcpStream) {
        let open = self.stats.open_connections.fetch_add(1, Ordering::AcqRel) + 1;
        if open > self.limits.max_connections {
            self.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
            let rejected = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = stream.shutdown(std::net::Shutdown::Both);
            self.warn_refused(
                rejected,
                &format!(
                    "{} connections are open (server.max_connections)",
                    self.limits.max_connections
                ),
            );
            return;
        }
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // Every queued connection has a worker: workers >= open connections.
        {
            let _guard = self.spawn_lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.stats.workers.load(Ordering::Acquire) < open
                && let Err(e) = self.spawn_worker()
            {
                self.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
                let rejected = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                self.warn_refused(rejected, &format!("cannot start a worker thread: {e}"));
                return;
            }
        }
        let tx = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match tx {
            Some(tx) => {
                if tx.send(stream).is_err() {
                    self.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
                }
            }
            None => {
                self.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Logs refused connections, at most once every [`REFUSAL_WARNING_EVERY`], with the reason
    /// of the latest refusal.
    fn warn_refused(&self, rejected: u64, why: &str) {
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

    fn spawn_worker(self: &Arc<Self>) -> io::Result<()> {
        let server = self.clone();
        let n = self.stats.workers.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name(format!("kes-worker-{n}"))
            .stack_size(WORKER_STACK)
            .spawn(move || {
                loop {
                    let job = {
                        let rx = server.queue.lock().unwrap_or_else(|e| e.into_inner());
                        rx.recv()
                    };
                    let Ok(stream) = job else { break };
                    // A panic while serving one connection must not take the worker (or the server) down.
                    let s = server.clone();
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        s.serve(stream)
                    }));
                    server.stats.open_connections.fetch_sub(1, Ordering::AcqRel);
                }
                server.stats.workers.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.stats.workers.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    /// Stops accepting; returns once no request is in progress or `timeout` has passed.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.shutting_down.store(true, Ordering::Release);
        // Wake the acceptor with a connection of our own.
        if let Ok(mut addr) = self.listener.local_addr() {
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        }
        let deadline = Instant::now() + timeout;
        while self.stats.busy.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Serves one connection: handshake, then requests until close, error or idle timeout.
    fn serve(&self, tcp: TcpStream) {
        let Ok(peer) = tcp.peer_addr() else { return };
        let _ = tcp.set_nodelay(true);
        let tls_config = self.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Ok(conn) = rustls::ServerConnection::new(tls_config) else {
            return;
        };
        let mut stream = rustls::StreamOwned::new(conn, tcp);

        // The handshake, bounded as a whole.
        let deadline = Instant::now() + self.limits.handshake_timeout;
        while stream.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || stream.sock.set_read_timeout(Some(left)).is_err()
                || stream.sock.set_write_timeout(Some(left)).is_err()
            {
                self.stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                self.stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!("TLS handshake with {peer} failed: {e}");
                // Send the alert (if any) before closing.
                let _ = stream.conn.write_tls(&mut stream.sock);
                return;
            }
        }
        let identity = match stream.conn.peer_certificates() {
            None => ClientIdentity::Missing,
            Some(certs) => match Identity::of_peer(certs) {
                Ok(id) => ClientIdentity::Known(id),
                Err(PeerIdentityError::Missing) => ClientIdentity::Missing,
                Err(PeerIdentityError::MoreThanOne) => ClientIdentity::TooMany,
                Err(e) => ClientIdentity::Invalid(e.to_string()),
            },
        };
        let info = ConnInfo {
            peer,
            identity,
            resolved: Default::default(),
        };
        let mut conn = Conn::new(stream);
        // Until a route says otherwise (error replies before routing, for instance).
        conn.set_write_timeout(Duration::from_secs(15));
        self.serve_requests(conn, &info);
    }

    fn serve_requests<T: Transport>(&self, mut conn: Conn<T>, info: &ConnInfo) {
        loop {
            if self.is_shutting_down() {
                return;
            }
            let head = match conn.read_head(self.limits.idle_timeout, self.limits.header_timeout) {
                Ok(head) => head,
                Err(ReadError::Closed) | Err(ReadError::Io(_)) => return,
                Err(ReadError::Bad(status, msg)) => {
                    self.handler.refused(status, None, info);
                    conn.reply_and_close(&error_bytes(status, msg, false), LINGER);
                    return;
                }
            };
            self.stats.busy.fetch_add(1, Ordering::AcqRel);
            let keep_alive = self.serve_one(&mut conn, &head, info);
            self.stats.busy.fetch_sub(1, Ordering::AcqRel);
            if !keep_alive {
                return;
            }
            conn.compact();
        }
    }

    /// Serves one request; returns whether the connection may be reused.
    fn serve_one<T: Transport>(&self, conn: &mut Conn<T>, head: &Head, info: &ConnInfo) -> bool {
        let route = match self.handler.prepare(head, info) {
            Ok(route) => route,
            Err(response) => {
                // The request's body (if any) was not read: only a bodiless request keeps the
                // connection usable.
                if head.has_body() {
                    if let Some(bytes) = serialize(response, false) {
                        conn.reply_and_close(&bytes, LINGER);
                    }
                    return false;
                }
                let keep = head.keep_alive && !self.is_shutting_down();
                let response = keep_alive_header(response, head, keep);
                return write_response(conn, response, keep) && keep;
            }
        };
        let timeout = route.timeout.unwrap_or(Duration::from_secs(15));
        let deadline = Instant::now() + self.limits.body_timeout.min(timeout);
        if head.expect_continue
            && head.has_body()
            && head
                .content_length
                .is_none_or(|n| n <= route.max_body as u64)
            && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return false;
        }
        // Routes without a body may still receive a small one; read it to keep the framing.
        let max = if route.max_body == 0 {
            64 * 1024
        } else {
            route.max_body
        };
        let body = match conn.read_body(head, max, deadline) {
            Ok(body) => body,
            Err(ReadError::Bad(status, msg)) => {
                self.handler.refused(status, Some(head), info);
                conn.reply_and_close(&error_bytes(status, msg, false), LINGER);
                return false;
            }
            Err(_) => return false,
        };
        // Request bodies may hold plaintext (encrypt, import): zeroize them once handled.
        let body = zeroize::Zeroizing::new(body);
        let response = self.handler.handle(&route, head, &body, info);
        let keep = head.keep_alive && !self.is_shutting_down();
        if let Some(t) = route.timeout {
            conn.set_write_timeout(t);
        }
        let response = keep_alive_header(response, head, keep);
        write_response(conn, response, keep) && keep
    }
}

/// The bytes of a non-stream response.
fn serialize(response: Response, keep_alive: bool) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let mut out = zeroize::Zeroizing::new(response.head_bytes(keep_alive));
    match response.body {
        Body::Empty => Some(out),
        Body::Bytes { data, .. } => {
            out.extend_from_slice(&data);
            Some(out)
        }
        Body::Stream { .. } => None,
    }
}

/// An HTTP/1.0 client keeps a connection open only when the reply says so (HTTP/1.1 is
/// persistent by default and needs no header).
fn keep_alive_header(response: Response, head: &Head, keep: bool) -> Response {
    if head.http10 && keep {
        response.with_header("Connection", "keep-alive")
    } else {
        response
    }
}

/// Writes a response; returns false when the connection failed.
fn write_response<T: Transport>(conn: &mut Conn<T>, response: Response, keep_alive: bool) -> bool {
    use zeroize::Zeroize as _;
    let mut out = std::mem::take(&mut conn.out);
    response.write_head(keep_alive, &mut out);
    let ok = match response.body {
        Body::Empty => conn.write_all(&out).is_ok(),
        Body::Bytes { data, .. } => {
            out.extend_from_slice(&data);
            conn.write_all(&out).is_ok()
        }
        Body::Stream { writer, .. } => {
            let ok = write_stream(conn, &out, writer);
            out.clear();
            conn.out = out;
            return ok;
        }
    };
    // Replies may hold plaintext data keys: wipe the buffer before reusing it. A buffer grown
    // by a large reply is given back rather than kept per connection.
    out.as_mut_slice().zeroize();
    out.clear();
    if out.capacity() <= 64 * 1024 {
        conn.out = out;
    }
    ok
}

/// Sends a stream's head, then its events until the client goes away; the connection closes.
fn write_stream<T: Transport>(conn: &mut Conn<T>, head: &[u8], writer: http::StreamWriter) -> bool {
    if conn.write_all(head).is_err() {
        return false;
    }
    // Streams run until the client goes away. A client that stops reading blocks a write only
    // this long: then the stream ends and its worker is free (the events it missed meanwhile
    // were dropped, never held up requests).
    conn.set_write_timeout(STREAM_WRITE_TIMEOUT);
    let mut chunked = ChunkedWriter {
        inner: &mut conn.stream,
    };
    writer(&mut chunked);
    let _ = conn.stream.write_all(b"0\r\n\r\n");
    let _ = conn.stream.flush();
    false
}

/// A complete JSON error response for framing errors, before any route is known.
fn error_bytes(status: u16, message: &str, keep_alive: bool) -> Vec<u8> {
    let body = crate::api::error_body(message);
    let mut out = Response::bytes(status, "application/json", body.clone()).head_bytes(keep_alive);
    out.extend_from_slice(&body);
    out
}
