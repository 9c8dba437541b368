//! Ciphertext formats (§5.3, §5.4): splitting a client's ciphertext into its parts.
//!
//! Three layouts exist and all must stay decryptable forever, because MinIO keeps data-key
//! ciphertexts in object metadata:
//! * current (2024-02-29 on): `AEAD output ‖ iv(16) ‖ nonce(12)`, no header;
//! * MessagePack (v0.19.2 … 2024-01): `[alg, key-id, iv, nonce, ct‖tag]`, first byte `0x95`;
//! * JSON (≤ v0.19.1): `{"aead","id","iv","nonce","bytes"}`, first byte `{`.
//!
//! [`parse`] follows the Go server's order (§5.4 "Parsing order"): try the legacy layout the first
//! byte suggests and, if that does not parse, treat the input as a current ciphertext, since a
//! current ciphertext may start with either byte by chance. The key-id of legacy ciphertexts is
//! ignored, as by Go 63649d0.
//!
//! Everything here runs on bytes a client sends: it must never panic, never index without a bounds
//! check, never allocate more than the input's size, and never decide authenticity (that is the
//! AEAD's job in [`super::key`]; a parse that "succeeds" proves nothing).

use super::gojson::{Field, Object};
use super::{Algorithm, Error};
use serde_json::Value;
use std::borrow::Cow;

/// Length of the derivation IV (§5.2).
pub const IV_LEN: usize = 16;
/// Length of the AEAD nonce (§5.2).
pub const NONCE_LEN: usize = 12;

/// Which layout a ciphertext was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The current layout (§5.3).
    Current,
    /// The MessagePack layout (§5.4).
    MessagePack,
    /// The JSON layout (§5.4).
    Json,
}

/// A ciphertext split into its parts, whatever its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub format: Format,
    /// The algorithm a legacy ciphertext names. `None` for current ciphertexts, which name none,
    /// and for a MessagePack ciphertext naming an unknown algorithm.
    pub algorithm: Option<Algorithm>,
    /// The HChaCha20 / HMAC input of the per-message key derivation.
    pub iv: [u8; IV_LEN],
    pub nonce: [u8; NONCE_LEN],
    /// The AEAD output: encrypted bytes followed by the 16-byte tag. Borrowed from the input,
    /// except for JSON ciphertexts whose fields are base64.
    pub sealed: Cow<'a, [u8]>,
}

/// Splits a ciphertext of any layout. Fails (with [`Error::NotAuthentic`], the only error a
/// client may learn) only when the input is too short to be a current ciphertext; every other
/// input is some candidate that the AEAD will accept or reject.
pub fn parse(ciphertext: &[u8]) -> Result<Parsed<'_>, Error> {
    if ciphertext.len() <= IV_LEN + NONCE_LEN {
        return Err(Error::NotAuthentic);
    }
    let legacy = match ciphertext.first() {
        Some(0x95) => parse_msgpack(ciphertext),
        Some(b'{') => parse_json(ciphertext),
        _ => None,
    };
    match legacy {
        Some(parsed) => Ok(parsed),
        None => parse_current(ciphertext),
    }
}

/// The current layout: `sealed ‖ iv ‖ nonce`.
fn parse_current(ciphertext: &[u8]) -> Result<Parsed<'_>, Error> {
    let (rest, nonce) = ciphertext
        .split_last_chunk::<NONCE_LEN>()
        .ok_or(Error::NotAuthentic)?;
    let (sealed, iv) = rest
        .split_last_chunk::<IV_LEN>()
        .ok_or(Error::NotAuthentic)?;
    Ok(Parsed {
        format: Format::Current,
        algorithm: None,
        iv: *iv,
        nonce: *nonce,
        sealed: Cow::Borrowed(sealed),
    })
}

