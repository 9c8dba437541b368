//! JSON the way the Go server reads and writes it: request bodies decoded leniently (first JSON
//! value only, field names matched case-insensitively, the last of several matching members
//! wins, `null` = empty, base64 ignoring CR/LF) and timestamps in RFC 3339 with nanoseconds
//! ([`go_time`], from the leaf [`crate::gojson`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use zeroize::Zeroizing;

/// The members of one JSON object in document order, duplicates included: what Go's decoder
/// walks when it decodes an object into a struct. A struct field takes every member whose name
/// matches it ignoring ASCII case, one after the other, so the **last** one wins, and a member
/// that cannot be decoded into the field fails the whole body even when a later one could
/// (issue 15, finding 8: `{"context":A,"Context":B}` is B in Go; a map keeps only one of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members(Vec<(String, Value)>);

impl Members {
    /// The values of the members whose name matches `name` ignoring ASCII case, in order.
    pub fn matching<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Value> {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether any member matches `name`.
    pub fn has(&self, name: &str) -> bool {
        self.matching(name).next().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

impl serde::Serialize for Members {
    /// As an object with the members in order, duplicates included.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

/// An element of a JSON array: an object, or any other value (read in full, then dropped).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Object(Members),
    NotObject,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Item, D::Error> {
        struct ItemVisitor;

        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                MembersVisitor.visit_map(map).map(Item::Object)
            }

            // Every element of a nested array is read as a JSON tree would read it, so that the
            // same bodies are refused as before (invalid UTF-8, numbers out of range).
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                while seq.next_element::<Value>()?.is_some() {}
                Ok(Item::NotObject)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
                Ok(Item::NotObject)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
                Ok(Item::NotObject)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
                Ok(Item::NotObject)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
                Ok(Item::NotObject)
            }

            fn visit_str<E>(self, _: &str) -> Result<Item, E> {
                Ok(Item::NotObject)
            }

            fn visit_unit<E>(self) -> Result<Item, E> {
                Ok(Item::NotObject)
            }
        }

        deserializer.deserialize_any(ItemVisitor)
    }
}

/// Parses the first JSON value of a body as an object; trailing bytes are ignored (as in Go).
/// An empty body and `null` are the empty object.
pub fn object(body: &[u8]) -> Option<Members> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Members::default());
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Option<Members>>();
    match values.next() {
        Some(Ok(members)) => Some(members.unwrap_or_default()),
        _ => None,
    }
}

/// The base64 fields of a crypto request (generate, encrypt, decrypt, hmac); absent or `null`
/// fields are empty; `version` selects a key version (docs/key-versions.md §4).
pub struct CryptoFields {
    pub context: Zeroizing<Vec<u8>>,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext: Zeroizing<Vec<u8>>,
    pub message: Zeroizing<Vec<u8>>,
    /// The key version asked for (docs/key-versions.md §4): absent, `null` or `""` is none; an
    /// error when it is not a canonical decimal string (400 `invalid key version`, which the
    /// handlers that read it answer).
    pub version: Result<Option<u32>, crate::keyring::InvalidVersion>,
}

impl Default for CryptoFields {
    fn default() -> CryptoFields {
        CryptoFields {
            context: Zeroizing::default(),
            plaintext: Zeroizing::default(),
            ciphertext: Zeroizing::default(),
            message: Zeroizing::default(),
            version: Ok(None),
        }
    }
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
            version: crate::keyring::parse_version(fast.version.unwrap_or("")),
        });
    }
    let obj = object(body)?;
    Some(CryptoFields {
        context: bytes_field(&obj, "context")?,
        plaintext: bytes_field(&obj, "plaintext")?,
        ciphertext: bytes_field(&obj, "ciphertext")?,
        message: bytes_field(&obj, "message")?,
        version: string_field(&obj, "version")
            .ok_or(crate::keyring::InvalidVersion)
            .and_then(crate::keyring::parse_version),
    })
}

/// Parses the first JSON value of a body as an array; `null` is the empty array.
pub fn array(body: &[u8]) -> Option<Vec<Item>> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Option<Vec<Item>>>();
    match values.next() {
        Some(Ok(items)) => Some(items.unwrap_or_default()),
        _ => None,
    }
}

/// A field as Go's decoder leaves it: the last member whose name matches ignoring ASCII case.
pub fn field<'a>(obj: &'a Members, name: &str) -> Option<&'a Value> {
    obj.matching(name).last()
}

/// A base64 (`[]byte`) field: every matching member in turn, as Go decodes them: `null` empties
/// the field, a string sets it; a member that is not a string or not base64 fails the body (Go
/// records the error and fails at the end). Missing → empty.
pub fn bytes_field(obj: &Members, name: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    for value in obj.matching(name) {
        out = match value {
            Value::Null => Zeroizing::new(Vec::new()),
            Value::String(s) => decode_base64(s)?,
            _ => return None,
        };
    }
    Some(out)
}

/// A string field: the last matching string (Go leaves a string field alone on `null`); a
/// matching member of another type fails the body. Missing → empty.
pub fn string_field<'a>(obj: &'a Members, name: &str) -> Option<&'a str> {
    let mut out = "";
    for value in obj.matching(name) {
        match value {
            Value::Null => {}
            Value::String(s) => out = s,
            _ => return None,
        }
    }
    Some(out)
}

