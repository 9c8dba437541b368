//! The connection of the client commands: where the server is, who we are, whom we trust, and
//! the HTTP client (ureq over rustls with the ring provider) that sends the requests.
//!
//! Settings come from flags and from the environment variables the Go `kes` command reads
//! (§9). For each setting the first variable that is set (and not empty) wins:
//!
//! | Setting | Flag | Environment |
//! |---|---|---|
//! | servers | `-s/--server` | `MINIO_KES_SERVER`, `KES_SERVER`, `MINIO_KMS_KES_ENDPOINT` |
//! | API key | `-a/--api-key` | `MINIO_KES_API_KEY`, `KES_API_KEY`, `MINIO_KMS_KES_API_KEY` |
//! | certificate | `--client-cert` | `MINIO_KES_CERT_FILE`, `KES_CLIENT_CERT`, `MINIO_KES_CLIENT_CERT`, `MINIO_KMS_KES_CERT_FILE` |
//! | private key | `--client-key` | `MINIO_KES_KEY_FILE`, `KES_CLIENT_KEY`, `MINIO_KES_CLIENT_KEY`, `MINIO_KMS_KES_KEY_FILE` |
//! | server CA | `--ca` | `KES_CAPATH`, `MINIO_KMS_KES_CAPATH` |
//! | key password | – | `KES_CLIENT_PASSWORD`, else a prompt on a terminal |
//!
//! Flags override the environment: when any credential flag is given, the credential variables
//! are ignored. An API key and a certificate are mutually exclusive, in flags and in the
//! environment alike; that is a usage error, never a silent choice.
//!
//! A server list is tried in order; the next server is tried only when the connection could not
//! be made (refused, unresolvable, connect timeout, TLS handshake), never after a request may
//! have reached a server, so that no request is applied twice. A server that answers with an
//! error is the answer.
//!
//! What this module must never do: print or keep an API key, a private key or a password beyond
//! the connection setup (they are zeroized where this code holds them), or trust a server
//! certificate that was not verified unless `-k` was given.

use crate::auth::ApiKey;
use crate::certs;
use crate::cli::Error;
use crate::cli::output::{ColorWhen, Output};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::cell::Cell;
use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::http::{self, Method};
use zeroize::Zeroizing;

/// The server when none is configured.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7373";

/// Environment variables, in precedence order, for each setting (§9).
pub const ENV_SERVER: &[&str] = &["MINIO_KES_SERVER", "KES_SERVER", "MINIO_KMS_KES_ENDPOINT"];
pub const ENV_API_KEY: &[&str] = &["MINIO_KES_API_KEY", "KES_API_KEY", "MINIO_KMS_KES_API_KEY"];
pub const ENV_CERT: &[&str] = &[
    "MINIO_KES_CERT_FILE",
    "KES_CLIENT_CERT",
    "MINIO_KES_CLIENT_CERT",
    "MINIO_KMS_KES_CERT_FILE",
];
pub const ENV_KEY: &[&str] = &[
    "MINIO_KES_KEY_FILE",
    "KES_CLIENT_KEY",
    "MINIO_KES_CLIENT_KEY",
    "MINIO_KMS_KES_KEY_FILE",
];
pub const ENV_CA: &[&str] = &["KES_CAPATH", "MINIO_KMS_KES_CAPATH"];
pub const ENV_PASSWORD: &str = "KES_CLIENT_PASSWORD";

/// Time allowed to open a TCP connection and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the server's reply (headers, and the body of a non-streaming reply).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply body read (a full key listing of 1024 names is about 100 KB).
const MAX_REPLY: u64 = 16 << 20;
/// Longest error text taken from a non-JSON error reply.
const MAX_ERROR_TEXT: usize = 1024;

