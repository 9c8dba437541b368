//! `kes server`: loads the configuration, connects the keystore, and serves the API until SIGINT
//! or SIGTERM.
//!
//! Reloading, without dropping connections (existing connections keep the TLS session and the
//! settings they started with; new requests and connections get the new ones):
//! * SIGHUP re-reads the config file and swaps policies, admin, API settings, log settings,
//!   cache expiry, the `keys:` to create, and the TLS certificate and key. A file that fails to
//!   load or validate is reported and changes nothing. The keystore, the listen address and the
//!   `server:` limits are never changed by a reload (a restart is needed; a reload that would
//!   change them says so in the log), with one exception: new Vault login credentials alone
//!   (`approle.id`/`secret`, `kubernetes.role`/`jwt`) are used at once if a login with them
//!   succeeds (otherwise the running ones and their token stay, and the log says why).
//! * A watcher thread stats the TLS certificate, key and CA files every [`TLS_POLL`] and, when
//!   they changed and have stayed unchanged for one more poll (so that a certificate and key
//!   written one after the other are read as a pair), rebuilds only the TLS configuration. So a
//!   certificate rotation (cert-manager, ACME renewals) needs no signal.

use crate::api::{self, Api, State};
use crate::auth::ApiKey;
use crate::auth::policy::PolicySet;
use crate::cache::Cache;
use crate::config::{self, Config, KeystoreConfig, Limits};
use crate::logstream::{self, Hub};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::server::{self, Server, tls};
use crate::{certs, sys};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the TLS certificate, key and CA files are checked for changes.
pub const TLS_POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
#[command(
    about = "Start a KES server",
    long_about = "Start a KES server.\n\n\
With --config, the server reads its configuration (TLS certificate and key, admin identity, \
policies, keystore) from a YAML file; see kes.yaml.example.\n\n\
With --dev, it starts a throw-away development server: an in-memory keystore, a fresh \
self-signed certificate for localhost and 127.0.0.1, and a fresh admin API key printed at \
start. Keys are lost when it stops. Never use --dev in production.",
    after_help = "Examples:\n  kes server --dev\n  kes server --config /etc/kes/config.yaml\n  kes server --config config.yaml --addr 127.0.0.1:7373\n  kes server --check --config /etc/kes/config.yaml\n\n\
Signals: SIGHUP reloads the config file (policies, admin, API settings, logging, cache, keys, \
TLS certificate, Vault login credentials; not the rest of the keystore or the listen \
address); SIGINT and SIGTERM stop the server after in-flight requests finish. A changed TLS certificate or key file is picked up without a \
signal within a few seconds."
)]
pub struct ServerArgs {
    /// Path to the YAML configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    pub config: Option<PathBuf>,

    /// Listen address, overriding the config file (default 0.0.0.0:7373; 127.0.0.1:7373 with
    /// --dev). A wildcard address (:7373, 0.0.0.0:7373 or [::]:7373) listens on IPv4 and IPv6.
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<String>,

    /// Start a development server with an in-memory keystore and a fresh admin API key.
    #[arg(long)]
    pub dev: bool,

    /// Check the config file and exit: 0 when it is valid, 1 with every problem listed. Stricter
    /// than a start: fields the schema does not know are errors (a start only warns). Reads the
    /// files it names (TLS key and certificate, that they match, tls.ca, Vault TLS files) but
    /// contacts no keystore. For CI and systemd's ExecReload.
    #[arg(long, requires = "config", conflicts_with = "dev")]
    pub check: bool,

    /// Exit at start-up when Vault cannot be reached or is sealed, instead of starting (not
    /// ready) and logging in once Vault answers.
    #[arg(long)]
    pub fail_fast: bool,

    /// Start even when the config file, a private key, the keystore directory or a key file is
    /// writable by other users (the problem is then only logged). For setups that control
    /// access otherwise, e.g. with ACLs.
    #[arg(long)]
    pub allow_insecure_permissions: bool,

    /// Ignored (accepted for compatibility with old command lines; use tls.key in the config).
    #[arg(long, hide = true, value_name = "FILE")]
    pub key: Option<String>,

    /// Ignored (accepted for compatibility with old command lines; use tls.cert in the config).
    #[arg(long, hide = true, value_name = "FILE")]
    pub cert: Option<String>,

    /// Ignored (accepted for compatibility with old command lines; use tls.auth in the config).
    #[arg(long, hide = true, value_name = "on|off")]
    pub auth: Option<String>,
}

/// Parses `IP:PORT`, `HOST:PORT` or `:PORT` (all interfaces).
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!("invalid listen address '{s}': expected IP:PORT, HOST:PORT or :PORT")
        })
}

