"""More streams than SETTINGS_MAX_CONCURRENT_STREAMS (tests/h2.rs).

Opens --streams streams at once, each a PUT /v1/key/generate/<key> whose body has not come yet
(so every stream stays open), then waits for the server's RST_STREAM frames, then ends every
stream the server did not refuse with an empty DATA frame carrying END_STREAM. Prints one JSON
result: the server's advertised limit, the streams it reset (and with which code) and the status
of the others.
"""

import time

from hyperframe.frame import SettingsFrame

import h2peer


def main():
    args = h2peer.parse_args(lambda p: (
        p.add_argument("--streams", type=int, default=200),
        p.add_argument("--key-name", default="k"),
    ))
    h2peer.start_clock()
    c = h2peer.Conn(args)
    advertised = {}

    # Remember the server's SETTINGS as they arrive.
    on_frame = c._on_frame

    def spy(f):
        if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
            advertised.update(f.settings)
        on_frame(f)
    c._on_frame = spy

    c.handshake()
    started = time.monotonic()
    block = h2peer.request_block("PUT", f"/v1/key/generate/{args.key_name}")
    ids = [1 + 2 * i for i in range(args.streams)]
    for sid in ids:
        c.out += h2peer.headers(sid, block, end_stream=False)
    # The refusals come at once; give them a moment to arrive.
    c.run_until(lambda: False, 0.5)
    refused = {sid: c.stream(sid).reset for sid in ids if c.stream(sid).reset}
    open_ids = [sid for sid in ids if sid not in refused]
    for sid in open_ids:
        c.out += h2peer.data(sid, b"", end_stream=True)
    c.run_until(lambda: all(c.stream(s).ended or c.stream(s).reset for s in open_ids), 10)
    statuses = {}
    for sid in open_ids:
        s = c.stream(sid)
        key = str(s.status) if s.status else f"reset {s.reset}"
        statuses[key] = statuses.get(key, 0) + 1
    h2peer.emit({
        "max_concurrent_streams": advertised.get(SettingsFrame.MAX_CONCURRENT_STREAMS),
        "opened": len(ids),
        "refused": {str(k): v for k, v in refused.items()},
        "answered": statuses,
        "goaway": c.goaway,
        "closed": c.close_reason,
        "started": started,
        "ended": time.monotonic(),
    })
    c.close()


if __name__ == "__main__":
    main()
