//! `kes identity …`: compute identities and create new ones, without talking to a server (`info`
//! and `ls` ask a server).
//!
//! An identity is the SHA-256 hash of a certificate's public key (§1.1); it is what the server's
//! configuration lists under `admin.identity` and `policy.<name>.identities`. An API key is an
//! Ed25519 private key in text form, so an API key, the certificate a client makes from it and a
//! `kes identity new` key file all have the same identity.
//!
//! The output is the Go `kes` command's, on a terminal and off it (without a terminal only the
//! bold type is left out), so that scripts written for it keep working: `kes identity` prints a
//! new API key, `kes identity of FILE` the bare identity.

use crate::auth::{ApiKey, Identity};
use crate::certs::{self, CertificateRequest};
use crate::cli::Error;
use crate::cli::output::{Output, Style, write_stdout};
use clap::Subcommand;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const IDENTITY_ABOUT: &str = "\
Identify an API key or certificate, create a new identity, or ask a server about identities.

Without a command: 'kes identity' prints a new API key; 'kes identity KEY' prints the identity
of an API key; 'kes identity FILE' prints the identity of a certificate file, or the API key of
an Ed25519 private key file (as 'kes identity new --key' writes them).";

const IDENTITY_EXAMPLES: &str = "\
Examples:
  kes identity
  kes identity kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw
  kes identity client.crt
  kes identity of client.crt
  kes identity new --key client.key --cert client.crt";

const OF_ABOUT: &str = "\
Print the identity of a certificate, a private key or an API key.

An identity is the SHA-256 hash of a public key, written as 64 hex characters. A KES
server identifies each client by the certificate it presents, and its configuration
file grants access by identity: admin.identity, or the identities of a policy.

