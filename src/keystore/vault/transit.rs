//! Transit wrapping (§6.3): with `transit.key` set, a stored value is encrypted by Vault's transit
//! engine before it is written, and the K/V secret holds the transit ciphertext
//! (`vault:v<N>:<base64>`). A read that finds such a ciphertext has Vault decrypt it.
//!
//! Fixed quirk: the Go server accepts only `vault:v1:` ciphertexts from `encrypt`, so rotating
//! the transit key breaks every create. Any key version `vault:v<N>:` is accepted here; decrypt
//! handles all versions Vault still has.
//!
//! A stored value itself is base64 or JSON text, so it can never start with `vault:v`; that
//! prefix reliably marks a wrapped value.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use zeroize::Zeroizing;

use super::join_path;

/// The prefix of every transit ciphertext.
const WRAPPED: &str = "vault:v";

pub(crate) struct Transit {
    encrypt_url: String,
    decrypt_url: String,
}

impl Transit {
    pub fn new(engine: &str, key: &str) -> Transit {
        let engine = if engine.trim_matches('/').trim().is_empty() {
            "transit"
        } else {
            engine
        };
        Transit {
            encrypt_url: format!("/v1/{}", join_path(&[engine, "encrypt", key])),
            decrypt_url: format!("/v1/{}", join_path(&[engine, "decrypt", key])),
        }
    }

    pub fn encrypt_url(&self) -> &str {
        &self.encrypt_url
    }

    pub fn decrypt_url(&self) -> &str {
        &self.decrypt_url
    }

    /// `{"plaintext":"<base64 of value>"}`
    pub fn encrypt_body(value: &[u8]) -> Zeroizing<Vec<u8>> {
        let plaintext = Zeroizing::new(STANDARD.encode(value));
        body("plaintext", &plaintext)
    }

    /// `{"ciphertext":"vault:v…"}`
    pub fn decrypt_body(ciphertext: &str) -> Zeroizing<Vec<u8>> {
        body("ciphertext", ciphertext)
    }

    /// `data.ciphertext` of an encrypt answer; must be a transit ciphertext.
    pub fn parse_encrypt(body: &[u8]) -> Result<String, String> {
        let reply: Value =
            serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
        let ciphertext = reply
            .get("data")
            .and_then(|d| d.get("ciphertext"))
            .and_then(Value::as_str)
            .ok_or("the answer has no data.ciphertext")?;
        if !is_ciphertext(ciphertext) {
            return Err("data.ciphertext is not a 'vault:v<N>:' transit ciphertext".into());
        }
        Ok(ciphertext.to_string())
    }

    /// The value inside a decrypt answer (`data.plaintext`, base64).
    pub fn parse_decrypt(body: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut reply: Value =
            serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
        let plaintext = match reply
            .get_mut("data")
            .and_then(|d| d.get_mut("plaintext"))
            .map(Value::take)
        {
            Some(Value::String(p)) => Zeroizing::new(p),
            _ => return Err("the answer has no data.plaintext".into()),
        };
        STANDARD
            .decode(plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| "data.plaintext is not base64".to_string())
    }
}

/// Whether a stored string is a transit ciphertext (rather than a plain stored value).
pub(crate) fn is_wrapped(stored: &str) -> bool {
    stored.starts_with(WRAPPED)
}

/// `vault:v<digits>:<something>`
fn is_ciphertext(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(WRAPPED) else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && rest[digits..]
            .strip_prefix(':')
            .is_some_and(|c| !c.is_empty())
}

fn body(field: &str, value: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 32));
    // Serializing a map of strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &BTreeMap::from([(field, value)]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_versions() {
        assert!(is_ciphertext("vault:v1:abc"));
        assert!(is_ciphertext("vault:v12:abc"));
        assert!(!is_ciphertext("vault:v:abc"));
        assert!(!is_ciphertext("vault:v1:"));
        assert!(!is_ciphertext("vault:vx:abc"));
        assert!(!is_ciphertext("CiAK"));
        assert!(is_wrapped("vault:v2:abc"));
        assert!(!is_wrapped("eyJieXRlcyI6"));
    }

    #[test]
    fn bodies() {
        assert_eq!(
            &Transit::encrypt_body(b"hi")[..],
            br#"{"plaintext":"aGk="}"#
        );
        assert_eq!(
            &Transit::decrypt_body("vault:v1:x")[..],
            br#"{"ciphertext":"vault:v1:x"}"#
        );
        assert_eq!(
            Transit::parse_encrypt(br#"{"data":{"ciphertext":"vault:v3:AAAA"}}"#).unwrap(),
            "vault:v3:AAAA"
        );
        assert!(Transit::parse_encrypt(br#"{"data":{"ciphertext":"AAAA"}}"#).is_err());
        assert_eq!(
            &Transit::parse_decrypt(br#"{"data":{"plaintext":"aGk="}}"#).unwrap()[..],
            b"hi"
        );
    }

    #[test]
    fn paths() {
        let t = Transit::new("", "kes-wrap");
        assert_eq!(t.encrypt_url(), "/v1/transit/encrypt/kes-wrap");
        assert_eq!(t.decrypt_url(), "/v1/transit/decrypt/kes-wrap");
    }
}
