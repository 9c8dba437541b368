#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ (seed-* files).

Seeds come from the repository itself: the ciphertext and stored-key vectors
(tests/vectors/vectors.json), kes.yaml.example and the configs of src/config/tests.rs, requests like
MinIO's (HTTP/1.1, and as HTTP/2 frames beside h2spec's invalid ones), HPACK header blocks
(RFC 7541 Appendix C and a few of our own), and certificates and keys made with the openssl
command (skipped when it is missing).
Run by scripts/fuzz.sh before each campaign; safe to run again (it only rewrites seed-* files, so
what the fuzzer added to the corpus stays).
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:60]
    with open(os.path.join(d, f"seed-{safe}"), "wb") as f:
        f.write(data)


def vectors():
    with open(os.path.join(ROOT, "tests", "vectors", "vectors.json")) as f:
        return json.load(f)


def ciphertext_seeds(v):
    # The key table of fuzz_targets/ciphertext.rs: a fuzzing key, then each vector key once, in order.
    keys = [bytes([0x42] * 32)]
    for c in v["ciphertexts"]:
        k = bytes.fromhex(c["key"])
        if k not in keys:
            keys.append(k)
    for c in v["ciphertexts"]:
        index = keys.index(bytes.fromhex(c["key"]))
        alg = 0 if c["key_algorithm"] == "AES256" else 1
        fallback = 2 if c["legacy_algorithm_fallback"] else 0
        context = bytes.fromhex(c["context"])
        if len(context) > 255 or index >= 64:
            continue
        flags = (index << 2) | fallback | alg
        data = bytes([flags, len(context)]) + context + bytes.fromhex(c["ciphertext"])
        write("ciphertext", c["name"], data)


def stored_seeds(v):
    for s in v["stored"]:
        value = s["value"].encode()
        write("stored_key", s["name"], b"\x00" + value)
        if not value.lstrip().startswith(b"{"):
            # Mode 1: the raw protobuf, which the target base64-encodes itself.
            write("stored_key", s["name"] + "-raw", b"\x01" + base64.b64decode(value))


# Variables of fuzz_targets/config.rs's fixed environment.
ENV_NAMES = ["A", "B", "C", "D", "E", "ID", "DUR", "EMPTY"]


def config_seeds():
    with open(os.path.join(ROOT, "kes.yaml.example")) as f:
        example = f.read()
    write("config", "kes.yaml.example", example)
    configs = [example]
    with open(os.path.join(ROOT, "src", "config", "tests.rs")) as f:
        tests = f.read()
    for i, text in enumerate(re.findall(r'r#"(.*?)"#', tests, re.S)):
        if "tls:" in text:
            configs.append(text)
    head = "admin:\n  identity: ${ID}\ntls:\n  key: ./server.key\n  cert: ./server.cert\n"
    configs += [
        head + "keystore:\n  fs:\n    path: ./keys\n",
        "root: disabled\ntls:\n  key: k\n  cert: c\nkeys:\n  fs:\n    path: /var/kes/keys\n",
        head + "keystore:\n  vault:\n    endpoint: https://vault:8200\n    kubernetes:\n"
        "      role: kes\n      jwt: ${C}\n      retry: ${DUR}\n",
        head + "keystore:\n  vault:\n    endpoint: [http://a:8200, http://b:8200]\n    approle:\n"
        "      id: \"${A}\"\n      secret: '${B}'   # secret\n    transit:\n      key: wrap\n",
        head + "server:\n  max_connections: 10\n  header_timeout: 1.5s\n  idle_timeout: 1h30m\n"
        "keystore:\n  fs:\n    path: ${D}\npolicy:\n  p:\n    allow:\n    - ${E}\n    - /v1/key/*\n",
        "anchors: &a [1, 2]\n" + head + "keystore:\n  fs:\n    path: *a\n",
    ]
    for i, text in enumerate(configs):
        # Rename the tests' variables to ones the fuzz environment has.
        names = {}
        def rename(m):
            return "${" + names.setdefault(m.group(1), ENV_NAMES[len(names) % len(ENV_NAMES)]) + "}"
        text = re.sub(r"\$\{([A-Za-z0-9_]+)\}", rename, text)
        write("config", f"config-{i}", text)


