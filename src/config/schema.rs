//! The YAML schema, current and older layouts, and its validation into [`Config`].
//!
//! Every section is decoded by serde with unknown fields denied. Checks that concern one value or
//! one section run *inside* decoding (in a visitor), because then the decoder attaches the line
//! and the YAML path of that value to the error. Only the checks that span the whole file (admin
//! identity, required sections, the admin in a policy) run afterwards, without a line.

use super::error::{Error, STANDALONE};
use super::{
    ApiConfig, CacheConfig, Config, KeyVersionsConfig, KeystoreConfig, Limits, LogConfig,
    LogFormat, PolicyConfig, TlsConfig, VaultAppRole, VaultConfig, VaultKubernetes, VaultTls,
    VaultTransit, duration,
};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// A message that names its subject itself; shown without the YAML path in front.
fn standalone(msg: impl fmt::Display) -> String {
    format!("{STANDALONE}{msg}")
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------------

/// Decodes a scalar's text and converts it; a conversion error carries the scalar's line.
struct Scalar<F> {
    expecting: &'static str,
    convert: F,
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Scalar<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.convert)(v).map_err(E::custom)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for Scalar<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        // The YAML decoder hands any scalar (plain numbers and booleans too) to `visit_str` as
        // written, which is what the Go server's decoder does for string fields.
        d.deserialize_str(self)
    }
}

fn scalar<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    convert: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    Scalar { expecting, convert }.deserialize(d)
}

/// Decodes a mapping into the raw type `R` and validates it with `check`; a validation error
/// carries the line where the mapping starts and its YAML path.
struct Validated<R, F> {
    expecting: &'static str,
    check: F,
    raw: PhantomData<R>,
}

impl<'de, R: Deserialize<'de>, T, F: FnOnce(R) -> Result<T, String>> Visitor<'de>
    for Validated<R, F>
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(MapAccessDeserializer::new(map))?;
        (self.check)(raw).map_err(de::Error::custom)
    }
}

fn validated<'de, D: Deserializer<'de>, R: Deserialize<'de>, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(R) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_map(Validated {
        expecting,
        check,
        raw: PhantomData,
    })
}

/// A mapping key of a hand-written section decoder: one of `fields`, or `None` for a field the
/// schema does not know, whose value the decoder skips (module `fields` reports it).
struct FieldKey(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldKey {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<&'static str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<&'static str>, E> {
        Ok(self.0.iter().find(|f| **f == v).copied())
    }
}

fn duplicate_field<E: de::Error>(field: &str) -> E {
    E::custom(format_args!("duplicate field '{field}'"))
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

/// The name rule of KES (§2.1): 1-80 bytes of `[0-9A-Za-z_-]`, `-` neither first nor last, and
/// not exactly `_`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name != "_"
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A Go duration, `>= 0`.
struct Dur(Duration);

fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t != "0" && t.parse::<f64>().is_ok() {
        return Err(format!(
            "invalid duration '{t}': a number needs a unit, e.g. '{t}s' (Go duration syntax: 300ms, 30s, 5m0s, 1h30m)"
        ));
    }
    duration::parse(t)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "a duration such as 30s or 5m0s", |s| {
            parse_duration(s).map(Dur)
        })
    }
}

/// A Go duration, `> 0`.
struct PositiveDur(Duration);

impl<'de> Deserialize<'de> for PositiveDur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "a duration such as 30s or 5m0s", |s| {
            let d = parse_duration(s)?;
            if d.is_zero() {
                return Err(format!(
                    "invalid duration '{}': must be greater than 0",
                    s.trim()
                ));
            }
            Ok(PositiveDur(d))
        })
    }
}

/// `version:` of the file: only `v1` exists.
struct FileVersion;

impl<'de> Deserialize<'de> for FileVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "v1", |s| match s.trim() {
            "v1" => Ok(FileVersion),
            other => Err(format!(
                "unsupported config version '{other}': only 'v1' is supported"
            )),
        })
    }
}

/// `address:` -> a socket address; empty means the default.
struct Address(Option<SocketAddr>);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "a listen address such as 0.0.0.0:7373", |s| {
            parse_address(s).map(Address)
        })
    }
}

fn parse_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || format!("invalid address '{t}': expected IP:PORT or HOST:PORT, e.g. 0.0.0.0:7373");
    // Go's `:7373` means every interface.
    if let Some(port) = t.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(Some(SocketAddr::from(([0, 0, 0, 0], port))));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    // HOST:PORT: the port must be a number; the host is resolved now, once.
    let (_, port) = t.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let mut addrs = t
        .to_socket_addrs()
        .map_err(|e| format!("invalid address '{t}': {e}"))?;
    addrs
        .next()
        .map(Some)
        .ok_or_else(|| format!("invalid address '{t}': the host name has no address"))
}

/// `tls.auth`: `""`/`off` or `on`.
struct Switch(bool);

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "'on' or 'off'", |s| {
            match s.trim().to_ascii_lowercase().as_str() {
                "" | "off" | "false" => Ok(Switch(false)),
                "on" | "true" => Ok(Switch(true)),
                _ => Err(format!(
                    "invalid value '{}': expected 'on' or 'off'",
                    s.trim()
                )),
            }
        })
    }
}

