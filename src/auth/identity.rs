//! Identities (§1): SHA-256 of a certificate's SubjectPublicKeyInfo, and `kes:v1:` API keys.
//! INTERFACE STUB: owned by the identity helper.

/// The identity of a client: 64 lower-case hex characters, or empty when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The identity of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> Identity {
        let _ = spki;
        todo!()
    }
    /// The identity of a DER certificate (→ error when the DER cannot be walked to its SPKI).
    pub fn of_certificate(der: &[u8]) -> Result<Identity, String> {
        let _ = der;
        todo!()
    }
    /// Constant-time comparison with a configured identity string.
    pub fn matches(&self, configured: &str) -> bool {
        let _ = configured;
        todo!()
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DER SubjectPublicKeyInfo inside a DER X.509 certificate (any version, v1 included).
pub fn spki_of_certificate(der: &[u8]) -> Result<&[u8], String> {
    let _ = der;
    todo!()
}

/// True when the certificate's basicConstraints extension says CA=true.
pub fn is_ca_certificate(der: &[u8]) -> bool {
    let _ = der;
    todo!()
}
