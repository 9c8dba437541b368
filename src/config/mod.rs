//! The server configuration file (§7): the current YAML schema and the older one (`root:`,
//! `policy.<name>.paths`), `${VAR}` substitution, Go durations, defaults and validation.
//!
//! Loading turns the file into a validated [`Config`]; every error names what is wrong and where
//! (file, line, YAML path), and never shows a secret or the value of an environment variable.
//! The types below are what the rest of the server uses; [`load`] and [`parse`] produce them.
//!
//! How a file is read:
//! 1. `${NAME}` substitution on the text (module `env`), so that line numbers stay right.
//! 2. A walk over the document (module `fields`): a key defined twice in a mapping is an error
//!    (as with the Go server), a field the section does not know is a [`Warning`] with its line
//!    and the closest known field. The Go server ignores unknown fields silently, which turns a
//!    typo or an older-schema field into a default without a word; here they are ignored too, so
//!    that a file the Go server takes starts here, but reported (`kes server --check` treats them
//!    as errors).
//! 3. Decoding (module `schema`). Checks of single values and sections run during decoding, so
//!    their errors carry a line.
//! 4. The checks that span sections (admin identity, required sections) and the defaults.
//!
//! Both layouts the Go server has used are read: the current one (`admin.identity`,
//! `policy.<name>.allow`, `keystore:`) and the older one (`root:`, `policy.<name>.paths`, and in
//! v0.13 the keystore under `keys:`).
//!
//! Where this loader deliberately differs from the Go server (docs/protocol.md §12):
//! * a configured `cache.expiry.any` is never overwritten, and `0` disables an expiry;
//! * `log.audit` defaults to off (as the Go sample config documents; the Go code defaults to on);
//! * unknown fields are warned about (with line and suggestion), and `tls.proxy` is parsed but
//!   warned about (it is ignored);
//! * `keys:` entries are always created (the Go server ignored them 2023-10-24 … 2025-05-27);
//! * `keystore.vault.status.ping` defaults to 10 s (the Go sample config; Go code: 15 s).
//!
//! Relative paths (`tls.key`, `tls.cert`, `tls.ca`, `keystore.fs.path`, Vault `tls.*`, a JWT
//! file) are relative to the working directory of the server, as with the Go server, not to the
//! directory of the config file.

pub mod duration;
mod env;
mod error;
mod fields;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::GoDuration;
pub use error::Error;

/// Reads and validates the config file at `path`. `${NAME}` references are replaced by the
/// values of environment variables. Unknown fields are logged as warnings (see
/// [`load_with_warnings`]).
pub fn load(path: &Path) -> Result<Config, Error> {
    let (config, warnings) = load_with_warnings(path)?;
    log_warnings(&warnings);
    Ok(config)
}

/// Reads and validates the config file at `path`, and returns the fields it ignored because the
/// schema does not know them. The Go server ignores such fields silently; here they are
/// reported, and `kes server --check` treats them as errors.
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<Warning>), Error> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
    parse_with_warnings(&text, Some(path), |name| std::env::var(name))
}

/// Validates a configuration given as YAML text (errors say `config: line N: …`). `${NAME}`
/// references are replaced by the values of environment variables. Unknown fields are logged
/// as warnings.
pub fn parse(text: &str) -> Result<Config, Error> {
    parse_with(text, None, |name| std::env::var(name))
}

/// [`parse`] with the environment given as a function (tests, and callers that keep their own).
/// Public so that the config fuzz target (fuzz/fuzz_targets/config.rs) can run the whole loader
/// against a fixed environment; `file` only names the file in error messages.
pub fn parse_with(
    text: &str,
    file: Option<&Path>,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Config, Error> {
    let (config, warnings) = parse_with_warnings(text, file, lookup)?;
    log_warnings(&warnings);
    Ok(config)
}

fn log_warnings(warnings: &[Warning]) {
    for w in warnings {
        log::warn!("{w}; ignored ('kes server --check' reports it as an error)");
    }
}

/// A field of the config file that the schema does not know at that place, and that loading
/// ignored. `Display` gives `<file>: line <n>: unknown field …` with the closest known field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    file: Option<PathBuf>,
    line: usize,
    message: String,
}