/// A boolean, also written `on`/`off`/`yes`/`no` (also accepted as a string, e.g. from `${VAR}`).
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "true or false", |s| {
            match s.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => Ok(Flag(true)),
                "false" | "off" | "no" => Ok(Flag(false)),
                _ => Err(format!(
                    "invalid value '{}': expected true or false",
                    s.trim()
                )),
            }
        })
    }
}

/// A count `>= 1`.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "a whole number of at least 1", |s| {
            match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Count(n)),
                _ => Err(format!(
                    "invalid value '{}': expected a whole number of at least 1",
                    s.trim()
                )),
            }
        })
    }
}

/// `log.error` / `log.audit` as a Go `slog` level: `None` = empty (the default), `Some(None)` =
/// `off`, `Some(Some(level))` otherwise.
struct Level(Option<Option<i32>>);

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "on, off, DEBUG, INFO, WARN or ERROR", |s| {
            parse_level(s).map(Level)
        })
    }
}

/// Parses a log level the way the Go server does: `on` (= INFO), `off`, `DEBUG`/`INFO`/`WARN`/
/// `ERROR` optionally followed by `+N`/`-N`, or a bare integer, case-insensitive.
pub(crate) fn parse_level(text: &str) -> Result<Option<Option<i32>>, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid log level '{t}': expected on, off, DEBUG, INFO, WARN, ERROR, LEVEL+N or an integer"
        )
    };
    if t.is_empty() {
        return Ok(None);
    }
    if t.eq_ignore_ascii_case("on") || t.eq_ignore_ascii_case("true") {
        return Ok(Some(Some(0)));
    }
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("false") {
        return Ok(Some(None));
    }
    if let Ok(level) = t.parse::<i32>() {
        return Ok(Some(Some(level)));
    }
    let (name, offset) = match t.find(['+', '-']) {
        Some(i) => (&t[..i], t[i..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let base: i32 = match name.to_ascii_uppercase().as_str() {
        "DEBUG" => -4,
        "INFO" => 0,
        "WARN" => 4,
        "ERROR" => 8,
        _ => return Err(bad()),
    };
    Ok(Some(Some(base.saturating_add(offset))))
}

/// The error-log filter for a Go `slog` level: records at or above the level are logged, and the
/// server logs at DEBUG (-4), INFO (0), WARN (4) and ERROR (8) only.
pub(crate) fn level_filter(level: Option<i32>) -> Option<log::LevelFilter> {
    match level? {
        l if l <= -4 => Some(log::LevelFilter::Debug),
        l if l <= 0 => Some(log::LevelFilter::Info),
        l if l <= 4 => Some(log::LevelFilter::Warn),
        l if l <= 8 => Some(log::LevelFilter::Error),
        _ => None,
    }
}

/// A policy identity: trimmed, and it must satisfy the name rule.
fn check_identity(text: &str) -> Result<String, String> {
    let id = text.trim();
    if !is_valid_name(id) {
        return Err(format!(
            "identity '{id}' is empty, too long or contains invalid characters"
        ));
    }
    Ok(id.to_owned())
}

/// `keystore.vault.endpoint`: one URL or a list of them.
struct Endpoints(Vec<String>);

fn check_endpoint(text: &str) -> Result<String, String> {
    let t = text.trim();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty()
                && !host.starts_with('/')
                && !host.contains(char::is_whitespace) =>
        {
            Ok(t.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "invalid Vault endpoint '{t}': expected an http:// or https:// URL, e.g. https://vault:8200"
        )),
    }
}

impl<'de> Deserialize<'de> for Endpoints {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoints;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a URL or a list of URLs")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoints, E> {
                check_endpoint(v)
                    .map(|e| Endpoints(vec![e]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Endpoints, A::Error> {
                let mut list = Vec::new();
                while let Some(e) = seq.next_element_seed(Scalar {
                    expecting: "a URL",
                    convert: check_endpoint,
                })? {
                    list.push(e);
                }
                Ok(Endpoints(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// `keystore.vault.version`: `v1` or `v2`; true for v2.
struct KvVersion(bool);

impl<'de> Deserialize<'de> for KvVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d, "v1 or v2", |s| match s.trim() {
            "" | "v1" => Ok(KvVersion(false)),
            "v2" => Ok(KvVersion(true)),
            other => Err(format!("invalid K/V version '{other}': expected v1 or v2")),
        })
    }
}

/// Trims a string; `None` when empty.
fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn or_default(s: Option<String>, default: &str) -> String {
    non_empty(s).unwrap_or_else(|| default.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/// The whole file, current and older layout.
#[derive(Deserialize)]
#[serde(expecting = "a config file: a mapping with admin, tls, keystore, …")]
pub(crate) struct RawFile {
    version: Option<FileVersion>,
    address: Option<Address>,
    /// The older schema's admin identity.
    root: Option<String>,
    admin: Option<RawAdmin>,
    tls: Option<TlsBlock>,
    policy: Option<Policies>,
    cache: Option<RawCache>,
    api: Option<ApiMap>,
    log: Option<RawLog>,
    keys: Option<Keys>,
    keystore: Option<KeystoreBlock>,
    server: Option<ServerBlock>,
    key_versions: Option<RawKeyVersions>,
}

#[derive(Deserialize)]
#[serde(expecting = "an admin section with identity")]
struct RawAdmin {
    identity: Option<String>,
}

/// Builds the [`Config`] and runs the checks that span sections.
pub(crate) fn build(raw: RawFile) -> Result<Config, Error> {
    // `version` was checked while decoding; it carries nothing else.
    let _ = raw.version;
    let admin = match (raw.root, raw.admin) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                "both 'root' (older schema) and 'admin' are set: keep only 'admin.identity'",
            ));
        }
        (Some(root), None) => non_empty(Some(root)),
        (None, Some(admin)) => non_empty(admin.identity),
        (None, None) => None,
    };
    let admin = admin.ok_or_else(|| {
        Error::new(
            "no admin identity: set 'admin.identity' (an identity, or 'disabled' to turn admin access off)",
        )
    })?;

    let policies: Vec<(String, PolicyConfig)> = raw.policy.map(|p| p.0).unwrap_or_default();
    for (name, policy) in &policies {
        if policy.identities.contains(&admin) {
            return Err(Error::new(format!(
                "cannot assign policy '{name}' to '{admin}': it is the admin identity (admin.identity), which needs no policy"
            )));
        }
    }

    let tls = raw.tls.map(|t| t.0).ok_or_else(|| {
        Error::new("no 'tls' section: 'tls.key' and 'tls.cert' (the server's private key and certificate) are required")
    })?;

    let (keys, legacy_keystore) = match raw.keys {
        None => (Vec::new(), None),
        Some(Keys::Names(names)) => (names, None),
        Some(Keys::Keystore(ks)) => (Vec::new(), Some(ks)),
    };
    let keystore = match (raw.keystore, legacy_keystore) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                "'keys' holds a keystore (the oldest schema) and 'keystore' is set too: keep only 'keystore'",
            ));
        }
        (Some(ks), None) => ks.0,
        (None, Some(ks)) => ks,
        (None, None) => {
            return Err(Error::new(
                "no keystore: set exactly one of 'keystore.fs' or 'keystore.vault'",
            ));
        }
    };

    let (error, audit, format, audit_unknown_rate) = match raw.log {
        Some(log) => (
            log.error.and_then(|l| l.0),
            log.audit.and_then(|l| l.0),
            log.format,
            log.audit_unknown_rate,
        ),
        None => (None, None, None, None),
    };
    let format = match format.as_deref().map(str::trim) {
        None | Some("") => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(f) => {
            return Err(Error::new(format!(
                "invalid log.format '{f}': use 'text' (the Go server's format, the default) or 'json'"
            )));
        }
    };
    let log = LogConfig {
        // Empty means INFO, the default.
        error: match error {
            None => LogConfig::default().error,
            Some(level) => level_filter(level),
        },
        // Audit events are INFO records: they are written when the level lets INFO through.
        audit: match audit {
            None => LogConfig::default().audit,
            Some(level) => level.is_some_and(|l| l <= 0),
        },
        format,
        audit_unknown_rate: audit_unknown_rate.unwrap_or(LogConfig::default().audit_unknown_rate),
    };

    let expiry = raw.cache.and_then(|c| c.expiry);
    let defaults = CacheConfig::default();
    let cache = match expiry {
        None => defaults,
        Some(e) => CacheConfig {
            any: expiry_setting(e.any, defaults.any),
            unused: expiry_setting(e.unused, defaults.unused),
            offline: expiry_setting(e.offline, defaults.offline),
        },
    };

    Ok(Config {
        address: raw.address.and_then(|a| a.0),
        admin,
        tls,
        policies: policies.into_iter().collect(),
        cache,
        api: raw.api.map(|a| a.0).unwrap_or_default(),
        log,
        keys,
        keystore,
        limits: raw.server.map(|s| s.0).unwrap_or_default(),
        key_versions: key_versions(raw.key_versions)?,
    })
}

