//! The accept thread and admission: which event loop gets a new connection, and what happens at
//! the limits.
//!
//! Limits: `server.max_connections` in total and `server.max_connections_per_address` from one
//! client address. A connection over a limit takes the place of the connection that has been idle
//! longest (in its TLS handshake, or between requests with nothing in progress), of the same
//! address when the per-address limit is what was reached; only when no connection is idle is
//! the new one refused, by closing it before any TLS (a refusal costs one `accept` and one
//! `close`; a 503 would cost a full handshake exactly when the server is short of resources).
//! nginx reuses idle keep-alive connections the same way when it runs out of connections. A
//! client then sees an idle connection closed, which HTTP clients retry, instead of a server
//! that a few hoarded connections lock.
//!
//! Admission keeps a register of the open connections: address, loop, and an idle mark each
//! connection updates itself (one atomic store when it turns idle or busy, nothing else per
//! request), so the choice of the connection to close is exact across loops. The loop that owns
//! it closes it, or, if it turned busy meanwhile, closes it as soon as its request is answered.

use super::inbox::{IdleMark, NewConn};
use super::{Handler, Shared};
use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What admission decided for a new connection.
#[derive(Debug)]
pub enum Admit {
    /// Serve it on loop `lp`.
    Serve { lp: usize, id: u64, idle: IdleMark },
    /// Serve it on loop `lp` once connection `victim` (on loop `victim_lp`) made room.
    Replace {
        lp: usize,
        id: u64,
        idle: IdleMark,
        victim: u64,
        victim_lp: usize,
    },
    /// Refuse it: a limit is reached and nothing is idle.
    Refuse(Refusal),
}

/// Which limit a refused connection hit (nothing was idle to make room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections_per_address`: `open` connections from `ip`.
    PerAddress { open: usize, ip: IpAddr },
    /// `server.max_connections`: `open` connections in all.
    Total { open: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PerAddress { open, ip } => write!(
                f,
                "{open} connections from {ip} are open (server.max_connections_per_address) and none is idle"
            ),
            Refusal::Total { open } => write!(
                f,
                "{open} connections are open (server.max_connections) and none is idle"
            ),
        }
    }
}

struct Registered {
    lp: usize,
    ip: IpAddr,
    idle: IdleMark,
}

pub struct Admission {
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    conns: HashMap<u64, Registered>,
    per_loop: Vec<usize>,
    per_address: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Where the search for the least-loaded loop starts (spreads ties).
    next_loop: usize,
}

impl Admission {
    pub fn new(loops: usize) -> Admission {
        Admission {
            epoch: Instant::now(),
            state: Mutex::new(State {
                conns: HashMap::new(),
                per_loop: vec![0; loops.max(1)],
                per_address: HashMap::new(),
                next_id: 1,
                next_loop: 0,
            }),
        }
    }

    /// Registers a new connection from `ip` (idle from `now`: it has not finished its handshake)
    /// and says where it goes, and whether another must make room.
    pub fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_address: usize,
        now: Instant,
    ) -> Admit {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = s.per_address.get(&ip).copied().unwrap_or(0);
        let victim = if from_ip >= max_per_address {
            match s.longest_idle(Some(ip)) {
                Some(v) => Some(v),
                None => {
                    return Admit::Refuse(Refusal::PerAddress { open: from_ip, ip });
                }
            }
        } else if s.conns.len() >= max_total {
            match s.longest_idle(None) {
                Some(v) => Some(v),
                None => {
                    return Admit::Refuse(Refusal::Total {
                        open: s.conns.len(),
                    });
                }
            }
        } else {
            None
        };
        let victim = victim.and_then(|v| s.remove(v).map(|r| (v, r.lp)));
        let loops = s.per_loop.len();
        let start = s.next_loop;
        s.next_loop = (start + 1) % loops;
        let lp = (0..loops)
            .map(|k| (start + k) % loops)
            .min_by_key(|&i| s.per_loop[i])
            .unwrap_or(0);
        let id = s.next_id;
        s.next_id += 1;
        let idle = IdleMark::new(self.epoch);
        idle.set(Some(now));
        s.per_loop[lp] += 1;
        *s.per_address.entry(ip).or_insert(0) += 1;
        s.conns.insert(
            id,
            Registered {
                lp,
                ip,
                idle: idle.clone(),
            },
        );
        match victim {
            Some((victim, victim_lp)) => Admit::Replace {
                lp,
                id,
                idle,
                victim,
                victim_lp,
            },
            None => Admit::Serve { lp, id, idle },
        }
    }

    /// Forgets connection `id` (closed); nothing when it was already replaced.
    pub fn release(&self, id: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(id);
    }

    /// Open connections.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .len()
    }
}

impl State {
    /// The connection idle longest (of `ip` when given).
    fn longest_idle(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, r)| ip.is_none_or(|ip| r.ip == ip))
            .filter_map(|(id, r)| r.idle.idle_since().map(|since| (since, *id)))
            .min()
            .map(|(_, id)| id)
    }

    fn remove(&mut self, id: u64) -> Option<Registered> {
        let r = self.conns.remove(&id)?;
        if let Some(n) = self.per_loop.get_mut(r.lp) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.per_address.get_mut(&r.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&r.ip);
            }
        }
        Some(r)
    }
}