The argument is one of:
  - a PEM certificate file: the identity of its first certificate (a chain file
    starts with the client's own certificate);
  - a PEM private key file (PKCS#8, PKCS#1 or SEC1, not encrypted): the identity
    that every certificate for this key has;
  - an API key (kes:v1:...): the identity of the certificate that a KES client
    makes from it;
  - '-': read an API key from standard input. This keeps the key out of your
    shell history and the process list.

When standard output is not a terminal, only the identity is printed, on one line.";

const OF_EXAMPLES: &str = "\
Examples:
  kes identity of client.crt
  kes identity of client.key
  echo \"$KES_API_KEY\" | kes identity of -";

const NEW_ABOUT: &str = "\
Create a new identity: a new API key, and with --key and --cert also a private key and a
self-signed certificate that belong to it.

Prints the new API key (kes:v1:...) and its identity. KES clients such as MinIO
(MINIO_KMS_KES_API_KEY) and the kes command (KES_API_KEY) make their client certificate
from the API key. The key is shown only this once and is not stored anywhere: keep it
secret.

With --key and --cert, also writes the API key's Ed25519 private key (PKCS#8 PEM,
readable only by you) and a self-signed X.509 certificate for it (PEM): the certificate has
the API key's identity. It can authenticate a client (mutual TLS) and can be a server's
certificate (tls.key and tls.cert; a server certificate needs at least one --ip or --dns).
It is valid from now until --expiry. The default --expiry is 720h (30 days), as in the Go
kes command: `kes server` warns when its certificate expires within 30 days, so give a server
certificate a longer one (e.g. --expiry 8760h, a year) or use one from your CA. SUBJECT
becomes its common name (CN). Existing files are not overwritten unless you give --force. With --encrypt, the private key file is
encrypted with a password (asked for on a terminal, or KES_CLIENT_PASSWORD), which
'tls.password' of a server config or the kes command (KES_CLIENT_PASSWORD) then needs.

The output is the Go kes command's. For a script that needs only the values:
  api_key=$(kes identity)                   # a new API key
  identity=$(echo \"$api_key\" | kes identity of -)";

const NEW_EXAMPLES: &str = "\
Examples:
  kes identity new
  kes identity new --key client.key --cert client.crt minio
  kes identity new --key server.key --cert server.crt --ip 127.0.0.1 --dns kes.local kes.local
  kes identity new --key client.key --cert client.crt --expiry 8760h --force";

/// `kes identity [KEY|FILE]` and its subcommands.
#[derive(clap::Args, Debug)]
#[command(
    long_about = IDENTITY_ABOUT,
    after_help = IDENTITY_EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct IdentityArgs {
    #[command(subcommand)]
    pub command: Option<IdentityCommand>,

    /// An API key (prints its identity), a certificate file (prints its identity) or an Ed25519
    /// private key file (prints its API key). Without it: prints a new API key.
    #[arg(value_name = "KEY|FILE")]
    pub input: Option<String>,
}

/// Subcommands of `kes identity`.
///
/// `of`, `new` and `cert` work offline; `info` and `ls` ask a server.
#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Print the identity of a certificate, private key or API key.
    #[command(long_about = OF_ABOUT, after_help = OF_EXAMPLES)]
    Of {
        /// A PEM certificate or private key file, a kes:v1: API key, or '-' for an API key on
        /// standard input.
        #[arg(value_name = "CERT_FILE|KEY_FILE|API_KEY")]
        input: String,
    },

    /// Create a new API key, and with --key and --cert its private key and a certificate.
    #[command(long_about = NEW_ABOUT, after_help = NEW_EXAMPLES)]
    New {
        /// Write the new Ed25519 private key to FILE (mode 0600). Needs --cert.
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,

        /// Write a self-signed certificate for the new key to FILE. Needs --key.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,

        /// Add an IP address to the certificate's subject alternative names (repeatable).
        #[arg(long = "ip", value_name = "IP", requires = "key")]
        ip: Vec<IpAddr>,

        /// Add a DNS name to the certificate's subject alternative names (repeatable).
        #[arg(long = "dns", value_name = "NAME", requires = "key")]
        dns: Vec<String>,

        /// How long the certificate is valid, from now: a duration like 720h, 90m or 8760h.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "720h",
            value_parser = parse_expiry,
            requires = "key"
        )]
        expiry: Duration,

        /// Encrypt the private key file with a password (asked for on a terminal, or
        /// KES_CLIENT_PASSWORD).
        #[arg(long, requires = "key")]
        encrypt: bool,

        /// Overwrite the --key and --cert files if they exist.
        #[arg(short, long)]
        force: bool,

        /// The certificate's subject common name (CN), e.g. a client or host name. Ignored
        /// without --key and --cert (as in the Go command).
        #[arg(value_name = "SUBJECT")]
        subject: Option<String>,
    },

    /// Write the client certificate and private key of an API key, for curl and other TLS clients.
    #[command(
        long_about = "Write the client certificate and private key that belong to an API key.\n\n\
KES clients turn a kes:v1: API key into an Ed25519 client certificate in memory. Tools that \
need files (curl, openssl s_client) can use the two files this command writes instead; the \
certificate has the API key's identity and is valid for 90 days. The key file is written with \
mode 0600. Prints the identity.",
        after_help = "Examples:\n  kes identity cert --key client.key --cert client.crt kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc\n  \
echo \"$KES_API_KEY\" | kes identity cert --key client.key --cert client.crt -\n  \
curl --cert client.crt --key client.key -k https://127.0.0.1:7373/v1/key/list/"
    )]
    Cert {
        /// Write the private key to FILE (mode 0600).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,

        /// Write the certificate to FILE.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,

        /// Overwrite the --key and --cert files if they exist.
        #[arg(short, long)]
        force: bool,

        /// The API key, or '-' to read it from standard input (keeps it out of shell history).
        /// Defaults to $KES_API_KEY.
        #[arg(value_name = "API_KEY", env = "KES_API_KEY", hide_env_values = true)]
        api_key: String,
    },

    /// Show an identity's policy on a server (your own identity without IDENTITY).
    #[command(
        long_about = "Show what a server knows about an identity: whether it is the admin, or \
which policy it is assigned to, when and by whom.\n\n\
Without IDENTITY, shows your own identity (the one of your API key or certificate).",
        after_help = "Examples:\n  kes identity info\n  kes identity info 3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22"
    )]
    Info {
        /// The identity (64 hex characters).
        #[arg(value_name = "IDENTITY")]
        identity: Option<String>,
        #[command(flatten)]
        opts: crate::cli::client::ClientOpts,
    },

    /// List the identities a server knows (the admin and those assigned to a policy).
    #[command(after_help = "Examples:\n  kes identity ls\n  kes identity ls 'b804befd*'")]
    Ls {
        /// An identity prefix; a trailing '*' is allowed.
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        opts: crate::cli::client::ClientOpts,
    },
}

