//! The few system calls that need `unsafe`: locking memory, disabling core dumps, turning off
//! the terminal echo while `kes` reads a password, and the socket and resource limits the server
//! sets (listen backlog, open files, TCP keep-alive, a dual-stack listening socket, the list of
//! the machine's addresses for the banner), and the monotonic clock that systemd's reload
//! notification names.
//!
//! Keys live in process memory. `mlockall` keeps every page (current and future) out of swap, and a
//! core-dump limit of zero keeps them out of crash dumps. Both are best-effort: the server reports
//! what it got and runs either way. Nothing else in the crate uses `unsafe`, except the counting
//! global allocator (`alloc`).
#![allow(unsafe_code)]

use std::io;

/// Locks all current and future pages of the process in memory (Linux `mlockall`).
///
/// `MCL_ONFAULT` (Linux ≥ 4.4) locks pages as they are first touched instead of populating every
/// mapping at once: without it, each worker thread's whole stack and each allocator arena would
/// become resident (measured: 100 MB instead of 22 MB with 300 connections).
#[cfg(target_os = "linux")]
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall takes flags only, touches no Rust-managed memory and cannot violate memory
    // safety; failure is reported through errno.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // A kernel older than 4.4 does not know MCL_ONFAULT.
    // SAFETY: as above.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited.
#[cfg(unix)]
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass by mutable reference.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64))
}

/// Whether the process holds CAP_IPC_LOCK (which exempts it from RLIMIT_MEMLOCK), from
/// /proc/self/status (no system call needed).
pub fn has_ipc_lock_capability() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(not(target_os = "linux"))]
pub fn lock_memory() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "mlockall is only supported on Linux",
    ))
}

/// Sets the core-dump size limit of this process to zero and marks it non-dumpable, so that a crash
/// never writes key material to disk.
#[cfg(unix)]
pub fn disable_core_dumps() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit struct we pass by reference for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn disable_core_dumps() -> io::Result<()> {
    Ok(())
}

/// Reads a line from the terminal on standard input without echoing it (a password), after
/// printing `prompt` on standard error. Echo is restored before returning, also on error.
/// (Interrupting with Ctrl-C while the prompt waits leaves echo off, as with most tools; `reset`
/// restores it.)
#[cfg(unix)]
pub fn read_password(prompt: &str) -> io::Result<zeroize::Zeroizing<String>> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is a plain C struct of integers and arrays, for which all-zero bytes are a
    // valid value; tcgetattr overwrites it before it is used.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes into the termios we pass by exclusive reference; fd is stdin.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let original = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: tcsetattr reads the termios we pass by reference for the duration of the call.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stderr = io::stderr();
    let _ = stderr.write_all(prompt.as_bytes());
    let _ = stderr.flush();
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = io::stdin().lock().take(4096).read_line(&mut line);
    // SAFETY: as above; restores the settings read at the start.
    let restored = unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
    read?;
    if restored != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(len);
    Ok(line)
}

#[cfg(not(unix))]
pub fn read_password(_prompt: &str) -> io::Result<zeroize::Zeroizing<String>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "password prompts are only supported on Unix",
    ))
}

/// The offset of the local time zone from UTC, in seconds, at the Unix time `unix` (from the C
/// library's `localtime_r`, which reads TZ and /etc/localtime). `None` if it cannot tell.
#[cfg(unix)]
pub fn local_utc_offset(unix: i64) -> Option<i64> {
    // time_t is not i64 on every platform.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = unix.try_into().ok()?;
    // SAFETY: tm is a plain C struct of integers (and, on glibc, a pointer the C library sets),
    // for which all-zero bytes are a valid value; localtime_r overwrites it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `t` and writes into `tm`, both passed by reference for the call.
    let result = unsafe { libc::localtime_r(&t, &mut tm) };
    if result.is_null() {
        return None;
    }
    // tm_gmtoff is not i64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Some(tm.tm_gmtoff as i64)
}

#[cfg(not(unix))]
pub fn local_utc_offset(_unix: i64) -> Option<i64> {
    None
}

