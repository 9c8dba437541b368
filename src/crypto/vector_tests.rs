//! Checks the crypto module against tests/vectors/vectors.json, which tests/vectors/gen_vectors.py
//! computes with an independent Python implementation of §5 and §6.1, and runs a deterministic
//! fuzz-like loop over the parsers.

use super::ciphertext::{self, Format};
use super::key::derive_key;
use super::{Algorithm, Error, HmacKey, KeyVersion, SecretKey};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const VECTORS: &str = include_str!("../../tests/vectors/vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors.json is valid JSON")
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn array<const N: usize>(v: &Value) -> [u8; N] {
    hex(v).try_into().expect("fixed-size field")
}

fn algorithm(v: &Value) -> Algorithm {
    Algorithm::from_name(v.as_str().expect("algorithm name")).expect("known algorithm")
}

fn list<'a>(all: &'a Value, name: &str) -> &'a Vec<Value> {
    let items = all[name].as_array().expect("vector list");
    assert!(!items.is_empty());
    items
}

#[test]
fn hchacha20_matches_the_xchacha_draft() {
    let all = vectors();
    let v = &all["hchacha20"];
    let out = derive_key(Algorithm::ChaCha20, &array(&v["key"]), &array(&v["input"]));
    assert_eq!(&out[..], &hex(&v["output"])[..]);
}

#[test]
fn ciphertext_vectors_decrypt() {
    let all = vectors();
    for v in list(&all, "ciphertexts") {
        let name = v["name"].as_str().unwrap_or("?");
        let key = SecretKey::new(algorithm(&v["key_algorithm"]), array(&v["key"]));
        let fallback = v["legacy_algorithm_fallback"].as_bool().expect("bool");
        if let Some(stored) = v["stored_value"].as_str() {
            // The fallback flag is what the stored form implies, as the API layer will pass it.
            let kv = KeyVersion::decode(stored.as_bytes()).expect(name);
            assert_eq!(kv.key, key, "{name}");
            assert_eq!(!kv.algorithm_explicit, fallback, "{name}");
        }
        let ct = hex(&v["ciphertext"]);
        let context = hex(&v["context"]);

        let parsed = ciphertext::parse(&ct).expect(name);
        let want_format = match v["format"].as_str() {
            Some("raw") => Format::Current,
            Some("msgpack") => Format::MessagePack,
            Some("json") => Format::Json,
            other => panic!("{name}: format {other:?}"),
        };
        assert_eq!(parsed.format, want_format, "{name}");
        assert_eq!(parsed.iv, array::<16>(&v["iv"]), "{name}");
        assert_eq!(parsed.nonce, array::<12>(&v["nonce"]), "{name}");

        let result = key.decrypt(&ct, &context, fallback);
        match v["expect"].as_str() {
            Some("plaintext") => {
                assert_eq!(result.expect(name)[..], hex(&v["plaintext"])[..], "{name}")
            }
            Some("not_authentic") => assert_eq!(result, Err(Error::NotAuthentic), "{name}"),
            other => panic!("{name}: expect {other:?}"),
        }
    }
}

#[test]
fn version_hint_vectors() {
    // docs/key-versions.md §4, computed by gen_vectors.py with Python's hashlib.
    let all = vectors();
    let hints = list(&all, "version_hints");
    assert_eq!(hints.len(), 8);
    for v in hints {
        let name = v["name"].as_str().unwrap_or("?");
        let n = u32::try_from(v["version"].as_u64().expect(name)).expect(name);
        let key = SecretKey::new(algorithm(&v["key_algorithm"]), array(&v["key"]));
        let iv: [u8; 16] = array(&v["iv"]);
        // The hint is found in the ciphertext and in the iv ...
        let ct = hex(&v["ciphertext"]);
        assert_eq!(super::version_hint::of(&ct), Some(n), "{name}");
        assert_eq!(super::version_hint::of_iv(&iv), n, "{name}");
        // ... written the same way from the iv's 12 random bytes ...
        let mut ours = iv;
        ours[12..].fill(0);
        super::version_hint::set(&mut ours, n);
        assert_eq!(ours, iv, "{name}");
        // ... and the ciphertext is an ordinary current one (§5.3).
        let got = key
            .encrypt_with(
                &iv,
                &array(&v["nonce"]),
                &hex(&v["plaintext"]),
                &hex(&v["context"]),
            )
            .unwrap();
        assert_eq!(got, ct, "{name}");
        let plaintext = key.decrypt(&ct, &hex(&v["context"]), false).expect(name);
        assert_eq!(plaintext[..], hex(&v["plaintext"])[..], "{name}");
    }
    // Every other vector of the current format was made as version 1 and decodes to a random
    // number; the legacy ones have no hint at all.
    for v in list(&all, "ciphertexts") {
        let ct = hex(&v["ciphertext"]);
        if v["format"].as_str() != Some("raw") {
            assert_eq!(super::version_hint::of(&ct), None, "{}", v["name"]);
        }
    }
}

