//! HTTP/1.1 (RFC 9112) without I/O: request heads parsed with `httparse`, request bodies with
//! Content-Length or chunked transfer coding decoded incrementally, responses serialized with an
//! exact Content-Length (chunked for streams).
//!
//! The connection ([`super::conn`]) owns the bytes and the deadlines; this module only says how
//! much of a buffer makes up a head or a body, so the same input means the same thing however
//! TCP splits it (the `http_request` fuzz target checks exactly that). Requests that could be
//! read two ways (Content-Length together with Transfer-Encoding, two Content-Length headers, a
//! chunked HTTP/1.0 request) are refused: that ambiguity is what request smuggling exploits.
//!
//! Never here: routing, policies, or anything that depends on what a request means.

use super::message::{
    Body, RequestHead, Response, http_date, method, percent_decode, push_decimal, reason,
};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_SIZE: usize = 16 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest trailer line of a chunked body.
const MAX_TRAILER_LINE: usize = 8 * 1024;

/// A malformed or unacceptable request: answer with this status and message, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad {
    pub status: u16,
    pub message: &'static str,
}

const fn bad(status: u16, message: &'static str) -> Bad {
    Bad { status, message }
}

const MALFORMED: Bad = bad(400, "malformed HTTP request");
const BAD_CHUNKED: Bad = bad(400, "malformed chunked encoding");
const TOO_LARGE_HEAD: Bad = bad(431, "request header fields too large");
pub const TOO_LARGE_BODY: Bad = bad(413, "request body too large");

/// The parsed head of an HTTP/1.x request.
#[derive(Debug, Clone)]
pub struct Head {
    pub req: RequestHead,
    pub keep_alive: bool,
    /// An HTTP/1.0 request: keep-alive only when asked for, and then said in the reply.
    pub http10: bool,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub expect_continue: bool,
}

impl Head {
    /// Whether the request announces a body.
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.unwrap_or(0) > 0
    }
}

/// Parses the request head at the start of `buf`. Empty lines before a request are skipped
/// (RFC 9112 §2.2). `Ok(None)`: the head is not complete yet. `Ok(Some((head, n)))`: the head
/// took the first `n` bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Bad> {
    let mut skipped = 0;
    while buf[skipped..].starts_with(b"\r\n") {
        skipped += 2;
    }
    let rest = &buf[skipped..];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(rest) {
        Ok(httparse::Status::Complete(n)) => {
            // The limit holds however the head arrives, whole or in pieces.
            if n > MAX_HEAD_SIZE {
                return Err(TOO_LARGE_HEAD);
            }
            Ok(Some((build_head(&req)?, skipped + n)))
        }
        Ok(httparse::Status::Partial) => {
            if rest.len() >= MAX_HEAD_SIZE {
                Err(TOO_LARGE_HEAD)
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(TOO_LARGE_HEAD),
        Err(_) => Err(MALFORMED),
    }
}

/// The origin-form part of a target in absolute form (`https://host/path?q` → `/path?q`), which
/// RFC 9112 §3.2.2 says a server must accept; other targets as they are.
fn origin_form(target: &str) -> std::borrow::Cow<'_, str> {
    for scheme in ["http://", "https://"] {
        if target.len() > scheme.len()
            && target.is_char_boundary(scheme.len())
            && target[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            let rest = &target[scheme.len()..];
            return match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => rest[i..].into(),
                // `https://host?q` has an empty path, which means `/`.
                Some(i) => format!("/{}", &rest[i..]).into(),
                None => "/".into(),
            };
        }
    }
    target.into()
}

