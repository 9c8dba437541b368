//! Key handlers (§2.3): create, import, describe, list, delete, generate, encrypt, decrypt, hmac,
//! and the legacy bulk decrypt (§2.4).

use super::error::{self, ApiError};
use super::json::{self, bytes_field, string_field};
use super::{Ctx, valid_name, valid_pattern};
use crate::crypto::{Algorithm, HmacKey, KeyVersion, SecretKey};
use crate::keystore::LIST_PAGE;
use crate::server::Response;
use serde::Serialize;
use time::OffsetDateTime;

fn ok_json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(Response::bytes(200, "application/json", json::reply(value)))
}

fn key_name<'a>(ctx: &Ctx<'a>) -> Result<&'a str, ApiError> {
    if valid_name(ctx.resource) {
        Ok(ctx.resource)
    } else {
        Err(error::invalid_key_name(ctx.resource))
    }
}

/// Stores a new key version for `name` made from `key`.
fn store_new_key(ctx: &Ctx<'_>, name: &str, key: SecretKey) -> Result<Response, ApiError> {
    let hmac_key = HmacKey::generate().map_err(|_| error::GENERATE_FAILED)?;
    let version = KeyVersion {
        key,
        hmac_key: Some(hmac_key),
        created_at: Some(OffsetDateTime::now_utc()),
        created_by: ctx.identity.as_str().to_owned(),
        algorithm_explicit: true,
    };
    let value = zeroize::Zeroizing::new(version.encode());
    ctx.api
        .cache
        .create(name, &value)
        .map_err(|e| error::create_key(name, &e))?;
    log::info!("secret key '{name}' created by {}", display_identity(ctx));
    Ok(Response::empty(200))
}

fn display_identity<'a>(ctx: &Ctx<'a>) -> &'a str {
    if ctx.identity.is_empty() {
        "<unknown>"
    } else {
        ctx.identity.as_str()
    }
}

pub fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let key = SecretKey::generate(Algorithm::default_for_this_cpu())
        .map_err(|_| error::GENERATE_FAILED)?;
    store_new_key(ctx, name, key)
}

pub fn import(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    // No JSON at all is a bad body, as in the Go server (its decoder fails on an empty body).
    if ctx.body.iter().all(u8::is_ascii_whitespace) {
        return Err(error::INVALID_IMPORT_BODY);
    }
    let obj = json::object(ctx.body).ok_or(error::INVALID_IMPORT_BODY)?;
    // Current body {"key","cipher"}; older bodies {"bytes","algorithm"} and {"bytes"} (§2.3),
    // recognised by a `bytes` field without `key` or `cipher`. Anything else (`{}`, `null`) is
    // read as the current body, so it fails as in the Go server (no cipher: 406).
    let legacy = !obj.has("key")
        && !obj.has("cipher")
        && json::field(&obj, "bytes").is_some_and(|b| !b.is_null());
    let (bytes, cipher) = if legacy {
        let algorithm =
            string_field(&obj, "algorithm").map(|a| if a.is_empty() { "AES256" } else { a });
        (bytes_field(&obj, "bytes"), algorithm)
    } else {
        (bytes_field(&obj, "key"), string_field(&obj, "cipher"))
    };
    let (Some(bytes), Some(cipher)) = (bytes, cipher) else {
        return Err(error::INVALID_IMPORT_BODY);
    };
    let algorithm = Algorithm::from_name(cipher)
        .ok_or_else(|| ApiError::owned(406, format!("algorithm '{cipher}' is not supported")))?;
    let key: [u8; 32] = bytes[..]
        .try_into()
        .map_err(|_| ApiError::owned(406, format!("invalid key size for '{cipher}'")))?;
    let key = SecretKey::new(algorithm, key);
    store_new_key(ctx, name, key)
}

#[derive(Serialize)]
struct DescribeReply<'a> {
    name: &'a str,
    algorithm: &'static str,
    created_at: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    created_by: &'a str,
}

pub fn describe(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let key = ctx.key(name)?;
    ok_json(&DescribeReply {
        name,
        algorithm: key.key.algorithm().as_str(),
        created_at: json::go_time(key.created_at),
        created_by: &key.created_by,
    })
}

#[derive(Serialize)]
struct ListReply {
    names: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    continue_at: String,
}

pub fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let pattern = ctx.resource;
    if !valid_pattern(pattern) {
        return Err(error::invalid_pattern(pattern));
    }
    let prefix = super::pattern_prefix(pattern);
    let page = ctx
        .api
        .cache
        .list(prefix, LIST_PAGE)
        .map_err(|e| error::list_keys(&e))?;
    ok_json(&ListReply {
        names: page.names,
        continue_at: page.continue_at,
    })
}