/// Connection and output options shared by every command that talks to a server.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientOpts {
    /// The server: HOST[:PORT] or https://HOST[:PORT], or a comma-separated list tried in order
    /// [env: MINIO_KES_SERVER, KES_SERVER, MINIO_KMS_KES_ENDPOINT; default: 127.0.0.1:7373]
    #[arg(
        short = 's',
        long = "server",
        value_name = "HOST[:PORT]",
        help_heading = "Connection"
    )]
    pub server: Option<String>,

    /// API key (kes:v1:...), or '-' to read it from standard input; the environment variable
    /// keeps it out of the process list [env: MINIO_KES_API_KEY, KES_API_KEY, MINIO_KMS_KES_API_KEY]
    #[arg(
        short = 'a',
        long = "api-key",
        value_name = "KEY",
        help_heading = "Connection",
        conflicts_with_all = ["client_cert", "client_key"]
    )]
    pub api_key: Option<String>,

    /// Client certificate (PEM, the client's own certificate first) [env: MINIO_KES_CERT_FILE,
    /// KES_CLIENT_CERT, MINIO_KES_CLIENT_CERT, MINIO_KMS_KES_CERT_FILE]
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub client_cert: Option<PathBuf>,

    /// Private key of the client certificate (PEM; an encrypted key's password is read from
    /// KES_CLIENT_PASSWORD or asked for on a terminal) [env: MINIO_KES_KEY_FILE, KES_CLIENT_KEY,
    /// MINIO_KES_CLIENT_KEY, MINIO_KMS_KES_KEY_FILE]
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub client_key: Option<PathBuf>,

    /// Trust the server certificates issued by these CA certificates (a PEM file or a directory
    /// of them) instead of the system's [env: KES_CAPATH, MINIO_KMS_KES_CAPATH]
    #[arg(
        long,
        value_name = "FILE|DIR",
        help_heading = "Connection",
        conflicts_with = "insecure"
    )]
    pub ca: Option<PathBuf>,

    /// Do not verify the server's certificate (for self-signed development servers only)
    #[arg(short = 'k', long, help_heading = "Connection")]
    pub insecure: bool,

    /// Print JSON (the shapes of the Go kes command's --json)
    #[arg(long)]
    pub json: bool,

    /// When to use colours: auto (on a terminal, unless NO_COLOR is set), never, always
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto, hide_default_value = true)]
    pub color: ColorWhen,

    /// Accepted as the Go kes command accepts it: no server has enclaves any more, so a name
    /// other than 'default' only prints a warning and is otherwise ignored
    #[arg(short = 'e', long, value_name = "NAME")]
    pub enclave: Option<String>,
}

impl ClientOpts {
    /// The output mode of a command with these options.
    pub fn output(&self) -> Output {
        Output::with_color(self.json, self.color)
    }

    /// Warns (on standard error) that `-e/--enclave` is ignored, as the Go command ignores it.
    pub fn warn_enclave(&self) {
        if let Some(name) = self.enclave.as_deref()
            && !name.is_empty()
            && name != "default"
        {
            eprintln!(
                "Warning: enclave '{}' ignored: this server has no enclaves; the command applies \
                 to the server's only key space (the Go kes command ignores -e as well)",
                crate::cli::output::sanitize(name)
            );
        }
    }
}

/// Who the client is.
pub enum Credential {
    ApiKey(ApiKey),
    Files { cert: PathBuf, key: PathBuf },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(key) => write!(f, "ApiKey({})", key.identity()),
            Credential::Files { cert, key } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .finish(),
        }
    }
}

/// Which server certificates are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's CA bundle.
    System,
    /// The CA certificates of a file or directory.
    Ca(PathBuf),
    /// Any certificate (`-k`).
    Insecure,
}

/// The resolved connection settings.
#[derive(Debug)]
pub struct Settings {
    /// Base URLs (`https://host:port[/path]`), in the order to try them.
    pub endpoints: Vec<String>,
    pub credential: Credential,
    pub trust: Trust,
}

/// The first variable of `names` that is set and not empty: (name, value).
fn first_env(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
}

