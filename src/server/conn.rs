//! One client connection, driven by its event loop: the socket, TLS (rustls, non-blocking), the
//! plaintext buffers, deadlines, and the protocol chosen by ALPN ([`H1`] here, or
//! [`super::h2::Session`]).
//!
//! The loop calls [`Connection::drive`] when the socket is ready or a reply came back from a
//! worker; `drive` reads what the socket has (up to a budget, so one busy connection cannot starve
//! the others on its loop), lets the protocol turn bytes into requests and replies into bytes,
//! and writes what it can. Nothing here blocks. The loop calls [`Connection::tick`] a few times a
//! second to enforce deadlines.
//!
//! Memory held per connection is bounded: input is read only while less than [`MAX_INPUT`] is
//! waiting to be parsed (and while the protocol wants it), output is produced only while less than
//! [`MAX_OUTPUT`] waits to be sent. Plaintext buffers are wiped as they are consumed: requests
//! and replies carry keys.

use super::env::{Ctx, Env, Jobs, MAX_OUTPUT};
use super::h1;
use super::h2;
use super::inbox::IdleMark;
use super::message::{Body, EventSource, Request, Response};
use super::{ClientIdentity, ConnInfo, Handler, Protocol, Route};
use crate::auth::Identity;
use crate::auth::identity::PeerIdentityError;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zeroize::Zeroize;

/// Most plaintext waiting to be parsed before the connection stops reading its socket. Above
/// the largest request body (1 MB) plus a head, so that one request always fits.
pub const MAX_INPUT: usize = 1 << 21;
/// Bytes read from one socket per call of `drive`, so a busy connection leaves room for others.
const READ_BUDGET: usize = 256 * 1024;
/// How long a connection stays idle before it gives its buffers back.
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// How long a connection closed after an error reply keeps draining what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How long a reply may wait for the client to take it before the connection is closed.
const WRITE_STALL: Duration = Duration::from_secs(15);
/// The same for connections with a log stream, whose subscribers may pause longer.
const STREAM_WRITE_STALL: Duration = Duration::from_secs(25);

/// The socket or TLS failed: the connection ends at once.
#[derive(Debug)]
pub enum Close {
    Failed,
}

/// The result of driving a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// More could be done right away (the read budget ran out): drive again soon.
    Again,
    Closed,
}

/// The protocol a connection speaks.
enum Proto<H: Handler> {
    Handshake,
    H1(H1),
    H2(Box<h2::Session<H>>),
}