/// The MessagePack layout: fixarray(5) of str, str, bin(16), bin(12), bin, and nothing after.
/// Every str/bin width is accepted (Go's encoder picks the smallest, but a reader should not care).
fn parse_msgpack(ciphertext: &[u8]) -> Option<Parsed<'_>> {
    let mut r = MsgpackReader { rest: ciphertext };
    if r.byte()? != 0x95 {
        return None;
    }
    let algorithm = r.str()?;
    let _key_id = r.str()?; // ignored, as by Go 63649d0 (§5.4)
    let iv = <[u8; IV_LEN]>::try_from(r.bin()?).ok()?;
    let nonce = <[u8; NONCE_LEN]>::try_from(r.bin()?).ok()?;
    let sealed = r.bin()?;
    if !r.rest.is_empty() {
        return None;
    }
    Some(Parsed {
        format: Format::MessagePack,
        // An unknown name is not a parse failure: the key's own type decides anyway unless the
        // fallback applies, and Go 63649d0 ignores the name altogether.
        algorithm: std::str::from_utf8(algorithm)
            .ok()
            .and_then(Algorithm::from_name),
        iv,
        nonce,
        sealed: Cow::Borrowed(sealed),
    })
}

/// The JSON layout, read like Go's `encoding/json` (see [`gojson`]).
fn parse_json(ciphertext: &[u8]) -> Option<Parsed<'static>> {
    let object = Object::parse(ciphertext)?;
    // Only the two names of that era; the MessagePack-era names never appeared in JSON.
    let algorithm = match object.string("aead") {
        Field::Present(Value::String(name)) => match name.as_str() {
            "AES-256-GCM-HMAC-SHA-256" => Algorithm::Aes256,
            "ChaCha20Poly1305" => Algorithm::ChaCha20,
            _ => return None,
        },
        _ => return None,
    };
    // The id is ignored, but a non-string id made Go's decoder fail, so it makes ours fail too.
    if matches!(object.string("id"), Field::WrongType) {
        return None;
    }
    let iv = <[u8; IV_LEN]>::try_from(&object.bytes("iv")?[..]).ok()?;
    let nonce = <[u8; NONCE_LEN]>::try_from(&object.bytes("nonce")?[..]).ok()?;
    // The AEAD output is not secret; it leaves the wiping wrapper here.
    let sealed = object.bytes("bytes")?.to_vec();
    Some(Parsed {
        format: Format::Json,
        algorithm: Some(algorithm),
        iv,
        nonce,
        sealed: Cow::Owned(sealed),
    })
}

/// A cursor over MessagePack bytes: each read either succeeds within bounds or returns `None`.
struct MsgpackReader<'a> {
    rest: &'a [u8],
}

impl<'a> MsgpackReader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(taken)
    }

    fn be_u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
    }

    fn be_u32(&mut self) -> Option<usize> {
        let b = <[u8; 4]>::try_from(self.take(4)?).ok()?;
        usize::try_from(u32::from_be_bytes(b)).ok()
    }

    /// fixstr, str8, str16 or str32. The contents need not be UTF-8 (Go strings need not be).
    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.be_u16()?,
            0xdb => self.be_u32()?,
            _ => return None,
        };
        self.take(len)
    }

    /// bin8, bin16 or bin32.
    fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => self.be_u16()?,
            0xc6 => self.be_u32()?,
            _ => return None,
        };
        self.take(len)
    }
}

/// Writers for the legacy layouts, for tests only: the server never writes them any more.
#[cfg(test)]
pub(super) mod legacy {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn msgpack_str(out: &mut Vec<u8>, s: &[u8]) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else if n < 256 {
            out.extend_from_slice(&[0xd9, n as u8]);
        } else {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(s);
    }

