//! Stored key values (§6.1). INTERFACE STUB: owned by the crypto helper.

use super::{Error, HmacKey, SecretKey};
use time::OffsetDateTime;

/// What a keystore holds for one key name.
pub struct KeyVersion {
    pub key: SecretKey,
    /// `None` for legacy JSON-stored keys (HMAC then answers 409).
    pub hmac_key: Option<HmacKey>,
    /// `None` when the stored value has no creation time (legacy keys).
    pub created_at: Option<OffsetDateTime>,
    /// Identity of the creator; empty when unknown.
    pub created_by: String,
    /// True when the stored value named the key's algorithm (always, except legacy `{"bytes":…}`).
    pub algorithm_explicit: bool,
}

impl KeyVersion {
    /// The current stored form: ASCII base64 of the protobuf `KeyVersion`.
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
    /// Parses the current form or any legacy JSON form.
    pub fn decode(value: &[u8]) -> Result<KeyVersion, Error> {
        let _ = value;
        todo!()
    }
}
