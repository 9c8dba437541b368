//! Many connections at once, for the hoarding tests: TCP connections from a chosen loopback
//! address, a watcher that notes when the server closes each of a thousand held connections,
//! and what a server process costs (threads, resident memory, CPU).
//!
//! Every address is on 127.0.0.0/8. Linux answers on the whole block without configuration,
//! so a test can play several client addresses on one machine.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Opens a TCP connection to `to` from the local address `from` (port chosen by the kernel).
///
/// The standard library cannot bind a socket before connecting it, and the server tells
/// clients apart by address only, so a second client address needs this: `socket`, `bind`,
/// `connect` through `libc` (already a dependency of the crate) rather than a new
/// dev-dependency (`socket2`) for three system calls.
#[cfg(target_os = "linux")]
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("connect_from: IPv4 only"));
    };
    let sockaddr = |a: SocketAddrV4| {
        // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = a.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
        sa
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket takes integers only; the descriptor it returns is owned by `fd` at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let local = sockaddr(SocketAddrV4::new(from, 0));
    // SAFETY: `local` lives on the stack for the call and `len` is its size.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const local).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr(to);
    loop {
        // SAFETY: as for bind.
        if unsafe { libc::connect(fd.as_raw_fd(), (&raw const remote).cast(), len) } == 0 {
            return Ok(TcpStream::from(fd));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Held connections, watched for the moment the server closes each (EOF or reset). Whatever
/// the server sends before that (TLS session tickets, log events) is read and thrown away.
pub struct Closings {
    poll: mio::Poll,
    socks: Vec<mio::net::TcpStream>,
    opened: Vec<Instant>,
    closed: Vec<Option<Instant>>,
    /// Closed by a reset rather than an orderly close (FIN).
    reset: Vec<bool>,
    events: mio::Events,
}

impl Closings {
    /// Watches `conns`, each with the time it was opened.
    pub fn new(conns: Vec<(TcpStream, Instant)>) -> Closings {
        let poll = mio::Poll::new().expect("epoll");
        let mut socks = Vec::with_capacity(conns.len());
        let mut opened = Vec::with_capacity(conns.len());
        for (i, (sock, at)) in conns.into_iter().enumerate() {
            sock.set_nonblocking(true).unwrap();
            let mut sock = mio::net::TcpStream::from_std(sock);
            poll.registry()
                .register(&mut sock, mio::Token(i), mio::Interest::READABLE)
                .expect("register");
            socks.push(sock);
            opened.push(at);
        }
        let n = socks.len();
        Closings {
            poll,
            socks,
            opened,
            closed: vec![None; n],
            reset: vec![false; n],
            events: mio::Events::with_capacity(1024),
        }
    }

    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Connections the server has not closed (as far as seen so far).
    pub fn open(&self) -> usize {
        self.closed.iter().filter(|c| c.is_none()).count()
    }

    /// Takes note of what happened until now, without waiting.
    pub fn check(&mut self) {
        while self.poll_once(Duration::ZERO) == self.events.capacity() {}
    }

    /// Watches until every connection is closed or `until`; returns how many are still open.
    pub fn wait(&mut self, until: Instant) -> usize {
        while self.open() > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.poll_once(left.min(Duration::from_millis(50)));
        }
        self.open()
    }

    /// Polls once; returns how many events came.
    fn poll_once(&mut self, timeout: Duration) -> usize {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
            return 0;
        }
        let now = Instant::now();
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        let n = ready.len();
        let mut buf = [0u8; 16 * 1024];
        for i in ready {
            if self.closed[i].is_some() {
                continue;
            }
            loop {
                match self.socks[i].read(&mut buf) {
                    Ok(0) => {
                        self.closed[i] = Some(now);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.closed[i] = Some(now);
                        self.reset[i] = true;
                        break;
                    }
                }
            }
        }
        n
    }

    /// For each connection, how long after its opening the server closed it (`None`: open).
    pub fn lifetimes(&self) -> Vec<Option<Duration>> {
        self.opened
            .iter()
            .zip(&self.closed)
            .map(|(o, c)| c.map(|c| c.saturating_duration_since(*o)))
            .collect()
    }

    /// Connections the server reset instead of closing them in order.
    pub fn resets(&self) -> usize {
        self.reset.iter().filter(|r| **r).count()
    }

    /// For each connection, when the server closed it (`None`: open).
    pub fn closed_at(&self) -> &[Option<Instant>] {
        &self.closed
    }
}

/// What a process costs now, from /proc/<pid>/status and /proc/<pid>/stat.
#[derive(Debug, Clone, Copy)]
pub struct ProcCost {
    pub threads: u64,
    pub rss_kib: u64,
    /// CPU time used so far (user + system), in milliseconds.
    pub cpu_ms: u64,
}

impl ProcCost {
    pub fn of(pid: u32) -> ProcCost {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // After the name: state is field 3, utime 14, stime 15 (in clock ticks of 10 ms).
        let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ProcCost {
            threads: field("Threads:"),
            rss_kib: field("VmRSS:"),
            cpu_ms: ticks * 10,
        }
    }
}

/// Polls `f` every 10 ms until it holds or `timeout` passes; returns how long that took.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Median and maximum of some durations ("median 2.1ms, max 4.0ms").
pub fn spread(took: &[Duration]) -> String {
    if took.is_empty() {
        return "none".into();
    }
    let mut sorted = took.to_vec();
    sorted.sort();
    format!(
        "median {:?}, max {:?}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

/// How long threads waited for a CPU while runnable (the run delay of Linux schedstat): on a
/// shared machine, a server that did nothing wrong can still answer late because other
/// processes had the CPUs. Per thread of a process, in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct RunDelays(std::collections::HashMap<String, u64>);

impl RunDelays {
    /// Every thread of process `pid`.
    pub fn of(pid: u32) -> RunDelays {
        let mut out = std::collections::HashMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return RunDelays(out);
        };
        for task in tasks.flatten() {
            if let Some(delay) = read_run_delay(&task.path().join("schedstat")) {
                out.insert(task.file_name().to_string_lossy().into_owned(), delay);
            }
        }
        RunDelays(out)
    }

    /// The calling thread only.
    pub fn this_thread() -> RunDelays {
        let mut out = std::collections::HashMap::new();
        if let Some(delay) = read_run_delay(std::path::Path::new("/proc/thread-self/schedstat")) {
            out.insert("self".into(), delay);
        }
        RunDelays(out)
    }

    /// The longest a single thread waited for a CPU between `self` and `later`.
    pub fn longest_wait_until(&self, later: &RunDelays) -> Duration {
        later
            .0
            .iter()
            .map(|(tid, after)| after.saturating_sub(self.0.get(tid).copied().unwrap_or(0)))
            .max()
            .map_or(Duration::ZERO, Duration::from_nanos)
    }
}

/// The second field of a schedstat file: nanoseconds spent runnable on a run queue.
fn read_run_delay(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
