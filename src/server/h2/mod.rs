//! HTTP/2 (RFC 9113) over TLS: one [`Session`] per connection turns frames into [`Request`]s for
//! the handler and [`Response`]s back into frames. No I/O: the connection ([`super::conn`]) feeds
//! it plaintext and sends what it writes into the output buffer.
//!
//! * [`frame`]: frame decoding and encoding (no state); [`hpack`]: header compression
//!   (RFC 7541).
//! * This module: the connection's state: SETTINGS, streams and their states (§5.1), flow
//!   control in both directions (§5.2, §6.9), header blocks with CONTINUATION (§4.3), request
//!   validation (§8), GOAWAY (graceful on shutdown and idle timeout, with the error on a
//!   protocol violation).
//!
//! Limits and the attacks they answer (each has a test in tests/h2.rs):
//! * at most [`MAX_CONCURRENT_STREAMS`] streams at once (more are refused with REFUSED_STREAM);
//! * a header block (HEADERS + CONTINUATION, compressed) of at most [`MAX_HEADER_BLOCK`] bytes,
//!   completed within `server.header_timeout` (CONTINUATION flood); at most [`MAX_HEADER_LIST`]
//!   bytes of decoded fields per request, answered with 431 beyond (HPACK bomb: decoding costs
//!   time in proportion to the compressed block, never memory in proportion to the expansion);
//! * frames that cost work but carry no request (PING, SETTINGS, PRIORITY, empty DATA or
//!   CONTINUATION, unknown types, and the RST_STREAM frames a client makes us send) draw on a
//!   budget that refills with time and with completed requests; a client that exhausts it gets
//!   GOAWAY(ENHANCE_YOUR_CALM) (PING, SETTINGS and empty-frame floods);
//! * streams reset by the client before their reply draw on a second budget the same way
//!   (rapid reset, CVE-2023-44487); a reset request that already runs on a worker still counts
//!   against the connection's share of workers until it ends, so resets cannot multiply work;
//! * what the client may send is bounded by the windows we grant (1 MiB per stream, 2 MiB per
//!   connection, credit returned only when a stream is done), and the connection stops reading
//!   frames while more than [`super::env::MAX_OUTPUT`] bytes wait to be sent (a client that
//!   sends PINGs but reads nothing cannot make us buffer their answers).
//!
//! Never here: routing, policies, what a request means.

pub mod frame;
pub mod hpack;

use super::Handler;
use super::env::{Env, MAX_OUTPUT};
use super::message::{
    Body, EventSource, Request, RequestHead, Response, decimal, http_date, method, split_target,
};
use crate::config::Limits;
use frame::{ErrorCode, Frame, FrameError, Header, Next, flag, kind, setting};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Streams a client may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// The flow-control window of each stream we receive on: one request body of the largest size
/// (1 MB) with padding fits, so no stream ever waits for a WINDOW_UPDATE from us.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's receive window: bounds the request bodies one connection can make us hold.
pub const CONNECTION_WINDOW: u32 = 2 << 20;
/// Decoded header fields per request (RFC 9113 §6.5.2 size: name + value + 32 per field).
pub const MAX_HEADER_LIST: usize = 16 * 1024;
/// A compressed header block (HEADERS and its CONTINUATION frames).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The HPACK dynamic table we allow the client (the default; we never advertise more).
const HEADER_TABLE_SIZE: usize = 4096;
/// Our SETTINGS_MAX_FRAME_SIZE (the default: we never advertise more).
const MAX_FRAME_SIZE: u32 = frame::DEFAULT_MAX_FRAME_SIZE;
/// Closed stream ids remembered to tell "closed" from "never opened" (§5.1).
const CLOSED_MEMORY: usize = 1024;
/// Budget of frames that carry no request (see the module docs): capacity and refill per second.
const FLOOD_BUDGET: f64 = 1000.0;
const FLOOD_REFILL: f64 = 100.0;
/// Budget of streams reset by the client before their reply.
const RESET_BUDGET: f64 = 500.0;
const RESET_REFILL: f64 = 50.0;
/// How long a stream may hold a reply that the client's flow-control window does not let out.
const STREAM_STALL: Duration = Duration::from_secs(30);

/// A token bucket that refills with time.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Budget {
    fn new(capacity: f64, per_second: f64, now: Instant) -> Budget {
        Budget {
            tokens: capacity,
            capacity,
            per_second,
            at: now,
        }
    }

    /// Takes one token; false when the budget is exhausted.
    fn spend(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.tokens -= 1.0;
        self.tokens >= 0.0
    }

    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's connection preface.
    Preface,
    /// Preface read; the first frame must be SETTINGS (§3.4).
    AwaitSettings,
    Open,
    /// GOAWAY sent (shutdown, idle, eviction) or received: streams in progress finish, no new
    /// ones start; the connection closes when none is left.
    Draining,
    /// A connection error: GOAWAY with its code is out, nothing more is read.
    Failed,
}

/// How a remembered stream was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClosedBy {
    /// We reset it: frames the client sent before it knew are ignored (§5.1, "closed").
    Us,
    /// Finished or reset by the client: more frames on it are an error (STREAM_CLOSED).
    Other,
}

/// A header block being received (HEADERS, then CONTINUATION until END_HEADERS).
struct Block {
    stream_id: u32,
    end_stream: bool,
    fragments: Vec<u8>,
    /// The HEADERS frame itself had a stream error: decode (for HPACK), then reset.
    reset: Option<ErrorCode>,
    deadline: Instant,
}

