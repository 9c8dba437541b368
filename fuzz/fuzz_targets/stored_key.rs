//! Stored key values (§6.1) as a keystore returns them: base64 protobuf or legacy JSON.
//!
//! Input: `mode ‖ value`. Mode bit 0 clear: `value` is the stored value as is (JSON, base64,
//! garbage). Set: `value` is a raw protobuf message that is base64-encoded first, so that the
//! fuzzer mutates protobuf structure rather than base64 text.
//!
//! Checks: never panics; a decoded protobuf value round-trips (`decode(encode(x)) == x`, and
//! `encode` is canonical: re-encoding gives the same text); a decoded legacy value came from JSON
//! and, when it names no algorithm, is AES256; `Debug` never shows key bytes.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kes::crypto::{Algorithm, KeyVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, value)) = data.split_first() else {
        return;
    };
    let encoded;
    let value = if mode & 1 == 1 {
        encoded = STANDARD.encode(value).into_bytes();
        &encoded[..]
    } else {
        value
    };
    let Ok(kv) = KeyVersion::decode(value) else {
        return;
    };

    let debug = format!("{kv:?}");
    assert!(debug.contains("<redacted>"));
    for secret in std::iter::once(kv.key.bytes()).chain(kv.hmac_key.as_ref().map(|h| h.bytes())) {
        assert!(
            !debug.contains(&format!("{secret:?}")),
            "Debug shows key bytes"
        );
        assert!(
            !debug.contains(&STANDARD.encode(secret)),
            "Debug shows key bytes"
        );
    }

    match &kv.hmac_key {
        Some(_) => {
            assert!(kv.algorithm_explicit);
            let text = kv.encode();
            assert!(text.iter().all(u8::is_ascii_graphic));
            let back = KeyVersion::decode(&text).expect("decode(encode(x))");
            assert_eq!(back, kv, "decode(encode(x)) == x");
            assert_eq!(back.encode(), text, "encode is canonical");
        }
        None => {
            // Only the legacy JSON forms have no HMAC key.
            assert_eq!(value.trim_ascii().first(), Some(&b'{'));
            if !kv.algorithm_explicit {
                assert_eq!(kv.key.algorithm(), Algorithm::Aes256);
            }
            // Its encoding lacks the HMAC key, which decode (like the Go server) refuses.
            assert!(KeyVersion::decode(&kv.encode()).is_err());
        }
    }
});
