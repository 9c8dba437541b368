"""Holds audit-log subscriptions until it is killed: the child process of tests/hoarding.rs
whose SIGKILL abandons them all at once, as a crashed client would.

Usage: hold_streams.py HOST PORT COUNT CA_FILE CERT_FILE KEY_FILE
Opens COUNT TLS connections with the client certificate, sends GET /v1/log/audit on each,
reads each reply head (it must be 200), prints "holder: ready" and sleeps. Standard library only.
"""

import resource
import socket
import ssl
import sys
import time


def main():
    host, port, count, ca, cert, key = sys.argv[1:7]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    held = []
    for _ in range(int(count)):
        raw = socket.create_connection((host, int(port)), timeout=30)
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        conn.sendall(b"GET /v1/log/audit HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                sys.exit("holder: the server closed a subscription before its reply head")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit("holder: unexpected reply: %r" % head[:80])
        held.append(conn)
    print("holder: ready", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
