//! The request bodies of generate, encrypt, decrypt and hmac: `api::json::crypto_fields` has a
//! fast path (a borrowed, typed decode of the usual body) and a lenient path (Go's decoding rules
//! over a JSON tree). Differential check: for every input, the result must be what the lenient
//! path alone gives, field for field, and "invalid" for exactly the same inputs.
#![no_main]

use kes::api::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let fast = json::crypto_fields(body);
    let lenient = if body.iter().all(u8::is_ascii_whitespace) {
        Some([Vec::new(), Vec::new(), Vec::new(), Vec::new()])
    } else {
        json::object(body).and_then(|obj| {
            Some([
                json::bytes_field(&obj, "context")?.to_vec(),
                json::bytes_field(&obj, "plaintext")?.to_vec(),
                json::bytes_field(&obj, "ciphertext")?.to_vec(),
                json::bytes_field(&obj, "message")?.to_vec(),
            ])
        })
    };
    match (fast, lenient) {
        (None, None) => {}
        (Some(f), Some(l)) => {
            assert_eq!(f.context.to_vec(), l[0], "context");
            assert_eq!(f.plaintext.to_vec(), l[1], "plaintext");
            assert_eq!(f.ciphertext.to_vec(), l[2], "ciphertext");
            assert_eq!(f.message.to_vec(), l[3], "message");
        }
        (f, l) => panic!("fast path {} but lenient path {}", ok(f.is_some()), ok(l.is_some())),
    }
});

fn ok(b: bool) -> &'static str {
    if b { "accepted" } else { "refused" }
}
