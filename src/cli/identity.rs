//! `kes identity …`: compute identities and create new ones, without talking to a server.
//!
//! An identity is the SHA-256 hash of a certificate's public key (§1.1); it is what the server's
//! configuration lists under `admin.identity` and `policy.<name>.identities`. Output goes to
//! stdout; when stdout is not a terminal it is reduced to bare values, one per line, for scripts.
//! Errors go to stderr as `kes: <message>` with exit code 1; usage errors exit with 2.

use crate::auth::{ApiKey, Identity};
use crate::certs::{self, CertificateRequest};
use crate::cli::{EXIT_USAGE, print_error};
use clap::Subcommand;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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

The identity is printed on one line.";

const OF_EXAMPLES: &str = "\
Examples:
  kes identity of client.crt
  kes identity of client.key
  echo \"$KES_API_KEY\" | kes identity of -";

const NEW_ABOUT: &str = "\
Create a new identity: an API key, or a private key with a self-signed certificate.

Without --key and --cert, prints a new API key (kes:v1:...) and its identity. KES
clients such as MinIO (MINIO_KMS_KES_API_KEY) and the kes command (KES_API_KEY) make
their client certificate from the API key. The key is shown only this once and is
not stored anywhere: keep it secret.

With --key and --cert, writes a new Ed25519 private key (PKCS#8 PEM, readable only by
you) and a self-signed X.509 certificate for it (PEM), and prints the identity. The
certificate can authenticate a client (mutual TLS) and can be a server's certificate
(tls.key and tls.cert; a server certificate needs at least one --ip or --dns). It is
valid from now until --expiry. SUBJECT becomes its common name (CN). Existing files
are not overwritten unless you give --force.

Output: when standard output is a terminal, the result is shown with a few words of
explanation. Otherwise only the values are printed, one per line, for scripts: the
API key and then the identity, or only the identity when --key and --cert are given.";

const NEW_EXAMPLES: &str = "\
Examples:
  kes identity new
  kes identity new --key client.key --cert client.crt minio
  kes identity new --key server.key --cert server.crt --ip 127.0.0.1 --dns kes.local kes.local
  kes identity new --key client.key --cert client.crt --expiry 8760h --force";

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

    /// Create a new API key, or a private key and self-signed certificate.
    #[command(long_about = NEW_ABOUT, after_help = NEW_EXAMPLES)]
    New {
        /// Write a new Ed25519 private key to FILE (mode 0600). Needs --cert.
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

        /// Overwrite the --key and --cert files if they exist.
        #[arg(short, long)]
        force: bool,

        /// The certificate's subject common name (CN), e.g. a client or host name. Needs --key.
        #[arg(value_name = "SUBJECT", requires = "key")]
        subject: Option<String>,
    },

    /// Write the client certificate and private key of an API key, for curl and other TLS clients.
    #[command(
        long_about = "Write the client certificate and private key that belong to an API key.\n\n\
KES clients turn a kes:v1: API key into an Ed25519 client certificate in memory. Tools that \
need files (curl, openssl s_client) can use the two files this command writes instead; the \
certificate has the API key's identity and is valid for 90 days. The key file is written with \
mode 0600.",
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
which policy it is assigned to.\n\n\
Without IDENTITY, shows your own identity (the one of your API key or certificate) and, unless \
you are the admin, the rules of your policy.",
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
    Ls {
        /// An identity prefix; a trailing '*' is allowed.
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        opts: crate::cli::client::ClientOpts,
    },
}