/// A reply's bytes waiting for flow-control window.
struct Pending {
    data: zeroize::Zeroizing<Vec<u8>>,
    pos: usize,
}

struct Stream {
    /// Until the request is complete: its head, route and body so far.
    head: Option<RequestHead>,
    route: Option<super::Route>,
    body: Vec<u8>,
    content_length: Option<u64>,
    /// DATA bytes received (checked against `content_length`).
    received: u64,
    /// The request was refused before its body (404, 403, …): the reply waits until the
    /// request is complete, which is still checked (trailers, content-length), while its data
    /// is dropped as it arrives.
    refusal: Option<Response>,
    /// The client sent END_STREAM.
    remote_closed: bool,
    /// Connection window credit this stream's DATA took, returned when the stream ends.
    held: u32,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// What we may still send on this stream.
    send_window: i64,
    /// The reply's HEADERS are out.
    responded: bool,
    head_request: bool,
    pending: Option<Pending>,
    /// A log stream's source, while it runs.
    source: Option<Box<dyn EventSource>>,
    /// The source has ended (or the server shuts down): END_STREAM after `pending`.
    source_done: bool,
    /// Until the body must be complete.
    deadline: Option<Instant>,
    /// When output on this stream last progressed (flow-control stalls).
    progress: Instant,
}

