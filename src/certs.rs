//! Loading and making certificates and private keys: PEM files, directories of CA certificates,
//! legacy-encrypted PEM keys (`tls.password`), and self-signed certificates for `--dev`,
//! `kes identity new` and API-key clients.
//!
//! PEM is parsed by `rustls-pki-types`, except for the one thing it does not understand: the old
//! OpenSSL encryption of a private key block with `Proc-Type: 4,ENCRYPTED` / `DEK-Info` headers,
//! which is what the Go server's `tls.password` decrypts. That format (RFC 1421 headers, key =
//! OpenSSL's `EVP_BytesToKey` with MD5 and one iteration, CBC with PKCS#7 padding) is decoded in
//! `legacy` below. PKCS#8 `ENCRYPTED PRIVATE KEY` files are refused with a clear message, as
//! the Go server does not read them either.
//!
//! Error messages name the file but never contain key material, not even part of a malformed key.

use crate::der;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Read as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// Larger files are refused: no certificate bundle or key comes near this, and reading
/// `/dev/zero` by mistake must not exhaust memory.
const MAX_FILE_SIZE: u64 = 16 << 20;

/// Why a certificate or key could not be loaded or made. `Display` is the whole message, as
/// callers print it (it names the file, never key material, and includes the text of the error
/// underneath); `source()` is that error, where there is one: an I/O error, the PEM parser's,
/// rustls's, rcgen's, the certificate's DER. A malformed private key has no source: the PEM
/// parser's error may quote a line of the key.
#[derive(Debug)]
pub struct CertError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl CertError {
    fn new(message: impl Into<String>) -> CertError {
        CertError {
            message: message.into(),
            source: None,
        }
    }

    fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> CertError {
        CertError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Where the error becomes a message (start-up and configuration errors are text).
impl From<CertError> for String {
    fn from(e: CertError) -> String {
        e.message
    }
}

/// Reads every certificate of a PEM file (→ error naming the file when there is none).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read_file(path, "certificate")?;
    let certs = parse_certificates(&pem, path)?;
    if certs.is_empty() {
        return Err(CertError::new(format!(
            "no certificate found in '{}'",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1, SEC1), decrypting a legacy
/// `Proc-Type: 4,ENCRYPTED` key with `password`. An empty password counts as none. A password
/// given for a key that is not encrypted is ignored.
///
/// The file's text and the decoded key are wiped when dropped ([`Zeroizing`]); hand the key to
/// rustls with [`certified_key`], which borrows it, so that no unwiped copy of the DER is left.
pub fn load_private_key(
    path: &Path,
    password: Option<&str>,
) -> Result<Zeroizing<PrivateKeyDer<'static>>, CertError> {
    let pem = read_file(path, "private key")?;
    private_key_from_pem(&pem, password, path).map(Zeroizing::new)
}

/// A certificate chain and its private key, as rustls signs with them. The signing key is made
/// from the borrowed DER, so the caller's [`Zeroizing`] buffer is the only copy of the DER
/// (rustls's own `with_single_cert` takes the DER by value and drops it unwiped). What remains
/// in memory is the signing key of the crypto library (ring), which does not wipe its key
/// schedules on drop: it lives as long as the TLS configuration. Errors read after "the private
/// key …": `does not match the certificate`, `is unsupported: …`.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<rustls::sign::CertifiedKey, CertError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| CertError::caused_by(format!("is unsupported: {e}"), e))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // As rustls does: a key whose public half it cannot compute is taken as it is.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(CertError::caused_by("does not match the certificate", e)),
    }
}

/// [`load_private_key`] on PEM text already read; `path` only names the file in error messages.
/// Public so that the private-key fuzz target (fuzz/fuzz_targets/private_key.rs) reaches the
/// PEM and legacy-decryption code without a file.
pub fn private_key_from_pem(
    pem: &[u8],
    password: Option<&str>,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, CertError> {
    let blocks = legacy::header_blocks(pem);
    if let Some(block) = blocks.iter().find(|b| b.is_encrypted_private_key()) {
        let password = password.filter(|p| !p.is_empty()).ok_or_else(|| {
            CertError::new(format!(
                "the private key in '{}' is encrypted, but no password was given",
                path.display()
            ))
        })?;
        return block.decrypt_private_key(password.as_bytes()).map_err(|e| {
            CertError::new(format!(
                "failed to decrypt the private key in '{}': {e}",
                path.display()
            ))
        });
    }
    let pem = legacy::without_header_blocks(pem, &blocks);
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            if contains(&pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                Err(CertError::new(format!(
                    "the private key in '{}' is an encrypted PKCS#8 key, which is not supported: \
                     decrypt it with 'openssl pkey', or re-encrypt it in the traditional format \
                     with 'openssl pkey -traditional -aes256'",
                    path.display()
                )))
            } else {
                Err(CertError::new(format!(
                    "no private key found in '{}'",
                    path.display()
                )))
            }
        }
        // The PEM error may quote a line of the key: say only that it is malformed (and keep
        // the PEM error out of the source, too).
        Err(_) => Err(CertError::new(format!(
            "the private key in '{}' is not valid PEM",
            path.display()
        ))),
    }
}

/// True when the PEM file holds a legacy-encrypted private key (so that a client can ask for a
/// password before calling [`load_private_key`]).
pub fn is_encrypted_private_key(path: &Path) -> Result<bool, CertError> {
    let pem = read_file(path, "private key")?;
    Ok(legacy::header_blocks(&pem)
        .iter()
        .any(|b| b.is_encrypted_private_key()))
}

/// Reads CA certificates from a PEM file or from every file of a directory (not recursive).
/// In a directory, files without certificates are skipped, but at least one certificate must be
/// found; subdirectories are ignored; symbolic links are followed.
pub fn load_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let io = |what: &str, path: &Path| {
        let message = format!("failed to read {what} '{}'", path.display());
        move |e: std::io::Error| CertError::caused_by(format!("{message}: {e}"), e)
    };
    let meta = std::fs::metadata(path).map_err(io("CA certificates", path))?;
    if !meta.is_dir() {
        return load_certificates(path);
    }
    let entries = std::fs::read_dir(path).map_err(io("CA directory", path))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("CA directory", path))?;
        files.push(entry.path());
    }
    files.sort();
    let mut certs = Vec::new();
    for file in files {
        let meta = std::fs::metadata(&file).map_err(io("CA certificate", &file))?;
        if !meta.is_file() {
            continue;
        }
        let pem = read_file(&file, "CA certificate")?;
        certs.extend(parse_certificates(&pem, &file)?);
    }
    if certs.is_empty() {
        return Err(CertError::new(format!(
            "no CA certificates found in directory '{}'",
            path.display()
        )));
    }
    Ok(certs)
}

