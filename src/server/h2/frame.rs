//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte frame header, the rules of each frame type that
//! can be checked on one frame alone, encoders for the frames a server sends, and a splitter that
//! finds the next complete frame in a byte buffer.
//!
//! Every check answers with the error the RFC asks for, as a [`FrameError`]: a connection error
//! (GOAWAY, then close) or a stream error (RST_STREAM, the connection goes on), with the exact
//! code. h2spec checks these codes.
//!
//! What this module never does:
//! * I/O. It reads from slices and appends to a `Vec<u8>`; the connection owns the socket.
//! * Keep state. It does not know which streams exist, what the peer's settings are, or what the
//!   flow-control windows allow. Stream states (§5.1), stream identifier order (§5.1.1), flow
//!   control (§5.2, §6.9), SETTINGS acknowledgement (§6.5.3), the rule that a field block's
//!   CONTINUATION frames follow it without anything in between (§6.10) and HPACK all belong to
//!   the connection.
//! * Panic or allocate on peer input. Decoded frames borrow from the input.

use std::fmt;

/// What a client sends before its first frame (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of the frame header (§4.1).
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a peer says otherwise, and the least it may say (§6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE there is: 2^24-1 (§6.5.2).
pub const MAX_ALLOWED_FRAME_SIZE: u32 = 16_777_215;
/// The largest flow-control window and window increment: 2^31-1 (§6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// The 31 bits of a stream identifier; the bit above them is reserved and ignored (§4.1).
const STREAM_ID_MASK: u32 = (1 << 31) - 1;

/// Frame types (§6, §11.2 of RFC 7540's registry).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags. Their meaning depends on the frame type; flags a type does not define are
/// ignored on receipt (§4.1).
pub mod flag {
    /// DATA, HEADERS (§6.1, §6.2).
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING (§6.5, §6.7).
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION (§6.2, §6.6, §6.10).
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE (§6.1, §6.2, §6.6).
    pub const PADDED: u8 = 0x8;
    /// HEADERS (§6.2).
    pub const PRIORITY: u8 = 0x20;
}

/// Setting identifiers (§6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes of RST_STREAM and GOAWAY (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoError,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    /// A code without a name here; unknown codes must not trigger anything special (§7).
    /// [`ErrorCode::from_u32`] gives this only for codes above 0xd.
    Other(u32),
}

impl ErrorCode {
    pub fn from_u32(code: u32) -> Self {
        match code {
            0x0 => Self::NoError,
            0x1 => Self::ProtocolError,
            0x2 => Self::InternalError,
            0x3 => Self::FlowControlError,
            0x4 => Self::SettingsTimeout,
            0x5 => Self::StreamClosed,
            0x6 => Self::FrameSizeError,
            0x7 => Self::RefusedStream,
            0x8 => Self::Cancel,
            0x9 => Self::CompressionError,
            0xa => Self::ConnectError,
            0xb => Self::EnhanceYourCalm,
            0xc => Self::InadequateSecurity,
            0xd => Self::Http11Required,
            other => Self::Other(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            Self::NoError => 0x0,
            Self::ProtocolError => 0x1,
            Self::InternalError => 0x2,
            Self::FlowControlError => 0x3,
            Self::SettingsTimeout => 0x4,
            Self::StreamClosed => 0x5,
            Self::FrameSizeError => 0x6,
            Self::RefusedStream => 0x7,
            Self::Cancel => 0x8,
            Self::CompressionError => 0x9,
            Self::ConnectError => 0xa,
            Self::EnhanceYourCalm => 0xb,
            Self::InadequateSecurity => 0xc,
            Self::Http11Required => 0xd,
            Self::Other(code) => code,
        }
    }

    /// The name §7 gives the code, for logs.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NoError => "NO_ERROR",
            Self::ProtocolError => "PROTOCOL_ERROR",
            Self::InternalError => "INTERNAL_ERROR",
            Self::FlowControlError => "FLOW_CONTROL_ERROR",
            Self::SettingsTimeout => "SETTINGS_TIMEOUT",
            Self::StreamClosed => "STREAM_CLOSED",
            Self::FrameSizeError => "FRAME_SIZE_ERROR",
            Self::RefusedStream => "REFUSED_STREAM",
            Self::Cancel => "CANCEL",
            Self::CompressionError => "COMPRESSION_ERROR",
            Self::ConnectError => "CONNECT_ERROR",
            Self::EnhanceYourCalm => "ENHANCE_YOUR_CALM",
            Self::InadequateSecurity => "INADEQUATE_SECURITY",
            Self::Http11Required => "HTTP_1_1_REQUIRED",
            Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "error code {:#x}", self.as_u32()),
        }
    }
}

