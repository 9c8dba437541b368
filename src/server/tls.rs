//! TLS for the API: the rustls server configuration and the client-certificate verifiers (§1, §10).
//!
//! KES identifies clients by the public key of their certificate, not by a CA. By default a client
//! certificate is required but its chain is not verified: any self-signed certificate (ECDSA, RSA,
//! Ed25519, X.509 v1 included) is accepted, while the handshake signature is still checked against
//! the certificate's public key, so a client must hold the private key of the identity it claims.
//! With `tls.auth: on`, chains are verified against `tls.ca`.

use crate::der::spki_of_certificate;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, Error, PeerMisbehaved, RootCertStore, SignatureScheme,
};
use std::sync::Arc;

/// The crypto provider of the whole process: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How client certificates are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAuth {
    /// Without a certificate the handshake fails (false when some API route skips auth).
    pub required: bool,
}

/// Accepts any client certificate whose handshake signature verifies against its public key.
#[derive(Debug)]
pub struct AnyClientCert {
    required: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub fn new(required: bool, provider: &CryptoProvider) -> AnyClientCert {
        AnyClientCert {
            required,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn candidates(
        &self,
        scheme: SignatureScheme,
    ) -> Result<&'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm], Error>
    {
        self.algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, algs)| *algs)
            .ok_or_else(|| PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into())
    }

    fn verify(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        if tls13 && !allowed_in_tls13(dss.scheme) {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        let spki = spki_of_certificate(cert.as_ref())
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(spki);
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let candidates = self.candidates(dss.scheme)?;
        // TLS 1.3 names one algorithm per scheme; TLS 1.2 schemes may map to several.
        let candidates = if tls13 {
            &candidates[..candidates.len().min(1)]
        } else {
            candidates
        };
        for alg in candidates {
            match key.verify_signature(*alg, message, dss.signature()) {
                Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
                Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
                Err(_) => {
                    return Err(Error::InvalidCertificate(
                        rustls::CertificateError::BadSignature,
                    ));
                }
            }
        }
        Err(Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
    }
}

/// Signature schemes TLS 1.3 permits in CertificateVerify (RFC 8446 §4.2.3): no PKCS#1 v1.5, no
/// SHA-1.
fn allowed_in_tls13(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::ECDSA_NISTP256_SHA256
            | SignatureScheme::ECDSA_NISTP384_SHA384
            | SignatureScheme::ECDSA_NISTP521_SHA512
            | SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PSS_SHA384
            | SignatureScheme::RSA_PSS_SHA512
            | SignatureScheme::ED25519
            | SignatureScheme::ED448
    )
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // An empty list: Go clients only send a certificate whose issuer is hinted otherwise.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // No chain validation by design; the certificate must still have a public key we can use.
        spki_of_certificate(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A fresh session-ticket key for one TLS configuration.
///
/// rustls's ticketer encrypts tickets with AES-256-GCM under a key made at random in memory,
/// replaced every 6 hours (tickets of the previous key are still accepted), never written to
/// disk. Each configuration gets its own: after a reload or a certificate change, clients make a
/// full handshake again, so they see the new certificate at once and no session outlives the
/// settings it was made under. A resumed session keeps the client certificate it was made with,
/// so the client's identity is the same as on its first connection.
fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    match rustls::crypto::ring::Ticketer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            log::warn!("TLS session tickets are off (cannot make a ticket key: {e})");
            None
        }
    }
}

/// Builds the server's TLS configuration.
///
/// `verify_roots`: `Some(roots)` for `tls.auth: on` (chains verified), `None` for any certificate.
/// `http2`: offer `h2` in ALPN (preferred over `http/1.1` when a client offers both).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
    verify_roots: Option<Vec<CertificateDer<'static>>>,
    auth: ClientAuth,
    http2: bool,
) -> Result<rustls::ServerConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = match verify_roots {
        None => Arc::new(AnyClientCert::new(auth.required, &provider)),
        Some(roots) => {
            let mut store = RootCertStore::empty();
            for cert in roots {
                store
                    .add(cert)
                    .map_err(|e| format!("invalid CA certificate in tls.ca: {e}"))?;
            }
            if store.is_empty() {
                return Err("tls.auth is on but tls.ca holds no CA certificate".into());
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone());
            let builder = if auth.required {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            builder
                .build()
                .map_err(|e| format!("cannot build client verifier: {e}"))?
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            crate::certs::certified_key(chain, key)
                .map_err(|e| format!("the TLS private key {e}"))?,
        )));
    // Our order wins: h2 when the client offers it (MinIO's client does: all its requests then
    // share one connection), else HTTP/1.1. A client that offers no ALPN at all gets HTTP/1.1.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.ignore_client_order = true;
    // Clients that reconnect (HTTP/1.1 clients keep few idle connections) resume their session:
    // no certificate verification, no key exchange signature.
    if let Some(ticketer) = ticketer() {
        config.ticketer = ticketer;
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(config)
}
