//! JSON the way the Go server reads and writes it: request bodies decoded leniently (first JSON
//! value only, field names matched case-insensitively, `null` = empty, base64 ignoring CR/LF) and
//! timestamps in RFC 3339 with nanoseconds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Parses the first JSON value of a body as an object; trailing bytes are ignored (as in Go).
/// An empty body is an empty object.
pub fn object(body: &[u8]) -> Option<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Object(map))) => Some(map),
        Some(Ok(Value::Null)) => Some(Map::new()),
        _ => None,
    }
}

/// The base64 fields of a crypto request (generate, encrypt, decrypt, hmac); absent or `null`
/// fields are empty. `version` is accepted and ignored (§2.3).
#[derive(Default)]
pub struct CryptoFields {
    pub context: Zeroizing<Vec<u8>>,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext: Zeroizing<Vec<u8>>,
    pub message: Zeroizing<Vec<u8>>,
}

/// The common shape of crypto bodies, borrowed from the request: exact lower-case names, no
/// escapes inside the strings, one JSON value. Anything else falls back to the lenient path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastCrypto<'a> {
    #[serde(borrow, default)]
    context: Option<&'a str>,
    #[serde(borrow, default)]
    plaintext: Option<&'a str>,
    #[serde(borrow, default)]
    ciphertext: Option<&'a str>,
    #[serde(borrow, default)]
    message: Option<&'a str>,
    // A string (what clients send) or null; any other value takes the lenient path. Not
    // `IgnoredAny`: serde_json skips a value without checking it as the lenient path's JSON tree
    // does (invalid UTF-8 in a nested string, a number out of range), and the two paths must
    // accept exactly the same bodies (found by the crypto_body fuzz target).
    #[serde(borrow, default)]
    #[allow(dead_code)]
    version: Option<&'a str>,
}

/// Decodes a crypto request body; `None` when it is not a JSON object or a field is not valid
/// base64. The usual body (what MinIO and the Go SDK send) takes a fast path that builds no
/// JSON tree; any other shape Go accepts (other letter case, escapes, trailing bytes, unknown
/// fields) takes the lenient path and gives the same result.
pub fn crypto_fields(body: &[u8]) -> Option<CryptoFields> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(CryptoFields::default());
    }
    // (serde would also read a struct from a JSON array: only objects take the fast path.)
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_object && let Ok(fast) = serde_json::from_slice::<FastCrypto<'_>>(body) {
        let decode = |f: Option<&str>| match f {
            None => Some(Zeroizing::new(Vec::new())),
            Some(s) => decode_base64(s),
        };
        return Some(CryptoFields {
            context: decode(fast.context)?,
            plaintext: decode(fast.plaintext)?,
            ciphertext: decode(fast.ciphertext)?,
            message: decode(fast.message)?,
        });
    }
    let obj = object(body)?;
    Some(CryptoFields {
        context: bytes_field(&obj, "context")?,
        plaintext: bytes_field(&obj, "plaintext")?,
        ciphertext: bytes_field(&obj, "ciphertext")?,
        message: bytes_field(&obj, "message")?,
    })
}

/// Parses the first JSON value of a body as an array of objects.
pub fn array(body: &[u8]) -> Option<Vec<Value>> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Array(items))) => Some(items),
        Some(Ok(Value::Null)) => Some(Vec::new()),
        _ => None,
    }
}

/// A field by name: exact match first, then case-insensitive (Go's decoder rule).
pub fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A base64 (`[]byte`) field: missing or null → empty; not a string or bad base64 → None.
pub fn bytes_field(obj: &Map<String, Value>, name: &str) -> Option<Zeroizing<Vec<u8>>> {
    match field(obj, name) {
        None | Some(Value::Null) => Some(Zeroizing::new(Vec::new())),
        Some(Value::String(s)) => decode_base64(s),
        Some(_) => None,
    }
}

