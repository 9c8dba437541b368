//! A TLS client for tests that writes raw HTTP/1.1 and parses replies, so that tests control every
//! byte (chunked bodies, pipelining, malformed requests, slow writes).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pki::Cert;

/// A reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.text()))
    }

    /// The `message` of a JSON error body.
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Asserts a (status, message) error pair.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(
            (self.status, self.message().as_str()),
            (status, message),
            "body: {}",
            self.text()
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        // Byte-exact form of the Go server.
        let mut expected = b"{\"message\":".to_vec();
        expected.extend_from_slice(serde_json::to_string(message).unwrap().as_bytes());
        expected.extend_from_slice(b"\n}");
        if !message.contains(['<', '>', '&']) {
            assert_eq!(self.body, expected);
        }
    }
}

/// TLS settings of a client.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client that trusts `server_ca` and presents `cert` (or no certificate).
    pub fn new(
        addr: SocketAddr,
        server_ca: &CertificateDer<'static>,
        cert: Option<&Cert>,
    ) -> Client {
        Self::with_chain(
            addr,
            server_ca,
            cert.map(|c| (vec![c.der.clone()], c.key())),
        )
    }

    pub fn with_chain(
        addr: SocketAddr,
        server_ca: &CertificateDer<'static>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Client {
        Self::with_versions(
            addr,
            server_ca,
            identity,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    pub fn with_versions(
        addr: SocketAddr,
        server_ca: &CertificateDer<'static>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server_ca.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        Client {
            addr,
            config: Arc::new(config),
        }
    }

    /// A client with a TLS configuration of the test's own (e.g. one that resumes sessions).
    pub fn with_config(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        Client { addr, config }
    }

    /// The same client offering these ALPN protocols (e.g. `h2`).
    pub fn with_alpn(&self, protocols: &[&[u8]]) -> Client {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Client {
            addr: self.addr,
            config: Arc::new(config),
        }
    }

    /// Opens a TLS connection (the handshake completes on first use).
    pub fn connect(&self) -> Conn {
        self.try_connect().expect("connect")
    }

    /// Like [`Client::connect`], but a failed TCP connect is an error instead of a panic.
    pub fn try_connect(&self) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        self.connect_over(tcp)
    }

    /// A TLS connection over a TCP connection the caller opened (from a chosen local address,
    /// say); the handshake completes on first use.
    pub fn connect_over(&self, tcp: TcpStream) -> std::io::Result<Conn> {
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_nodelay(true)?;
        let conn = rustls::ClientConnection::new(
            self.config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .map_err(std::io::Error::other)?;
        Ok(Conn {
            stream: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        })
    }

    /// One request on a new connection.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.connect()
            .request(method, path, body)
            .expect("request failed")
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn put(&self, path: &str, body: &str) -> Reply {
        self.request("PUT", path, Some(body))
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    /// Rotates key `name` (`/v1/key/rotate/`), again after each 503 `key rotation contended, try
    /// again` (16 lost races in a row, nothing written: clients retry it, as kms-go does). The
    /// new version, and how many 503s it took.
    pub fn rotate_retrying(&self, name: &str) -> (u32, usize) {
        let mut contended = 0;
        loop {
            let r = self.post(&format!("/v1/key/rotate/{name}"), "");
            if r.status == 503 {
                r.assert_error(503, "key rotation contended, try again");
                contended += 1;
                continue;
            }
            assert_eq!(r.status, 200, "rotate: {}", r.text());
            let reply = r.json();
            let n: u32 = reply["version"].as_str().unwrap().parse().unwrap();
            assert_eq!(reply, serde_json::json!({ "version": n.to_string() }));
            return (n, contended);
        }
    }
}

/// One client connection (keep-alive).
pub struct Conn {
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Completes the handshake; returns the error if it fails.
    pub fn handshake(&mut self) -> std::io::Result<()> {
        while self.stream.conn.is_handshaking() {
            self.stream.conn.complete_io(&mut self.stream.sock)?;
        }
        // TLS 1.3: the server may reject the client certificate after the client's Finished; a
        // read surfaces that alert.
        Ok(())
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends a request with Content-Length (when a body is given) and reads the reply.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Reply> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Length: {}\r\nContent-Type: application/json\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        // A server may reply and stop reading before the whole request is sent (e.g. 413): the
        // reply is what counts.
        let sent = self.send_raw(req.as_bytes());
        match self.read_reply() {
            Ok(reply) => Ok(reply),
            Err(e) => sent.and(Err(e)),
        }
    }

    /// Sends a request with a chunked body (as MinIO does) and reads the reply.
    pub fn request_chunked(
        &mut self,
        method: &str,
        path: &str,
        chunks: &[&str],
    ) -> std::io::Result<Reply> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        for c in chunks {
            req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
        }
        req.push_str("0\r\n\r\n");
        self.send_raw(req.as_bytes())?;
        self.read_reply()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one reply (Content-Length or chunked body).
    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        self.read_reply_with(false)
    }

    /// Reads the reply to a HEAD request: the head alone, whatever its Content-Length says (no
    /// content follows, RFC 9110 §9.3.2). Bytes after it belong to the next reply.
    pub fn read_head_reply(&mut self) -> std::io::Result<Reply> {
        self.read_reply_with(true)
    }

    fn read_reply_with(&mut self, head_only: bool) -> std::io::Result<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    let reply_headers = headers.clone();
                    let find = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    if status == 100 {
                        continue;
                    }
                    let body = if head_only {
                        Vec::new()
                    } else if find("transfer-encoding").as_deref() == Some("chunked") {
                        self.read_chunked()?
                    } else {
                        let len: usize = find("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        while self.buf.len() < len {
                            if self.fill()? == 0 {
                                return Err(std::io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        self.buf.drain(..len).collect()
                    };
                    return Ok(Reply {
                        status,
                        headers: reply_headers,
                        body,
                    });
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(std::io::Error::other(format!("bad reply: {e}"))),
            }
        }
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(self.read_line()?.trim(), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                self.read_line()?;
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True when the server closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }
}

/// The client certificate a TLS configuration presents, switchable between connections.
/// rustls resumes a session only under the configuration (certificate resolver and verifier)
/// that made it, so a client that resumes A's session while configured with B's certificate is
/// one configuration whose resolver now answers B.
#[derive(Debug)]
pub struct SwitchableCert(Mutex<Arc<rustls::sign::CertifiedKey>>);

impl SwitchableCert {
    fn key(cert: &Cert) -> Arc<rustls::sign::CertifiedKey> {
        Self::chain_key(vec![cert.der.clone()], cert)
    }

    /// `chain` with the key of `signer`, whether they belong together or not.
    fn chain_key(
        chain: Vec<CertificateDer<'static>>,
        signer: &Cert,
    ) -> Arc<rustls::sign::CertifiedKey> {
        let key = rustls::crypto::ring::sign::any_supported_type(&signer.key()).unwrap();
        Arc::new(rustls::sign::CertifiedKey::new(chain, key))
    }

    /// From the next handshake on, present `cert`.
    pub fn set(&self, cert: &Cert) {
        *self.0.lock().unwrap() = Self::key(cert);
    }
}

impl rustls::client::ResolvesClientCert for SwitchableCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.lock().unwrap().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS configuration (for [`Client::with_config`]) that trusts `server_ca`, presents `cert`
/// (switchable) and keeps its sessions to resume them.
pub fn resuming_config(
    server_ca: &CertificateDer<'static>,
    cert: &Cert,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<rustls::ClientConfig>, Arc<SwitchableCert>) {
    presenting_config(server_ca, vec![cert.der.clone()], cert, version)
}

/// Like [`resuming_config`], presenting `chain` and signing with the key of `signer`, whether
/// they belong together or not (an attacker's client; rustls's usual configuration refuses a
/// mismatch).
pub fn presenting_config(
    server_ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    signer: &Cert,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Arc<rustls::ClientConfig>, Arc<SwitchableCert>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.clone()).unwrap();
    let switch = Arc::new(SwitchableCert(Mutex::new(SwitchableCert::chain_key(
        chain, signer,
    ))));
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(switch.clone());
    config.resumption = rustls::client::Resumption::store(Arc::new(
        rustls::client::ClientSessionMemoryCache::new(16),
    ));
    (Arc::new(config), switch)
}