#[test]
fn encryption_reproduces_the_raw_vectors() {
    let all = vectors();
    let mut checked = 0;
    for v in list(&all, "ciphertexts") {
        if v["format"].as_str() != Some("raw") {
            continue;
        }
        let key = SecretKey::new(algorithm(&v["key_algorithm"]), array(&v["key"]));
        let ct = key
            .encrypt_with(
                &array(&v["iv"]),
                &array(&v["nonce"]),
                &hex(&v["plaintext"]),
                &hex(&v["context"]),
            )
            .unwrap();
        assert_eq!(ct, hex(&v["ciphertext"]), "{}", v["name"]);
        checked += 1;
    }
    assert!(checked >= 4);
}

#[test]
fn stored_vectors_decode_and_encode() {
    let all = vectors();
    for v in list(&all, "stored") {
        let name = v["name"].as_str().unwrap_or("?");
        let value = v["value"].as_str().expect("value").as_bytes();
        let kv = KeyVersion::decode(value).expect(name);

        let want_key = SecretKey::new(algorithm(&v["algorithm"]), array(&v["key"]));
        assert_eq!(kv.key, want_key, "{name}");
        assert_eq!(
            kv.algorithm_explicit,
            v["algorithm_explicit"].as_bool().expect("bool"),
            "{name}"
        );
        let want_hmac = match &v["hmac_key"] {
            Value::Null => None,
            h => Some(HmacKey::new(array(h))),
        };
        assert_eq!(kv.hmac_key, want_hmac, "{name}");
        let want_time = v["created_at"]
            .as_str()
            .map(|t| OffsetDateTime::parse(t, &Rfc3339).expect("vector time"));
        assert_eq!(kv.created_at, want_time, "{name}");
        if let Some(seconds) = v["created_at_seconds"].as_i64() {
            let t = kv.created_at.expect(name);
            assert_eq!(t.unix_timestamp(), seconds, "{name}");
            assert_eq!(
                i64::from(t.nanosecond()),
                v["created_at_nanos"].as_i64().expect("nanos"),
                "{name}"
            );
        }
        assert_eq!(kv.created_by, v["created_by"].as_str().expect("creator"));

        if v["encode_reproduces"].as_bool() == Some(true) {
            // Built from the vector's fields, not from the decoded value, so that encode is
            // checked independently of decode.
            let built = KeyVersion {
                key: want_key,
                hmac_key: want_hmac,
                created_at: want_time,
                created_by: v["created_by"].as_str().expect("creator").to_owned(),
                algorithm_explicit: true,
            };
            assert_eq!(built.encode(), value, "{name}");
            assert_eq!(kv.encode(), value, "{name}");
        }
    }
}

use crate::testing::XorShift;

/// Mutations of fuzz inputs.
trait Mutate {
    fn mutate(&mut self, input: &[u8]) -> Vec<u8>;
}

impl Mutate for XorShift {
    /// Flips, deletes, inserts, truncates or splices in a "magic" byte.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        const MAGIC: &[u8] = b"\x95\xa0\xbf\xc4\xc5\xc6\xd9\xda\xdb\xff\x00{}\":,[]nul\\=\n\x0a\x12\x1a\x22\x08\x10\x80";
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let pos = if out.is_empty() {
                0
            } else {
                self.below(out.len())
            };
            match self.below(5) {
                0 if !out.is_empty() => out[pos] ^= 1 << self.below(8),
                1 if !out.is_empty() => {
                    out.remove(pos);
                }
                2 => out.insert(pos, MAGIC[self.below(MAGIC.len())]),
                3 => out.truncate(pos),
                _ if !out.is_empty() => out[pos] = MAGIC[self.below(MAGIC.len())],
                _ => {}
            }
        }
        out
    }
}

#[test]
fn parsers_never_panic_on_random_or_mutated_input() {
    let all = vectors();
    let keys = [
        SecretKey::new(Algorithm::Aes256, [1; 32]),
        SecretKey::new(Algorithm::ChaCha20, [2; 32]),
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let check = |input: &[u8], random: bool| {
        let _ = ciphertext::parse(input);
        for key in &keys {
            for fallback in [false, true] {
                let r = key.decrypt(input, b"", fallback);
                if random {
                    // A random string that authenticates would mean the AEAD is not checked.
                    assert!(r.is_err());
                }
            }
        }
        let _ = KeyVersion::decode(input);
    };

    // Plain random bytes, random bytes behind each legacy first byte, and JSON-looking text.
    const JSONISH: &[u8] = b"{}[]\":, abcdefghiv01nuBYTES=+/\\n";
    for i in 0..3000 {
        let len = rng.below(160);
        let mut input = match i % 3 {
            0 => rng.bytes(len, &[]),
            1 => rng.bytes(len, JSONISH),
            _ => rng.bytes(len, b"\x95\xa6\xd9\xc4\x10\x0c\x20AES256\x00\xff"),
        };
        if i % 5 == 0 {
            input.insert(0, if i % 2 == 0 { 0x95 } else { b'{' });
        }
        check(&input, true);
    }

    // Mutations of every valid ciphertext and stored value.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for v in list(&all, "ciphertexts") {
        seeds.push(hex(&v["ciphertext"]));
    }
    for v in list(&all, "stored") {
        seeds.push(v["value"].as_str().expect("value").as_bytes().to_vec());
    }
    for seed in &seeds {
        for _ in 0..100 {
            let input = rng.mutate(seed);
            check(&input, false);
        }
    }
}