/// Request header fields, validated as they are decoded (RFC 9113 §8.2, §8.3).
#[derive(Default)]
struct Fields {
    method: Option<std::borrow::Cow<'static, str>>,
    scheme: bool,
    path: Option<String>,
    authority: bool,
    content_length: Option<u64>,
    regular_seen: bool,
    pseudo_seen: bool,
    malformed: Option<&'static str>,
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8]) {
        if self.malformed.is_some() {
            return;
        }
        if let Err(why) = self.check(name, value) {
            self.malformed = Some(why);
        }
    }

    fn check(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        // §8.2.1: no NUL, CR or LF in a value, and no whitespace at either end.
        if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
            || value.first().is_some_and(|&b| b == b' ' || b == b'\t')
            || value.last().is_some_and(|&b| b == b' ' || b == b'\t')
        {
            return Err("invalid header field value");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            self.pseudo_seen = true;
            // §8.3: pseudo-header fields come first.
            if self.regular_seen {
                return Err("pseudo-header field after a regular field");
            }
            let text = std::str::from_utf8(value).map_err(|_| "invalid pseudo-header value")?;
            let once = |slot: bool| {
                if slot {
                    Err("duplicate pseudo-header field")
                } else {
                    Ok(())
                }
            };
            match pseudo {
                b"method" => {
                    once(self.method.is_some())?;
                    if text.is_empty() {
                        return Err("empty :method");
                    }
                    self.method = Some(method(text));
                }
                b"scheme" => {
                    once(self.scheme)?;
                    self.scheme = true;
                }
                b"path" => {
                    once(self.path.is_some())?;
                    if text.is_empty() {
                        return Err("empty :path");
                    }
                    self.path = Some(text.to_owned());
                }
                b"authority" => {
                    once(self.authority)?;
                    self.authority = true;
                }
                // Response pseudo-headers (:status) and unknown ones are malformed in a request.
                _ => return Err("unknown pseudo-header field"),
            }
            return Ok(());
        }
        self.regular_seen = true;
        // §8.2: field names are lower case tokens.
        if name.is_empty() || !name.iter().all(|&b| is_token_lower(b)) {
            return Err("invalid header field name");
        }
        match name {
            // §8.2.2: connection-specific fields are not allowed.
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err("connection-specific header field"),
            b"te" if value != b"trailers" => return Err("TE other than trailers"),
            b"content-length" => {
                let text = std::str::from_utf8(value).map_err(|_| "invalid content-length")?;
                let n =
                    super::h1::parse_content_length(text).map_err(|_| "invalid content-length")?;
                if self.content_length.is_some_and(|m| m != n) {
                    return Err("conflicting content-length");
                }
                self.content_length = Some(n);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A byte of a lower-case field name (RFC 9110 token characters, upper case excluded).
fn is_token_lower(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-'
        | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A protocol violation that ends the connection.
type ConnError = (ErrorCode, &'static str);

fn conn_err(e: FrameError) -> ConnError {
    (e.code(), e.reason())
}

/// The HTTP/2 side of one connection.
pub(crate) struct Session<H: Handler> {
    phase: Phase,
    decoder: hpack::Decoder,
    streams: HashMap<u32, Stream>,
    /// Highest stream id the client opened.
    last_stream: u32,
    closed: VecDeque<(u32, ClosedBy)>,
    block: Option<Block>,
    /// The client's SETTINGS_MAX_FRAME_SIZE and SETTINGS_INITIAL_WINDOW_SIZE.
    peer_max_frame: u32,
    peer_initial_window: i64,
    /// What we may still send on the connection.
    send_window: i64,
    /// What the client may still send on the connection, and credit not yet returned.
    recv_window: i64,
    unreturned: u32,
    flood: Budget,
    resets: Budget,
    /// Until the first request must have arrived; `None` once one has.
    first_request: Option<Instant>,
    /// Since when no stream has been open (for the idle timeout).
    idle_since: Instant,
    idle_timeout: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    /// Scratch buffers, reused: the header block being received, the reply's header block, a
    /// log stream's events.
    block_buf: Vec<u8>,
    fields_block: Vec<u8>,
    scratch: Vec<u8>,
    _handler: PhantomData<fn() -> H>,
}

impl<H: Handler> Session<H> {
    /// A session whose server preface (SETTINGS and the connection window) is written to `out`.
    pub(crate) fn new(limits: &Limits, first_request: Instant, out: &mut Vec<u8>) -> Session<H> {
        frame::encode_settings(
            out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        frame::encode_window_update(out, 0, CONNECTION_WINDOW - 65_535);
        let now = Instant::now();
        Session {
            phase: Phase::Preface,
            decoder: hpack::Decoder::new(HEADER_TABLE_SIZE),
            streams: HashMap::new(),
            last_stream: 0,
            closed: VecDeque::new(),
            block: None,
            peer_max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            peer_initial_window: 65_535,
            send_window: 65_535,
            recv_window: i64::from(CONNECTION_WINDOW),
            unreturned: 0,
            flood: Budget::new(FLOOD_BUDGET, FLOOD_REFILL, now),
            resets: Budget::new(RESET_BUDGET, RESET_REFILL, now),
            first_request: Some(first_request),
            idle_since: now,
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            block_buf: Vec::new(),
            fields_block: Vec::new(),
            scratch: Vec::new(),
            _handler: PhantomData,
        }
    }

    /// No stream open, no header block in progress: the connection may be closed to make room.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(
            self.phase,
            Phase::Open | Phase::AwaitSettings | Phase::Preface
        ) && self.streams.is_empty()
            && self.block.is_none()
    }

    /// The connection ends by itself (through [`Session::close_write`]).
    pub(crate) fn finished(&self) -> bool {
        false
    }

    /// Connection-level deadlines are enforced by [`Session::tick`] (with a GOAWAY).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        None
    }

    /// `Some(linger)` when our side should close: after a connection error, or when draining
    /// and no stream is left. Lingering lets the client read the GOAWAY before our FIN.
    pub(crate) fn close_write(&self) -> Option<bool> {
        match self.phase {
            Phase::Failed => Some(true),
            Phase::Draining if self.streams.is_empty() => Some(true),
            _ => None,
        }
    }

    /// The streams that send a log stream.
    fn log_streams(&self) -> Vec<u32> {
        self.streams
            .iter()
            .filter(|(_, s)| s.source.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a log stream is being sent (its subscriber may pause longer).
    pub(crate) fn has_streams_out(&self) -> bool {
        self.streams.values().any(|s| s.source.is_some())
    }

    /// Reads frames from `input`; returns how many bytes were used.
    pub(crate) fn on_input(&mut self, env: &mut Env<'_, '_, H>, input: &[u8]) -> usize {
        let mut pos = 0;
        if self.phase == Phase::Preface {
            let n = input.len().min(frame::PREFACE.len());
            if input[..n] != frame::PREFACE[..n] {
                self.fail(
                    env,
                    (ErrorCode::ProtocolError, "invalid connection preface"),
                );
                return input.len();
            }
            if n < frame::PREFACE.len() {
                return 0;
            }
            pos = n;
            self.phase = Phase::AwaitSettings;
        }
        while self.phase != Phase::Failed {
            // A client that does not read what we send gets nothing more answered; a client
            // with many requests waits for its turn after this turn's share.
            if env.should_yield() {
                break;
            }
            match frame::next_frame(&input[pos..], MAX_FRAME_SIZE) {
                Next::NeedMore => break,
                Next::TooLarge(e) => {
                    // A stream error would oblige us to skip the payload as it arrives; §5.4.1
                    // allows ending the connection instead.
                    self.fail(env, (ErrorCode::FrameSizeError, e.reason()));
                }
                Next::Frame(h, payload, n) => {
                    pos += n;
                    if let Err(e) = self.on_frame(env, &h, payload) {
                        self.fail(env, e);
                    }
                }
            }
        }
        if self.phase == Phase::Failed {
            return input.len();
        }
        pos
    }

    /// Ends the connection with a GOAWAY carrying `code`.
    fn fail(&mut self, env: &mut Env<'_, '_, H>, (code, why): ConnError) {
        if self.phase == Phase::Failed {
            return;
        }
        log::debug!(
            "HTTP/2 connection error with {}: {code}: {why}",
            env.info.peer
        );
        env.ctx
            .shared
            .stats
            .h2_errors
            .fetch_add(1, Ordering::Relaxed);
        frame::encode_goaway(env.out, self.last_stream, code, why.as_bytes());
        self.phase = Phase::Failed;
        for (id, _) in self.streams.drain() {
            env.cancel(id);
        }
    }

    /// Spends from the flood budget; a connection error when it is exhausted.
    fn spend(&mut self, now: Instant) -> Result<(), ConnError> {
        if self.flood.spend(now) {
            Ok(())
        } else {
            Err((
                ErrorCode::EnhanceYourCalm,
                "too many frames without requests (flood)",
            ))
        }
    }

    fn on_frame(
        &mut self,
        env: &mut Env<'_, '_, H>,
        h: &Header,
        payload: &[u8],
    ) -> Result<(), ConnError> {
        let now = env.now();
        if self.phase == Phase::AwaitSettings {
            if h.kind != kind::SETTINGS || h.flags & flag::ACK != 0 {
                return Err((
                    ErrorCode::ProtocolError,
                    "the connection preface must be followed by SETTINGS",
                ));
            }
            self.phase = Phase::Open;
        }
        // §6.10: while a header block is open, only its CONTINUATION frames may come.
        if let Some(block) = &self.block
            && (h.kind != kind::CONTINUATION || h.stream_id != block.stream_id)
        {
            return Err((
                ErrorCode::ProtocolError,
                "a header block must be followed by its CONTINUATION frames",
            ));
        }
        let decoded = match frame::decode(h, payload) {
            Ok(f) => f,
            Err(FrameError::Connection(code, why)) => return Err((code, why)),
            Err(e @ FrameError::Stream(id, code, _)) => {
                if h.kind == kind::HEADERS {
                    // The field block still has to be decoded: HPACK state is shared (§4.3).
                    let fragment = frame::headers_fragment(h, payload).map_err(conn_err)?;
                    self.block = Some(Block {
                        stream_id: id,
                        end_stream: h.flags & flag::END_STREAM != 0,
                        fragments: self.take_block_buf(fragment),
                        reset: Some(code),
                        deadline: now + self.header_timeout,
                    });
                    if h.flags & flag::END_HEADERS != 0 {
                        self.end_headers(env)?;
                    }
                    return Ok(());
                }
                if h.kind == kind::DATA {
                    self.take_connection_window(h.length)?;
                    self.return_credit(env, h.length);
                }
                log::debug!("HTTP/2 stream error with {}: {e}", env.info.peer);
                self.reset(env, id, code)?;
                return Ok(());
            }
        };
        match decoded {
            Frame::Settings { ack, params } => {
                if ack {
                    return Ok(());
                }
                self.spend(now)?;
                for (id, value) in params {
                    match id {
                        setting::INITIAL_WINDOW_SIZE => {
                            let delta = i64::from(value) - self.peer_initial_window;
                            self.peer_initial_window = i64::from(value);
                            for stream in self.streams.values_mut() {
                                stream.send_window += delta;
                                if stream.send_window > i64::from(frame::MAX_WINDOW) {
                                    return Err((
                                        ErrorCode::FlowControlError,
                                        "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                                    ));
                                }
                            }
                        }
                        setting::MAX_FRAME_SIZE => self.peer_max_frame = value,
                        // Our encoder never uses the dynamic table; the rest do not concern a
                        // server that does not push.
                        _ => {}
                    }
                }
                frame::encode_settings_ack(env.out);
                self.flush_all(env);
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    self.spend(now)?;
                    frame::encode_ping(env.out, true, data);
                }
            }
            Frame::WindowUpdate {
                stream_id: 0,
                increment,
            } => {
                self.send_window += i64::from(increment);
                if self.send_window > i64::from(frame::MAX_WINDOW) {
                    return Err((
                        ErrorCode::FlowControlError,
                        "WINDOW_UPDATE overflows the connection window",
                    ));
                }
                self.flush_all(env);
            }
            Frame::WindowUpdate {
                stream_id,
                increment,
            } => {
                if stream_id > self.last_stream {
                    return Err((ErrorCode::ProtocolError, "WINDOW_UPDATE on an idle stream"));
                }
                let Some(stream) = self.streams.get_mut(&stream_id) else {
                    // A closed stream: the update crossed our END_STREAM (§6.9).
                    return Ok(());
                };
                stream.send_window += i64::from(increment);
                if stream.send_window > i64::from(frame::MAX_WINDOW) {
                    self.reset(env, stream_id, ErrorCode::FlowControlError)?;
                    return Ok(());
                }
                self.flush_stream(env, stream_id);
            }
            Frame::Priority { .. } => self.spend(now)?,
            Frame::Unknown { .. } => self.spend(now)?,
            Frame::PushPromise { .. } => {
                return Err((
                    ErrorCode::ProtocolError,
                    "a client may not send PUSH_PROMISE",
                ));
            }
            Frame::GoAway { .. } => {
                // The client starts nothing new; what is in progress finishes.
                if self.phase == Phase::Open {
                    self.phase = Phase::Draining;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if stream_id > self.last_stream {
                    return Err((ErrorCode::ProtocolError, "RST_STREAM on an idle stream"));
                }
                if let Some(stream) = self.streams.remove(&stream_id) {
                    let unanswered = !stream.responded;
                    self.stream_gone(env, stream_id, stream, ClosedBy::Other);
                    if unanswered && !self.resets.spend(now) {
                        return Err((
                            ErrorCode::EnhanceYourCalm,
                            "too many streams reset before their reply (rapid reset)",
                        ));
                    }
                }
            }
            Frame::Headers {
                stream_id,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                if stream_id % 2 == 0 {
                    return Err((ErrorCode::ProtocolError, "a client stream id must be odd"));
                }
                if fragment.len() > MAX_HEADER_BLOCK {
                    return Err((ErrorCode::EnhanceYourCalm, "header block too large"));
                }
                if fragment.is_empty() && !end_headers {
                    self.spend(now)?;
                }
                self.block = Some(Block {
                    stream_id,
                    end_stream,
                    fragments: self.take_block_buf(fragment),
                    reset: None,
                    deadline: now + self.header_timeout,
                });
                if end_headers {
                    self.end_headers(env)?;
                }
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                let Some(block) = &mut self.block else {
                    return Err((ErrorCode::ProtocolError, "CONTINUATION without HEADERS"));
                };
                if block.fragments.len() + fragment.len() > MAX_HEADER_BLOCK {
                    return Err((ErrorCode::EnhanceYourCalm, "header block too large"));
                }
                block.fragments.extend_from_slice(fragment);
                if fragment.is_empty() && !end_headers {
                    self.spend(now)?;
                }
                if end_headers {
                    self.end_headers(env)?;
                }
            }
            Frame::Data {
                stream_id,
                end_stream,
                data,
                flow_len,
            } => self.on_data(env, stream_id, end_stream, data, flow_len)?,
        }
        Ok(())
    }

    /// The reused header-block buffer, holding `fragment`.
    fn take_block_buf(&mut self, fragment: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.block_buf);
        buf.clear();
        buf.extend_from_slice(fragment);
        buf
    }

    /// Counts received DATA against the connection window.
    fn take_connection_window(&mut self, n: u32) -> Result<(), ConnError> {
        self.recv_window -= i64::from(n);
        if self.recv_window < 0 {
            return Err((
                ErrorCode::FlowControlError,
                "DATA beyond the connection window",
            ));
        }
        Ok(())
    }

    /// Gives the client back connection window for data we no longer hold, in batches.
    fn return_credit(&mut self, env: &mut Env<'_, '_, H>, n: u32) {
        self.unreturned = self.unreturned.saturating_add(n);
        if self.unreturned >= CONNECTION_WINDOW / 4 {
            frame::encode_window_update(env.out, 0, self.unreturned);
            self.recv_window += i64::from(self.unreturned);
            self.unreturned = 0;
        }
    }

    fn on_data(
        &mut self,
        env: &mut Env<'_, '_, H>,
        id: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
    ) -> Result<(), ConnError> {
        self.take_connection_window(flow_len)?;
        if data.is_empty() && !end_stream {
            self.spend(env.now())?;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            self.return_credit(env, flow_len);
            if id > self.last_stream {
                return Err((ErrorCode::ProtocolError, "DATA on an idle stream"));
            }
            if !self.closed.contains(&(id, ClosedBy::Us)) {
                self.reset(env, id, ErrorCode::StreamClosed)?;
            }
            return Ok(());
        };
        if stream.remote_closed {
            self.return_credit(env, flow_len);
            self.reset(env, id, ErrorCode::StreamClosed)?;
            return Ok(());
        }
        stream.recv_window -= i64::from(flow_len);
        if stream.recv_window < 0 {
            self.return_credit(env, flow_len);
            self.reset(env, id, ErrorCode::FlowControlError)?;
            return Ok(());
        }
        stream.held = stream.held.saturating_add(flow_len);
        stream.received = stream.received.saturating_add(data.len() as u64);
        if end_stream {
            stream.remote_closed = true;
        }
        if stream.refusal.is_some() {
            if stream.remote_closed {
                self.complete_request(env, id);
            }
            return Ok(());
        }
        if stream.responded {
            // Answered early (refused): what the client still sends is dropped.
            if stream.remote_closed {
                self.finish_if_done(env, id);
            }
            return Ok(());
        }
        let max = stream.route.map_or(0, |r| body_limit(&r));
        if data.len() > max.saturating_sub(stream.body.len()) {
            let head = stream.head.take();
            env.handler().refused(413, head.as_ref(), env.info);
            let response = env.handler().error(413, "request body too large");
            self.respond(env, id, response);
            return Ok(());
        }
        stream.body.extend_from_slice(data);
        if stream.remote_closed {
            self.complete_request(env, id);
        }
        Ok(())
    }

    /// A complete header block: a new request, or trailers.
    fn end_headers(&mut self, env: &mut Env<'_, '_, H>) -> Result<(), ConnError> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let mut fields = Fields::default();
        let decoded = self
            .decoder
            .decode(&block.fragments, MAX_HEADER_LIST, |n, v| fields.add(n, v))
            .map_err(|_| {
                (
                    ErrorCode::CompressionError,
                    "header block cannot be decoded",
                )
            })?;
        let id = block.stream_id;
        if let Some(code) = block.reset {
            self.reset(env, id, code)?;
            return Ok(());
        }
        if let Some(stream) = self.streams.get_mut(&id) {
            // A second header block on a stream: trailers, which must end the stream (§8.1).
            if stream.remote_closed {
                self.reset(env, id, ErrorCode::StreamClosed)?;
            } else if !block.end_stream || fields.pseudo_seen || fields.malformed.is_some() {
                self.reset(env, id, ErrorCode::ProtocolError)?;
            } else {
                stream.remote_closed = true;
                if stream.responded {
                    self.finish_if_done(env, id);
                } else {
                    self.complete_request(env, id);
                }
            }
            return Ok(());
        }
        if id <= self.last_stream {
            return match self.closed.iter().find(|(c, _)| *c == id) {
                Some((_, ClosedBy::Us)) => Ok(()),
                Some((_, ClosedBy::Other)) => {
                    Err((ErrorCode::StreamClosed, "HEADERS on a closed stream"))
                }
                None => Err((
                    ErrorCode::ProtocolError,
                    "stream id lower than one already used",
                )),
            };
        }
        self.last_stream = id;
        if self.phase != Phase::Open {
            // After GOAWAY: streams above the last one announced are not processed.
            return Ok(());
        }
        if self.streams.len() >= MAX_CONCURRENT_STREAMS as usize {
            self.reset(env, id, ErrorCode::RefusedStream)?;
            return Ok(());
        }
        if let Some(why) = fields.malformed {
            log::debug!("malformed HTTP/2 request from {}: {why}", env.info.peer);
            self.reset(env, id, ErrorCode::ProtocolError)?;
            return Ok(());
        }
        let (Some(method_name), Some(target), true) =
            (fields.method.take(), &fields.path, fields.scheme)
        else {
            self.reset(env, id, ErrorCode::ProtocolError)?;
            return Ok(());
        };
        self.first_request = None;
        let mut stream = Stream {
            head: None,
            route: None,
            body: Vec::new(),
            content_length: fields.content_length,
            received: 0,
            refusal: None,
            remote_closed: block.end_stream,
            held: 0,
            recv_window: i64::from(STREAM_WINDOW),
            send_window: self.peer_initial_window,
            responded: false,
            head_request: method_name == "HEAD",
            pending: None,
            source: None,
            source_done: false,
            deadline: None,
            progress: env.now(),
        };
        if decoded == hpack::Decoded::TooLarge {
            self.streams.insert(id, stream);
            env.handler().refused(431, None, env.info);
            let response = env.handler().error(431, "request header fields too large");
            self.refuse(env, id, response);
            return Ok(());
        }
        let Some((path, query)) = split_target(target) else {
            self.streams.insert(id, stream);
            env.handler().refused(400, None, env.info);
            let response = env.handler().error(400, "invalid URL path escape");
            self.refuse(env, id, response);
            return Ok(());
        };
        let head = RequestHead {
            method: method_name,
            path,
            query,
        };
        let route = match env.ctx.shared.handler.prepare(&head, env.info, env.state) {
            Ok(route) => route,
            Err(response) => {
                self.streams.insert(id, stream);
                self.refuse(env, id, response);
                return Ok(());
            }
        };
        let max = body_limit(&route);
        if stream.content_length.is_some_and(|n| n > max as u64) {
            self.streams.insert(id, stream);
            env.handler().refused(413, Some(&head), env.info);
            let response = env.handler().error(413, "request body too large");
            self.respond(env, id, response);
            return Ok(());
        }
        let timeout = route
            .timeout
            .map_or(self.body_timeout, |t| t.min(self.body_timeout));
        stream.deadline = Some(env.now() + timeout);
        stream.body = Vec::with_capacity(
            stream
                .content_length
                .map_or(0, |n| usize::try_from(n).unwrap_or(0).min(max)),
        );
        stream.head = Some(head);
        stream.route = Some(route);
        let complete = stream.remote_closed;
        self.streams.insert(id, stream);
        if complete {
            self.complete_request(env, id);
        }
        Ok(())
    }

    /// The request on `id` is complete: run it.
    fn complete_request(&mut self, env: &mut Env<'_, '_, H>, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        // §8.1.1: a content-length that does not match the data is malformed.
        if stream.content_length.is_some_and(|n| n != stream.received) {
            let _ = self.reset(env, id, ErrorCode::ProtocolError);
            return;
        }
        if let Some(response) = stream.refusal.take() {
            self.respond(env, id, response);
            return;
        }
        let (Some(head), Some(route)) = (stream.head.take(), stream.route) else {
            return;
        };
        stream.deadline = None;
        let request = Request {
            head,
            body: zeroize::Zeroizing::new(std::mem::take(&mut stream.body)),
        };
        if let Some(response) = env.run(route, request, id) {
            self.respond(env, id, response);
        }
    }

    /// A reply given before the request's body was read: sent once the request is complete (so
    /// that its framing is still checked), its data dropped meanwhile.
    fn refuse(&mut self, env: &mut Env<'_, '_, H>, id: u32, response: Response) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.head = None;
        stream.route = None;
        stream.refusal = Some(response);
        if stream.remote_closed {
            self.complete_request(env, id);
        } else {
            stream.deadline = Some(env.now() + self.body_timeout);
        }
    }

    /// The reply to stream `id` (from the event loop or a worker). Dropped when the stream was
    /// reset meanwhile.
    pub(crate) fn respond(&mut self, env: &mut Env<'_, '_, H>, id: u32, response: Response) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.responded {
            return;
        }
        stream.responded = true;
        stream.deadline = None;
        stream.progress = env.now();
        let head_request = stream.head_request;
        let no_body = head_request || matches!(response.body, Body::Empty);
        self.fields_block.clear();
        encode_response_head(&response, &mut self.fields_block);
        frame::encode_headers(
            env.out,
            id,
            no_body,
            &self.fields_block,
            self.peer_max_frame,
        );
        if no_body {
            self.finish_if_done(env, id);
            return;
        }
        match response.body {
            Body::Bytes { data, .. } => {
                stream.pending = Some(Pending { data, pos: 0 });
                stream.source_done = true;
                self.flush_stream(env, id);
            }
            Body::Stream { mut source, .. } => {
                source.set_waker(env.waker(id));
                stream.source = Some(source);
                self.pump(env, id);
            }
            Body::Empty => {}
        }
        self.refund_flood();
    }

    fn refund_flood(&mut self) {
        self.flood.refund();
    }

    /// Sends what the stream has pending, as far as the windows allow.
    fn flush_stream(&mut self, env: &mut Env<'_, '_, H>, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let mut done = false;
        if let Some(pending) = &mut stream.pending {
            loop {
                let left = pending.data.len() - pending.pos;
                let allowed = stream
                    .send_window
                    .min(self.send_window)
                    .min(i64::from(self.peer_max_frame));
                if left == 0 || allowed <= 0 {
                    break;
                }
                let n = left.min(usize::try_from(allowed).unwrap_or(usize::MAX));
                let end = pending.pos + n;
                let last = end == pending.data.len() && stream.source_done;
                frame::encode_data(env.out, id, last, &pending.data[pending.pos..end]);
                pending.pos = end;
                stream.send_window -= n as i64;
                self.send_window -= n as i64;
                stream.progress = env.now();
                if last {
                    done = true;
                }
            }
            if pending.pos == pending.data.len() {
                stream.pending = None;
            }
        }
        if stream.pending.is_none() && stream.source_done && !done {
            // Nothing (left) to send but the end: an empty DATA frame carries END_STREAM.
            frame::encode_data(env.out, id, true, &[]);
            done = true;
        }
        if done {
            stream.source = None;
            self.finish_if_done(env, id);
        }
    }

    /// Flushes every stream that has output waiting (after a window grew).
    fn flush_all(&mut self, env: &mut Env<'_, '_, H>) {
        let waiting: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.flush_stream(env, id);
        }
    }

    /// Takes what a log stream has ready.
    pub(crate) fn pump(&mut self, env: &mut Env<'_, '_, H>, id: u32) {
        if env.out.len() >= MAX_OUTPUT {
            return;
        }
        let shutting_down = env.shutting_down();
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.pending.is_some() || stream.source_done {
            return;
        }
        let Some(source) = &mut stream.source else {
            return;
        };
        self.scratch.clear();
        let alive = source.poll(&mut self.scratch) && !shutting_down;
        if !self.scratch.is_empty() {
            stream.pending = Some(Pending {
                data: zeroize::Zeroizing::new(std::mem::take(&mut self.scratch)),
                pos: 0,
            });
        }
        if !alive {
            stream.source_done = true;
        }
        if stream.pending.is_some() || stream.source_done {
            self.flush_stream(env, id);
        }
    }

    /// Removes a stream once both sides are done; a reply that ended before the request did is
    /// followed by RST_STREAM(NO_ERROR), which tells the client to stop sending (§8.1).
    fn finish_if_done(&mut self, env: &mut Env<'_, '_, H>, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let local_done = stream.responded
            && stream.pending.is_none()
            && (stream.source.is_none() || stream.source_done);
        if !local_done {
            return;
        }
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        if stream.remote_closed {
            self.stream_gone(env, id, stream, ClosedBy::Other);
        } else {
            frame::encode_rst_stream(env.out, id, ErrorCode::NoError);
            self.stream_gone(env, id, stream, ClosedBy::Us);
        }
    }

    /// Bookkeeping for a stream that ended: window credit back, its id remembered.
    fn stream_gone(&mut self, env: &mut Env<'_, '_, H>, id: u32, stream: Stream, by: ClosedBy) {
        env.cancel(id);
        self.return_credit(env, stream.held);
        drop(stream);
        if self.closed.len() >= CLOSED_MEMORY {
            self.closed.pop_front();
        }
        self.closed.push_back((id, by));
        if self.streams.is_empty() {
            self.idle_since = env.now();
        }
    }

    /// A stream error: RST_STREAM with `code`. Each costs from the flood budget, so a client
    /// cannot make us send resets without end.
    fn reset(
        &mut self,
        env: &mut Env<'_, '_, H>,
        id: u32,
        code: ErrorCode,
    ) -> Result<(), ConnError> {
        frame::encode_rst_stream(env.out, id, code);
        if let Some(stream) = self.streams.remove(&id) {
            self.stream_gone(env, id, stream, ClosedBy::Us);
        } else if !self.closed.contains(&(id, ClosedBy::Us)) {
            if self.closed.len() >= CLOSED_MEMORY {
                self.closed.pop_front();
            }
            self.closed.push_back((id, ClosedBy::Us));
        }
        self.spend(env.now())
    }

    /// Deadlines: first request, header blocks, request bodies, stalled replies, idle.
    /// Returns false when the connection must close at once.
    pub(crate) fn tick(&mut self, env: &mut Env<'_, '_, H>) -> bool {
        let now = env.now();
        if self.phase == Phase::Failed {
            return true;
        }
        if self.block.as_ref().is_some_and(|b| now >= b.deadline) {
            self.fail(
                env,
                (
                    ErrorCode::ProtocolError,
                    "header block not completed in time",
                ),
            );
            return true;
        }
        if let Some(first) = self.first_request
            && now >= first
            && self.streams.is_empty()
        {
            // Never sent a request: not worth a GOAWAY.
            return false;
        }
        let expired: Vec<(u32, bool)> = self
            .streams
            .iter()
            .filter_map(|(id, s)| {
                if s.deadline.is_some_and(|d| now >= d) {
                    Some((*id, false))
                } else if s.pending.is_some() && now.duration_since(s.progress) > STREAM_STALL {
                    Some((*id, true))
                } else {
                    None
                }
            })
            .collect();
        for (id, _) in expired {
            let _ = self.reset(env, id, ErrorCode::Cancel);
        }
        let shutting_down = env.shutting_down();
        for id in self.log_streams() {
            if shutting_down && let Some(s) = self.streams.get_mut(&id) {
                s.source_done = true;
            }
            self.pump(env, id);
            self.flush_stream(env, id);
        }
        if self.phase == Phase::Open
            && self.streams.is_empty()
            && self.block.is_none()
            && now.duration_since(self.idle_since) >= self.idle_timeout
        {
            self.goaway(env.out);
        }
        true
    }

    /// Graceful end: GOAWAY(NO_ERROR) naming the last stream we will process.
    fn goaway(&mut self, out: &mut Vec<u8>) {
        if matches!(self.phase, Phase::Failed | Phase::Draining) {
            return;
        }
        frame::encode_goaway(out, self.last_stream, ErrorCode::NoError, b"");
        self.phase = Phase::Draining;
    }

    /// Closes an idle connection at once (to make room at a limit).
    pub(crate) fn goaway_now(&mut self, out: &mut Vec<u8>, code: ErrorCode) {
        if self.phase != Phase::Failed {
            frame::encode_goaway(out, self.last_stream, code, b"");
            self.phase = Phase::Failed;
        }
    }

    /// Server shutdown: GOAWAY, log streams end, requests in progress finish.
    pub(crate) fn shutdown(&mut self, env: &mut Env<'_, '_, H>) {
        self.goaway(env.out);
        for id in self.log_streams() {
            if let Some(s) = self.streams.get_mut(&id) {
                s.source_done = true;
            }
            self.flush_stream(env, id);
        }
    }
}

/// The largest body a route takes; routes without one may still get a small one.
fn body_limit(route: &super::Route) -> usize {
    if route.max_body == 0 {
        64 * 1024
    } else {
        route.max_body
    }
}

/// HPACK-encodes a response's header fields: `:status`, content type and length, and the extra
/// headers in lower case (connection-specific ones dropped, §8.2.2).
fn encode_response_head(response: &Response, out: &mut Vec<u8>) {
    hpack::encode_status(response.status, out);
    hpack::encode_field(b"date", &http_date(), out);
    match &response.body {
        Body::Empty => hpack::encode_field(b"content-length", b"0", out),
        Body::Bytes { content_type, data } => {
            hpack::encode_field(b"content-type", content_type.as_bytes(), out);
            let mut digits = [0u8; 20];
            hpack::encode_field(
                b"content-length",
                decimal(data.len() as u64, &mut digits),
                out,
            );
        }
        Body::Stream { content_type, .. } => {
            hpack::encode_field(b"content-type", content_type.as_bytes(), out);
        }
    }
    for (name, value) in &response.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "proxy-connection"
        ) {
            continue;
        }
        hpack::encode_field(lower.as_bytes(), value.as_bytes(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_validated_as_rfc_9113_says() {
        let check = |fields: &[(&str, &str)]| {
            let mut f = Fields::default();
            for (n, v) in fields {
                f.add(n.as_bytes(), v.as_bytes());
            }
            f.malformed
        };
        let base = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/version"),
        ];
        assert_eq!(check(&base), None);
        for bad in [
            vec![(":method", "GET"), ("accept", "*/*"), (":path", "/")],
            vec![(":method", "GET"), (":method", "PUT")],
            vec![(":status", "200")],
            vec![(":foo", "x")],
            vec![(":path", "")],
            vec![("Accept", "x")],
            vec![("connection", "close")],
            vec![("transfer-encoding", "chunked")],
            vec![("te", "gzip")],
            vec![("content-length", "1"), ("content-length", "2")],
            vec![("content-length", "-1")],
            vec![("x", "a\nb")],
            vec![("x", " a")],
        ] {
            assert!(check(&bad).is_some(), "{bad:?}");
        }
        assert_eq!(check(&[("te", "trailers"), ("content-length", "3")]), None);
    }

    #[test]
    fn budgets_refill_with_time_and_refunds() {
        let t0 = Instant::now();
        let mut b = Budget::new(3.0, 1.0, t0);
        assert!(b.spend(t0) && b.spend(t0) && b.spend(t0));
        assert!(!b.spend(t0));
        assert!(b.spend(t0 + Duration::from_secs(2)));
        b.refund();
        b.refund();
        assert!(b.tokens <= 3.0);
    }

    #[test]
    fn response_heads_are_lower_case_without_connection_fields() {
        let r = Response::bytes(405, "application/json", b"{}\n".to_vec())
            .with_header("Accept", "PUT")
            .with_header("Connection", "keep-alive");
        let mut block = Vec::new();
        encode_response_head(&r, &mut block);
        let mut d = hpack::Decoder::new(4096);
        let mut got = Vec::new();
        d.decode(&block, 1 << 16, |n, v| {
            got.push((
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ))
        })
        .unwrap();
        let mut got: Vec<(&str, &str)> =
            got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        // The date changes every second: checked for its form, then left out.
        let (name, date) = got.remove(1);
        assert_eq!(name, "date");
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{date:?}");
        assert_eq!(
            got,
            [
                (":status", "405"),
                ("content-type", "application/json"),
                ("content-length", "3"),
                ("accept", "PUT")
            ]
        );
    }
}
