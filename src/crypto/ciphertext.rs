//! Ciphertext formats (§5.3, §5.4). INTERFACE STUB: owned by the crypto helper.
