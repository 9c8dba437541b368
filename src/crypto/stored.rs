//! Stored key values (§6.1): the bytes a keystore (file, Vault secret, cloud secret) holds for one
//! key name. They are identical in every keystore and must stay readable by the Go server and
//! vice versa.
//!
//! * Current form, written by [`KeyVersion::encode`]: ASCII standard base64 of the protobuf
//!   `miniohq.kms.KeyVersion` (secret key, HMAC key, creation time, creator).
//! * Legacy JSON, only ever read: `{"bytes":…}` (≤ v0.19.1) and `{"bytes","algorithm",
//!   "created_at","created_by","version"}` (v0.19.2 … 2023). Which form a value has is decided
//!   as the Go server decides it: a value that is valid JSON is legacy.
//!
//! A stored value *is* key material. This module must never log it, never put any part of it
//! into an error message (errors say what is wrong, not what was there), and wipes every
//! intermediate buffer it decodes into.

use super::gojson::{self, Field, Object};
use super::protobuf::{self, Fields, Value, WireError};
use super::{Algorithm, Error, HmacKey, SecretKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// Protobuf enum values of §6.1.
const TYPE_AES256: u32 = 1;
const TYPE_CHACHA20: u32 = 2;
const HASH_SHA256: u32 = 1;

/// What a keystore holds for one key name.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub key: SecretKey,
    /// `None` for legacy JSON-stored keys (HMAC then answers 409).
    pub hmac_key: Option<HmacKey>,
    /// `None` when the stored value has no creation time (legacy keys).
    pub created_at: Option<OffsetDateTime>,
    /// Identity of the creator; empty when unknown.
    pub created_by: String,
    /// True when the stored value named the key's algorithm (always, except legacy `{"bytes":…}`).
    pub algorithm_explicit: bool,
}

impl KeyVersion {
    /// The current stored form: ASCII base64 of the protobuf `KeyVersion`.
    ///
    /// The result contains the key; treat it as secret. Fields are written in field-number order
    /// with proto3 defaults omitted, which is what Go's `proto.Marshal` writes, so the same
    /// `KeyVersion` gives the same bytes in both servers. `hmac_key` is always set for keys this
    /// server creates; if it is `None` (a legacy key) the HMAC field is left out, and the result
    /// is a value that [`decode`](Self::decode) (like the Go server) refuses, so never store that.
    pub fn encode(&self) -> Vec<u8> {
        // Sized up front so that no reallocation leaves an unwiped copy of the key behind.
        let mut message = Zeroizing::new(Vec::with_capacity(128 + self.created_by.len()));

        let mut secret = Zeroizing::new(Vec::with_capacity(40));
        protobuf::put_len(&mut secret, 1, self.key.bytes());
        let key_type = match self.key.algorithm() {
            Algorithm::Aes256 => TYPE_AES256,
            Algorithm::ChaCha20 => TYPE_CHACHA20,
        };
        protobuf::put_uint(&mut secret, 2, u64::from(key_type));
        protobuf::put_len(&mut message, 1, &secret);

        if let Some(hmac_key) = &self.hmac_key {
            let mut hmac = Zeroizing::new(Vec::with_capacity(40));
            protobuf::put_len(&mut hmac, 1, hmac_key.bytes());
            protobuf::put_uint(&mut hmac, 2, u64::from(HASH_SHA256));
            protobuf::put_len(&mut message, 2, &hmac);
        }

        if let Some(created_at) = self.created_at {
            let mut timestamp = Vec::with_capacity(16);
            // int64 seconds: negative values (before 1970) go out as 10-byte two's complement.
            protobuf::put_uint(&mut timestamp, 1, created_at.unix_timestamp() as u64);
            protobuf::put_uint(&mut timestamp, 2, u64::from(created_at.nanosecond()));
            protobuf::put_len(&mut message, 3, &timestamp);
        }

        if !self.created_by.is_empty() {
            protobuf::put_len(&mut message, 4, self.created_by.as_bytes());
        }

        STANDARD.encode(&message[..]).into_bytes()
    }

    /// Parses the current form or any legacy JSON form.
    ///
    /// Surrounding ASCII whitespace is tolerated (a value written by hand into a file often ends
    /// in a newline; Go's base64 decoder also skips `\r` and `\n` anywhere, and we do too).
    pub fn decode(value: &[u8]) -> Result<KeyVersion, Error> {
        if gojson::is_valid_json(value) {
            decode_legacy_json(value)
        } else {
            decode_protobuf(value)
        }
    }
}

impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SecretKey and HmacKey print `<redacted>` themselves.
        f.debug_struct("KeyVersion")
            .field("key", &self.key)
            .field("hmac_key", &self.hmac_key)
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .field("algorithm_explicit", &self.algorithm_explicit)
            .finish()
    }
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidKey(why.into())
}

fn decode_legacy_json(value: &[u8]) -> Result<KeyVersion, Error> {
    let object = Object::parse(value).ok_or_else(|| invalid("legacy JSON key is not an object"))?;

    let bytes = object
        .bytes("bytes")
        .ok_or_else(|| invalid("legacy JSON key: 'bytes' is not base64"))?;

    // Missing or empty: keys stored before v0.19.2 named no algorithm; Go 63649d0 reads them as
    // AES256.
    let (algorithm, algorithm_explicit) = match object.string("algorithm") {
        Field::Absent => (Algorithm::Aes256, false),
        Field::Present(serde_json::Value::String(name)) if name.is_empty() => {
            (Algorithm::Aes256, false)
        }
        Field::Present(serde_json::Value::String(name)) => {
            let algorithm = Algorithm::from_name(name).ok_or_else(|| {
                invalid(format!(
                    "legacy JSON key: unknown algorithm {:?}",
                    name.chars().take(32).collect::<String>()
                ))
            })?;
            (algorithm, true)
        }
        Field::Present(_) | Field::WrongType => {
            return Err(invalid("legacy JSON key: 'algorithm' is not a string"));
        }
    };

    let created_at = match object.string("created_at") {
        Field::Absent => None,
        // Go never wrote an empty time (its zero time is "0001-01-01T00:00:00Z"); read it as
        // unknown rather than refuse the key.
        Field::Present(serde_json::Value::String(text)) if text.is_empty() => None,
        Field::Present(serde_json::Value::String(text)) => Some(
            OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|_| invalid("legacy JSON key: 'created_at' is not an RFC 3339 time"))?,
        ),
        Field::Present(_) | Field::WrongType => {
            return Err(invalid("legacy JSON key: 'created_at' is not a string"));
        }
    };

    let created_by = match object.string("created_by") {
        Field::Absent => String::new(),
        Field::Present(serde_json::Value::String(identity)) => identity.clone(),
        Field::Present(_) | Field::WrongType => {
            return Err(invalid("legacy JSON key: 'created_by' is not a string"));
        }
    };

    // "version" ("v1") is ignored, as by Go 63649d0.
    Ok(KeyVersion {
        key: SecretKey::from_slice(algorithm, &bytes)?,
        hmac_key: None,
        created_at,
        created_by,
        algorithm_explicit,
    })
}

/// One of the two key sub-messages, merged over repeated occurrences as protobuf requires.
#[derive(Default)]
struct KeyMessage<'a> {
    seen: bool,
    key: &'a [u8],
    enum_value: u32,
}

impl<'a> KeyMessage<'a> {
    fn merge(&mut self, message: &'a [u8]) -> Result<(), WireError> {
        self.seen = true;
        for field in Fields::new(message) {
            match field? {
                (1, Value::Len(key)) => self.key = key,
                // uint32 from a varint: Go keeps the low 32 bits.
                (2, Value::Varint(v)) => self.enum_value = v as u32,
                _ => {} // unknown field, or a known one with another wire type: skipped like Go
            }
        }
        Ok(())
    }
}

fn wire(e: WireError) -> Error {
    invalid(format!("stored key: {e}"))
}

