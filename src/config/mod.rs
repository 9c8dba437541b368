//! The server configuration file (§7): the current YAML schema and the older one (`root:`,
//! `policy.<name>.paths`), `${VAR}` substitution, Go durations, defaults and validation.
//!
//! Loading turns the file into a validated [`Config`]; every error names what is wrong and where.
//! INTERFACE: the types below are what the rest of the server uses; `load`/`parse` are owned by the
//! config helper.

pub mod duration;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::GoDuration;

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
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// Password of a legacy-PEM-encrypted private key (`tls.password`). Never logged.
    pub password: Option<String>,
    /// `tls.auth: on`: verify client certificate chains against `tls.ca` (and system roots).
    pub verify_client_certs: bool,
    /// `tls.ca`: a PEM file or a directory of PEM files.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub identities: Vec<String>,
}

/// Cache expiry (§6.6). `None` disables the corresponding expiry.
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
    /// Level of the error log; `None` = off.
    pub error: Option<log::LevelFilter>,
    /// Whether audit events go to stdout (`log.audit`).
    pub audit: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            error: Some(log::LevelFilter::Info),
            audit: false,
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
    /// One or more Vault nodes (`endpoint` may be a string or a list).
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
    /// Most connections served at once (one worker thread each). Default 1024.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers. Default 5 s.
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
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// TEMPORARY (replaced by the config loader): loads a config file.
pub fn load(path: &std::path::Path) -> Result<Config, String> {
    Err(format!("config loader not merged yet: {}", path.display()))
}
