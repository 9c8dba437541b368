//! systemd's service notification protocol (sd_notify(3)), without libsystemd: one datagram of
//! `NAME=value` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract
//! socket written `@name`). Without `NOTIFY_SOCKET` (not started by systemd, or not
//! `Type=notify`) every call does nothing.
//!
//! What `kes server` sends, and when (src/cli/server.rs):
//! * `READY=1`: the server has finished starting: the config is loaded, the keystore opened and
//!   checked (or, without `--fail-fast`, found unreachable: the server then runs not ready, see
//!   docs/operations.md), the listening socket bound and the accept loop started.
//! * `RELOADING=1` with `MONOTONIC_USEC=` on SIGHUP, then `READY=1` once the reload is done
//!   (applied or refused: either way the server serves, with the new or the old configuration).
//! * `STOPPING=1` on SIGTERM / SIGINT, before waiting for requests in flight.
//! * `STATUS=` with each of these, and when a reload fails: the line `systemctl status` shows.

use std::ffi::OsStr;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where notifications go; inert when systemd did not ask for them.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// A send failed already (logged once: systemd going away must not flood the log).
    failed: AtomicBool,
}

impl Notifier {
    /// The notifier of `$NOTIFY_SOCKET`. An unusable value is logged and ignored.
    pub fn from_env() -> Notifier {
        let value = std::env::var_os("NOTIFY_SOCKET");
        match Notifier::new(value.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("NOTIFY_SOCKET ignored: {e}");
                Notifier::default()
            }
        }
    }

    /// The notifier of a `NOTIFY_SOCKET` value: `None` or empty gives an inert notifier.
    pub fn new(value: Option<&OsStr>) -> Result<Notifier, String> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::default());
        };
        let addr = socket_addr(value)?;
        let socket = UnixDatagram::unbound()
            .map_err(|e| format!("cannot create a Unix datagram socket: {e}"))?;
        Ok(Notifier {
            target: Some((socket, addr)),
            failed: AtomicBool::new(false),
        })
    }

    /// True when notifications go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1` and a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(status)));
    }

    /// `RELOADING=1`, the time the reload started (`MONOTONIC_USEC`, as sd_notify(3) asks for
    /// reloads), and a status line. [`Notifier::ready`] must follow when the reload is over.
    pub fn reloading(&self, status: &str) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}\n",
            crate::sys::monotonic_usec(),
            one_line(status)
        ));
    }

    /// `STOPPING=1` and a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}\n", one_line(status)));
    }

    /// A status line alone.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}\n", one_line(status)));
    }

    /// Sends one datagram. Failures are logged once and otherwise ignored: the server runs
    /// whether or not systemd listens.
    pub fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        match socket.send_to_addr(message.as_bytes(), addr) {
            Ok(_) => log::debug!("sd_notify: {}", message.trim_end().replace('\n', ", ")),
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    log::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
                }
            }
        }
    }
}

/// The socket address of a `NOTIFY_SOCKET` value: an absolute path, or `@` and the name of an
/// abstract socket (Linux).
fn socket_addr(value: &OsStr) -> Result<SocketAddr, String> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value)
            .map_err(|e| format!("'{}': {e}", value.to_string_lossy())),
        #[cfg(target_os = "linux")]
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(&bytes[1..])
                .map_err(|e| format!("'{}': {e}", value.to_string_lossy()))
        }
        _ => Err(format!(
            "'{}' is neither an absolute path nor an abstract socket (@name)",
            value.to_string_lossy()
        )),
    }
}

/// A status value on one line (the protocol separates fields by newlines).
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("kes-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.as_os_str())).unwrap();
        assert!(n.is_enabled());
        n.ready("serving\non two lines");
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving on two lines\n");
        let before = crate::sys::monotonic_usec();
        n.reloading("reloading");
        let after = crate::sys::monotonic_usec();
        let msg = receive(&socket);
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "RELOADING=1", "{msg}");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
        assert_eq!(lines[2], "STATUS=reloading");
        n.stopping("bye");
        assert_eq!(receive(&socket), "STOPPING=1\nSTATUS=bye\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("kes-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(OsStr::new(&format!("@{name}")))).unwrap();
        n.status("hello");
        assert_eq!(receive(&socket), "STATUS=hello\n");
    }

    #[test]
    fn no_socket_no_notifications_and_bad_values_are_refused() {
        assert!(!Notifier::new(None).unwrap().is_enabled());
        assert!(!Notifier::new(Some(OsStr::new(""))).unwrap().is_enabled());
        Notifier::default().ready("nobody listens"); // does nothing, and does not panic
        let err = Notifier::new(Some(OsStr::new("relative/path"))).unwrap_err();
        assert!(err.contains("neither an absolute path"), "{err}");
        let err = Notifier::new(Some(OsStr::new("vsock:2:1234"))).unwrap_err();
        assert!(err.contains("vsock:2:1234"), "{err}");
        // A socket nobody listens on: the send fails, is logged once, and nothing else happens.
        let n = Notifier::new(Some(OsStr::new("/nonexistent/kes-notify.sock"))).unwrap();
        n.ready("x");
        n.ready("y");
        assert!(n.failed.load(Ordering::Relaxed));
    }
}