/// An IPv4 client that reached an IPv6 socket counts as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Accepts connections until the server shuts down and hands each to an event loop.
pub fn run<H: Handler>(listener: &TcpListener, shared: &Shared<H>) {
    for stream in listener.incoming() {
        if shared.is_shutting_down() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        // A dual-stack socket shows IPv4 clients as `::ffff:a.b.c.d`: they are IPv4 clients
        // (limits, logs), as they would be on an IPv4 socket.
        let ip = canonical(peer.ip());
        let peer = std::net::SocketAddr::new(ip, peer.port());
        let limits = &shared.limits;
        let admit = shared.admission.admit(
            ip,
            limits.max_connections,
            limits.max_connections_per_address,
            Instant::now(),
        );
        let (lp, id, idle) = match admit {
            Admit::Refuse(why) => {
                drop(stream);
                shared.refused(&why.to_string());
                continue;
            }
            Admit::Serve { lp, id, idle } => (lp, id, idle),
            Admit::Replace {
                lp,
                id,
                idle,
                victim,
                victim_lp,
            } => {
                shared.stats.evicted.fetch_add(1, Ordering::Relaxed);
                if let Some(inbox) = shared.loops.get(victim_lp) {
                    inbox.evict(victim);
                }
                (lp, id, idle)
            }
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if stream.set_nonblocking(true).is_err() {
            shared.admission.release(id);
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Dead peers (a machine gone without a FIN) are found by the kernel's keep-alive probes
        // and by a bound on unacknowledged data, whether or not the connection has anything to
        // send: a log subscriber that vanished is closed within about 25 s.
        if let Err(e) = crate::sys::set_keepalive(&stream, 10, 5, 3, 25_000) {
            log::debug!("cannot set TCP keep-alive on a connection from {peer}: {e}");
        }
        let conn = NewConn {
            stream: mio::net::TcpStream::from_std(stream),
            peer,
            id,
            idle,
        };
        match shared.loops.get(lp) {
            Some(inbox) => inbox.add_connection(conn),
            None => shared.admission.release(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn id(a: &Admit) -> u64 {
        match a {
            Admit::Serve { id, .. } | Admit::Replace { id, .. } => *id,
            Admit::Refuse(_) => 0,
        }
    }

    fn mark(a: &Admit) -> IdleMark {
        match a {
            Admit::Serve { idle, .. } | Admit::Replace { idle, .. } => idle.clone(),
            Admit::Refuse(why) => panic!("refused: {why}"),
        }
    }

    #[test]
    fn the_longest_idle_connection_makes_room_across_loops() {
        let a = Admission::new(2);
        let t0 = Instant::now();
        let first = a.admit(ip(1), 2, 10, t0);
        let second = a.admit(ip(2), 2, 10, t0);
        // Spread over both loops.
        let lp = |x: &Admit| match x {
            Admit::Serve { lp, .. } | Admit::Replace { lp, .. } => *lp,
            Admit::Refuse(_) => 99,
        };
        assert_ne!(lp(&first), lp(&second));
        // The first turns busy, then idle again later than the second.
        mark(&first).set(None);
        mark(&second).set(Some(t0 + Duration::from_millis(5)));
        mark(&first).set(Some(t0 + Duration::from_millis(50)));
        let third = a.admit(ip(3), 2, 10, t0 + Duration::from_millis(60));
        match third {
            Admit::Replace { victim, .. } => assert_eq!(victim, id(&second)),
            other => panic!("expected a replacement, got {other:?}"),
        }
        assert_eq!(a.open(), 2);
        // Both busy: refused.
        mark(&first).set(None);
        mark(&third).set(None);
        assert!(matches!(
            a.admit(ip(4), 2, 10, t0),
            Admit::Refuse(Refusal::Total { open: 2 })
        ));
        // A release makes room without replacing anyone; releasing a replaced one is a no-op.
        a.release(id(&second));
        assert_eq!(a.open(), 2);
        a.release(id(&first));
        assert!(matches!(a.admit(ip(4), 2, 10, t0), Admit::Serve { .. }));
    }

    #[test]
    fn refusals_say_which_limit() {
        assert_eq!(
            Refusal::PerAddress { open: 3, ip: ip(7) }.to_string(),
            format!(
                "3 connections from {} are open (server.max_connections_per_address) and none is idle",
                ip(7)
            )
        );
        assert_eq!(
            Refusal::Total { open: 5 }.to_string(),
            "5 connections are open (server.max_connections) and none is idle"
        );
    }

    #[test]
    fn an_address_at_its_limit_replaces_its_own_idle_connections() {
        let a = Admission::new(2);
        let t0 = Instant::now();
        let other = a.admit(ip(9), 100, 2, t0);
        let x = a.admit(ip(1), 100, 2, t0 + Duration::from_millis(1));
        let _y = a.admit(ip(1), 100, 2, t0 + Duration::from_millis(2));
        // ip(9)'s connection is idle longest, but ip(1) replaces one of its own.
        match a.admit(ip(1), 100, 2, t0 + Duration::from_millis(3)) {
            Admit::Replace { victim, .. } => assert_eq!(victim, id(&x)),
            other => panic!("expected a replacement, got {other:?}"),
        }
        assert!(mark(&other).idle_since().is_some());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), ip(1));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
