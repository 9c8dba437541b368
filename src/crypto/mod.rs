//! Cryptography of the KES protocol (docs/protocol.md §5 and §6.1).
//!
//! * [`key`]: [`SecretKey`] (a 256-bit AES256 or ChaCha20 master key, the per-message key
//!   derivation, seal and open), [`HmacKey`], and the system RNG ([`random`]).
//! * [`ciphertext`]: splitting the current raw ciphertext layout and the two legacy ones
//!   (MessagePack, JSON) into iv, nonce and AEAD output.
//! * [`stored`]: the value a keystore holds for a key ([`KeyVersion`]: base64 protobuf, or legacy
//!   JSON).
//! * [`version_hint`]: the key-version hint that ciphertexts of versions ≥ 2 carry in their iv
//!   (docs/key-versions.md §4).
//! * `gojson` and `protobuf` (private): the small readers and writers those formats need, written
//!   to behave like the Go decoders that produced and consumed the same bytes.
//!
//! Rules for everything below: nothing logs; no error message, panic message or `Debug` output
//! contains key material, derived keys or plaintext; key material lives in zeroizing buffers;
//! secrets are compared in constant time; and no input a client, a keystore or a file controls
//! can make this code panic (the parsers are exercised by a fuzz-like test in `vector_tests`
//! and are public so that fuzz targets can call them).
//!
//! Test vectors (tests/vectors/vectors.json) come from tests/vectors/gen_vectors.py, an
//! independent Python implementation of the same formats.

pub mod ciphertext;
pub(crate) mod gojson;
pub mod key;
mod protobuf;
pub mod stored;
#[cfg(test)]
mod vector_tests;
pub mod version_hint;

pub use key::{Algorithm, HmacKey, SecretKey, random};
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