fn decode_protobuf(value: &[u8]) -> Result<KeyVersion, Error> {
    let text = value.trim_ascii();
    let message = gojson::decode_base64(text)
        .ok_or_else(|| invalid("stored key is neither JSON nor base64"))?;

    let mut secret = KeyMessage::default();
    let mut hmac = KeyMessage::default();
    let mut timestamp: Option<(i64, i32)> = None;
    let mut created_by: &[u8] = b"";
    for field in Fields::new(&message[..]) {
        match field.map_err(wire)? {
            (1, Value::Len(m)) => secret.merge(m).map_err(wire)?,
            (2, Value::Len(m)) => hmac.merge(m).map_err(wire)?,
            (3, Value::Len(m)) => {
                let (seconds, nanos) = timestamp.get_or_insert((0, 0));
                for field in Fields::new(m) {
                    match field.map_err(wire)? {
                        // int64 / int32 from a varint: two's complement, low bits kept, as in Go.
                        (1, Value::Varint(v)) => *seconds = v as i64,
                        (2, Value::Varint(v)) => *nanos = v as i32,
                        _ => {}
                    }
                }
            }
            (4, Value::Len(s)) => created_by = s,
            _ => {}
        }
    }

    if !secret.seen {
        return Err(invalid("stored key has no secret key"));
    }
    // Go refuses a protobuf value without an HMAC key, so a value we would accept without one
    // could not be read back by the Go server.
    if !hmac.seen {
        return Err(invalid("stored key has no HMAC key"));
    }
    let algorithm = match secret.enum_value {
        TYPE_AES256 => Algorithm::Aes256,
        TYPE_CHACHA20 => Algorithm::ChaCha20,
        other => return Err(invalid(format!("stored key has unknown key type {other}"))),
    };
    if hmac.enum_value != HASH_SHA256 {
        return Err(invalid(format!(
            "stored key has unknown HMAC hash {}",
            hmac.enum_value
        )));
    }
    let key = SecretKey::from_slice(algorithm, secret.key)?;
    let hmac_key = HmacKey::from_slice(hmac.key)?;
    // proto3 strings must be UTF-8; Go's decoder enforces it.
    let created_by = std::str::from_utf8(created_by)
        .map_err(|_| invalid("stored key: created_by is not UTF-8"))?
        .to_owned();

    Ok(KeyVersion {
        key,
        hmac_key: Some(hmac_key),
        created_at: timestamp.and_then(|(s, n)| timestamp_to_time(s, n)),
        created_by,
        algorithm_explicit: true,
    })
}