pub fn delete(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    ctx.api
        .cache
        .delete(name)
        .map_err(|e| error::delete_key(name, &e))?;
    log::info!("secret key '{name}' deleted by {}", display_identity(ctx));
    Ok(Response::empty(200))
}

/// The JSON body of encrypt, decrypt and hmac. One is required: an empty body (or only white
/// space) is 400 `invalid request body`, as in the Go server, whose decoder fails on it.
fn body_fields(ctx: &Ctx<'_>) -> Result<json::CryptoFields, ApiError> {
    if ctx.body.iter().all(u8::is_ascii_whitespace) {
        return Err(error::INVALID_BODY);
    }
    json::crypto_fields(ctx.body).ok_or(error::INVALID_BODY)
}

pub fn generate(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let name = key_name(ctx)?;
    // The body is optional here (no body: no context), as in the Go server, which reads it only
    // when there is one; a body of white space only is not JSON.
    let fields = if ctx.body.is_empty() {
        json::CryptoFields::default()
    } else {
        body_fields(ctx)?
    };
    let key = ctx.key(name)?;
    let (dek, ciphertext) = key
        .key
        .generate_data_key(&fields.context)
        .map_err(|_| error::GENERATE_FAILED)?;
    // The reply holds the plaintext data key: it is encoded straight into the reply buffer,
    // which is zeroized on drop.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = String::with_capacity(48 + 4 * (dek.len() + ciphertext.len()) / 3 + 8);
    body.push_str("{\"plaintext\":\"");
    b64.encode_string(&dek[..], &mut body);
    body.push_str("\",\"ciphertext\":\"");
    b64.encode_string(&ciphertext, &mut body);
    body.push_str("\"}\n");
    Ok(Response::bytes(200, "application/json", body.into_bytes()))
}

#[derive(Serialize)]
struct EncryptReply {
    ciphertext: String,
}

pub fn encrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let json::CryptoFields {
        plaintext, context, ..
    } = body_fields(ctx)?;
    let key = ctx.key(name)?;
    let ciphertext = key
        .key
        .encrypt(&plaintext, &context)
        .map_err(|_| error::ENCRYPT_FAILED)?;
    ok_json(&EncryptReply {
        ciphertext: json::encode_base64(&ciphertext),
    })
}

#[derive(Serialize)]
struct DecryptReply {
    plaintext: String,
}

fn open(
    key: &KeyVersion,
    ciphertext: &[u8],
    context: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    key.key
        .decrypt(ciphertext, context, !key.algorithm_explicit)
        .map_err(|e| match e {
            crate::crypto::Error::NotAuthentic => error::NOT_AUTHENTIC,
            _ => ApiError::new(500, "failed to decrypt ciphertext"),
        })
}

pub fn decrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let json::CryptoFields {
        ciphertext,
        context,
        ..
    } = body_fields(ctx)?;
    let key = ctx.key(name)?;
    let plaintext = open(&key, &ciphertext, &context)?;
    // Encoded straight into the reply buffer (zeroized on drop): no other copy of the plaintext.
    let mut body = String::with_capacity(20 + 4 * plaintext.len() / 3 + 4);
    body.push_str("{\"plaintext\":\"");
    base64::Engine::encode_string(
        &base64::engine::general_purpose::STANDARD,
        &plaintext[..],
        &mut body,
    );
    body.push_str("\"}\n");
    Ok(Response::bytes(200, "application/json", body.into_bytes()))
}

/// Legacy `/v1/key/bulk/decrypt/<name>` (v0.19 … 2023-10): a JSON array of
/// `{"ciphertext","context"}`, at most 1000, answered in order; the first failure fails the call.
pub fn bulk_decrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let items = json::array(ctx.body).ok_or(error::INVALID_BODY)?;
    if items.len() > 1000 {
        return Err(error::TOO_MANY_CIPHERTEXTS);
    }
    let key = ctx.key(name)?;
    let mut replies = Vec::with_capacity(items.len());
    for item in &items {
        let json::Item::Object(obj) = item else {
            return Err(error::INVALID_BODY);
        };
        let ciphertext = bytes_field(obj, "ciphertext").ok_or(error::INVALID_BODY)?;
        let context = bytes_field(obj, "context").ok_or(error::INVALID_BODY)?;
        let plaintext = open(&key, &ciphertext, &context)?;
        replies.push(DecryptReply {
            plaintext: json::encode_base64(&plaintext),
        });
    }
    ok_json(&replies)
}

#[derive(Serialize)]
struct HmacReply {
    hmac: String,
}

pub fn hmac(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let json::CryptoFields { message, .. } = body_fields(ctx)?;
    let key = ctx.key(name)?;
    let hmac_key = key.hmac_key.as_ref().ok_or(error::NO_HMAC)?;
    ok_json(&HmacReply {
        hmac: json::encode_base64(&hmac_key.sign(&message)),
    })
}