/// Runs a `kes identity` command.
pub fn run(args: IdentityArgs) -> Result<(), Error> {
    let out = Output::new(false);
    let Some(cmd) = args.command else {
        return bare(&out, args.input.as_deref());
    };
    match cmd {
        IdentityCommand::Info { identity, opts } => {
            crate::cli::policy::identity_info(identity.as_deref(), &opts)
        }
        IdentityCommand::Ls { prefix, opts } => crate::cli::key::list(
            crate::cli::key::ListKind::Identities,
            prefix.as_deref(),
            &opts,
        ),
        IdentityCommand::Cert {
            key,
            cert,
            force,
            api_key,
        } => api_key_certificate(&key, &cert, &api_key, force),
        IdentityCommand::Of { input } => {
            let identity = identity_of(&input)?;
            print_identity(&out, &identity)
        }
        IdentityCommand::New {
            key,
            cert,
            ip,
            dns,
            expiry,
            encrypt,
            force,
            subject,
        } => {
            let files = match (key, cert) {
                (Some(key), Some(cert)) => Some((key, cert)),
                (None, None) => None,
                // clap's `requires` rules out one file without the other; stay safe if called
                // directly.
                _ => {
                    return Err(Error::Usage(
                        "--key and --cert must be given together".into(),
                    ));
                }
            };
            let request = CertificateRequest {
                common_name: subject.unwrap_or_default(),
                dns_names: dns,
                ip_addresses: ip,
                validity: expiry,
                server_auth: true,
                client_auth: true,
            };
            new_identity(&out, files, &request, encrypt, force)
        }
    }
}

fn parse_expiry(text: &str) -> Result<Duration, String> {
    let d = crate::config::duration::parse(text)?;
    if d.is_zero() {
        return Err("the expiry must be longer than zero".into());
    }
    Ok(d)
}

/// Length of an API key without its `kes:v1:` prefix.
const BARE_API_KEY_LEN: usize = 44;

/// Reads an API key from standard input (`-`).
fn api_key_from_stdin() -> Result<ApiKey, Error> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| {
            Error::Failed(format!(
                "failed to read an API key from standard input: {e}"
            ))
        })?;
    ApiKey::parse(&text).map_err(Error::Failed)
}

/// The identity of an API key, a certificate file or a private key file.
fn identity_of(input: &str) -> Result<Identity, Error> {
    if input == "-" {
        return Ok(api_key_from_stdin()?.identity());
    }
    if input.starts_with(crate::auth::apikey::PREFIX) {
        return Ok(ApiKey::parse(input).map_err(Error::Failed)?.identity());
    }
    let path = Path::new(input);
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::Failed(format!(
            "'{input}' is a directory, not a certificate file"
        ))),
        Ok(_) => identity_of_file(path).map_err(Error::Failed),
        Err(io_err) => match ApiKey::parse(input) {
            Ok(key) => Ok(key.identity()),
            // Something that long may be a mistyped API key: do not echo it.
            Err(_) if input.len() == BARE_API_KEY_LEN => Err(Error::Failed(
                "not a file and not a valid API key".to_string(),
            )),
            Err(_) => Err(Error::Failed(format!(
                "'{input}' is neither a file nor an API key: {io_err}"
            ))),
        },
    }
}

