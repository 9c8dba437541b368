//! Identities (§1.1): who a client is.
//!
//! A KES identity is the lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (SPKI) of the
//! client's certificate. Only the public key counts: subject, issuer, validity and signature are
//! ignored, so the same key in a renewed certificate keeps its identity.
//!
//! To find the SPKI we walk the certificate's DER ourselves instead of using an X.509 library:
//! the walk is short, accepts X.509 v1 certificates (which webpki rejects and the Go server
//! accepts), and pulls in no dependencies. It must never panic or read out of bounds on bytes a
//! client sent: every length is checked, indefinite lengths and non-minimal lengths are rejected,
//! and each structure we step through must be exactly filled by its elements.

use rustls::pki_types::CertificateDer;
use std::fmt;

use crate::der::parse_certificate;
pub use crate::der::{DerError, InvalidCertificate, is_ca_certificate, spki_of_certificate};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The identity of a client: 64 lower-case hex characters, or empty when unknown.
///
/// A configured identity (`admin.identity`, `policy.*.identities`) may be any string (e.g.
/// `disabled`); such an identity simply never matches a certificate. Cloning is cheap (a
/// reference count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Arc<str>);

impl Identity {
    /// An identity from any string, as written in a configuration file. No check is made: an
    /// identity that is not 64 lower-case hex characters is valid but matches no certificate.
    pub fn new(text: impl Into<Arc<str>>) -> Identity {
        Identity(text.into())
    }

    /// An identity from exactly 64 lower-case hex characters (the form the server computes).
    pub fn from_hex(text: &str) -> Result<Identity, String> {
        if is_identity_hex(text) {
            Ok(Identity::new(text))
        } else {
            Err(format!(
                "invalid identity '{text}': expected 64 lower-case hex characters"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when this is 64 lower-case hex characters, i.e. something a certificate can have.
    pub fn is_hex(&self) -> bool {
        is_identity_hex(&self.0)
    }

    /// The identity of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> Identity {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki);
        Identity::new(hex_lower(digest.as_ref()))
    }

    /// The identity of a DER certificate (→ error when the DER cannot be walked to its SPKI).
    pub fn of_certificate(der: &[u8]) -> Result<Identity, InvalidCertificate> {
        spki_of_certificate(der).map(Identity::of_spki)
    }

    /// The identity of a TLS peer from the certificate list it presented (§1.1).
    ///
    /// Certificates whose basicConstraints say CA=true are dropped and exactly one must remain.
    /// Unlike the Go server we also require that one to be the **first** certificate: TLS proves
    /// possession of the first certificate's key only, so a peer that sent `[its own CA
    /// certificate, someone else's leaf]` must not get the leaf's identity. Well-behaved clients
    /// always send their own certificate first.
    pub fn of_peer(certificates: &[CertificateDer<'_>]) -> Result<Identity, PeerIdentityError> {
        let mut leaf = None;
        for (index, cert) in certificates.iter().enumerate() {
            let parsed = parse_certificate(cert.as_ref()).map_err(PeerIdentityError::Malformed)?;
            let is_ca = parsed
                .basic_constraints_ca()
                .map_err(PeerIdentityError::Malformed)?;
            if is_ca {
                continue;
            }
            if leaf.is_some() {
                return Err(PeerIdentityError::MoreThanOne);
            }
            leaf = Some((index, parsed.spki));
        }
        match leaf {
            None => Err(PeerIdentityError::Missing),
            Some((0, spki)) => Ok(Identity::of_spki(spki)),
            Some(_) => Err(PeerIdentityError::NotFirst),
        }
    }

    /// Constant-time comparison with a configured identity string. An empty (unknown) identity
    /// matches nothing, not even an empty string.
    pub fn matches(&self, configured: &str) -> bool {
        !self.is_empty() && bool::from(self.0.as_bytes().ct_eq(configured.as_bytes()))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Identity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Identity::new)
    }
}

/// Why a TLS peer has no identity. `Display` gives the messages of the Go server (§1.1); the API
/// layer decides the status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentityError {
    /// No certificate, or only CA certificates.
    Missing,
    /// More than one non-CA certificate.
    MoreThanOne,
    /// The only non-CA certificate is not the first one, whose key the handshake proved.
    NotFirst,
    /// A certificate could not be parsed (the handshake should already have failed).
    Malformed(DerError),
}

impl fmt::Display for PeerIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentityError::Missing => f.write_str("tls: client certificate is required"),
            PeerIdentityError::MoreThanOne => {
                f.write_str("tls: received more than one client certificate")
            }
            PeerIdentityError::NotFirst => {
                f.write_str("tls: the client certificate must be the first certificate sent")
            }
            PeerIdentityError::Malformed(why) => {
                write!(f, "tls: invalid client certificate: {why}")
            }
        }
    }
}

