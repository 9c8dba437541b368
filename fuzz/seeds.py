#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ (seed-* files).

Seeds come from the repository itself: the ciphertext and stored-key vectors
(tests/vectors/vectors.json), kes.yaml.example and the configs of src/config/tests.rs, requests like
MinIO's (HTTP/1.1, and as HTTP/2 frames beside h2spec's invalid ones), and certificates and keys made with the openssl command (skipped when it is missing).
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
    h2_frame_seeds()
    for t in sorted(os.listdir(CORPUS)):
        n = len([f for f in os.listdir(os.path.join(CORPUS, t)) if f.startswith("seed-")])
        print(f"seeds.py: {t}: {n} seeds")


if __name__ == "__main__":
    main()