/// The process environment, as [`Settings::resolve`] reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings {
    /// Resolves flags and environment into settings; conflicts and gaps are usage errors that
    /// name the flags or variables involved (never their secret values).
    pub fn resolve(
        opts: &ClientOpts,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Error> {
        let endpoints = match &opts.server {
            Some(list) => {
                parse_endpoints(list).map_err(|e| Error::Usage(format!("--server: {e}")))?
            }
            None => match first_env(env, ENV_SERVER) {
                Some((name, list)) => {
                    parse_endpoints(&list).map_err(|e| Error::Usage(format!("{name}: {e}")))?
                }
                None => parse_endpoints(DEFAULT_SERVER).map_err(Error::Usage)?,
            },
        };

        let credential =
            if opts.api_key.is_some() || opts.client_cert.is_some() || opts.client_key.is_some() {
                match (&opts.api_key, &opts.client_cert, &opts.client_key) {
                    (Some(key), None, None) => Credential::ApiKey(
                        read_api_key(key).map_err(|e| Error::Usage(format!("--api-key: {e}")))?,
                    ),
                    (None, Some(cert), Some(key)) => Credential::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    (None, Some(_), None) => {
                        return Err(Error::Usage(
                            "--client-cert needs --client-key (the certificate's private key)"
                                .into(),
                        ));
                    }
                    (None, None, Some(_)) => {
                        return Err(Error::Usage(
                            "--client-key needs --client-cert (the key's certificate)".into(),
                        ));
                    }
                    _ => {
                        return Err(Error::Usage(
                        "--api-key and --client-cert/--client-key are mutually exclusive: give one"
                            .into(),
                    ));
                    }
                }
            } else {
                let api_key = first_env(env, ENV_API_KEY).map(|(n, v)| (n, Zeroizing::new(v)));
                let cert = first_env(env, ENV_CERT);
                let key = first_env(env, ENV_KEY);
                match (api_key, cert, key) {
                    (Some((name, value)), None, None) => Credential::ApiKey(
                        ApiKey::parse(&value).map_err(|e| Error::Usage(format!("{name}: {e}")))?,
                    ),
                    (Some((api_name, _)), cert, key) => {
                        let other = cert.or(key).map_or("", |(n, _)| n);
                        return Err(Error::Usage(format!(
                            "{api_name} and {other} are both set, but an API key and a client \
                         certificate are mutually exclusive: unset one of them"
                        )));
                    }
                    (None, Some((_, cert)), Some((_, key))) => Credential::Files {
                        cert: PathBuf::from(cert),
                        key: PathBuf::from(key),
                    },
                    (None, Some((name, _)), None) => {
                        return Err(Error::Usage(format!(
                            "{name} is set but no private key: set KES_CLIENT_KEY as well"
                        )));
                    }
                    (None, None, Some((name, _))) => {
                        return Err(Error::Usage(format!(
                            "{name} is set but no certificate: set KES_CLIENT_CERT as well"
                        )));
                    }
                    (None, None, None) => {
                        return Err(Error::Usage(
                            "no credentials: set KES_API_KEY to an API key (kes:v1:...), or \
                         KES_CLIENT_CERT and KES_CLIENT_KEY to a certificate and its key \
                         (or use --api-key, --client-cert and --client-key)"
                                .into(),
                        ));
                    }
                }
            };

        let trust = if opts.insecure {
            Trust::Insecure
        } else if let Some(ca) = &opts.ca {
            Trust::Ca(ca.clone())
        } else if let Some((_, ca)) = first_env(env, ENV_CA) {
            Trust::Ca(PathBuf::from(ca))
        } else {
            Trust::System
        };

        Ok(Settings {
            endpoints,
            credential,
            trust,
        })
    }
}

/// Reads an API key given on the command line, or from standard input for `-`.
fn read_api_key(arg: &str) -> Result<ApiKey, String> {
    if arg == "-" {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("failed to read the API key from standard input: {e}"))?;
        return ApiKey::parse(&text);
    }
    ApiKey::parse(arg)
}

/// Parses a comma-separated server list into base URLs (§9: `http://` is stripped, `https://`
/// added). A host without a port means port 443, as in any https URL.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let rest = if let Some(r) = strip_prefix_ignore_case(item, "https://") {
            r
        } else if let Some(r) = strip_prefix_ignore_case(item, "http://") {
            r
        } else if item.contains("://") {
            return Err(format!(
                "'{item}': unsupported scheme (KES servers speak https)"
            ));
        } else {
            item
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let authority = authority_with_brackets(authority)
            .ok_or_else(|| format!("'{item}': expected HOST[:PORT]"))?;
        let url = format!("https://{authority}{path}");
        // Let the HTTP library confirm that it can use the address.
        url.parse::<http::Uri>()
            .map_err(|_| format!("'{item}': not a valid server address"))?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.is_empty() {
        return Err("no server address given".into());
    }
    Ok(out)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Checks HOST[:PORT] and puts a bare IPv6 address in brackets.
fn authority_with_brackets(authority: &str) -> Option<String> {
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return None;
    }
    if authority.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(format!("[{authority}]"));
    }
    let port = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if !host.is_empty() => Some(port),
            Some(_) => return None,
            None => None,
        }
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return None,
        }
    }
    Some(authority.to_string())
}

