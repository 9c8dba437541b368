//! The HTTP/1.1 request parser (`server::h1::parse_head`, `server::h1::BodyReader`), driven like
//! the server's connections drive it: bytes arrive in pieces, each piece is appended to a buffer,
//! and the parser takes whole heads and as much of a body as it can, request after request.
//!
//! Input: `segmentation ‖ limit ‖ stream`. The stream is fed three times: all at once, one byte
//! at a time, and in pieces of sizes drawn from `segmentation`. `limit` picks the body limit.
//!
//! Checks: never panics; the outcome (every head, every body, the final error or the state the
//! input ended in) is the same however the stream is split, so a request cannot mean one thing in
//! one TCP segmentation and another thing in the next; every accepted head is well-formed (path
//! starts with `/`, no NUL, not both chunked and Content-Length); every accepted body is within
//! the limit and is exactly what the stream says: the parser consumes exactly what it parses, so
//! each body is checked against the bytes it was read from (Content-Length: those bytes; chunked:
//! an independent decoding of them, which must consume the same bytes).
#![no_main]

use kes::server::h1::{Bad, BodyReader, Head, parse_head};
use libfuzzer_sys::fuzz_target;

/// Body limits the server uses (64 KiB for routes without a body, 1 MiB for the largest) and a few
/// small ones that make the limit reachable.
const LIMITS: [usize; 8] = [0, 1, 2, 7, 16, 300, 64 * 1024, 1 << 20];
/// The server stops reading a connection when it closes; bound the loop for pipelined input.
const MAX_REQUESTS: usize = 64;

/// What the parser made of the stream, in a form that can be compared across runs.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Head {
        method: String,
        path: String,
        query: String,
        keep_alive: bool,
        http10: bool,
        content_length: Option<u64>,
        chunked: bool,
        expect_continue: bool,
    },
    Body(Vec<u8>),
    /// The input ended inside a head (true) or a body (false).
    Incomplete(bool),
    Bad(u16, &'static str),
}

fn head_event(h: &Head) -> Event {
    Event::Head {
        method: h.req.method.to_string(),
        path: h.req.path.clone(),
        query: h.req.query.clone(),
        keep_alive: h.keep_alive,
        http10: h.http10,
        content_length: h.content_length,
        chunked: h.chunked,
        expect_continue: h.expect_continue,
    }
}

fn bad(b: Bad) -> Event {
    Event::Bad(b.status, b.message)
}

/// Feeds `data` in pieces of the sizes `sizes` yields (cycled; empty: all at once) and parses
/// requests as the connection does.
fn run(data: &[u8], sizes: &[usize], limit: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut next = 0;
    let mut pos = 0;
    // The body being read: its head, reader, and where it started.
    let mut body: Option<(Head, BodyReader, usize)> = None;
    let mut requests = 0;
    loop {
        // Parse all that the buffer holds.
        loop {
            match body.take() {
                None => match parse_head(&buf[pos..]) {
                    Err(b) => {
                        events.push(bad(b));
                        return events;
                    }
                    Ok(None) => break,
                    Ok(Some((head, n))) => {
                        pos += n;
                        check_head(&head);
                        events.push(head_event(&head));
                        match BodyReader::new(&head, limit) {
                            Err(b) => {
                                events.push(bad(b));
                                return events;
                            }
                            Ok(reader) => body = Some((head, reader, pos)),
                        }
                    }
                },
                Some((head, mut reader, start)) => {
                    match reader.feed(&buf[pos..]) {
                        Err(b) => {
                            events.push(bad(b));
                            return events;
                        }
                        Ok(n) => pos += n,
                    }
                    if !reader.is_done() {
                        body = Some((head, reader, start));
                        break;
                    }
                    let got = reader.into_body();
                    assert!(got.len() <= limit, "body over the limit");
                    let consumed = &buf[start..pos];
                    if head.chunked {
                        assert_eq!(
                            decode_chunked(consumed),
                            Some((got.clone(), consumed.len())),
                            "chunked body differs from an independent decoding"
                        );
                    } else {
                        assert_eq!(got.len() as u64, head.content_length.unwrap_or(0));
                        assert_eq!(consumed, &got[..], "Content-Length body");
                    }
                    events.push(Event::Body(got));
                    requests += 1;
                    if !head.keep_alive || requests == MAX_REQUESTS {
                        return events;
                    }
                }
            }
        }
        if fed == data.len() {
            events.push(Event::Incomplete(body.is_none()));
            return events;
        }
        let size = if sizes.is_empty() {
            usize::MAX
        } else {
            next = (next + 1) % sizes.len();
            sizes[next]
        };
        let n = size.min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
    }
}

fn check_head(h: &Head) {
    assert!(!h.req.method.is_empty());
    assert!(h.req.path.starts_with('/'), "path {:?}", h.req.path);
    assert!(!h.req.path.contains('\0'));
    assert!(!(h.chunked && h.content_length.is_some()));
    assert!(!(h.chunked && h.http10), "chunked needs HTTP/1.1");
}

/// An independent, strict reading of a chunked body (RFC 9112 §7.1) at the start of `input`:
/// `size[;ext] CRLF data CRLF … 0[;ext] CRLF trailer-lines CRLF`. Returns the body and the number
/// of bytes it spans.
fn decode_chunked(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    fn line(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = input.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    }
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_line, next) = line(input, at)?;
        let size_text = match size_line.iter().position(|&b| b == b';') {
            Some(i) => &size_line[..i],
            None => size_line,
        };
        let size_text = std::str::from_utf8(size_text)
            .ok()?
            .trim_matches([' ', '\t']);
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let size = usize::from_str_radix(size_text, 16).ok()?;
        at = next;
        if size == 0 {
            loop {
                let (trailer, next) = line(input, at)?;
                at = next;
                if trailer.is_empty() {
                    return Some((body, at));
                }
            }
        }
        body.extend_from_slice(input.get(at..at.checked_add(size)?)?);
        at += size;
        if input.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

/// Read sizes from the segmentation byte: a short cycle of sizes between 1 and 64.
fn sizes(seed: u8) -> Vec<usize> {
    let mut x = u32::from(seed) | 0x100;
    (0..7)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + ((x >> 16) as usize % 64)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [seed, limit, stream @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];
    let whole = run(stream, &[], limit);
    let bytewise = run(stream, &[1], limit);
    assert_eq!(whole, bytewise, "one read vs one byte per read");
    let pieces = run(stream, &sizes(*seed), limit);
    assert_eq!(whole, pieces, "one read vs reads of {:?}", sizes(*seed));
});
