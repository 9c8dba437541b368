//! The HTTP/1.1 request reader (`Conn::read_head`, `Conn::read_body`) over an in-memory
//! transport, driven like the server's keep-alive loop: head, body, compact, next request.
//!
//! Input: `segmentation ‖ limit ‖ stream`. The stream is read three times: all at once, one byte
//! per `read`, and in pieces of sizes drawn from `segmentation`. `limit` picks the body limit.
//!
//! Checks: never panics; the outcome (every head, every body, the final error) is the same however
//! the stream is split into reads, so a request cannot mean one thing in one TCP segmentation and
//! another thing in the next; every accepted head is well-formed (path starts with `/`, no NUL, not
//! both chunked and Content-Length); every accepted body is within the limit and is exactly what
//! the stream says: with one byte per read the reader consumes exactly what it parses, so the
//! body can be checked against the bytes it was read from (Content-Length: those bytes; chunked:
//! an independent decoding of them, which must consume the same bytes).
#![no_main]

use kes::server::http::{Conn, Head, ReadError, Transport};
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Body limits the server uses (64 KiB for routes without a body, 1 MiB for the largest) and a few
/// small ones that make the limit reachable.
const LIMITS: [usize; 8] = [0, 1, 2, 7, 16, 300, 64 * 1024, 1 << 20];
/// The server stops reading a connection when it closes; bound the loop for pipelined input.
const MAX_REQUESTS: usize = 64;

/// A transport that hands out `data` in reads of the sizes `sizes` yields (cycled), and reports
/// how far it has been read.
struct Mem {
    data: Vec<u8>,
    pos: Rc<Cell<usize>>,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pos = self.pos.get();
        let size = if self.sizes.is_empty() {
            usize::MAX
        } else {
            self.next = (self.next + 1) % self.sizes.len();
            self.sizes[self.next]
        };
        let n = size.min(buf.len()).min(self.data.len() - pos);
        buf[..n].copy_from_slice(&self.data[pos..pos + n]);
        self.pos.set(pos + n);
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Mem {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn close_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the reader made of the stream, in a form that can be compared across runs.
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
    Closed,
    Io(io::ErrorKind),
    Bad(u16, &'static str),
}

fn head_event(h: &Head) -> Event {
    Event::Head {
        method: h.method.to_string(),
        path: h.path.clone(),
        query: h.query.clone(),
        keep_alive: h.keep_alive,
        http10: h.http10,
        content_length: h.content_length,
        chunked: h.chunked,
        expect_continue: h.expect_continue,
    }
}

fn error_event(e: ReadError) -> Event {
    match e {
        ReadError::Closed => Event::Closed,
        ReadError::Io(e) => Event::Io(e.kind()),
        ReadError::Bad(status, message) => Event::Bad(status, message),
    }
}

/// Runs the keep-alive loop; with `exact` (one byte per read) also checks each body against the
/// bytes it was read from.
fn run(data: &[u8], sizes: Vec<usize>, limit: usize, exact: bool) -> Vec<Event> {
    let pos = Rc::new(Cell::new(0));
    let mut conn = Conn::new(Mem {
        data: data.to_vec(),
        pos: pos.clone(),
        sizes,
        next: 0,
    });
    let long = Duration::from_secs(3600);
    let mut events = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let head = match conn.read_head(long, long) {
            Ok(head) => head,
            Err(e) => {
                events.push(error_event(e));
                return events;
            }
        };
        check_head(&head);
        events.push(head_event(&head));
        let body_start = pos.get();
        match conn.read_body(&head, limit, Instant::now() + long) {
            Ok(body) => {
                assert!(body.len() <= limit, "body over the limit");
                if !head.chunked {
                    assert_eq!(body.len() as u64, head.content_length.unwrap_or(0));
                }
                if exact {
                    let consumed = &data[body_start..pos.get()];
                    if head.chunked {
                        assert_eq!(
                            decode_chunked(consumed),
                            Some((body.clone(), consumed.len())),
                            "chunked body differs from an independent decoding"
                        );
                    } else {
                        assert_eq!(consumed, &body[..], "Content-Length body");
                    }
                }
                events.push(Event::Body(body));
            }
            Err(e) => {
                events.push(error_event(e));
                return events;
            }
        }
        if !head.keep_alive {
            return events;
        }
        conn.compact();
    }
    events
}

fn check_head(h: &Head) {
    assert!(!h.method.is_empty());
    assert!(h.path.starts_with('/'), "path {:?}", h.path);
    assert!(!h.path.contains('\0'));
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
    let whole = run(stream, Vec::new(), limit, false);
    let bytewise = run(stream, vec![1], limit, true);
    assert_eq!(whole, bytewise, "one read vs one byte per read");
    let pieces = run(stream, sizes(*seed), limit, false);
    assert_eq!(whole, pieces, "one read vs reads of {:?}", sizes(*seed));
});
