//! Secret keys (AES256, ChaCha20) and HMAC keys. INTERFACE STUB: owned by the crypto helper.

use super::Error;
use zeroize::Zeroizing;

/// The type of a secret key (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes256,
    ChaCha20,
}

impl Algorithm {
    /// The canonical name on the wire: `AES256` or `ChaCha20`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Aes256 => "AES256",
            Algorithm::ChaCha20 => "ChaCha20",
        }
    }

    /// Parses a name or its alias (`AES256-GCM_SHA256`, `XCHACHA20-POLY1305`); exact match.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        let _ = name;
        todo!()
    }

    /// The algorithm for new keys: AES256 when the CPU accelerates AES-GCM, else ChaCha20.
    pub fn default_for_this_cpu() -> Algorithm {
        todo!()
    }
}

/// A 256-bit master key. Zeroized on drop; `Debug` prints `<redacted>`.
pub struct SecretKey {
    _p: (),
}

impl SecretKey {
    pub fn new(algorithm: Algorithm, bytes: [u8; 32]) -> SecretKey {
        let _ = (algorithm, bytes);
        todo!()
    }
    pub fn generate(algorithm: Algorithm) -> Result<SecretKey, Error> {
        let _ = algorithm;
        todo!()
    }
    pub fn algorithm(&self) -> Algorithm {
        todo!()
    }
    pub fn bytes(&self) -> &[u8; 32] {
        todo!()
    }
    /// Encrypts in the current layout (§5.3).
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>, Error> {
        let _ = (plaintext, associated_data);
        todo!()
    }
    /// Decrypts any of the three formats (§5.3, §5.4). `legacy_algorithm_fallback` is true when the
    /// stored key named no algorithm: then a legacy ciphertext's own algorithm is honoured.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
        legacy_algorithm_fallback: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let _ = (ciphertext, associated_data, legacy_algorithm_fallback);
        todo!()
    }
}

/// An HMAC-SHA256 key (§5.1).
pub struct HmacKey {
    _p: (),
}

impl HmacKey {
    pub fn new(bytes: [u8; 32]) -> HmacKey {
        let _ = bytes;
        todo!()
    }
    pub fn generate() -> Result<HmacKey, Error> {
        todo!()
    }
    pub fn bytes(&self) -> &[u8; 32] {
        todo!()
    }
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let _ = message;
        todo!()
    }
}

/// Fills `buf` from the system RNG.
pub fn random(buf: &mut [u8]) -> Result<(), Error> {
    let _ = buf;
    todo!()
}
