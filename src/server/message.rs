//! What travels between the protocol modules ([`super::h1`], [`super::h2`]) and the
//! [`Handler`](super::Handler): one request type and one response type for both protocols, so
//! that routing, policies, audit, metrics and error texts are the same over HTTP/1.1 and HTTP/2.
//!
//! Nothing here knows how the bytes are framed: a protocol module turns its frames into a
//! [`RequestHead`] and a body, and turns a [`Response`] back into frames.

use std::borrow::Cow;
use std::sync::Arc;

/// The parts of a request that the API looks at: no framing headers, no connection details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method; the common ones without an allocation.
    pub method: Cow<'static, str>,
    /// The decoded URL path (`%XX` resolved), as policies and routes see it.
    pub path: String,
    /// The raw query string without `?` (may be empty).
    pub query: String,
}

impl RequestHead {
    /// A HEAD request: answered like GET, without a body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Interns the methods this server routes, so that the usual request allocates nothing for it.
pub fn method(name: &str) -> Cow<'static, str> {
    match name {
        "GET" => Cow::Borrowed("GET"),
        "PUT" => Cow::Borrowed("PUT"),
        "POST" => Cow::Borrowed("POST"),
        "DELETE" => Cow::Borrowed("DELETE"),
        "HEAD" => Cow::Borrowed("HEAD"),
        other => Cow::Owned(other.to_owned()),
    }
}

/// A complete request: head and body, whichever protocol carried it.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    /// Zeroized on drop: request bodies may hold plaintext (encrypt, import).
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8 or holds NUL.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains(['%', '\0']) {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` alone would also take a sign (`%+1`).
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Splits a request target in origin form (`/path?query`) into its decoded path and raw query.
/// `None` when the path does not start with `/` or holds a bad escape.
pub fn split_target(target: &str) -> Option<(String, String)> {
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    if !raw_path.starts_with('/') {
        return None;
    }
    Some((percent_decode(raw_path)?, query.to_owned()))
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Wakes the connection that owns an [`EventSource`] when the source has something new. Cheap to
/// clone; may be called from any thread, any number of times.
#[derive(Clone)]
pub struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Waker {
        Waker(Arc::new(f))
    }

    pub fn wake(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// The body of a long-lived streamed reply (the `/v1/log/*` subscriptions). The connection pulls
/// from it when woken; it never blocks and never pins a thread.
pub trait EventSource: Send {
    /// Appends whatever is ready to `out`. Returns false once the stream has ended for good.
    fn poll(&mut self, out: &mut Vec<u8>) -> bool;
    /// Called once, before the first `poll`: `waker` is to be woken whenever data becomes ready
    /// after a `poll` that found none.
    fn set_waker(&mut self, waker: Waker);
}

/// A response body.
pub enum Body {
    Empty,
    /// Zeroized on drop: replies may hold plaintext data keys.
    Bytes {
        content_type: &'static str,
        data: zeroize::Zeroizing<Vec<u8>>,
    },
    /// A long-lived stream (log subscriptions): HTTP/1.1 sends it with chunked encoding, HTTP/2 as
    /// DATA frames, until the client goes away or the server shuts down.
    Stream {
        content_type: &'static str,
        source: Box<dyn EventSource>,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes { content_type, data } => f
                .debug_struct("Bytes")
                .field("content_type", content_type)
                .field("len", &data.len())
                .finish(),
            Body::Stream { content_type, .. } => f
                .debug_struct("Stream")
                .field("content_type", content_type)
                .finish(),
        }
    }
}

/// An HTTP response, independent of the protocol that carries it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Extra headers (names in their HTTP/1.1 spelling; HTTP/2 sends them in lower case).
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn bytes(status: u16, content_type: &'static str, data: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes {
                content_type,
                data: zeroize::Zeroizing::new(data),
            },
        }
    }

    pub fn stream(
        status: u16,
        content_type: &'static str,
        source: Box<dyn EventSource>,
    ) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Stream {
                content_type,
                source,
            },
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// The decimal digits of `n`, written into the end of `buf` (no formatting machinery and no
/// allocation: this runs for every reply).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends the decimal digits of `n`.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// The `Date` of a reply (RFC 9110 §6.6.1: a server with a clock sends one in every reply, as the
/// Go server does): the current second as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Formatted at most once a second per thread; the rest of the time a clock read and a copy.
pub fn http_date() -> [u8; 29] {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let (secs, date) = last.get();
        if secs == now {
            return date;
        }
        let date = format_http_date(now);
        last.set((now, date));
        date
    })
}

/// `secs` since the Unix epoch as an IMF-fixdate (years 1970 to 9999).
fn format_http_date(secs: u64) -> [u8; 29] {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let text = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        &t.weekday().to_string()[..3],
        t.day(),
        &t.month().to_string()[..3],
        t.year().clamp(0, 9999),
        t.hour(),
        t.minute(),
        t.second()
    );
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    if text.len() == out.len() {
        out.copy_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        for (secs, date) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            assert_eq!(std::str::from_utf8(&format_http_date(secs)).unwrap(), date);
        }
        // Every day of 1970 to 2200 against the time crate.
        for day in 0..(230 * 366) {
            let secs = day * 86_400 + 3_723;
            let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap();
            let expected = format!(
                "{}, {:02} {} {:04} 01:02:03 GMT",
                &t.weekday().to_string()[..3],
                t.day(),
                &t.month().to_string()[..3],
                t.year()
            );
            assert_eq!(
                std::str::from_utf8(&format_http_date(secs)).unwrap(),
                expected
            );
        }
        let now = http_date();
        assert!(now.ends_with(b" GMT") && now[3] == b',', "{now:?}");
    }

    #[test]
    fn percent_decode_rules() {
        for bad in ["/%+1", "/%-1", "/% 1", "/%1", "/%", "/a\0b", "/%00", "/%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
        assert_eq!(percent_decode("/a%2Db%2fc").as_deref(), Some("/a-b/c"));
        assert_eq!(percent_decode("/caf%C3%A9").as_deref(), Some("/café"));
        assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
    }

    #[test]
    fn targets() {
        assert_eq!(
            split_target("/a%2Db?x=1"),
            Some(("/a-b".to_owned(), "x=1".to_owned()))
        );
        assert_eq!(split_target("x"), None);
        assert_eq!(split_target("*"), None);
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