impl Warning {
    /// The 1-based line of the field.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The message without file and line.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: ", file.display())?,
            None => f.write_str("config: ")?,
        }
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// [`parse_with`], returning the ignored unknown fields instead of logging them.
pub fn parse_with_warnings(
    text: &str,
    file: Option<&Path>,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<(Config, Vec<Warning>), Error> {
    // A byte-order mark is not part of the YAML text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let original = text;
    let (text, subs) = env::substitute(text, lookup)
        .map_err(|e| Error::at_line(e.line, e.message).in_file(file))?;
    match env::check_whole_values(&text, &subs) {
        Ok(()) => {}
        Err(Ok(sub)) => {
            return Err(Error::at_line(
                sub.line,
                format!(
                    "${{{}}} is not replaced by a whole value here: the line continues the text \
                     of the line above (write it as 'key: ${{{}}}' or '- ${{{}}}' on a line of its \
                     own)",
                    sub.var, sub.var, sub.var
                ),
            )
            .in_file(file));
        }
        Err(Err(yaml)) => return Err(Error::from_yaml(yaml, &subs).in_file(file)),
    }
    // Keys defined twice are errors and unknown fields warnings, each with its line; the
    // decoder below skips unknown fields.
    let unknown = fields::check(&text)
        .map_err(|dup| Error::at_line(dup.line, dup.message()).in_file(file))?;
    let warnings: Vec<Warning> = unknown
        .iter()
        .map(|u| Warning {
            file: file.map(Path::to_path_buf),
            line: u.line,
            message: u.message(),
        })
        .collect();
    // An ignored field is often why a required one is missing (`pth:` for `path:`): an error
    // names the unknown fields too.
    let hint = unknown_fields_hint(&warnings);
    let with_hint = |err: Error| match &hint {
        Some(hint) => err.with_hint(hint),
        None => err,
    };
    let raw: schema::RawFile = yaml_serde::from_str(&text).map_err(|e| {
        let err = Error::from_yaml(e, &subs);
        // A `${NAME}` that was not replaced (inside `[ ]`/`{ }`, or part of a longer value) is
        // the likely cause of an error on its line.
        let unreplaced = err.line().is_some_and(|n| {
            let references = original
                .lines()
                .nth(n.saturating_sub(1))
                .map_or(0, |l| l.matches("${").count());
            references > subs.iter().filter(|s| s.line == n).count()
        });
        if unreplaced {
            with_hint(err.with_hint(env::NOT_REPLACED_HINT))
        } else {
            with_hint(err)
        }
        .in_file(file)
    })?;
    let config = schema::build(raw).map_err(|e| with_hint(e).in_file(file))?;
    Ok((config, warnings))
}

/// ` (unknown fields, ignored: line 3: 'pth' in 'keystore.fs', did you mean 'path'?; …)`
fn unknown_fields_hint(warnings: &[Warning]) -> Option<String> {
    const SHOWN: usize = 3;
    if warnings.is_empty() {
        return None;
    }
    let mut list: Vec<String> = warnings
        .iter()
        .take(SHOWN)
        .map(|w| format!("line {}: {}", w.line, w.message))
        .collect();
    if warnings.len() > SHOWN {
        list.push(format!("{} more", warnings.len() - SHOWN));
    }
    Some(format!(
        " (the file has fields this server does not know, which were ignored: {})",
        list.join("; ")
    ))
}

/// The default listen address.
pub const DEFAULT_ADDRESS: &str = "0.0.0.0:7373";

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address; `None` means [`DEFAULT_ADDRESS`] (the `--addr` flag wins over both).
    pub address: Option<SocketAddr>,
    /// The admin identity (`admin.identity`, or `root` in the older schema). May be a non-hex
    /// string such as `disabled`, which no certificate can match.
    pub admin: String,
    pub tls: TlsConfig,
    /// Policies by name, in name order.
    pub policies: BTreeMap<String, PolicyConfig>,
    pub cache: CacheConfig,
    /// Per-API-path settings, keyed by path (e.g. `/v1/ready`).
    pub api: BTreeMap<String, ApiConfig>,
    pub log: LogConfig,
    /// Keys created at startup (`keys: [{name: …}]`), in file order, without duplicates.
    pub keys: Vec<String>,
    pub keystore: KeystoreConfig,
    /// Connection and thread limits (`server:` block, an extension of this implementation).
    pub limits: Limits,
    /// `key_versions:` (an extension of this implementation).
    pub key_versions: KeyVersionsConfig,
}

/// Settings of key versions (docs/key-versions.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyVersionsConfig {
    /// How long a retired version stays retired before it may be destroyed. Default 7 days,
    /// at least [`MIN_DESTROY_AFTER`].
    pub destroy_after: Duration,
}

