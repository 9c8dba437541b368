//! `kes server`: loads the configuration, connects the keystore, and serves the API until SIGINT
//! or SIGTERM; SIGHUP reloads the configuration file.

use crate::api::{self, Api, State};
use crate::auth::ApiKey;
use crate::auth::policy::PolicySet;
use crate::cache::Cache;
use crate::config::{self, Config, KeystoreConfig, Limits};
use crate::logstream::Hub;
use crate::metrics::Metrics;
use crate::server::{self, Server, tls};
use crate::{certs, sys};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(
    about = "Start a KES server",
    long_about = "Start a KES server.\n\n\
With --config, the server reads its configuration (TLS certificate and key, admin identity, \
policies, keystore) from a YAML file; see kes.yaml.example.\n\n\
With --dev, it starts a throw-away development server: an in-memory keystore, a fresh \
self-signed certificate for localhost and 127.0.0.1, and a fresh admin API key printed at \
start. Keys are lost when it stops. Never use --dev in production.",
    after_help = "Examples:\n  kes server --dev\n  kes server --config /etc/kes/config.yaml\n  kes server --config config.yaml --addr 127.0.0.1:7373\n\n\
Signals: SIGHUP reloads the config file (policies, admin, logging, cache, TLS certificate); \
SIGINT and SIGTERM stop the server after in-flight requests finish."
)]
pub struct ServerArgs {
    /// Path to the YAML configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    pub config: Option<PathBuf>,

    /// Listen address, overriding the config file (default 0.0.0.0:7373; 127.0.0.1:7373 with --dev).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<String>,

    /// Start a development server with an in-memory keystore and a fresh admin API key.
    #[arg(long)]
    pub dev: bool,

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
    init_logging(errors.clone(), metrics.clone());
    for (flag, value) in [
        ("--key", &args.key),
        ("--cert", &args.cert),
        ("--auth", &args.auth),
    ] {
        if value.is_some() {
            log::warn!("{flag} is ignored: set it in the config file instead");
        }
    }
    if !args.dev && args.config.is_none() {
        crate::cli::print_error(
            "either --config FILE or --dev is required (see 'kes server --help')",
        );
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    match start(args, errors, metrics) {
        Ok(code) => code,
        Err(e) => {
            crate::cli::print_error(e);
            ExitCode::FAILURE
        }
    }
}

/// The pieces that a reload rebuilds from the config file.
struct Loaded {
    state: State,
    tls: Arc<rustls::ServerConfig>,
}

fn build(cfg: &Config) -> Result<Loaded, String> {
    let chain = certs::load_certificates(&cfg.tls.cert)?;
    let key = certs::load_private_key(&cfg.tls.key, cfg.tls.password.as_deref())?;
    let roots = if cfg.tls.verify_client_certs {
        let mut roots = Vec::new();
        if let Some(ca) = &cfg.tls.ca {
            roots = certs::load_ca_certificates(ca)?;
        }
        Some(roots)
    } else {
        None
    };
    let required = !Api::any_skip_auth(&cfg.api);
    let tls = tls::server_config(chain, key, roots, tls::ClientAuth { required })?;
    Ok(Loaded {
        state: State {
            policies: PolicySet::new(&cfg.admin, &cfg.policies),
            api_config: cfg.api.clone(),
            audit_stdout: cfg.log.audit,
        },
        tls: Arc::new(tls),
    })
}

fn dev_config(
    addr: Option<SocketAddr>,
) -> Result<(Config, ApiKey, Arc<rustls::ServerConfig>), String> {
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
    let tls = tls::server_config(vec![cert], key, None, tls::ClientAuth { required: true })?;
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
        log: config::LogConfig {
            error: Some(log::LevelFilter::Info),
            audit: false,
        },
        keys: Vec::new(),
        keystore: KeystoreConfig::Memory,
        limits: Limits::default(),
    };
    Ok((cfg, api_key, Arc::new(tls)))
}