pub fn run(args: ServerArgs) -> ExitCode {
    let errors = Hub::new();
    let metrics = Arc::new(Metrics::default());
    logstream::init_logger(errors.clone(), metrics.clone());
    for (flag, value) in [
        ("--key", &args.key),
        ("--cert", &args.cert),
        ("--auth", &args.auth),
    ] {
        if value.is_some() {
            log::warn!("{flag} is ignored: set it in the config file instead");
        }
    }
    if args.check
        && let Some(path) = &args.config
    {
        return check(path, args.addr.as_deref());
    }
    if !args.dev && args.config.is_none() {
        crate::cli::print_server_error(
            "either --config FILE or --dev is required (see 'kes server --help')",
        );
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    match start(args, errors, metrics) {
        Ok(code) => code,
        Err(e) => {
            crate::cli::print_server_error(e);
            ExitCode::FAILURE
        }
    }
}

/// `kes server --check --config FILE`: validates the file strictly and the files it names,
/// without starting anything. Problems go to stderr, one a line; a summary to stdout.
fn check(path: &Path, addr: Option<&str>) -> ExitCode {
    let (cfg, warnings) = match config::load_with_warnings(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            crate::cli::print_error(e);
            return ExitCode::FAILURE;
        }
    };
    let mut problems: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    let permissions = crate::permissions::check(&cfg, path);
    problems.extend(permissions.errors);
    for warning in &permissions.warnings {
        crate::cli::print_error(format_args!("warning: {warning}"));
    }
    if let Some(addr) = addr
        && let Err(e) = parse_addr(addr)
    {
        problems.push(e);
    }
    if let Err(e) = build_tls(&cfg) {
        problems.push(format!("{}: {e}", path.display()));
    }
    let store = match &cfg.keystore {
        KeystoreConfig::Fs { path: dir } => {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => problems.push(format!(
                    "{}: keystore.fs.path '{}' is not a directory",
                    path.display(),
                    dir.display()
                )),
                // Created at start (as by the Go server); only a parent that cannot hold it is
                // a problem that shows now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!(
                    "{}: keystore.fs.path '{}': {e}",
                    path.display(),
                    dir.display()
                )),
            }
            format!("fs {}", dir.display())
        }
        KeystoreConfig::Vault(vault) => {
            if let Err(e) = crate::keystore::vault::check_files(vault) {
                problems.push(format!("{}: {e}", path.display()));
            }
            format!("vault {} (not contacted)", vault.endpoints.join(", "))
        }
        KeystoreConfig::Memory => "memory".to_string(),
    };
    if problems.is_empty() {
        println!(
            "{}: OK (keystore {store}; {} policies, {} keys to create)",
            path.display(),
            cfg.policies.len(),
            cfg.keys.len()
        );
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        crate::cli::print_error(p);
    }
    let n = problems.len();
    crate::cli::print_error(format_args!(
        "{}: {n} problem{} found",
        path.display(),
        if n == 1 { "" } else { "s" }
    ));
    ExitCode::FAILURE
}

/// The pieces that a reload rebuilds from the config file.
struct Loaded {
    state: State,
    tls: BuiltTls,
}

/// A TLS configuration and when the certificate chain it sends expires.
struct BuiltTls {
    config: Arc<rustls::ServerConfig>,
    /// The certificate of the chain that expires first: its label and notAfter (`None` when no
    /// notAfter could be read, which the handshake code does not need).
    expiry: Option<WatchedCert>,
}

/// Builds the TLS configuration of `cfg` (reads the certificate, key and CA files).
fn build_tls(cfg: &Config) -> Result<BuiltTls, String> {
    let chain = certs::load_certificates(&cfg.tls.cert)?;
    let expiry = certs::earliest_not_after(&chain).map(|(index, not_after)| {
        WatchedCert::server(&cfg.tls.cert, index, chain.len(), not_after)
    });
    let key = certs::load_private_key(&cfg.tls.key, cfg.tls.password.as_deref())?;
    // `tls.ca` is read whether or not `tls.auth` is on, as by the Go server: a file that is
    // missing or holds no certificate refuses the start (and a reload) instead of surfacing only
    // when client verification is turned on. Only an empty directory is accepted when nothing
    // is verified against it.
    let ca = match &cfg.tls.ca {
        None => Vec::new(),
        Some(ca) => match certs::load_ca_certificates(ca) {
            Ok(certs) => certs,
            Err(_) if !cfg.tls.verify_client_certs && is_empty_dir(ca) => Vec::new(),
            Err(e) => return Err(format!("tls.ca: {e}")),
        },
    };
    // `tls.auth: on` without `tls.ca` verifies against the system's CA bundle, as the Go
    // server does (an organisation's CA installed system-wide). With `tls.ca`, only its
    // certificates are trusted (the Go server adds them to the system roots).
    let roots = match (cfg.tls.verify_client_certs, &cfg.tls.ca) {
        (false, _) => None,
        (true, Some(_)) => Some(ca),
        (true, None) => {
            let system = certs::load_system_roots().ok_or(
                "tls.auth is on without tls.ca, and the system has no CA bundle to verify client \
                 certificates against: set tls.ca",
            )?;
            // A system bundle may hold a few certificates webpki cannot use: skip those.
            let usable = system
                .into_iter()
                .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
                .collect();
            Some(usable)
        }
    };
    let required = !Api::any_skip_auth(&cfg.api);
    let tls = tls::server_config(
        chain,
        &key,
        roots,
        tls::ClientAuth { required },
        cfg.limits.http2,
    )?;
    Ok(BuiltTls {
        config: Arc::new(tls),
        expiry,
    })
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

fn build(cfg: &Config) -> Result<Loaded, String> {
    Ok(Loaded {
        state: State {
            policies: PolicySet::new(&cfg.admin, &cfg.policies),
            api_config: cfg.api.clone(),
            audit_stdout: cfg.log.audit,
            audit_unknown_rate: cfg.log.audit_unknown_rate,
            destroy_after: cfg.key_versions.destroy_after,
            generation: 0,
        },
        tls: build_tls(cfg)?,
    })
}

fn dev_config(addr: Option<SocketAddr>) -> Result<(Config, ApiKey, BuiltTls), String> {
    let api_key = ApiKey::generate()?;
    let req = certs::CertificateRequest {
        common_name: "localhost".into(),
        dns_names: vec!["localhost".into()],
        ip_addresses: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()],
        validity: Duration::from_secs(90 * 24 * 3600),
        server_auth: true,
        client_auth: false,
    };
    let (cert, key) = certs::self_signed_ecdsa(&req)?;
    let key = zeroize::Zeroizing::new(key);
    let expiry = certs::not_after(&cert).ok().map(|not_after| WatchedCert {
        label: "the --dev server certificate".into(),
        not_after,
        advice: "restart the --dev server".into(),
        reread: None,
    });
    let tls = tls::server_config(
        vec![cert],
        &key,
        None,
        tls::ClientAuth { required: true },
        true,
    )?;
    let cfg = Config {
        address: Some(addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7373)))),
        admin: api_key.identity().as_str().to_owned(),
        tls: config::TlsConfig {
            key: PathBuf::new(),
            cert: PathBuf::new(),
            password: None,
            verify_client_certs: false,
            ca: None,
        },
        policies: Default::default(),
        cache: config::CacheConfig {
            any: Some(Duration::from_secs(300)),
            unused: Some(Duration::from_secs(30)),
            offline: None,
        },
        api: Default::default(),
        log: config::LogConfig::default(),
        keys: Vec::new(),
        keystore: KeystoreConfig::Memory,
        limits: Limits::default(),
        key_versions: Default::default(),
    };
    let tls = BuiltTls {
        config: Arc::new(tls),
        expiry,
    };
    Ok((cfg, api_key, tls))
}

