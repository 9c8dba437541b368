//! Ciphertexts as clients send them to `/v1/key/decrypt` (current, MessagePack and JSON layouts).
//!
//! Input: `flags ‖ context length ‖ context ‖ ciphertext`. `flags` bit 0 picks the key type
//! (AES256 / ChaCha20), bit 1 the legacy-algorithm fallback, bits 2.. one key of a fixed table
//! (a fuzzing key and every key of tests/vectors/vectors.json, so that the seeds made from the
//! vectors decrypt and the fuzzer starts from authentic ciphertexts of every layout).
//!
//! Checks: never panics; `parse` fails exactly for inputs of at most 28 bytes and splits a current
//! ciphertext from its end; a successful decrypt gives `len(sealed) - 16` bytes, does not depend on
//! the fallback flag for current ciphertexts, fails under another context, and the plaintext
//! round-trips through `encrypt`/`decrypt`.
#![no_main]

use kes::crypto::ciphertext::{self, Format};
use kes::crypto::{Algorithm, SecretKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const VECTORS: &str = include_str!("../../tests/vectors/vectors.json");

fn keys() -> &'static [[u8; 32]] {
    static KEYS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = vec![[0x42; 32]];
        let all: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors.json");
        for v in all["ciphertexts"].as_array().expect("ciphertexts") {
            let hex = v["key"].as_str().expect("key");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let key: [u8; 32] = bytes.try_into().expect("32-byte key");
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&ctx_len, rest)) = rest.split_first() else {
        return;
    };
    let (context, ct) = rest.split_at(usize::from(ctx_len).min(rest.len()));
    let algorithm = if flags & 1 == 0 {
        Algorithm::Aes256
    } else {
        Algorithm::ChaCha20
    };
    let fallback = flags & 2 != 0;
    let table = keys();
    let key = SecretKey::new(algorithm, table[usize::from(flags >> 2) % table.len()]);

    let parsed = ciphertext::parse(ct);
    assert_eq!(parsed.is_err(), ct.len() <= 28, "parse fails iff too short");
    let Ok(parsed) = parsed else {
        assert!(key.decrypt(ct, context, fallback).is_err());
        return;
    };
    match parsed.format {
        Format::Current => {
            let n = ct.len();
            assert_eq!(parsed.algorithm, None);
            assert_eq!(&parsed.sealed[..], &ct[..n - 28]);
            assert_eq!(&parsed.iv[..], &ct[n - 28..n - 12]);
            assert_eq!(&parsed.nonce[..], &ct[n - 12..]);
        }
        Format::MessagePack => {
            assert_eq!(ct[0], 0x95);
            assert!(parsed.sealed.len() < ct.len());
        }
        Format::Json => {
            assert_eq!(ct[0], b'{');
            assert!(parsed.algorithm.is_some());
        }
    }

    let Ok(plaintext) = key.decrypt(ct, context, fallback) else {
        return;
    };
    assert_eq!(plaintext.len() + 16, parsed.sealed.len());
    if parsed.format == Format::Current {
        let other = key
            .decrypt(ct, context, !fallback)
            .expect("fallback is irrelevant");
        assert_eq!(&other[..], &plaintext[..]);
    }
    let mut other_context = context.to_vec();
    other_context.push(0);
    assert!(key.decrypt(ct, &other_context, fallback).is_err());

    let again = key.encrypt(&plaintext, context).expect("encrypt");
    let back = key
        .decrypt(&again, context, false)
        .expect("decrypt own ciphertext");
    assert_eq!(&back[..], &plaintext[..]);
});