/// Where Linux distributions (and the BSDs, macOS with Homebrew) keep the system CA bundle, in
/// the order Go's crypto/x509 looks on Unix: the `kes` server (towards Vault) and the `kes`
/// command trust what the Go programs did.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",             // OpenSUSE
    "/etc/pki/tls/cacert.pem",            // OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // Fedora, RHEL 7+
    "/etc/ssl/cert.pem",                  // Alpine, macOS, OpenBSD
    "/usr/local/etc/ssl/cert.pem",        // FreeBSD
];

/// The system's CA certificates: `SSL_CERT_FILE`, then `SSL_CERT_DIR`, then the first bundle of
/// [`SYSTEM_CA_FILES`] that exists and holds certificates. `None` when there is none.
pub fn load_system_roots() -> Option<Vec<CertificateDer<'static>>> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            candidates.push(path.into());
        }
    }
    candidates.extend(SYSTEM_CA_FILES.iter().map(std::path::PathBuf::from));
    candidates
        .iter()
        .filter(|path| path.exists())
        .find_map(|path| load_ca_certificates(path).ok())
}

/// The DER SubjectPublicKeyInfo of a private key's public key (RSA, ECDSA P-256/P-384, Ed25519).
pub fn spki_of_private_key(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, CertError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| {
        CertError::caused_by(
            "unsupported or malformed private key (expected RSA, ECDSA P-256/P-384 or Ed25519)",
            e,
        )
    })?;
    signer
        .public_key()
        .map(|spki| spki.as_ref().to_vec())
        .ok_or_else(|| CertError::new("cannot determine the public key of the private key"))
}

/// Checks that `key` is the private key of `cert` (same public key). Certificates of any X.509
/// version are accepted.
pub fn check_key_pair(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), CertError> {
    let cert_spki =
        der::spki_of_certificate(cert).map_err(|e| CertError::caused_by(e.to_string(), e))?;
    let key_spki = spki_of_private_key(key)?;
    if cert_spki == key_spki.as_slice() {
        Ok(())
    } else {
        Err(CertError::new(
            "the private key does not belong to the certificate",
        ))
    }
}

/// What a new self-signed certificate is for.
#[derive(Debug, Clone, Default)]
pub struct CertificateRequest {
    /// Subject common name (no CN when empty).
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// From now; must not be zero.
    pub validity: Duration,
    pub server_auth: bool,
    pub client_auth: bool,
}

/// A new Ed25519 key pair and self-signed certificate, as PEM (certificate, PKCS#8 key).
///
/// The certificate is X.509 v3 with a random 128-bit serial, key usage digitalSignature, the
/// requested extended key usages and SANs, and basicConstraints CA=false. The key is PKCS#8 v1,
/// the form Go's `x509.MarshalPKCS8PrivateKey` writes.
pub fn self_signed_ed25519(
    req: &CertificateRequest,
) -> Result<(String, Zeroizing<String>), CertError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    fill_random(seed.as_mut())?;
    let (cert, key) = self_signed_ed25519_from_seed(&seed, req)?;
    // The certificate is public: moved out of its zeroizing buffer, not copied.
    let cert_pem = std::mem::take(&mut *pem_encode("CERTIFICATE", cert.as_ref()));
    Ok((cert_pem, pem_encode("PRIVATE KEY", key.secret_pkcs8_der())))
}

/// A new ECDSA P-256 key pair and self-signed certificate, as DER (for `kes server --dev`).
/// The common name defaults to `localhost`; the key is PKCS#8.
pub fn self_signed_ecdsa(
    req: &CertificateRequest,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CertError> {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::caused_by(format!("failed to generate ECDSA key: {e}"), e))?;
    let mut req = req.clone();
    if req.common_name.is_empty() {
        req.common_name = "localhost".into();
    }
    let cert = certificate_params(&req)?
        .self_signed(&key_pair)
        .map_err(|e| CertError::caused_by(format!("failed to create certificate: {e}"), e))?;
    let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der());
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key)))
}

/// The self-signed certificate of the Ed25519 key with this seed, and the key as PKCS#8 v1.
pub(crate) fn self_signed_ed25519_from_seed(
    seed: &[u8; 32],
    req: &CertificateRequest,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), CertError> {
    let pkcs8 = ed25519_pkcs8_v1(seed);
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| CertError::caused_by(format!("failed to load Ed25519 key: {e}"), e))?;
    let cert = certificate_params(req)?
        .self_signed(&key_pair)
        .map_err(|e| CertError::caused_by(format!("failed to create certificate: {e}"), e))?;
    Ok((cert.der().clone(), PrivatePkcs8KeyDer::from(pkcs8.to_vec())))
}

/// PKCS#8 v1 `PrivateKeyInfo` of an Ed25519 seed (RFC 8410): version 0, algorithm 1.3.101.112,
/// and the seed wrapped in an OCTET STRING inside the privateKey OCTET STRING.
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(seed);
    der
}

fn certificate_params(req: &CertificateRequest) -> Result<rcgen::CertificateParams, CertError> {
    use rcgen::{
        DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
        SerialNumber,
    };

    if req.validity.is_zero() {
        return Err(CertError::new(
            "certificate validity must be longer than zero",
        ));
    }
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|e| CertError::caused_by("failed to read the clock", e))?;
    let not_after = time::Duration::try_from(req.validity)
        .ok()
        .and_then(|d| now.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| {
            CertError::new("certificate validity is too long (ends after the year 9999)")
        })?;

    let mut params = rcgen::CertificateParams::default();
    params.not_before = now;
    params.not_after = not_after;

    let mut serial = [0u8; 16];
    fill_random(&mut serial)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    params.distinguished_name = DistinguishedName::new();
    if !req.common_name.is_empty() {
        params
            .distinguished_name
            .push(DnType::CommonName, req.common_name.as_str());
    }
    for name in &req.dns_names {
        let ia5 = name.as_str().try_into().map_err(|e| {
            CertError::caused_by(format!("invalid DNS name '{name}': must be ASCII"), e)
        })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    for ip in &req.ip_addresses {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if req.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if req.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    Ok(params)
}

fn fill_random(buf: &mut [u8]) -> Result<(), CertError> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| CertError::new("no randomness available from the operating system"))
}

/// PEM text of one DER object, with 64-character lines, in a zeroizing buffer sized up front
/// (no reallocation leaves a copy of a private key behind).
pub fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(
        b64.len() + b64.len() / 64 + 2 * label.len() + 40,
    ));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Reads a whole file of at most [`MAX_FILE_SIZE`] bytes. The buffer is zeroized on drop (it
/// may hold a private key).
fn read_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let fail = |e: std::io::Error| {
        CertError::caused_by(
            format!("failed to read {what} '{}': {e}", path.display()),
            e,
        )
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(fail)?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(CertError::new(format!(
            "failed to read {what} '{}': larger than {} MiB",
            path.display(),
            MAX_FILE_SIZE >> 20
        )));
    }
    Ok(buf)
}

