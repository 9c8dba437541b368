//! A TCP proxy between `kes` and OpenBao that tests switch between faults: pass traffic, delay
//! every answer, refuse connections, or swallow them (accept and never answer).
//!
//! It forwards bytes without looking at them, so it works for HTTP and HTTPS alike. Only
//! 127.0.0.1. Threads: one acceptor, and a reader and a writer per direction of each connection;
//! all end when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Forward, but hold every chunk of the server's answers for this long (a slow Vault).
    #[allow(dead_code)] // used by tests/faults.rs and tests/h2.rs, binaries of their own, only
    Delay(Duration),
    /// Close new connections at once and cut the open ones (a dead host, or a firewall that
    /// rejects).
    Refuse,
    /// Accept new connections and never answer; stop forwarding on the open ones (a host that
    /// hangs, or a network that drops packets).
    #[allow(dead_code)] // used by tests/faults.rs, a binary of its own, only
    Swallow,
}

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    /// Both sockets of every connection, so that `Refuse` can cut them.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    /// Connections that were accepted and held (`Swallow`).
    held: Mutex<Vec<TcpStream>>,
    /// Every byte sent towards the server, for counting requests (plain HTTP only).
    sent: Mutex<Vec<u8>>,
}

/// A running proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                match s.mode() {
                    Mode::Refuse => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    Mode::Swallow => s.held.lock().unwrap().push(client),
                    Mode::Pass | Mode::Delay(_) => {
                        let Ok(server) =
                            TcpStream::connect_timeout(&target, Duration::from_secs(2))
                        else {
                            continue; // the client sees the connection close
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        if let (Ok(c), Ok(sv)) = (client.try_clone(), server.try_clone()) {
                            s.open.lock().unwrap().push((c, sv));
                        }
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let up = s.clone();
                        std::thread::spawn(move || pump(client, server, &up, false));
                        let down = s.clone();
                        std::thread::spawn(move || pump(s2, c2, &down, true));
                    }
                }
            }
        });
        Proxy { addr, shared }
    }

    /// `http://127.0.0.1:PORT` (or `https://…`) of the proxy, for a `keystore.vault.endpoint`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Switches the mode; `Refuse` also cuts the open connections.
    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            self.cut();
        }
        if matches!(mode, Mode::Pass | Mode::Delay(_) | Mode::Refuse) {
            for held in self.shared.held.lock().unwrap().drain(..) {
                let _ = held.shutdown(Shutdown::Both);
            }
        }
    }

    /// Closes every open connection (both sides), as a crashed host or a reset would.
    pub fn cut(&self) {
        for (a, b) in self.shared.open.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// How often `needle` occurred in what clients sent (e.g. `GET /v1/kv/data/k `): the number
    /// of such requests, when the traffic is plain HTTP.
    #[allow(dead_code)] // used by tests/faults.rs, a binary of its own, only
    pub fn sent_count(&self, needle: &str) -> usize {
        let sent = self.shared.sent.lock().unwrap();
        sent.windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count()
    }
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        self.cut();
        for held in self.shared.held.lock().unwrap().drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` → `to` until either side closes. `answers`: this is the server → client
/// direction, the one `Delay` slows down. A delay is latency, not a slow link: every chunk is
/// forwarded `d` after it arrived, however many chunks an answer has.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Arc<Shared>, answers: bool) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let shared = shared.clone();
        let mut from_clone = from.try_clone().ok();
        std::thread::spawn(move || {
            for (arrived, chunk) in rx {
                loop {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    match shared.mode() {
                        Mode::Swallow => std::thread::sleep(Duration::from_millis(20)),
                        Mode::Delay(d) if answers => {
                            let until = arrived + d;
                            let now = Instant::now();
                            if now >= until {
                                break;
                            }
                            // Re-check the mode now and then, so that ending a delay takes
                            // effect at once.
                            std::thread::sleep((until - now).min(Duration::from_millis(20)));
                        }
                        _ => break,
                    }
                }
                if to.write_all(&chunk).is_err() {
                    if let Some(from) = from_clone.take() {
                        let _ = from.shutdown(Shutdown::Read);
                    }
                    return;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !answers {
            shared.sent.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}
