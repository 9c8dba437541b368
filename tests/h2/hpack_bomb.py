"""HPACK bomb against kes (tests/h2.rs), repeated on one connection for --seconds.

Each round sends one request whose header block inserts a ~4 KiB field into the dynamic table
and then refers to it --refs times (one byte each): ~60 KiB on the wire that decode to
hundreds of megabytes. The server must answer 431 without expanding it, and the connection
must stay usable: a plain GET /version follows each bomb on the same connection.

Prints one JSON result: the status of every bomb and of every request after one, how long
each took, and any GOAWAY.
"""

import time

import h2peer

# RFC 7541 §6.2.1: literal with incremental indexing, new name; lengths as 7-bit prefix ints.
def hpack_int(value, prefix_bits, first_byte_flags):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def bomb_block(refs, value_len):
    name = b"x-bomb"
    value = b"b" * value_len
    block = bytearray(h2peer.request_block("GET", "/version"))
    block += b"\x40" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value
    # The new entry is the first of the dynamic table: index 62 (§2.3.3), an indexed field.
    block += hpack_int(62, 7, 0x80) * refs
    return bytes(block)


def send_block(c, sid, block):
    """HEADERS + CONTINUATION frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE)."""
    pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    c.out += h2peer.headers(sid, pieces[0], end_stream=True, end_headers=len(pieces) == 1)
    for i, p in enumerate(pieces[1:], start=2):
        c.out += h2peer.continuation(sid, p, end_headers=i == len(pieces))


def main():
    args = h2peer.parse_args(lambda p: (
        p.add_argument("--seconds", type=float, default=1.0),
        p.add_argument("--refs", type=int, default=60000),
        p.add_argument("--value", type=int, default=4000),
    ))
    h2peer.start_clock()
    block = bomb_block(args.refs, args.value)
    plain = h2peer.request_block("GET", "/version")
    c = h2peer.Conn(args)
    c.handshake()
    started = time.monotonic()
    rounds = []
    sid = 1
    while time.monotonic() < started + args.seconds or not rounds:
        t0 = time.monotonic()
        send_block(c, sid, block)
        c.out += h2peer.headers(sid + 2, plain)
        ok = c.run_until(lambda: c.stream(sid).ended and c.stream(sid + 2).ended, 10)
        bomb, after = c.stream(sid), c.stream(sid + 2)
        rounds.append({
            "bomb": bomb.status,
            "bomb_body": bytes(bomb.body).decode(errors="replace"),
            "bomb_reset": bomb.reset,
            "after": after.status,
            "after_body": bytes(after.body).decode(errors="replace"),
            "ms": (time.monotonic() - t0) * 1000,
        })
        sid += 4
        if not ok:
            break
    h2peer.emit({
        "started": started,
        "ended": time.monotonic(),
        "block_bytes": len(block),
        "decoded_bytes": args.refs * (len("x-bomb") + args.value + 32),
        "rounds": rounds,
        "goaway": c.goaway,
        "closed": c.close_reason,
    })
    c.close()


if __name__ == "__main__":
    main()