/// A frame header (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the payload, without these 9 bytes.
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    /// With the reserved bit cleared.
    pub stream_id: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *b;
        Header {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            kind,
            flags,
            // §4.1: the reserved bit "MUST be ignored when receiving".
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & STREAM_ID_MASK,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A protocol violation found in one frame: which error it is for the caller to send (RFC 9113
/// §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// GOAWAY with this code, then close.
    Connection(ErrorCode, &'static str),
    /// RST_STREAM on this stream with this code; the connection goes on.
    Stream(u32, ErrorCode, &'static str),
}

impl FrameError {
    pub fn code(&self) -> ErrorCode {
        match *self {
            Self::Connection(code, _) | Self::Stream(_, code, _) => code,
        }
    }

    /// What was wrong, in a few words; no peer data in it.
    pub fn reason(&self) -> &'static str {
        match *self {
            Self::Connection(_, reason) | Self::Stream(_, _, reason) => reason,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(code, reason) => write!(f, "connection error {code}: {reason}"),
            Self::Stream(id, code, reason) => write!(f, "stream {id} error {code}: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn connection(code: ErrorCode, reason: &'static str) -> FrameError {
    FrameError::Connection(code, reason)
}

/// Checks a frame header's length against our SETTINGS_MAX_FRAME_SIZE before the payload is read.
///
/// §4.2: FRAME_SIZE_ERROR; a connection error for a frame that "could alter the state of the
/// entire connection": HEADERS, PUSH_PROMISE, CONTINUATION, SETTINGS and any frame on stream 0.
/// Also a connection error here for:
/// * RST_STREAM and WINDOW_UPDATE, whose payload is 4 bytes and for which any other length is a
///   connection error (§6.4, §6.9), and PING and GOAWAY, which on a stream other than 0 are a
///   connection error (§6.7, §6.8): a stream error would contradict what [`decode`] says;
/// * frames of unknown types, whose effect on the connection nobody here knows (they could alter
///   its state), and which may name a stream that does not exist, where RST_STREAM must not go
///   (§6.4: not for an idle stream).
///
/// That leaves a stream error for DATA and PRIORITY on a stream other than 0. The connection
/// then goes on, so the caller must skip the frame's payload as it arrives and, for DATA, count
/// its length against the connection flow-control window (§6.9); §5.4.1 also allows it to end
/// the connection instead.
pub fn check_length(h: &Header, max_frame_size: u32) -> Result<(), FrameError> {
    if h.length <= max_frame_size {
        return Ok(());
    }
    let reason = "frame longer than SETTINGS_MAX_FRAME_SIZE";
    match h.kind {
        kind::DATA | kind::PRIORITY if h.stream_id != 0 => Err(FrameError::Stream(
            h.stream_id,
            ErrorCode::FrameSizeError,
            reason,
        )),
        _ => Err(connection(ErrorCode::FrameSizeError, reason)),
    }
}

/// The priority fields of HEADERS and PRIORITY (§6.2, §6.3). Priority signalling is deprecated
/// (§5.3.2); these are decoded only to check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub dependency: u32,
    /// As sent: the weight is this plus one.
    pub weight: u8,
}

impl Priority {
    fn parse(b: &[u8; 5]) -> Priority {
        let [d0, d1, d2, d3, weight] = *b;
        let dependency = u32::from_be_bytes([d0, d1, d2, d3]);
        Priority {
            exclusive: dependency & !STREAM_ID_MASK != 0,
            dependency: dependency & STREAM_ID_MASK,
            weight,
        }
    }
}

/// The parameters of a SETTINGS frame (§6.5.1), in the order sent. Their values are valid
/// (§6.5.2). Identifiers this module does not know are included: the caller ignores them, as
/// §6.5.2 requires.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Settings<'a> {
    /// A multiple of 6 bytes.
    bytes: &'a [u8],
}

impl<'a> Settings<'a> {
    /// `(identifier, value)` pairs in the order sent; when an identifier repeats, the last value
    /// is the one that holds (§6.5).
    pub fn iter(&self) -> SettingsIter<'a> {
        SettingsIter(self.bytes.chunks_exact(6))
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / 6
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The value that holds for `id` after this frame, if the frame sets it.
    pub fn get(&self, id: u16) -> Option<u32> {
        self.iter().filter(|&(i, _)| i == id).map(|(_, v)| v).last()
    }
}

impl fmt::Debug for Settings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Settings<'a> {
    type Item = (u16, u32);
    type IntoIter = SettingsIter<'a>;
    fn into_iter(self) -> SettingsIter<'a> {
        self.iter()
    }
}

/// See [`Settings::iter`].
#[derive(Debug, Clone)]
pub struct SettingsIter<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for SettingsIter<'_> {
    type Item = (u16, u32);
    fn next(&mut self) -> Option<(u16, u32)> {
        let &[i0, i1, v0, v1, v2, v3] = <&[u8; 6]>::try_from(self.0.next()?).ok()?;
        Some((
            u16::from_be_bytes([i0, i1]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for SettingsIter<'_> {}

/// One decoded frame. Slices borrow from the payload given to [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream_id: u32,
        end_stream: bool,
        /// Without Pad Length and padding.
        data: &'a [u8],
        /// The whole payload length including padding: what flow control counts (§6.1).
        flow_len: u32,
    },
    Headers {
        stream_id: u32,
        end_stream: bool,
        end_headers: bool,
        /// Never names `stream_id` itself.
        priority: Option<Priority>,
        fragment: &'a [u8],
    },
    Priority {
        stream_id: u32,
        /// Never names `stream_id` itself.
        priority: Priority,
    },
    RstStream {
        stream_id: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// Empty when `ack`.
        params: Settings<'a>,
    },
    /// Never valid from a client (§8.4); decoded so the caller can refuse it.
    PushPromise {
        stream_id: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        /// 0 for the connection's window.
        stream_id: u32,
        /// 1 to [`MAX_WINDOW`].
        increment: u32,
    },
    Continuation {
        stream_id: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// Unknown frame types are ignored (RFC 9113 §4.1, §5.5).
    Unknown {
        kind: u8,
        stream_id: u32,
    },
}

/// Decodes one frame whose header and complete payload (`h.length` bytes) are given.
///
/// It does not check the length against SETTINGS_MAX_FRAME_SIZE: that is [`check_length`]'s
/// job, before the payload is read ([`next_frame`] does both). Flags a type does not define are
/// ignored (§4.1). A payload whose length is not `h.length` is a mistake of the caller's, answered
/// with a connection error INTERNAL_ERROR.
///
/// A stream error ends one stream, but the frame may still count for the connection:
/// * DATA (padded without a Pad Length byte): `h.length` still counts against the connection
///   flow-control window (§6.9: "This is necessary even if the frame is in error").
/// * HEADERS (its priority names its own stream): the field block must still be decompressed to
///   keep HPACK in step (§4.3), and CONTINUATION frames may follow; [`headers_fragment`] gives it.
///
/// The connection's stream-state rules come on top: DATA, RST_STREAM or WINDOW_UPDATE on an idle
/// stream is a connection PROTOCOL_ERROR (§5.1) whatever the frame's own error, and RST_STREAM
/// must not be sent for an idle stream (§6.4), which a PRIORITY stream error can name.
pub fn decode<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if usize::try_from(h.length).ok() != Some(payload.len()) {
        return Err(connection(
            ErrorCode::InternalError,
            "payload length differs from the frame header",
        ));
    }
    match h.kind {
        kind::DATA => data(h, payload),
        kind::HEADERS => headers(h, payload),
        kind::PRIORITY => priority(h, payload),
        kind::RST_STREAM => rst_stream(h, payload),
        kind::SETTINGS => settings(h, payload),
        kind::PUSH_PROMISE => push_promise(h, payload),
        kind::PING => ping(h, payload),
        kind::GOAWAY => goaway(h, payload),
        kind::WINDOW_UPDATE => window_update(h, payload),
        kind::CONTINUATION => continuation(h, payload),
        // §4.1: "Implementations MUST ignore and discard frames of unknown types."
        kind => Ok(Frame::Unknown {
            kind,
            stream_id: h.stream_id,
        }),
    }
}

/// Why a padded payload could not be unpadded.
enum Unpad {
    /// No room for Pad Length and the fixed fields after it (§4.2: FRAME_SIZE_ERROR).
    TooShort,
    /// The padding is longer than what remains after them.
    PaddingTooLong,
}

/// The payload of a DATA, HEADERS or PUSH_PROMISE frame without Pad Length and padding when the
/// PADDED flag is set, checked to hold at least the `fixed` bytes of fields that come first.
fn unpad<'a>(h: &Header, payload: &'a [u8], fixed: usize) -> Result<&'a [u8], Unpad> {
    let (pad, rest) = if h.has(flag::PADDED) {
        let (&pad, rest) = payload.split_first().ok_or(Unpad::TooShort)?;
        (usize::from(pad), rest)
    } else {
        (0, payload)
    };
    let room = rest.len().checked_sub(fixed).ok_or(Unpad::TooShort)?;
    // §6.1, §6.2, §6.6: "If the length of the padding is the length of the frame payload or
    // greater, ... connection error of type PROTOCOL_ERROR". With fixed fields (priority, a
    // promised stream), padding that reaches into them is too long as well (RFC 7540 §6.2:
    // "Padding that exceeds the size remaining for the header block fragment").
    let end = room.checked_sub(pad).ok_or(Unpad::PaddingTooLong)?;
    rest.get(..fixed + end).ok_or(Unpad::TooShort)
}

fn data<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    // §6.1: "If a DATA frame is received whose Stream Identifier field is 0x00, the recipient
    // MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(ErrorCode::ProtocolError, "DATA on stream 0"));
    }
    let data = match unpad(h, payload, 0) {
        Ok(data) => data,
        // §4.2: too small for Pad Length. DATA is not among the frames §4.2 makes connection
        // errors, so a stream error.
        Err(Unpad::TooShort) => {
            return Err(FrameError::Stream(
                h.stream_id,
                ErrorCode::FrameSizeError,
                "padded DATA without Pad Length",
            ));
        }
        Err(Unpad::PaddingTooLong) => {
            return Err(connection(
                ErrorCode::ProtocolError,
                "DATA padding as long as the payload",
            ));
        }
    };
    Ok(Frame::Data {
        stream_id: h.stream_id,
        end_stream: h.has(flag::END_STREAM),
        data,
        // §6.1: "The entire DATA frame payload is included in flow control, including the Pad
        // Length and Padding fields if present."
        flow_len: h.length,
    })
}

/// HEADERS without the stream-level check: the priority (when present) and the fragment.
fn headers_parts<'a>(
    h: &Header,
    payload: &'a [u8],
) -> Result<(Option<Priority>, &'a [u8]), FrameError> {
    // §6.2: "If a HEADERS frame is received whose Stream Identifier field is 0x00, the recipient
    // MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(ErrorCode::ProtocolError, "HEADERS on stream 0"));
    }
    let fixed = if h.has(flag::PRIORITY) { 5 } else { 0 };
    let body = match unpad(h, payload, fixed) {
        Ok(body) => body,
        // §4.2: too small for Pad Length or the priority fields; HEADERS carries a field block,
        // so a connection error.
        Err(Unpad::TooShort) => {
            return Err(connection(
                ErrorCode::FrameSizeError,
                "HEADERS too short for its padding or priority fields",
            ));
        }
        // §6.2: padding "the length of the frame payload or greater": PROTOCOL_ERROR.
        Err(Unpad::PaddingTooLong) => {
            return Err(connection(
                ErrorCode::ProtocolError,
                "HEADERS padding longer than the rest of the payload",
            ));
        }
    };
    match body.split_first_chunk::<5>() {
        Some((fields, fragment)) if h.has(flag::PRIORITY) => {
            Ok((Some(Priority::parse(fields)), fragment))
        }
        _ => Ok((None, body)),
    }
}

fn headers<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let (priority, fragment) = headers_parts(h, payload)?;
    if let Some(p) = priority {
        check_dependency(h.stream_id, &p)?;
    }
    Ok(Frame::Headers {
        stream_id: h.stream_id,
        end_stream: h.has(flag::END_STREAM),
        end_headers: h.has(flag::END_HEADERS),
        priority,
        fragment,
    })
}

/// The field block fragment of a HEADERS frame, for when [`decode`] answered it with a stream
/// error: the fragment must still be decompressed (§4.3: HPACK state is shared by the whole
/// connection), and CONTINUATION frames follow unless `h.flags` has END_HEADERS.
///
/// Gives only the connection errors [`decode`] gives for HEADERS; `Err` for any other frame type.
pub fn headers_fragment<'a>(h: &Header, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if h.kind != kind::HEADERS || usize::try_from(h.length).ok() != Some(payload.len()) {
        return Err(connection(ErrorCode::InternalError, "not a HEADERS frame"));
    }
    headers_parts(h, payload).map(|(_, fragment)| fragment)
}

