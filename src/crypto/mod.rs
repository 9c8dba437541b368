//! Cryptography of the KES protocol (§5 and §6.1 of the protocol reference).
//!
//! * [`SecretKey`]: a 256-bit AES256 or ChaCha20 master key and the per-message key derivation.
//! * [`ciphertext`]: the current raw ciphertext layout and the two legacy ones (msgpack, JSON).
//! * [`stored`]: the value a keystore holds for a key (protobuf `KeyVersion`, legacy JSON).
//!
//! Nothing in this module logs, and no error or `Debug` output contains key material.

pub mod ciphertext;
pub mod key;
pub mod stored;

pub use key::{Algorithm, HmacKey, SecretKey};
pub use stored::KeyVersion;

/// Errors of the crypto layer. Messages never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The ciphertext is malformed or its authentication tag does not verify.
    NotAuthentic,
    /// The system random number generator failed.
    Rng,
    /// A stored key value or an imported key is malformed (the text says how, without secrets).
    InvalidKey(String),
    /// An algorithm name that this server does not know.
    UnknownAlgorithm(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotAuthentic => f.write_str("ciphertext is not authentic"),
            Error::Rng => f.write_str("random number generator failed"),
            Error::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Error::UnknownAlgorithm(a) => write!(f, "algorithm '{a}' is not supported"),
        }
    }
}

impl std::error::Error for Error {}
