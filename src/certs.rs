//! Loading and making certificates and private keys: PEM files, directories of CA certificates,
//! legacy-encrypted PEM keys (`tls.password`), and self-signed certificates for `--dev` and
//! `kes identity new`. INTERFACE STUB: owned by the identity helper.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Reads every certificate of a PEM file (→ error naming the file when there is none).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let _ = path;
    todo!()
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1, SEC1), decrypting a legacy
/// `Proc-Type: 4,ENCRYPTED` key with `password`.
pub fn load_private_key(
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, String> {
    let _ = (path, password);
    todo!()
}

/// Reads CA certificates from a PEM file or from every file of a directory (not recursive).
pub fn load_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let _ = path;
    todo!()
}

/// What a new self-signed certificate is for.
#[derive(Debug, Clone, Default)]
pub struct CertificateRequest {
    /// Subject common name.
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub validity: Duration,
    pub server_auth: bool,
    pub client_auth: bool,
}

/// A new Ed25519 key pair and self-signed certificate, as PEM (certificate, PKCS#8 key).
pub fn self_signed_ed25519(req: &CertificateRequest) -> Result<(String, String), String> {
    let _ = req;
    todo!()
}

/// A new ECDSA P-256 key pair and self-signed certificate, as DER (for `kes server --dev`).
pub fn self_signed_ecdsa(
    req: &CertificateRequest,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
    let _ = req;
    todo!()
}