/// A `google.protobuf.Timestamp` as Go's `AsTime` reads it (`time.Unix(seconds, nanos)`, which
/// normalises nanos outside [0, 1e9)). `None` when the time is outside what [`OffsetDateTime`]
/// represents (years beyond ±9999): such a value can only come from corruption, and losing the
/// creation time is better than refusing a key whose key bytes are intact.
fn timestamp_to_time(seconds: i64, nanos: i32) -> Option<OffsetDateTime> {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;
    let nanos = i64::from(nanos);
    let seconds = seconds.checked_add(nanos.div_euclid(NANOS_PER_SECOND))?;
    let total = i128::from(seconds) * i128::from(NANOS_PER_SECOND)
        + i128::from(nanos.rem_euclid(NANOS_PER_SECOND));
    OffsetDateTime::from_unix_timestamp_nanos(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
    }

    fn sample() -> KeyVersion {
        KeyVersion {
            key: SecretKey::new(Algorithm::ChaCha20, [0x11; 32]),
            hmac_key: Some(HmacKey::new([0x22; 32])),
            created_at: Some(t("2024-03-01T12:56:08.789Z")),
            created_by: "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22".into(),
            algorithm_explicit: true,
        }
    }

    fn protobuf_value(message: &[u8]) -> Vec<u8> {
        STANDARD.encode(message).into_bytes()
    }

    /// A protobuf KeyVersion built field by field, for the error cases.
    fn message(key: &[u8], key_type: u64, hmac: Option<(&[u8], u64)>, extra: &[u8]) -> Vec<u8> {
        let mut secret = Vec::new();
        protobuf::put_len(&mut secret, 1, key);
        protobuf::put_uint(&mut secret, 2, key_type);
        let mut out = Vec::new();
        protobuf::put_len(&mut out, 1, &secret);
        if let Some((hkey, hash)) = hmac {
            let mut h = Vec::new();
            protobuf::put_len(&mut h, 1, hkey);
            protobuf::put_uint(&mut h, 2, hash);
            protobuf::put_len(&mut out, 2, &h);
        }
        out.extend_from_slice(extra);
        out
    }

    #[test]
    fn encode_decode_round_trip() {
        let kv = sample();
        let encoded = kv.encode();
        assert!(encoded.iter().all(|b| b.is_ascii_graphic()));
        let back = KeyVersion::decode(&encoded).unwrap();
        assert_eq!(back, kv);
        // Also for keys without creation time or creator, and for times before 1970.
        for created_at in [
            None,
            Some(t("1970-01-01T00:00:00Z")),
            Some(t("0001-01-01T00:00:00Z")),
            Some(t("1969-12-31T23:59:59.999999999Z")),
        ] {
            let kv = KeyVersion {
                created_at,
                created_by: String::new(),
                ..sample()
            };
            assert_eq!(KeyVersion::decode(&kv.encode()).unwrap(), kv);
        }
    }

    #[test]
    fn whitespace_around_the_value_is_tolerated() {
        let encoded = String::from_utf8(sample().encode()).unwrap();
        for v in [
            format!("{encoded}\n"),
            format!("{encoded}\r\n"),
            format!("  {encoded}\t\n"),
            format!("{}\n{}", &encoded[..20], &encoded[20..]),
        ] {
            assert_eq!(KeyVersion::decode(v.as_bytes()).unwrap(), sample(), "{v:?}");
        }
        // Spaces inside are not (Go's decoder refuses them too).
        let v = format!("{} {}", &encoded[..20], &encoded[20..]);
        assert!(KeyVersion::decode(v.as_bytes()).is_err());
    }

    #[test]
    fn protobuf_is_decoded_like_go() {
        let mut extra = Vec::new();
        // Unknown fields of every wire type are skipped.
        protobuf::put_uint(&mut extra, 9, 42);
        extra.extend_from_slice(&[(10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        extra.extend_from_slice(&[(11 << 3) | 5, 0, 0, 0, 0]);
        protobuf::put_len(&mut extra, 12, b"unknown");
        // A known field with the wrong wire type is skipped too.
        protobuf::put_uint(&mut extra, 4, 7);
        let m = message(&[1; 32], 1, Some((&[2; 32], 1)), &extra);
        let kv = KeyVersion::decode(&protobuf_value(&m)).unwrap();
        assert_eq!(kv.key, SecretKey::new(Algorithm::Aes256, [1; 32]));
        assert_eq!(kv.hmac_key, Some(HmacKey::new([2; 32])));
        assert_eq!(kv.created_at, None);
        assert_eq!(kv.created_by, "");
        assert!(kv.algorithm_explicit);

        // A repeated sub-message is merged: the second one only changes the type.
        let mut again = Vec::new();
        protobuf::put_uint(&mut again, 2, 2);
        let mut m2 = m.clone();
        protobuf::put_len(&mut m2, 1, &again);
        let kv = KeyVersion::decode(&protobuf_value(&m2)).unwrap();
        assert_eq!(kv.key, SecretKey::new(Algorithm::ChaCha20, [1; 32]));

        // Timestamp with nanos out of range is normalised like Go's time.Unix.
        let mut ts = Vec::new();
        protobuf::put_uint(&mut ts, 1, 10);
        protobuf::put_uint(&mut ts, 2, (-1i64) as u64);
        let mut m3 = m.clone();
        protobuf::put_len(&mut m3, 3, &ts);
        let kv = KeyVersion::decode(&protobuf_value(&m3)).unwrap();
        assert_eq!(kv.created_at, Some(t("1970-01-01T00:00:09.999999999Z")));

        // A timestamp beyond year 9999 is dropped, not fatal.
        let mut ts = Vec::new();
        protobuf::put_uint(&mut ts, 1, i64::MAX as u64);
        let mut m4 = m.clone();
        protobuf::put_len(&mut m4, 3, &ts);
        let kv = KeyVersion::decode(&protobuf_value(&m4)).unwrap();
        assert_eq!(kv.created_at, None);
    }

    #[test]
    fn bad_protobuf_values_are_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (message(&[1; 32], 1, None, &[]), "no HMAC key"),
            (message(&[1; 31], 1, Some((&[2; 32], 1)), &[]), "31 bytes"),
            (message(&[1; 33], 1, Some((&[2; 32], 1)), &[]), "33 bytes"),
            (message(&[1; 32], 1, Some((&[2; 31], 1)), &[]), "31 bytes"),
            (message(&[], 1, Some((&[2; 32], 1)), &[]), "0 bytes"),
            (message(&[1; 32], 0, Some((&[2; 32], 1)), &[]), "key type 0"),
            (message(&[1; 32], 3, Some((&[2; 32], 1)), &[]), "key type 3"),
            (
                message(&[1; 32], 1, Some((&[2; 32], 0)), &[]),
                "HMAC hash 0",
            ),
            (
                message(&[1; 32], 1, Some((&[2; 32], 2)), &[]),
                "HMAC hash 2",
            ),
            (
                message(&[1; 32], 1, Some((&[2; 32], 1)), &[0x22, 2, 0xff, 0xfe]),
                "UTF-8",
            ),
            (
                message(&[1; 32], 1, Some((&[2; 32], 1)), &[0x22, 5]),
                "truncated",
            ),
            (
                message(&[1; 32], 1, Some((&[2; 32], 1)), &[0x1b]),
                "wire type 3",
            ),
            (vec![0x12, 0x00], "no secret key"),
            (Vec::new(), "no secret key"),
        ];
        for (m, want) in cases {
            match KeyVersion::decode(&protobuf_value(&m)) {
                Err(Error::InvalidKey(why)) => assert!(why.contains(want), "{why} / {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        for bad in [&b""[..], b"   ", b"not base64!", b"CiIKIA", b"\xff\xfe"] {
            assert!(matches!(KeyVersion::decode(bad), Err(Error::InvalidKey(_))));
        }
    }

    #[test]
    fn legacy_json_forms() {
        let b64 = STANDARD.encode([5u8; 32]);
        let kv = KeyVersion::decode(format!(r#"{{"bytes":"{b64}"}}"#).as_bytes()).unwrap();
        assert_eq!(kv.key, SecretKey::new(Algorithm::Aes256, [5; 32]));
        assert!(!kv.algorithm_explicit);
        assert_eq!(kv.hmac_key, None);
        assert_eq!(kv.created_at, None);
        assert_eq!(kv.created_by, "");

        for (name, algorithm) in [
            ("AES256", Algorithm::Aes256),
            ("AES256-GCM_SHA256", Algorithm::Aes256),
            ("ChaCha20", Algorithm::ChaCha20),
            ("XCHACHA20-POLY1305", Algorithm::ChaCha20),
        ] {
            let v = format!(
                r#"{{"bytes":"{b64}","algorithm":"{name}","created_at":"2022-11-02T16:37:12.513406+01:00","created_by":"me","version":"v1"}}"#
            );
            let kv = KeyVersion::decode(v.as_bytes()).unwrap();
            assert_eq!(kv.key.algorithm(), algorithm);
            assert!(kv.algorithm_explicit);
            assert_eq!(kv.created_at, Some(t("2022-11-02T16:37:12.513406+01:00")));
            assert_eq!(kv.created_by, "me");
        }

        // Go's decoder: case-insensitive names, nulls, unknown fields, whitespace.
        let v = format!(
            "\n {{ \"Bytes\" : \"{b64}\", \"ALGORITHM\": null, \"created_at\": null, \"x\": [1] }}\n"
        );
        let kv = KeyVersion::decode(v.as_bytes()).unwrap();
        assert_eq!(kv.key.algorithm(), Algorithm::Aes256);
        assert!(!kv.algorithm_explicit);
        let v = format!(r#"{{"bytes":"{b64}","algorithm":"","created_at":""}}"#);
        let kv = KeyVersion::decode(v.as_bytes()).unwrap();
        assert!(!kv.algorithm_explicit);
        assert_eq!(kv.created_at, None);
    }

    #[test]
    fn bad_legacy_json_is_refused() {
        let b64 = STANDARD.encode([5u8; 32]);
        let good = format!(r#"{{"bytes":"{b64}","algorithm":"AES256","created_by":"me"}}"#);
        assert!(KeyVersion::decode(good.as_bytes()).is_ok());
        let bad = [
            // §6.1: invalid JSON variants (missing '{', '"', ':' or '}') must fail.
            good.replacen('{', "", 1),
            good.replacen('"', "", 1),
            good.replacen(':', "", 1),
            good.replacen('}', "", 1),
            // Valid JSON that is not a usable key.
            format!(r#"{{"bytes":"{}"}}"#, STANDARD.encode([5u8; 31])),
            format!(r#"{{"bytes":"{}"}}"#, STANDARD.encode([5u8; 33])),
            r#"{"bytes":""}"#.to_string(),
            r#"{"bytes":null}"#.to_string(),
            r#"{}"#.to_string(),
            r#"{"bytes":"!!!!"}"#.to_string(),
            r#"{"bytes":5}"#.to_string(),
            good.replace("AES256", "AES-256"),
            good.replace("AES256", "aes256"),
            good.replace(r#""AES256""#, "1"),
            good.replace(r#""me""#, "1"),
            format!(r#"{{"bytes":"{b64}","created_at":"yesterday"}}"#),
            format!(r#"{{"bytes":"{b64}","created_at":12}}"#),
            "[]".to_string(),
            "null".to_string(),
            "\"string\"".to_string(),
            "42".to_string(),
        ];
        for v in &bad {
            match KeyVersion::decode(v.as_bytes()) {
                Err(Error::InvalidKey(why)) => {
                    assert!(!why.contains(&b64[..8]), "error leaks the key: {why}")
                }
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let kv = sample();
        for text in [format!("{kv:?}"), format!("{kv:#?}")] {
            assert!(text.contains("<redacted>"));
            assert!(
                text.contains("3ecfcdf3"),
                "the creator is not secret: {text}"
            );
            for needle in [
                "17, 17",
                "0x11",
                "1111",
                "EREREREREREREREREREREREREREREREREREREREREQ",
            ] {
                assert!(!text.contains(needle), "{needle} in {text}");
            }
            for needle in [
                "34, 34",
                "0x22",
                "2222",
                "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI",
            ] {
                assert!(!text.contains(needle), "{needle} in {text}");
            }
        }
    }
}
