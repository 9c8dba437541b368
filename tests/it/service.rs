//! `kes server` as a systemd service: the notification protocol (sd_notify(3)) seen from a Unix
//! datagram socket that stands in for systemd (`NOTIFY_SOCKET`), around start-up, SIGHUP and
//! SIGTERM; and the certificate expiry warnings and metric.
//!
//! The test machines have no systemd as PID 1, so a real `systemd-run` cannot run the unit here;
//! packaging/test.sh does where it can (see packaging/README.md). What systemd would read from
//! the socket is exactly what these tests read.

use crate::support;

use crate::support::client::Client;
use crate::support::{Kes, TempDir, pki};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::CertificateDer;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

const DAY: i64 = 86_400;

/// A CA whose certificates have the validity a test asks for.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "service test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { params, key, der }
    }

    /// Writes `server.crt` and `server.key` into `dir`: a certificate for 127.0.0.1 that
    /// expires `seconds` from now (or expired, if negative). Returns its notAfter.
    fn write_server(&self, dir: &Path, seconds: i64) -> i64 {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap();
        params.not_before = now - time::Duration::days(60);
        params.not_after = now + time::Duration::seconds(seconds);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        // Key first, then the certificate replaces the old one in one rename (the TLS file
        // watcher must never see a mismatched pair for long).
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("server.crt.new"), cert.pem()).unwrap();
        std::fs::rename(dir.join("server.crt.new"), dir.join("server.crt")).unwrap();
        params.not_after.unix_timestamp()
    }
}

/// A Unix datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifySocket { socket }
    }

    /// The next notification (one datagram).
    fn next(&self, kes: &Kes) -> String {
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8(buf[..n].to_vec()).unwrap();
                println!("notify: {}", text.trim_end().replace('\n', " | "));
                text
            }
            Err(e) => panic!("no notification ({e}); kes printed:\n{}", kes.output()),
        }
    }
}

fn config(dir: &Path, admin: &str, policies: &str) -> String {
    let d = dir.display();
    format!(
        "admin:\n  identity: {admin}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n\
         {policies}keystore:\n  fs:\n    path: {d}/keys\n"
    )
}

/// The value of one unlabelled sample of `/v1/metrics`.
fn metric(client: &Client, name: &str) -> Option<f64> {
    let reply = client.get("/v1/metrics");
    assert_eq!(reply.status, 200);
    reply.text().lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}

