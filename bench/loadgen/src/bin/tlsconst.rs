//! `tlsconst`: the constant-reply TLS ceiling. The same TLS stack as kes (rustls, ring provider,
//! TLS 1.2/1.3, a client certificate required and its handshake signature checked, no chain
//! check), the same threading model (one thread per connection, blocking I/O, TCP_NODELAY), and
//! an HTTP/1.1 keep-alive loop that answers every request with the same bytes: a JSON body the
//! size of a generate reply. What kes does beyond this is the KES work (routing, policy, JSON,
//! key derivation, AEAD, randomness); the difference in throughput is its price.
//!
//! ```text
//! tlsconst --addr 127.0.0.1:0 --cert server.crt --key server.key
//! ```
//! Prints `listening on ADDR` once ready.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// The shape and size of a kes generate reply (44 + 104 base64 characters).
const BODY: &str = concat!(
    "{\"plaintext\":\"M0Xd8uAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",",
    "\"ciphertext\":\"tC2RQThPAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}\n"
);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut addr = "127.0.0.1:0".to_string();
    let (mut cert, mut key) = (String::new(), String::new());
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--addr" => addr = v,
            "--cert" => cert = v,
            "--key" => key = v,
            other => {
                eprintln!(
                    "unknown option {other}\nusage: tlsconst --addr IP:PORT --cert F --key F"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let config = match server_config(&cert, &key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tlsconst: {e}");
            std::process::exit(2);
        }
    };
    kes_bench::raise_nofile_limit();
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("tlsconst: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    let reply: Arc<[u8]> = Arc::from(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        )
        .into_bytes(),
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (config, reply) = (config.clone(), reply.clone());
        let _ = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || serve(stream, config, &reply));
    }
}

fn server_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = kes_bench::provider();
    let verifier = Arc::new(kes_bench::AnyClientCert(provider.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(kes_bench::load_certs(cert)?, kes_bench::load_key(key)?)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, reply: &[u8]) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(90)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0usize;
    loop {
        // One request: the head up to the empty line, then Content-Length bytes of body.
        let (head_end, body_len, close) = loop {
            if let Some(p) = kes_bench::find(&buf[..have], b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let close = head.contains("\r\nconnection: close");
                break (p + 4, len, close);
            }
            if have == buf.len() {
                return;
            }
            match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        };
        let total = head_end + body_len;
        if total > buf.len() {
            return;
        }
        while have < total {
            match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        }
        buf.copy_within(total..have, 0);
        have -= total;
        if s.write_all(reply).and_then(|_| s.flush()).is_err() || close {
            return;
        }
    }
}
