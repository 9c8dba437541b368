//! The accept thread and admission: which event loop gets a new connection, and what happens at
//! the limits.
//!
//! Limits: `server.max_connections` in total and `server.max_connections_per_address` from one
//! client address. A connection over a limit takes the place of the connection that has been idle
//! longest (in its TLS handshake, or between requests with nothing in progress), of the same
//! address when the per-address limit is what was reached; only when no such connection exists
//! is the new one refused, by closing it before any TLS (a refusal costs one `accept` and one
//! `close`; a 503 would cost a full handshake exactly when the server is short of resources).
//! nginx reuses idle keep-alive connections the same way when it runs out of connections.
//! A client then sees a closed idle connection, which HTTP clients retry, instead of a server
//! that a few hoarded connections lock.
//!
//! Admission keeps, per address and per loop, how many connections are open, so that the loop
//! asked to make room is one that holds a connection it may close; per request nothing here is
//! touched.

use super::reactor::NewConn;
use super::{Handler, Shared};
use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the loop must do before it serves a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MakeRoom {
    /// Nothing: the connection is within the limits.
    No,
    /// Close the longest-idle connection of this address first, or refuse the new one.
    FromAddress(IpAddr),
    /// Close the longest-idle connection first, or refuse the new one.
    Any,
}

pub struct Admission {
    state: Mutex<State>,
}

struct State {
    /// Open connections per loop.
    per_loop: Vec<usize>,
    total: usize,
    /// Open connections per client address, per loop.
    per_address: HashMap<IpAddr, Vec<u32>>,
    /// Where the search for the least-loaded loop starts (spreads ties).
    next: usize,
}

impl Admission {
    pub fn new(loops: usize) -> Admission {
        Admission {
            state: Mutex::new(State {
                per_loop: vec![0; loops.max(1)],
                total: 0,
                per_address: HashMap::new(),
                next: 0,
            }),
        }
    }

    /// Counts a new connection from `ip` and says which loop takes it and whether it must make
    /// room first.
    pub fn admit(&self, ip: IpAddr, max_total: usize, max_per_address: usize) -> (usize, MakeRoom) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let loops = s.per_loop.len();
        let from_ip = s.per_address.get(&ip);
        let of_ip: u32 = from_ip.map_or(0, |v| v.iter().sum());
        let (lp, room) = if of_ip as usize >= max_per_address {
            // The loop holding most connections of this address has the best chance of an idle one.
            let counts = from_ip.cloned().unwrap_or_default();
            let lp = (0..loops)
                .max_by_key(|&i| counts.get(i).copied().unwrap_or(0))
                .unwrap_or(0);
            (lp, MakeRoom::FromAddress(ip))
        } else if s.total >= max_total {
            let lp = (0..loops).max_by_key(|&i| s.per_loop[i]).unwrap_or(0);
            (lp, MakeRoom::Any)
        } else {
            let start = s.next;
            s.next = (s.next + 1) % loops;
            let lp = (0..loops)
                .map(|k| (start + k) % loops)
                .min_by_key(|&i| s.per_loop[i])
                .unwrap_or(0);
            (lp, MakeRoom::No)
        };
        s.per_loop[lp] += 1;
        s.total += 1;
        let counts = s.per_address.entry(ip).or_insert_with(|| vec![0; loops]);
        if let Some(c) = counts.get_mut(lp) {
            *c += 1;
        }
        (lp, room)
    }

    /// Forgets a connection from `ip` on loop `lp` (closed, or refused after `admit`).
    pub fn release(&self, ip: IpAddr, lp: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.per_loop.get_mut(lp) {
            *n = n.saturating_sub(1);
        }
        s.total = s.total.saturating_sub(1);
        if let Some(counts) = s.per_address.get_mut(&ip) {
            if let Some(c) = counts.get_mut(lp) {
                *c = c.saturating_sub(1);
            }
            if counts.iter().all(|c| *c == 0) {
                s.per_address.remove(&ip);
            }
        }
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
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Dead peers (a machine gone without a FIN) are found by the kernel's keep-alive probes
        // and by a bound on unacknowledged data, whether or not the connection has anything to
        // send: a log subscriber that vanished is closed within about 25 s.
        if let Err(e) = crate::sys::set_keepalive(&stream, 10, 5, 3, 25_000) {
            log::debug!("cannot set TCP keep-alive on a connection from {peer}: {e}");
        }
        let ip = canonical(peer.ip());
        let limits = &shared.limits;
        let (lp, room) = shared.admission.admit(
            ip,
            limits.max_connections,
            limits.max_connections_per_address,
        );
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = NewConn {
            stream: mio::net::TcpStream::from_std(stream),
            peer,
            ip,
            room,
        };
        match shared.loops.get(lp) {
            Some(inbox) => inbox.add_connection(conn),
            None => shared.admission.release(ip, lp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn spreads_connections_and_asks_for_room_at_the_limits() {
        let a = Admission::new(2);
        // Below the limits: spread over both loops.
        let (l1, r1) = a.admit(ip(1), 4, 3);
        let (l2, r2) = a.admit(ip(1), 4, 3);
        assert_eq!((r1, r2), (MakeRoom::No, MakeRoom::No));
        assert_ne!(l1, l2);
        let (_, r3) = a.admit(ip(1), 4, 3);
        assert_eq!(r3, MakeRoom::No);
        // The fourth from the same address is over its limit.
        let (_, r4) = a.admit(ip(1), 4, 3);
        assert_eq!(r4, MakeRoom::FromAddress(ip(1)));
        // Another address, but the total is reached.
        let (_, r5) = a.admit(ip(2), 4, 3);
        assert_eq!(r5, MakeRoom::Any);
        // Releasing brings it back under.
        a.release(ip(2), 0);
        a.release(ip(2), 1);
        a.release(ip(1), l1);
        let (_, r6) = a.admit(ip(2), 4, 3);
        assert_eq!(r6, MakeRoom::No);
    }

    #[test]
    fn per_address_room_is_asked_of_the_loop_holding_that_address() {
        let a = Admission::new(3);
        let loops: Vec<usize> = (0..2).map(|_| a.admit(ip(7), 100, 2).0).collect();
        let (lp, room) = a.admit(ip(7), 100, 2);
        assert_eq!(room, MakeRoom::FromAddress(ip(7)));
        assert!(loops.contains(&lp));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), ip(1));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
