//! The HTTP/2 frame codec (`server::h2::frame`): `next_frame` splits a byte stream into frames the
//! way a connection does, and `decode` decodes each one.
//!
//! Input: `limit ‖ segmentation ‖ stream`. `limit` picks our SETTINGS_MAX_FRAME_SIZE, small values
//! included so that short inputs reach the oversize path. The stream is split three times: all at
//! once, fed one byte at a time into a buffer that frames are taken out of, and fed in pieces of
//! sizes drawn from `segmentation`.
//!
//! Checks: never panics; the three feedings give the same frames and end the same way (the same
//! oversize error, or the same bytes left waiting), so a frame cannot mean one thing in one TCP
//! segmentation and another in the next; every frame found has its header's length, within the
//! limit; an oversize error comes from a header whose length is over the limit. Every decoded
//! frame keeps the promises of its docs (31-bit stream identifiers, no stream depending on itself,
//! valid settings, a window increment of 1 to 2^31-1, padding stripped within the payload, stream
//! errors only on the frame's own non-zero stream, unknown types always ignored), and where an
//! encoder exists, re-encoding it and decoding the result gives the same value. A HEADERS frame is
//! re-encoded with a frame size from `segmentation` into HEADERS + CONTINUATIONs whose fragments
//! join to the original.
#![no_main]

use kes::server::h2::frame::{
    DEFAULT_MAX_FRAME_SIZE, ErrorCode, Frame, FrameError, HEADER_LEN, Header,
    MAX_ALLOWED_FRAME_SIZE, MAX_WINDOW, Next, check_length, decode, encode_data, encode_goaway,
    encode_headers, encode_ping, encode_rst_stream, encode_settings, encode_settings_ack,
    encode_window_update, flag, headers_fragment, kind, next_frame, setting,
};
use libfuzzer_sys::fuzz_target;

/// SETTINGS_MAX_FRAME_SIZE values: the default, the largest, and small ones that fuzz inputs
/// (a few KiB) can exceed.
const LIMITS: [u32; 8] = [
    DEFAULT_MAX_FRAME_SIZE,
    MAX_ALLOWED_FRAME_SIZE,
    0,
    1,
    8,
    9,
    64,
    1000,
];

/// How a stream ended up split, comparable across feedings.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(Header, Vec<u8>),
    TooLarge(FrameError),
    /// Bytes left in the buffer, waiting for more.
    Waiting(Vec<u8>),
}

/// The whole stream in one buffer; also checks and decodes every frame.
fn whole(stream: &[u8], max: u32, split: u32) -> Vec<Event> {
    let mut events = Vec::new();
    let mut rest = stream;
    loop {
        match next_frame(rest, max) {
            Next::Frame(h, payload, used) => {
                assert_eq!(used, HEADER_LEN + payload.len());
                assert_eq!(h.length as usize, payload.len());
                assert!(h.length <= max);
                assert_eq!(&rest[HEADER_LEN..used], payload);
                check_frame(&h, payload, split);
                events.push(Event::Frame(h, payload.to_vec()));
                rest = &rest[used..];
            }
            Next::NeedMore => {
                if let Some(head) = rest.first_chunk::<HEADER_LEN>() {
                    let h = Header::parse(head);
                    assert!(h.length <= max && rest.len() < HEADER_LEN + h.length as usize);
                }
                events.push(Event::Waiting(rest.to_vec()));
                return events;
            }
            Next::TooLarge(e) => {
                let head = rest
                    .first_chunk::<HEADER_LEN>()
                    .expect("TooLarge without a header");
                let h = Header::parse(head);
                assert!(h.length > max);
                assert_eq!(check_length(&h, max), Err(e));
                events.push(Event::TooLarge(e));
                return events;
            }
        }
    }
}

/// The stream fed into a growing buffer in pieces of `sizes` (cycled), frames taken out of its
/// front as soon as they are complete.
fn fed(stream: &[u8], max: u32, sizes: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0;
    let mut next_size = sizes.iter().cycle();
    while at < stream.len() {
        let n = (*next_size.next().unwrap()).min(stream.len() - at);
        buf.extend_from_slice(&stream[at..at + n]);
        at += n;
        loop {
            match next_frame(&buf, max) {
                Next::Frame(h, payload, used) => {
                    events.push(Event::Frame(h, payload.to_vec()));
                    buf.drain(..used);
                }
                Next::NeedMore => break,
                Next::TooLarge(e) => {
                    events.push(Event::TooLarge(e));
                    return events;
                }
            }
        }
    }
    events.push(Event::Waiting(buf));
    events
}

