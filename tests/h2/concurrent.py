"""Streams of one HTTP/2 connection are served concurrently (tests/h2.rs).

A well-behaved client (the h2 library) sends one request that the server must wait for
(--slow: a key that is not cached, behind a slow keystore), and 50 ms later --fast-streams
requests it can answer from memory (--fast: a cached key), all on the same connection. Prints
one JSON result: for each stream, its path, status, and when it was sent and answered.
"""

import time

import h2.config
import h2.connection
import h2.events

import h2peer


def request(path):
    return [(":method", "PUT"), (":scheme", "https"), (":path", path), (":authority", "localhost")]


def main():
    args = h2peer.parse_args(lambda p: (
        p.add_argument("--slow", required=True),
        p.add_argument("--fast", required=True),
        p.add_argument("--fast-streams", type=int, default=20),
        p.add_argument("--timeout", type=float, default=10.0),
    ))
    h2peer.start_clock()
    sock = h2peer.tls_socket(args)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    streams = {}

    def send(sid, path):
        conn.send_headers(sid, request(path), end_stream=True)
        streams[sid] = {"path": path, "status": None, "body": b"", "sent": None, "ended": None, "reset": None}

    send(1, args.slow)
    sock.sendall(conn.data_to_send())
    streams[1]["sent"] = time.monotonic()
    time.sleep(0.05)
    fast = [3 + 2 * i for i in range(args.fast_streams)]
    for sid in fast:
        send(sid, args.fast)
    out = conn.data_to_send()  # all of them in one write
    now = time.monotonic()
    sock.sendall(out)
    for sid in fast:
        streams[sid]["sent"] = now

    goaway = None
    deadline = time.monotonic() + args.timeout
    while any(s["ended"] is None and s["reset"] is None for s in streams.values()) and goaway is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            got = sock.recv(65536)
        except TimeoutError:
            break
        if not got:
            break
        now = time.monotonic()
        for ev in conn.receive_data(got):
            if isinstance(ev, h2.events.ResponseReceived):
                streams[ev.stream_id]["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                streams[ev.stream_id]["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                streams[ev.stream_id]["ended"] = now
            elif isinstance(ev, h2.events.StreamReset):
                streams[ev.stream_id]["reset"] = h2peer.error_name(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = h2peer.error_name(ev.error_code)
        sock.sendall(conn.data_to_send())
    for s in streams.values():
        s["body"] = s["body"].decode(errors="replace")
    h2peer.emit({"streams": {str(k): v for k, v in streams.items()}, "goaway": goaway})
    sock.close()


if __name__ == "__main__":
    main()