/// What systemd sees of a `Type=notify` service: a status while the keystore is opened, READY=1
/// once the server answers, RELOADING=1 (with the monotonic time) and READY=1 around each
/// SIGHUP, after the reload was applied or refused, and STOPPING=1 at SIGTERM.
#[test]
fn notify_ready_reloading_and_stopping_on_a_socket() {
    let dir = TempDir::new("notify");
    let ca = Ca::new();
    ca.write_server(dir.path(), 365 * DAY);
    let admin = pki::api_key_client(support::ADMIN_API_KEY);
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config(dir.path(), &admin.identity, "")).unwrap();
    let socket_path = dir.join("notify.sock");
    let notify = NotifySocket::bind(&socket_path);

    let mut kes = Kes::start_with(
        &[
            "server",
            "--config",
            config_path.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )
    .unwrap_or_else(|out| panic!("kes did not start:\n{out}"));
    let keys = format!("filesystem {}", dir.join("keys").display());
    assert_eq!(
        notify.next(&kes),
        format!("STATUS=starting: opening the keystore ({keys})\n")
    );
    assert_eq!(
        notify.next(&kes),
        format!("READY=1\nSTATUS=serving on {}; keystore {keys}\n", kes.addr)
    );
    let client = Client::new(kes.addr, &ca.der, Some(&admin));
    assert_eq!(client.get("/version").status, 200);
    assert_eq!(client.get("/v1/policy/describe/svc").status, 404);

    // A reload that applies: READY=1 comes once the new policy is in force.
    std::fs::write(
        &config_path,
        config(
            dir.path(),
            &admin.identity,
            "policy:\n  svc:\n    allow:\n    - /v1/key/list/*\n",
        ),
    )
    .unwrap();
    let before = kes::sys::monotonic_usec();
    kes.signal("HUP");
    let reloading = notify.next(&kes);
    let after = kes::sys::monotonic_usec();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.len(), 3, "{reloading}");
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} is not between {before} and {after}: not CLOCK_MONOTONIC now"
    );
    assert_eq!(
        lines[2],
        format!("STATUS=reloading {}", config_path.display())
    );
    let ready = notify.next(&kes);
    assert!(ready.starts_with("READY=1\nSTATUS=serving on "), "{ready}");
    assert!(ready.contains("; reloaded at "), "{ready}");
    assert_eq!(
        client.get("/v1/policy/describe/svc").status,
        200,
        "READY=1 came before the reload was applied"
    );

    // A reload that is refused: READY=1 all the same (the server serves), and the status line
    // says that the reload failed.
    std::fs::write(&config_path, "admin: [not a mapping\n").unwrap();
    kes.signal("HUP");
    assert!(
        notify
            .next(&kes)
            .starts_with("RELOADING=1\nMONOTONIC_USEC=")
    );
    let ready = notify.next(&kes);
    assert!(ready.starts_with("READY=1\nSTATUS=serving on "), "{ready}");
    assert!(
        ready.contains("FAILED, the previous configuration stays in force"),
        "{ready}"
    );
    assert_eq!(client.get("/v1/policy/describe/svc").status, 200);

    kes.signal("TERM");
    assert_eq!(
        notify.next(&kes),
        "STOPPING=1\nSTATUS=stopping: waiting up to 5s for requests in flight\n"
    );
    assert_eq!(kes.wait_exit(Duration::from_secs(20)), Some(0));
}