impl std::error::Error for PeerIdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PeerIdentityError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

fn is_identity_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TempDir, XorShift, cert_der, openssl_identity, openssl_spki, ossl};

    const EXAMPLE_SPKI: &str =
        "302a300506032b6570032100bce7ef7e567e6487fe084ab3ee223d6ce264c9967625abfecaafa9e5be5b04b1";
    const EXAMPLE_IDENTITY: &str =
        "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Certificates of every kind the brief lists, made by openssl in a temp dir.
    struct Fixtures {
        dir: TempDir,
    }

    impl Fixtures {
        fn new() -> Fixtures {
            let dir = TempDir::new("identity");
            let d = dir.path();
            let leaf_ext = "basicConstraints=critical,CA:FALSE";
            for (name, newkey) in [
                ("ec", "ec -pkeyopt ec_paramgen_curve:P-256"),
                ("rsa", "rsa:2048"),
                ("ed25519", "ed25519"),
            ] {
                ossl(
                    d,
                    &format!(
                        "req -x509 -nodes -days 1 -newkey {newkey} -keyout {name}.key -out {name}.pem \
                     -subj /CN={name} -addext {leaf_ext}"
                    ),
                );
            }

            // X.509 v1 (openssl x509 -req without extensions) and an expired one.
            ossl(d, "genpkey -algorithm ed25519 -out v1.key");
            ossl(d, "req -new -key v1.key -subj /CN=v1 -out v1.csr");
            ossl(d, "x509 -req -in v1.csr -key v1.key -days 1 -out v1.pem");
            ossl(
                d,
                "x509 -req -in v1.csr -key v1.key -days -1 -out expired.pem",
            );

            // A CA and a leaf it signed.
            ossl(
                d,
                "req -x509 -nodes -days 1 -newkey ec -pkeyopt ec_paramgen_curve:P-384 \
                     -keyout ca.key -out ca.pem -subj /CN=ca \
                     -addext basicConstraints=critical,CA:TRUE,pathlen:1",
            );
            let ext = format!("{leaf_ext}\nextendedKeyUsage=clientAuth\n");
            std::fs::write(d.join("leaf.ext"), ext).unwrap();
            ossl(
                d,
                "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out leaf.key",
            );
            ossl(d, "req -new -key leaf.key -subj /CN=leaf -out leaf.csr");
            ossl(
                d,
                "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                     -extfile leaf.ext -out leaf.pem",
            );
            Fixtures { dir }
        }

        fn der(&self, name: &str) -> Vec<u8> {
            cert_der(self.dir.path(), &format!("{name}.pem"))
        }
    }

    const ALL: &[&str] = &["ec", "rsa", "ed25519", "v1", "expired", "ca", "leaf"];

    #[test]
    fn worked_example_spki() {
        let spki = unhex(EXAMPLE_SPKI);
        assert_eq!(Identity::of_spki(&spki).as_str(), EXAMPLE_IDENTITY);
    }

    #[test]
    fn matches_openssl_for_every_kind_of_certificate() {
        let fx = Fixtures::new();
        let d = fx.dir.path();
        for name in ALL {
            let pem = format!("{name}.pem");
            let der = fx.der(name);
            let spki = spki_of_certificate(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spki, openssl_spki(d, &pem).as_slice(), "{name}: SPKI");
            let id = Identity::of_certificate(&der).unwrap();
            assert_eq!(id.as_str(), openssl_identity(d, &pem), "{name}: identity");
            assert!(id.is_hex());
        }
    }

    #[test]
    fn basic_constraints() {
        let fx = Fixtures::new();
        for (name, want) in [
            ("ec", false),
            ("rsa", false),
            ("ed25519", false),
            ("v1", false),
            ("expired", false),
            ("leaf", false),
            ("ca", true),
        ] {
            assert_eq!(is_ca_certificate(&fx.der(name)), want, "{name}");
        }
        // openssl's default `req -x509` certificate is a CA.
        let d = fx.dir.path();
        ossl(
            d,
            "req -x509 -nodes -days 1 -newkey ed25519 -keyout d.key -out d.pem -subj /CN=d",
        );
        assert!(is_ca_certificate(&cert_der(d, "d.pem")));
        assert!(!is_ca_certificate(b"garbage"));
    }

    #[test]
    fn peer_identity() {
        let fx = Fixtures::new();
        let leaf = CertificateDer::from(fx.der("leaf"));
        let ca = CertificateDer::from(fx.der("ca"));
        let ec = CertificateDer::from(fx.der("ec"));
        let leaf_id = Identity::of_certificate(&leaf).unwrap();

        assert_eq!(
            Identity::of_peer(std::slice::from_ref(&leaf)),
            Ok(leaf_id.clone())
        );
        assert_eq!(Identity::of_peer(&[leaf.clone(), ca.clone()]), Ok(leaf_id));
        assert_eq!(Identity::of_peer(&[]), Err(PeerIdentityError::Missing));
        assert_eq!(
            Identity::of_peer(std::slice::from_ref(&ca)),
            Err(PeerIdentityError::Missing)
        );
        assert_eq!(
            Identity::of_peer(&[leaf.clone(), ec.clone()]),
            Err(PeerIdentityError::MoreThanOne)
        );
        // The handshake proves the key of the first certificate only.
        assert_eq!(
            Identity::of_peer(&[ca.clone(), leaf.clone()]),
            Err(PeerIdentityError::NotFirst)
        );
        let garbage = CertificateDer::from(vec![0x30, 0x00]);
        assert!(matches!(
            Identity::of_peer(&[leaf, garbage]),
            Err(PeerIdentityError::Malformed(_))
        ));
        assert_eq!(
            PeerIdentityError::Missing.to_string(),
            "tls: client certificate is required"
        );
        assert_eq!(
            PeerIdentityError::MoreThanOne.to_string(),
            "tls: received more than one client certificate"
        );
    }

    #[test]
    fn constant_time_match() {
        let id = Identity::of_spki(&unhex(EXAMPLE_SPKI));
        assert!(id.matches(EXAMPLE_IDENTITY));
        assert!(!id.matches(&EXAMPLE_IDENTITY.to_ascii_uppercase()));
        assert!(!id.matches(&EXAMPLE_IDENTITY[..63]));
        assert!(!id.matches(""));
        assert!(!id.matches("disabled"));
        assert!(!Identity::default().matches(""));
        assert!(Identity::new("disabled").matches("disabled"));
    }

    #[test]
    fn constructors() {
        assert!(Identity::from_hex(EXAMPLE_IDENTITY).is_ok());
        assert!(Identity::from_hex(&EXAMPLE_IDENTITY.to_ascii_uppercase()).is_err());
        assert!(Identity::from_hex("disabled").is_err());
        assert!(!Identity::new("disabled").is_hex());
        let id = Identity::new(EXAMPLE_IDENTITY);
        assert_eq!(id.to_string(), EXAMPLE_IDENTITY);
        assert_eq!(id.clone(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{EXAMPLE_IDENTITY}\""));
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn rejects_malformed_der() {
        // A minimal well-formed certificate skeleton (contents are meaningless, structure is valid).
        let spki = unhex(EXAMPLE_SPKI);
        let tbs_body: Vec<u8> = [
            &[0x02, 0x01, 0x01][..], // serial
            &[0x30, 0x00],           // signature alg
            &[0x30, 0x00],           // issuer
            &[0x30, 0x00],           // validity
            &[0x30, 0x00],           // subject
            &spki,
        ]
        .concat();
        let wrap = |tag: u8, body: &[u8]| -> Vec<u8> {
            assert!(body.len() < 0x80);
            [&[tag, body.len() as u8][..], body].concat()
        };
        let tbs = wrap(0x30, &tbs_body);
        let cert_body = [&tbs[..], &[0x30, 0x00], &[0x03, 0x01, 0x00]].concat();
        let cert = wrap(0x30, &cert_body);
        assert_eq!(spki_of_certificate(&cert).unwrap(), spki.as_slice());

        // Trailing data after the certificate, or inside it.
        let mut trailing = cert.clone();
        trailing.push(0);
        assert!(spki_of_certificate(&trailing).is_err());
        let inner = wrap(0x30, &[&cert_body[..], &[0x05, 0x00]].concat());
        assert!(spki_of_certificate(&inner).is_err());
        let tbs_trailing = wrap(0x30, &[&tbs_body[..], &[0x05, 0x00]].concat());
        let c = wrap(
            0x30,
            &[&tbs_trailing[..], &[0x30, 0x00], &[0x03, 0x01, 0x00]].concat(),
        );
        assert!(spki_of_certificate(&c).is_err());

        // Indefinite length, non-minimal lengths, absurd lengths.
        let mut indefinite = cert.clone();
        indefinite[1] = 0x80;
        assert!(spki_of_certificate(&indefinite).is_err());
        let long_form = [&[0x30, 0x81, cert_body.len() as u8][..], &cert_body].concat();
        assert!(spki_of_certificate(&long_form).is_err());
        let zero_padded = [&[0x30, 0x82, 0x00, cert_body.len() as u8][..], &cert_body].concat();
        assert!(spki_of_certificate(&zero_padded).is_err());
        for header in [
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0xff],
            &[0x30],
            &[0x1f, 0x01, 0x00],
            &[],
        ] {
            let bytes = [header, &cert_body].concat();
            assert!(spki_of_certificate(&bytes).is_err());
            assert!(spki_of_certificate(header).is_err());
        }

        // Every truncation of a real certificate fails cleanly.
        let fx = Fixtures::new();
        let real = fx.der("rsa");
        for len in 0..real.len() {
            assert!(
                spki_of_certificate(&real[..len]).is_err(),
                "truncated to {len}"
            );
            assert!(!is_ca_certificate(&real[..len]));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let fx = Fixtures::new();
        let seeds: Vec<Vec<u8>> = ALL.iter().map(|n| fx.der(n)).collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Random bytes, with and without a plausible SEQUENCE header.
        for i in 0..20_000 {
            let len = rng.below(300);
            let mut bytes = rng.bytes(len, &[]);
            if i % 2 == 0 && bytes.len() > 2 {
                bytes[0] = 0x30;
            }
            let _ = spki_of_certificate(&bytes);
            let _ = is_ca_certificate(&bytes);
        }
        // Mutations of real certificates: flipped bytes, inserted and deleted bytes.
        for round in 0..20_000 {
            let mut der = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(der.len());
                match rng.below(3) {
                    0 => der[at] = rng.next() as u8,
                    1 => der.insert(at, rng.next() as u8),
                    _ => {
                        der.remove(at);
                    }
                }
            }
            let _ = spki_of_certificate(&der);
            let _ = is_ca_certificate(&der);
            let _ = Identity::of_peer(&[CertificateDer::from(der)]);
        }
    }
}