/// Percent-encodes a key, policy or identity name (or a listing pattern) for a URL path, so
/// that no argument can change the path it is put into (`a/../b`, `a?b`); the server judges
/// whether the name is valid.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A KES client: the servers to try and an HTTP agent that presents our certificate.
pub struct Client {
    agent: ureq::Agent,
    endpoints: Vec<String>,
    /// The server that answered last; the next request starts there.
    current: Cell<usize>,
}

/// The password of an encrypted private key: `KES_CLIENT_PASSWORD`, or asked for on a terminal.
fn key_password(path: &Path) -> Result<Option<Zeroizing<String>>, Error> {
    if !certs::is_encrypted_private_key(path).map_err(|e| Error::Usage(e.to_string()))? {
        return Ok(None);
    }
    if let Ok(password) = std::env::var(ENV_PASSWORD)
        && !password.is_empty()
    {
        return Ok(Some(Zeroizing::new(password)));
    }
    if std::io::stdin().is_terminal() {
        let prompt = format!("Password for the private key '{}': ", path.display());
        let password = crate::sys::read_password(&prompt).map_err(|e| {
            Error::Usage(format!(
                "cannot read the password of '{}': {e}",
                path.display()
            ))
        })?;
        return Ok(Some(password));
    }
    Err(Error::Usage(format!(
        "the private key in '{}' is encrypted: set {ENV_PASSWORD} to its password, or run kes \
         on a terminal to be asked for it",
        path.display()
    )))
}

/// The certificate chain and private key the client presents.
fn client_identity(
    credential: &Credential,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        Zeroizing<PrivateKeyDer<'static>>,
    ),
    Error,
> {
    match credential {
        Credential::ApiKey(key) => {
            let (cert, key) = key
                .client_certificate()
                .map_err(|e| Error::Failed(e.to_string()))?;
            Ok((vec![cert], Zeroizing::new(key)))
        }
        Credential::Files { cert, key } => {
            let chain = certs::load_certificates(cert).map_err(|e| Error::Usage(e.to_string()))?;
            let password = key_password(key)?;
            let private = certs::load_private_key(key, password.as_deref().map(|p| p.as_str()))
                .map_err(|e| Error::Usage(e.to_string()))?;
            // ureq panics on a mismatched pair: check it first, with a message that says which
            // files do not belong together.
            let leaf = chain
                .first()
                .ok_or_else(|| Error::Usage(format!("no certificate in '{}'", cert.display())))?;
            certs::check_key_pair(leaf, &private).map_err(|e| {
                Error::Usage(format!(
                    "'{}' and '{}' do not belong together: {e}",
                    key.display(),
                    cert.display()
                ))
            })?;
            Ok((chain, private))
        }
    }
}

/// The system's CA certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR`, then the usual bundle files).
fn system_roots() -> Result<Vec<CertificateDer<'static>>, Error> {
    if let Some(certs) = certs::load_system_roots() {
        return Ok(certs);
    }
    Err(Error::Usage(
        "no system CA certificates found: pass the server's CA certificate with --ca (or set \
         KES_CAPATH), or -k for a server with a self-signed certificate"
            .into(),
    ))
}

impl Client {
    /// Builds a client from flags and the process environment.
    pub fn new(opts: &ClientOpts) -> Result<Client, Error> {
        opts.warn_enclave();
        Client::from_settings(Settings::resolve(opts, &process_env)?)
    }

    pub fn from_settings(settings: Settings) -> Result<Client, Error> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

