//! The one place where errors become (status, message) pairs of the protocol (§3). MinIO compares
//! these byte for byte, so every text here is exact.

use crate::{cache, gojson, keystore};
use std::borrow::Cow;

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub const fn new(status: u16, message: &'static str) -> ApiError {
        ApiError {
            status,
            message: Cow::Borrowed(message),
        }
    }

    pub fn owned(status: u16, message: String) -> ApiError {
        ApiError {
            status,
            message: Cow::Owned(message),
        }
    }

    /// See [`WOULD_BLOCK`].
    pub fn is_would_block(&self) -> bool {
        self.status == WOULD_BLOCK.status
    }
}

/// Not an error reply: a handler running on the event loop needs a call that may block (a key
/// that is not cached), and the request moves to a worker. Never sent to a client.
pub const WOULD_BLOCK: ApiError = ApiError::new(0, "the request must run on a worker");

pub const NOT_AUTHORIZED: ApiError = ApiError::new(403, "not authorized: insufficient permissions");
pub const KEY_NOT_FOUND: ApiError = ApiError::new(404, "key does not exist");
pub const KEY_EXISTS: ApiError = ApiError::new(400, "key already exists");
pub const NOT_AUTHENTIC: ApiError =
    ApiError::new(400, "decryption failed: ciphertext is not authentic");
pub const POLICY_NOT_FOUND: ApiError = ApiError::new(404, "policy does not exist");
pub const IDENTITY_NOT_FOUND: ApiError = ApiError::new(404, "identity does not exist");
pub const CERT_REQUIRED: ApiError = ApiError::new(400, "tls: client certificate is required");
pub const TOO_MANY_CERTS: ApiError =
    ApiError::new(400, "tls: received more than one client certificate");
pub const INVALID_BODY: ApiError = ApiError::new(400, "invalid request body");
pub const INVALID_IMPORT_BODY: ApiError = ApiError::new(400, "invalid import key request body");
pub const GENERATE_FAILED: ApiError = ApiError::new(500, "failed to generate encryption key");
pub const ENCRYPT_FAILED: ApiError = ApiError::new(500, "failed to encrypt plaintext");
pub const NO_HMAC: ApiError = ApiError::new(409, "key does not support HMAC");
pub const TOO_MANY_CIPHERTEXTS: ApiError = ApiError::new(400, "too many ciphertexts");
pub const KEYSTORE_UNREACHABLE: ApiError = ApiError::new(504, "key store is not reachable");
pub const KEYSTORE_UNAVAILABLE: ApiError = ApiError::new(502, "key store is unavailable");

// Key versions (docs/key-versions.md §4).
pub const INVALID_VERSION: ApiError = ApiError::new(400, "invalid key version");
pub const UNKNOWN_VERSION: ApiError = ApiError::new(404, "key version does not exist");
pub const VERSION_RETIRED: ApiError = ApiError::new(409, "key version is retired");
pub const ROTATION_CONTENDED: ApiError = ApiError::new(503, "key rotation contended, try again");

/// Rotating a key failed.
pub fn rotate_key(name: &str, e: &crate::keyring::RotateError) -> ApiError {
    use crate::keyring::RotateError;
    match e {
        RotateError::NotFound => KEY_NOT_FOUND,
        RotateError::Contended => {
            log::warn!(
                "rotation of key '{name}' lost {} races in a row to other rotations; nothing was written",
                crate::keyring::ROTATE_TRIES
            );
            ROTATION_CONTENDED
        }
        RotateError::Exhausted => ApiError::new(409, "key has no version numbers left"),
        RotateError::Make(_) => GENERATE_FAILED,
        RotateError::InvalidKey(why) => {
            log::error!("failed to rotate key '{name}': version 1 cannot be read: {why}");
            ApiError::new(502, "failed to read key")
        }
        RotateError::Keystore(e) => {
            log::error!("failed to rotate key '{name}': {e}");
            ApiError::new(502, "failed to rotate key")
        }
    }
}