/// RFC 7540 §5.3.1: "A stream cannot depend on itself. An endpoint MUST treat this as a stream
/// error ... PROTOCOL_ERROR." RFC 9113 deprecates priorities (§5.3.2) but keeps the fields, and
/// h2spec (5.3.1) still checks this rule for HEADERS and PRIORITY.
fn check_dependency(stream_id: u32, p: &Priority) -> Result<(), FrameError> {
    if p.dependency == stream_id {
        return Err(FrameError::Stream(
            stream_id,
            ErrorCode::ProtocolError,
            "stream depends on itself",
        ));
    }
    Ok(())
}

fn priority<'a>(h: &Header, payload: &[u8]) -> Result<Frame<'a>, FrameError> {
    // §6.3: "If a PRIORITY frame is received with a stream identifier of 0x00, the recipient
    // MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(ErrorCode::ProtocolError, "PRIORITY on stream 0"));
    }
    // §6.3: "A PRIORITY frame with a length other than 5 octets MUST be treated as a stream
    // error ... FRAME_SIZE_ERROR."
    let Ok(fields) = <&[u8; 5]>::try_from(payload) else {
        return Err(FrameError::Stream(
            h.stream_id,
            ErrorCode::FrameSizeError,
            "PRIORITY payload not 5 bytes",
        ));
    };
    let priority = Priority::parse(fields);
    check_dependency(h.stream_id, &priority)?;
    Ok(Frame::Priority {
        stream_id: h.stream_id,
        priority,
    })
}

fn rst_stream<'a>(h: &Header, payload: &[u8]) -> Result<Frame<'a>, FrameError> {
    // §6.4: "If a RST_STREAM frame is received with a stream identifier of 0x00, the recipient
    // MUST treat this as a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "RST_STREAM on stream 0",
        ));
    }
    // §6.4: "A RST_STREAM frame with a length other than 4 octets MUST be treated as a
    // connection error ... FRAME_SIZE_ERROR."
    let Ok(&code) = <&[u8; 4]>::try_from(payload) else {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "RST_STREAM payload not 4 bytes",
        ));
    };
    Ok(Frame::RstStream {
        stream_id: h.stream_id,
        code: ErrorCode::from_u32(u32::from_be_bytes(code)),
    })
}

fn settings<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    // §6.5: "If an endpoint receives a SETTINGS frame whose Stream Identifier field is anything
    // other than 0x00, the endpoint MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id != 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "SETTINGS on a stream other than 0",
        ));
    }
    let ack = h.has(flag::ACK);
    // §6.5: "Receipt of a SETTINGS frame with the ACK flag set and a length field value other
    // than 0 MUST be treated as a connection error ... FRAME_SIZE_ERROR."
    if ack && !payload.is_empty() {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "SETTINGS acknowledgement with a payload",
        ));
    }
    // §6.5: "A SETTINGS frame with a length other than a multiple of 6 octets MUST be treated
    // as a connection error ... FRAME_SIZE_ERROR."
    if !payload.len().is_multiple_of(6) {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "SETTINGS payload not a multiple of 6 bytes",
        ));
    }
    let params = Settings { bytes: payload };
    for (id, value) in params.iter() {
        check_setting(id, value)?;
    }
    Ok(Frame::Settings { ack, params })
}

/// §6.5.2. Unknown identifiers pass: "An endpoint that receives a SETTINGS frame with any
/// unknown or unsupported identifier MUST ignore that setting."
fn check_setting(id: u16, value: u32) -> Result<(), FrameError> {
    match id {
        // §6.5.2: ENABLE_PUSH "Any value other than 0 or 1 MUST be treated as a connection
        // error ... PROTOCOL_ERROR." (A client refuses 1 from a server; a server may get 1.)
        setting::ENABLE_PUSH if value > 1 => Err(connection(
            ErrorCode::ProtocolError,
            "SETTINGS_ENABLE_PUSH neither 0 nor 1",
        )),
        // §6.5.2: INITIAL_WINDOW_SIZE "Values above the maximum flow-control window size of
        // 2^31-1 MUST be treated as a connection error ... FLOW_CONTROL_ERROR."
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(connection(
            ErrorCode::FlowControlError,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        // §6.5.2: MAX_FRAME_SIZE "Values outside this range MUST be treated as a connection
        // error ... PROTOCOL_ERROR."
        setting::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_ALLOWED_FRAME_SIZE).contains(&value) =>
        {
            Err(connection(
                ErrorCode::ProtocolError,
                "SETTINGS_MAX_FRAME_SIZE outside 2^14..2^24-1",
            ))
        }
        _ => Ok(()),
    }
}

fn push_promise<'a>(h: &Header, payload: &[u8]) -> Result<Frame<'a>, FrameError> {
    // §6.6: "If the Stream Identifier field specifies the value 0x00, a recipient MUST respond
    // with a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "PUSH_PROMISE on stream 0",
        ));
    }
    // 4 bytes of Promised Stream ID before the fragment.
    match unpad(h, payload, 4) {
        Ok(_) => Ok(Frame::PushPromise {
            stream_id: h.stream_id,
        }),
        // §4.2: a field block frame too small for its fields: a connection error.
        Err(Unpad::TooShort) => Err(connection(
            ErrorCode::FrameSizeError,
            "PUSH_PROMISE too short for its fields",
        )),
        // §6.6: padding "the length of the frame payload or greater": PROTOCOL_ERROR.
        Err(Unpad::PaddingTooLong) => Err(connection(
            ErrorCode::ProtocolError,
            "PUSH_PROMISE padding longer than the rest of the payload",
        )),
    }
}

fn ping<'a>(h: &Header, payload: &[u8]) -> Result<Frame<'a>, FrameError> {
    // §6.7: "If a PING frame is received with a Stream Identifier field value other than 0x00,
    // the recipient MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id != 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "PING on a stream other than 0",
        ));
    }
    // §6.7: "Receipt of a PING frame with a length field value other than 8 MUST be treated as
    // a connection error ... FRAME_SIZE_ERROR."
    let Ok(&data) = <&[u8; 8]>::try_from(payload) else {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "PING payload not 8 bytes",
        ));
    };
    Ok(Frame::Ping {
        ack: h.has(flag::ACK),
        data,
    })
}

fn goaway<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    // §6.8: "An endpoint MUST treat a GOAWAY frame with a stream identifier other than 0x00 as a
    // connection error ... PROTOCOL_ERROR."
    if h.stream_id != 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "GOAWAY on a stream other than 0",
        ));
    }
    // §4.2: too small for Last-Stream-ID and Error Code, on stream 0: a connection error.
    let Some((&[s0, s1, s2, s3, c0, c1, c2, c3], debug)) = payload.split_first_chunk::<8>() else {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "GOAWAY payload shorter than 8 bytes",
        ));
    };
    Ok(Frame::GoAway {
        // §6.8: Last-Stream-ID follows a reserved bit.
        last_stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & STREAM_ID_MASK,
        code: ErrorCode::from_u32(u32::from_be_bytes([c0, c1, c2, c3])),
        debug,
    })
}

fn window_update<'a>(h: &Header, payload: &[u8]) -> Result<Frame<'a>, FrameError> {
    // §6.9: "A WINDOW_UPDATE frame with a length other than 4 octets MUST be treated as a
    // connection error ... FRAME_SIZE_ERROR."
    let Ok(&increment) = <&[u8; 4]>::try_from(payload) else {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "WINDOW_UPDATE payload not 4 bytes",
        ));
    };
    // §6.9: one reserved bit, then a 31-bit increment.
    let increment = u32::from_be_bytes(increment) & STREAM_ID_MASK;
    // §6.9: "a flow-control window increment of 0 as a stream error ... PROTOCOL_ERROR; errors
    // on the connection flow-control window MUST be treated as a connection error".
    if increment == 0 {
        let reason = "WINDOW_UPDATE increment 0";
        return Err(match h.stream_id {
            0 => connection(ErrorCode::ProtocolError, reason),
            id => FrameError::Stream(id, ErrorCode::ProtocolError, reason),
        });
    }
    Ok(Frame::WindowUpdate {
        stream_id: h.stream_id,
        increment,
    })
}

fn continuation<'a>(h: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    // §6.10: "If a CONTINUATION frame is received with a Stream Identifier field of 0x00, the
    // recipient MUST respond with a connection error ... PROTOCOL_ERROR."
    if h.stream_id == 0 {
        return Err(connection(
            ErrorCode::ProtocolError,
            "CONTINUATION on stream 0",
        ));
    }
    Ok(Frame::Continuation {
        stream_id: h.stream_id,
        end_headers: h.has(flag::END_HEADERS),
        fragment: payload,
    })
}