/// A string field: missing or null → empty; not a string → None.
pub fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match field(obj, name) {
        None | Some(Value::Null) => Some(""),
        Some(Value::String(s)) => Some(s),
        Some(_) => None,
    }
}

/// Standard padded base64, ignoring `\r` and `\n` like Go's decoder.
pub fn decode_base64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let decoded = if s.contains(['\r', '\n']) {
        let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        STANDARD.decode(cleaned.as_bytes())
    } else {
        STANDARD.decode(s.as_bytes())
    };
    decoded.ok().map(Zeroizing::new)
}

pub fn encode_base64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Go's `time.RFC3339Nano` in UTC: fraction with trailing zeros removed; zero time for `None`.
pub fn go_time(t: Option<OffsetDateTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Serializes a reply as one JSON value followed by `\n`.
pub fn reply<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_lenient_paths_agree() {
        let bodies: [&[u8]; 12] = [
            br#"{"context":"e30=","ciphertext":"aGVsbG8="}"#,
            br#"{"Context":"e30=","CipherText":"aGVsbG8="}"#,
            br#"{"context":"e30\u003d","ciphertext":"aGVsbG8="}"#,
            br#"{"context":"e30=","ciphertext":"aGVsbG8="} trailing"#,
            br#"{"context":"e30=","unknown":1,"ciphertext":"aGVsbG8="}"#,
            br#"{"context":null,"ciphertext":"aGVsbG8=","version":"v1"}"#,
            br#"{"plaintext":"aGVs\nbG8="}"#,
            br#"{"message":"aGVsbG8="}"#,
            b"null",
            b"",
            br#"{"context":"e30=","context":"aGVsbG8="}"#,
            br#"{"version":{"a":[1,2]},"plaintext":"aGVsbG8="}"#,
        ];
        for body in bodies {
            let fields =
                crypto_fields(body).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(body)));
            let obj = object(body).unwrap();
            for (name, got) in [
                ("context", &fields.context),
                ("plaintext", &fields.plaintext),
                ("ciphertext", &fields.ciphertext),
                ("message", &fields.message),
            ] {
                assert_eq!(
                    &got[..],
                    &bytes_field(&obj, name).unwrap()[..],
                    "{name} of {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        for bad in [
            &b"{"[..],
            b"[1]",
            br#"{"context":5}"#,
            br#"{"context":"!!"}"#,
            br#"{"ciphertext":"a"}"#,
            // invalid UTF-8 or a number out of range inside the ignored `version` (found by
            // fuzzing: the fast path accepted them, the lenient path refuses them).
            b"{\"version\":{\"asse\xe2mge\":\t\t\t5}}",
            b"{\"version\":\"\xff\",\"plaintext\":\"aGVsbG8=\"}",
            br#"{"version":5e33333333111}"#,
        ] {
            assert!(
                crypto_fields(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lenient_decoding() {
        let obj = object(b"{\"Plaintext\":\"aGVs\\nbG8=\",\"x\":1} trailing").unwrap();
        assert_eq!(&bytes_field(&obj, "plaintext").unwrap()[..], b"hello");
        assert_eq!(bytes_field(&obj, "context").unwrap().len(), 0);
        assert!(object(b"[1]").is_none());
        assert!(object(b"{").is_none());
        assert!(object(b"").unwrap().is_empty());
        let obj = object(b"{\"context\":5}").unwrap();
        assert!(bytes_field(&obj, "context").is_none());
        let obj = object(b"{\"context\":\"!!\"}").unwrap();
        assert!(bytes_field(&obj, "context").is_none());
    }

    #[test]
    fn go_time_format() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_705_055_960_886_816_000).unwrap();
        assert_eq!(go_time(Some(t)), "2024-01-12T10:39:20.886816Z");
        let t = OffsetDateTime::from_unix_timestamp(1_705_055_960).unwrap();
        assert_eq!(go_time(Some(t)), "2024-01-12T10:39:20Z");
    }
}
