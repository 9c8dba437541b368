"""A TLS handshake that offers only the given ALPN protocols (tests/h2.rs): does the server
complete it, and which protocol does it choose? Prints one JSON result: {"ok": true, "alpn":
<protocol or null>} or {"ok": false, "error": <the TLS error, e.g. an alert>}.
"""

import ssl

import h2peer


def main():
    args = h2peer.parse_args(lambda p: p.add_argument("--offer", action="append", required=True))
    h2peer.start_clock()
    try:
        sock = h2peer.tls_socket(args, alpn=args.offer)
    except (ssl.SSLError, OSError) as e:
        h2peer.emit({"ok": False, "error": f"{e.__class__.__name__}: {e}"})
        return
    h2peer.emit({"ok": True, "alpn": sock.selected_alpn_protocol(), "version": sock.version()})
    sock.close()


if __name__ == "__main__":
    main()
