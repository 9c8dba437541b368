//! Key handlers (§2.3): create, import, describe, list, delete, generate, encrypt, decrypt, hmac,
//! and the legacy bulk decrypt (§2.4).

use super::error::{self, ApiError};
use super::json::{self, bytes_field, string_field};
use super::{Ctx, valid_name, valid_pattern};
use crate::cache::Ring;
use crate::crypto::{Algorithm, HmacKey, KeyVersion, SecretKey};
use crate::keyring::{self, DecryptError};
use crate::keystore::LIST_PAGE;
use crate::server::Response;
use serde::Serialize;
use std::sync::Arc;
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
    /// The current version, for keys with versions (docs/key-versions.md §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    versions: Vec<VersionReply>,
}

#[derive(Serialize)]
struct VersionReply {
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    retired_by: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    destroyed: bool,
}

pub fn describe(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let ring = ctx.ring(name)?;
    let (current, key) = ring.current();
    let mut reply = DescribeReply {
        name,
        algorithm: key.key.algorithm().as_str(),
        created_at: json::go_time(key.created_at),
        created_by: &key.created_by,
        version: None,
        versions: Vec::new(),
    };
    // A key that never had a later version answers exactly as before versions existed.
    if ring.state.next() == Some(2) {
        return ok_json(&reply);
    }
    reply.version = Some(current.to_string());
    for info in ring.state.newest_first() {
        let mut v = VersionReply {
            version: info.n.to_string(),
            algorithm: None,
            created_at: None,
            created_by: String::new(),
            retired_at: None,
            retired_by: String::new(),
            destroyed: info.destroyed,
        };
        if !info.destroyed {
            let value = ctx.version(name, &ring, info.n)?;
            v.algorithm = Some(value.key.algorithm().as_str());
            v.created_at = Some(json::go_time(value.created_at));
            v.created_by.clone_from(&value.created_by);
        }
        if info.retired {
            // Markers are not cached: read on a worker.
            if ctx.mode == crate::server::Mode::Inline {
                return Err(error::WOULD_BLOCK);
            }
            let marker = ctx
                .api
                .cache
                .keystore()
                .get_marker(name, &ring.id, info.n)
                .ok()
                .and_then(|m| serde_json::from_slice::<keyring::Marker>(&m).ok());
            if let Some(m) = marker {
                v.retired_at = Some(json::go_time(
                    OffsetDateTime::from_unix_timestamp(m.retired_at).ok(),
                ));
                v.retired_by = m.retired_by;
            }
        }
        reply.versions.push(v);
    }
    ok_json(&reply)
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
    let ring = ctx.ring(name)?;
    let (version, key) = ring.current();
    let (dek, ciphertext) = key
        .key
        .generate_data_key_version(version, &fields.context)
        .map_err(|_| error::GENERATE_FAILED)?;
    // The reply holds the plaintext data key: it is encoded straight into the reply buffer,
    // which is zeroized on drop.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = String::with_capacity(48 + 4 * (dek.len() + ciphertext.len()) / 3 + 8);
    body.push_str("{\"plaintext\":\"");
    b64.encode_string(&dek[..], &mut body);
    body.push_str("\",\"ciphertext\":\"");
    b64.encode_string(&ciphertext, &mut body);
    push_version(&mut body, version);
    body.push_str("\"}\n");
    Ok(Response::bytes(200, "application/json", body.into_bytes()))
}

/// Ends a string member and adds `"version":"<n>` for versions ≥ 2 (the reply of a key that
/// was never rotated stays exactly the Go server's); the caller closes the string.
fn push_version(body: &mut String, version: u32) {
    if version >= 2 {
        use std::fmt::Write as _;
        let _ = write!(body, "\",\"version\":\"{version}");
    }
}

#[derive(Serialize)]
struct EncryptReply {
    ciphertext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

pub fn encrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let json::CryptoFields {
        plaintext, context, ..
    } = body_fields(ctx)?;
    let ring = ctx.ring(name)?;
    let (version, key) = ring.current();
    let ciphertext = key
        .key
        .encrypt_version(version, &plaintext, &context)
        .map_err(|_| error::ENCRYPT_FAILED)?;
    ok_json(&EncryptReply {
        ciphertext: json::encode_base64(&ciphertext),
        version: (version >= 2).then(|| version.to_string()),
    })
}