/// Every certificate in PEM text, each checked to be a DER X.509 certificate; `path` only names
/// the file in error messages. Public so that the private-key fuzz target can feed it PEM text.
pub fn parse_certificates(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    // Legacy-encrypted key blocks have headers the PEM parser rejects; a combined
    // certificate-and-key file must still yield its certificates.
    let pem = legacy::without_header_blocks(pem, &legacy::header_blocks(pem));
    let mut certs = Vec::new();
    for (n, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| {
            CertError::caused_by(format!("invalid PEM in '{}': {e}", path.display()), e)
        })?;
        der::spki_of_certificate(&cert).map_err(|e| {
            CertError::caused_by(
                format!("certificate {} in '{}': {e}", n + 1, path.display()),
                e,
            )
        })?;
        certs.push(cert);
    }
    Ok(certs)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PKCS#8 private key (DER) as an encrypted PEM block in the OpenSSL "traditional" format
/// (`Proc-Type: 4,ENCRYPTED`, AES-256-CBC), which this crate, OpenSSL and Go read with the
/// password (`kes identity new --encrypt`).
pub fn encrypt_private_key_pem(
    der: &[u8],
    password: &[u8],
) -> Result<Zeroizing<String>, CertError> {
    legacy::encrypt_pkcs8(der, password).map_err(CertError::new)
}

// ---- Expiry ------------------------------------------------------------------------------------

/// A certificate that expires within this is warned about: at start-up, when it is loaded (a
/// reload) and then once a day (`kes server`).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The end of a DER certificate's validity (`notAfter`), in seconds since the Unix epoch.
///
/// Walks `Certificate → tbsCertificate → validity` with the same strictness as the identity
/// code (definite minimal lengths, every element inside its container); never panics on bad
/// input. The time is a UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049 as RFC 5280 says) or a
/// GeneralizedTime (`YYYYMMDDHHMMSSZ`), both in UTC as DER requires.
pub fn not_after(der: &[u8]) -> Result<i64, CertError> {
    not_after_der(der).map_err(|e| CertError::new(format!("invalid certificate: {e}")))
}

/// The earliest `notAfter` of a chain (the certificate a server sends and the intermediates
/// sent with it: the chain stops working when the first of them expires), with the position of
/// that certificate in the chain. `None` for an empty chain or one that cannot be read.
pub fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<(usize, i64)> {
    let mut earliest: Option<(usize, i64)> = None;
    for (i, cert) in chain.iter().enumerate() {
        let t = not_after(cert).ok()?;
        if earliest.is_none_or(|(_, e)| t < e) {
            earliest = Some((i, t));
        }
    }
    earliest
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// What to log about a certificate that ends at `not_after` (Unix seconds) when it is `now`:
/// nothing while more than [`EXPIRY_WARNING`] is left, a warning within it, an error once it
/// has expired. `what` names the certificate (e.g. `server certificate '/etc/kes/server.cert'
/// (tls.cert)`) and `advice` says what to do.
pub fn expiry_message(
    what: &str,
    not_after: i64,
    now: i64,
    advice: &str,
) -> Option<(log::Level, String)> {
    let left = not_after.saturating_sub(now);
    let warn_within = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    let date = format_unix_time(not_after);
    if left <= 0 {
        let ago = describe_seconds(left.unsigned_abs());
        Some((
            log::Level::Error,
            format!("{what} has EXPIRED: {ago} ago, on {date}: {advice}"),
        ))
    } else if left <= warn_within {
        let within = describe_seconds(left.unsigned_abs());
        Some((
            log::Level::Warn,
            format!("{what} expires in {within}, on {date}: {advice}"),
        ))
    } else {
        None
    }
}

/// `2026-03-01 12:00:00 UTC`, or the number of seconds when out of range.
pub fn format_unix_time(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!("{} UTC", crate::gojson::date_time(d, ' ')),
        Err(_) => format!("{t} s after 1970"),
    }
}

/// `12 days`, `1 day`, `5 hours`, `3 minutes`: the largest whole unit.
fn describe_seconds(s: u64) -> String {
    let (n, unit) = match s {
        0..120 => (s, "second"),
        120..7_200 => (s / 60, "minute"),
        7_200..86_400 => (s / 3_600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn not_after_der(der: &[u8]) -> Result<i64, &'static str> {
    const SEQUENCE: u8 = 0x30;
    let (cert, rest) = der_element(der, SEQUENCE, "not a DER certificate")?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate");
    }
    let (tbs, _) = der_element(cert, SEQUENCE, "missing tbsCertificate")?;
    let mut t = tbs;
    if t.first() == Some(&0xa0) {
        t = der_element(t, 0xa0, "malformed version")?.1;
    }
    t = der_element(t, 0x02, "missing serialNumber")?.1;
    t = der_element(t, SEQUENCE, "missing signature algorithm")?.1;
    t = der_element(t, SEQUENCE, "missing issuer")?.1;
    let (validity, _) = der_element(t, SEQUENCE, "missing validity")?;
    let tag = |b: &[u8]| b.first().copied().unwrap_or(0);
    let not_before_tag = tag(validity);
    let (_, after_not_before) = der_element(validity, not_before_tag, "malformed notBefore")?;
    let not_after_tag = tag(after_not_before);
    let (time, rest) = der_element(after_not_before, not_after_tag, "malformed notAfter")?;
    if !rest.is_empty() {
        return Err("malformed validity");
    }
    der_time(not_after_tag, time)
}

/// One DER element of `tag` at the start of `input`: its contents and what follows it.
fn der_element<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), &'static str> {
    let (&t, after_tag) = input.split_first().ok_or(what)?;
    if t != tag {
        return Err(what);
    }
    let (&first, after_len) = after_tag.split_first().ok_or(what)?;
    let (len, rest) = match first {
        0x00..=0x7f => (usize::from(first), after_len),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let octets = after_len.get(..n).ok_or(what)?;
            if octets.first() == Some(&0) {
                return Err("non-minimal length encoding");
            }
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err("non-minimal length encoding");
            }
            (len, &after_len[n..])
        }
        _ => return Err(what),
    };
    let contents = rest.get(..len).ok_or("element longer than its container")?;
    Ok((contents, &rest[len..]))
}