/// Lengths of what the encoders write fit in 24 bits by construction or by the caller's promise;
/// a larger one is a bug that [`write_header`] reports in debug builds.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends a frame header (§4.1). `length` must be at most [`MAX_ALLOWED_FRAME_SIZE`] (and the
/// peer's SETTINGS_MAX_FRAME_SIZE); the reserved bit of `stream_id` is sent unset.
pub fn write_header(out: &mut Vec<u8>, length: u32, kind: u8, flags: u8, stream_id: u32) {
    debug_assert!(
        length <= MAX_ALLOWED_FRAME_SIZE,
        "frame length {length} over 2^24-1"
    );
    let [_, l0, l1, l2] = length.to_be_bytes();
    let [s0, s1, s2, s3] = (stream_id & STREAM_ID_MASK).to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]);
}

/// A SETTINGS frame with these parameters, in this order (§6.5).
pub fn encode_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    let length = params.len().saturating_mul(6);
    out.reserve(HEADER_LEN + length);
    write_header(out, len_u32(length), kind::SETTINGS, 0, 0);
    for &(id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// The acknowledgement of the peer's SETTINGS (§6.5.3).
pub fn encode_settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

/// A PING, or with `ack` the answer to one, which carries the same data (§6.7).
pub fn encode_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    out.reserve(HEADER_LEN + 8);
    let flags = if ack { flag::ACK } else { 0 };
    write_header(out, 8, kind::PING, flags, 0);
    out.extend_from_slice(&data);
}

/// A GOAWAY (§6.8). `debug` is cut so that the frame fits the smallest SETTINGS_MAX_FRAME_SIZE
/// a peer can have (2^14); it is for diagnostics only, and must hold nothing secret.
pub fn encode_goaway(out: &mut Vec<u8>, last_stream_id: u32, code: ErrorCode, debug: &[u8]) {
    let max_debug = DEFAULT_MAX_FRAME_SIZE as usize - 8;
    let debug = debug.get(..max_debug).unwrap_or(debug);
    out.reserve(HEADER_LEN + 8 + debug.len());
    write_header(out, len_u32(8 + debug.len()), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream_id & STREAM_ID_MASK).to_be_bytes());
    out.extend_from_slice(&code.as_u32().to_be_bytes());
    out.extend_from_slice(debug);
}

/// A WINDOW_UPDATE (§6.9); stream 0 is the connection's window. `increment` must be 1 to
/// [`MAX_WINDOW`]: the peer answers 0 with an error.
pub fn encode_window_update(out: &mut Vec<u8>, stream_id: u32, increment: u32) {
    debug_assert!(
        (1..=MAX_WINDOW).contains(&increment),
        "window increment {increment}"
    );
    out.reserve(HEADER_LEN + 4);
    write_header(out, 4, kind::WINDOW_UPDATE, 0, stream_id);
    out.extend_from_slice(&(increment & STREAM_ID_MASK).to_be_bytes());
}

/// A RST_STREAM (§6.4).
pub fn encode_rst_stream(out: &mut Vec<u8>, stream_id: u32, code: ErrorCode) {
    out.reserve(HEADER_LEN + 4);
    write_header(out, 4, kind::RST_STREAM, 0, stream_id);
    out.extend_from_slice(&code.as_u32().to_be_bytes());
}

/// A header block as HEADERS plus as many CONTINUATION frames as `max_frame_size` requires
/// (§4.3, §6.2, §6.10), with no padding and no priority. END_STREAM goes on the HEADERS frame,
/// END_HEADERS on the last frame. An empty block is one empty HEADERS frame.
///
/// `max_frame_size` is the peer's SETTINGS_MAX_FRAME_SIZE; a value outside 1 to 2^24-1 is taken
/// as the nearest of those, so that no value can make a frame the peer must refuse or make this
/// loop forever.
pub fn encode_headers(
    out: &mut Vec<u8>,
    stream_id: u32,
    end_stream: bool,
    block: &[u8],
    max_frame_size: u32,
) {
    let size = max_frame_size.clamp(1, MAX_ALLOWED_FRAME_SIZE);
    let size = usize::try_from(size).unwrap_or(DEFAULT_MAX_FRAME_SIZE as usize);
    let frames = block.len().div_ceil(size).max(1);
    out.reserve(
        frames
            .saturating_mul(HEADER_LEN)
            .saturating_add(block.len()),
    );

    let mut chunks = block.chunks(size).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    write_header(out, len_u32(first.len()), kind::HEADERS, flags, stream_id);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        write_header(
            out,
            len_u32(chunk.len()),
            kind::CONTINUATION,
            flags,
            stream_id,
        );
        out.extend_from_slice(chunk);
    }
}

/// One DATA frame without padding (§6.1). The caller splits data by the peer's
/// SETTINGS_MAX_FRAME_SIZE and the flow-control windows; `data` must fit both.
pub fn encode_data(out: &mut Vec<u8>, stream_id: u32, end_stream: bool, data: &[u8]) {
    out.reserve(HEADER_LEN + data.len());
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    write_header(out, len_u32(data.len()), kind::DATA, flags, stream_id);
    out.extend_from_slice(data);
}

/// What [`next_frame`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A complete frame: its header, its payload (`header.length` bytes), and how many bytes of
    /// the buffer it takes (header and payload).
    Frame(Header, &'a [u8], usize),
    /// Not a complete frame yet: read more and ask again with the buffer grown.
    NeedMore,
    /// The frame header at the start declares a payload longer than `max_frame_size`; refused
    /// before the payload arrives ([`check_length`] says which error). For a stream error the
    /// connection goes on only after skipping the `Header::parse`d length of payload bytes.
    TooLarge(FrameError),
}

