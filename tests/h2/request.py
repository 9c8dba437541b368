"""Requests one after the other on one HTTP/2 connection (tests/h2.rs), recording how each
answer was framed. Prints one JSON result: for each request, its status, header fields, body,
how many DATA frames carried it, and whether END_STREAM came with the HEADERS.
"""

import h2peer


def main():
    args = h2peer.parse_args(lambda p: p.add_argument(
        "--request", nargs=2, action="append", metavar=("METHOD", "PATH"), required=True))
    h2peer.start_clock()
    c = h2peer.Conn(args)
    c.handshake()
    answers = []
    for i, (method, path) in enumerate(args.request):
        sid = 1 + 2 * i
        c.out += h2peer.headers(sid, h2peer.request_block(method, path))
        c.run_until(lambda: c.stream(sid).ended or c.stream(sid).reset, 10)
        s = c.stream(sid)
        answers.append({
            "request": f"{method} {path}",
            "status": s.status,
            "headers": s.headers,
            "body": bytes(s.body).decode(errors="replace"),
            "data_frames": s.data_frames,
            "end_on_headers": s.end_on_headers,
            "reset": s.reset,
        })
    h2peer.emit({"alpn": c.alpn, "answers": answers, "goaway": c.goaway})
    c.close()


if __name__ == "__main__":
    main()
