//! The small parsers of client input, one per first byte of the input:
//!
//! 0. `ApiKey::parse` (`kes:v1:` API keys): a parsed key prints back to the same key, and the
//!    client certificate made from it has the key's identity under our DER walk.
//! 1. `api::json::object` and its field readers (lenient request bodies): an object without floats
//!    survives re-serialisation (members in order, duplicates included); a base64 field without
//!    CR/LF re-encodes to the same text as its last member.
//! 2. `api::json::array`.
//! 3. `server::message::percent_decode` (URL paths), against a strict reference: `%` then exactly two
//!    hex digits, no NUL, UTF-8.
//! 4. `config::duration::parse` (Go durations): `parse(format(d)) == d`.
//! 5. `Identity::from_hex`: accepts exactly 64 lower-case hex digits.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kes::api::json;
use kes::auth::Identity;
use kes::auth::apikey::ApiKey;
use kes::config::duration;
use kes::server::message::percent_decode;
use libfuzzer_sys::fuzz_target;

fn api_key(text: &str) {
    let Ok(key) = ApiKey::parse(text) else {
        return;
    };
    let printed = key.to_text();
    assert!(printed.starts_with("kes:v1:"));
    let again = ApiKey::parse(&printed).expect("a printed key parses");
    assert_eq!(again.identity(), key.identity());
    assert_eq!(again.to_text(), printed);
    assert!(!format!("{key:?}").contains(&printed["kes:v1:".len()..]));
    let (cert, _) = key.client_certificate().expect("client certificate");
    assert_eq!(Identity::of_certificate(&cert), Ok(key.identity()));
}

fn json_object(body: &[u8]) {
    let Some(object) = json::object(body) else {
        return;
    };
    let text = serde_json::to_vec(&object).expect("serialise");
    // serde_json reads floats to within one ulp (no `float_roundtrip`): compare only without them.
    if !object.iter().any(|(_, v)| has_float(v)) {
        assert_eq!(
            json::object(&text),
            Some(object.clone()),
            "re-serialised object"
        );
    }
    for name in [
        "ciphertext",
        "context",
        "plaintext",
        "bytes",
        "policy",
        "allow",
    ] {
        let _ = json::string_field(&object, name);
        if let Some(bytes) = json::bytes_field(&object, name)
            && let Some(serde_json::Value::String(s)) = json::field(&object, name)
            && !s.contains(['\r', '\n'])
        {
            assert_eq!(STANDARD.encode(&bytes[..]), *s, "base64 of {name}");
        }
    }
}

fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

/// `%XX` with two hex digits; the result must be UTF-8 without NUL.
fn reference_percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |b: u8| char::from(b).to_digit(16);
            out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
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

fn durations(text: &str) {
    let Ok(d) = duration::parse(text) else {
        return;
    };
    let printed = duration::format(d);
    assert_eq!(
        duration::parse(&printed),
        Ok(d),
        "{text:?} -> {d:?} -> {printed:?}"
    );
}

fn identity(text: &str) {
    let want = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let got = Identity::from_hex(text);
    assert_eq!(got.is_ok(), want, "{text:?}");
    if let Ok(id) = got {
        assert_eq!(id.as_str(), text);
        assert!(id.is_hex());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(input);
    match (which % 6, text) {
        (0, Ok(text)) => api_key(text),
        (1, _) => json_object(input),
        (2, _) => {
            let _ = json::array(input);
        }
        (3, Ok(text)) => {
            assert_eq!(
                percent_decode(text),
                reference_percent_decode(text),
                "{text:?}"
            )
        }
        (4, Ok(text)) => durations(text),
        (5, Ok(text)) => identity(text),
        _ => {}
    }
});
