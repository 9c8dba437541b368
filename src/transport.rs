//! What a failed HTTPS call made with ureq (to Vault, or by the `kes` command to a server) is
//! called in an error message: one line an operator can act on. The caller words TLS failures,
//! whose advice depends on who was called (a Vault CA setting, or the command's `--ca`).

/// A one-line description of a transport error; `tls` describes a TLS failure.
pub fn describe(e: &ureq::Error, tls: fn(&rustls::Error) -> String) -> String {
    if let Some(t) = tls_error(e) {
        return tls(t);
    }
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running?)".into()
        }
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::BodyExceedsLimit(n) => format!("response larger than {n} bytes"),
        other => other.to_string(),
    }
}

/// The TLS failure behind a transport error, if it is one (rustls errors may arrive wrapped in an
/// I/O error).
pub fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(e: &rustls::Error) -> String {
        format!("TLS: {e}")
    }

    #[test]
    fn one_line_per_kind() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            describe(&refused, tls),
            "connection refused (is the server running?)"
        );
        assert_eq!(describe(&ureq::Error::HostNotFound, tls), "host not found");
        let wrapped = ureq::Error::Io(std::io::Error::other(rustls::Error::HandshakeNotComplete));
        assert!(describe(&wrapped, tls).starts_with("TLS: "));
        assert!(tls_error(&wrapped).is_some());
        assert!(tls_error(&refused).is_none());
        assert_eq!(
            describe(&ureq::Error::BodyExceedsLimit(10), tls),
            "response larger than 10 bytes"
        );
    }
}
