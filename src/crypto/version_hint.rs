//! The key-version hint in the iv of current ciphertexts (docs/key-versions.md §4).
//!
//! A ciphertext made with version n ≥ 2 of a key carries n in the last 4 bytes of its 16-byte
//! iv, masked: `iv = r ‖ (BE32(n) XOR SHA-256(DOMAIN ‖ r)[0..4])`, `r` 12 random bytes. The
//! layout stays exactly §5.3 (same fields, same length), and decrypt without a `version` finds
//! the candidate version with one SHA-256, whatever the number of versions. Version 1 (the key as
//! it was before any rotation) keeps a fully random iv, so a random iv decodes to some number;
//! callers treat a hint as a *candidate* only (try it, then fall back to version 1), and only the
//! AEAD decides authenticity. The hint is not secret (anyone can compute it) and not
//! authenticated by itself: a tampered hint only causes a failed try.

use super::ciphertext::{self, Format};
use ring::digest;

/// The domain separation prefix of the mask (20 bytes; the mask input is 32 bytes, so it can
/// never equal the 16-byte input of the per-message key derivation, §5.2).
const DOMAIN: &[u8] = b"kes key version hint";

fn mask(r: &[u8]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(r);
    let sum = ctx.finish();
    let mut m = [0u8; 4];
    m.copy_from_slice(&sum.as_ref()[..4]);
    m
}

/// Writes the hint for `version` into the last 4 bytes of `iv`, keeping its first 12 (random)
/// bytes. Only for versions ≥ 2: version 1 ciphertexts keep a fully random iv.
pub(super) fn set(iv: &mut [u8; 16], version: u32) {
    let m = mask(&iv[..12]);
    let v = version.to_be_bytes();
    for i in 0..4 {
        iv[12 + i] = v[i] ^ m[i];
    }
}

/// [`set`] for tests outside the crypto module (building ciphertexts with chosen hints).
#[cfg(test)]
pub(crate) fn set_for_tests(iv: &mut [u8; 16], version: u32) {
    set(iv, version)
}

/// The number an iv's last 4 bytes decode to (any value for a random iv).
pub fn of_iv(iv: &[u8; 16]) -> u32 {
    let m = mask(&iv[..12]);
    u32::from_be_bytes([iv[12] ^ m[0], iv[13] ^ m[1], iv[14] ^ m[2], iv[15] ^ m[3]])
}

/// The candidate version of a ciphertext: `Some(n)` with n ≥ 2 for a ciphertext in the current
/// layout (§5.3) whose iv decodes to such a number; `None` for legacy layouts (§5.4, only ever
/// made by version 1), inputs too short to be a ciphertext, and numbers below 2. A candidate is
/// not a proof: a version-1 ciphertext decodes to a random number.
pub fn of(ciphertext: &[u8]) -> Option<u32> {
    let parsed = ciphertext::parse(ciphertext).ok()?;
    if parsed.format != Format::Current {
        return None;
    }
    let n = of_iv(&parsed.iv);
    (n >= 2).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, SecretKey};

    #[test]
    fn hints_round_trip() {
        let key = SecretKey::new(Algorithm::Aes256, [7; 32]);
        for n in [2, 3, 255, 256, 1000, 65_536, u32::MAX] {
            let ct = key.encrypt_version(n, b"hello", b"ctx").unwrap();
            assert_eq!(ct.len(), 5 + 44, "the §5.3 layout, nothing added");
            assert_eq!(of(&ct), Some(n));
            assert_eq!(&key.decrypt(&ct, b"ctx", false).unwrap()[..], b"hello");
            let (dek, ct) = key.generate_data_key_version(n, b"").unwrap();
            assert_eq!(ct.len(), 76);
            assert_eq!(of(&ct), Some(n));
            assert_eq!(&key.decrypt(&ct, b"", false).unwrap()[..], &dek[..]);
        }
    }

    #[test]
    fn version_1_keeps_a_random_iv() {
        // Version 1 writes today's ciphertexts: the iv is not touched, so its decoded number is
        // random (and all 1000 cannot be 1).
        let key = SecretKey::new(Algorithm::ChaCha20, [9; 32]);
        let ones = (0..1000)
            .filter(|_| {
                let ct = key.encrypt_version(1, b"x", b"").unwrap();
                let parsed = ciphertext::parse(&ct).unwrap();
                of_iv(&parsed.iv) == 1
            })
            .count();
        assert!(ones < 5);
    }

    #[test]
    fn fixed_vectors() {
        // Computed independently with Python's hashlib:
        // r = 000102…0b, iv = r ‖ (BE32(n) XOR sha256(b"kes key version hint" + r)[:4]).
        for (n, hex) in [
            (2, "000102030405060708090a0ba7b8d6a4"),
            (1000, "000102030405060708090a0ba7b8d54e"),
        ] {
            let mut iv = [0u8; 16];
            for (i, b) in iv.iter_mut().enumerate().take(12) {
                *b = i as u8;
            }
            set(&mut iv, n);
            let got: String = iv.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex);
            assert_eq!(of_iv(&iv), n);
        }
    }

    #[test]
    fn legacy_and_short_inputs_have_no_hint() {
        assert_eq!(of(b""), None);
        assert_eq!(of(&[0u8; 28]), None);
        // The MessagePack example of §5.4.
        use base64::Engine;
        let msgpack = base64::engine::general_purpose::STANDARD
            .decode("laZBRVMyNTbZIDYzMGRjZDI5NjZjNDMzNjY5MTEyNTQ0OGJiYjI1YjRmxBBAQUJDREVGR0hJSktMTU5PxAxgYWJjZGVmZ2hpamvEGoNq9tb7Y5qLTEpC6sUYJ/HCMMQSU+VyvP9C")
            .unwrap();
        assert_eq!(of(&msgpack), None);
        let json = br#"{"aead":"AES-256-GCM-HMAC-SHA-256","id":"630dcd2966c4336691125448bbb25b4f","iv":"QEFCQ0RFRkdISUpLTE1OTw==","nonce":"YGFiY2RlZmdoaWpr","bytes":"g2r21vtjmotMSkLqxRgn8cIwxBJT5XK8/0I="}"#;
        assert_eq!(of(json), None);
    }
}