/// Runs a `kes identity` command and returns the process exit code.
pub fn run(cmd: IdentityCommand) -> ExitCode {
    let result = match cmd {
        IdentityCommand::Info { identity, opts } => {
            return crate::cli::exit(crate::cli::policy::identity_info(
                identity.as_deref(),
                &opts,
            ));
        }
        IdentityCommand::Ls { prefix, opts } => {
            return crate::cli::exit(crate::cli::key::list(
                crate::cli::key::ListKind::Identities,
                prefix.as_deref(),
                &opts,
            ));
        }
        IdentityCommand::Cert {
            key,
            cert,
            force,
            api_key,
        } => api_key_certificate(&key, &cert, &api_key, force),
        IdentityCommand::Of { input } => identity_of(&input),
        IdentityCommand::New {
            key: None,
            cert: None,
            ..
        } => new_api_key(),
        IdentityCommand::New {
            key: Some(key),
            cert: Some(cert),
            ip,
            dns,
            expiry,
            force,
            subject,
        } => {
            let request = CertificateRequest {
                common_name: subject.unwrap_or_default(),
                dns_names: dns,
                ip_addresses: ip,
                validity: expiry,
                server_auth: true,
                client_auth: true,
            };
            new_certificate(&key, &cert, &request, force)
        }
        // clap's `requires` rules out one file without the other; stay safe if called directly.
        IdentityCommand::New { .. } => Err(Failure::Usage(
            "--key and --cert must be given together".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            print_error(message);
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Error(message)) => {
            print_error(message);
            ExitCode::from(1)
        }
    }
}

enum Failure {
    /// The command line is wrong (exit code 2).
    Usage(String),
    /// The command failed (exit code 1).
    Error(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Error(message)
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

fn identity_of(input: &str) -> Result<(), Failure> {
    let identity = if input == "-" {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("failed to read an API key from standard input: {e}"))?;
        ApiKey::parse(&text)?.identity()
    } else if input.starts_with(crate::auth::apikey::PREFIX) {
        ApiKey::parse(input)?.identity()
    } else {
        let path = Path::new(input);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(Failure::Error(format!(
                    "'{input}' is a directory, not a certificate file"
                )));
            }
            Ok(_) => identity_of_file(path)?,
            Err(io_err) => match ApiKey::parse(input) {
                Ok(key) => key.identity(),
                // Something that long may be a mistyped API key: do not echo it.
                Err(_) if input.len() == BARE_API_KEY_LEN => {
                    return Err(Failure::Error(
                        "not a file and not a valid API key".to_string(),
                    ));
                }
                Err(_) => {
                    return Err(Failure::Error(format!(
                        "'{input}' is neither a file nor an API key: {io_err}"
                    )));
                }
            },
        }
    };
    println!("{identity}");
    Ok(())
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

/// Reads an API key given as an argument or, for `-`, from standard input.
fn read_api_key(input: &str) -> Result<ApiKey, Failure> {
    if input == "-" {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("failed to read an API key from standard input: {e}"))?;
        return Ok(ApiKey::parse(text.trim())?);
    }
    Ok(ApiKey::parse(input)?)
}

fn api_key_certificate(
    key_path: &Path,
    cert_path: &Path,
    api_key: &str,
    force: bool,
) -> Result<(), Failure> {
    if same_file(key_path, cert_path) {
        return Err(Failure::Usage(
            "--key and --cert must name two different files".into(),
        ));
    }
    let api_key = read_api_key(api_key)?;
    let (cert, key) = api_key.client_certificate()?;
    let cert_pem = certs::pem_encode("CERTIFICATE", cert.as_ref());
    let key_pem = certs::pem_encode("PRIVATE KEY", key.secret_der());
    write_new_file(key_path, key_pem.as_bytes(), 0o600, force)?;
    if let Err(e) = write_new_file(cert_path, cert_pem.as_bytes(), 0o644, force) {
        let _ = std::fs::remove_file(key_path);
        return Err(e.into());
    }
    write_stdout(&format!("{}\n", api_key.identity()))
}

fn new_api_key() -> Result<(), Failure> {
    let key = ApiKey::generate()?;
    let text = zeroize::Zeroizing::new(key.to_text());
    let identity = key.identity();
    let output = if std::io::stdout().is_terminal() {
        format!(
            "Your API key:\n\n   {}\n\n\
             This is the only time it is shown. Keep it secret and secure!\n\n\
             Your Identity:\n\n   {identity}\n",
            text.as_str()
        )
    } else {
        format!("{}\n{identity}\n", text.as_str())
    };
    let output = zeroize::Zeroizing::new(output);
    write_stdout(&output)
}

fn new_certificate(
    key_path: &Path,
    cert_path: &Path,
    request: &CertificateRequest,
    force: bool,
) -> Result<(), Failure> {
    if same_file(key_path, cert_path) {
        return Err(Failure::Usage(
            "--key and --cert must name two different files".into(),
        ));
    }
    if !force {
        for path in [key_path, cert_path] {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(Failure::Error(format!(
                    "'{}' already exists: use --force to overwrite it",
                    path.display()
                )));
            }
        }
    }
    let (cert_pem, key_pem) = certs::self_signed_ed25519(request)?;
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| format!("internal error: the new certificate is not valid PEM: {e}"))?;
    let identity = Identity::of_certificate(&cert_der)?;

    write_new_file(key_path, key_pem.as_bytes(), 0o600, force)?;
    if let Err(e) = write_new_file(cert_path, cert_pem.as_bytes(), 0o644, force) {
        // A key without its certificate is of no use: do not leave it behind.
        let _ = std::fs::remove_file(key_path);
        return Err(e.into());
    }

    let output = if std::io::stdout().is_terminal() {
        format!(
            "Your private key:  {}\nYour certificate:  {}\n\nYour Identity:\n\n   {identity}\n",
            key_path.display(),
            cert_path.display()
        )
    } else {
        format!("{identity}\n")
    };
    write_stdout(&output)
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

fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Error(format!("failed to write to standard output: {e}")))
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
                subject: None,
                ..
            } => assert_eq!(expiry, Duration::from_secs(720 * 3600)),
            other => panic!("{other:?}"),
        }
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
            &["new", "subject"],
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
}