/// `key_versions:` (an extension of this implementation; docs/key-versions.md §6).
fn key_versions(raw: Option<RawKeyVersions>) -> Result<KeyVersionsConfig, Error> {
    let d = KeyVersionsConfig::default();
    let destroy_after = raw
        .and_then(|r| r.destroy_after)
        .map_or(d.destroy_after, |t| t.0);
    if destroy_after < super::MIN_DESTROY_AFTER {
        return Err(Error::new(format!(
            "key_versions.destroy_after is {}: it must be at least 24h (a retired version must \
             outlive every node's cache of the key by far)",
            humantime_secs(destroy_after)
        )));
    }
    Ok(KeyVersionsConfig { destroy_after })
}

/// `90000s` → `25h0m0s`, the way Go prints a duration (whole seconds).
fn humantime_secs(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

#[derive(Deserialize)]
#[serde(expecting = "a key_versions section with destroy_after")]
struct RawKeyVersions {
    destroy_after: Option<PositiveDur>,
}

/// A cache expiry: absent = the default, `0` = disabled.
fn expiry_setting(value: Option<Dur>, default: Option<Duration>) -> Option<Duration> {
    match value {
        None => default,
        Some(Dur(d)) if d.is_zero() => None,
        Some(Dur(d)) => Some(d),
    }
}

// ---------------------------------------------------------------------------------------------
// tls
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(expecting = "a tls section with key and cert")]
struct RawTls {
    key: Option<String>,
    cert: Option<String>,
    password: Option<String>,
    auth: Option<Switch>,
    ca: Option<String>,
    proxy: Option<RawProxy>,
}