/// A DER UTCTime (0x17) or GeneralizedTime (0x18) as Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "malformed notAfter";
    let digits = match (tag, text.split_last()) {
        (0x17, Some((b'Z', d))) if d.len() == 12 => d,
        (0x18, Some((b'Z', d))) if d.len() == 14 => d,
        _ => return Err(BAD),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    let num = |range: std::ops::Range<usize>| -> i32 {
        digits[range]
            .iter()
            .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'))
    };
    let (year, at) = if tag == 0x17 {
        let yy = num(0..2);
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (num(0..4), 4)
    };
    let field = |i: usize| num(at + 2 * i..at + 2 * i + 2);
    let month = u8::try_from(field(0))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or(BAD)?;
    let as_u8 = |v: i32| u8::try_from(v).map_err(|_| BAD);
    let date = time::Date::from_calendar_date(year, month, as_u8(field(1))?).map_err(|_| BAD)?;
    let clock = time::Time::from_hms(as_u8(field(2))?, as_u8(field(3))?, as_u8(field(4))?)
        .map_err(|_| BAD)?;
    Ok(time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp())
}

/// The OpenSSL "traditional" encrypted PEM format:
///
/// ```text
/// -----BEGIN RSA PRIVATE KEY-----
/// Proc-Type: 4,ENCRYPTED
/// DEK-Info: AES-256-CBC,<hex IV>
///
/// <base64 ciphertext>
/// -----END RSA PRIVATE KEY-----
/// ```
///
/// key = EVP_BytesToKey(MD5, password, salt = first 8 bytes of the IV, 1 iteration); the
/// plaintext is the DER key of the block's type with PKCS#7 padding. There is no MAC, so a wrong
/// password is detected by the padding and then by the DER structure of the result.
mod legacy {
    use super::{PrivateKeyDer, STANDARD};
    use base64::Engine as _;
    use cbc::cipher::{Array, BlockModeDecrypt, KeyIvInit};
    use md5::{Digest as _, Md5};
    use std::ops::Range;
    use zeroize::Zeroizing;

    /// A PEM block that has RFC 1421 headers.
    pub(super) struct HeaderBlock {
        label: String,
        headers: Vec<(String, String)>,
        /// Base64 body with line breaks removed.
        body: Zeroizing<String>,
        /// Bytes of the input from the BEGIN line to the end of the END line.
        range: Range<usize>,
    }

    /// All PEM blocks with headers in `pem`.
    pub(super) fn header_blocks(pem: &[u8]) -> Vec<HeaderBlock> {
        let mut blocks = Vec::new();
        let mut lines = Lines { input: pem, pos: 0 };
        while let Some((start, line)) = lines.next_line() {
            let Some(label) = line
                .strip_prefix(b"-----BEGIN ")
                .and_then(|l| l.strip_suffix(b"-----"))
            else {
                continue;
            };
            let label = String::from_utf8_lossy(label).into_owned();
            let mut headers = Vec::new();
            let mut body = Zeroizing::new(String::new());
            let mut in_headers = true;
            let mut end = None;
            while let Some((_, line)) = lines.next_line() {
                if line.starts_with(b"-----END ") {
                    end = Some(lines.pos);
                    break;
                }
                if in_headers {
                    if line.is_empty() {
                        in_headers = false;
                        continue;
                    }
                    if let Some(colon) = line.iter().position(|&b| b == b':') {
                        let (name, value) = line.split_at(colon);
                        headers.push((
                            String::from_utf8_lossy(name).trim().to_string(),
                            String::from_utf8_lossy(&value[1..]).trim().to_string(),
                        ));
                        continue;
                    }
                    in_headers = false;
                }
                body.push_str(&String::from_utf8_lossy(line));
            }
            if let Some(end) = end
                && !headers.is_empty()
            {
                blocks.push(HeaderBlock {
                    label,
                    headers,
                    body,
                    range: start..end,
                });
            }
        }
        blocks
    }