/// Retire, restore or destroy of a key version refused or failed.
pub fn key_lifecycle(name: &str, e: &crate::keyring::LifecycleError) -> ApiError {
    use crate::keyring::LifecycleError as E;
    match e {
        E::KeyNotFound => KEY_NOT_FOUND,
        E::UnknownVersion => UNKNOWN_VERSION,
        E::Current => ApiError::new(409, "the current key version cannot be retired"),
        E::SupersededTooRecently => {
            ApiError::new(409, "key version was superseded too recently to retire")
        }
        E::AlreadyRetired => VERSION_RETIRED,
        E::NotRetired => ApiError::new(409, "key version is not retired"),
        E::RetiredTooRecently => {
            ApiError::new(409, "key version was retired too recently to destroy")
        }
        E::VersionOne => ApiError::new(409, "version 1 can only be destroyed by deleting the key"),
        E::Keystore(e) => {
            log::error!("failed to update key '{name}': {e}");
            ApiError::new(502, "failed to update key")
        }
    }
}

pub fn invalid_key_name(name: &str) -> ApiError {
    ApiError::owned(
        400,
        format!("key name '{name}' is empty, too long or contains invalid characters"),
    )
}

pub fn invalid_policy_name(name: &str) -> ApiError {
    ApiError::owned(
        400,
        format!("policy name '{name}' is empty, too long or contains invalid characters"),
    )
}

pub fn invalid_identity(id: &str) -> ApiError {
    ApiError::owned(
        400,
        format!("identity '{id}' is empty, too long or contains invalid characters"),
    )
}

pub fn invalid_pattern(pattern: &str) -> ApiError {
    ApiError::owned(
        400,
        format!("listing pattern '{pattern}' is empty, too long or is invalid"),
    )
}

pub fn method_not_allowed(got: &str, expected: &str) -> ApiError {
    ApiError::owned(
        405,
        format!("received method '{got}' expected '{expected}'"),
    )
}

/// Reading a key (describe, generate, encrypt, decrypt, hmac) failed.
pub fn read_key(name: &str, e: &cache::Error) -> ApiError {
    match e {
        cache::Error::Store(keystore::Error::NotFound) => KEY_NOT_FOUND,
        other => {
            log::error!("failed to read key '{name}': {other}");
            ApiError::new(502, "failed to read key")
        }
    }
}

pub fn create_key(name: &str, e: &keystore::Error) -> ApiError {
    match e {
        keystore::Error::Exists => KEY_EXISTS,
        other => {
            log::error!("failed to create key '{name}': {other}");
            ApiError::new(502, "failed to create key")
        }
    }
}

pub fn delete_key(name: &str, e: &keystore::Error) -> ApiError {
    match e {
        keystore::Error::NotFound => KEY_NOT_FOUND,
        other => {
            log::error!("failed to delete key '{name}': {other}");
            ApiError::new(502, "failed to delete key")
        }
    }
}

pub fn list_keys(e: &keystore::Error) -> ApiError {
    log::error!("failed to list keys: {e}");
    ApiError::new(502, "failed to list keys")
}

/// The error body: `{"message":"…"` + `\n` + `}`, as the Go server writes it (its JSON encoder
/// adds the newline after the string). The text is escaped like Go's encoder, HTML characters too.
pub fn error_body(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    out.extend_from_slice(b"{\"message\":");
    gojson::write_string(message, &mut out);
    out.extend_from_slice(b"\n}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_byte_exact() {
        assert_eq!(
            error_body("key does not exist"),
            b"{\"message\":\"key does not exist\"\n}"
        );
        assert_eq!(
            error_body("a<b>&\"c\"\n"),
            b"{\"message\":\"a\\u003cb\\u003e\\u0026\\\"c\\\"\\n\"\n}"
        );
    }
}