/// The protocol of a connection past its handshake, borrowed with the [`Env`] it works in.
enum Active<'s, H: Handler> {
    H1(&'s mut H1),
    H2(&'s mut h2::Session<H>),
}

pub struct Connection<H: Handler> {
    pub id: u64,
    sock: mio::net::TcpStream,
    tls: rustls::ServerConnection,
    pub peer: SocketAddr,
    /// Tells admission whether (and since when) this connection is idle.
    idle_mark: IdleMark,
    /// Chosen to make room: close as soon as nothing is in progress.
    retiring: bool,
    info: Option<Arc<ConnInfo>>,
    state: H::ConnState,
    proto: Proto<H>,
    jobs: Jobs,
    /// Received plaintext; `in_pos` bytes of it are consumed.
    input: Vec<u8>,
    in_pos: usize,
    /// Plaintext to send.
    out: Vec<u8>,
    /// The socket may have more to read / accepts more (edge-triggered readiness).
    readable: bool,
    writable: bool,
    /// The client closed its side (TLS close_notify or TCP FIN).
    peer_closed: bool,
    /// Our side is closed for writing (close_notify sent); we only drain input until `deadline`.
    write_closed: bool,
    created: Instant,
    /// When the connection last had nothing in progress; `None` while busy.
    idle_since: Option<Instant>,
    /// When the current deadline (handshake, first request, header, body, idle, linger) passes.
    deadline: Option<Instant>,
    /// When output last made progress while some was pending.
    last_write: Instant,
    /// A stream reply is in progress (longer write stall allowed).
    streaming: bool,
    /// The first bytes of the connection were looked at for a plain HTTP request.
    sniffed: bool,
}

/// The answer to a plain HTTP request on the TLS port: the Go server's, word for word.
const PLAIN_HTTP_REPLY: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Whether the first 5 bytes of a connection are the start of an HTTP/1 request rather than a
/// TLS record (which starts with a content type byte of 20-24): the prefixes the Go server
/// recognises.
fn is_plain_http(head: &[u8; 5]) -> bool {
    matches!(head, b"GET /" | b"HEAD " | b"POST " | b"PUT /" | b"OPTIO")
}

impl<H: Handler> Connection<H> {
    pub fn new(
        id: u64,
        sock: mio::net::TcpStream,
        tls: rustls::ServerConnection,
        peer: SocketAddr,
        idle_mark: IdleMark,
        handshake_timeout: Duration,
        now: Instant,
    ) -> Connection<H> {
        Connection {
            id,
            sock,
            tls,
            peer,
            idle_mark,
            retiring: false,
            info: None,
            state: H::ConnState::default(),
            proto: Proto::Handshake,
            jobs: Jobs::default(),
            input: Vec::new(),
            in_pos: 0,
            out: Vec::new(),
            readable: true,
            writable: true,
            peer_closed: false,
            write_closed: false,
            created: now,
            idle_since: Some(now),
            deadline: Some(now + handshake_timeout),
            last_write: now,
            streaming: false,
            sniffed: false,
        }
    }

    /// Answers a plain HTTP request sent to the TLS port as the Go server does (400 with a text
    /// that says why) instead of with a TLS alert that an HTTP client cannot show. The request
    /// is read and dropped first, so that closing does not reset the connection before the
    /// client has read the answer.
    fn refuse_plain_http(&mut self, ctx: &Ctx<'_, H>) {
        use std::io::Write;
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match self.sock.read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let _ = self.sock.write_all(PLAIN_HTTP_REPLY);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        ctx.shared
            .stats
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "{} sent a plain HTTP request to the TLS port: answered 400",
            self.peer
        );
    }

    /// The protocol and the [`Env`] over this connection's other parts; `None` before the
    /// handshake is done.
    fn session<'s, 'c>(
        &'s mut self,
        ctx: &'s Ctx<'c, H>,
    ) -> Option<(Active<'s, H>, Env<'s, 'c, H>)> {
        let info = self.info.as_ref()?;
        let active = match &mut self.proto {
            Proto::Handshake => return None,
            Proto::H1(h) => Active::H1(h),
            Proto::H2(s) => Active::H2(s.as_mut()),
        };
        let env = Env {
            ctx,
            conn_id: self.id,
            info,
            state: &mut self.state,
            out: &mut self.out,
            jobs: &mut self.jobs,
        };
        Some((active, env))
    }

    pub fn socket(&mut self) -> &mut mio::net::TcpStream {
        &mut self.sock
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.proto, Proto::H2(_))
    }

    /// Since when the connection has had nothing in progress (`None`: busy), for eviction.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.pending_output() {
            return None;
        }
        match &self.proto {
            Proto::Handshake => Some(self.created),
            Proto::H1(h) if h.is_idle() && self.in_pos == self.input.len() => self.idle_since,
            Proto::H1(_) => None,
            Proto::H2(s) if s.is_idle() && self.jobs.submitted() == 0 => self.idle_since,
            Proto::H2(_) => None,
        }
    }

    fn pending_output(&self) -> bool {
        !self.out.is_empty() || self.tls.wants_write()
    }

    /// Reads, processes and writes whatever can be done now.
    pub fn drive(&mut self, ctx: &Ctx<'_, H>, readable: bool, writable: bool) -> Status {
        self.readable |= readable;
        self.writable |= writable;
        match self.drive_inner(ctx) {
            Ok(status) => status,
            Err(_) => Status::Closed,
        }
    }

    fn drive_inner(&mut self, ctx: &Ctx<'_, H>) -> Result<Status, Close> {
        let mut budget = READ_BUDGET;
        self.jobs.new_turn();
        loop {
            let mut progress = false;
            if self.readable && self.wants_input() && budget > 0 {
                let (n, more) = self.read(ctx, budget)?;
                budget = budget.saturating_sub(n);
                progress |= more;
            }
            progress |= self.process(ctx)?;
            progress |= self.flush(ctx.now)?;
            if self.finished() {
                return Ok(Status::Closed);
            }
            if self.retiring && self.idle_since().is_some() {
                self.evict(ctx.now);
                return Ok(Status::Closed);
            }
            if !progress || self.jobs.turn_used() {
                break;
            }
        }
        // This turn's share of requests or reads is used, and more may wait: the other
        // connections of the loop go first, then this one again.
        if self.jobs.turn_used() || (self.readable && self.wants_input() && budget == 0) {
            return Ok(Status::Again);
        }
        Ok(Status::Open)
    }

    /// Whether the connection has nothing more to do and can be dropped.
    fn finished(&self) -> bool {
        if self.pending_output() {
            return false;
        }
        if self.write_closed {
            // Lingering: until the client closes or the deadline passes.
            return self.peer_closed;
        }
        match &self.proto {
            Proto::Handshake => self.peer_closed,
            Proto::H1(h) => h.finished(self.peer_closed),
            Proto::H2(s) => s.finished() || (self.peer_closed && self.jobs.submitted() == 0),
        }
    }

    fn wants_input(&self) -> bool {
        if self.peer_closed || self.input.len() - self.in_pos >= MAX_INPUT {
            return false;
        }
        if self.write_closed {
            return true;
        }
        match &self.proto {
            Proto::Handshake => true,
            Proto::H1(h) => h.wants_input(),
            Proto::H2(_) => self.out.len() < MAX_OUTPUT,
        }
    }

    /// Reads from the socket through TLS into `input`. Returns (bytes read, progress).
    fn read(&mut self, ctx: &Ctx<'_, H>, budget: usize) -> Result<(usize, bool), Close> {
        let mut total = 0;
        let mut progress = false;
        if !self.sniffed && self.readable && matches!(self.proto, Proto::Handshake) {
            let mut head = [0u8; 5];
            match self.sock.peek(&mut head) {
                Ok(5) => {
                    self.sniffed = true;
                    if is_plain_http(&head) {
                        self.refuse_plain_http(ctx);
                        return Err(Close::Failed);
                    }
                }
                // Fewer bytes so far (or EOF): TLS decides, as for any other first record.
                Ok(_) => self.sniffed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok((0, false));
                }
                Err(_) => self.sniffed = true,
            }
        }
        while self.readable && total < budget && self.wants_input() {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => {
                    self.peer_closed = true;
                    progress = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    progress = true;
                    let was_handshaking = self.tls.is_handshaking();
                    let io_state = match self.tls.process_new_packets() {
                        Ok(state) => state,
                        Err(e) => {
                            if was_handshaking {
                                ctx.shared
                                    .stats
                                    .handshake_failures
                                    .fetch_add(1, Ordering::Relaxed);
                                log::debug!("TLS handshake with {} failed: {e}", self.peer);
                            } else {
                                log::debug!("TLS error on the connection of {}: {e}", self.peer);
                            }
                            // Send the alert, if any, before closing.
                            let _ = self.tls.write_tls(&mut self.sock);
                            return Err(Close::Failed);
                        }
                    };
                    let available = io_state.plaintext_bytes_to_read();
                    if available > 0 {
                        self.compact_input();
                        let start = self.input.len();
                        self.input.resize(start + available, 0);
                        if self
                            .tls
                            .reader()
                            .read_exact(&mut self.input[start..])
                            .is_err()
                        {
                            return Err(Close::Failed);
                        }
                    }
                    if io_state.peer_has_closed() {
                        self.peer_closed = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::Failed),
            }
        }
        Ok((total, progress))
    }

    /// Drops consumed input (wiping it) so the buffer does not grow without bound.
    fn compact_input(&mut self) {
        if self.in_pos == 0 {
            return;
        }
        self.input[..self.in_pos].zeroize();
        self.input.drain(..self.in_pos);
        self.in_pos = 0;
        if self.input.is_empty() && self.input.capacity() > 64 * 1024 {
            self.input = Vec::new();
        }
    }

    /// Lets the protocol work on buffered input (or start, once the handshake is done).
    fn process(&mut self, ctx: &Ctx<'_, H>) -> Result<bool, Close> {
        if matches!(self.proto, Proto::Handshake) {
            if self.tls.is_handshaking() {
                return Ok(false);
            }
            self.start_protocol(ctx);
        }
        if self.write_closed {
            // Lingering after a final reply: what the client still sends is discarded.
            let n = self.input.len() - self.in_pos;
            self.in_pos = self.input.len();
            self.compact_input();
            return Ok(n > 0);
        }
        let Some(info) = self.info.as_ref() else {
            return Err(Close::Failed);
        };
        let before_in = self.in_pos;
        let before_out = self.out.len();
        let mut env = Env {
            ctx,
            conn_id: self.id,
            info,
            state: &mut self.state,
            out: &mut self.out,
            jobs: &mut self.jobs,
        };
        let input = &self.input[self.in_pos..];
        let consumed = match &mut self.proto {
            Proto::Handshake => 0,
            Proto::H1(h) => h.on_input(&mut env, input, self.peer_closed),
            Proto::H2(s) => s.on_input(&mut env, input),
        };
        self.in_pos += consumed;
        if self.in_pos == self.input.len() {
            self.compact_input();
        }
        if self.in_pos != before_in {
            // Activity: an idle period that ends now starts afresh (a request answered within
            // this call never showed the connection busy).
            self.idle_since = None;
        }
        self.after_protocol(ctx.now);
        Ok(self.in_pos != before_in || self.out.len() != before_out)
    }

    /// Deadlines and the idle mark after the protocol did something.
    fn after_protocol(&mut self, now: Instant) {
        if self.write_closed {
            // Lingering: the linger deadline stands.
            return;
        }
        let (deadline, idle) = match &mut self.proto {
            Proto::Handshake => return,
            Proto::H1(h) => (h.deadline, h.is_idle()),
            Proto::H2(s) => (s.deadline(), s.is_idle()),
        };
        self.deadline = deadline;
        if !idle {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
        // Admission may pick this connection to make room as soon as its protocol is idle, even
        // while its last reply is still being written: the loop closes a connection so picked
        // only once that reply is out (`retire`), and a client that reads its reply and opens a
        // new connection at once finds this one idle already.
        self.idle_mark
            .set(if idle && self.in_pos == self.input.len() {
                self.idle_since
            } else {
                None
            });
        let close_write = match &self.proto {
            Proto::H1(h) => h.close_write(),
            Proto::H2(s) => s.close_write(),
            Proto::Handshake => None,
        };
        if let Some(linger) = close_write
            && !self.write_closed
            && !self.pending_output()
        {
            self.close_write(now, linger);
        }
    }

    /// Ends our sending side (TLS close_notify, then TCP FIN). With `linger`, keeps draining
    /// what the client still sends for a while, so that closing does not reset the connection
    /// before the client has read our last reply.
    fn close_write(&mut self, now: Instant, linger: bool) {
        self.tls.send_close_notify();
        let _ = self.tls.write_tls(&mut self.sock);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        self.write_closed = true;
        if linger {
            self.deadline = Some(now + LINGER);
        } else {
            self.peer_closed = true;
        }
    }

    fn start_protocol(&mut self, ctx: &Ctx<'_, H>) {
        let shared = ctx.shared;
        if self.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            shared.stats.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let identity = match self.tls.peer_certificates() {
            None => ClientIdentity::Missing,
            Some(certs) => match Identity::of_peer(certs) {
                Ok(id) => ClientIdentity::Known(id),
                Err(PeerIdentityError::Missing) => ClientIdentity::Missing,
                Err(PeerIdentityError::MoreThanOne) => ClientIdentity::TooMany,
                Err(e) => ClientIdentity::Invalid(e.to_string()),
            },
        };
        let protocol = if self.tls.alpn_protocol() == Some(b"h2") {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        self.info = Some(Arc::new(ConnInfo {
            peer: self.peer,
            identity,
            protocol,
        }));
        let now = ctx.now;
        let first_request = now + shared.limits.header_timeout;
        self.proto = match protocol {
            Protocol::Http1 => Proto::H1(H1::new(first_request)),
            Protocol::Http2 => {
                shared.stats.h2_connections.fetch_add(1, Ordering::Relaxed);
                Proto::H2(Box::new(h2::Session::new(
                    &shared.limits,
                    first_request,
                    &mut self.out,
                )))
            }
        };
        self.deadline = Some(first_request);
        self.idle_since = Some(now);
    }

    /// Encrypts pending plaintext and writes what the socket takes. Returns whether anything
    /// was written.
    fn flush(&mut self, now: Instant) -> Result<bool, Close> {
        let mut progress = false;
        let mut fed = 0;
        loop {
            if fed < self.out.len() && !self.tls.is_handshaking() {
                let n = self
                    .tls
                    .writer()
                    .write(&self.out[fed..])
                    .map_err(|_| Close::Failed)?;
                fed += n;
            }
            if !self.tls.wants_write() || !self.writable {
                break;
            }
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {
                    progress = true;
                    self.last_write = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::Failed),
            }
        }
        if fed > 0 {
            // Replies may hold plaintext data keys: wipe what TLS has taken.
            self.out[..fed].zeroize();
            self.out.drain(..fed);
            if self.out.is_empty() && self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
        }
        if !self.pending_output() {
            self.last_write = now;
        }
        Ok(progress)
    }

    /// A worker's reply for this connection.
    pub fn complete(&mut self, ctx: &Ctx<'_, H>, stream: u32, response: Response) -> Status {
        let Some((active, mut env)) = self.session(ctx) else {
            return Status::Closed;
        };
        env.job_done(stream);
        match active {
            Active::H1(h) => h.respond(&mut env, response),
            Active::H2(s) => s.respond(&mut env, stream, response),
        }
        self.after_protocol(ctx.now);
        self.drive(ctx, false, false)
    }

    /// A stream body of this connection has new data.
    pub fn stream_ready(&mut self, ctx: &Ctx<'_, H>, stream: u32) -> Status {
        let Some((active, mut env)) = self.session(ctx) else {
            return Status::Closed;
        };
        match active {
            Active::H1(h) => h.pump(&mut env),
            Active::H2(s) => s.pump(&mut env, stream),
        }
        self.after_protocol(ctx.now);
        self.drive(ctx, false, false)
    }

    /// Deadlines and shutdown. Called by the loop a few times a second.
    pub fn tick(&mut self, ctx: &Ctx<'_, H>) -> Status {
        let now = ctx.now;
        // A connection idle for a while gives its buffers back: most keep-alive connections
        // sit idle, and memory then grows with their number only by the TLS state.
        if self
            .idle_since
            .is_some_and(|t| now.duration_since(t) >= IDLE_RELEASE)
        {
            if self.input.is_empty() && self.input.capacity() > 0 {
                self.input = Vec::new();
            }
            if self.out.is_empty() && self.out.capacity() > 0 {
                self.out = Vec::new();
            }
        }
        let stall = if self.streaming {
            STREAM_WRITE_STALL
        } else {
            WRITE_STALL
        };
        if self.pending_output() && now.duration_since(self.last_write) > stall {
            log::debug!(
                "closing the connection of {}: the client took no data for {stall:?}",
                self.peer
            );
            return Status::Closed;
        }
        if let Some((active, mut env)) = self.session(ctx) {
            let (alive, streaming) = match active {
                Active::H1(h) => (h.tick(&mut env), h.is_streaming()),
                Active::H2(s) => (s.tick(&mut env), s.has_streams_out()),
            };
            self.streaming = streaming;
            if !alive {
                return Status::Closed;
            }
            self.after_protocol(now);
        }
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            if matches!(self.proto, Proto::Handshake) {
                ctx.shared
                    .stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                log::debug!("TLS handshake with {} timed out", self.peer);
            }
            return Status::Closed;
        }
        self.drive(ctx, false, false)
    }

    /// Makes room at a limit: an idle connection is closed (HTTP/2 says GOAWAY first).
    pub fn evict(&mut self, now: Instant) {
        if let Proto::H2(s) = &mut self.proto {
            s.goaway_now(&mut self.out, h2::frame::ErrorCode::NoError);
            let _ = self.flush(now);
        }
    }

    /// Server shutdown: finish what is in progress, take nothing new.
    pub fn shutdown(&mut self, ctx: &Ctx<'_, H>) -> Status {
        match self.session(ctx) {
            None => return Status::Closed,
            Some((Active::H1(h), mut env)) => h.shutdown(&mut env),
            Some((Active::H2(s), mut env)) => s.shutdown(&mut env),
        }
        self.after_protocol(ctx.now);
        self.drive(ctx, false, false)
    }

    /// Connection closing: HTTP/2 count, stream sources dropped.
    pub fn closed(&mut self, ctx: &Ctx<'_, H>) {
        if self.is_h2() {
            ctx.shared
                .stats
                .h2_connections
                .fetch_sub(1, Ordering::Relaxed);
        }
        let forgotten = self.jobs.abandon();
        ctx.shared
            .stats
            .in_flight
            .fetch_sub(forgotten, Ordering::AcqRel);
        self.input.zeroize();
        self.out.zeroize();
    }

    /// Chosen to make room for a new connection: closes now if idle, else once the request in
    /// progress is answered.
    pub fn retire(&mut self, ctx: &Ctx<'_, H>) -> Status {
        self.retiring = true;
        self.drive(ctx, false, false)
    }
}