/// Finds the frame at the start of `buf`. `max_frame_size` is our SETTINGS_MAX_FRAME_SIZE (the
/// value the peer has acknowledged, or the default). The length is checked as soon as the 9
/// header bytes are there, so an oversize frame is refused before its payload is buffered.
pub fn next_frame(buf: &[u8], max_frame_size: u32) -> Next<'_> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Next::NeedMore;
    };
    let h = Header::parse(head);
    if let Err(e) = check_length(&h, max_frame_size) {
        return Next::TooLarge(e);
    }
    // A 24-bit length always fits a usize on the platforms we build for; if it did not, no
    // buffer could hold the frame either.
    let Some(end) = usize::try_from(h.length)
        .ok()
        .and_then(|n| n.checked_add(HEADER_LEN))
    else {
        return Next::NeedMore;
    };
    match buf.get(HEADER_LEN..end) {
        Some(payload) => Next::Frame(h, payload, end),
        None => Next::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorCode::*;

    /// A frame as bytes: header and payload.
    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, payload.len() as u32, kind, flags, stream_id);
        out.extend_from_slice(payload);
        out
    }

    /// Splits `bytes`, which must be exactly one frame, and decodes it.
    fn dec(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
        match next_frame(bytes, MAX_ALLOWED_FRAME_SIZE) {
            Next::Frame(h, payload, used) => {
                assert_eq!(used, bytes.len(), "not exactly one frame");
                decode(&h, payload)
            }
            other => panic!("not a frame: {other:?}"),
        }
    }

    /// Every frame in `bytes`, decoded; panics on anything but a whole number of valid frames.
    fn dec_all(mut bytes: &[u8]) -> Vec<Frame<'_>> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let Next::Frame(h, payload, used) = next_frame(bytes, MAX_ALLOWED_FRAME_SIZE) else {
                panic!("not a frame at {} bytes from the end", bytes.len());
            };
            frames.push(decode(&h, payload).unwrap());
            bytes = &bytes[used..];
        }
        frames
    }

    #[track_caller]
    fn assert_connection(r: Result<Frame<'_>, FrameError>, code: ErrorCode) {
        match r {
            Err(FrameError::Connection(c, _)) if c == code => {}
            other => panic!("expected connection error {code}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_stream(r: Result<Frame<'_>, FrameError>, id: u32, code: ErrorCode) {
        match r {
            Err(FrameError::Stream(i, c, _)) if i == id && c == code => {}
            other => panic!("expected stream {id} error {code}, got {other:?}"),
        }
    }

    #[test]
    fn header_parse_and_write() {
        let h = Header::parse(&[0x12, 0x34, 0x56, 0x07, 0xa5, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            h,
            Header {
                length: 0x12_3456,
                kind: 7,
                flags: 0xa5,
                // §4.1: the reserved bit is ignored.
                stream_id: MAX_WINDOW,
            }
        );
        let mut out = Vec::new();
        write_header(&mut out, 0x12_3456, 7, 0xa5, 0xffff_ffff);
        // The reserved bit is sent unset.
        assert_eq!(out, [0x12, 0x34, 0x56, 0x07, 0xa5, 0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(PREFACE.len(), 24);
        assert!(PREFACE.starts_with(b"PRI * HTTP/2.0"));
    }

    #[test]
    fn error_codes() {
        for n in 0..=0xd {
            let code = ErrorCode::from_u32(n);
            assert!(!matches!(code, Other(_)), "{n}");
            assert_eq!(code.as_u32(), n);
            assert!(code.name().is_some());
        }
        assert_eq!(ErrorCode::from_u32(0x1), ProtocolError);
        assert_eq!(ErrorCode::from_u32(0xd), Http11Required);
        assert_eq!(ErrorCode::from_u32(0xe), Other(0xe));
        assert_eq!(Other(0xdead_beef).as_u32(), 0xdead_beef);
        assert_eq!(FlowControlError.to_string(), "FLOW_CONTROL_ERROR");
        assert_eq!(Other(0x42).to_string(), "error code 0x42");
        let e = FrameError::Stream(3, FrameSizeError, "x");
        assert_eq!(e.code(), FrameSizeError);
        assert_eq!(e.reason(), "x");
        assert_eq!(e.to_string(), "stream 3 error FRAME_SIZE_ERROR: x");
    }

    #[test]
    fn check_length_decides_connection_or_stream() {
        let h = |kind, stream_id, length| Header {
            length,
            kind,
            flags: 0,
            stream_id,
        };
        let max = DEFAULT_MAX_FRAME_SIZE;
        assert_eq!(check_length(&h(kind::DATA, 1, max), max), Ok(()));
        assert_eq!(check_length(&h(kind::HEADERS, 1, 0), max), Ok(()));
        // §4.2: stream errors for frames that cannot change connection state.
        for kind in [kind::DATA, kind::PRIORITY] {
            assert!(matches!(
                check_length(&h(kind, 5, max + 1), max),
                Err(FrameError::Stream(5, FrameSizeError, _))
            ));
            // ...but any frame on stream 0 is a connection error.
            assert!(matches!(
                check_length(&h(kind, 0, max + 1), max),
                Err(FrameError::Connection(FrameSizeError, _))
            ));
        }
        for kind in [
            kind::HEADERS,
            kind::PUSH_PROMISE,
            kind::CONTINUATION,
            kind::SETTINGS,
            kind::RST_STREAM,
            kind::WINDOW_UPDATE,
            kind::PING,
            kind::GOAWAY,
            0x16,
            0xff,
        ] {
            for stream_id in [0, 1] {
                assert!(
                    matches!(
                        check_length(&h(kind, stream_id, MAX_ALLOWED_FRAME_SIZE), max),
                        Err(FrameError::Connection(FrameSizeError, _))
                    ),
                    "kind {kind} stream {stream_id}"
                );
            }
        }
        assert_eq!(
            check_length(
                &h(kind::DATA, 1, MAX_ALLOWED_FRAME_SIZE),
                MAX_ALLOWED_FRAME_SIZE
            ),
            Ok(())
        );
    }

    #[test]
    fn data() {
        let f = frame(kind::DATA, flag::END_STREAM, 1, b"hello");
        assert_eq!(
            dec(&f),
            Ok(Frame::Data {
                stream_id: 1,
                end_stream: true,
                data: b"hello",
                flow_len: 5,
            })
        );
        // Padded: flow control counts Pad Length and padding too (§6.1).
        let f = frame(kind::DATA, flag::PADDED, 3, b"\x03abc\0\0\0");
        assert_eq!(
            dec(&f),
            Ok(Frame::Data {
                stream_id: 3,
                end_stream: false,
                data: b"abc",
                flow_len: 7,
            })
        );
        // Nothing but padding, and Pad Length 0.
        for payload in [&b"\x02\0\0"[..], b"\0"] {
            let f = frame(kind::DATA, flag::PADDED, 3, payload);
            assert!(
                matches!(dec(&f), Ok(Frame::Data { data: b"", flow_len, .. }) if flow_len as usize == payload.len())
            );
        }
        // Flags DATA does not define are ignored; PADDED unset means no Pad Length.
        let f = frame(kind::DATA, 0xf6, 3, b"\x09x");
        assert!(matches!(
            dec(&f),
            Ok(Frame::Data {
                data: b"\x09x",
                end_stream: false,
                ..
            })
        ));
        let f = frame(kind::DATA, 0, 3, b"");
        assert!(matches!(dec(&f), Ok(Frame::Data { data: b"", .. })));
    }

    #[test]
    fn data_errors() {
        // §6.1: stream 0.
        assert_connection(dec(&frame(kind::DATA, 0, 0, b"test")), ProtocolError);
        assert_connection(dec(&frame(kind::DATA, flag::PADDED, 0, b"")), ProtocolError);
        // §6.1: padding as long as the payload (h2spec 6.1: length 5, Pad Length 6) or just as
        // long.
        let h2spec = b"\x00\x00\x05\x00\x09\x00\x00\x00\x01\x06Test";
        assert_connection(dec(h2spec), ProtocolError);
        assert_connection(
            dec(&frame(kind::DATA, flag::PADDED, 1, b"\x04abc")),
            ProtocolError,
        );
        assert_connection(
            dec(&frame(kind::DATA, flag::PADDED, 1, b"\x01")),
            ProtocolError,
        );
        assert_connection(
            dec(&frame(kind::DATA, flag::PADDED, 1, b"\xff")),
            ProtocolError,
        );
        // §4.2: no room for Pad Length; a stream error, since DATA is not a connection frame.
        assert_stream(
            dec(&frame(kind::DATA, flag::PADDED, 7, b"")),
            7,
            FrameSizeError,
        );
    }

    #[test]
    fn headers() {
        let f = frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            b"\x82\x86",
        );
        assert_eq!(
            dec(&f),
            Ok(Frame::Headers {
                stream_id: 1,
                end_stream: true,
                end_headers: true,
                priority: None,
                fragment: b"\x82\x86",
            })
        );
        // Padded, with priority: Pad Length, E + dependency, weight, fragment, padding.
        let f = frame(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY,
            5,
            b"\x02\x80\x00\x00\x03\xff\x82\0\0",
        );
        assert_eq!(
            dec(&f),
            Ok(Frame::Headers {
                stream_id: 5,
                end_stream: false,
                end_headers: false,
                priority: Some(Priority {
                    exclusive: true,
                    dependency: 3,
                    weight: 255,
                }),
                fragment: b"\x82",
            })
        );
        // Priority alone, empty fragment; padding alone, all padding.
        let f = frame(kind::HEADERS, flag::PRIORITY, 5, b"\x00\x00\x00\x00\x0f");
        assert!(matches!(
            dec(&f),
            Ok(Frame::Headers {
                priority: Some(Priority {
                    exclusive: false,
                    dependency: 0,
                    weight: 15
                }),
                fragment: b"",
                ..
            })
        ));
        let f = frame(kind::HEADERS, flag::PADDED, 5, b"\x01\x00");
        assert!(matches!(
            dec(&f),
            Ok(Frame::Headers {
                priority: None,
                fragment: b"",
                ..
            })
        ));
        // Padding reaching exactly to the priority fields.
        let f = frame(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY,
            5,
            b"\x01\0\0\0\x01\x10\0",
        );
        assert!(matches!(dec(&f), Ok(Frame::Headers { fragment: b"", .. })));
        // Undefined flags (0x02, 0x10, 0x40, 0x80) are ignored.
        let f = frame(kind::HEADERS, 0xd2 | flag::END_HEADERS, 5, b"\x82");
        assert!(matches!(
            dec(&f),
            Ok(Frame::Headers {
                end_stream: false,
                end_headers: true,
                priority: None,
                fragment: b"\x82",
                ..
            })
        ));
    }

    #[test]
    fn headers_errors() {
        // §6.2: stream 0.
        assert_connection(
            dec(&frame(kind::HEADERS, flag::END_HEADERS, 0, b"\x82")),
            ProtocolError,
        );
        // §6.2: padding longer than what follows Pad Length (h2spec 6.2: Pad Length = length + 1).
        let fragment = b"\x82\x86\x84\x41\x0aexample.com";
        let mut h2spec = frame(kind::HEADERS, 0x0d, 1, &[&[0u8][..], fragment].concat());
        h2spec[HEADER_LEN] = fragment.len() as u8 + 2;
        assert_connection(dec(&h2spec), ProtocolError);
        assert_connection(
            dec(&frame(kind::HEADERS, flag::PADDED, 1, b"\x03ab")),
            ProtocolError,
        );
        // Padding reaching into the priority fields.
        assert_connection(
            dec(&frame(
                kind::HEADERS,
                flag::PADDED | flag::PRIORITY,
                1,
                b"\x02\0\0\0\x03\x10\0",
            )),
            ProtocolError,
        );
        // §4.2: too short for Pad Length or priority: a connection error (a field block frame).
        assert_connection(
            dec(&frame(kind::HEADERS, flag::PADDED, 1, b"")),
            FrameSizeError,
        );
        assert_connection(
            dec(&frame(kind::HEADERS, flag::PRIORITY, 1, b"\0\0\0\x03")),
            FrameSizeError,
        );
        assert_connection(
            dec(&frame(
                kind::HEADERS,
                flag::PRIORITY | flag::PADDED,
                1,
                b"\0\0\0\0\x03",
            )),
            FrameSizeError,
        );
    }

    #[test]
    fn headers_depending_on_itself_is_a_stream_error_with_a_fragment_left() {
        // RFC 7540 §5.3.1, h2spec 5.3.1: a stream error, exclusive or not.
        for dependency in [b"\x00\x00\x00\x03", b"\x80\x00\x00\x03"] {
            let payload = [&dependency[..], b"\xff", b"\x82\x86"].concat();
            let f = frame(kind::HEADERS, flag::PRIORITY, 3, &payload);
            assert_stream(dec(&f), 3, ProtocolError);
            // The connection still decompresses the fragment.
            let h = Header::parse(f[..HEADER_LEN].try_into().unwrap());
            assert_eq!(headers_fragment(&h, &f[HEADER_LEN..]), Ok(&b"\x82\x86"[..]));
        }
        // headers_fragment gives the connection errors decode gives.
        let f = frame(kind::HEADERS, flag::PRIORITY, 3, b"\0\0");
        let h = Header::parse(f[..HEADER_LEN].try_into().unwrap());
        assert_eq!(
            headers_fragment(&h, &f[HEADER_LEN..]),
            dec(&f).map(|_| &b""[..])
        );
        assert!(headers_fragment(&h, b"").is_err());
        let f = frame(kind::CONTINUATION, 0, 3, b"\x82");
        let h = Header::parse(f[..HEADER_LEN].try_into().unwrap());
        assert!(headers_fragment(&h, &f[HEADER_LEN..]).is_err());
    }

    #[test]
    fn priority() {
        let f = frame(kind::PRIORITY, 0, 3, b"\x80\x00\x00\x01\x00");
        assert_eq!(
            dec(&f),
            Ok(Frame::Priority {
                stream_id: 3,
                priority: Priority {
                    exclusive: true,
                    dependency: 1,
                    weight: 0,
                },
            })
        );
        // §6.3: stream 0.
        assert_connection(
            dec(&frame(kind::PRIORITY, 0, 0, b"\x00\x00\x00\x01\x00")),
            ProtocolError,
        );
        // §6.3: length other than 5 (h2spec 6.3: 4 bytes).
        for payload in [&b""[..], b"\x80\x00\x00\x01", b"\x80\x00\x00\x01\x00\x00"] {
            assert_stream(
                dec(&frame(kind::PRIORITY, 0, 1, payload)),
                1,
                FrameSizeError,
            );
        }
        // RFC 7540 §5.3.1: a stream depending on itself.
        assert_stream(
            dec(&frame(kind::PRIORITY, 0, 9, b"\x00\x00\x00\x09\xff")),
            9,
            ProtocolError,
        );
        assert_stream(
            dec(&frame(kind::PRIORITY, 0, 9, b"\x80\x00\x00\x09\xff")),
            9,
            ProtocolError,
        );
    }

    #[test]
    fn rst_stream() {
        assert_eq!(
            dec(&frame(kind::RST_STREAM, 0, 1, b"\x00\x00\x00\x08")),
            Ok(Frame::RstStream {
                stream_id: 1,
                code: Cancel,
            })
        );
        assert_eq!(
            dec(&frame(kind::RST_STREAM, 0, 1, b"\x00\x01\x00\x00")),
            Ok(Frame::RstStream {
                stream_id: 1,
                code: Other(0x10000),
            })
        );
        // §6.4: stream 0; length other than 4 (h2spec 6.4: 3 bytes) is a connection error.
        assert_connection(
            dec(&frame(kind::RST_STREAM, 0, 0, b"\x00\x00\x00\x08")),
            ProtocolError,
        );
        for payload in [&b""[..], b"\0\0\0", b"\0\0\0\0\0"] {
            assert_connection(dec(&frame(kind::RST_STREAM, 0, 1, payload)), FrameSizeError);
        }
    }

    #[test]
    fn settings() {
        let payload = [
            &b"\x00\x01\x00\x00\x10\x00"[..], // HEADER_TABLE_SIZE 4096
            b"\x00\x02\x00\x00\x00\x00",      // ENABLE_PUSH 0
            b"\x00\x02\x00\x00\x00\x01",      // ENABLE_PUSH 1 (valid from a client)
            b"\x00\x03\xff\xff\xff\xff",      // MAX_CONCURRENT_STREAMS: any value
            b"\x00\x04\x7f\xff\xff\xff",      // INITIAL_WINDOW_SIZE 2^31-1
            b"\x00\x05\x00\x00\x40\x00",      // MAX_FRAME_SIZE 2^14
            b"\x00\x05\x00\xff\xff\xff",      // MAX_FRAME_SIZE 2^24-1
            b"\x00\x06\x00\x00\x00\x00",      // MAX_HEADER_LIST_SIZE 0
            b"\x00\xff\x00\x00\x00\x01",      // unknown: ignored (h2spec 6.5.2)
            b"\x00\x00\xff\xff\xff\xff",      // unknown 0
        ]
        .concat();
        let f = frame(kind::SETTINGS, 0, 0, &payload);
        let Ok(Frame::Settings { ack: false, params }) = dec(&f) else {
            panic!("{:?}", dec(&f));
        };
        assert_eq!(params.len(), 10);
        assert!(!params.is_empty());
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [
                (setting::HEADER_TABLE_SIZE, 4096),
                (setting::ENABLE_PUSH, 0),
                (setting::ENABLE_PUSH, 1),
                (setting::MAX_CONCURRENT_STREAMS, u32::MAX),
                (setting::INITIAL_WINDOW_SIZE, MAX_WINDOW),
                (setting::MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE),
                (setting::MAX_FRAME_SIZE, MAX_ALLOWED_FRAME_SIZE),
                (setting::MAX_HEADER_LIST_SIZE, 0),
                (0xff, 1),
                (0, u32::MAX),
            ]
        );
        // The last value of a repeated setting holds (§6.5).
        assert_eq!(params.get(setting::ENABLE_PUSH), Some(1));
        assert_eq!(
            params.get(setting::MAX_FRAME_SIZE),
            Some(MAX_ALLOWED_FRAME_SIZE)
        );
        assert_eq!(params.get(0x7), None);
        assert_eq!(params.into_iter().len(), 10);
        assert!(format!("{params:?}").starts_with("[(1, 4096), (2, 0)"));

        let empty = dec(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        assert!(matches!(empty, Ok(Frame::Settings { ack: false, params }) if params.is_empty()));
        let ack = dec(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00");
        assert!(matches!(ack, Ok(Frame::Settings { ack: true, params }) if params.is_empty()));
    }

    #[test]
    fn settings_errors() {
        // §6.5: ACK with a payload (h2spec 6.5: 1 byte); also when the payload is a whole setting.
        assert_connection(
            dec(b"\x00\x00\x01\x04\x01\x00\x00\x00\x00\x00"),
            FrameSizeError,
        );
        assert_connection(
            dec(&frame(
                kind::SETTINGS,
                flag::ACK,
                0,
                b"\x00\x03\x00\x00\x00\x64",
            )),
            FrameSizeError,
        );
        // §6.5: stream other than 0 (h2spec 6.5).
        assert_connection(
            dec(b"\x00\x00\x06\x04\x00\x00\x00\x00\x01\x00\x03\x00\x00\x00\x64"),
            ProtocolError,
        );
        assert_connection(
            dec(&frame(kind::SETTINGS, flag::ACK, 1, b"")),
            ProtocolError,
        );
        // §6.5: not a multiple of 6 (h2spec 6.5: 3 bytes).
        assert_connection(
            dec(b"\x00\x00\x03\x04\x00\x00\x00\x00\x00\x00\x03\x00"),
            FrameSizeError,
        );
        assert_connection(dec(&frame(kind::SETTINGS, 0, 0, &[0; 13])), FrameSizeError);
        // §6.5.2, with the values h2spec sends and the nearest others.
        for (id, value, code) in [
            (setting::ENABLE_PUSH, 2, ProtocolError),
            (setting::ENABLE_PUSH, u32::MAX, ProtocolError),
            (setting::INITIAL_WINDOW_SIZE, 1 << 31, FlowControlError),
            (setting::INITIAL_WINDOW_SIZE, u32::MAX, FlowControlError),
            (setting::MAX_FRAME_SIZE, 16_383, ProtocolError),
            (setting::MAX_FRAME_SIZE, 0, ProtocolError),
            (setting::MAX_FRAME_SIZE, 16_777_216, ProtocolError),
        ] {
            let mut out = Vec::new();
            // A valid setting first: the bad one is found wherever it is.
            encode_settings(&mut out, &[(setting::HEADER_TABLE_SIZE, 0), (id, value)]);
            assert_connection(dec(&out), code);
        }
    }

    #[test]
    fn push_promise() {
        let f = frame(
            kind::PUSH_PROMISE,
            flag::END_HEADERS,
            1,
            b"\x00\x00\x00\x02\x82",
        );
        assert_eq!(dec(&f), Ok(Frame::PushPromise { stream_id: 1 }));
        let f = frame(
            kind::PUSH_PROMISE,
            flag::PADDED,
            1,
            b"\x01\x00\x00\x00\x02\0",
        );
        assert_eq!(dec(&f), Ok(Frame::PushPromise { stream_id: 1 }));
        // §6.6: stream 0; too short; padding too long.
        assert_connection(
            dec(&frame(kind::PUSH_PROMISE, 0, 0, b"\x00\x00\x00\x02")),
            ProtocolError,
        );
        assert_connection(
            dec(&frame(kind::PUSH_PROMISE, 0, 1, b"\0\0\0")),
            FrameSizeError,
        );
        assert_connection(
            dec(&frame(kind::PUSH_PROMISE, flag::PADDED, 1, b"")),
            FrameSizeError,
        );
        assert_connection(
            dec(&frame(
                kind::PUSH_PROMISE,
                flag::PADDED,
                1,
                b"\x01\x00\x00\x00\x02",
            )),
            ProtocolError,
        );
    }

    #[test]
    fn ping() {
        let f = frame(kind::PING, 0, 0, b"h2spec\0\0");
        assert_eq!(
            dec(&f),
            Ok(Frame::Ping {
                ack: false,
                data: *b"h2spec\0\0",
            })
        );
        assert!(matches!(
            dec(&frame(kind::PING, flag::ACK, 0, &[7; 8])),
            Ok(Frame::Ping {
                ack: true,
                data: [7, 7, 7, 7, 7, 7, 7, 7]
            })
        ));
        // h2spec 4.1: undefined flags, and the reserved bit of the stream identifier, ignored.
        assert!(matches!(
            dec(b"\x00\x00\x08\x06\x16\x00\x00\x00\x00\0\0\0\0\0\0\0\0"),
            Ok(Frame::Ping { ack: false, .. })
        ));
        assert!(matches!(
            dec(b"\x00\x00\x08\x06\x16\x80\x00\x00\x00\0\0\0\0\0\0\0\0"),
            Ok(Frame::Ping { ack: false, .. })
        ));
        // §6.7: stream other than 0 (h2spec 6.7); length other than 8 (h2spec 6.7: 6 bytes).
        assert_connection(
            dec(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01\0\0\0\0\0\0\0\0"),
            ProtocolError,
        );
        assert_connection(
            dec(b"\x00\x00\x06\x06\x00\x00\x00\x00\x00\0\0\0\0\0\0"),
            FrameSizeError,
        );
        for payload in [&b""[..], &[0; 7], &[0; 9]] {
            assert_connection(
                dec(&frame(kind::PING, flag::ACK, 0, payload)),
                FrameSizeError,
            );
        }
    }

    #[test]
    fn goaway() {
        let f = frame(
            kind::GOAWAY,
            0,
            0,
            b"\x80\x00\x00\x05\x00\x00\x00\x0bcalm down",
        );
        assert_eq!(
            dec(&f),
            Ok(Frame::GoAway {
                // The reserved bit is ignored.
                last_stream_id: 5,
                code: EnhanceYourCalm,
                debug: b"calm down",
            })
        );
        assert!(matches!(
            dec(&frame(kind::GOAWAY, 0, 0, &[0; 8])),
            Ok(Frame::GoAway {
                last_stream_id: 0,
                code: NoError,
                debug: b""
            })
        ));
        // §6.8: stream other than 0 (h2spec 6.8); too short for its fields.
        assert_connection(
            dec(b"\x00\x00\x08\x07\x00\x00\x00\x00\x01\0\0\0\0\0\0\0\0"),
            ProtocolError,
        );
        for n in 0..8 {
            assert_connection(dec(&frame(kind::GOAWAY, 0, 0, &vec![0; n])), FrameSizeError);
        }
    }

    #[test]
    fn window_update() {
        assert_eq!(
            dec(&frame(kind::WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x01")),
            Ok(Frame::WindowUpdate {
                stream_id: 0,
                increment: 1,
            })
        );
        // The reserved bit is ignored.
        assert_eq!(
            dec(&frame(kind::WINDOW_UPDATE, 0, 7, b"\xff\xff\xff\xff")),
            Ok(Frame::WindowUpdate {
                stream_id: 7,
                increment: MAX_WINDOW,
            })
        );
        // §6.9: increment 0 is a connection error on stream 0, a stream error on a stream; the
        // reserved bit does not make it anything else.
        for payload in [b"\x00\x00\x00\x00", b"\x80\x00\x00\x00"] {
            assert_connection(
                dec(&frame(kind::WINDOW_UPDATE, 0, 0, payload)),
                ProtocolError,
            );
            assert_stream(
                dec(&frame(kind::WINDOW_UPDATE, 0, 1, payload)),
                1,
                ProtocolError,
            );
        }
        // §6.9: length other than 4 (h2spec 6.9: 3 bytes), on any stream.
        assert_connection(
            dec(b"\x00\x00\x03\x08\x00\x00\x00\x00\x00\x00\x00\x01"),
            FrameSizeError,
        );
        for payload in [&b""[..], b"\0\0\0\x01\0"] {
            assert_connection(
                dec(&frame(kind::WINDOW_UPDATE, 0, 1, payload)),
                FrameSizeError,
            );
        }
    }

    #[test]
    fn continuation() {
        assert_eq!(
            dec(&frame(
                kind::CONTINUATION,
                flag::END_HEADERS | 0x01,
                1,
                b"\x82"
            )),
            Ok(Frame::Continuation {
                stream_id: 1,
                end_headers: true,
                fragment: b"\x82",
            })
        );
        assert!(matches!(
            dec(&frame(kind::CONTINUATION, flag::PADDED, 1, b"\x05")),
            Ok(Frame::Continuation {
                end_headers: false,
                fragment: b"\x05",
                ..
            })
        ));
        // §6.10: stream 0.
        assert_connection(
            dec(&frame(kind::CONTINUATION, flag::END_HEADERS, 0, b"\x82")),
            ProtocolError,
        );
    }

    #[test]
    fn unknown_frames_are_ignored() {
        // h2spec 4.1 / 5.5: type 0x16 on stream 0 with 8 bytes.
        assert_eq!(
            dec(b"\x00\x00\x08\x16\x00\x00\x00\x00\x00\0\0\0\0\0\0\0\0"),
            Ok(Frame::Unknown {
                kind: 0x16,
                stream_id: 0,
            })
        );
        for kind in [0x0a, 0x0b, 0xff] {
            assert_eq!(
                dec(&frame(kind, 0xff, 3, b"anything")),
                Ok(Frame::Unknown { kind, stream_id: 3 })
            );
        }
    }

    #[test]
    fn decode_refuses_a_payload_of_another_length() {
        let h = Header {
            length: 8,
            kind: kind::PING,
            flags: 0,
            stream_id: 0,
        };
        assert_connection(decode(&h, &[0; 7]), InternalError);
        assert_connection(decode(&h, &[0; 9]), InternalError);
        assert!(decode(&h, &[0; 8]).is_ok());
    }

    #[test]
    fn encoders_round_trip() {
        let mut out = Vec::new();
        encode_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, 100),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20),
            ],
        );
        let Ok(Frame::Settings { ack: false, params }) = dec(&out) else {
            panic!()
        };
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [
                (setting::MAX_CONCURRENT_STREAMS, 100),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20)
            ]
        );
        out.clear();
        encode_settings(&mut out, &[]);
        assert_eq!(out, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");

        out.clear();
        encode_settings_ack(&mut out);
        assert_eq!(out, b"\x00\x00\x00\x04\x01\x00\x00\x00\x00");
        assert!(
            matches!(dec(&out), Ok(Frame::Settings { ack: true, params }) if params.is_empty())
        );

        for ack in [false, true] {
            out.clear();
            encode_ping(&mut out, ack, *b"12345678");
            assert_eq!(
                dec(&out),
                Ok(Frame::Ping {
                    ack,
                    data: *b"12345678"
                })
            );
        }

        out.clear();
        encode_goaway(&mut out, 7, ProtocolError, b"bad frame");
        assert_eq!(
            dec(&out),
            Ok(Frame::GoAway {
                last_stream_id: 7,
                code: ProtocolError,
                debug: b"bad frame",
            })
        );
        // Debug data is cut to fit the smallest frame size a peer may have.
        out.clear();
        encode_goaway(&mut out, MAX_WINDOW, Other(0x99), &[b'x'; 20_000]);
        assert_eq!(out.len(), HEADER_LEN + DEFAULT_MAX_FRAME_SIZE as usize);
        assert!(matches!(
            next_frame(&out, DEFAULT_MAX_FRAME_SIZE),
            Next::Frame(_, payload, _)
                if decode(&Header::parse(out[..9].try_into().unwrap()), payload)
                    == Ok(Frame::GoAway { last_stream_id: MAX_WINDOW, code: Other(0x99), debug: &[b'x'; 16_376] })
        ));

        for (stream_id, increment) in [(0, 1), (1, MAX_WINDOW), (MAX_WINDOW, 65_535)] {
            out.clear();
            encode_window_update(&mut out, stream_id, increment);
            assert_eq!(
                dec(&out),
                Ok(Frame::WindowUpdate {
                    stream_id,
                    increment
                })
            );
        }

        for code in [NoError, Cancel, RefusedStream, Other(0x1234)] {
            out.clear();
            encode_rst_stream(&mut out, 3, code);
            assert_eq!(dec(&out), Ok(Frame::RstStream { stream_id: 3, code }));
        }

        for (end_stream, data) in [(false, &b""[..]), (true, b""), (true, b"body")] {
            out.clear();
            encode_data(&mut out, 5, end_stream, data);
            assert_eq!(
                dec(&out),
                Ok(Frame::Data {
                    stream_id: 5,
                    end_stream,
                    data,
                    flow_len: data.len() as u32,
                })
            );
        }

        for (end_stream, block) in [(false, &b""[..]), (true, b""), (true, b"\x88\x5f\x10")] {
            out.clear();
            encode_headers(&mut out, 9, end_stream, block, DEFAULT_MAX_FRAME_SIZE);
            assert_eq!(
                dec(&out),
                Ok(Frame::Headers {
                    stream_id: 9,
                    end_stream,
                    end_headers: true,
                    priority: None,
                    fragment: block,
                })
            );
        }
    }

    #[test]
    fn encoders_append() {
        let mut out = b"already here".to_vec();
        encode_ping(&mut out, true, [0; 8]);
        encode_settings_ack(&mut out);
        assert!(out.starts_with(b"already here"));
        assert_eq!(dec_all(&out[12..]).len(), 2);
    }

    #[test]
    fn header_block_larger_than_a_frame_goes_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        encode_headers(&mut out, 3, true, &block, DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(out.len(), block.len() + 3 * HEADER_LEN);
        let frames = dec_all(&out);
        assert_eq!(
            frames,
            [
                Frame::Headers {
                    stream_id: 3,
                    end_stream: true,
                    end_headers: false,
                    priority: None,
                    fragment: &block[..16_384],
                },
                Frame::Continuation {
                    stream_id: 3,
                    end_headers: false,
                    fragment: &block[16_384..32_768],
                },
                Frame::Continuation {
                    stream_id: 3,
                    end_headers: true,
                    fragment: &block[32_768..],
                },
            ]
        );
        // Every frame fits the frame size, and END_STREAM is only on HEADERS.
        let mut rest = &out[..];
        while let Next::Frame(h, _, used) = next_frame(rest, DEFAULT_MAX_FRAME_SIZE) {
            assert!(h.length <= DEFAULT_MAX_FRAME_SIZE);
            assert_eq!(h.flags & flag::END_STREAM != 0, h.kind == kind::HEADERS);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());

        // A block of exactly two frames: no empty CONTINUATION at the end.
        out.clear();
        encode_headers(&mut out, 3, false, &block[..32_768], DEFAULT_MAX_FRAME_SIZE);
        let frames = dec_all(&out);
        assert_eq!(frames.len(), 2);
        assert!(matches!(
            frames[1],
            Frame::Continuation { end_headers: true, fragment, .. } if fragment.len() == 16_384
        ));

        // A larger frame size takes the block whole; sizes out of range never loop or panic.
        for (max, count) in [
            (MAX_ALLOWED_FRAME_SIZE, 1),
            (u32::MAX, 1),
            (1, 10),
            (0, 10),
            (3, 4),
        ] {
            out.clear();
            encode_headers(&mut out, 1, false, &block[..10], max);
            let frames = dec_all(&out);
            assert_eq!(frames.len(), count, "max {max}");
            let joined: Vec<u8> = frames
                .iter()
                .flat_map(|f| match f {
                    Frame::Headers { fragment, .. } | Frame::Continuation { fragment, .. } => {
                        fragment.to_vec()
                    }
                    _ => panic!("{f:?}"),
                })
                .collect();
            assert_eq!(joined, &block[..10]);
        }
    }

    #[test]
    fn next_frame_waits_for_whole_frames_byte_by_byte() {
        let mut stream = Vec::new();
        encode_settings(&mut stream, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
        encode_window_update(&mut stream, 0, 1 << 20);
        encode_headers(
            &mut stream,
            1,
            false,
            b"\x82\x86\x84",
            DEFAULT_MAX_FRAME_SIZE,
        );
        encode_data(&mut stream, 1, true, b"{}");
        encode_data(&mut stream, 1, true, b"");
        encode_ping(&mut stream, false, [1; 8]);
        let whole = dec_all(&stream);
        assert_eq!(whole.len(), 6);

        // Feed one byte at a time, as a connection buffer would fill, and take frames out.
        let mut buf = Vec::new();
        let mut fed = Vec::new();
        let mut consumed = 0;
        for &b in &stream {
            buf.push(b);
            loop {
                match next_frame(&buf, DEFAULT_MAX_FRAME_SIZE) {
                    Next::Frame(h, payload, used) => {
                        assert_eq!(used, HEADER_LEN + payload.len());
                        assert_eq!(used, buf.len(), "a frame appears with its last byte");
                        fed.push(stream[consumed..consumed + used].to_vec());
                        assert_eq!(decode(&h, payload), Ok(whole[fed.len() - 1]));
                        consumed += used;
                        buf.drain(..used);
                    }
                    Next::NeedMore => break,
                    Next::TooLarge(e) => panic!("{e}"),
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(fed.len(), whole.len());
        assert_eq!(fed.concat(), stream);

        // Every strict prefix of one frame needs more.
        let mut one = Vec::new();
        encode_data(&mut one, 1, false, b"abc");
        for n in 0..one.len() {
            assert_eq!(
                next_frame(&one[..n], DEFAULT_MAX_FRAME_SIZE),
                Next::NeedMore,
                "{n}"
            );
        }
        // A zero-length frame is complete with its header.
        assert!(matches!(
            next_frame(
                b"\x00\x00\x00\x04\x01\x00\x00\x00\x00rest",
                DEFAULT_MAX_FRAME_SIZE
            ),
            Next::Frame(_, b"", 9)
        ));
    }

    #[test]
    fn next_frame_refuses_an_oversize_frame_from_its_header() {
        // A HEADERS frame of 2^14 + 1 bytes: refused when the 9th byte arrives, not later.
        let mut f = frame(kind::HEADERS, flag::END_HEADERS, 1, &[0; 16_385]);
        for n in 0..HEADER_LEN {
            assert_eq!(next_frame(&f[..n], DEFAULT_MAX_FRAME_SIZE), Next::NeedMore);
        }
        for n in [HEADER_LEN, HEADER_LEN + 1, f.len()] {
            assert!(matches!(
                next_frame(&f[..n], DEFAULT_MAX_FRAME_SIZE),
                Next::TooLarge(FrameError::Connection(FrameSizeError, _))
            ));
        }
        // The same frame under a larger SETTINGS_MAX_FRAME_SIZE.
        assert!(
            matches!(next_frame(&f, 16_385), Next::Frame(_, p, used) if p.len() == 16_385 && used == f.len())
        );
        // DATA: a stream error (h2spec 4.2), also from the header alone.
        f[3] = kind::DATA;
        assert_eq!(
            next_frame(&f[..HEADER_LEN], DEFAULT_MAX_FRAME_SIZE),
            Next::TooLarge(FrameError::Stream(
                1,
                FrameSizeError,
                "frame longer than SETTINGS_MAX_FRAME_SIZE"
            ))
        );
        // The largest length a header can state.
        let h = b"\xff\xff\xff\x00\x00\x00\x00\x00\x01";
        assert_eq!(next_frame(h, MAX_ALLOWED_FRAME_SIZE), Next::NeedMore);
        assert!(matches!(
            next_frame(h, DEFAULT_MAX_FRAME_SIZE),
            Next::TooLarge(_)
        ));
    }
}