fn build_head(req: &httparse::Request<'_, '_>) -> Result<Head, Bad> {
    let method = method(req.method.ok_or(MALFORMED)?);
    let target = origin_form(req.path.ok_or(MALFORMED)?);
    let target = target.as_ref();
    let version = req.version.unwrap_or(1);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    if !path.starts_with('/') {
        return Err(MALFORMED);
    }
    let path = percent_decode(path).ok_or(bad(400, "invalid URL path escape"))?;
    let query = query.to_owned();

    // Only the framing headers matter to this server; none is copied (no allocation per header).
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&str> = None;
    let mut connection_close = version == 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if !(is("content-length") || is("transfer-encoding") || is("connection") || is("expect")) {
            continue;
        }
        let value = std::str::from_utf8(h.value)
            .map_err(|_| bad(400, "invalid header value"))?
            .trim();
        if is("content-length") {
            if content_length.is_some() {
                return Err(bad(400, "duplicate Content-Length header"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if is("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(bad(400, "duplicate Transfer-Encoding header"));
            }
            transfer_encoding = Some(value);
        } else if is("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                    connection_close = false;
                }
            }
        } else if value.eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        } else {
            return Err(bad(417, "unsupported Expect header"));
        }
    }
    let chunked = match transfer_encoding {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(bad(501, "unsupported Transfer-Encoding")),
    };
    if chunked && content_length.is_some() {
        return Err(bad(
            400,
            "request has both Content-Length and Transfer-Encoding",
        ));
    }
    if chunked && version == 0 {
        return Err(bad(400, "chunked encoding requires HTTP/1.1"));
    }
    Ok(Head {
        req: RequestHead {
            method,
            path,
            query,
        },
        keep_alive: !connection_close,
        http10: version == 0,
        content_length,
        chunked,
        expect_continue,
    })
}

/// A Content-Length value: digits only (no sign, no list), at most 19 of them.
pub fn parse_content_length(value: &str) -> Result<u64, Bad> {
    const INVALID: Bad = bad(400, "invalid Content-Length header");
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(INVALID);
    }
    value.parse().map_err(|_| INVALID)
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Bytes still to come of a Content-Length body.
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Bytes still to come of the current chunk.
    ChunkData(u64),
    /// Waiting for the CRLF after a chunk's data.
    ChunkEnd,
    /// Reading trailer lines up to the empty line.
    Trailers,
    Done,
}

/// Decodes one request body, fed in whatever pieces the network delivers.
#[derive(Debug)]
pub struct BodyReader {
    state: BodyState,
    max: usize,
    body: Vec<u8>,
}

impl BodyReader {
    /// A reader for the body `head` announces, at most `max` bytes.
    /// A Content-Length over `max` is refused at once (413), before any of the body is read.
    pub fn new(head: &Head, max: usize) -> Result<BodyReader, Bad> {
        let state = if head.chunked {
            BodyState::ChunkSize
        } else {
            let len = head.content_length.unwrap_or(0);
            if len > max as u64 {
                return Err(TOO_LARGE_BODY);
            }
            if len == 0 {
                BodyState::Done
            } else {
                BodyState::Length(len)
            }
        };
        let capacity = match state {
            BodyState::Length(n) => n as usize,
            _ => 0,
        };
        Ok(BodyReader {
            state,
            max,
            body: Vec::with_capacity(capacity),
        })
    }

    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// The complete body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Takes what it can of `input`; returns how many bytes were consumed. Bytes after the end of
    /// the body (a pipelined request) are left alone.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Bad> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                BodyState::Done => return Ok(pos),
                BodyState::Length(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        BodyState::Done
                    } else {
                        BodyState::Length(left)
                    };
                    if left > 0 {
                        return Ok(pos);
                    }
                }
                BodyState::ChunkSize => {
                    let Some(line) = line(rest, MAX_CHUNK_LINE, BAD_CHUNKED)? else {
                        return Ok(pos);
                    };
                    pos += line.len() + 2;
                    let size = chunk_size(line)?;
                    if size == 0 {
                        self.state = BodyState::Trailers;
                        continue;
                    }
                    // `body.len() <= max` holds here; adding `size` instead could overflow.
                    if size > self.max.saturating_sub(self.body.len()) as u64 {
                        return Err(TOO_LARGE_BODY);
                    }
                    self.state = BodyState::ChunkData(size);
                }
                BodyState::ChunkData(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    if left > 0 {
                        self.state = BodyState::ChunkData(left);
                        return Ok(pos);
                    }
                    self.state = BodyState::ChunkEnd;
                }
                BodyState::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = BodyState::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(pos),
                    _ => return Err(BAD_CHUNKED),
                },
                BodyState::Trailers => {
                    // Trailers are read and ignored up to the empty line.
                    let Some(line) = line(rest, MAX_TRAILER_LINE, BAD_CHUNKED)? else {
                        return Ok(pos);
                    };
                    pos += line.len() + 2;
                    if line.is_empty() {
                        self.state = BodyState::Done;
                    }
                }
            }
        }
    }
}