/// The identity of the first certificate of a PEM file, or of the private key in it.
fn identity_of_file(path: &Path) -> Result<Identity, String> {
    let cert_error = match certs::load_certificates(path) {
        Ok(certs) => {
            let first = certs
                .first()
                .ok_or_else(|| format!("no certificate found in '{}'", path.display()))?;
            return Identity::of_certificate(first)
                .map_err(|e| format!("'{}': {e}", path.display()));
        }
        Err(e) => e,
    };
    if certs::is_encrypted_private_key(path).unwrap_or(false) {
        return Err(format!(
            "the private key in '{}' is encrypted: use its certificate instead",
            path.display()
        ));
    }
    match certs::load_private_key(path, None) {
        Ok(key) => {
            let spki = certs::spki_of_private_key(&key)
                .map_err(|e| format!("'{}': {e}", path.display()))?;
            Ok(Identity::of_spki(&spki))
        }
        Err(_) => Err(format!(
            "{cert_error}; it holds no private key either (expected a PEM certificate or key)"
        )),
    }
}

/// `Identity:` and the identity on a terminal; the bare identity otherwise.
fn print_identity(out: &Output, identity: &Identity) -> Result<(), Error> {
    let text = if out.terminal {
        format!(
            "Identity:\n\n   {}\n",
            out.paint(Style::Bold, identity.as_str())
        )
    } else {
        format!("{identity}\n")
    };
    write_stdout(text.as_bytes())
}

/// `kes identity [KEY|FILE]`.
fn bare(out: &Output, input: Option<&str>) -> Result<(), Error> {
    let Some(input) = input else {
        let key = ApiKey::generate().map_err(Error::Failed)?;
        return print_new_api_key(out, &key);
    };
    if input == "-" {
        return print_identity_explained(out, &api_key_from_stdin()?.identity());
    }
    if let Ok(key) = ApiKey::parse(input)
        && input.starts_with(crate::auth::apikey::PREFIX)
    {
        return print_identity_explained(out, &key.identity());
    }
    let path = Path::new(input);
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Failed(
            if input.len() == BARE_API_KEY_LEN + crate::auth::apikey::PREFIX.len()
                || input.len() == BARE_API_KEY_LEN
            {
                // Possibly a mistyped API key: do not echo it.
                "not a file and not a valid API key".to_string()
            } else {
                format!("cannot read '{input}': {e}")
            },
        )
    })?;
    if meta.is_dir() {
        return Err(Error::Failed(format!(
            "'{input}' is a directory, not a certificate or key file"
        )));
    }
    if let Ok(certs) = certs::load_certificates(path)
        && let Some(first) = certs.first()
    {
        let identity = Identity::of_certificate(first)
            .map_err(|e| Error::Failed(format!("'{input}': {e}")))?;
        return print_identity_explained(out, &identity);
    }
    let key = certs::load_private_key(path, None).map_err(|e| {
        Error::Failed(format!(
            "'{input}' holds neither a certificate nor a private key: {e}"
        ))
    })?;
    let api_key = ApiKey::from_private_key(&key).map_err(|e| {
        Error::Failed(format!(
            "'{input}': {e} (its identity: 'kes identity of {input}')"
        ))
    })?;
    let text = zeroize::Zeroizing::new(api_key.to_text());
    let output = if out.terminal {
        format!(
            "Your API key:\n\n   {}\n\nIt corresponds to the private key in: {input}.\nKeep it secret and secure!\n",
            out.paint(Style::Bold, &text)
        )
    } else {
        format!("{}\n", text.as_str())
    };
    write_stdout(zeroize::Zeroizing::new(output).as_bytes())
}

