//! `kes:v1:` API keys (§1.2).
//!
//! An API key is an Ed25519 seed in text form: `kes:v1:` + base64(0x00 ‖ 32-byte seed), where
//! 0x00 is the key type (Ed25519). A client turns it into a self-signed certificate for mutual
//! TLS; the server only ever sees that certificate, so the key's identity is the identity of the
//! certificate's public key. The seed is a secret: it is zeroized on drop, never printed by
//! `Debug`, and never echoed in an error message.

use super::Identity;
use crate::certs::{self, CertificateRequest};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// The text prefix of an API key (optional when parsing, as in the Go SDK).
pub const PREFIX: &str = "kes:v1:";

/// Key type byte for Ed25519, the only type there is.
const TYPE_ED25519: u8 = 0x00;

/// DER SubjectPublicKeyInfo of an Ed25519 key, up to the 32 public key bytes:
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) … }`.
pub(crate) const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// How long the client certificate derived from an API key is valid (as in the Go SDK).
const CLIENT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// An Ed25519 API key. The seed is zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct ApiKey {
    seed: Zeroizing<[u8; 32]>,
    public_key: [u8; 32],
}

impl ApiKey {
    /// A fresh random API key.
    pub fn generate() -> Result<ApiKey, String> {
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| "failed to generate API key: no randomness available".to_string())?;
        ApiKey::from_seed(seed)
    }

    /// Parses `kes:v1:<base64>` (the prefix is optional, as in the Go SDK). Surrounding
    /// whitespace, such as the newline of a file or an environment variable, is ignored.
    pub fn parse(text: &str) -> Result<ApiKey, String> {
        let text = text.trim();
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        // Errors never include the text: it may be a mistyped but still secret key.
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| "invalid API key: not of the form kes:v1:<base64>".to_string())?,
        );
        let Some((&key_type, seed_bytes)) = bytes.split_first() else {
            return Err("invalid API key: empty".into());
        };
        if seed_bytes.len() != 32 {
            return Err(format!(
                "invalid API key: decodes to {} bytes, expected 33",
                bytes.len()
            ));
        }
        if key_type != TYPE_ED25519 {
            return Err(format!(
                "invalid API key: unsupported key type {key_type} (only 0, Ed25519, exists)"
            ));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(seed_bytes);
        ApiKey::from_seed(seed)
    }

    /// The API key whose Ed25519 private key has this seed.
    pub(crate) fn from_seed(seed: Zeroizing<[u8; 32]>) -> Result<ApiKey, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| "invalid API key: not an Ed25519 seed".to_string())?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(pair.public_key().as_ref());
        Ok(ApiKey { seed, public_key })
    }

    /// The text form `kes:v1:…` (a secret: print only where the user asked for it).
    pub fn to_text(&self) -> String {
        let mut raw = Zeroizing::new([0u8; 33]);
        raw[0] = TYPE_ED25519;
        raw[1..].copy_from_slice(self.seed.as_ref());
        let mut text = String::with_capacity(PREFIX.len() + 44);
        text.push_str(PREFIX);
        STANDARD.encode_string(raw.as_ref(), &mut text);
        text
    }

    /// The DER SubjectPublicKeyInfo of the key's public key (44 bytes).
    pub fn spki(&self) -> [u8; 44] {
        let mut spki = [0u8; 44];
        spki[..12].copy_from_slice(&ED25519_SPKI_PREFIX);
        spki[12..].copy_from_slice(&self.public_key);
        spki
    }

    pub fn identity(&self) -> Identity {
        Identity::of_spki(&self.spki())
    }

    /// The self-signed client certificate that KES clients derive from the key (§1.2): X.509 v3,
    /// Ed25519, random 128-bit serial, CN = the identity, valid from now for 90 days, key usage
    /// digitalSignature, extended key usage clientAuth, basicConstraints CA=false. The private key
    /// is PKCS#8.
    pub fn client_certificate(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), certs::CertError> {
        let request = CertificateRequest {
            common_name: self.identity().to_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            validity: CLIENT_CERTIFICATE_VALIDITY,
            server_auth: false,
            client_auth: true,
        };
        let (cert, key) = certs::self_signed_ed25519_from_seed(&self.seed, &request)?;
        Ok((cert, PrivateKeyDer::Pkcs8(key)))
    }
}

impl ApiKey {
    /// A self-signed certificate for this key's Ed25519 key pair, and the key as PKCS#8 v1
    /// (`kes identity new --key --cert`: the certificate has the API key's identity).
    pub fn certificate(
        &self,
        request: &CertificateRequest,
    ) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), certs::CertError> {
        certs::self_signed_ed25519_from_seed(&self.seed, request)
    }

    /// The API key of an Ed25519 private key (PKCS#8 v1 or v2): the key is the seed, so any
    /// Ed25519 private key is an API key. Other key types are an error.
    pub fn from_private_key(key: &PrivateKeyDer<'_>) -> Result<ApiKey, String> {
        const UNSUPPORTED: &str = "unsupported private key: only Ed25519 private keys are API keys";
        let PrivateKeyDer::Pkcs8(pkcs8) = key else {
            return Err(UNSUPPORTED.into());
        };
        let der = pkcs8.secret_pkcs8_der();
        // SEQUENCE { INTEGER 0|1, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } … }
        let shape = der.len() >= 48
            && der[0] == 0x30
            && der[2..4] == [0x02, 0x01]
            && der[5..12] == [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]
            && der[12..16] == [0x04, 0x22, 0x04, 0x20];
        if !shape {
            return Err(UNSUPPORTED.into());
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&der[16..48]);
        let api_key = ApiKey::from_seed(seed)?;
        // A v2 key carries its public key too: it must be the seed's.
        if certs::spki_of_private_key(key)? != api_key.spki() {
            return Err("invalid Ed25519 private key: its public key does not match".into());
        }
        Ok(api_key)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("identity", &self.identity().as_str())
            .field("seed", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempDir, ossl};

    const EXAMPLE_KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";
    const EXAMPLE_IDENTITY: &str =
        "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";
    const EXAMPLE_SPKI: &str =
        "302a300506032b6570032100bce7ef7e567e6487fe084ab3ee223d6ce264c9967625abfecaafa9e5be5b04b1";

    #[test]
    fn worked_example() {
        let key = ApiKey::parse(EXAMPLE_KEY).unwrap();
        assert_eq!(crate::auth::identity::hex_lower(&key.spki()), EXAMPLE_SPKI);
        assert_eq!(key.identity().as_str(), EXAMPLE_IDENTITY);
        assert_eq!(key.to_text(), EXAMPLE_KEY);
        assert_eq!(EXAMPLE_KEY.len(), 51);
        // The prefix is optional, surrounding whitespace is ignored.
        let bare = ApiKey::parse(&EXAMPLE_KEY[PREFIX.len()..]).unwrap();
        assert_eq!(bare.identity().as_str(), EXAMPLE_IDENTITY);
        let padded = ApiKey::parse(&format!("  {EXAMPLE_KEY}\n")).unwrap();
        assert_eq!(padded.identity().as_str(), EXAMPLE_IDENTITY);
    }

    #[test]
    fn rejects_invalid_keys() {
        let body = &EXAMPLE_KEY[PREFIX.len()..];
        let invalid = [
            // From the SDK tests: a wrong prefix, and type byte ≠ 0.
            format!("v1:{body}"),
            format!("kes:{body}"),
            "kes:v1:sbDvZFqUPFFwxRS4EkuoEb2nyyInkdKSUEYHXFHeTouW".to_string(),
            // Wrong lengths, not base64, empty.
            "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYA==".to_string(),
            format!("{EXAMPLE_KEY}AAAA"),
            "kes:v1:AD9E7FSYWrMD-VjhI6q545cYT9YOyFxZb7UnjEepYDRc".to_string(),
            "kes:v1:".to_string(),
            String::new(),
            "KES:V1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc".to_string(),
        ];
        for text in &invalid {
            let err = ApiKey::parse(text).expect_err(text);
            assert!(!err.contains(body), "error echoes the key: {err}");
        }
    }

    #[test]
    fn generate_round_trip_and_debug_redacted() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a.to_text(), b.to_text());
        let text = a.to_text();
        assert!(text.starts_with(PREFIX));
        assert_eq!(text.len(), 51);
        let parsed = ApiKey::parse(&text).unwrap();
        assert_eq!(parsed.identity(), a.identity());
        let debug = format!("{a:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(&text[PREFIX.len()..]));
        assert!(debug.contains(a.identity().as_str()));
    }

    #[test]
    fn client_certificate_has_the_key_identity() {
        let key = ApiKey::parse(EXAMPLE_KEY).unwrap();
        let (cert, private_key) = key.client_certificate().unwrap();
        assert_eq!(
            Identity::of_certificate(&cert).unwrap().as_str(),
            EXAMPLE_IDENTITY
        );
        assert!(!crate::auth::identity::is_ca_certificate(&cert));
        // PKCS#8 v1 of the seed, as the Go SDK writes it.
        let PrivateKeyDer::Pkcs8(pkcs8) = &private_key else {
            panic!("expected PKCS#8")
        };
        assert_eq!(pkcs8.secret_pkcs8_der().len(), 48);
        crate::certs::check_key_pair(&cert, &private_key).unwrap();

        // openssl agrees on the contents.
        let dir = TempDir::new("apikey");
        std::fs::write(dir.join("c.der"), cert.as_ref()).unwrap();
        let text =
            String::from_utf8(ossl(dir.path(), "x509 -inform DER -in c.der -noout -text")).unwrap();
        for want in [
            "Version: 3 (0x2)",
            "Signature Algorithm: ED25519",
            &format!("Subject: CN = {EXAMPLE_IDENTITY}"),
            "Digital Signature",
            "TLS Web Client Authentication",
            "CA:FALSE",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("TLS Web Server Authentication"));
        let purpose = String::from_utf8(ossl(
            dir.path(),
            "x509 -inform DER -in c.der -noout -checkend 7775000",
        ))
        .unwrap();
        assert!(purpose.contains("will not expire"), "{purpose}");
        // A random serial of at most 128 bits.
        let serial = String::from_utf8(ossl(
            dir.path(),
            "x509 -inform DER -in c.der -noout -serial",
        ))
        .unwrap();
        let hex = serial.trim().trim_start_matches("serial=");
        assert!(hex.len() <= 34 && hex.len() > 16, "{serial}");
    }
}