// -------------------------------------------------------------------------------------------
// HTTP/1.1

/// Where an HTTP/1.1 connection stands.
enum H1State {
    /// Waiting for a request head; `started`: some of it has arrived.
    Head { started: bool },
    Body {
        head: h1::Head,
        route: Route,
        reader: h1::BodyReader,
    },
    /// The request runs on a worker; nothing more is read meanwhile (pipelined requests wait).
    Waiting { reply: ReplyTo },
    /// A log stream is being sent.
    Streaming {
        source: Box<dyn EventSource>,
        scratch: Vec<u8>,
    },
    /// The last reply is out: close once it is sent (`linger`: the client may still be sending).
    Closing { linger: bool },
}

/// How to frame the reply to a request.
#[derive(Debug, Clone, Copy)]
struct ReplyTo {
    keep_alive: bool,
    http10: bool,
    head_request: bool,
}

/// An HTTP/1.1 connection after its handshake.
pub struct H1 {
    state: H1State,
    /// When the current stage must be done (first request, header, body, idle).
    deadline: Option<Instant>,
}

impl H1 {
    fn new(first_request: Instant) -> H1 {
        H1 {
            state: H1State::Head { started: false },
            deadline: Some(first_request),
        }
    }

    fn is_idle(&self) -> bool {
        matches!(self.state, H1State::Head { started: false })
    }