fn start(args: ServerArgs, errors: Arc<Hub>, metrics: Arc<Metrics>) -> Result<ExitCode, String> {
    // systemd (Type=notify) learns when the server is ready, reloading and stopping.
    let notify = Notifier::from_env();
    let addr_flag = args.addr.as_deref().map(parse_addr).transpose()?;
    if let Err(e) = sys::disable_core_dumps() {
        log::warn!("cannot disable core dumps: {e}");
    }

    let mut tls_file_stamps = Vec::new();
    let (cfg, dev_key, loaded) = if args.dev {
        let (cfg, key, tls) = dev_config(addr_flag)?;
        let state = State {
            policies: PolicySet::new(&cfg.admin, &cfg.policies),
            api_config: Default::default(),
            audit_stdout: false,
            audit_unknown_rate: config::LogConfig::default().audit_unknown_rate,
            destroy_after: cfg.key_versions.destroy_after,
            generation: 0,
        };
        (cfg, Some(key), Loaded { state, tls })
    } else {
        let path = args.config.clone().unwrap_or_default();
        let cfg = config::load(&path).map_err(|e| e.to_string())?;
        let permissions = crate::permissions::check(&cfg, &path);
        for warning in &permissions.warnings {
            log::warn!("{warning}");
        }
        if !permissions.errors.is_empty() {
            if args.allow_insecure_permissions {
                for e in &permissions.errors {
                    log::warn!("{e} (allowed by --allow-insecure-permissions)");
                }
            } else {
                return Err(format!(
                    "{}; other users could change what the server trusts or which keys it serves                      (kes server --allow-insecure-permissions starts anyway)",
                    permissions.errors.join("; ")
                ));
            }
        }
        // Stamped before the files are read: a change during the read is then seen by the
        // watcher (at worst the same certificate is loaded twice; none is ever missed).
        tls_file_stamps = stamps(&tls_paths(&cfg));
        let loaded = build(&cfg)?;
        (cfg, None, loaded)
    };

    logstream::set_level(cfg.log.error);
    logstream::set_format(cfg.log.format);

    // Certificates that expire within 30 days are logged now, then daily (the TLS watcher).
    metrics.set_server_certificate_not_after(loaded.tls.expiry.as_ref().map(|c| c.not_after));
    let mut cert_watch = CertWatch::new(Instant::now());
    cert_watch.server = loaded.tls.expiry.clone();
    if let KeystoreConfig::Vault(vault) = &cfg.keystore
        && let Some(path) = &vault.tls.cert
    {
        cert_watch.vault = WatchedCert::vault_client(path);
    }
    log_messages(cert_watch.messages(certs::unix_now()));

    // Lock memory so keys never reach swap (the Go server does this for `kes server` too).
    let mlock = if args.dev {
        "disabled (--dev)".to_string()
    } else {
        lock_memory()
    };

    let startup = if args.fail_fast {
        crate::keystore::vault::Startup::FailFast
    } else {
        crate::keystore::vault::Startup::Wait
    };
    notify.status(&format!(
        "starting: opening the keystore ({})",
        keystore_summary(&cfg.keystore)
    ));
    let (store, store_desc) = crate::keystore::open_with(&cfg.keystore, startup)?;
    let cache = Cache::new(store, cfg.cache);
    create_predefined_keys(&cache, &cfg)?;
    cache.start_background();

    let addr = addr_flag.or(cfg.address).unwrap_or_else(|| {
        config::DEFAULT_ADDRESS
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 7373)))
    });
    let stats = Arc::new(server::Stats::default());
    let api = Arc::new(Api::new(
        loaded.state,
        cache.clone(),
        metrics,
        stats.clone(),
        errors,
        cfg.limits.max_connections,
    ));
    let settings = server::Settings::new(cfg.limits);
    let server = Server::bind(addr, settings, loaded.tls.config, api.clone(), stats)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = server.local_addr().map_err(|e| e.to_string())?;
    let _ = api.listen.set(local);

    // Before the banner: whoever waits for it may signal at once, and SIGHUP's default action
    // would end the process.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let reloader = args.config.clone().map(|path| {
        Arc::new(Reloader::new(
            path,
            Running::new(&cfg, tls_file_stamps, cert_watch),
            api.clone(),
            server.clone(),
            cache.clone(),
            addr_flag.is_some(),
        ))
    });
    if let Some(reloader) = &reloader {
        reloader.clone().watch_tls_files(api.stopping.clone());
    }

    print_banner(&cfg, local, &store_desc, &mlock, dev_key.as_ref());

    let acceptor = {
        let server = server.clone();
        std::thread::Builder::new()
            .name("kes-accept".into())
            .spawn(move || server.run())
            .map_err(|e| e.to_string())?
    };

    // READY=1: the config is loaded, the keystore opened and checked (a Vault that could not be
    // reached without --fail-fast leaves the server running not ready: /v1/ready says so), the
    // socket listens and the accept loop runs.
    let serving = format!("serving on {local}; keystore {store_desc}");
    notify.ready(&serving);

    let mut signals = signals;
    for signal in signals.forever() {
        match signal {
            signal_hook::consts::SIGHUP => match &reloader {
                Some(reloader) => {
                    notify.reloading(&format!("reloading {}", reloader.path.display()));
                    let status = match reloader.reload() {
                        Ok(()) => format!("{serving}; reloaded at {}", now_text()),
                        Err(e) => format!(
                            "{serving}; the reload at {} FAILED, the previous configuration stays in force: {e}",
                            now_text()
                        ),
                    };
                    notify.ready(&status);
                }
                None => log::info!("SIGHUP ignored: a --dev server has no config file"),
            },
            _ => {
                log::info!(
                    "shutting down: waiting up to {:?} for in-flight requests",
                    cfg.limits.shutdown_timeout
                );
                notify.stopping(&format!(
                    "stopping: waiting up to {:?} for requests in flight",
                    cfg.limits.shutdown_timeout
                ));
                api.stopping.store(true, Ordering::Relaxed);
                let clean = server.shutdown(cfg.limits.shutdown_timeout);
                if !clean {
                    log::warn!("shutdown timeout reached with requests still in progress");
                }
                cache.stop();
                let _ = acceptor.join();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Locks the process memory when that is safe; returns the banner's "MLock" text.
///
/// Only with CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK: with a finite limit, locking succeeds
/// at start-up but every later allocation beyond the limit fails, and a failed allocation aborts
/// the process, so a server that grows with its connections would crash under load.
fn lock_memory() -> String {
    let unlimited = matches!(sys::memlock_limit(), Ok(None));
    if !unlimited && !sys::has_ipc_lock_capability() {
        let limit = match sys::memlock_limit() {
            Ok(Some(n)) => format!("{n} bytes"),
            _ => "unknown".to_string(),
        };
        log::warn!(
            "memory is not locked: RLIMIT_MEMLOCK is {limit} and the process lacks CAP_IPC_LOCK, so keys may be written to swap. \
             Run with LimitMEMLOCK=infinity (systemd) or 'ulimit -l unlimited', or grant CAP_IPC_LOCK"
        );
        return format!("disabled (RLIMIT_MEMLOCK is {limit}; see the log)");
    }
    match sys::lock_memory() {
        Ok(()) => "enabled".to_string(),
        Err(e) => {
            log::warn!("cannot lock memory (mlockall): {e}; keys may be written to swap");
            format!("failed ({e})")
        }
    }
}

/// Creates the `keys:` of the config; existing keys are fine, other errors abort startup.
fn create_predefined_keys(cache: &Cache, cfg: &Config) -> Result<(), String> {
    use crate::crypto::{Algorithm, HmacKey, KeyVersion, SecretKey};
    for name in &cfg.keys {
        let key =
            SecretKey::generate(Algorithm::default_for_this_cpu()).map_err(|e| e.to_string())?;
        let version = KeyVersion {
            key,
            hmac_key: Some(HmacKey::generate().map_err(|e| e.to_string())?),
            created_at: Some(time::OffsetDateTime::now_utc()),
            created_by: cfg.admin.clone(),
            algorithm_explicit: true,
        };
        let value = zeroize::Zeroizing::new(version.encode());
        match cache.create(name, &value) {
            Ok(()) => log::info!("created key '{name}' (keys: in the config)"),
            Err(crate::keystore::Error::Exists) => {}
            // Vault is down (the server started anyway): created once it answers.
            Err(e @ crate::keystore::Error::Unreachable { .. }) => {
                cache.create_later(name, value, &e)
            }
            Err(e) => {
                return Err(format!(
                    "cannot create key '{name}' from the config's keys: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// A file's identity and version as far as `stat` tells: (device, inode, size, mtime ns).
/// `None` when the file cannot be read (e.g. between the two renames of a replacement).
type FileStamp = Option<(u64, u64, u64, i128)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    // Follows symlinks, so a Kubernetes secret volume (whose files are links into a directory
    // that is swapped atomically) is seen to change.
    let m = std::fs::metadata(path).ok()?;
    let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Some((m.dev(), m.ino(), m.size(), mtime))
}

/// The files the TLS configuration is built from.
fn tls_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut paths = vec![cfg.tls.cert.clone(), cfg.tls.key.clone()];
    if let Some(ca) = &cfg.tls.ca {
        paths.push(ca.clone());
    }
    paths
}

fn stamps(paths: &[PathBuf]) -> Vec<FileStamp> {
    paths.iter().map(|p| stamp(p)).collect()
}

impl Running {
    /// The start-up configuration, built from the TLS files with these stamps, whose
    /// certificates `certs` watches.
    fn new(cfg: &Config, tls_files: Vec<FileStamp>, certs: CertWatch) -> Running {
        Running {
            cfg: cfg.clone(),
            tls_files,
            pending: None,
            failed: None,
            certs,
        }
    }

    /// A TLS configuration was installed: its certificate is the one the metric and the daily
    /// check follow, and it is checked at once.
    fn set_server_certificate(&mut self, expiry: Option<WatchedCert>, metrics: &Metrics) {
        metrics.set_server_certificate_not_after(expiry.as_ref().map(|c| c.not_after));
        if let Some(cert) = &expiry {
            log_messages(cert.message(certs::unix_now()));
        }
        self.certs.server = expiry;
    }
}

/// Reloads the configuration (SIGHUP) and the TLS files (watcher). Both go through one lock, so a
/// signal and a file change never interleave.
struct Reloader {
    path: PathBuf,
    api: Arc<Api>,
    server: Arc<Server<Api>>,
    cache: Arc<Cache>,
    /// The listen address came from `--addr`: the file's `address` does not matter.
    addr_from_flag: bool,
    running: Mutex<Running>,
}

struct Running {
    /// The configuration in force (address and limits as at startup: never reloaded; the
    /// keystore too, but for Vault login credentials that a login proved good).
    cfg: Config,
    /// Stamps of the TLS files the running TLS configuration was built from.
    tls_files: Vec<FileStamp>,
    /// A change seen by the watcher, applied once it is seen again unchanged.
    pending: Option<Vec<FileStamp>>,
    /// A change that failed to load; reported once, retried when the files change again.
    failed: Option<Vec<FileStamp>>,
    /// The certificates whose expiry is logged daily.
    certs: CertWatch,
}

impl Reloader {
    fn new(
        path: PathBuf,
        running: Running,
        api: Arc<Api>,
        server: Arc<Server<Api>>,
        cache: Arc<Cache>,
        addr_from_flag: bool,
    ) -> Reloader {
        Reloader {
            path,
            api,
            server,
            cache,
            addr_from_flag,
            running: Mutex::new(running),
        }
    }

    /// SIGHUP: re-reads the config file and applies everything a reload may change, or nothing
    /// (→ why).
    fn reload(&self) -> Result<(), String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        log::info!("SIGHUP: reloading {}", self.path.display());
        let loaded = config::load(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                // Stamped before the files are read: a change during the read is seen again by
                // the watcher and merely reloads once more.
                let files = stamps(&tls_paths(&cfg));
                build(&cfg).map(|loaded| (cfg, loaded, files))
            });
        let (mut cfg, loaded, files) = match loaded {
            Ok(x) => x,
            Err(e) => {
                log::error!(
                    "reload of {} failed, the running configuration stays in force: {e}",
                    self.path.display()
                );
                return Err(e);
            }
        };
        let mut kept = Vec::new();
        let mut keystore = running.cfg.keystore.clone();
        let mut credentials = false;
        match crate::keystore::reload_change(&running.cfg.keystore, &cfg.keystore) {
            crate::keystore::Reload::Same => {}
            crate::keystore::Reload::Restart => kept.push("keystore"),
            // New login credentials only (a rotated AppRole secret ID): a login with them
            // decides; until one succeeds, the running credentials and token stay in force.
            crate::keystore::Reload::Credentials => {
                match self.cache.keystore().set_credentials(&cfg.keystore) {
                    Ok(()) => {
                        keystore = cfg.keystore.clone();
                        credentials = true;
                    }
                    Err(e) => log::error!(
                        "the keystore login credentials changed in {}, but logging in with them failed, so the running credentials and token stay in force (fix the file and send SIGHUP again): {e}",
                        self.path.display()
                    ),
                }
            }
        }
        if !self.addr_from_flag && cfg.address != running.cfg.address {
            kept.push("address");
        }
        if cfg.limits != running.cfg.limits {
            kept.push("server limits");
        }
        if !kept.is_empty() {
            log::warn!(
                "{} changed in {} but cannot change while the server runs: restart to apply",
                kept.join(", "),
                self.path.display()
            );
        }
        cfg.keystore = keystore;
        cfg.address = running.cfg.address;
        cfg.limits = running.cfg.limits;

        self.api.set_state(loaded.state);
        self.server.set_tls(loaded.tls.config);
        running.set_server_certificate(loaded.tls.expiry, &self.api.metrics);
        self.cache.configure(cfg.cache);
        self.cache.keystore().recheck();
        logstream::set_level(cfg.log.error);
        logstream::set_format(cfg.log.format);
        if let Err(e) = create_predefined_keys(&self.cache, &cfg) {
            log::error!("{e}");
        }
        log::info!(
            "reloaded {}: {} policies, admin, API settings, logging, cache{}; {} and listen address unchanged",
            self.path.display(),
            cfg.policies.len(),
            if credentials {
                ", TLS certificate and keystore login credentials (logged in with them)"
            } else {
                " and TLS certificate"
            },
            if credentials {
                "other keystore settings"
            } else {
                "keystore"
            },
        );
        running.cfg = cfg;
        running.tls_files = files;
        running.pending = None;
        running.failed = None;
        Ok(())
    }

    /// One watcher poll: rebuilds the TLS configuration when its files changed and have stayed
    /// unchanged since the previous poll.
    fn check_tls_files(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let paths = tls_paths(&running.cfg);
        let now = stamps(&paths);
        if now == running.tls_files {
            running.pending = None;
            return;
        }
        if running.pending.as_ref() != Some(&now) {
            running.pending = Some(now);
            return;
        }
        if running.failed.as_ref() == Some(&now) {
            return;
        }
        match build_tls(&running.cfg) {
            Ok(tls) => {
                self.server.set_tls(tls.config);
                log::info!(
                    "TLS certificate {} changed on disk: reloaded (new connections use it, open ones keep theirs)",
                    running.cfg.tls.cert.display()
                );
                running.set_server_certificate(tls.expiry, &self.api.metrics);
                running.tls_files = now;
                running.pending = None;
                running.failed = None;
            }
            Err(e) => {
                log::error!(
                    "TLS files changed on disk but cannot be loaded, the running certificate stays in force: {e}"
                );
                running.failed = Some(now);
            }
        }
    }

    /// One watcher poll: once a day, logs the certificates that expire within 30 days.
    fn check_certificates(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let messages = running.certs.tick(Instant::now(), certs::unix_now());
        drop(running);
        log_messages(messages);
    }

    /// Starts the watcher thread; it ends when `stopping` is set.
    fn watch_tls_files(self: Arc<Self>, stopping: Arc<std::sync::atomic::AtomicBool>) {
        let spawned = std::thread::Builder::new()
            .name("kes-tls-watch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(TLS_POLL);
                    self.check_tls_files();
                    self.check_certificates();
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot watch the TLS files for changes (use SIGHUP to reload them): {e}");
        }
    }
}

/// How often the certificates in use are checked for expiry after start-up.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// A certificate whose expiry is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WatchedCert {
    /// What the log calls it, e.g. `server certificate '/etc/kes/server.cert' (tls.cert)`.
    label: String,
    /// notAfter, Unix seconds.
    not_after: i64,
    /// What to do about it.
    advice: String,
    /// A file to read again at each check: when it holds a later certificate than the one in
    /// use (Vault's client certificate is only read at start-up), the advice says to restart.
    reread: Option<PathBuf>,
}

impl WatchedCert {
    /// The certificate at `index` of the `len` certificates of `tls.cert`.
    fn server(path: &Path, index: usize, len: usize, not_after: i64) -> WatchedCert {
        let label = if index == 0 {
            format!("server certificate '{}' (tls.cert)", path.display())
        } else {
            format!(
                "certificate {} of the {len} in '{}' (tls.cert: a CA certificate sent with the server certificate)",
                index + 1,
                path.display()
            )
        };
        WatchedCert {
            label,
            not_after,
            advice: "renew it: kes loads a new certificate file by itself within seconds (or on SIGHUP); clients refuse an expired one".into(),
            reread: None,
        }
    }

    /// The Vault client certificate (`keystore.vault.tls.cert`), as read at start-up; `None`
    /// when it cannot be read (opening the keystore reports that).
    fn vault_client(path: &Path) -> Option<WatchedCert> {
        let chain = certs::load_certificates(path).ok()?;
        let (_, not_after) = certs::earliest_not_after(&chain)?;
        Some(WatchedCert {
            label: format!(
                "Vault client certificate '{}' (keystore.vault.tls.cert)",
                path.display()
            ),
            not_after,
            advice: "renew it and restart kes: the connection to Vault keeps the certificate it was started with".into(),
            reread: Some(path.to_path_buf()),
        })
    }

    /// What to log about it at `now` (Unix seconds), if anything.
    fn message(&self, now: i64) -> Option<(log::Level, String)> {
        let renewed = self
            .reread
            .as_deref()
            .and_then(|path| certs::load_certificates(path).ok())
            .and_then(|chain| certs::earliest_not_after(&chain))
            .filter(|(_, t)| *t > self.not_after);
        let advice = match (renewed, &self.reread) {
            (Some((_, t)), Some(path)) => format!(
                "'{}' now holds a certificate valid until {}: restart kes to use it",
                path.display(),
                certs::format_unix_time(t)
            ),
            _ => self.advice.clone(),
        };
        certs::expiry_message(&self.label, self.not_after, now, &advice)
    }
}

/// The certificates in use whose expiry is logged (WARN within 30 days, ERROR once expired): at
/// start-up, when a new one is loaded, and then every [`CERT_CHECK_EVERY`] from the TLS watcher.
#[derive(Debug)]
struct CertWatch {
    /// The server certificate chain's first to expire.
    server: Option<WatchedCert>,
    /// The Vault client certificate.
    vault: Option<WatchedCert>,
    /// When the next daily check is due.
    next: Instant,
}

impl CertWatch {
    fn new(now: Instant) -> CertWatch {
        CertWatch {
            server: None,
            vault: None,
            next: now + CERT_CHECK_EVERY,
        }
    }

    /// What to log about every watched certificate at `now` (Unix seconds).
    fn messages(&self, now: i64) -> Vec<(log::Level, String)> {
        [&self.server, &self.vault]
            .into_iter()
            .flatten()
            .filter_map(|c| c.message(now))
            .collect()
    }

    /// [`CertWatch::messages`] when a check is due at `now`, then not again for a day.
    fn tick(&mut self, now: Instant, unix_now: i64) -> Vec<(log::Level, String)> {
        if now < self.next {
            return Vec::new();
        }
        self.next = now + CERT_CHECK_EVERY;
        self.messages(unix_now)
    }
}

fn log_messages(messages: impl IntoIterator<Item = (log::Level, String)>) {
    for (level, text) in messages {
        log::log!(level, "{text}");
    }
}

/// The keystore of a config in a few words, for systemd's status line while it is opened.
fn keystore_summary(keystore: &KeystoreConfig) -> String {
    match keystore {
        KeystoreConfig::Fs { path } => format!("filesystem {}", path.display()),
        KeystoreConfig::Vault(v) => format!("vault {}", v.endpoints.join(",")),
        KeystoreConfig::Memory => "in-memory".into(),
    }
}

/// The time now, as systemd's status line shows it.
fn now_text() -> String {
    certs::format_unix_time(certs::unix_now())
}

fn print_banner(
    cfg: &Config,
    addr: SocketAddr,
    store: &str,
    mlock: &str,
    dev_key: Option<&ApiKey>,
) {
    let mut out = std::io::stdout().lock();
    let urls = endpoint_urls(addr, sys::interface_addresses().ok());
    let _ = writeln!(
        out,
        "Version     {} ({})",
        api::sys_version(),
        api::sys_commit()
    );
    for (i, url) in urls.iter().enumerate() {
        let label = if i == 0 { "Endpoint" } else { "" };
        let _ = writeln!(out, "{label:<12}{url}");
    }
    let _ = writeln!(out, "Admin       {}", cfg.admin);
    let _ = writeln!(out, "Keystore    {store}");
    let _ = writeln!(out, "MLock       {mlock}");
    if let Some(key) = dev_key {
        let _ = writeln!(
            out,
            "\nDevelopment server: keys are kept in memory and lost when it stops."
        );
        let _ = writeln!(
            out,
            "Admin API key (use it with curl or KES clients):\n\n    {}\n",
            key.to_text()
        );
        let _ = writeln!(out, "  export KES_SERVER={}", urls[0]);
        let _ = writeln!(out, "  export KES_API_KEY={}", key.to_text());
    }
    let _ = out.flush();
}

/// The URLs the banner lists for the listen address: the address itself, or for a wildcard
/// address one URL per address of the machine (`interfaces`), IPv4 first and loopback first, so
/// that the first URL works from the machine itself. IPv6 addresses are bracketed. Without the
/// interface list, the loopback URLs stand for "every interface".
fn endpoint_urls(addr: SocketAddr, interfaces: Option<Vec<std::net::IpAddr>>) -> Vec<String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let url = |ip: IpAddr| SocketAddr::new(ip, addr.port()).to_string();
    if !addr.ip().is_unspecified() {
        return vec![format!("https://{}", url(addr.ip()))];
    }
    let mut ips = interfaces.unwrap_or_default();
    // A socket bound to `::` is dual-stack (src/server: `listen`); one bound to 0.0.0.0 (the
    // fallback of a machine without IPv6) serves IPv4 only.
    ips.retain(|ip| !ip.is_unspecified() && (addr.is_ipv6() || ip.is_ipv4()));
    if !ips.iter().any(|ip| ip.is_loopback() && ip.is_ipv4()) {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let has_v6 = ips.iter().any(IpAddr::is_ipv6);
    if !has_v6 && addr.is_ipv6() {
        ips.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    // Stable: IPv4 before IPv6, loopback first within each family, else the kernel's order.
    ips.sort_by_key(|ip| (ip.is_ipv6(), !ip.is_loopback()));
    ips.into_iter()
        .map(|ip| format!("https://{}", url(ip)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ips(list: &[&str]) -> Option<Vec<IpAddr>> {
        Some(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    /// A PEM file holding a new self-signed certificate valid for `days` from now.
    fn cert_file(path: &Path, days: u64) -> i64 {
        let (cert, _) = certs::self_signed_ecdsa(&certs::CertificateRequest {
            validity: Duration::from_secs(days * 86_400),
            ..Default::default()
        })
        .unwrap();
        std::fs::write(path, certs::pem_encode("CERTIFICATE", &cert).as_bytes()).unwrap();
        certs::not_after(&cert).unwrap()
    }

    #[test]
    fn certificates_are_checked_daily_and_warned_about_within_30_days() {
        let day = 86_400;
        let now = certs::unix_now();
        let start = Instant::now();
        let mut watch = CertWatch::new(start);
        assert!(watch.messages(now).is_empty(), "nothing watched");
        watch.server = Some(WatchedCert::server(
            Path::new("/etc/kes/server.cert"),
            0,
            1,
            now + 40 * day,
        ));
        assert!(watch.messages(now).is_empty(), "40 days left: quiet");
        // Ten days later (as the daily check would see it): 30 days left.
        let later = now + 10 * day;
        let messages = watch.messages(later);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0].0, log::Level::Warn);
        assert!(
            messages[0].1.starts_with(
                "server certificate '/etc/kes/server.cert' (tls.cert) expires in 30 days"
            ),
            "{messages:?}"
        );
        // The daily timer: nothing before a day has passed, then once, then not for a day.
        assert!(
            watch
                .tick(start + Duration::from_secs(3600), later)
                .is_empty()
        );
        assert_eq!(watch.tick(start + CERT_CHECK_EVERY, later), messages);
        assert!(
            watch
                .tick(start + CERT_CHECK_EVERY + Duration::from_secs(60), later)
                .is_empty()
        );
        assert_eq!(watch.tick(start + 2 * CERT_CHECK_EVERY, later), messages);
        // Expired: an error.
        let expired = watch.messages(now + 41 * day);
        assert_eq!(expired[0].0, log::Level::Error, "{expired:?}");
        assert!(
            expired[0].1.contains("has EXPIRED: 1 day ago"),
            "{expired:?}"
        );
        // An intermediate of the chain is named as such.
        let ca = WatchedCert::server(Path::new("chain.pem"), 1, 2, now + day);
        let (_, text) = ca.message(now).unwrap();
        assert!(
            text.starts_with("certificate 2 of the 2 in 'chain.pem'"),
            "{text}"
        );
    }

    #[test]
    fn the_vault_client_certificate_is_the_one_in_use_until_a_restart() {
        let dir = std::env::temp_dir().join(format!("kes-certwatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vault-client.pem");
        let not_after = cert_file(&path, 10);
        let watched = WatchedCert::vault_client(&path).unwrap();
        assert_eq!(watched.not_after, not_after);
        let (level, text) = watched.message(certs::unix_now()).unwrap();
        assert_eq!(level, log::Level::Warn);
        // 10 days, or 9 days and some hours when the second turned since the file was made.
        assert!(
            text.contains("(keystore.vault.tls.cert) expires in 10 days")
                || text.contains("(keystore.vault.tls.cert) expires in 9 days"),
            "{text}"
        );
        assert!(text.contains("renew it and restart kes"), "{text}");
        // The file is renewed: the certificate in use still expires, and the advice changes.
        let renewed = cert_file(&path, 365);
        let (_, text) = watched.message(certs::unix_now()).unwrap();
        assert!(text.contains(&certs::format_unix_time(not_after)), "{text}");
        assert!(
            text.contains(&format!(
                "now holds a certificate valid until {}: restart kes to use it",
                certs::format_unix_time(renewed)
            )),
            "{text}"
        );
        assert!(WatchedCert::vault_client(&dir.join("missing.pem")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_specific_address_is_its_own_url() {
        let v4: SocketAddr = "127.0.0.1:7373".parse().unwrap();
        assert_eq!(endpoint_urls(v4, None), ["https://127.0.0.1:7373"]);
        let v6: SocketAddr = "[::1]:7373".parse().unwrap();
        assert_eq!(
            endpoint_urls(v6, ips(&["10.0.0.1"])),
            ["https://[::1]:7373"]
        );
    }

    #[test]
    fn a_wildcard_address_lists_the_machine_s_addresses_loopback_first() {
        let any: SocketAddr = "[::]:7373".parse().unwrap();
        assert_eq!(
            endpoint_urls(any, ips(&["10.0.0.1", "127.0.0.1", "fd00::2", "::1"])),
            [
                "https://127.0.0.1:7373",
                "https://10.0.0.1:7373",
                "https://[::1]:7373",
                "https://[fd00::2]:7373",
            ]
        );
        let any4: SocketAddr = "0.0.0.0:7373".parse().unwrap();
        assert_eq!(endpoint_urls(any4, None), ["https://127.0.0.1:7373"]);
        assert_eq!(
            endpoint_urls(any, None),
            ["https://127.0.0.1:7373", "https://[::1]:7373"]
        );
    }
}