def http_seeds():
    ua = "MinIO (linux; amd64) madmin-go/3.0.70 minio-go/v7.0.70"
    def req(method, path, body=None, extra="", chunked=None):
        h = f"{method} {path} HTTP/1.1\r\nHost: kes.example.net:7373\r\nUser-Agent: {ua}\r\n{extra}"
        if chunked is not None:
            h += "Transfer-Encoding: chunked\r\n\r\n" + chunked
        elif body is not None:
            h += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        else:
            h += "\r\n"
        return h
    ctx = base64.b64encode(b'{"MinIO admin API":"ServerInfo"}').decode()
    ct = base64.b64encode(bytes(range(76))).decode()
    gen = json.dumps({"context": ctx})
    dec = json.dumps({"ciphertext": ct, "context": ctx})
    requests = {
        "generate": req("POST", "/v1/key/generate/minio-default-key", gen, "Accept-Encoding: gzip\r\n"),
        "decrypt": req("POST", "/v1/key/decrypt/minio-default-key", dec),
        "create": req("POST", "/v1/key/create/my-key", ""),
        "status": req("GET", "/v1/status"),
        "version": req("GET", "/version") + req("GET", "/v1/api"),
        "list": req("GET", "/v1/key/list/minio-*?continue=x&limit=10"),
        "describe-escaped": req("GET", "/v1/key/describe/a%2Db%20c"),
        "metrics": req("GET", "/v1/metrics", extra="Accept: text/plain\r\n"),
        "close": req("DELETE", "/v1/key/delete/k", extra="Connection: close\r\n"),
        "chunked": req("PUT", "/v1/key/import/k", chunked="4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nTrailer: x\r\n\r\n"),
        "chunked-pipelined": req("POST", "/v1/key/encrypt/k", chunked="10\r\n" + "{\"plaintext\":\"\"}" + "\r\n0\r\n\r\n") + req("GET", "/v1/ready"),
        "expect": req("POST", "/v1/policy/describe/p", "{}", "Expect: 100-continue\r\n"),
        "http10": "GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v1/ready HTTP/1.0\r\n\r\n",
        "leading-crlf": "\r\n\r\n" + req("GET", "/v1/status"),
        "log": req("GET", "/v1/log/error", extra="Connection: keep-alive, Upgrade\r\n"),
    }
    for i, (name, text) in enumerate(requests.items()):
        # segmentation byte, body limit index (cycles through the limits)
        write("http_request", name, bytes([i * 37 % 256, i]) + text.encode())


def openssl(d, *args, stdin=None):
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, input=stdin)


