//! Reading the legacy JSON values (ciphertexts of §5.4, stored keys of §6.1) the way Go's
//! `encoding/json` read them into a struct, so that whatever the Go server accepted we accept too.
//!
//! What Go does and we copy (§0): object keys match field names ASCII-case-insensitively; when a
//! key occurs twice the later occurrence wins; unknown keys are ignored; `null` leaves a string
//! field unchanged and empties a `[]byte` field; `[]byte` is standard base64 with padding, and the
//! decoder skips `\r` and `\n` anywhere in it and tolerates non-zero trailing bits.
//! What we do not copy: Go also folds two non-ASCII letters (`ſ`, `K`) onto ASCII ones in field
//! names and replaces invalid UTF-8 with U+FFFD; no KES encoder ever wrote either.
//!
//! These values carry key material (a stored key's `bytes`), so everything parsed here is wiped
//! when dropped (best effort: serde_json's internal scratch buffers are beyond our reach). This
//! module must never put a value it parsed into an error message.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// Go's `base64.StdEncoding` for decoding: padding required, trailing bits not checked.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes Go-style standard base64 (see the module docs): what Go's `[]byte` fields accept, in
/// stored values and in request bodies alike. `None` on any error.
pub fn decode_base64(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let filtered: Zeroizing<Vec<u8>>;
    let text = if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        filtered = Zeroizing::new(
            text.iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect(),
        );
        &filtered[..]
    } else {
        text
    };
    let mut out = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
    let n = GO_STD.decode_slice(text, &mut out[..]).ok()?;
    out.truncate(n);
    Some(out)
}

/// True when `bytes` is one complete JSON value (surrounding whitespace allowed), as Go's
/// `json.Valid` says.
pub(super) fn is_valid_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// A field of a JSON object as Go's decoder would see it for one struct field.
pub(super) enum Field<'a> {
    /// No key matched, or (for string-like fields) only `null`s did.
    Absent,
    /// The last matching value; never `null` for [`Object::string`].
    Present(&'a Value),
    /// The value has a type Go could not decode into the field: Go fails the whole value.
    WrongType,
}

/// The members of one JSON object in document order. Wiped on drop.
pub(super) struct Object {
    members: Vec<(String, Value)>,
}

impl Object {
    /// Parses `bytes` as exactly one JSON object. `None` for invalid JSON or any other JSON type.
    pub(super) fn parse(bytes: &[u8]) -> Option<Object> {
        serde_json::from_slice::<Object>(bytes).ok()
    }

    /// The last member whose key matches `name` ASCII-case-insensitively, `null` included.
    fn last(&self, name: &str, skip_null: bool) -> Option<&Value> {
        self.members
            .iter()
            .rev()
            .filter(|(k, v)| !(skip_null && v.is_null()) && k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .next()
    }

    /// A Go `string` (or `time.Time`) field: `null` is skipped, any non-string is a type error.
    pub(super) fn string(&self, name: &str) -> Field<'_> {
        match self.last(name, true) {
            None => Field::Absent,
            Some(v @ Value::String(_)) => Field::Present(v),
            Some(_) => Field::WrongType,
        }
    }

    /// A Go `[]byte` field, decoded: `None` when Go's decoder would fail (wrong type, bad
    /// base64); an empty vector when the field is absent or `null`.
    pub(super) fn bytes(&self, name: &str) -> Option<Zeroizing<Vec<u8>>> {
        match self.last(name, false) {
            None | Some(Value::Null) => Some(Zeroizing::new(Vec::new())),
            Some(Value::String(s)) => decode_base64(s.as_bytes()),
            Some(_) => None,
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        for (key, value) in &mut self.members {
            key.zeroize();
            wipe(value);
        }
    }
}

/// Wipes every string inside a JSON value (numbers and map keys cannot be reached; they never
/// hold key material in these formats).
fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                // Built inside the wiping wrapper from the start so that a parse error half-way
                // through still wipes what was read.
                let mut object = Object {
                    members: Vec::new(),
                };
                while let Some(member) = map.next_entry::<String, Value>()? {
                    object.members.push(member);
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_go() {
        assert_eq!(&decode_base64(b"").unwrap()[..], b"");
        assert_eq!(&decode_base64(b"aGVsbG8=").unwrap()[..], b"hello");
        assert_eq!(&decode_base64(b"aGVs\r\nbG8=\n").unwrap()[..], b"hello");
        // Non-canonical trailing bits ("aGVsbG9=" also decodes to "hello" in Go).
        assert_eq!(&decode_base64(b"aGVsbG9=").unwrap()[..], b"hello");
        for bad in [
            &b"aGVsbG8"[..],
            b"aGVsbG8==",
            b"aGVs bG8=",
            b"aGVsbG8=\t",
            b"aGVs_G8=",
            b"====",
        ] {
            assert!(decode_base64(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn object_members_like_go() {
        let o =
            Object::parse(br#"{"IV":"AA==","iv":"AQ==","Name":"a","name":null,"x":1}"#).unwrap();
        assert_eq!(&o.bytes("iv").unwrap()[..], &[1]);
        match o.string("NAME") {
            Field::Present(Value::String(s)) => assert_eq!(s, "a"),
            _ => panic!("name"),
        }
        assert!(matches!(o.string("x"), Field::WrongType));
        assert!(matches!(o.string("missing"), Field::Absent));
        assert!(o.bytes("x").is_none());
        assert!(o.bytes("missing").unwrap().is_empty());
        let o = Object::parse(br#"{"b":"AQ==","b":null}"#).unwrap();
        assert!(o.bytes("b").unwrap().is_empty());
    }

    #[test]
    fn only_objects_parse() {
        for bad in [
            &b"[]"[..],
            b"\"x\"",
            b"1",
            b"null",
            b"{",
            b"{}x",
            b"",
            b"{\"a\":}",
        ] {
            assert!(Object::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Object::parse(b" {} \n").is_some());
        assert!(is_valid_json(b" [1] "));
        assert!(!is_valid_json(b"{"));
    }
}
