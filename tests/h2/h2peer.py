"""Helpers shared by the HTTP/2 client scripts that tests/h2.rs runs against kes.

The scripts play well-behaved clients and attackers. Attackers need to break the rules, so
they write frames (hyperframe) and header blocks (hpack) themselves instead of going through
the h2 state machine; clients that behave use h2 itself (h2.connection).

Every script prints JSON lines on stdout: first {"clock": <time.monotonic()>}, which the test
reads at once to put the script's timestamps on its own clock (both are CLOCK_MONOTONIC), and
last its result. Times in results are time.monotonic() values.
"""

import argparse
import json
import select
import socket
import ssl
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
# RFC 9113 §7, for readable results.
ERRORS = [
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
]


def error_name(code):
    return ERRORS[code] if code < len(ERRORS) else f"0x{code:x}"


def parse_args(add=None):
    """The connection arguments every script takes, plus the script's own (`add(parser)`)."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True, help="PEM file the server certificate chains to")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="client private key (PEM)")
    if add:
        add(p)
    return p.parse_args()


def emit(obj):
    print(json.dumps(obj), flush=True)


def start_clock():
    emit({"clock": time.monotonic()})


def tls_context(args, alpn=("h2",)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_socket(args, alpn=("h2",)):
    """A blocking TLS socket, handshake done."""
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return tls_context(args, alpn).wrap_socket(raw, server_hostname="localhost")


def request_block(method, path, extra=()):
    """A header block that refers to no dynamic table entry (a fresh encoder each time), so the
    same bytes can open any number of streams."""
    fields = [(":method", method), (":scheme", "https"), (":path", path),
              (":authority", "localhost"), *extra]
    return hpack.Encoder().encode(fields)


def headers(stream, block, end_stream=True, end_headers=True):
    flags = []
    if end_stream:
        flags.append("END_STREAM")
    if end_headers:
        flags.append("END_HEADERS")
    return HeadersFrame(stream, block, flags=flags).serialize()


def continuation(stream, fragment, end_headers=False):
    return ContinuationFrame(stream, fragment, flags=["END_HEADERS"] if end_headers else []).serialize()


def data(stream, payload, end_stream=False):
    return DataFrame(stream, payload, flags=["END_STREAM"] if end_stream else []).serialize()


def rst(stream, code=8):
    return RstStreamFrame(stream, error_code=code).serialize()


def ping(opaque=b"floodpin"):
    return PingFrame(0, opaque_data=opaque).serialize()


class Stream:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.ended = None   # time END_STREAM arrived
        self.reset = None   # RST_STREAM error code from the server
        self.data_frames = 0
        self.end_on_headers = False  # END_STREAM came with the response's HEADERS


class Conn:
    """One HTTP/2 connection driven from a single thread: writes what is queued in `out` while
    the socket takes it, and reads and parses what the server sends (unless told not to).
    Non-blocking, so an attacker can write as fast as the server reads and still see its
    answers; one thread, because OpenSSL objects must not be read and written at once."""

    CHUNK = 64 * 1024

    def __init__(self, args, alpn=("h2",)):
        self.sock = tls_socket(args, alpn)
        self.alpn = self.sock.selected_alpn_protocol()
        self.sock.setblocking(False)
        self.out = bytearray()
        self.chunk = None     # a TLS write to retry with the same bytes
        self.inbuf = bytearray()
        self.decoder = hpack.Decoder()
        self.block = None     # (stream, bytes) of a response header block in progress
        self.streams = {}
        self.goaway = None
        self.closed = None    # time the connection ended (EOF, reset, error)
        self.close_reason = None
        self.frames_in = {}   # frame type name -> count received
        self.sent_bytes = 0

    def preface(self, settings=None):
        """The client preface with windows as large as allowed: replies are never held back by
        flow control, only by whether we read."""
        values = {SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW}
        values.update(settings or {})
        self.out += PREFACE
        self.out += SettingsFrame(0, settings=values).serialize()
        self.out += WindowUpdateFrame(0, window_increment=MAX_WINDOW - 65535).serialize()

    def handshake(self, timeout=5):
        """Sends the preface and waits for the server's SETTINGS (acknowledged at once): frames
        queued after this cannot be interleaved with the acknowledgement."""
        self.preface()
        return self.run_until(lambda: self.frames_in.get("SettingsFrame") and not self.out and self.chunk is None, timeout)

    def stream(self, sid):
        return self.streams.setdefault(sid, Stream())

    def _end(self, why):
        if self.closed is None:
            self.closed = time.monotonic()
            self.close_reason = why

    def pump(self, timeout, read=True):
        """One round: waits up to `timeout` for the socket, then reads and writes what it can."""
        if self.closed is not None:
            return
        want_write = bool(self.out) or self.chunk is not None
        if read and self.sock.pending():
            r, w = [self.sock], []
        else:
            r, w, _ = select.select([self.sock] if read else [], [self.sock] if want_write else [], [], timeout)
        if r:
            self._read()
        if w and self.closed is None:
            self._write()

    def _read(self):
        while self.closed is None:
            try:
                got = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (ConnectionError, ssl.SSLError, OSError) as e:
                self._end(f"read: {e.__class__.__name__}: {e}")
                return
            if not got:
                self._end("EOF")
                return
            self.inbuf += got
            self._parse()

    def _write(self):
        while self.closed is None and (self.out or self.chunk is not None):
            if self.chunk is None:
                self.chunk = bytes(self.out[: self.CHUNK])
                del self.out[: len(self.chunk)]
            try:
                self.sock.send(self.chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except (ConnectionError, ssl.SSLError, OSError) as e:
                self._end(f"write: {e.__class__.__name__}: {e}")
                return
            self.sent_bytes += len(self.chunk)
            self.chunk = None

    def _parse(self):
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                return
            frame, _ = Frame.parse_frame_header(memoryview(bytes(self.inbuf[:9])))
            frame.parse_body(memoryview(bytes(self.inbuf[9 : 9 + length])))
            del self.inbuf[: 9 + length]
            self._on_frame(frame)

    def _on_frame(self, f):
        name = type(f).__name__
        self.frames_in[name] = self.frames_in.get(name, 0) + 1
        now = time.monotonic()
        if name in ("HeadersFrame", "ContinuationFrame"):
            sid, block = self.block if self.block else (f.stream_id, b"")
            block += f.data
            self.block = (sid, block)
            if "END_HEADERS" in f.flags:
                self.block = None
                s = self.stream(sid)
                for k, v in self.decoder.decode(block, raw=True):
                    k, v = k.decode(), v.decode()
                    s.headers.append((k, v))
                    if k == ":status":
                        s.status = int(v)
                if "END_STREAM" in f.flags:
                    s.ended = now
                    s.end_on_headers = True
        elif name == "DataFrame":
            s = self.stream(f.stream_id)
            s.data_frames += 1
            s.body += f.data
            if "END_STREAM" in f.flags:
                s.ended = now
        elif name == "RstStreamFrame":
            self.stream(f.stream_id).reset = error_name(f.error_code)
        elif name == "GoAwayFrame":
            self.goaway = {
                "code": error_name(f.error_code),
                "last_stream": f.last_stream_id,
                "debug": f.additional_data.decode(errors="replace"),
                "at": now,
            }
        elif name == "SettingsFrame" and "ACK" not in f.flags:
            self.out += SettingsFrame(0, flags=["ACK"]).serialize()

    def run_until(self, done, timeout, read=True):
        """Pumps until `done()` or the connection ends or `timeout` passes; returns done()."""
        end = time.monotonic() + timeout
        while not done() and self.closed is None:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.pump(min(left, 0.05), read)
        return done()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