        let (chain, key) = client_identity(&settings.credential)?;
        let chain: Vec<Certificate<'static>> = chain
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        // ureq takes a private key as DER only with a key kind it does not export, or as PEM:
        // hand it PEM from a zeroizing buffer. It keeps its own copy for the life of the agent
        // (a short-lived process).
        let label = match &*key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            PrivateKeyDer::Pkcs8(_) => "PRIVATE KEY",
            _ => return Err(Error::Usage("unsupported private key format".into())),
        };
        let pem = certs::pem_encode(label, key.secret_der());
        drop(key); // wiped
        let private = PrivateKey::from_pem(pem.as_bytes())
            .map_err(|e| Error::Failed(format!("cannot use the private key: {e}")))?;
        let client_cert = ClientCert::new_with_certs(&chain, private);

        let mut tls = TlsConfig::builder()
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .client_cert(Some(client_cert));
        tls = match &settings.trust {
            Trust::Insecure => tls.disable_verification(true),
            Trust::Ca(path) => {
                let roots =
                    certs::load_ca_certificates(path).map_err(|e| Error::Usage(e.to_string()))?;
                let roots: Vec<Certificate<'static>> = roots
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                tls.root_certs(RootCerts::new_with_certs(&roots))
            }
            Trust::System => {
                let roots = system_roots()?;
                let roots: Vec<Certificate<'static>> = roots
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                tls.root_certs(RootCerts::new_with_certs(&roots))
            }
        };

        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            // A KES server never redirects a client command; show a redirect as what it is.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("kes/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(REPLY_TIMEOUT))
            .timeout_recv_body(Some(REPLY_TIMEOUT))
            .timeout_send_body(Some(REPLY_TIMEOUT))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            endpoints: settings.endpoints,
            current: Cell::new(0),
        })
    }

    /// The base URLs of the servers, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The server that answered the last request.
    pub fn current_endpoint(&self) -> &str {
        &self.endpoints[self.current.get() % self.endpoints.len()]
    }

    fn send(
        &self,
        index: usize,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        stream: bool,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let url = format!("{}{path}", self.endpoints[index]);
        let builder = http::Request::builder().method(method.clone()).uri(url);
        match body {
            Some(body) => {
                let request = builder
                    .header("content-type", "application/json")
                    .body(body)
                    .map_err(ureq::Error::from)?;
                self.agent.run(request)
            }
            None if stream => {
                let request = builder.body(()).map_err(ureq::Error::from)?;
                // A log stream stays open for as long as the user watches it.
                let request = self
                    .agent
                    .configure_request(request)
                    .timeout_recv_body(None)
                    .build();
                self.agent.run(request)
            }
            None => {
                let request = builder.body(()).map_err(ureq::Error::from)?;
                self.agent.run(request)
            }
        }
    }

    /// Sends a request to the first server that accepts a connection, starting with the one
    /// that answered last.
    fn send_with_failover(
        &self,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        stream: bool,
    ) -> Result<http::Response<ureq::Body>, Error> {
        let n = self.endpoints.len();
        let start = self.current.get();
        let mut failures = Vec::new();
        for i in 0..n {
            let index = (start + i) % n;
            match self.send(index, method, path, body, stream) {
                Ok(reply) => {
                    self.current.set(index);
                    return Ok(reply);
                }
                Err(e) if is_before_request(&e) && i + 1 < n => {
                    failures.push(format!("{}: {}", self.endpoints[index], describe(&e)));
                }
                Err(e) => {
                    failures.push(format!("{}: {}", self.endpoints[index], describe(&e)));
                    break;
                }
            }
        }
        Err(Error::Connection(if failures.len() == 1 {
            format!("cannot reach {}", failures.remove(0))
        } else {
            format!("cannot reach any server: {}", failures.join("; "))
        }))
    }

    /// Sends a request and returns the body of a 2xx reply; other replies become
    /// [`Error::Server`] with the server's message.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let reply = self.send_with_failover(&method, path, body, false)?;
        let endpoint = self.current_endpoint().to_string();
        read_reply(reply, &endpoint)
    }

    /// GET of a JSON reply.
    pub fn get_json(&self, path: &str) -> Result<Value, Error> {
        let body = self.call(Method::GET, path, None)?;
        parse_json(&body)
    }

    /// GET from one particular server (no failover), with the time the request took.
    pub fn get_from(
        &self,
        index: usize,
        path: &str,
    ) -> Result<(Zeroizing<Vec<u8>>, Duration), Error> {
        let start = Instant::now();
        let endpoint = &self.endpoints[index];
        let reply = self
            .send(index, &Method::GET, path, None, false)
            .map_err(|e| Error::Connection(format!("cannot reach {endpoint}: {}", describe(&e))))?;
        let body = read_reply(reply, endpoint)?;
        Ok((body, start.elapsed()))
    }

    /// Opens a streaming GET (a log stream) and returns the body to read from.
    pub fn stream(&self, path: &str) -> Result<ureq::BodyReader<'static>, Error> {
        let reply = self.send_with_failover(&Method::GET, path, None, true)?;
        let status = reply.status().as_u16();
        if !(200..300).contains(&status) {
            let endpoint = self.current_endpoint().to_string();
            return Err(read_reply(reply, &endpoint)
                .err()
                .unwrap_or_else(|| Error::Failed(format!("unexpected status {status}"))));
        }
        Ok(reply.into_body().into_reader())
    }
}