/// The one frame in `bytes`, decoded.
fn single(bytes: &[u8]) -> Frame<'_> {
    match next_frame(bytes, MAX_ALLOWED_FRAME_SIZE) {
        Next::Frame(h, payload, used) => {
            assert_eq!(used, bytes.len(), "an encoder wrote more than one frame");
            decode(&h, payload).expect("an encoded frame does not decode")
        }
        other => panic!("an encoder wrote no whole frame: {other:?}"),
    }
}

fn check_frame(h: &Header, payload: &[u8], split: u32) {
    assert!(h.stream_id <= MAX_WINDOW);
    let frame = match decode(h, payload) {
        Ok(frame) => frame,
        Err(e) => {
            assert!(h.kind <= kind::CONTINUATION, "an unknown type refused: {e}");
            match e {
                FrameError::Stream(id, _, _) => {
                    assert_eq!(id, h.stream_id);
                    assert_ne!(id, 0, "a stream error on stream 0");
                    assert!(
                        [
                            kind::DATA,
                            kind::HEADERS,
                            kind::PRIORITY,
                            kind::WINDOW_UPDATE
                        ]
                        .contains(&h.kind),
                        "a stream error on frame type {}",
                        h.kind
                    );
                    if h.kind == kind::HEADERS {
                        let fragment = headers_fragment(h, payload)
                            .expect("a HEADERS stream error without a fragment");
                        assert!(payload.len() >= fragment.len() + 5);
                    }
                }
                FrameError::Connection(code, _) => {
                    assert_ne!(
                        code,
                        ErrorCode::InternalError,
                        "the payload has the header's length"
                    );
                    if h.kind == kind::HEADERS {
                        assert_eq!(headers_fragment(h, payload), Err(e));
                    }
                }
            }
            return;
        }
    };
    let mut out = Vec::new();
    match frame {
        Frame::Data {
            stream_id,
            end_stream,
            data,
            flow_len,
        } => {
            assert_ne!(stream_id, 0);
            assert_eq!(flow_len, h.length);
            assert!(data.len() <= payload.len());
            if h.flags & flag::PADDED == 0 {
                assert_eq!(data, payload);
            } else {
                assert_eq!(data, &payload[1..1 + data.len()]);
                assert_eq!(usize::from(payload[0]), payload.len() - 1 - data.len());
            }
            encode_data(&mut out, stream_id, end_stream, data);
            let flow_len = data.len() as u32;
            assert_eq!(
                single(&out),
                Frame::Data {
                    stream_id,
                    end_stream,
                    data,
                    flow_len
                }
            );
        }
        Frame::Headers {
            stream_id,
            end_stream,
            priority,
            fragment,
            ..
        } => {
            assert_ne!(stream_id, 0);
            if let Some(p) = priority {
                assert_ne!(p.dependency, stream_id);
                assert!(p.dependency <= MAX_WINDOW);
            }
            assert_eq!(headers_fragment(h, payload), Ok(fragment));
            check_header_block(stream_id, end_stream, fragment, split);
        }
        Frame::Priority {
            stream_id,
            priority,
        } => {
            assert_ne!(stream_id, 0);
            assert_ne!(priority.dependency, stream_id);
        }
        Frame::RstStream { stream_id, code } => {
            assert_ne!(stream_id, 0);
            assert_eq!(ErrorCode::from_u32(code.as_u32()), code);
            encode_rst_stream(&mut out, stream_id, code);
            assert_eq!(single(&out), frame);
        }
        Frame::Settings { ack, params } => {
            assert_eq!(params.len() * 6, payload.len());
            if ack {
                assert!(params.is_empty());
                encode_settings_ack(&mut out);
            } else {
                let params: Vec<(u16, u32)> = params.iter().collect();
                for &(id, value) in &params {
                    match id {
                        setting::ENABLE_PUSH => assert!(value <= 1),
                        setting::INITIAL_WINDOW_SIZE => assert!(value <= MAX_WINDOW),
                        setting::MAX_FRAME_SIZE => assert!(
                            (DEFAULT_MAX_FRAME_SIZE..=MAX_ALLOWED_FRAME_SIZE).contains(&value)
                        ),
                        _ => {}
                    }
                }
                encode_settings(&mut out, &params);
            }
            assert_eq!(single(&out), frame);
        }
        Frame::PushPromise { stream_id } => assert_ne!(stream_id, 0),
        Frame::Ping { ack, data } => {
            encode_ping(&mut out, ack, data);
            assert_eq!(single(&out), frame);
        }
        Frame::GoAway {
            last_stream_id,
            code,
            debug,
        } => {
            assert!(last_stream_id <= MAX_WINDOW);
            encode_goaway(&mut out, last_stream_id, code, debug);
            // The encoder cuts debug data to fit 2^14; fuzz inputs are shorter.
            let max_debug = DEFAULT_MAX_FRAME_SIZE as usize - 8;
            let debug = &debug[..debug.len().min(max_debug)];
            assert_eq!(
                single(&out),
                Frame::GoAway {
                    last_stream_id,
                    code,
                    debug
                }
            );
        }
        Frame::WindowUpdate {
            stream_id,
            increment,
        } => {
            assert!((1..=MAX_WINDOW).contains(&increment));
            encode_window_update(&mut out, stream_id, increment);
            assert_eq!(single(&out), frame);
        }
        Frame::Continuation {
            stream_id,
            fragment,
            ..
        } => {
            assert_ne!(stream_id, 0);
            assert_eq!(fragment, payload);
        }
        Frame::Unknown { kind, stream_id } => {
            assert!(kind > kind::CONTINUATION);
            assert_eq!(stream_id, h.stream_id);
        }
    }
}

