"""Server shutdown seen from an HTTP/2 client (tests/h2.rs).

Opens an audit log stream (stream 1) and a request whose body has not been sent yet (stream 3),
sends SIGTERM to the server (--pid), then sends the body. Prints one JSON result: the GOAWAY,
how each stream ended, and when the connection closed (times relative to the signal).
"""

import os
import signal
import time

import h2peer


def main():
    args = h2peer.parse_args(lambda p: p.add_argument("--pid", type=int, required=True))
    h2peer.start_clock()
    c = h2peer.Conn(args)
    c.handshake()
    c.out += h2peer.headers(1, h2peer.request_block("GET", "/v1/log/audit"))
    c.out += h2peer.headers(3, h2peer.request_block("PUT", "/v1/key/generate/k"), end_stream=False)
    c.run_until(lambda: c.stream(1).status, 5)
    signalled = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    c.run_until(lambda: c.goaway is not None, 5)
    c.out += h2peer.data(3, b"", end_stream=True)
    c.run_until(lambda: c.closed is not None, 10)

    def since(t):
        return None if t is None else t - signalled

    def stream(sid):
        s = c.stream(sid)
        return {"status": s.status, "ended": since(s.ended), "reset": s.reset, "body": bytes(s.body).decode(errors="replace")}

    h2peer.emit({
        "goaway": c.goaway and {**c.goaway, "at": since(c.goaway["at"])},
        "log_stream": stream(1),
        "request": stream(3),
        "closed": since(c.closed),
        "close_reason": c.close_reason,
    })
    c.close()


if __name__ == "__main__":
    main()
