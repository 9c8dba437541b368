//! `kes:v1:` API keys (§1.2). INTERFACE STUB: owned by the identity helper.

use super::Identity;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An Ed25519 API key. The seed is zeroized on drop; `Debug` prints `<redacted>`.
pub struct ApiKey {
    _p: (),
}

impl ApiKey {
    /// A fresh random API key.
    pub fn generate() -> Result<ApiKey, String> {
        todo!()
    }
    /// Parses `kes:v1:<base64>` (the prefix is optional, as in the Go SDK).
    pub fn parse(text: &str) -> Result<ApiKey, String> {
        let _ = text;
        todo!()
    }
    /// The text form `kes:v1:…` (a secret: print only where the user asked for it).
    pub fn to_text(&self) -> String {
        todo!()
    }
    pub fn identity(&self) -> Identity {
        todo!()
    }
    /// The self-signed client certificate that KES clients derive from the key (§1.2).
    pub fn client_certificate(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
        todo!()
    }
}