/// The line at the start of `input` (without its CRLF), if complete; a line longer than `max`
/// is refused whether or not its end has arrived, so the outcome does not depend on how the
/// bytes were split.
fn line(input: &[u8], max: usize, err: Bad) -> Result<Option<&[u8]>, Bad> {
    let window = &input[..input.len().min(max + 2)];
    if let Some(end) = window.windows(2).position(|w| w == b"\r\n") {
        return Ok(Some(&input[..end]));
    }
    // `max` bytes and a CR may still be a line whose LF is on its way.
    if input.len() > max + 1 {
        return Err(err);
    }
    Ok(None)
}

/// The size of a chunk from its size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Bad> {
    let size = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let size = std::str::from_utf8(size).map_err(|_| BAD_CHUNKED)?;
    let size = size.trim_matches([' ', '\t']);
    if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BAD_CHUNKED);
    }
    u64::from_str_radix(size, 16).map_err(|_| BAD_CHUNKED)
}

/// Appends a response's status line and headers to `out`, ending with the empty line, so that
/// head and body leave in one write and one TLS record.
///
/// `keep_alive`: whether the connection stays open (otherwise `Connection: close` is said);
/// `http10_keep_alive`: an HTTP/1.0 client keeps a connection only when the reply says so.
pub fn write_head(response: &Response, keep_alive: bool, http10: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(reason(response.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &response.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\n");
    match &response.body {
        Body::Empty => out.extend_from_slice(b"Content-Length: 0\r\n"),
        Body::Bytes { content_type, data } => {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_decimal(out, data.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        Body::Stream { content_type, .. } => {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\nTransfer-Encoding: chunked\r\n");
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response: head, and the body unless the request was HEAD (RFC 9110 §9.3.2:
/// the same headers as GET, no content). Stream bodies are not written here.
pub fn write_response(
    response: &Response,
    keep_alive: bool,
    http10: bool,
    head_request: bool,
    out: &mut Vec<u8>,
) {
    write_head(response, keep_alive, http10, out);
    if let Body::Bytes { data, .. } = &response.body
        && !head_request
    {
        out.extend_from_slice(data);
    }
}

/// Appends one chunk of a chunked body.
pub fn write_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let mut size = [0u8; 16];
    let mut i = size.len();
    let mut n = data.len();
    loop {
        i -= 1;
        size[i] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&size[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response that tells a client sending `Expect: 100-continue` to go on.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(data: &[u8]) -> Result<Option<(Head, usize)>, Bad> {
        parse_head(data)
    }

    fn complete(data: &[u8]) -> (Head, usize) {
        head(data).unwrap().unwrap()
    }

    /// Feeds `input` to a reader one byte at a time and all at once; both must agree.
    fn body(h: &Head, max: usize, input: &[u8]) -> Result<(Vec<u8>, usize), Bad> {
        let whole = (|| {
            let mut r = BodyReader::new(h, max)?;
            let n = r.feed(input)?;
            assert!(r.is_done(), "incomplete");
            Ok((r.into_body(), n))
        })();
        let bytewise = (|| {
            let mut r = BodyReader::new(h, max)?;
            let mut pending = Vec::new();
            let mut used = 0;
            for b in input {
                if r.is_done() {
                    break;
                }
                pending.push(*b);
                let n = r.feed(&pending)?;
                pending.drain(..n);
                used += n;
            }
            assert!(r.is_done(), "incomplete bytewise");
            Ok((r.into_body(), used))
        })();
        assert_eq!(whole, bytewise);
        whole
    }

    #[test]
    fn parses_content_length_body_and_pipelining() {
        let input: &[u8] = b"POST /v1/key/generate/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /version HTTP/1.1\r\n\r\n";
        let (h, n) = complete(input);
        assert_eq!(h.req.method, "POST");
        assert_eq!(h.req.path, "/v1/key/generate/k");
        assert!(h.keep_alive);
        let (b, used) = body(&h, 100, &input[n..]).unwrap();
        assert_eq!(b, b"{}");
        let (h2, _) = complete(&input[n + used..]);
        assert_eq!(h2.req.path, "/version");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let input = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..input.len() {
            assert!(head(&input[..cut]).unwrap().is_none(), "{cut}");
        }
        assert_eq!(complete(input).1, input.len());
        // Empty lines before a request are skipped and counted.
        assert_eq!(complete(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").1, 22);
    }

    #[test]
    fn parses_chunked_body() {
        let (h, n) = complete(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked);
        assert_eq!(n, 47);
        let input = b"4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (b, used) = body(&h, 100, input).unwrap();
        assert_eq!(b, b"{\"a\":1}");
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for req in [
            &b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET /%zz HTTP/1.1\r\n\r\n",
            b"GET /%00 HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
        ] {
            assert!(head(req).is_err(), "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn absolute_form_targets_are_accepted() {
        for (target, path, query) in [
            (
                "https://kes.example:7373/v1/key/list/a?x=1",
                "/v1/key/list/a",
                "x=1",
            ),
            ("HTTP://h/version", "/version", ""),
            ("https://h", "/", ""),
            ("https://h?q", "/", "q"),
        ] {
            let req = format!("GET {target} HTTP/1.1\r\n\r\n");
            let (h, _) = complete(req.as_bytes());
            assert_eq!((h.req.path.as_str(), h.req.query.as_str()), (path, query));
        }
    }

    #[test]
    fn body_limits() {
        let (h, _) = complete(b"POST /x HTTP/1.1\r\nContent-Length: 3000000\r\n\r\n");
        assert_eq!(BodyReader::new(&h, 1_000_000).unwrap_err().status, 413);
        let (h, _) = complete(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            body(&h, 8, b"10\r\n0123456789abcdef\r\n0\r\n\r\n")
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(body(&h, 8, b"zz\r\n").unwrap_err(), BAD_CHUNKED);
        assert_eq!(body(&h, 8, b"1\r\naXY").unwrap_err(), BAD_CHUNKED);
    }

    #[test]
    fn oversized_head_is_refused_whole_or_in_pieces() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..2000 {
            req.extend_from_slice(format!("X-H{i}: {}\r\n", "a".repeat(20)).as_bytes());
        }
        assert_eq!(head(&req).unwrap_err().status, 431);
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..30 {
            req.extend_from_slice(format!("X-H{i}: {}\r\n", "a".repeat(600)).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert!(req.len() > MAX_HEAD_SIZE);
        assert_eq!(head(&req).unwrap_err().status, 431);
        assert_eq!(head(&req[..MAX_HEAD_SIZE]).unwrap_err().status, 431);
    }

    #[test]
    fn connection_semantics() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        let (h, _) = complete(b"GET /a%2Db?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.req.path, "/a-b");
        assert_eq!(h.req.query, "x=1");
    }

    /// The reply without its `Date` line (checked for form, then dropped: it changes every second).
    fn undated(out: Vec<u8>) -> String {
        let s = String::from_utf8(out).unwrap();
        let start = s.find("\r\nDate: ").expect("a Date header") + 2;
        let end = start + s[start..].find("\r\n").unwrap() + 2;
        let date = &s[start + 6..end - 2];
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{date:?}");
        format!("{}{}", &s[..start], &s[end..])
    }

    #[test]
    fn response_serialization() {
        let r = Response::bytes(200, "application/json", b"{}\n".to_vec());
        let mut out = Vec::new();
        write_response(&r, true, false, false, &mut out);
        let out = undated(out).into_bytes();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{}\n"
        );
        let mut out = Vec::new();
        write_response(&r, true, false, true, &mut out);
        let out = undated(out).into_bytes();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n",
            "a HEAD reply has the headers of GET and no body"
        );
        let mut out = Vec::new();
        write_response(&Response::empty(200), false, false, false, &mut out);
        let out = undated(out).into_bytes();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response(&Response::empty(200), true, true, false, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Connection: keep-alive\r\n")
        );
        let mut out = Vec::new();
        write_chunk(&[b'x'; 26], &mut out);
        write_chunk(b"", &mut out);
        assert_eq!(out, [&b"1a\r\n"[..], &[b'x'; 26], b"\r\n"].concat());
    }

    /// Found while writing the http_request fuzz target (fuzz/regressions/http_request): a chunk
    /// of size 2^64-1 after a non-empty chunk overflowed the limit check (a panic in debug builds,
    /// a body limit that wrapped in release builds).
    #[test]
    fn huge_chunk_size_after_a_chunk_is_refused() {
        let input = include_bytes!("../../fuzz/regressions/http_request/chunk-size-overflow");
        // The fuzz input starts with two control bytes (segmentation, limit).
        let (h, n) = complete(&input[2..]);
        assert!(h.chunked);
        for max in [1, 1000, usize::MAX] {
            let mut r = BodyReader::new(&h, max).unwrap();
            assert_eq!(r.feed(&input[2 + n..]), Err(TOO_LARGE_BODY), "max {max}");
        }
    }

    /// Found by the http_request fuzz target (fuzz/regressions/http_request/chunk-line-length-
    /// depends-on-reads): a chunk-size line over 1024 bytes was accepted when it arrived in one
    /// read (here: its chunk then exceeded the limit, 413) but refused when it trickled in (400).
    #[test]
    fn chunk_line_limit_does_not_depend_on_reads() {
        let input = include_bytes!(
            "../../fuzz/regressions/http_request/chunk-line-length-depends-on-reads"
        );
        let (h, n) = complete(&input[2..]);
        let mut r = BodyReader::new(&h, 2).unwrap();
        assert_eq!(r.feed(&input[2 + n..]), Err(BAD_CHUNKED));
        // At the limit and one past it.
        let (h, _) = complete(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (ext, ok) in [(1024 - 2, true), (1024 - 1, false)] {
            let req = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(ext));
            assert_eq!(body(&h, 100, req.as_bytes()).is_ok(), ok, "{ext}");
        }
    }

    /// Found by the small_parsers fuzz target against a strict reference
    /// (fuzz/regressions/small_parsers/percent-decode-*): `%+1` decoded as 0x01, and a literal
    /// NUL passed when the path had no escape at all.
    #[test]
    fn percent_decode_takes_exactly_two_hex_digits_and_no_nul() {
        use super::super::message::percent_decode;
        for input in [
            &include_bytes!("../../fuzz/regressions/small_parsers/percent-decode-plus-sign")[1..],
            &include_bytes!("../../fuzz/regressions/small_parsers/percent-decode-literal-nul")[1..],
        ] {
            let text = std::str::from_utf8(input).unwrap();
            assert_eq!(percent_decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..5000 {
            let mut data = b"POST /v1/key/x HTTP/1.1\r\n".to_vec();
            let n = (x % 64) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(b"\r\n:ab0 chunkedContent-LengthTransfer-Encoding9f;"[(x % 48) as usize]);
            }
            if let Ok(Some((h, used))) = parse_head(&data)
                && let Ok(mut r) = BodyReader::new(&h, 1000)
            {
                let _ = r.feed(&data[used..]);
            }
        }
    }
}