#[derive(Serialize)]
struct DecryptReply {
    plaintext: String,
}

/// Decrypts `ciphertext` with the ring of `name` (docs/key-versions.md §4): exactly the
/// `requested` version, or (none given) the version the ciphertext's hint names, then version 1.
/// A decrypt naming a version above the cached ones lists the versions again first (a rotation
/// through another node; on the event loop, the request moves to a worker for that).
fn open(
    ctx: &Ctx<'_>,
    name: &str,
    ring: &mut Arc<Ring>,
    requested: Option<u32>,
    ciphertext: &[u8],
    context: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    // The hint of a ciphertext without `version` (one SHA-256), read once for both uses.
    let hint = if requested.is_none() {
        crate::crypto::version_hint::of(ciphertext)
    } else {
        None
    };
    if ring.state.needs_reload_for(requested.or(hint)) {
        if ctx.mode == crate::server::Mode::Inline {
            return Err(error::WOULD_BLOCK);
        }
        *ring = ctx.api.cache.reload_ring(name, ring);
    }
    let found = keyring::decrypt_hinted(&ring.state, requested, hint, ciphertext, context, |n| {
        ctx.version(name, ring, n)
    });
    match found {
        Ok((plaintext, n)) => {
            let v = &ctx.api.metrics.versions;
            let counter = match (requested, n) {
                (Some(_), _) => &v.decrypt_explicit,
                (None, 1) => &v.decrypt_v1,
                (None, _) => &v.decrypt_hinted,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(plaintext)
        }
        Err(DecryptError::UnknownVersion) => Err(error::UNKNOWN_VERSION),
        Err(DecryptError::NotAuthentic) => Err(error::NOT_AUTHENTIC),
        Err(DecryptError::Failed) => Err(ApiError::new(500, "failed to decrypt ciphertext")),
        Err(DecryptError::Load(e)) => Err(e),
        Err(DecryptError::Retired(n)) => {
            ctx.api
                .metrics
                .versions
                .decrypt_retired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            retired_warning(name, n);
            Err(error::VERSION_RETIRED)
        }
    }
}

/// Logs (at most once a minute in all) that data still needs a retired version: the signal that
/// re-wrapping is not finished (docs/key-versions.md §6).
fn retired_warning(name: &str, n: u32) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!(
            "a decrypt with key '{name}' needs retired version {n}: refused; restore the version \
             if this data is still in use (`kes key restore {name} --version {n}`)"
        );
    }
}