/// `NOTIFY_SOCKET` may name an abstract socket (`@name`), as systemd's does in containers. A
/// `--dev` server ignores SIGHUP (no file to reload): it sends no RELOADING=1.
#[test]
fn notify_to_an_abstract_socket_and_dev_servers_ignore_sighup() {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("kes-service-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let notify = NotifySocket { socket };
    let mut kes = Kes::start_with(
        &["server", "--dev", "--addr", "127.0.0.1:0"],
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    )
    .unwrap_or_else(|out| panic!("kes did not start:\n{out}"));
    assert!(notify.next(&kes).starts_with("STATUS=starting"));
    let ready = notify.next(&kes);
    assert!(
        ready.starts_with(&format!("READY=1\nSTATUS=serving on {}", kes.addr)),
        "{ready}"
    );
    kes.signal("HUP");
    assert!(kes.wait_for_output("SIGHUP ignored", Duration::from_secs(10)));
    kes.signal("TERM");
    assert!(
        notify.next(&kes).starts_with("STOPPING=1\n"),
        "the next notification after an ignored SIGHUP"
    );
    assert_eq!(kes.wait_exit(Duration::from_secs(20)), Some(0));
}

/// A server certificate that expires within 30 days is a WARN at start-up, an expired Vault
/// client certificate an ERROR; `kes_server_certificate_expiry_seconds` counts down to the
/// server certificate's notAfter and follows a renewed certificate (SIGHUP, or the watcher).
/// The Vault of this test never answers: READY=1 comes all the same (the server runs, not
/// ready), as docs/operations.md says.
#[test]
fn expiring_certificates_are_logged_and_measured() {
    let dir = TempDir::new("expiry");
    let ca = Ca::new();
    let not_after = ca.write_server(dir.path(), 10 * DAY);
    let admin = pki::api_key_client(support::ADMIN_API_KEY);
    // An expired Vault client certificate, for a Vault that does not answer (the server starts
    // anyway, not ready, as without --fail-fast).
    let vault_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(3);
    let vault_cert = params.self_signed(&vault_key).unwrap();
    std::fs::write(dir.join("vault.crt"), vault_cert.pem()).unwrap();
    std::fs::write(dir.join("vault.key"), vault_key.serialize_pem()).unwrap();
    let d = dir.path().display();
    let config = format!(
        "admin:\n  identity: {}\ntls:\n  key: {d}/server.key\n  cert: {d}/server.crt\n\
         keystore:\n  vault:\n    endpoint: http://127.0.0.1:1\n    engine: kv\n    version: v2\n\
         \x20   approle:\n      id: role\n      secret: secret\n\
         \x20   tls:\n      key: {d}/vault.key\n      cert: {d}/vault.crt\n",
        admin.identity
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let socket_path = dir.join("notify.sock");
    let notify = NotifySocket::bind(&socket_path);
    let kes = Kes::start_with(
        &[
            "server",
            "--config",
            dir.join("config.yaml").to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )
    .unwrap_or_else(|out| panic!("kes did not start:\n{out}"));
    assert_eq!(
        notify.next(&kes),
        "STATUS=starting: opening the keystore (vault http://127.0.0.1:1)\n"
    );
    let ready = notify.next(&kes);
    assert!(
        ready.starts_with(&format!(
            "READY=1\nSTATUS=serving on {}; keystore vault http://127.0.0.1:1",
            kes.addr
        )),
        "{ready}"
    );
    let out = kes.output();
    let warn = out
        .lines()
        .find(|l| l.contains("server certificate") && l.contains("expires in"))
        .unwrap_or_else(|| panic!("no expiry warning:\n{out}"));
    println!("{warn}");
    assert!(warn.contains("level=WARN"), "{warn}");
    assert!(
        warn.contains("(tls.cert) expires in 9 days")
            || warn.contains("(tls.cert) expires in 10 days"),
        "{warn}"
    );
    let error = out
        .lines()
        .find(|l| l.contains("Vault client certificate"))
        .unwrap_or_else(|| panic!("no Vault certificate error:\n{out}"));
    println!("{error}");
    assert!(error.contains("level=ERROR"), "{error}");
    assert!(error.contains("has EXPIRED: 3 days ago"), "{error}");
    assert!(error.contains("restart kes"), "{error}");

    let client = Client::new(kes.addr, &ca.der, Some(&admin));
    let left = metric(&client, "kes_server_certificate_expiry_seconds").expect("the gauge");
    let expected = (not_after - now.unix_timestamp()) as f64;
    println!(
        "kes_server_certificate_expiry_seconds {left} (notAfter - start of the test: {expected})"
    );
    assert!(
        left <= expected && left > expected - 600.0,
        "{left} vs {expected}"
    );

    // Renewed for a year: no warning when it is loaded, and the gauge follows.
    let renewed = ca.write_server(dir.path(), 365 * DAY);
    kes.signal("HUP");
    assert!(kes.wait_for_output("reloaded ", Duration::from_secs(10)));
    let client = Client::new(kes.addr, &ca.der, Some(&admin));
    let left = metric(&client, "kes_server_certificate_expiry_seconds").unwrap();
    let expected = (renewed - time::OffsetDateTime::now_utc().unix_timestamp()) as f64;
    assert!(
        left <= expected + 1.0 && left > expected - 600.0,
        "{left} vs {expected}"
    );
    let warnings = kes
        .output()
        .lines()
        .filter(|l| l.contains("server certificate") && l.contains("expires in"))
        .count();
    assert_eq!(warnings, 1, "only the start-up warning:\n{}", kes.output());

    // Replaced on disk by one that expires in 2 days: the watcher loads it and warns at once.
    ca.write_server(dir.path(), 2 * DAY);
    assert!(
        kes.wait_for_output("(tls.cert) expires in 1 day", Duration::from_secs(15))
            || kes.wait_for_output("(tls.cert) expires in 2 days", Duration::from_secs(1)),
        "{}",
        kes.output()
    );
    let left = metric(&client, "kes_server_certificate_expiry_seconds").unwrap();
    assert!(
        left <= 2.0 * DAY as f64 && left > 2.0 * DAY as f64 - 600.0,
        "{left}"
    );
}