/// The least `key_versions.destroy_after`.
pub const MIN_DESTROY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Default for KeyVersionsConfig {
    fn default() -> Self {
        KeyVersionsConfig {
            destroy_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Clone)]
pub struct TlsConfig {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// Password of a legacy-PEM-encrypted private key (`tls.password`). Never logged.
    pub password: Option<String>,
    /// `tls.auth: on`: verify client certificate chains against `tls.ca`, or without `tls.ca`
    /// against the system roots.
    pub verify_client_certs: bool,
    /// `tls.ca`: a PEM file or a directory of PEM files.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("key", &self.key)
            .field("cert", &self.cert)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("verify_client_certs", &self.verify_client_certs)
            .field("ca", &self.ca)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub identities: Vec<String>,
}

/// Cache expiry (§6.6). `None` disables the corresponding expiry: an absent field takes the
/// default, `0` (or `0s`) in the file disables it. A configured `any` is kept as written (the Go
/// server overwrites it with 30 s when `unused` is not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Drop every entry this long after it was loaded. Default 5 m.
    pub any: Option<Duration>,
    /// Drop an entry not used for this long. Default 30 s.
    pub unused: Option<Duration>,
    /// While the keystore is offline, keep serving cached keys for this long. Default: disabled.
    pub offline: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            any: Some(Duration::from_secs(300)),
            unused: Some(Duration::from_secs(30)),
            offline: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiConfig {
    pub skip_auth: bool,
    /// Overrides the route's timeout when set (> 0).
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Level of the error log; `None` = off. Default: INFO. Go `slog` levels map to the lowest
    /// level they let through: <= -4 DEBUG, -3..=0 INFO, 1..=4 WARN, 5..=8 ERROR, above 8 off.
    pub error: Option<log::LevelFilter>,
    /// Whether audit events go to stdout (`log.audit`). Audit events are INFO records, so a
    /// level above INFO (`WARN`, `ERROR`) turns them off like `off` does. Default: off, as the
    /// Go server's sample config documents (the Go code defaults to on).
    pub audit: bool,
    /// How error log records are written (`log.format`; an extension of this server).
    pub format: LogFormat,
    /// Audit records per second for the failed requests of clients without a policy
    /// (`log.audit_unknown_rate`; an extension; 0 = no limit). Default 100.
    pub audit_unknown_rate: u32,
}

/// `log.format`: the error log's record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The Go server's (Go's `log/slog` text): `time=… level=INFO msg="…" req.…`.
    #[default]
    Text,
    /// One JSON object per record (the shape of Go's `log/slog` JSON).
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            error: Some(log::LevelFilter::Info),
            audit: false,
            format: LogFormat::Text,
            audit_unknown_rate: 100,
        }
    }
}

#[derive(Debug, Clone)]
pub enum KeystoreConfig {
    /// `keystore.fs.path`
    Fs { path: PathBuf },
    /// In-memory keystore (`kes server --dev` only; not available from a file).
    Memory,
    /// `keystore.vault`
    Vault(Box<VaultConfig>),
}

/// `keystore.vault` (§6.3, §7.1).
#[derive(Debug, Clone, Default)]
pub struct VaultConfig {
    /// One or more Vault nodes (`endpoint` may be a string or a list, an extension): each an
    /// `http://` or `https://` URL without trailing `/`; never empty.
    pub endpoints: Vec<String>,
    /// K/V mount, default `kv`.
    pub engine: String,
    /// K/V version 2 (`version: v2`); default v1.
    pub kv_v2: bool,
    pub namespace: String,
    pub prefix: String,
    pub transit: Option<VaultTransit>,
    pub approle: Option<VaultAppRole>,
    pub kubernetes: Option<VaultKubernetes>,
    pub tls: VaultTls,
    /// `status.ping`, default 10 s.
    pub ping: Duration,
    /// Connect timeout of every Vault call (`timeout.connect`), default 5 s.
    pub connect_timeout: Duration,
    /// Response timeout of every Vault call (`timeout.response`), default 10 s.
    pub response_timeout: Duration,
    /// The most time reading one key may take in all, every retry, node and transit call
    /// included (`timeout.read`), default 1.5 s. Zero means the default.
    pub read_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct VaultTransit {
    /// Mount, default `transit`.
    pub engine: String,
    pub key: String,
}

#[derive(Clone, Default)]
pub struct VaultAppRole {
    /// Mount, default `approle`.
    pub engine: String,
    /// Login namespace: empty = the store's namespace, `/` = root.
    pub namespace: String,
    pub id: String,
    pub secret: String,
    /// Wait between failed logins, default 5 s.
    pub retry: Duration,
}

impl std::fmt::Debug for VaultAppRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultAppRole")
            .field("engine", &self.engine)
            .field("namespace", &self.namespace)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

#[derive(Clone, Default)]
pub struct VaultKubernetes {
    /// Mount, default `kubernetes`.
    pub engine: String,
    pub namespace: String,
    pub role: String,
    /// The service-account JWT, or a file path (contains `/`) re-read at each login.
    pub jwt: String,
    pub retry: Duration,
}

impl std::fmt::Debug for VaultKubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKubernetes")
            .field("engine", &self.engine)
            .field("namespace", &self.namespace)
            .field("role", &self.role)
            .field("jwt", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct VaultTls {
    pub key: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    /// A PEM file or a directory of PEM files.
    pub ca: Option<PathBuf>,
}

/// Connection and thread limits of the server (`server:` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once. At the limit, a new connection takes the place of the
    /// connection that has been idle longest; with none idle, it is refused. Default 4096.
    pub max_connections: usize,
    /// Most connections open at once from one client address, with the same rule. Default 1024.
    pub max_connections_per_address: usize,
    /// Threads that run requests which may block (keystore and Vault calls). Default 64.
    pub workers: usize,
    /// Offer HTTP/2 in ALPN (`h2`). Default on; off leaves HTTP/1.1 only.
    pub http2: bool,
    /// Time allowed for the TLS handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers; also the time a new connection has, after
    /// its handshake, to send its first request. Default 5 s.
    pub header_timeout: Duration,
    /// Time allowed to receive a request's body. Default 10 s.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Default 90 s.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests. Default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_address: 1024,
            workers: 64,
            http2: true,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}