    /// `pem` with the given blocks cut out.
    pub(super) fn without_header_blocks(pem: &[u8], blocks: &[HeaderBlock]) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(pem.len()));
        let mut pos = 0;
        for block in blocks {
            out.extend_from_slice(pem.get(pos..block.range.start).unwrap_or_default());
            pos = block.range.end;
        }
        out.extend_from_slice(pem.get(pos..).unwrap_or_default());
        out
    }

    /// Splits input into lines (LF or CRLF), trimming trailing whitespace.
    struct Lines<'a> {
        input: &'a [u8],
        pos: usize,
    }

    impl<'a> Lines<'a> {
        /// The next line and the offset where it starts.
        fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
            let rest = self.input.get(self.pos..).filter(|r| !r.is_empty())?;
            let start = self.pos;
            let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            self.pos += advance;
            Some((start, line.trim_ascii()))
        }
    }

    impl HeaderBlock {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub(super) fn is_encrypted_private_key(&self) -> bool {
            self.label.ends_with("PRIVATE KEY")
                && self
                    .header("Proc-Type")
                    .is_some_and(|v| v.replace(' ', "") == "4,ENCRYPTED")
        }

        pub(super) fn decrypt_private_key(
            &self,
            password: &[u8],
        ) -> Result<PrivateKeyDer<'static>, String> {
            let dek_info = self
                .header("DEK-Info")
                .ok_or("the key has no DEK-Info header")?;
            let (algorithm, iv_hex) = dek_info
                .split_once(',')
                .ok_or("malformed DEK-Info header")?;
            let algorithm = algorithm.trim();
            let cipher = Cipher::from_name(algorithm)
                .ok_or_else(|| format!("unsupported encryption '{algorithm}'"))?;
            let iv = decode_hex(iv_hex.trim())
                .filter(|iv| iv.len() == cipher.block_size())
                .ok_or("malformed IV in the DEK-Info header")?;
            let mut data = Zeroizing::new(
                STANDARD
                    .decode(self.body.as_bytes())
                    .map_err(|_| "the encrypted key is not valid base64".to_string())?,
            );
            if data.is_empty() || data.len() % cipher.block_size() != 0 {
                return Err("the encrypted key has an invalid length".into());
            }
            let key = evp_bytes_to_key(password, &iv[..8], cipher.key_size());
            cipher.decrypt(&key, &iv, &mut data)?;

            const WRONG: &str = "wrong password, or the key is corrupted";
            let pad = usize::from(*data.last().ok_or(WRONG)?);
            if pad == 0 || pad > cipher.block_size() || pad > data.len() {
                return Err(WRONG.into());
            }
            let plain_len = data.len() - pad;
            if data[plain_len..].iter().any(|&b| usize::from(b) != pad) {
                return Err(WRONG.into());
            }
            data.truncate(plain_len);
            if !crate::der::is_single_der_sequence(&data) {
                return Err(WRONG.into());
            }
            let der = std::mem::take(&mut *data);
            match self.label.as_str() {
                "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(der.into())),
                "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(der.into())),
                "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(der.into())),
                other => Err(format!("unsupported key type '{other}'")),
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Cipher {
        Aes128,
        Aes192,
        Aes256,
        DesEde3,
        Des,
    }

    impl Cipher {
        fn from_name(name: &str) -> Option<Cipher> {
            Some(match name.to_ascii_uppercase().as_str() {
                "AES-128-CBC" => Cipher::Aes128,
                "AES-192-CBC" => Cipher::Aes192,
                "AES-256-CBC" => Cipher::Aes256,
                "DES-EDE3-CBC" => Cipher::DesEde3,
                "DES-CBC" => Cipher::Des,
                _ => return None,
            })
        }

        fn key_size(self) -> usize {
            match self {
                Cipher::Aes128 => 16,
                Cipher::Aes192 | Cipher::DesEde3 => 24,
                Cipher::Aes256 => 32,
                Cipher::Des => 8,
            }
        }

        fn block_size(self) -> usize {
            match self {
                Cipher::Aes128 | Cipher::Aes192 | Cipher::Aes256 => 16,
                Cipher::DesEde3 | Cipher::Des => 8,
            }
        }

        fn decrypt(self, key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), String> {
            match self {
                Cipher::Aes128 => cbc_decrypt::<cbc::Decryptor<aes::Aes128>>(key, iv, data),
                Cipher::Aes192 => cbc_decrypt::<cbc::Decryptor<aes::Aes192>>(key, iv, data),
                Cipher::Aes256 => cbc_decrypt::<cbc::Decryptor<aes::Aes256>>(key, iv, data),
                Cipher::DesEde3 => cbc_decrypt::<cbc::Decryptor<des::TdesEde3>>(key, iv, data),
                Cipher::Des => cbc_decrypt::<cbc::Decryptor<des::Des>>(key, iv, data),
            }
        }
    }

    /// A PKCS#8 private key (DER) as an encrypted "PRIVATE KEY" PEM block: AES-256-CBC with a
    /// random IV, the key from `password` as OpenSSL and Go's `x509.EncryptPEMBlock` derive it.
    pub(super) fn encrypt_pkcs8(der: &[u8], password: &[u8]) -> Result<Zeroizing<String>, String> {
        use cbc::cipher::BlockModeEncrypt;
        let mut iv = [0u8; 16];
        super::fill_random(&mut iv)?;
        let key = evp_bytes_to_key(password, &iv[..8], 32);
        let pad = 16 - der.len() % 16;
        let mut data = Zeroizing::new(Vec::with_capacity(der.len() + pad));
        data.extend_from_slice(der);
        data.extend(std::iter::repeat_n(u8::try_from(pad).unwrap_or(16), pad));
        let mut encryptor = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(|_| "internal error: wrong key or IV size".to_string())?;
        let (blocks, _) = Array::slice_as_chunks_mut(&mut data);
        encryptor.encrypt_blocks(blocks);
        let iv_hex: String = iv.iter().map(|b| format!("{b:02X}")).collect();
        let b64 = Zeroizing::new(STANDARD.encode(&data[..]));
        let mut pem = Zeroizing::new(String::with_capacity(b64.len() + 160));
        pem.push_str("-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,");
        pem.push_str(&iv_hex);
        pem.push_str("\n\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    /// CBC-decrypts whole blocks in place (no padding removal).
    fn cbc_decrypt<D: KeyIvInit + BlockModeDecrypt>(
        key: &[u8],
        iv: &[u8],
        data: &mut [u8],
    ) -> Result<(), String> {
        let mut decryptor = D::new_from_slices(key, iv)
            .map_err(|_| "internal error: wrong key or IV size".to_string())?;
        let (blocks, rest) = Array::slice_as_chunks_mut(data);
        if !rest.is_empty() {
            return Err("the encrypted key has an invalid length".into());
        }
        decryptor.decrypt_blocks(blocks);
        Ok(())
    }

    /// OpenSSL's `EVP_BytesToKey` with MD5 and one iteration:
    /// D_1 = MD5(password ‖ salt), D_i = MD5(D_{i-1} ‖ password ‖ salt), key = D_1 ‖ D_2 ‖ …
    fn evp_bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let mut key = Zeroizing::new(Vec::with_capacity(len + 16));
        let mut previous = Zeroizing::new([0u8; 16]);
        let mut first = true;
        while key.len() < len {
            let mut md5 = Md5::new();
            if !first {
                md5.update(previous.as_ref());
            }
            md5.update(password);
            md5.update(salt);
            previous.copy_from_slice(md5.finalize().as_slice());
            key.extend_from_slice(previous.as_ref());
            first = false;
        }
        key.truncate(len);
        key
    }

    fn decode_hex(text: &str) -> Option<Vec<u8>> {
        let digit = |b: u8| {
            char::from(b)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        bytes
            .chunks_exact(2)
            .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::testing::{TempDir, cert_der, openssl_identity, ossl};

    fn write(dir: &TempDir, name: &str, contents: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn key_der(key: &PrivateKeyDer<'_>) -> Vec<u8> {
        key.secret_der().to_vec()
    }

    /// An RSA and an EC key with self-signed certificates, plain and encrypted in every way
    /// openssl 3 still writes the traditional format.
    struct Keys {
        dir: TempDir,
    }

    impl Keys {
        fn new() -> Keys {
            let dir = TempDir::new("certs");
            let d = dir.path();
            ossl(
                d,
                "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pkcs8",
            );
            ossl(d, "rsa -in rsa.pkcs8 -traditional -out rsa.pkcs1");
            ossl(d, "ecparam -name prime256v1 -genkey -noout -out ec.sec1");
            ossl(d, "pkey -in ec.sec1 -out ec.pkcs8");
            ossl(d, "genpkey -algorithm ed25519 -out ed.pkcs8");
            for (key, cert) in [("rsa.pkcs8", "rsa"), ("ec.sec1", "ec"), ("ed.pkcs8", "ed")] {
                ossl(
                    d,
                    &format!("req -new -x509 -key {key} -subj /CN=k -days 1 -out {cert}.pem"),
                );
            }
            std::fs::write(d.join("password"), "correct horse").unwrap();
            for cipher in ["aes128", "aes192", "aes256", "des3"] {
                let pass = "-passout file:password";
                ossl(
                    d,
                    &format!(
                        "rsa -in rsa.pkcs8 -traditional -{cipher} {pass} -out rsa-{cipher}.pem"
                    ),
                );
                ossl(
                    d,
                    &format!("ec -in ec.sec1 -{cipher} {pass} -out ec-{cipher}.pem"),
                );
            }
            ossl(
                d,
                "pkcs8 -topk8 -in ec.sec1 -v2 aes-256-cbc -passout pass:pw -out ec.enc-pkcs8",
            );
            Keys { dir }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.join(name)
        }

        fn cert(&self, name: &str) -> CertificateDer<'static> {
            CertificateDer::from(cert_der(self.dir.path(), name))
        }
    }

    #[test]
    fn plain_private_keys_of_every_format() {
        let keys = Keys::new();
        for (file, cert, kind) in [
            ("rsa.pkcs8", "rsa.pem", "pkcs8"),
            ("rsa.pkcs1", "rsa.pem", "pkcs1"),
            ("ec.sec1", "ec.pem", "sec1"),
            ("ec.pkcs8", "ec.pem", "pkcs8"),
            ("ed.pkcs8", "ed.pem", "pkcs8"),
        ] {
            let key = load_private_key(&keys.path(file), None).unwrap();
            let got = match &*key {
                PrivateKeyDer::Pkcs1(_) => "pkcs1",
                PrivateKeyDer::Sec1(_) => "sec1",
                PrivateKeyDer::Pkcs8(_) => "pkcs8",
                _ => "other",
            };
            assert_eq!(got, kind, "{file}");
            check_key_pair(&keys.cert(cert), &key).unwrap_or_else(|e| panic!("{file}: {e}"));
            // A password for a plain key is ignored.
            load_private_key(&keys.path(file), Some("unused")).unwrap();
        }
        let rsa = load_private_key(&keys.path("rsa.pkcs8"), None).unwrap();
        assert!(check_key_pair(&keys.cert("ec.pem"), &rsa).is_err());
    }

    #[test]
    fn legacy_encrypted_private_keys() {
        let keys = Keys::new();
        let rsa_plain = key_der(&load_private_key(&keys.path("rsa.pkcs1"), None).unwrap());
        let ec_plain = key_der(&load_private_key(&keys.path("ec.sec1"), None).unwrap());
        for cipher in ["aes128", "aes192", "aes256", "des3"] {
            for (prefix, plain) in [("rsa", &rsa_plain), ("ec", &ec_plain)] {
                let path = keys.path(&format!("{prefix}-{cipher}.pem"));
                assert!(is_encrypted_private_key(&path).unwrap());
                let key = load_private_key(&path, Some("correct horse"))
                    .unwrap_or_else(|e| panic!("{prefix}{cipher}: {e}"));
                assert_eq!(&key_der(&key), plain, "{prefix}{cipher}");
                assert_eq!(
                    matches!(&*key, PrivateKeyDer::Pkcs1(_)),
                    prefix == "rsa",
                    "{prefix}{cipher}"
                );

                for password in [None, Some("")] {
                    let err = load_private_key(&path, password).unwrap_err().to_string();
                    assert!(
                        err.contains("encrypted") && err.contains("no password"),
                        "{err}"
                    );
                    assert!(err.contains(path.to_str().unwrap()), "{err}");
                }
                for wrong in ["correct hors", "Correct horse", "x"] {
                    let err = load_private_key(&path, Some(wrong))
                        .unwrap_err()
                        .to_string();
                    assert!(err.contains("wrong password"), "{prefix}{cipher}: {err}");
                }
            }
        }
        assert!(!is_encrypted_private_key(&keys.path("rsa.pkcs1")).unwrap());
    }

    #[test]
    fn legacy_single_des_if_openssl_still_writes_it() {
        let keys = Keys::new();
        let d = keys.dir.path();
        let status = std::process::Command::new("openssl")
            .args([
                "rsa",
                "-in",
                "rsa.pkcs8",
                "-traditional",
                "-des",
                "-passout",
                "pass:secret",
            ])
            .args([
                "-provider",
                "legacy",
                "-provider",
                "default",
                "-out",
                "rsa-des.pem",
            ])
            .current_dir(d)
            .output()
            .unwrap();
        if !status.status.success() {
            eprintln!("openssl has no legacy provider: single DES not tested");
            return;
        }
        let plain = key_der(&load_private_key(&keys.path("rsa.pkcs1"), None).unwrap());
        let key = load_private_key(&keys.path("rsa-des.pem"), Some("secret")).unwrap();
        assert_eq!(key_der(&key), plain);
    }

    #[test]
    fn encrypted_key_next_to_its_certificate() {
        let keys = Keys::new();
        let cert_pem = std::fs::read(keys.path("rsa.pem")).unwrap();
        let key_pem = std::fs::read(keys.path("rsa-aes256.pem")).unwrap();
        let both = write(
            &keys.dir,
            "both.pem",
            [key_pem.as_slice(), &cert_pem].concat(),
        );
        let certs = load_certificates(&both).unwrap();
        assert_eq!(certs, vec![keys.cert("rsa.pem")]);
        let key = load_private_key(&both, Some("correct horse")).unwrap();
        check_key_pair(&certs[0], &key).unwrap();
    }

    #[test]
    fn errors_keep_their_source() {
        use std::error::Error as _;
        let keys = Keys::new();
        let err = load_certificates(&keys.path("nope.pem")).unwrap_err();
        let io = err
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(
            err.to_string().starts_with("failed to read certificate '"),
            "{err}"
        );
        assert!(String::from(err).contains("nope.pem"));
        let err = load_ca_certificates(&keys.dir.join("missing")).unwrap_err();
        assert!(err.source().is_some(), "{err}");
        // No source for a malformed key: the PEM parser's error may quote it.
        let bad = write(
            &keys.dir,
            "bad-source.key",
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0!!\n-----END PRIVATE KEY-----\n",
        );
        let err = load_private_key(&bad, None).unwrap_err();
        assert!(err.source().is_none(), "{err:?}");
    }

    #[test]
    fn pkcs8_encrypted_and_bad_keys_are_refused_clearly() {
        let keys = Keys::new();
        let err = load_private_key(&keys.path("ec.enc-pkcs8"), Some("pw"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("encrypted PKCS#8"), "{err}");

        let err = load_private_key(&keys.path("rsa.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no private key found in"), "{err}");
        let err = load_private_key(&keys.path("missing.pem"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");

        // A malformed key: the error must not quote it.
        let secret_line = "c2VjcmV0IGtleSBtYXRlcmlhbCBzZWNyZXQga2V5IG1hdGVyaWFs!!";
        let bad = write(
            &keys.dir,
            "bad.key",
            format!("-----BEGIN PRIVATE KEY-----\n{secret_line}\n-----END PRIVATE KEY-----\n"),
        );
        let err = load_private_key(&bad, None).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");

        // Broken DEK-Info headers fail cleanly.
        let original = std::fs::read_to_string(keys.path("ec-aes256.pem")).unwrap();
        let dek = original
            .lines()
            .find(|l| l.starts_with("DEK-Info"))
            .unwrap();
        for replacement in [
            "DEK-Info: AES-256-CBC,00",
            "DEK-Info: AES-256-CBC",
            "DEK-Info: AES-256-GCM,00000000000000000000000000000000",
            "DEK-Info: AES-256-CBC,+0000000000000000000000000000000",
            "DEK-Info: DES-EDE3-CBC,0000000000000000",
            "X-Nothing: here",
        ] {
            let path = write(&keys.dir, "broken.pem", original.replace(dek, replacement));
            assert!(
                load_private_key(&path, Some("correct horse")).is_err(),
                "{replacement}"
            );
        }
    }

    #[test]
    fn certificates_and_ca_directories() {
        let keys = Keys::new();
        let dir = &keys.dir;
        let rsa = std::fs::read(keys.path("rsa.pem")).unwrap();
        let ec = std::fs::read(keys.path("ec.pem")).unwrap();
        let chain = write(dir, "chain.pem", [rsa.as_slice(), b"\n", &ec].concat());
        assert_eq!(
            load_certificates(&chain).unwrap(),
            vec![keys.cert("rsa.pem"), keys.cert("ec.pem")]
        );
        let err = load_certificates(&keys.path("rsa.pkcs8"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no certificate found") && err.contains("rsa.pkcs8"),
            "{err}"
        );
        let err = load_certificates(&keys.path("nope.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let garbage = write(
            dir,
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        );
        let err = load_certificates(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem"), "{err}");

        // A directory: certificates from every file, other files and subdirectories skipped.
        let cas = TempDir::new("cas");
        write(&cas, "a.pem", &rsa);
        write(&cas, "b.crt", [ec.as_slice(), &rsa].concat());
        write(&cas, "README", "not a certificate\n");
        std::fs::create_dir(cas.join("sub")).unwrap();
        write(&cas, "sub/c.pem", &ec);
        let certs = load_ca_certificates(cas.path()).unwrap();
        assert_eq!(certs.len(), 3);
        assert_eq!(load_ca_certificates(&chain).unwrap().len(), 2);

        let empty = TempDir::new("cas-empty");
        let err = load_ca_certificates(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no CA certificates"), "{err}");
        write(&empty, "README", "nothing here\n");
        assert!(load_ca_certificates(empty.path()).is_err());
        assert!(load_ca_certificates(&empty.join("missing")).is_err());
    }

    fn openssl_text(dir: &TempDir, pem: &str) -> String {
        String::from_utf8(ossl(dir.path(), &format!("x509 -in {pem} -noout -text"))).unwrap()
    }

    #[test]
    fn self_signed_ed25519_certificate() {
        let dir = TempDir::new("selfsigned");
        let req = CertificateRequest {
            common_name: "kes.example.net".into(),
            dns_names: vec!["localhost".into(), "kes.example.net".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            validity: Duration::from_secs(720 * 3600),
            server_auth: true,
            client_auth: true,
        };
        let (cert_pem, key_pem) = self_signed_ed25519(&req).unwrap();
        let cert_path = write(&dir, "c.pem", &cert_pem);
        let key_path = write(&dir, "k.pem", &key_pem);

        let text = openssl_text(&dir, "c.pem");
        for want in [
            "Version: 3 (0x2)",
            "ED25519",
            "Subject: CN = kes.example.net",
            "Issuer: CN = kes.example.net",
            "DNS:localhost, DNS:kes.example.net, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "Digital Signature",
            "CA:FALSE",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let days = ossl(dir.path(), "x509 -in c.pem -noout -checkend 2590000");
        assert!(String::from_utf8_lossy(&days).contains("will not expire"));
        assert!(openssl_check_fails(&dir, "c.pem", "2593000"));

        let certs = load_certificates(&cert_path).unwrap();
        let key = load_private_key(&key_path, None).unwrap();
        check_key_pair(&certs[0], &key).unwrap();
        assert_eq!(key.secret_der().len(), 48, "PKCS#8 v1");
        assert_eq!(
            Identity::of_certificate(&certs[0]).unwrap().as_str(),
            openssl_identity(dir.path(), "c.pem")
        );
        // openssl reads the key, and the key matches the certificate.
        let from_key = ossl(dir.path(), "pkey -in k.pem -pubout");
        let from_cert = ossl(dir.path(), "x509 -in c.pem -noout -pubkey");
        assert_eq!(from_key, from_cert);

        // No CN, no SANs, client only.
        let (cert_pem, _) = self_signed_ed25519(&CertificateRequest {
            validity: Duration::from_secs(60),
            client_auth: true,
            ..Default::default()
        })
        .unwrap();
        write(&dir, "bare.pem", &cert_pem);
        let text = openssl_text(&dir, "bare.pem");
        assert!(!text.contains("CN ="), "{text}");
        assert!(!text.contains("Subject Alternative Name"), "{text}");
        assert!(!text.contains("Server Authentication"), "{text}");
    }

    fn openssl_check_fails(dir: &TempDir, pem: &str, seconds: &str) -> bool {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-in", pem, "-noout", "-checkend", seconds])
            .current_dir(dir.path())
            .output()
            .unwrap();
        !out.status.success()
    }

    #[test]
    fn self_signed_ecdsa_certificate() {
        let dir = TempDir::new("dev");
        let (cert, key) = self_signed_ecdsa(&CertificateRequest {
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            dns_names: vec!["localhost".into()],
            validity: Duration::from_secs(90 * 24 * 3600),
            server_auth: true,
            ..Default::default()
        })
        .unwrap();
        check_key_pair(&cert, &key).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        write(&dir, "c.der", &cert);
        let text =
            String::from_utf8(ossl(dir.path(), "x509 -inform DER -in c.der -noout -text")).unwrap();
        for want in [
            "ecdsa-with-SHA256",
            "prime256v1",
            "Subject: CN = localhost",
            "DNS:localhost, IP Address:127.0.0.1",
            "TLS Web Server Authentication",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // rustls accepts the pair as a server identity.
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        rustls::sign::CertifiedKey::new(vec![cert], signer)
            .keys_match()
            .unwrap();
    }

    #[test]
    fn invalid_requests() {
        let zero = CertificateRequest::default();
        assert!(self_signed_ed25519(&zero).is_err());
        assert!(self_signed_ecdsa(&zero).is_err());
        let forever = CertificateRequest {
            validity: Duration::from_secs(u64::MAX),
            ..Default::default()
        };
        assert!(self_signed_ed25519(&forever).is_err());
        let ten_thousand_years = CertificateRequest {
            validity: Duration::from_secs(10_000 * 366 * 24 * 3600),
            ..Default::default()
        };
        assert!(self_signed_ed25519(&ten_thousand_years).is_err());
        let non_ascii = CertificateRequest {
            validity: Duration::from_secs(60),
            dns_names: vec!["bücher.example".into()],
            ..Default::default()
        };
        assert!(self_signed_ed25519(&non_ascii).is_err());
    }

    /// openssl's notAfter of a PEM certificate, in the form of [`format_unix_time`].
    fn openssl_not_after(dir: &TempDir, pem: &str) -> String {
        let out = ossl(
            dir.path(),
            &format!("x509 -in {pem} -noout -enddate -dateopt iso_8601"),
        );
        let text = String::from_utf8(out).unwrap();
        let iso = text.trim().strip_prefix("notAfter=").unwrap();
        format!("{} UTC", iso.strip_suffix('Z').unwrap())
    }

    #[test]
    fn not_after_matches_openssl() {
        let dir = TempDir::new("notafter");
        let d = dir.path();
        ossl(d, "ecparam -name prime256v1 -genkey -noout -out k.pem");
        // UTCTime (before 2050), GeneralizedTime (from 2050 on), an X.509 v1 certificate
        // (no version field), and a chain file of two.
        ossl(
            d,
            "req -new -x509 -key k.pem -subj /CN=a -days 10 -out utc.pem",
        );
        ossl(
            d,
            "req -new -x509 -key k.pem -subj /CN=b -days 40000 -out gen.pem",
        );
        ossl(d, "req -new -key k.pem -subj /CN=c -out c.csr");
        ossl(d, "x509 -req -in c.csr -signkey k.pem -days 3 -out v1.pem");
        for pem in ["utc.pem", "gen.pem", "v1.pem"] {
            let certs = load_certificates(&dir.join(pem)).unwrap();
            let t = not_after(&certs[0]).unwrap();
            let expected = openssl_not_after(&dir, pem);
            println!("{pem}: {t} = {} (openssl: {expected})", format_unix_time(t));
            assert_eq!(format_unix_time(t), expected, "{pem}");
        }
        let text = openssl_text(&dir, "v1.pem");
        assert!(text.contains("Version: 1 (0x0)"), "{text}");
        // The earliest of a chain, with its position.
        let mut chain = load_certificates(&dir.join("gen.pem")).unwrap();
        chain.extend(load_certificates(&dir.join("v1.pem")).unwrap());
        chain.extend(load_certificates(&dir.join("utc.pem")).unwrap());
        let v1 = not_after(&chain[1]).unwrap();
        assert_eq!(earliest_not_after(&chain), Some((1, v1)));
        assert_eq!(earliest_not_after(&[]), None);
        // Our own certificates: `validity` from now.
        let (cert, _) = self_signed_ecdsa(&CertificateRequest {
            validity: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap();
        let left = not_after(&cert).unwrap() - unix_now();
        assert!((3595..=3600).contains(&left), "{left}");
    }

    #[test]
    fn not_after_refuses_what_is_not_a_certificate() {
        let dir = TempDir::new("notafter-bad");
        ossl(
            dir.path(),
            "ecparam -name prime256v1 -genkey -noout -out k.pem",
        );
        ossl(
            dir.path(),
            "req -new -x509 -key k.pem -subj /CN=a -days 10 -out c.pem",
        );
        let der = cert_der(dir.path(), "c.pem");
        assert!(not_after(&der).is_ok());
        assert!(not_after(&[]).is_err());
        assert!(not_after(&der[..der.len() - 1]).is_err());
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(not_after(&trailing).is_err());
        // Times that are not DER: local time, fractional seconds, a month 13.
        assert!(der_time(0x17, b"260301120000Z").is_ok());
        assert_eq!(der_time(0x17, b"500101000000Z"), Ok(-631_152_000));
        assert_eq!(der_time(0x18, b"20491231235959Z"), Ok(2_524_607_999));
        for bad in [
            &b"260301120000"[..],
            b"2603011200Z",
            b"260301120000+0100",
            b"261301120000Z",
            b"260230120000Z",
            b"260301250000Z",
            b"26030112000aZ",
        ] {
            assert!(
                der_time(0x17, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(der_time(0x18, b"20260301120000.5Z").is_err());
        assert!(der_time(0x04, b"260301120000Z").is_err());
        // Random damage never panics.
        use crate::testing::XorShift;
        let mut rng = XorShift(7);
        for _ in 0..20_000 {
            let mut bytes = der.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes.insert(at, rng.next() as u8),
                    _ => bytes.truncate(at.max(1)),
                }
            }
            let _ = not_after(&bytes);
        }
    }

    #[test]
    fn expiry_messages() {
        let day = 86_400;
        let now = 1_772_366_400; // 2026-03-01 12:00:00 UTC
        assert_eq!(format_unix_time(now), "2026-03-01 12:00:00 UTC");
        let what = "server certificate 'c.pem' (tls.cert)";
        assert_eq!(expiry_message(what, now + 31 * day, now, "renew it"), None);
        assert_eq!(
            expiry_message(what, now + 30 * day, now, "renew it"),
            Some((
                log::Level::Warn,
                "server certificate 'c.pem' (tls.cert) expires in 30 days, on 2026-03-31 12:00:00 UTC: renew it".into()
            ))
        );
        let (level, text) = expiry_message(what, now + 5 * 3600, now, "renew it").unwrap();
        assert_eq!(level, log::Level::Warn);
        assert!(text.contains("expires in 5 hours"), "{text}");
        let (level, text) = expiry_message(what, now + day + 10, now, "renew it").unwrap();
        assert!(text.contains("expires in 1 day,"), "{text}");
        assert_eq!(level, log::Level::Warn);
        let (level, text) = expiry_message(what, now - 2 * day - 5, now, "renew it").unwrap();
        assert_eq!(level, log::Level::Error);
        assert_eq!(
            text,
            "server certificate 'c.pem' (tls.cert) has EXPIRED: 2 days ago, on 2026-02-27 11:59:55 UTC: renew it"
        );
        let (level, _) = expiry_message(what, now, now, "x").unwrap();
        assert_eq!(level, log::Level::Error);
        assert_eq!(describe_seconds(1), "1 second");
        assert_eq!(describe_seconds(90), "90 seconds");
        assert_eq!(describe_seconds(86_399), "23 hours");
        assert_eq!(describe_seconds(86_400 * 2 - 1), "1 day");
        assert_eq!(describe_seconds(86_400 * 2), "2 days");
    }

    #[test]
    fn legacy_parser_never_panics() {
        use crate::testing::XorShift;
        let keys = Keys::new();
        let original = std::fs::read(keys.path("rsa-des3.pem")).unwrap();
        let mut rng = XorShift(42);
        for _ in 0..3_000 {
            let mut pem = original.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(pem.len());
                match rng.below(3) {
                    0 => pem[at] = rng.next() as u8,
                    1 => pem.insert(at, b"\n:-, "[rng.below(5)]),
                    _ => {
                        pem.truncate(at);
                    }
                }
                if pem.is_empty() {
                    break;
                }
            }
            let path = write(&keys.dir, "fuzz.pem", &pem);
            let _ = load_private_key(&path, Some("correct horse"));
            let _ = load_certificates(&path);
        }
    }
}