/// `tls.proxy` (TLS-terminating proxies): parsed, then ignored, as by the Go server since
/// 2023-10-24.
#[derive(Deserialize)]
#[serde(expecting = "a proxy section with identities and header")]
struct RawProxy {
    identities: Option<Vec<String>>,
    header: Option<RawProxyHeader>,
}

#[derive(Deserialize)]
#[serde(expecting = "a header section with cert")]
struct RawProxyHeader {
    cert: Option<String>,
}

struct TlsBlock(TlsConfig);

impl<'de> Deserialize<'de> for TlsBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "the tls section", |raw: RawTls| {
            let key = non_empty(raw.key)
                .ok_or("'key' is required: the path of the server's private key (PEM)")?;
            let cert = non_empty(raw.cert)
                .ok_or("'cert' is required: the path of the server's certificate (PEM)")?;
            if let Some(proxy) = raw.proxy {
                let identities = proxy.identities.unwrap_or_default();
                let header = proxy.header.and_then(|h| non_empty(h.cert));
                if identities.iter().any(|id| !id.trim().is_empty()) || header.is_some() {
                    log::warn!(
                        "config: 'tls.proxy' is ignored: this server, like the Go server since 2023-10-24, \
                         does not take client identities from a TLS proxy"
                    );
                }
            }
            Ok(TlsBlock(TlsConfig {
                key: PathBuf::from(key),
                cert: PathBuf::from(cert),
                // A password is taken as written (no trimming): it is a secret.
                password: raw.password.filter(|p| !p.is_empty()),
                verify_client_certs: raw.auth.is_some_and(|a| a.0),
                ca: non_empty(raw.ca).map(PathBuf::from),
            }))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// policy
// ---------------------------------------------------------------------------------------------

/// `policy:` in file order. Identities are checked as they are read, so that an identity given
/// to a second policy is reported on its own line.
struct Policies(Vec<(String, PolicyConfig)>);

impl<'de> Deserialize<'de> for Policies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Policies;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from policy names to policies")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Policies, E> {
                Ok(Policies(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Policies, A::Error> {
                let mut policies: Vec<(String, PolicyConfig)> = Vec::new();
                // identity -> the policy it was given to
                let mut owners: HashMap<String, String> = HashMap::new();
                loop {
                    let defined = &policies;
                    let key = Scalar {
                        expecting: "a policy name",
                        convert: |s: &str| {
                            if !is_valid_name(s) {
                                return Err(standalone(format!(
                                    "policy name '{s}' is empty, too long or contains invalid characters"
                                )));
                            }
                            if defined.iter().any(|(n, _)| n == s) {
                                return Err(standalone(format!("policy '{s}' is defined twice")));
                            }
                            Ok(s.to_owned())
                        },
                    };
                    let Some(name) = map.next_key_seed(key)? else {
                        break;
                    };
                    let policy = map.next_value_seed(PolicySeed {
                        name: &name,
                        owners: &mut owners,
                    })?;
                    policies.push((name, policy));
                }
                Ok(Policies(policies))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of a policy (`paths` is the older schema's `allow`).
const POLICY_FIELDS: &[&str] = &["allow", "deny", "identities", "paths"];

/// The field of an entry of `keys:`.
const KEY_FIELDS: &[&str] = &["name"];

struct PolicySeed<'a> {
    name: &'a str,
    owners: &'a mut HashMap<String, String>,
}

impl<'de> DeserializeSeed<'de> for PolicySeed<'_> {
    type Value = PolicyConfig;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PolicyConfig, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PolicySeed<'_> {
    type Value = PolicyConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a policy with allow, deny and identities")
    }

    fn visit_unit<E: de::Error>(self) -> Result<PolicyConfig, E> {
        Ok(PolicyConfig::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolicyConfig, A::Error> {
        let mut allow: Option<Vec<String>> = None;
        let mut deny: Option<Vec<String>> = None;
        let mut paths: Option<Vec<String>> = None;
        let mut identities: Option<Vec<String>> = None;
        while let Some(field) = map.next_key_seed(FieldKey(POLICY_FIELDS))? {
            let Some(field) = field else {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            };
            let slot = match field {
                "allow" => &mut allow,
                "deny" => &mut deny,
                "paths" => &mut paths,
                _ => {
                    if identities.is_some() {
                        return Err(duplicate_field(field));
                    }
                    identities = Some(map.next_value_seed(IdentitiesSeed {
                        policy: self.name,
                        owners: self.owners,
                    })?);
                    continue;
                }
            };
            if slot.is_some() {
                return Err(duplicate_field(field));
            }
            *slot = Some(map.next_value::<Option<Vec<String>>>()?.unwrap_or_default());
        }
        let allow = match (allow, paths) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "'paths' (older schema) and 'allow' are both set: move the paths under 'allow'",
                ));
            }
            (allow, paths) => allow.or(paths).unwrap_or_default(),
        };
        Ok(PolicyConfig {
            allow,
            deny: deny.unwrap_or_default(),
            identities: identities.unwrap_or_default(),
        })
    }
}