    pub fn msgpack_bin(out: &mut Vec<u8>, b: &[u8]) {
        let n = b.len();
        if n < 256 {
            out.extend_from_slice(&[0xc4, n as u8]);
        } else {
            out.push(0xc5);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(b);
    }

    /// Rewrites a current ciphertext into the MessagePack layout.
    pub fn to_msgpack(current: &[u8], algorithm: &str, key_id: &str) -> Vec<u8> {
        let (sealed, rest) = current.split_at(current.len() - 28);
        let (iv, nonce) = rest.split_at(16);
        let mut out = vec![0x95];
        msgpack_str(&mut out, algorithm.as_bytes());
        msgpack_str(&mut out, key_id.as_bytes());
        msgpack_bin(&mut out, iv);
        msgpack_bin(&mut out, nonce);
        msgpack_bin(&mut out, sealed);
        out
    }

    /// Rewrites a current ciphertext into the JSON layout.
    pub fn to_json(current: &[u8], aead: &str, key_id: &str) -> Vec<u8> {
        let (sealed, rest) = current.split_at(current.len() - 28);
        let (iv, nonce) = rest.split_at(16);
        format!(
            r#"{{"aead":"{aead}","id":"{key_id}","iv":"{}","nonce":"{}","bytes":"{}"}}"#,
            STANDARD.encode(iv),
            STANDARD.encode(nonce),
            STANDARD.encode(sealed)
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::legacy::{to_json, to_msgpack};
    use super::*;
    use crate::crypto::SecretKey;

    fn key(algorithm: Algorithm) -> SecretKey {
        SecretKey::new(algorithm, [3u8; 32])
    }

    #[test]
    fn current_layout_splits_from_the_end() {
        let input: Vec<u8> = (0u8..60).collect();
        let p = parse(&input).unwrap();
        assert_eq!(p.format, Format::Current);
        assert_eq!(p.algorithm, None);
        assert_eq!(&p.sealed[..], &input[..32]);
        assert_eq!(&p.iv[..], &input[32..48]);
        assert_eq!(&p.nonce[..], &input[48..]);
        // 29 bytes is the shortest input that parses (and then fails authentication).
        assert_eq!(parse(&input[..29]).unwrap().sealed.len(), 1);
        for len in 0..=28 {
            assert_eq!(parse(&input[..len]), Err(Error::NotAuthentic));
        }
    }

    #[test]
    fn legacy_round_trips_through_both_layouts() {
        for (algorithm, mp_names, json_name) in [
            (
                Algorithm::Aes256,
                ["AES256", "AES256-GCM_SHA256"],
                "AES-256-GCM-HMAC-SHA-256",
            ),
            (
                Algorithm::ChaCha20,
                ["ChaCha20", "XCHACHA20-POLY1305"],
                "ChaCha20Poly1305",
            ),
        ] {
            let k = key(algorithm);
            let current = k.encrypt(b"legacy plaintext", b"ctx").unwrap();
            let mut inputs: Vec<(Vec<u8>, Format)> = mp_names
                .iter()
                .map(|n| (to_msgpack(&current, n, &k.key_id()), Format::MessagePack))
                .collect();
            inputs.push((to_json(&current, json_name, &k.key_id()), Format::Json));
            // A wrong key-id does not matter (Go 63649d0 ignores it).
            inputs.push((
                to_msgpack(&current, mp_names[0], "wrong"),
                Format::MessagePack,
            ));
            inputs.push((to_json(&current, json_name, ""), Format::Json));
            for (input, format) in inputs {
                let p = parse(&input).unwrap();
                assert_eq!(p.format, format);
                assert_eq!(p.algorithm, Some(algorithm));
                for fallback in [false, true] {
                    let out = k.decrypt(&input, b"ctx", fallback).unwrap();
                    assert_eq!(&out[..], b"legacy plaintext");
                }
                assert_eq!(k.decrypt(&input, b"other", false), Err(Error::NotAuthentic));
            }
        }
    }

    #[test]
    fn msgpack_with_unknown_algorithm_uses_the_key_type() {
        let k = key(Algorithm::ChaCha20);
        let current = k.encrypt(b"pt", b"").unwrap();
        let input = to_msgpack(&current, "ROT13", "");
        assert_eq!(parse(&input).unwrap().algorithm, None);
        assert_eq!(&k.decrypt(&input, b"", true).unwrap()[..], b"pt");
    }

    #[test]
    fn fallback_honours_the_ciphertext_algorithm_only_when_asked() {
        // Same key bytes, read as AES256 because the stored value named no algorithm, but the
        // ciphertext was made with ChaCha20.
        let chacha = key(Algorithm::ChaCha20);
        let as_aes = key(Algorithm::Aes256);
        let current = chacha.encrypt(b"dek", b"").unwrap();
        for input in [
            to_msgpack(&current, "XCHACHA20-POLY1305", ""),
            to_json(&current, "ChaCha20Poly1305", ""),
        ] {
            assert_eq!(&as_aes.decrypt(&input, b"", true).unwrap()[..], b"dek");
            assert_eq!(as_aes.decrypt(&input, b"", false), Err(Error::NotAuthentic));
        }
        // Current ciphertexts name no algorithm: the fallback cannot apply.
        assert_eq!(
            as_aes.decrypt(&current, b"", true),
            Err(Error::NotAuthentic)
        );
    }

    #[test]
    fn tampering_with_legacy_ciphertexts_is_detected() {
        let k = key(Algorithm::Aes256);
        let current = k.encrypt(&[9u8; 32], b"").unwrap();
        let mp = to_msgpack(&current, "AES256", &k.key_id());
        // Layout: 0x95, 0xa6 "AES256" (bytes 2..8), 0xd9 32 key-id (bytes 10..42), iv, nonce, ct.
        assert_eq!(&mp[..3], &[0x95, 0xa6, b'A']);
        assert_eq!(&mp[8..10], &[0xd9, 32]);
        for i in 0..mp.len() {
            let mut bad = mp.clone();
            bad[i] ^= 0x01;
            let r = k.decrypt(&bad, b"", false);
            // The key-id is ignored, and so is the algorithm name when the key type wins.
            if (2..8).contains(&i) || (10..42).contains(&i) {
                assert!(r.is_ok(), "msgpack byte {i}");
            } else {
                assert_eq!(r, Err(Error::NotAuthentic), "msgpack byte {i}");
            }
        }
        let js = to_json(&current, "AES-256-GCM-HMAC-SHA-256", "");
        for i in 0..js.len() {
            let mut bad = js.clone();
            bad[i] ^= 0x01;
            if let Ok(pt) = k.decrypt(&bad, b"", false) {
                // Only changes Go's decoder also ignores may survive: a renamed (so unknown) "id"
                // member, or base64 that differs only in trailing bits.
                assert_eq!(&pt[..], &[9u8; 32], "json byte {i}");
                assert_eq!(parse(&bad).unwrap(), parse(&js).unwrap(), "json byte {i}");
            }
        }
    }

    #[test]
    fn malformed_msgpack_falls_back_to_current_and_fails() {
        let k = key(Algorithm::Aes256);
        let current = k.encrypt(b"0123456789", b"").unwrap();
        let good = to_msgpack(&current, "AES256", "");
        assert!(k.decrypt(&good, b"", false).is_ok());
        // Every truncation and every extension.
        for cut in 0..good.len() {
            assert_eq!(
                k.decrypt(&good[..cut], b"", false),
                Err(Error::NotAuthentic)
            );
            if cut > 28 {
                assert_eq!(parse(&good[..cut]).unwrap().format, Format::Current);
            }
        }
        let mut longer = good.clone();
        longer.push(0xc0);
        assert_eq!(parse(&longer).unwrap().format, Format::Current);
        // Wrong iv and nonce lengths.
        let (sealed, rest) = current.split_at(current.len() - 28);
        let (iv, nonce) = rest.split_at(16);
        let build = |iv: &[u8], nonce: &[u8]| {
            let mut out = vec![0x95];
            legacy::msgpack_str(&mut out, b"AES256");
            legacy::msgpack_str(&mut out, b"");
            legacy::msgpack_bin(&mut out, iv);
            legacy::msgpack_bin(&mut out, nonce);
            legacy::msgpack_bin(&mut out, sealed);
            out
        };
        assert_eq!(
            parse(&build(iv, nonce)).unwrap().format,
            Format::MessagePack
        );
        for (iv, nonce) in [(&iv[..15], nonce), (iv, &nonce[..11])] {
            assert_eq!(parse(&build(iv, nonce)).unwrap().format, Format::Current);
        }
        let mut long_iv = iv.to_vec();
        long_iv.push(0);
        assert_eq!(
            parse(&build(&long_iv, nonce)).unwrap().format,
            Format::Current
        );
        // Wrong array length, str where bin belongs, bin where str belongs, lengths past the end.
        let mut bad = good.clone();
        bad[0] = 0x94;
        assert_eq!(parse(&bad).unwrap().format, Format::Current);
        let mut bad = good.clone();
        bad[1] = 0xc4; // algorithm as bin
        assert_eq!(parse(&bad).unwrap().format, Format::Current);
        for header in [
            &[0x95, 0xdb, 0xff, 0xff, 0xff, 0xff][..],
            &[0x95, 0xda, 0xff, 0xff],
            &[0x95, 0xd9, 0xff],
            &[0x95, 0xa0, 0xa0, 0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0x95, 0xa0, 0xa0, 0xc5, 0xff, 0xff],
            &[0x95, 0xa0, 0xa0, 0xc4, 0xff],
        ] {
            let mut input = header.to_vec();
            input.resize(60, 0);
            assert_eq!(parse(&input).unwrap().format, Format::Current);
            assert_eq!(k.decrypt(&input, b"", true), Err(Error::NotAuthentic));
        }
    }

    #[test]
    fn malformed_json_falls_back_to_current_and_fails() {
        let k = key(Algorithm::ChaCha20);
        let current = k.encrypt(b"0123456789", b"").unwrap();
        let good = String::from_utf8(to_json(&current, "ChaCha20Poly1305", "x")).unwrap();
        assert_eq!(parse(good.as_bytes()).unwrap().format, Format::Json);
        for cut in 0..good.len() {
            assert_eq!(
                k.decrypt(&good.as_bytes()[..cut], b"", false),
                Err(Error::NotAuthentic)
            );
        }
        let variants = [
            good.replace("ChaCha20Poly1305", "ChaCha20"),
            good.replace("ChaCha20Poly1305", "XCHACHA20-POLY1305"),
            good.replace(r#""aead":"ChaCha20Poly1305","#, ""),
            good.replace(r#""id":"x""#, r#""id":7"#),
            good.replace(r#""nonce""#, r#""nonce2""#),
            good.replace(r#""iv":""#, r#""iv":"AAAA"#),
            good.replace(r#""bytes":""#, r#""bytes":"!"#),
            good.replace(r#""aead":"ChaCha20Poly1305""#, r#""aead":null"#),
            format!("{good} x"),
            good.replace('}', ""),
            good.replacen(':', "", 1),
            format!("[{good}]"),
        ];
        for v in &variants {
            let p = parse(v.as_bytes()).unwrap();
            assert_eq!(p.format, Format::Current, "{v}");
            assert_eq!(
                k.decrypt(v.as_bytes(), b"", true),
                Err(Error::NotAuthentic),
                "{v}"
            );
        }
        // What Go's decoder tolerates, we tolerate.
        let tolerated = [
            good.replace(r#""aead""#, r#""AEAD""#),
            good.replace(r#""id":"x""#, r#""id":null"#),
            good.replace(r#""id":"x","#, ""),
            good.replace('{', r#"{"unknown":[1,{"a":2}],"#),
            good.replace(r#""bytes":""#, "\"bytes\":\"\\n"),
            format!(" {good}\n"),
        ];
        for v in &tolerated {
            if v.starts_with('{') {
                assert_eq!(parse(v.as_bytes()).unwrap().format, Format::Json, "{v}");
                assert_eq!(
                    &k.decrypt(v.as_bytes(), b"", false).unwrap()[..],
                    b"0123456789"
                );
            } else {
                // Not starting with '{' means it is read as a current ciphertext (as in Go
                // 63649d0).
                assert_eq!(
                    k.decrypt(v.as_bytes(), b"", false),
                    Err(Error::NotAuthentic)
                );
            }
        }
    }
}