/// Parses a JSON reply.
pub fn parse_json(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Failed(format!("the server's reply is not valid JSON: {e}")))
}

/// Reads a reply: the body of a 2xx reply, or the server's error.
fn read_reply(
    reply: http::Response<ureq::Body>,
    endpoint: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let status = reply.status();
    let content_type = reply
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let location = reply
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = reply.into_body();
    let bytes = Zeroizing::new(
        body.with_config()
            .limit(MAX_REPLY)
            .read_to_vec()
            .map_err(|e| {
                Error::Connection(format!(
                    "failed to read the reply of {endpoint}: {}",
                    describe(&e)
                ))
            })?,
    );
    if status.is_success() {
        return Ok(bytes);
    }
    let message = if status.is_redirection() {
        format!(
            "the server answered with a redirect ({status}) to '{}'",
            location.unwrap_or_default()
        )
    } else {
        error_message(status, &content_type, &bytes)
    };
    Err(Error::Server {
        status: status.as_u16(),
        message,
        context: String::new(),
    })
}

/// The message of an error reply (§3): `error` or `message` of a JSON body, else the body text.
fn error_message(status: http::StatusCode, content_type: &str, body: &[u8]) -> String {
    if content_type.starts_with("application/json")
        && let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body)
    {
        for field in ["error", "message"] {
            if let Some(Value::String(m)) = obj.get(field)
                && !m.is_empty()
            {
                return m.clone();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        );
    }
    let mut end = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().filter(|c| !c.is_control()).collect()
}

fn describe_tls(tls: &rustls::Error) -> String {
    let hint = match tls {
        rustls::Error::InvalidCertificate(_) => {
            " (pass the server's CA certificate with --ca or KES_CAPATH, or -k for a \
             self-signed development server)"
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate) => {
            " (the server did not accept the client certificate)"
        }
        _ => "",
    };
    format!("TLS: {tls}{hint}")
}