struct IdentitiesSeed<'a> {
    policy: &'a str,
    owners: &'a mut HashMap<String, String>,
}

impl<'de> DeserializeSeed<'de> for IdentitiesSeed<'_> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdentitiesSeed<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of identities")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut list: Vec<String> = Vec::new();
        loop {
            let owners = &mut *self.owners;
            let policy = self.policy;
            let element = Scalar {
                expecting: "an identity",
                convert: |s: &str| {
                    let id = check_identity(s)?;
                    match owners.get(&id) {
                        Some(owner) if owner != policy => Err(standalone(format!(
                            "cannot assign policy '{policy}' to '{id}': identity already has a policy"
                        ))),
                        _ => {
                            owners.insert(id.clone(), policy.to_owned());
                            Ok(id)
                        }
                    }
                },
            };
            let Some(id) = seq.next_element_seed(element)? else {
                break;
            };
            if !list.contains(&id) {
                list.push(id);
            }
        }
        Ok(list)
    }
}

// ---------------------------------------------------------------------------------------------
// cache, log, api, server
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(expecting = "a cache section with expiry")]
struct RawCache {
    expiry: Option<RawExpiry>,
}

#[derive(Deserialize)]
#[serde(expecting = "an expiry section with any, unused and offline")]
struct RawExpiry {
    any: Option<Dur>,
    unused: Option<Dur>,
    offline: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(expecting = "a log section with error and audit")]
struct RawLog {
    error: Option<Level>,
    audit: Option<Level>,
    format: Option<String>,
    audit_unknown_rate: Option<u32>,
}

/// `api:` keyed by path.
struct ApiMap(BTreeMap<String, ApiConfig>);

#[derive(Deserialize)]
#[serde(expecting = "API settings with skip_auth and timeout")]
struct RawApi {
    skip_auth: Option<Flag>,
    timeout: Option<Dur>,
}