/// A new API key: on a terminal with its identity and a few words; otherwise only the key.
fn print_new_api_key(out: &Output, key: &ApiKey) -> Result<(), Error> {
    let text = zeroize::Zeroizing::new(key.to_text());
    let output = if out.terminal {
        format!(
            "Your API key:\n\n   {}\n\n\
             This is the only time it is shown. Keep it secret and secure!\n\n\
             Your API key's identity:\n\n   {}\n\n\
             The identity is not a secret and can be shared securely.\n\
             Peers need your identity in order to verify your API key.\n\n\
             This identity can be re-computed again via:\n\n   $ kes identity {}\n",
            out.paint(Style::Bold, &text),
            out.paint(Style::Bold, key.identity().as_str()),
            text.as_str()
        )
    } else {
        format!("{}\n", text.as_str())
    };
    write_stdout(zeroize::Zeroizing::new(output).as_bytes())
}

/// The identity of an API key or certificate: on a terminal with a few words; otherwise bare.
fn print_identity_explained(out: &Output, identity: &Identity) -> Result<(), Error> {
    let output = if out.terminal {
        format!(
            "Identity:\n\n   {}\n\nAn identity is a fingerprint of your API key\nor certificate and can be shared securely.\n",
            out.paint(Style::Bold, identity.as_str())
        )
    } else {
        format!("{identity}\n")
    };
    write_stdout(output.as_bytes())
}

/// Reads an API key given as an argument or, for `-`, from standard input.
fn read_api_key(input: &str) -> Result<ApiKey, Error> {
    if input == "-" {
        return api_key_from_stdin();
    }
    ApiKey::parse(input).map_err(Error::Failed)
}

fn api_key_certificate(
    key_path: &Path,
    cert_path: &Path,
    api_key: &str,
    force: bool,
) -> Result<(), Error> {
    if same_file(key_path, cert_path) {
        return Err(Error::Usage(
            "--key and --cert must name two different files".into(),
        ));
    }
    let api_key = read_api_key(api_key)?;
    let (cert, key) = api_key
        .client_certificate()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let cert_pem = certs::pem_encode("CERTIFICATE", cert.as_ref());
    let key_pem = certs::pem_encode("PRIVATE KEY", key.secret_der());
    write_pair(key_path, &key_pem, cert_path, &cert_pem, force)?;
    write_stdout(format!("{}\n", api_key.identity()).as_bytes())
}

/// The password for `--encrypt`: `KES_CLIENT_PASSWORD`, or asked for (twice) on a terminal.
fn new_key_password() -> Result<zeroize::Zeroizing<String>, Error> {
    if let Ok(password) = std::env::var(crate::cli::client::ENV_PASSWORD)
        && !password.is_empty()
    {
        return Ok(zeroize::Zeroizing::new(password));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "--encrypt needs a password: run kes on a terminal to be asked for it, or set {}",
            crate::cli::client::ENV_PASSWORD
        )));
    }
    let read = |prompt: &str| {
        crate::sys::read_password(prompt)
            .map_err(|e| Error::Failed(format!("cannot read the password: {e}")))
    };
    let first = read("Enter password for private key: ")?;
    if first.is_empty() {
        return Err(Error::Usage("the password must not be empty".into()));
    }
    let second = read("Confirm password for private key: ")?;
    if *first != *second {
        return Err(Error::Usage("the passwords do not match".into()));
    }
    Ok(first)
}