def pki_seeds():
    if shutil.which("openssl") is None:
        print("seeds.py: no openssl; certificate and private key seeds skipped", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as d:
        p = lambda n: os.path.join(d, n)
        openssl(d, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pkcs8")
        openssl(d, "rsa", "-in", "rsa.pkcs8", "-traditional", "-out", "rsa.pkcs1")
        openssl(d, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.sec1")
        openssl(d, "pkey", "-in", "ec.sec1", "-out", "ec.pkcs8")
        openssl(d, "genpkey", "-algorithm", "ed25519", "-out", "ed.pkcs8")
        for key, name in [("rsa.pkcs8", "rsa"), ("ec.sec1", "ec"), ("ed.pkcs8", "ed")]:
            openssl(d, "req", "-new", "-x509", "-key", key, "-subj", "/CN=kes", "-days", "1",
                    "-addext", "extendedKeyUsage=clientAuth", "-out", f"{name}.pem")
        openssl(d, "req", "-new", "-x509", "-key", "ec.sec1", "-subj", "/CN=ca", "-days", "1",
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-out", "ca.pem")
        openssl(d, "req", "-new", "-key", "ed.pkcs8", "-subj", "/CN=v1", "-out", "v1.csr")
        openssl(d, "x509", "-req", "-in", "v1.csr", "-key", "ed.pkcs8", "-days", "1", "-out", "v1.pem")
        for name in ["rsa", "ec", "ed", "ca", "v1"]:
            openssl(d, "x509", "-in", f"{name}.pem", "-outform", "DER", "-out", f"{name}.der")
            with open(p(f"{name}.der"), "rb") as f:
                write("certificate", name, f.read())
        with open(p("password"), "w") as f:
            f.write("correct horse")
        for cipher in ["aes128", "aes256", "des3"]:
            openssl(d, "rsa", "-in", "rsa.pkcs8", "-traditional", f"-{cipher}", "-passout",
                    "file:password", "-out", f"rsa-{cipher}.pem")
            openssl(d, "ec", "-in", "ec.sec1", f"-{cipher}", "-passout", "file:password",
                    "-out", f"ec-{cipher}.pem")
        openssl(d, "pkcs8", "-topk8", "-in", "ec.sec1", "-v2", "aes-256-cbc", "-passout",
                "pass:pw", "-out", "ec.enc-pkcs8")
        read = lambda n: open(p(n), "rb").read()
        # First byte: 0 = no password, 1 = empty, 2 = "correct horse".
        for name in ["rsa.pkcs1", "ec.sec1", "ec.pkcs8", "ed.pkcs8", "ec.enc-pkcs8"]:
            write("private_key", name, b"\x00" + read(name))
        for cipher in ["aes128", "aes256", "des3"]:
            write("private_key", f"rsa-{cipher}", b"\x02" + read(f"rsa-{cipher}.pem"))
            write("private_key", f"ec-{cipher}", b"\x02" + read(f"ec-{cipher}.pem"))
        write("private_key", "bundle", b"\x02" + read("ec.pem") + read("ec-aes128.pem") + read("ca.pem"))
        write("private_key", "certs", b"\x00" + read("rsa.pem") + read("v1.pem"))


def small_seeds():
    seed = hashlib.sha256(b"kes fuzz api key").digest()
    key = "kes:v1:" + base64.b64encode(b"\x00" + seed).decode()
    items = [
        (0, key), (0, " " + key + "\n"), (0, key[len("kes:v1:"):]),
        (1, '{"plaintext":"aGVs\\nbG8=","context":"e30=","x":1} trailing'),
        (1, '{"Ciphertext":null,"context":"","bytes":"AAAA"}'), (1, "null"), (1, ""),
        (2, '[{"name":"a","created_at":"2024-01-12T10:39:20.886816Z"}]'), (2, "null"),
        (3, "/v1/key/describe/a%2Db%20c%C3%A9"), (3, "/a%zz"), (3, "/%00"),
        (4, "1h30m"), (4, "1.5s"), (4, "300ms"), (4, "2h45m0.5s"), (4, "1µs"), (4, "0"),
        (5, "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22"),
    ]
    for i, (which, text) in enumerate(items):
        write("small_parsers", f"{which}-{i}", bytes([which]) + text.encode())


def crypto_body_seeds():
    bodies = [
        '{"context":"e30="}', '{"context":"e30=","ciphertext":"aGVsbG8="}',
        '{"Context":"e30=","CipherText":"aGVsbG8="}', '{"context":"e30\\u003d"}',
        '{"plaintext":"aGVs\\nbG8=","version":"v1"} trailing', '{"message":null}', "null", "", "[]",
        '{"context":"e30=","context":"aGk="}', '{"version":{"a":[1,2.5]},"plaintext":"aGk="}',
        '{"ciphertext":5}', '{"context":"!!"}',
    ]
    for i, body in enumerate(bodies):
        write("crypto_body", f"body-{i}", body.encode())


def hpack_seeds():
    # Input of fuzz_targets/hpack.rs: config (table size index | list limit index << 3), then
    # blocks, each after its length octet. Blocks from RFC 7541 Appendix C, and a few of our own.
    def blocks(*hexes):
        out = b""
        for h in hexes:
            b = bytes.fromhex(h.replace(" ", "").replace("\n", ""))
            assert len(b) < 256
            out += bytes([len(b)]) + b
        return out
    table_4096, table_256, table_64 = 7, 5, 3
    no_limit, limit_100, limit_16k = 7 << 3, 4 << 3, 6 << 3
    c3 = blocks(
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65")
    c4 = blocks(
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")
    c5 = blocks(
        """4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
        2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
        6c65 2e63 6f6d""",
        "4803 3330 37c1 c0bf",
        """88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
        54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
        5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
        3d31""")
    c6 = blocks(
        """4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
        2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3""",
        "4883 640e ffc1 c0bf",
        """88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
        77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
        9587 3160 65c0 03ed 4ee5 b106 3d50 07""")
    seeds = {
        "c2-1": bytes([table_4096 | no_limit]) + blocks(
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
        "c2-2": bytes([table_4096 | no_limit]) + blocks("040c 2f73 616d 706c 652f 7061 7468"),
        "c2-3": bytes([table_4096 | no_limit]) + blocks("1008 7061 7373 776f 7264 0673 6563 7265 74"),
        "c2-4": bytes([table_4096 | no_limit]) + blocks("82"),
        "c3": bytes([table_4096 | no_limit]) + c3,
        "c3-limit": bytes([table_4096 | limit_100]) + c3,
        "c4": bytes([table_4096 | no_limit]) + c4,
        "c4-small-table": bytes([table_64 | limit_16k]) + c4,
        "c5": bytes([table_256 | no_limit]) + c5,
        "c6": bytes([table_256 | no_limit]) + c6,
        "c6-limit": bytes([table_256 | limit_100]) + c6,
        # Size updates at the start (down to 0 and back to 4096), then a field; then one too late.
        "size-updates": bytes([table_4096 | no_limit]) + blocks("20 3fe1 1f 82", "82 20"),
        # A large entry, then a block of references to it.
        "references": bytes([table_4096 | limit_16k]) + blocks(
            "40 0162 7f71" + "78" * (127 + 0x71),
            "be" * 255),
        "never-indexed": bytes([table_4096 | no_limit]) + blocks("1f08 0561 646d 696e 0000 0161 1001 6101 62"),
        "endless-integer": bytes([table_4096 | no_limit]) + blocks("ff" + "80" * 40),
    }
    for name, data in seeds.items():
        write("hpack", name, data)
def h2_frame_seeds():
    # Frames as a client sends them (fuzz_targets/h2_frame.rs): limit index (LIMITS), segmentation
    # byte, then frames. Limit 0 is 2^14, 6 is 64 bytes (so a short frame can be oversize).
    def frame(kind, flags, stream, payload=b""):
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def settings(*params):
        return frame(4, 0, 0, b"".join(i.to_bytes(2, "big") + v.to_bytes(4, "big") for i, v in params))

    get = b"\x82\x87\x04\x0a/v1/status\x41\x0fkes.example.net"
    post = b"\x83\x87\x04\x1a/v1/key/generate/minio-key\x41\x0fkes.example.net"
    body = b'{"context":"eyJNaW5JTyBhZG1pbiBBUEkiOiJTZXJ2ZXJJbmZvIn0="}'
    start = settings((2, 0), (3, 100), (4, 1 << 20), (5, 1 << 14), (6, 8192), (0xff, 1))
    start += frame(8, 0, 0, (15 << 20).to_bytes(4, "big"))
    streams = {
        "get": start + frame(1, 0x05, 1, get) + frame(4, 0x01, 0, b""),
        "post": start + frame(1, 0x04, 3, post) + frame(0, 0x00, 3, body[:20])
        + frame(0, 0x01, 3, body[20:]),
        "padded-priority-continuation": frame(1, 0x28 | 0x01, 5, bytes([3]) + b"\x80\x00\x00\x03\x10"
                                              + get[:10] + b"\0\0\0")
        + frame(9, 0x00, 5, get[10:20]) + frame(9, 0x04, 5, get[20:]),
        "padded-data": frame(1, 0x04, 7, post) + frame(0, 0x09, 7, bytes([4]) + body + b"\0" * 4),
        "control": frame(6, 0, 0, b"h2spec\0\0") + frame(6, 1, 0, b"\1" * 8)
        + frame(2, 0, 9, b"\x00\x00\x00\x07\xff") + frame(3, 0, 9, b"\x00\x00\x00\x08")
        + frame(8, 0, 9, b"\x80\x00\x10\x00") + frame(0x16, 0xff, 0, b"\0" * 8)
        + frame(5, 0x0c, 1, b"\x01\x00\x00\x00\x02\x82\0")
        + frame(7, 0, 0, b"\x00\x00\x00\x09\x00\x00\x00\x00bye"),
        # h2spec's invalid frames.
        "bad-data-pad": frame(0, 0x09, 1, b"\x06Test"),
        "bad-headers-pad": frame(1, 0x0d, 1, bytes([len(get) + 2]) + get),
        "self-dependency": frame(2, 0, 3, b"\x00\x00\x00\x03\xff")
        + frame(1, 0x25, 3, b"\x00\x00\x00\x03\xff" + get),
        "bad-settings": settings((2, 2)) + settings((4, 1 << 31)) + settings((5, 16383))
        + frame(4, 1, 0, b"\0") + frame(4, 0, 1, b"\0" * 6) + frame(4, 0, 0, b"\0" * 3),
        "bad-lengths": frame(6, 0, 0, b"\0" * 6) + frame(3, 0, 1, b"\0" * 3) + frame(8, 0, 0, b"\0" * 3)
        + frame(2, 0, 1, b"\0" * 4) + frame(7, 0, 0, b"\0" * 7),
        "zero-window-update": frame(8, 0, 1, b"\0" * 4) + frame(8, 0, 0, b"\x80\0\0\0"),
        "stream-zero": frame(0, 0, 0, b"x") + frame(1, 4, 0, get) + frame(9, 4, 0, get),
        "reserved-bits": frame(6, 0x16, 0x80000000, b"\0" * 8) + frame(8, 0, 0xffffffff, b"\xff" * 4),
    }
    for i, (name, stream) in enumerate(streams.items()):
        write("h2_frame", name, bytes([0, i * 37 % 256]) + stream)
    # Oversize under small limits: DATA (a stream error) and HEADERS (a connection error).
    write("h2_frame", "oversize-data", bytes([6, 0x80]) + frame(0, 1, 1, b"x" * 100))
    write("h2_frame", "oversize-headers", bytes([7, 0x03]) + frame(1, 4, 1, b"\x82" * 1001))


def main():
    v = vectors()
    crypto_body_seeds()
    ciphertext_seeds(v)
    stored_seeds(v)
    config_seeds()
    http_seeds()
    pki_seeds()
    small_seeds()
    hpack_seeds()
    h2_frame_seeds()
    for t in sorted(os.listdir(CORPUS)):
        n = len([f for f in os.listdir(os.path.join(CORPUS, t)) if f.startswith("seed-")])
        print(f"seeds.py: {t}: {n} seeds")


if __name__ == "__main__":
    main()