/// True for errors that happen before any byte of the request reached a server, after which
/// another server may be tried without risk of applying a request twice.
fn is_before_request(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        // The TLS handshake is over before the request is written.
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

/// A one-line description of a transport error, with a hint for the common TLS mistakes.
pub fn describe(e: &ureq::Error) -> String {
    crate::transport::describe(e, describe_tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const KEY: &str = "kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc";

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoints("127.0.0.1:7373").unwrap(),
            ["https://127.0.0.1:7373"]
        );
        assert_eq!(
            parse_endpoints(" http://a:1 , https://b:2/,HTTPS://c , ,d:3/prefix/").unwrap(),
            [
                "https://a:1",
                "https://b:2",
                "https://c",
                "https://d:3/prefix"
            ]
        );
        assert_eq!(parse_endpoints("::1").unwrap(), ["https://[::1]"]);
        assert_eq!(
            parse_endpoints("[::1]:7373").unwrap(),
            ["https://[::1]:7373"]
        );
        assert_eq!(parse_endpoints("a:1,a:1").unwrap(), ["https://a:1"]);
        for bad in [
            "", " , ", "ftp://a", "a:0", "a:99999", "a:x", ":7373", "[::1", "[zz]:1", "u@a:1",
            "a b",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_cannot_change_the_path() {
        assert_eq!(path_segment("my-key_1"), "my-key_1");
        assert_eq!(path_segment("my*"), "my*");
        assert_eq!(path_segment("a/../b?c#d"), "a%2F%2E%2E%2Fb%3Fc%23d");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn settings_precedence_and_conflicts() {
        let opts = ClientOpts::default();
        // Defaults: local server, system trust; credentials are required.
        let err = Settings::resolve(&opts, &env_of(&[])).unwrap_err();
        assert!(
            matches!(&err, Error::Usage(m) if m.contains("no credentials")),
            "{err}"
        );

        let s = Settings::resolve(&opts, &env_of(&[("KES_API_KEY", KEY)])).unwrap();
        assert_eq!(s.endpoints, ["https://127.0.0.1:7373"]);
        assert!(matches!(s.credential, Credential::ApiKey(_)));
        assert_eq!(s.trust, Trust::System);

        // First variable set wins; empty values count as unset.
        let s = Settings::resolve(
            &opts,
            &env_of(&[
                ("MINIO_KES_SERVER", ""),
                ("KES_SERVER", "a:1,b:2"),
                ("MINIO_KMS_KES_ENDPOINT", "c:3"),
                ("MINIO_KMS_KES_API_KEY", KEY),
                ("KES_CAPATH", "/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(s.endpoints, ["https://a:1", "https://b:2"]);
        assert_eq!(s.trust, Trust::Ca("/ca.pem".into()));

        // The environment's certificate pair.
        let s = Settings::resolve(
            &opts,
            &env_of(&[("KES_CLIENT_CERT", "c.pem"), ("KES_CLIENT_KEY", "k.pem")]),
        )
        .unwrap();
        assert!(
            matches!(&s.credential, Credential::Files { cert, key } if cert == Path::new("c.pem") && key == Path::new("k.pem"))
        );

        // Conflicts and halves are usage errors that name the variables, not the values.
        let err = Settings::resolve(
            &opts,
            &env_of(&[("KES_API_KEY", KEY), ("KES_CLIENT_CERT", "c.pem")]),
        )
        .unwrap_err();
        let Error::Usage(m) = &err else {
            panic!("{err:?}")
        };
        assert!(
            m.contains("KES_API_KEY") && m.contains("KES_CLIENT_CERT"),
            "{m}"
        );
        assert!(!m.contains("AD9E7"), "{m}");
        for vars in [
            &[("KES_CLIENT_CERT", "c.pem")][..],
            &[("KES_CLIENT_KEY", "k.pem")][..],
            &[("KES_API_KEY", "kes:v1:bogus")][..],
        ] {
            let err = Settings::resolve(&opts, &env_of(vars)).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{vars:?}: {err:?}");
        }
        let err =
            Settings::resolve(&opts, &env_of(&[("KES_API_KEY", "kes:v1:bogus")])).unwrap_err();
        assert!(!err.to_string().contains("bogus"), "{err}");

        // Flags override the environment, including its conflicts.
        let flags = ClientOpts {
            server: Some("https://flag:9".into()),
            client_cert: Some("fc.pem".into()),
            client_key: Some("fk.pem".into()),
            insecure: true,
            ..ClientOpts::default()
        };
        let s = Settings::resolve(
            &flags,
            &env_of(&[
                ("KES_SERVER", "env:1"),
                ("KES_API_KEY", KEY),
                ("KES_CLIENT_CERT", "c.pem"),
                ("KES_CAPATH", "/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(s.endpoints, ["https://flag:9"]);
        assert!(
            matches!(&s.credential, Credential::Files { cert, .. } if cert == Path::new("fc.pem"))
        );
        assert_eq!(s.trust, Trust::Insecure);

        let half = ClientOpts {
            client_cert: Some("fc.pem".into()),
            ..ClientOpts::default()
        };
        assert!(matches!(
            Settings::resolve(&half, &env_of(&[("KES_CLIENT_KEY", "k.pem")])),
            Err(Error::Usage(_))
        ));
        let bad_server = ClientOpts {
            server: Some("ftp://x".into()),
            ..ClientOpts::default()
        };
        assert!(matches!(
            Settings::resolve(&bad_server, &env_of(&[("KES_API_KEY", KEY)])),
            Err(Error::Usage(m)) if m.starts_with("--server")
        ));
    }

    #[test]
    fn error_messages_of_replies() {
        let s = http::StatusCode::NOT_FOUND;
        assert_eq!(
            error_message(
                s,
                "application/json",
                b"{\"message\":\"key does not exist\"\n}"
            ),
            "key does not exist"
        );
        assert_eq!(
            error_message(
                s,
                "application/json; charset=utf-8",
                b"{\"message\":\"m\",\"error\":\"e\"}"
            ),
            "e"
        );
        assert_eq!(
            error_message(s, "text/plain", b"404 page not found\n"),
            "404 page not found"
        );
        assert_eq!(
            error_message(s, "application/json", b""),
            "HTTP 404 Not Found"
        );
        assert_eq!(error_message(s, "text/plain", b"a\x1b[31mb"), "a[31mb");
        let long = "x".repeat(5000);
        assert_eq!(error_message(s, "", long.as_bytes()).len(), MAX_ERROR_TEXT);
    }
}
