//! TLS towards Vault: which roots verify the server, and which certificate (if any) we present.
//!
//! Server certificates of `https` endpoints are always verified: against `tls.ca` (a PEM file or a
//! directory of PEM files) when it is set, otherwise against the system's CA bundle. There is no
//! way to turn verification off, and the roots compiled into webpki are never used.
//!
//! `tls.cert` + `tls.key` give a client certificate for Vault's `cert` auth or a proxy that wants
//! mutual TLS. The pair is checked here, at construction: ureq would otherwise panic inside the
//! first request when the key does not belong to the certificate.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use zeroize::Zeroizing;

use crate::config::VaultTls;

/// The rustls crypto provider for Vault connections: ring, like the rest of the crate.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds ureq's TLS settings from `keystore.vault.tls`. `uses_https` says whether any endpoint
/// is `https`; without one, no roots are loaded (a plain-HTTP setup needs no CA bundle).
pub(crate) fn config(tls: &VaultTls, uses_https: bool) -> Result<TlsConfig, String> {
    let provider = provider();
    let roots = match (&tls.ca, uses_https) {
        (Some(ca), _) => load_ca(ca)?,
        (None, true) => load_system_roots()?,
        (None, false) => Vec::new(),
    };
    // Validate the roots the way rustls will use them, so a broken `tls.ca` is reported now and
    // not as an unexplained handshake failure later.
    let mut store = RootCertStore::empty();
    let mut accepted = Vec::with_capacity(roots.len());
    for (i, cert) in roots.iter().enumerate() {
        match store.add(cert.clone()) {
            Ok(()) => accepted.push(Certificate::from_der(cert.as_ref()).to_owned()),
            Err(err) => {
                if tls.ca.is_some() {
                    return Err(format!(
                        "certificate #{} in keystore.vault.tls.ca is not a usable CA certificate: {err}",
                        i + 1
                    ));
                }
                // The system bundle may hold a few certificates webpki cannot parse; skip them.
            }
        }
    }
    if uses_https && store.is_empty() {
        return Err("no usable CA certificates to verify Vault's TLS certificate".into());
    }

    let client_cert = match (&tls.cert, &tls.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(load_client_cert(cert, key)?),
        _ => {
            return Err(
                "keystore.vault.tls.cert and keystore.vault.tls.key must be set together".into(),
            );
        }
    };

    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .client_cert(client_cert);
    // An empty root set is only possible without https endpoints; ureq then never builds a TLS
    // session. It must still not be left at `WebPki`, which this build does not have.
    builder = builder.root_certs(RootCerts::new_with_certs(&accepted));
    Ok(builder.build())
}

/// The certificates of `keystore.vault.tls.ca`: one PEM file, or every regular file of a
/// directory (not recursive; files without certificates, like a README, are skipped).
fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::certs::load_ca_certificates(path).map_err(|e| format!("keystore.vault.tls.ca: {e}"))
}

/// The system CA bundle (see [`crate::certs::load_system_roots`]).
fn load_system_roots() -> Result<Vec<CertificateDer<'static>>, String> {
    crate::certs::load_system_roots().ok_or_else(|| {
        "Vault is reached over https but keystore.vault.tls.ca is not set and no system CA bundle was found \
         (looked for /etc/ssl/certs/ca-certificates.crt and similar; SSL_CERT_FILE may name one)"
            .to_string()
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read PEM certificates from '{}': {e}",
                path.display()
            )
        })
}

/// Loads the client certificate chain and key and checks that they belong together.
fn load_client_cert(cert_path: &Path, key_path: &Path) -> Result<ClientCert, String> {
    let chain = read_certificates(cert_path)?;
    if chain.is_empty() {
        return Err(format!(
            "keystore.vault.tls.cert '{}' contains no PEM certificate",
            cert_path.display()
        ));
    }
    // The error text of a key file never includes key material (only PEM structure problems).
    let pem = fs::read(key_path).map(Zeroizing::new).map_err(|e| {
        format!(
            "cannot read keystore.vault.tls.key '{}': {e}",
            key_path.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map(Zeroizing::new)
        .map_err(|e| {
            format!(
                "cannot read the private key in keystore.vault.tls.key '{}': {e}",
                key_path.display()
            )
        })?;
    let ureq_key = PrivateKey::from_pem(&pem).map_err(|e| {
        format!(
            "cannot read the private key in keystore.vault.tls.key '{}': {e}",
            key_path.display()
        )
    })?;

    // The check ureq performs (with `expect`) when it builds its rustls config, on the borrowed
    // key: its DER stays in the zeroizing buffer. (ureq keeps its own copy of the PEM key for
    // the life of the keystore.)
    crate::certs::certified_key(chain.clone(), &key).map_err(|e| {
        format!(
            "keystore.vault.tls.key '{}' and keystore.vault.tls.cert '{}' do not belong together: \
             the key {e}",
            key_path.display(),
            cert_path.display()
        )
    })?;

    let chain: Vec<Certificate<'static>> = chain
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(ClientCert::new_with_certs(&chain, ureq_key))
}
