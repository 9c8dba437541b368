//! A certificate factory for tests: a CA, server certificates, and client certificates of every key
//! type KES accepts (ECDSA, RSA, Ed25519, and the Ed25519 certificate that clients derive from a
//! `kes:v1:` API key). Identities are computed here independently of the server's code:
//! lower-case hex SHA-256 of the DER SubjectPublicKeyInfo.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Ed25519,
}

/// A certificate with its private key.
pub struct Cert {
    pub der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
    /// hex(SHA-256(SPKI)).
    pub identity: String,
}

impl Cert {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<name>.crt` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key_pair(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        KeyKind::Rsa2048 => {
            // ring cannot generate RSA keys: let openssl do it.
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .expect("openssl genpkey");
            assert!(out.status.success(), "openssl genpkey failed");
            let pem = String::from_utf8(out.stdout).unwrap();
            KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
        }
    }
}

fn finish(cert: rcgen::Certificate, key: KeyPair) -> Cert {
    let identity = sha256_hex(&key.subject_public_key_info());
    Cert {
        der: cert.der().clone(),
        key_der: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        identity,
    }
}

/// A test certificate authority.
pub struct Ca {
    pub cert: Cert,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = key_pair(KeyKind::EcdsaP256);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let cert = finish(cert, KeyPair::from_pem(&key.serialize_pem()).unwrap());
        Ca { cert, params, key }
    }

    /// A server certificate for localhost / 127.0.0.1 signed by this CA.
    pub fn server(&self) -> Cert {
        let key = key_pair(KeyKind::EcdsaP256);
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        finish(cert, key)
    }

    /// A client certificate signed by this CA.
    pub fn client(&self, kind: KeyKind, cn: &str) -> Cert {
        let key = key_pair(kind);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        finish(cert, key)
    }
}

/// A self-signed client certificate.
pub fn self_signed_client(kind: KeyKind, cn: &str) -> Cert {
    let key = key_pair(kind);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    finish(cert, key)
}

/// The client certificate a KES client derives from a `kes:v1:` API key (§1.2): Ed25519 from the
/// key's 32-byte seed, self-signed.
pub fn api_key_client(api_key: &str) -> Cert {
    let b64 = api_key.strip_prefix("kes:v1:").unwrap_or(api_key);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(raw.len(), 33);
    assert_eq!(raw[0], 0);
    let mut pkcs8 = hex("302e020100300506032b657004220420");
    pkcs8.extend_from_slice(&raw[1..]);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8),
        &rcgen::PKCS_ED25519,
    )
    .unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let identity = sha256_hex(&key.subject_public_key_info());
    params.distinguished_name.push(DnType::CommonName, identity);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    finish(cert, key)
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