/// `kes identity new`: a new API key, and with `files` its private key and a certificate.
fn new_identity(
    out: &Output,
    files: Option<(PathBuf, PathBuf)>,
    request: &CertificateRequest,
    encrypt: bool,
    force: bool,
) -> Result<(), Error> {
    let api_key = ApiKey::generate().map_err(Error::Failed)?;
    if let Some((key_path, cert_path)) = &files {
        if same_file(key_path, cert_path) {
            return Err(Error::Usage(
                "--key and --cert must name two different files".into(),
            ));
        }
        if !force {
            if std::fs::symlink_metadata(key_path).is_ok() {
                return Err(Error::Failed(
                    "private key already exists. Use --force to overwrite it".into(),
                ));
            }
            if std::fs::symlink_metadata(cert_path).is_ok() {
                return Err(Error::Failed(
                    "certificate already exists. Use --force to overwrite it".into(),
                ));
            }
        }
        let password = if encrypt {
            Some(new_key_password()?)
        } else {
            None
        };
        let (cert, key) = api_key
            .certificate(request)
            .map_err(|e| Error::Failed(e.to_string()))?;
        let identity = Identity::of_certificate(&cert).map_err(|e| Error::Failed(e.to_string()))?;
        if identity != api_key.identity() {
            return Err(Error::Failed(
                "internal error: the certificate does not have the API key's identity".into(),
            ));
        }
        let key_pem = match &password {
            Some(password) => {
                certs::encrypt_private_key_pem(key.secret_pkcs8_der(), password.as_bytes())
                    .map_err(|e| Error::Failed(e.to_string()))?
            }
            None => certs::pem_encode("PRIVATE KEY", key.secret_pkcs8_der()),
        };
        let cert_pem = certs::pem_encode("CERTIFICATE", cert.as_ref());
        write_pair(key_path, &key_pem, cert_path, &cert_pem, force)?;
    }

    let text = zeroize::Zeroizing::new(api_key.to_text());
    let mut output = zeroize::Zeroizing::new(format!(
        "Your API key:\n\n   {}\n\n\
         This is the only time it is shown. Keep it secret and secure!\n\n\
         Your Identity:\n\n   {}\n\n\
         The identity is not a secret. It can be shared. Any peer\n\
         needs this identity in order to verify your API key.\n\n",
        out.paint(Style::Bold, &text),
        out.paint(Style::Bold, api_key.identity().as_str()),
    ));
    if let Some((key_path, cert_path)) = &files {
        output.push_str(&format!(
            "The generated TLS private key is stored at: {}\n\
             The generated TLS certificate is stored at: {}\n\n",
            key_path.display(),
            cert_path.display()
        ));
    }
    output.push_str(&format!(
        "The identity can be computed again via:\n\n    kes identity of {}\n",
        text.as_str()
    ));
    match &files {
        Some((_, cert_path)) => {
            output.push_str(&format!("    kes identity of {}\n", cert_path.display()));
        }
        None => output.push('\n'),
    }
    write_stdout(output.as_bytes())
}

/// Writes a private key (mode 0600) and its certificate; a key without its certificate is of no
/// use, so it is removed again if the certificate cannot be written.
fn write_pair(
    key_path: &Path,
    key_pem: &str,
    cert_path: &Path,
    cert_pem: &str,
    force: bool,
) -> Result<(), Error> {
    write_new_file(key_path, key_pem.as_bytes(), 0o600, force).map_err(Error::Failed)?;
    if let Err(e) = write_new_file(cert_path, cert_pem.as_bytes(), 0o644, force) {
        let _ = std::fs::remove_file(key_path);
        return Err(Error::Failed(e));
    }
    Ok(())
}

/// True when `a` and `b` name the same file, whether or not it exists yet.
fn same_file(a: &Path, b: &Path) -> bool {
    /// The canonical directory joined with the file name.
    fn normalized(path: &Path) -> Option<PathBuf> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
    }
    if a == b {
        return true;
    }
    match (normalized(a), normalized(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Creates `path` with `mode` and writes `contents`. With `replace`, an existing file is removed
/// first, so that the new file gets `mode` even if the old one was readable by others.
fn write_new_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("failed to write '{}': {e}", path.display());
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
            _ => {}
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "'{}' already exists: use --force to overwrite it",
            path.display()
        ),
        _ => fail(e),
    })?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// The Ed25519 private key of `path` as an API key, if it is one (for tests).