/// Raises the accept backlog of a listening socket (the standard library listens with 128).
/// When every MinIO node reconnects at once after a restart, more than 128 connections can be
/// pending; beyond the backlog the kernel drops SYNs and clients wait a retransmission (1 s,
/// then 3 s …). Calling `listen` again on a listening socket only changes its backlog; the
/// kernel caps it at `net.core.somaxconn`.
#[cfg(unix)]
pub fn set_listen_backlog(listener: &std::net::TcpListener, backlog: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is owned by `listener`, which outlives the call; listen(2) takes
    // integers only.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft limit on open files to the hard limit (every connection is a descriptor; the
/// soft limit of a login shell is often 1024) and returns the limit now in force.
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass by mutable reference.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass by reference for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // rlim_t is not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur as u64
    })
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Turns on TCP keep-alive probes (first after `idle` seconds without traffic, then every
/// `interval` seconds, `count` unanswered probes close the connection) and bounds how long sent
/// data may stay unacknowledged (`user_timeout_ms`, Linux `TCP_USER_TIMEOUT`), so that a peer
/// that vanished without closing its connection is noticed by the kernel.
#[cfg(target_os = "linux")]
pub fn set_keepalive(
    stream: &std::net::TcpStream,
    idle: i32,
    interval: i32,
    count: i32,
    user_timeout_ms: u32,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set = |level: i32, name: i32, value: i32| -> io::Result<()> {
        // SAFETY: the descriptor is owned by `stream`, which outlives the call; the option value
        // is a c_int on our stack whose size we pass.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, interval)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, count)?;
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        i32::try_from(user_timeout_ms).unwrap_or(i32::MAX),
    )
}

#[cfg(not(target_os = "linux"))]
pub fn set_keepalive(
    _stream: &std::net::TcpStream,
    _idle: i32,
    _interval: i32,
    _count: i32,
    _user_timeout_ms: u32,
) -> io::Result<()> {
    Ok(())
}

/// Lowers the scheduling priority of the calling thread by `niceness` (Linux threads have their
/// own nice value). The server's workers run requests that wait for the keystore; the event
/// loops answer everything else: under CPU contention the loops go first, so busy workers cannot
/// delay the requests that need no keystore.
#[cfg(target_os = "linux")]
pub fn lower_thread_priority(niceness: i32) -> io::Result<()> {
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::gettid() };
    let tid = libc::id_t::try_from(tid).map_err(|_| io::Error::other("thread id out of range"))?;
    // SAFETY: getpriority/setpriority take integers only. getpriority may legitimately return
    // -1, so errno is cleared first and checked after.
    unsafe { *libc::__errno_location() = 0 };
    // The PRIO_PROCESS constant's type differs between libc targets.
    #[allow(clippy::unnecessary_cast)]
    let which = libc::PRIO_PROCESS as _;
    // SAFETY: as above.
    let current = unsafe { libc::getpriority(which, tid) };
    let err = io::Error::last_os_error();
    if current == -1 && err.raw_os_error().is_some_and(|e| e != 0) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::setpriority(which, tid, (current + niceness).min(19)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn lower_thread_priority(_niceness: i32) -> io::Result<()> {
    Ok(())
}

/// Opens a listening TCP socket on `[::]:port` that also accepts IPv4 connections
/// (`IPV6_V6ONLY` off, whatever `net.ipv6.bindv6only` says), as the Go server does for a wildcard
/// address (`:7373`, `0.0.0.0:7373` or `[::]:7373`). `Ok(None)` when the machine has no IPv6
/// (the socket cannot be created, or `::` cannot be bound): the caller then listens on
/// `0.0.0.0`.
#[cfg(target_os = "linux")]
pub fn listen_dual_stack(port: u16, backlog: i32) -> io::Result<Option<std::net::TcpListener>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes integers only; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EINVAL) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns; OwnedFd closes it on every
    // return path below.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
    // As the standard library does for TcpListener::bind: a restart may bind the port again
    // while connections of the previous process are in TIME_WAIT.
    set_int_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    // SAFETY: sockaddr_in6 is plain old data; all-zero is the unspecified address `::`.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = port.to_be();
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe `addr`, which lives on our stack for the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // IPv6 disabled on every interface (`ipv6.disable=1` leaves no `::` to bind).
        return match err.raw_os_error() {
            Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: listen(2) takes integers only.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(std::net::TcpListener::from(fd)))
}

#[cfg(not(target_os = "linux"))]
pub fn listen_dual_stack(_port: u16, _backlog: i32) -> io::Result<Option<std::net::TcpListener>> {
    Ok(None)
}

#[cfg(target_os = "linux")]
fn set_int_option(fd: &std::os::fd::OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is owned by `fd`, which outlives the call; the option value is a
    // c_int on our stack whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The IP addresses of the machine's interfaces that are up (`getifaddrs`), in the order the
/// kernel lists them, without duplicates. IPv6 link-local addresses are left out: a URL for one
/// needs the interface as a zone, which few clients accept.
#[cfg(target_os = "linux")]
pub fn interface_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if !up || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family field says what it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = if family == libc::AF_INET {
            // SAFETY: the family is AF_INET, so the address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        } else if family == libc::AF_INET6 {
            // SAFETY: the family is AF_INET6, so the address is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            if ip.is_unicast_link_local() {
                continue;
            }
            IpAddr::V6(ip)
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once; no reference into it is kept.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

#[cfg(not(target_os = "linux"))]
pub fn interface_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "listing the interface addresses is only supported on Linux",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds: the clock of the `MONOTONIC_USEC=` field that sd_notify(3)
/// asks for with `RELOADING=1` (systemd compares it with its own reading of that clock). std's
/// `Instant` reads the same clock but does not show its value.
#[cfg(unix)]
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we pass by mutable reference; CLOCK_MONOTONIC
    // always exists on Linux, so it cannot fail (a failure would leave zeros, not undefined data).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let micros = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The value is CLOCK_MONOTONIC: std's `Instant` reads that clock on Linux, and its `Debug`
    /// text shows the raw reading (`Instant { tv_sec: …, tv_nsec: … }`), so a reading taken
    /// between two of ours must lie between them.
    #[test]
    fn monotonic_usec_is_clock_monotonic() {
        let before = super::monotonic_usec();
        let instant = format!("{:?}", std::time::Instant::now());
        let after = super::monotonic_usec();
        let field = |name: &str| -> u64 {
            let rest = instant
                .split(&format!("{name}: "))
                .nth(1)
                .unwrap_or_else(|| panic!("no {name} in {instant}"));
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        };
        let std_usec = field("tv_sec") * 1_000_000 + field("tv_nsec") / 1_000;
        println!("monotonic_usec {before} <= Instant {std_usec} <= {after}");
        assert!(
            before <= std_usec && std_usec <= after,
            "{before} {instant} {after}"
        );
        assert!(before > 0);
    }
}