fn start(args: ServerArgs, errors: Arc<Hub>, metrics: Arc<Metrics>) -> Result<ExitCode, String> {
    let addr_flag = args.addr.as_deref().map(parse_addr).transpose()?;
    if let Err(e) = sys::disable_core_dumps() {
        log::warn!("cannot disable core dumps: {e}");
    }

    let (cfg, dev_key, loaded) = if args.dev {
        let (cfg, key, tls) = dev_config(addr_flag)?;
        let state = State {
            policies: PolicySet::new(&cfg.admin, &cfg.policies),
            api_config: Default::default(),
            audit_stdout: false,
        };
        (cfg, Some(key), Loaded { state, tls })
    } else {
        let path = args.config.clone().unwrap_or_default();
        let cfg = config::load(&path).map_err(|e| e.to_string())?;
        let loaded = build(&cfg)?;
        (cfg, None, loaded)
    };
    apply_log_level(&cfg);

    // Lock memory so keys never reach swap (the Go server does this for `kes server` too).
    let mlock = if args.dev {
        "disabled (--dev)".to_string()
    } else {
        match sys::lock_memory() {
            Ok(()) => "enabled".to_string(),
            Err(e) => {
                log::warn!(
                    "cannot lock memory (mlockall): {e}; keys may be written to swap. Grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK (systemd: LimitMEMLOCK=infinity)"
                );
                format!("failed ({e})")
            }
        }
    };

    let (store, store_desc) = crate::keystore::open(&cfg.keystore)?;
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
    ));
    let server = Server::bind(addr, cfg.limits, loaded.tls, api.clone(), stats)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = server.local_addr().map_err(|e| e.to_string())?;

    print_banner(&cfg, local, &store_desc, &mlock, dev_key.as_ref());

    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let acceptor = {
        let server = server.clone();
        std::thread::Builder::new()
            .name("kes-accept".into())
            .spawn(move || server.run())
            .map_err(|e| e.to_string())?
    };

    let config_path = args.config.clone();
    let mut signals = signals;
    for signal in signals.forever() {
        match signal {
            signal_hook::consts::SIGHUP => match &config_path {
                Some(path) => reload(path, &api, &server, &cache),
                None => log::info!("SIGHUP ignored: a --dev server has no config file"),
            },
            _ => {
                log::info!(
                    "shutting down: waiting up to {:?} for in-flight requests",
                    cfg.limits.shutdown_timeout
                );
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
            Err(e) => {
                return Err(format!(
                    "cannot create key '{name}' from the config's keys: {e}"
                ));
            }
        }
    }
    Ok(())
}

fn reload(path: &std::path::Path, api: &Api, server: &Server, cache: &Cache) {
    let result = config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|cfg| build(&cfg).map(|l| (cfg, l)));
    match result {
        Ok((cfg, loaded)) => {
            api.set_state(loaded.state);
            server.set_tls(loaded.tls);
            cache.configure(cfg.cache);
            apply_log_level(&cfg);
            log::info!("configuration reloaded from {}", path.display());
        }
        Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
    }
}

fn print_banner(
    cfg: &Config,
    addr: SocketAddr,
    store: &str,
    mlock: &str,
    dev_key: Option<&ApiKey>,
) {
    let mut out = std::io::stdout().lock();
    let host = if addr.ip().is_unspecified() {
        "0.0.0.0".to_string()
    } else {
        addr.ip().to_string()
    };
    let _ = writeln!(
        out,
        "Version     {} ({})",
        api::sys_version(),
        api::sys_commit()
    );
    let _ = writeln!(out, "Endpoint    https://{host}:{}", addr.port());
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
        let _ = writeln!(out, "  export KES_SERVER=https://{host}:{}", addr.port());
        let _ = writeln!(out, "  export KES_API_KEY={}", key.to_text());
    }
    let _ = out.flush();
}

/// The logger: human-readable lines on stderr (RUST_LOG respected), and the same lines as JSON to
/// `/v1/log/error` subscribers.
fn init_logging(errors: Arc<Hub>, metrics: Arc<Metrics>) {
    struct Tee {
        errors: Arc<Hub>,
        metrics: Arc<Metrics>,
    }
    impl Write for Tee {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = std::io::stderr().write_all(buf);
            if self.errors.has_subscribers() {
                let text = String::from_utf8_lossy(buf);
                let mut line = Vec::with_capacity(buf.len() + 16);
                line.extend_from_slice(b"{\"message\":");
                api::error::go_json_string(text.trim_end_matches('\n'), &mut line);
                line.extend_from_slice(b"}\n");
                self.errors.publish(Arc::from(line));
                self.metrics.error_events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            std::io::stderr().flush()
        }
    }
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Trace);
    // Quiet the libraries' own chatter unless asked for.
    for noisy in ["rustls", "ureq", "ureq_proto"] {
        builder.filter_module(noisy, log::LevelFilter::Warn);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
        RUST_LOG_SET.store(true, Ordering::Relaxed);
    }
    builder.format(|buf, record| {
        writeln!(
            buf,
            "{} {:<5} {}",
            api::json::go_time(Some(time::OffsetDateTime::now_utc())),
            record.level(),
            record.args()
        )
    });
    builder.target(env_logger::Target::Pipe(Box::new(Tee { errors, metrics })));
    let _ = builder.try_init();
    log::set_max_level(log::LevelFilter::Info);
}

static RUST_LOG_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `log.error` sets the level unless RUST_LOG does.
fn apply_log_level(cfg: &Config) {
    if RUST_LOG_SET.load(Ordering::Relaxed) {
        log::set_max_level(log::LevelFilter::Trace);
        return;
    }
    log::set_max_level(cfg.log.error.unwrap_or(log::LevelFilter::Off));
}
