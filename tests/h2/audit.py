"""Two audit log subscriptions on one HTTP/2 connection (tests/h2.rs), driven step by step.

1. Opens GET /v1/log/audit on streams 1 and 3; prints {"subscribed": ...} once both answered.
2. Reads events until every --expect path has arrived on both streams; prints {"received": ...}.
3. Cancels stream 3 (RST_STREAM CANCEL) and keeps the connection; prints {"reset": <time>}.
4. Waits for a line "close" on stdin (reading the connection meanwhile), closes the connection
   without a word (TCP FIN, no GOAWAY) and prints {"closed": <time>}.
"""

import json
import select
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events

import h2peer


def main():
    args = h2peer.parse_args(lambda p: (
        p.add_argument("--expect", action="append", default=[]),
        p.add_argument("--timeout", type=float, default=10.0),
    ))
    h2peer.start_clock()
    sock = h2peer.tls_socket(args)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    request = [(":method", "GET"), (":scheme", "https"), (":path", "/v1/log/audit"), (":authority", "localhost")]
    conn.send_headers(1, request, end_stream=True)
    conn.send_headers(3, request, end_stream=True)
    sock.sendall(conn.data_to_send())

    heads = {}
    partial = {1: b"", 3: b""}
    events = {1: [], 3: []}
    ended = {}

    def read(timeout):
        """Reads what arrives within `timeout`; False when the connection ended."""
        r, _, _ = select.select([sock], [], [], timeout)
        if not r and not sock.pending():
            return True
        got = sock.recv(65536)
        if not got:
            return False
        for ev in conn.receive_data(got):
            if isinstance(ev, h2.events.ResponseReceived):
                heads[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                buf = partial.get(ev.stream_id, b"") + ev.data
                *lines, partial[ev.stream_id] = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        e = json.loads(line)
                        events[ev.stream_id].append([e["request"]["method"], e["request"]["path"], e["response"]["code"]])
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended[ev.stream_id] = type(ev).__name__
            elif isinstance(ev, h2.events.ConnectionTerminated):
                return False
        sock.sendall(conn.data_to_send())
        return True

    deadline = time.monotonic() + args.timeout
    while len(heads) < 2 and time.monotonic() < deadline:
        if not read(0.1):
            break
    h2peer.emit({"subscribed": {str(k): [v.get(":status"), v.get("content-type")] for k, v in heads.items()}})

    def all_seen():
        return all(p in [e[1] for e in events[s]] for p in args.expect for s in (1, 3))

    while not all_seen() and time.monotonic() < deadline:
        if not read(0.1):
            break
    h2peer.emit({"received": {str(k): v for k, v in events.items()}, "ended": ended})

    conn.reset_stream(3, h2.errors.ErrorCodes.CANCEL)
    sock.sendall(conn.data_to_send())
    h2peer.emit({"reset": time.monotonic()})

    alive = True
    while True:
        r, _, _ = select.select([sys.stdin] + ([sock] if alive else []), [], [], args.timeout)
        if not r or sys.stdin in r:
            break
        alive = read(0)
    sock.close()
    h2peer.emit({"closed": time.monotonic(), "alive_until_close": alive, "ended": ended})


if __name__ == "__main__":
    main()