    fn is_streaming(&self) -> bool {
        matches!(self.state, H1State::Streaming { .. })
    }

    fn wants_input(&self) -> bool {
        // While a request runs or a stream is sent, reading stops except to notice the client
        // leaving (a stream's subscriber closing its connection), which `read` sees as EOF: a
        // few bytes of a pipelined request may be buffered meanwhile, never more than a head.
        match self.state {
            H1State::Head { .. } | H1State::Body { .. } => true,
            H1State::Streaming { .. } | H1State::Waiting { .. } => true,
            H1State::Closing { linger } => linger,
        }
    }

    fn finished(&self, peer_closed: bool) -> bool {
        match self.state {
            // A head that has not arrived whole by now never will.
            H1State::Head { .. } => peer_closed,
            H1State::Body { .. } | H1State::Streaming { .. } => peer_closed,
            H1State::Waiting { .. } => false,
            H1State::Closing { .. } => false,
        }
    }

    /// `Some(linger)` once the final reply is written and our side should close.
    fn close_write(&self) -> Option<bool> {
        match self.state {
            H1State::Closing { linger } => Some(linger),
            _ => None,
        }
    }

    fn on_input<H: Handler>(
        &mut self,
        env: &mut Env<'_, '_, H>,
        input: &[u8],
        peer_closed: bool,
    ) -> usize {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match &mut self.state {
                H1State::Head { started } => {
                    if env.should_yield() && !rest.is_empty() {
                        return pos;
                    }
                    if rest.is_empty() {
                        if env.shutting_down() {
                            self.state = H1State::Closing { linger: false };
                        }
                        return pos;
                    }
                    if !*started {
                        *started = true;
                        let header_deadline = env.now() + env.limits().header_timeout;
                        self.deadline = Some(
                            self.deadline
                                .map_or(header_deadline, |d| d.min(header_deadline)),
                        );
                    }
                    match h1::parse_head(rest) {
                        Ok(None) => return pos,
                        Err(bad) => {
                            env.handler().refused(bad.status, None, env.info);
                            self.final_error(env, bad, true);
                            return input.len();
                        }
                        Ok(Some((head, n))) => {
                            pos += n;
                            self.on_head(env, head);
                        }
                    }
                }
                H1State::Body {
                    head,
                    route,
                    reader,
                } => match reader.feed(rest) {
                    Err(bad) => {
                        env.handler().refused(bad.status, Some(&head.req), env.info);
                        self.final_error(env, bad, true);
                        return input.len();
                    }
                    Ok(n) => {
                        pos += n;
                        if !reader.is_done() {
                            return pos;
                        }
                        let route = *route;
                        let H1State::Body { head, reader, .. } =
                            std::mem::replace(&mut self.state, H1State::Head { started: false })
                        else {
                            return pos;
                        };
                        let reply = ReplyTo {
                            keep_alive: head.keep_alive && !peer_closed,
                            http10: head.http10,
                            head_request: head.req.is_head(),
                        };
                        let request = Request {
                            head: head.req,
                            body: zeroize::Zeroizing::new(reader.into_body()),
                        };
                        self.state = H1State::Waiting { reply };
                        self.deadline = None;
                        if let Some(response) = env.run(route, request, 0) {
                            self.respond(env, response);
                        }
                    }
                },
                H1State::Waiting { .. } | H1State::Streaming { .. } => {
                    // Pipelined bytes wait for the reply; a subscriber sends nothing we use.
                    if matches!(self.state, H1State::Streaming { .. }) {
                        return input.len();
                    }
                    return pos;
                }
                H1State::Closing { .. } => return input.len(),
            }
        }
    }

    fn on_head<H: Handler>(&mut self, env: &mut Env<'_, '_, H>, head: h1::Head) {
        let route = match env
            .ctx
            .shared
            .handler
            .prepare(&head.req, env.info, env.state)
        {
            Ok(route) => route,
            Err(response) => {
                // The request's body (if any) was not read: only a bodiless request keeps the
                // connection usable.
                let reply = ReplyTo {
                    keep_alive: head.keep_alive && !head.has_body(),
                    http10: head.http10,
                    head_request: head.req.is_head(),
                };
                let linger = head.has_body();
                self.write_reply(env, reply, response, linger);
                return;
            }
        };
        // Routes without a body may still receive a small one; read it to keep the framing.
        let max = if route.max_body == 0 {
            64 * 1024
        } else {
            route.max_body
        };
        match h1::BodyReader::new(&head, max) {
            Err(bad) => {
                env.handler().refused(bad.status, Some(&head.req), env.info);
                self.final_error(env, bad, true);
            }
            Ok(reader) => {
                if head.expect_continue && head.has_body() {
                    env.out.extend_from_slice(h1::CONTINUE);
                }
                let timeout = route.timeout.map_or(env.limits().body_timeout, |t| {
                    t.min(env.limits().body_timeout)
                });
                self.deadline = Some(env.now() + timeout);
                self.state = H1State::Body {
                    head,
                    route,
                    reader,
                };
            }
        }
    }

    /// Answers a malformed request and closes.
    fn final_error<H: Handler>(&mut self, env: &mut Env<'_, '_, H>, bad: h1::Bad, linger: bool) {
        let response = env.handler().error(bad.status, bad.message);
        let reply = ReplyTo {
            keep_alive: false,
            http10: false,
            head_request: false,
        };
        self.write_reply(env, reply, response, linger);
    }

    /// The reply to the request in progress (from the event loop or a worker).
    fn respond<H: Handler>(&mut self, env: &mut Env<'_, '_, H>, response: Response) {
        let H1State::Waiting { reply } = self.state else {
            return;
        };
        self.write_reply(env, reply, response, false);
    }

    fn write_reply<H: Handler>(
        &mut self,
        env: &mut Env<'_, '_, H>,
        reply: ReplyTo,
        response: Response,
        linger: bool,
    ) {
        let keep = reply.keep_alive && !env.shutting_down();
        if matches!(response.body, Body::Stream { .. }) && !reply.head_request {
            h1::write_head(&response, false, reply.http10, env.out);
            if let Body::Stream { mut source, .. } = response.body {
                source.set_waker(env.waker(0));
                self.state = H1State::Streaming {
                    source,
                    scratch: Vec::new(),
                };
                self.deadline = None;
                self.pump(env);
            }
            return;
        }
        h1::write_response(&response, keep, reply.http10, reply.head_request, env.out);
        drop(response);
        if keep {
            self.state = H1State::Head { started: false };
            self.deadline = Some(env.now() + env.limits().idle_timeout);
        } else {
            self.state = H1State::Closing { linger };
            self.deadline = None;
        }
    }

    /// Sends what a stream has ready (unless the client is behind with what was sent).
    fn pump<H: Handler>(&mut self, env: &mut Env<'_, '_, H>) {
        let H1State::Streaming { source, scratch } = &mut self.state else {
            return;
        };
        if env.output_len() >= MAX_OUTPUT {
            return;
        }
        scratch.clear();
        let alive = source.poll(scratch) && !env.shutting_down();
        h1::write_chunk(scratch, env.out);
        scratch.clear();
        if !alive {
            env.out.extend_from_slice(h1::LAST_CHUNK);
            self.state = H1State::Closing { linger: false };
        }
    }

    fn tick<H: Handler>(&mut self, env: &mut Env<'_, '_, H>) -> bool {
        if matches!(self.state, H1State::Streaming { .. }) {
            // Catches up a stream that paused for output room.
            self.pump(env);
        }
        true
    }

    fn shutdown<H: Handler>(&mut self, env: &mut Env<'_, '_, H>) {
        match self.state {
            H1State::Head { .. } | H1State::Body { .. } => {
                self.state = H1State::Closing { linger: false };
            }
            H1State::Streaming { .. } => {
                env.out.extend_from_slice(h1::LAST_CHUNK);
                self.state = H1State::Closing { linger: false };
            }
            // The reply in progress says `Connection: close`.
            H1State::Waiting { .. } | H1State::Closing { .. } => {}
        }
    }
}