impl<'de> Deserialize<'de> for ApiMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ApiMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from API paths (e.g. /v1/ready) to settings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ApiMap, E> {
                Ok(ApiMap(BTreeMap::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApiMap, A::Error> {
                let mut apis = BTreeMap::new();
                loop {
                    let key = Scalar {
                        expecting: "an API path",
                        convert: |s: &str| {
                            let path = s.trim();
                            if !path.starts_with('/') {
                                return Err(standalone(format!(
                                    "invalid API path '{path}' in 'api': it must start with '/', e.g. /v1/ready"
                                )));
                            }
                            if apis.contains_key(path) {
                                return Err(standalone(format!(
                                    "API path '{path}' is configured twice"
                                )));
                            }
                            Ok(path.to_owned())
                        },
                    };
                    let Some(path) = map.next_key_seed(key)? else {
                        break;
                    };
                    let raw: Option<RawApi> = map.next_value()?;
                    let config = raw.map_or_else(ApiConfig::default, |raw| ApiConfig {
                        skip_auth: raw.skip_auth.is_some_and(|f| f.0),
                        // 0 keeps the route's own timeout.
                        timeout: raw.timeout.map(|t| t.0).filter(|t| !t.is_zero()),
                    });
                    apis.insert(path, config);
                }
                Ok(ApiMap(apis))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a server section with max_connections and timeouts")]
struct RawServer {
    max_connections: Option<Count>,
    max_connections_per_address: Option<Count>,
    workers: Option<Count>,
    http2: Option<Flag>,
    handshake_timeout: Option<PositiveDur>,
    header_timeout: Option<PositiveDur>,
    body_timeout: Option<PositiveDur>,
    idle_timeout: Option<PositiveDur>,
    shutdown_timeout: Option<PositiveDur>,
}

/// `server:` (an extension of this implementation).
struct ServerBlock(Limits);

impl<'de> Deserialize<'de> for ServerBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Option::<RawServer>::deserialize(d)?;
        let d = Limits::default();
        let Some(raw) = raw else {
            return Ok(ServerBlock(d));
        };
        Ok(ServerBlock(Limits {
            max_connections: raw.max_connections.map_or(d.max_connections, |c| c.0),
            max_connections_per_address: raw
                .max_connections_per_address
                .map_or(d.max_connections_per_address, |c| c.0),
            workers: raw.workers.map_or(d.workers, |c| c.0),
            http2: raw.http2.map_or(d.http2, |f| f.0),
            handshake_timeout: raw.handshake_timeout.map_or(d.handshake_timeout, |t| t.0),
            header_timeout: raw.header_timeout.map_or(d.header_timeout, |t| t.0),
            body_timeout: raw.body_timeout.map_or(d.body_timeout, |t| t.0),
            idle_timeout: raw.idle_timeout.map_or(d.idle_timeout, |t| t.0),
            shutdown_timeout: raw.shutdown_timeout.map_or(d.shutdown_timeout, |t| t.0),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------

/// `keys:`: a list of `{name: …}` (current), or the keystore itself (the oldest schema, v0.13).
enum Keys {
    Names(Vec<String>),
    Keystore(KeystoreConfig),
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of keys such as [{name: my-key}]")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
                Ok(Keys::Names(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                let mut names: Vec<String> = Vec::new();
                while let Some(name) = seq.next_element_seed(KeyEntrySeed { names: &names })? {
                    names.push(name);
                }
                Ok(Keys::Names(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Keys, A::Error> {
                let ks = visit_keystore(map)?;
                Ok(Keys::Keystore(ks))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `{name: …}` entry of `keys:`; `names` are the entries before it.
struct KeyEntrySeed<'a> {
    names: &'a [String],
}

impl<'de> DeserializeSeed<'de> for KeyEntrySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeyEntrySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key entry such as {name: my-key}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut name = None;
        while let Some(field) = map.next_key_seed(FieldKey(KEY_FIELDS))? {
            if field.is_none() {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            if name.is_some() {
                return Err(duplicate_field("name"));
            }
            let names = self.names;
            name = Some(map.next_value_seed(Scalar {
                expecting: "a key name",
                convert: |s: &str| {
                    let n = s.trim();
                    if !is_valid_name(n) {
                        return Err(standalone(format!(
                            "key name '{n}' is empty, too long or contains invalid characters"
                        )));
                    }
                    if names.iter().any(|k| k == n) {
                        return Err(standalone(format!("key '{n}' is listed twice in 'keys'")));
                    }
                    Ok(n.to_owned())
                },
            })?);
        }
        name.ok_or_else(|| de::Error::custom("missing 'name' of the key"))
    }
}

// ---------------------------------------------------------------------------------------------
// keystore
// ---------------------------------------------------------------------------------------------

/// Keystores this server implements.
const SUPPORTED: &str = "fs, vault";

/// Every keystore the Go server knows (now or in the past): the ones this server does not
/// implement get a clear error instead of "unknown field".
const KEYSTORES: &[&str] = &[
    "fs", "vault", "aws", "gcp", "azure", "gemalto", "fortanix", "entrust", "kes", "generic",
];

struct KeystoreBlock(KeystoreConfig);

impl<'de> Deserialize<'de> for KeystoreBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeystoreBlock;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a keystore section (fs or vault)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeystoreBlock, A::Error> {
                visit_keystore(map).map(KeystoreBlock)
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads a keystore section (`keystore:`, or `keys:` in the oldest schema): exactly one store.
fn visit_keystore<'de, A: MapAccess<'de>>(mut map: A) -> Result<KeystoreConfig, A::Error> {
    let mut found: Option<(&'static str, KeystoreConfig)> = None;
    loop {
        let first = found.as_ref().map(|(name, _)| *name);
        let key = Scalar {
            expecting: "a keystore name",
            convert: |s: &str| {
                let Some(name) = KEYSTORES.iter().find(|k| **k == s) else {
                    let hint = super::fields::suggest(s, KEYSTORES)
                        .map(|k| format!(": did you mean '{k}'?"))
                        .unwrap_or_default();
                    return Err(standalone(format!(
                        "unknown keystore '{s}' (supported: {SUPPORTED}){hint}"
                    )));
                };
                if first == Some(*name) {
                    return Err(standalone(format!("keystore '{name}' is configured twice")));
                }
                if let Some(first) = first {
                    return Err(standalone(format!(
                        "more than one keystore: '{first}' and '{name}'; configure exactly one"
                    )));
                }
                Ok(*name)
            },
        };
        let Some(name) = map.next_key_seed(key)? else {
            break;
        };
        let store = match name {
            "fs" => map.next_value::<FsBlock>()?.0,
            "vault" => KeystoreConfig::Vault(Box::new(map.next_value::<VaultBlock>()?.0)),
            other => {
                return Err(map
                    .next_value_seed(Unsupported(other))
                    .err()
                    .unwrap_or_else(|| unsupported(other)));
            }
        };
        found = Some((name, store));
    }
    found.map(|(_, store)| store).ok_or_else(|| {
        de::Error::custom(format_args!("no keystore: set exactly one of fs or vault"))
    })
}

fn unsupported<E: de::Error>(name: &str) -> E {
    E::custom(standalone(format!(
        "keystore '{name}' is not supported by this server (supported: {SUPPORTED})"
    )))
}

/// A keystore this server does not implement: always an error, naming the store as the Go
/// server's config does (`aws.secretsmanager`).
struct Unsupported<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Unsupported<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unsupported<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a keystore section")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match map.next_key::<String>()? {
            Some(kind) => Err(unsupported(&format!("{}.{kind}", self.0))),
            None => Err(unsupported(self.0)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(unsupported(self.0))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(unsupported(self.0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(unsupported(self.0))
    }
}

#[derive(Deserialize)]
#[serde(expecting = "an fs keystore section with path")]
struct RawFs {
    path: Option<String>,
}

struct FsBlock(KeystoreConfig);

impl<'de> Deserialize<'de> for FsBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "the fs keystore section (path)", |raw: RawFs| {
            let path = non_empty(raw.path)
                .ok_or("'path' is required: the directory that holds the keys")?;
            Ok(FsBlock(KeystoreConfig::Fs {
                path: PathBuf::from(path),
            }))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// keystore.vault
// ---------------------------------------------------------------------------------------------

const VAULT_PING: Duration = Duration::from_secs(10);
const VAULT_RETRY: Duration = Duration::from_secs(5);
const VAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const VAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading a key (what a generate or decrypt of an uncached key waits for): well below the 2 s
/// within which a client must get its 502 when Vault is slow, and far above a healthy Vault's
/// read latency (milliseconds), so that a busy Vault does not fail reads.
const VAULT_READ_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Deserialize)]
#[serde(expecting = "a vault keystore section with endpoint, approle, …")]
struct RawVault {
    endpoint: Option<Endpoints>,
    engine: Option<String>,
    version: Option<KvVersion>,
    namespace: Option<String>,
    prefix: Option<String>,
    transit: Option<TransitBlock>,
    approle: Option<AppRoleBlock>,
    kubernetes: Option<KubernetesBlock>,
    tls: Option<VaultTlsBlock>,
    status: Option<RawVaultStatus>,
    timeout: Option<RawVaultTimeout>,
}

#[derive(Deserialize)]
#[serde(expecting = "a status section with ping")]
struct RawVaultStatus {
    ping: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(expecting = "a timeout section with connect, response and read")]
struct RawVaultTimeout {
    connect: Option<PositiveDur>,
    response: Option<PositiveDur>,
    read: Option<PositiveDur>,
}

struct VaultBlock(VaultConfig);

impl<'de> Deserialize<'de> for VaultBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "the vault keystore section", |raw: RawVault| {
            let endpoints = raw.endpoint.map(|e| e.0).unwrap_or_default();
            if endpoints.is_empty() {
                return Err(
                    "'endpoint' is required: the Vault URL, e.g. https://vault:8200".into(),
                );
            }
            let approle = raw.approle.and_then(|a| a.0);
            let kubernetes = raw.kubernetes.and_then(|k| k.0);
            match (&approle, &kubernetes) {
                (Some(_), Some(_)) => {
                    return Err("both 'approle' and 'kubernetes' are configured: use exactly one way to log in".into());
                }
                (None, None) => {
                    return Err("no login method: configure 'approle' (id, secret) or 'kubernetes' (role, jwt)".into());
                }
                _ => {}
            }
            let timeout = raw.timeout;
            Ok(VaultBlock(VaultConfig {
                endpoints,
                engine: or_default(raw.engine, "kv"),
                kv_v2: raw.version.is_some_and(|v| v.0),
                namespace: non_empty(raw.namespace).unwrap_or_default(),
                prefix: non_empty(raw.prefix).unwrap_or_default(),
                transit: raw.transit.map(|t| t.0),
                approle,
                kubernetes,
                tls: raw.tls.map(|t| t.0).unwrap_or_default(),
                ping: raw
                    .status
                    .and_then(|s| s.ping)
                    .map(|p| p.0)
                    .filter(|p| !p.is_zero())
                    .unwrap_or(VAULT_PING),
                connect_timeout: timeout
                    .as_ref()
                    .and_then(|t| t.connect.as_ref())
                    .map_or(VAULT_CONNECT_TIMEOUT, |t| t.0),
                response_timeout: timeout
                    .as_ref()
                    .and_then(|t| t.response.as_ref())
                    .map_or(VAULT_RESPONSE_TIMEOUT, |t| t.0),
                read_timeout: timeout
                    .and_then(|t| t.read)
                    .map_or(VAULT_READ_TIMEOUT, |t| t.0),
            }))
        })
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a transit section with engine and key")]
struct RawTransit {
    engine: Option<String>,
    key: Option<String>,
}

struct TransitBlock(VaultTransit);

impl<'de> Deserialize<'de> for TransitBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "the transit section (engine, key)", |raw: RawTransit| {
            let key = non_empty(raw.key)
                .ok_or("'key' is required: the transit key that wraps stored keys")?;
            Ok(TransitBlock(VaultTransit {
                engine: or_default(raw.engine, "transit"),
                key,
            }))
        })
    }
}

#[derive(Deserialize)]
#[serde(expecting = "an approle section with id and secret")]
struct RawAppRole {
    namespace: Option<String>,
    engine: Option<String>,
    id: Option<String>,
    secret: Option<String>,
    retry: Option<Dur>,
}

/// `approle:`; `None` when the section holds no credentials at all (the Go sample config lists
/// both login methods with empty values).
struct AppRoleBlock(Option<VaultAppRole>);

impl<'de> Deserialize<'de> for AppRoleBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(d, "the approle section (id, secret)", |raw: RawAppRole| {
            let id = non_empty(raw.id);
            // The secret is used as written; only emptiness is checked.
            let secret = raw.secret.filter(|s| !s.trim().is_empty());
            let (id, secret) = match (id, secret) {
                (None, None) => return Ok(AppRoleBlock(None)),
                (None, Some(_)) => return Err("'id' is required: the AppRole role ID".into()),
                (Some(_), None) => return Err("'secret' is required: the AppRole secret ID".into()),
                (Some(id), Some(secret)) => (id, secret),
            };
            Ok(AppRoleBlock(Some(VaultAppRole {
                engine: or_default(raw.engine, "approle"),
                namespace: non_empty(raw.namespace).unwrap_or_default(),
                id,
                secret,
                retry: raw
                    .retry
                    .map(|r| r.0)
                    .filter(|r| !r.is_zero())
                    .unwrap_or(VAULT_RETRY),
            })))
        })
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a kubernetes section with role and jwt")]
struct RawKubernetes {
    namespace: Option<String>,
    engine: Option<String>,
    role: Option<String>,
    jwt: Option<String>,
    retry: Option<Dur>,
}

/// `kubernetes:`; `None` when the section holds no credentials at all.
struct KubernetesBlock(Option<VaultKubernetes>);

impl<'de> Deserialize<'de> for KubernetesBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(
            d,
            "the kubernetes section (role, jwt)",
            |raw: RawKubernetes| {
                let role = non_empty(raw.role);
                let jwt = non_empty(raw.jwt);
                let (role, jwt) = match (role, jwt) {
                    (None, None) => return Ok(KubernetesBlock(None)),
                    (None, Some(_)) => {
                        return Err("'role' is required: the Kubernetes auth role".into());
                    }
                    (Some(_), None) => {
                        return Err("'jwt' is required: the service-account token, or the path of a file holding it".into());
                    }
                    (Some(role), Some(jwt)) => (role, jwt),
                };
                // A JWT never contains '/': this one is a file, re-read at every login. It must be
                // readable now so that a typo shows up at startup.
                if jwt.contains('/')
                    && let Err(err) = std::fs::File::open(&jwt)
                {
                    return Err(format!("cannot read the JWT file '{jwt}': {err}"));
                }
                Ok(KubernetesBlock(Some(VaultKubernetes {
                    engine: or_default(raw.engine, "kubernetes"),
                    namespace: non_empty(raw.namespace).unwrap_or_default(),
                    role,
                    jwt,
                    retry: raw
                        .retry
                        .map(|r| r.0)
                        .filter(|r| !r.is_zero())
                        .unwrap_or(VAULT_RETRY),
                })))
            },
        )
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a tls section with key, cert and ca")]
struct RawVaultTls {
    key: Option<String>,
    cert: Option<String>,
    ca: Option<String>,
}

struct VaultTlsBlock(VaultTls);

impl<'de> Deserialize<'de> for VaultTlsBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validated(
            d,
            "the Vault tls section (key, cert, ca)",
            |raw: RawVaultTls| {
                let key = non_empty(raw.key).map(PathBuf::from);
                let cert = non_empty(raw.cert).map(PathBuf::from);
                if key.is_some() != cert.is_some() {
                    return Err("'key' and 'cert' (the client certificate for Vault) go together: set both or neither".into());
                }
                Ok(VaultTlsBlock(VaultTls {
                    key,
                    cert,
                    ca: non_empty(raw.ca).map(PathBuf::from),
                }))
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The fields of each section, for the unknown-field check (module `fields`)
// ---------------------------------------------------------------------------------------------

/// The fields a derived section decoder knows: serde passes them to `deserialize_struct`, where
/// this deserializer takes them and stops. So the list is the decoder's own and cannot drift.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Capture<'a>(&'a std::cell::Cell<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("fields taken"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let fields = std::cell::Cell::new(&[][..]);
    let _ = T::deserialize(Capture(&fields));
    fields.get()
}

/// One step of the path to a mapping in the config file: a key, or (`None`) a list item.
pub(crate) type Step<'a> = Option<&'a str>;

/// The fields the section at `path` knows, or `None` where the keys are not field names (policy
/// names, API paths, keystore names: those the decoder checks itself) or the path is not a
/// section at all.
pub(crate) fn known_fields(path: &[Step]) -> Option<&'static [&'static str]> {
    let fields = match path {
        [] => fields_of::<RawFile>(),
        [Some("admin")] => fields_of::<RawAdmin>(),
        [Some("tls")] => fields_of::<RawTls>(),
        [Some("tls"), Some("proxy")] => fields_of::<RawProxy>(),
        [Some("tls"), Some("proxy"), Some("header")] => fields_of::<RawProxyHeader>(),
        [Some("policy"), Some(_)] => POLICY_FIELDS,
        [Some("cache")] => fields_of::<RawCache>(),
        [Some("cache"), Some("expiry")] => fields_of::<RawExpiry>(),
        [Some("api"), Some(_)] => fields_of::<RawApi>(),
        [Some("log")] => fields_of::<RawLog>(),
        [Some("keys"), None] => KEY_FIELDS,
        [Some("server")] => fields_of::<RawServer>(),
        [Some("key_versions")] => fields_of::<RawKeyVersions>(),
        // `keys:` holds the keystore in the oldest schema.
        [Some("keystore" | "keys"), Some(store), rest @ ..] => match (*store, rest) {
            ("fs", []) => fields_of::<RawFs>(),
            ("vault", []) => fields_of::<RawVault>(),
            ("vault", [Some("transit")]) => fields_of::<RawTransit>(),
            ("vault", [Some("approle")]) => fields_of::<RawAppRole>(),
            ("vault", [Some("kubernetes")]) => fields_of::<RawKubernetes>(),
            ("vault", [Some("tls")]) => fields_of::<RawVaultTls>(),
            ("vault", [Some("status")]) => fields_of::<RawVaultStatus>(),
            ("vault", [Some("timeout")]) => fields_of::<RawVaultTimeout>(),
            _ => return None,
        },
        _ => return None,
    };
    Some(fields)
}