#[cfg(test)]
fn api_key_of_file(path: &Path) -> Result<ApiKey, String> {
    let key = certs::load_private_key(path, None)?;
    ApiKey::from_private_key(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: IdentityCommand,
    }

    fn parse(args: &[&str]) -> Result<IdentityCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("identity").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn command_line() {
        match parse(&["new"]).unwrap() {
            IdentityCommand::New {
                key: None,
                cert: None,
                expiry,
                force: false,
                encrypt: false,
                subject: None,
                ..
            } => assert_eq!(expiry, Duration::from_secs(720 * 3600)),
            other => panic!("{other:?}"),
        }
        // A subject without files is accepted and ignored, as in the Go command.
        assert!(matches!(
            parse(&["new", "subject"]).unwrap(),
            IdentityCommand::New { key: None, .. }
        ));
        match parse(&[
            "new",
            "--key",
            "k.pem",
            "--cert",
            "c.pem",
            "--ip",
            "127.0.0.1",
            "--ip",
            "::1",
            "--dns",
            "localhost",
            "--expiry",
            "1h30m",
            "-f",
            "my-client",
        ])
        .unwrap()
        {
            IdentityCommand::New {
                key: Some(_),
                cert: Some(_),
                ip,
                dns,
                expiry,
                force: true,
                subject: Some(subject),
                ..
            } => {
                assert_eq!(ip.len(), 2);
                assert_eq!(dns, vec!["localhost".to_string()]);
                assert_eq!(expiry, Duration::from_secs(5400));
                assert_eq!(subject, "my-client");
            }
            other => panic!("{other:?}"),
        }
        // Usage errors.
        for args in [
            &["new", "--key", "k.pem"][..],
            &["new", "--cert", "c.pem"],
            &["new", "--ip", "127.0.0.1"],
            &["new", "--dns", "localhost"],
            &["new", "--encrypt"],
            &["new", "--expiry", "1h"],
            &["new", "--key", "k", "--cert", "c", "--ip", "not-an-ip"],
            &["new", "--key", "k", "--cert", "c", "--expiry", "720"],
            &["new", "--key", "k", "--cert", "c", "--expiry", "0s"],
            &["of"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?}"));
            assert!(err.use_stderr(), "{args:?}");
        }
    }

    #[test]
    fn help_renders() {
        let err = parse(&["new", "--help"]).unwrap_err();
        let help = err.to_string();
        assert!(help.contains("--expiry <DURATION>"), "{help}");
        assert!(help.contains("[default: 720h]"), "{help}");
        let err = parse(&["of", "--help"]).unwrap_err();
        assert!(err.to_string().contains("kes identity of client.crt"));
    }

    #[test]
    fn new_key_files_belong_to_the_api_key() {
        let dir = std::env::temp_dir().join(format!("kes-identity-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = (dir.join("k.pem"), dir.join("c.pem"));
        let api_key = ApiKey::generate().unwrap();
        let request = CertificateRequest {
            common_name: "x".into(),
            validity: Duration::from_secs(3600),
            server_auth: true,
            client_auth: true,
            ..CertificateRequest::default()
        };
        let (c, k) = api_key.certificate(&request).unwrap();
        let key_pem = certs::pem_encode("PRIVATE KEY", k.secret_pkcs8_der());
        let cert_pem = certs::pem_encode("CERTIFICATE", c.as_ref());
        write_pair(&key, &key_pem, &cert, &cert_pem, false).unwrap();
        assert_eq!(identity_of_file(&cert).unwrap(), api_key.identity());
        assert_eq!(api_key_of_file(&key).unwrap().to_text(), api_key.to_text());
        // Encrypted with a password: readable with it, and only with it.
        let enc = certs::encrypt_private_key_pem(k.secret_pkcs8_der(), b"pw").unwrap();
        std::fs::write(dir.join("e.pem"), enc.as_bytes()).unwrap();
        assert!(certs::is_encrypted_private_key(&dir.join("e.pem")).unwrap());
        let back = certs::load_private_key(&dir.join("e.pem"), Some("pw")).unwrap();
        assert_eq!(
            ApiKey::from_private_key(&back).unwrap().identity(),
            api_key.identity()
        );
        assert!(certs::load_private_key(&dir.join("e.pem"), Some("nope")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