/// `encode_headers` splits `block` into frames of at most `split` bytes (taken as 1 to 2^24-1),
/// which decode to HEADERS then CONTINUATIONs on the same stream, END_HEADERS on the last only,
/// and whose fragments join to `block`.
fn check_header_block(stream_id: u32, end_stream: bool, block: &[u8], split: u32) {
    let mut out = Vec::new();
    encode_headers(&mut out, stream_id, end_stream, block, split);
    let size = split.clamp(1, MAX_ALLOWED_FRAME_SIZE) as usize;
    let count = block.len().div_ceil(size).max(1);
    let mut rest = &out[..];
    let mut joined = Vec::new();
    for i in 0..count {
        let Next::Frame(h, payload, used) = next_frame(rest, MAX_ALLOWED_FRAME_SIZE) else {
            panic!("encode_headers wrote {i} frames, not {count}");
        };
        assert!(h.length as usize <= size);
        let last = i + 1 == count;
        match decode(&h, payload) {
            Ok(Frame::Headers {
                stream_id: s,
                end_stream: e,
                end_headers,
                priority: None,
                fragment,
            }) if i == 0 => {
                assert_eq!((s, e, end_headers), (stream_id, end_stream, last));
                joined.extend_from_slice(fragment);
            }
            Ok(Frame::Continuation {
                stream_id: s,
                end_headers,
                fragment,
            }) if i > 0 => {
                assert_eq!((s, end_headers), (stream_id, last));
                assert!(!fragment.is_empty());
                joined.extend_from_slice(fragment);
            }
            other => panic!("frame {i} of a header block: {other:?}"),
        }
        rest = &rest[used..];
    }
    assert!(
        rest.is_empty(),
        "encode_headers wrote more than {count} frames"
    );
    assert_eq!(joined, block);
}

/// Piece sizes from the segmentation byte: a short cycle of sizes between 1 and 64.
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
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max = LIMITS[usize::from(*limit) % LIMITS.len()];
    // Header block frame sizes: the limit, or 0 to 15 (0 is taken as 1).
    let split = if seed & 0x80 != 0 {
        max
    } else {
        u32::from(seed & 0x0f)
    };
    let all = whole(stream, max, split);
    assert_eq!(all, fed(stream, max, &[1]), "whole vs one byte at a time");
    assert_eq!(
        all,
        fed(stream, max, &sizes(*seed)),
        "whole vs pieces of {:?}",
        sizes(*seed)
    );
});