/// Standard padded base64 as Go decodes a `[]byte` field: `\r` and `\n` ignored, non-zero
/// trailing bits accepted (one decoder for request bodies and stored values).
pub fn decode_base64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    crate::crypto::gojson::decode_base64(s.as_bytes())
}

pub fn encode_base64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Handlers format their times through `json::go_time`; the one implementation is in the leaf.
pub use crate::gojson::go_time;

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
        let bodies: [&[u8]; 17] = [
            br#"{"ciphertext":"aGVsbG8=","version":"2"}"#,
            br#"{"ciphertext":"aGVsbG8=","Version":"3"}"#,
            br#"{"ciphertext":"aGVsbG8=","version":2}"#,
            br#"{"ciphertext":"aGVsbG8=","version":""}"#,
            br#"{"ciphertext":"aGVsbG8=","version":"02"}"#,
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
            let version = string_field(&obj, "version")
                .ok_or(crate::keyring::InvalidVersion)
                .and_then(crate::keyring::parse_version);
            assert_eq!(fields.version, version, "{}", String::from_utf8_lossy(body));
        }
        let version = |b: &[u8]| crypto_fields(b).unwrap().version;
        assert_eq!(version(br#"{"version":"2"}"#), Ok(Some(2)));
        assert_eq!(version(br#"{"VERSION":"7"}"#), Ok(Some(7)));
        assert_eq!(version(br#"{"version":null}"#), Ok(None));
        assert_eq!(version(br#"{"version":""}"#), Ok(None));
        assert_eq!(version(br#"{}"#), Ok(None));
        for bad in [
            &br#"{"version":2}"#[..],
            br#"{"version":"v1"}"#,
            br#"{"version":"0"}"#,
            br#"{"version":"4294967296"}"#,
        ] {
            assert_eq!(
                version(bad),
                Err(crate::keyring::InvalidVersion),
                "{}",
                String::from_utf8_lossy(bad)
            );
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

    /// Issue 15, finding 8: Go's decoder gives every member whose name matches a field to that
    /// field in turn, so the last one wins, whatever its letter case, and a bad member fails the
    /// body even when a good one follows. Each case was checked against the Go server (63649d0):
    /// generate with the body, then decrypt with each context.
    #[test]
    fn the_last_matching_member_wins_as_in_go() {
        let (a, b) = ("Y3R4QQ==", "Y3R4Qg=="); // "ctxA", "ctxB"
        let ctx = |body: String| crypto_fields(body.as_bytes()).map(|f| f.context.to_vec());
        let want = |s: &str| Some(STANDARD.decode(s).unwrap());
        assert_eq!(
            ctx(format!(r#"{{"context":"{a}","Context":"{b}"}}"#)),
            want(b)
        );
        assert_eq!(
            ctx(format!(r#"{{"Context":"{b}","context":"{a}"}}"#)),
            want(a)
        );
        assert_eq!(
            ctx(format!(r#"{{"context":"{a}","context":"{b}"}}"#)),
            want(b)
        );
        assert_eq!(
            ctx(format!(r#"{{"CONTEXT":"{a}","cOnTeXt":"{b}"}}"#)),
            want(b)
        );
        // A later null empties a []byte field.
        assert_eq!(
            ctx(format!(r#"{{"context":"{a}","CONTEXT":null}}"#)),
            Some(vec![])
        );
        // A bad member anywhere fails the body, before or after a good one.
        for bad in [
            format!(r#"{{"context":5,"Context":"{b}"}}"#),
            format!(r#"{{"context":"{a}","Context":5}}"#),
            format!(r#"{{"context":"!!","Context":"{b}"}}"#),
            format!(r#"{{"context":5,"context":"{b}"}}"#),
        ] {
            assert_eq!(ctx(bad.clone()), None, "{bad}");
        }
        // The other fields of the body are unaffected.
        let f = crypto_fields(
            format!(r#"{{"ciphertext":"{a}","Context":"{a}","context":"{b}"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (&f.ciphertext[..], &f.context[..]),
            (&b"ctxA"[..], &b"ctxB"[..])
        );

        // String fields (import's cipher): the last string; null leaves the field alone.
        let obj = object(br#"{"cipher":"AES256","Cipher":"ChaCha20","CIPHER":null}"#).unwrap();
        assert_eq!(string_field(&obj, "cipher"), Some("ChaCha20"));
        let obj = object(br#"{"cipher":1,"Cipher":"ChaCha20"}"#).unwrap();
        assert_eq!(string_field(&obj, "cipher"), None);
        assert_eq!(
            field(&obj, "CIPHER"),
            Some(&Value::String("ChaCha20".into()))
        );
        assert!(obj.has("Cipher") && !obj.has("key"));

        // Arrays (bulk decrypt): each object alike; other elements are kept as such.
        let items =
            array(format!(r#"[{{"context":"{a}","Context":"{b}"}},1,null]"#).as_bytes()).unwrap();
        let Item::Object(first) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(&bytes_field(first, "context").unwrap()[..], b"ctxB");
        assert_eq!(&items[1..], &[Item::NotObject, Item::NotObject]);
        assert_eq!(array(b"null"), Some(vec![]));
        assert_eq!(array(b"{}"), None);
    }
}