pub fn decrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let json::CryptoFields {
        ciphertext,
        context,
        version,
        ..
    } = body_fields(ctx)?;
    let requested = version.map_err(|_| error::INVALID_VERSION)?;
    let mut ring = ctx.ring(name)?;
    let plaintext = open(ctx, name, &mut ring, requested, &ciphertext, &context)?;
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
/// `{"ciphertext","context"}` (and an optional `version` each), at most 1000, answered in order;
/// the first failure fails the call.
pub fn bulk_decrypt(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let items = json::array(ctx.body).ok_or(error::INVALID_BODY)?;
    if items.len() > 1000 {
        return Err(error::TOO_MANY_CIPHERTEXTS);
    }
    let mut ring = ctx.ring(name)?;
    let mut replies = Vec::with_capacity(items.len());
    for item in &items {
        let json::Item::Object(obj) = item else {
            return Err(error::INVALID_BODY);
        };
        let ciphertext = bytes_field(obj, "ciphertext").ok_or(error::INVALID_BODY)?;
        let context = bytes_field(obj, "context").ok_or(error::INVALID_BODY)?;
        let requested = string_field(obj, "version")
            .and_then(|v| keyring::parse_version(v).ok())
            .ok_or(error::INVALID_VERSION)?;
        let plaintext = open(ctx, name, &mut ring, requested, &ciphertext, &context)?;
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
    // Version 1's HMAC key whatever the current version: HMACs stay the same across rotations.
    let key = ctx.ring(name)?.v1.clone();
    let hmac_key = key.hmac_key.as_ref().ok_or(error::NO_HMAC)?;
    ok_json(&HmacReply {
        hmac: json::encode_base64(&hmac_key.sign(&message)),
    })
}

#[derive(Serialize)]
struct RotateReply {
    version: String,
}

/// `/v1/key/rotate/<name>` (docs/key-versions.md §3): adds a version made on the server, of the
/// current version's algorithm, and makes it current. Never overwrites: racing rotations through
/// several nodes each get their own number.
pub fn rotate(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let algorithm = ctx.ring(name)?.current().1.key.algorithm();
    let cache = &ctx.api.cache;
    let made = keyring::rotate(cache.keystore().as_ref(), name, || {
        let version = KeyVersion {
            key: SecretKey::generate(algorithm).map_err(|e| e.to_string())?,
            hmac_key: Some(HmacKey::generate().map_err(|e| e.to_string())?),
            created_at: Some(OffsetDateTime::now_utc()),
            created_by: ctx.identity.as_str().to_owned(),
            algorithm_explicit: true,
        };
        Ok(zeroize::Zeroizing::new(version.encode()))
    });
    cache.invalidate(name);
    let n = made.map_err(|e| error::rotate_key(name, &e))?;
    ctx.api
        .metrics
        .versions
        .rotations
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    log::info!(
        "secret key '{name}' rotated to version {n} by {}",
        display_identity(ctx)
    );
    ok_json(&RotateReply {
        version: n.to_string(),
    })
}

/// The `version` of a retire, restore or destroy body (required).
fn lifecycle_version(ctx: &Ctx<'_>) -> Result<u32, ApiError> {
    if ctx.body.iter().all(u8::is_ascii_whitespace) {
        return Err(error::INVALID_BODY);
    }
    let obj = json::object(ctx.body).ok_or(error::INVALID_BODY)?;
    let version = string_field(&obj, "version").ok_or(error::INVALID_VERSION)?;
    keyring::parse_version(version)
        .ok()
        .flatten()
        .ok_or(error::INVALID_VERSION)
}

/// Runs one step of retirement on version `n` of the key (docs/key-versions.md §6).
fn lifecycle(
    ctx: &Ctx<'_>,
    step: &str,
    counter: &std::sync::atomic::AtomicU64,
    run: impl FnOnce(&dyn crate::keystore::Keystore, &str, u32) -> Result<(), keyring::LifecycleError>,
) -> Result<Response, ApiError> {
    let name = key_name(ctx)?;
    let n = lifecycle_version(ctx)?;
    let cache = &ctx.api.cache;
    let done = run(cache.keystore().as_ref(), name, n);
    cache.invalidate(name);
    done.map_err(|e| error::key_lifecycle(name, &e))?;
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let who = display_identity(ctx);
    if step == "destroyed" {
        log::warn!("secret key '{name}' version {n} destroyed by {who}");
    } else {
        log::info!("secret key '{name}' version {n} {step} by {who}");
    }
    Ok(Response::empty(200))
}

/// `/v1/key/retire/<name>` with `{"version":"<n>"}`: step 1, reversible.
pub fn retire(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let who = ctx.identity.as_str().to_owned();
    lifecycle(
        ctx,
        "retired",
        &ctx.api.metrics.versions.retired,
        |ks, name, n| keyring::retire(ks, name, n, &who, OffsetDateTime::now_utc()),
    )
}

/// `/v1/key/restore/<name>` with `{"version":"<n>"}`: undoes a retirement.
pub fn restore(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    lifecycle(
        ctx,
        "restored",
        &ctx.api.metrics.versions.restored,
        keyring::restore,
    )
}

/// `/v1/key/destroy/<name>` with `{"version":"<n>"}`: step 2, only after
/// `key_versions.destroy_after` in retirement.
pub fn destroy(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let after = time::Duration::try_from(ctx.state.destroy_after).unwrap_or(time::Duration::MAX);
    lifecycle(
        ctx,
        "destroyed",
        &ctx.api.metrics.versions.destroyed,
        |ks, name, n| keyring::destroy(ks, name, n, after, OffsetDateTime::now_utc()),
    )
}
