#!/usr/bin/env python3
"""Captures real metrics of a kes server for the dashboard picture (docs/grafana/dashboard.png).

It starts a kes server (fs keystore, fresh certificates) and a real Prometheus that scrapes its
/v1/metrics over mutual TLS every 2 s, drives a scripted workload through phases an operator
would want to see on the dashboard (steady MinIO-like traffic, log subscribers, a subscriber
that stalls while a scanner probes long unknown paths, a keystore outage, a burst, a reload,
clients without certificates), then asks
Prometheus to evaluate every query of packaging/grafana/kes-dashboard.json over the run and
writes the results to docs/grafana/capture.json. docs/grafana/render.py draws the picture from
that file.

Needs: a built kes (default target/release/kes), the `prometheus` binary (Debian: apt-get install
prometheus), Python 3 (standard library only). Runs about 4 minutes and keeps the load modest
(a few hundred requests per second) so as not to swamp a shared machine.

Usage: python3 docs/grafana/capture.py [--kes target/release/kes] [--out docs/grafana/capture.json]
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "packaging", "grafana", "kes-dashboard.json")
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval for a 2 s scrape interval and 5 s steps
STEP = 5


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kes:
    """A kes server with an admin, a MinIO-like client and a stranger (no policy)."""

    def __init__(self, kes, tmp):
        self.kes, self.tmp = kes, tmp
        p = lambda name: os.path.join(tmp, name)
        run([kes, "identity", "new", "--key", p("server.key"), "--cert", p("server.crt"),
             "--ip", "127.0.0.1", "--dns", "localhost", "localhost"])
        api_key, admin_id = run([kes, "identity", "new"]).split()[:2]
        run([kes, "identity", "cert", "--key", p("admin.key"), "--cert", p("admin.crt"), api_key])
        minio_id = run([kes, "identity", "new", "--key", p("minio.key"), "--cert", p("minio.crt"), "minio"]).split()[0]
        run([kes, "identity", "new", "--key", p("stranger.key"), "--cert", p("stranger.crt"), "stranger"])
        self.config = p("config.yaml")
        with open(self.config, "w") as f:
            f.write(f"""admin:
  identity: {admin_id}
tls:
  key: {p("server.key")}
  cert: {p("server.crt")}
policy:
  minio:
    allow:
    - /v1/key/create/minio-*
    - /v1/key/generate/minio-*
    - /v1/key/decrypt/minio-*
    - /v1/key/describe/minio-*
    identities:
    - {minio_id}
keystore:
  fs:
    path: {p("keys")}
""")
        self.proc = subprocess.Popen([kes, "server", "--config", self.config, "--addr", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            m = re.match(r"Endpoint\s+https://([\d.]+):(\d+)", line)
            if m:
                self.port = int(m.group(2))
                break
        else:
            raise SystemExit("kes did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def context(self, who):
        ctx = ssl.create_default_context(cafile=os.path.join(self.tmp, "server.crt"))
        if who:
            ctx.load_cert_chain(os.path.join(self.tmp, who + ".crt"), os.path.join(self.tmp, who + ".key"))
        return ctx

    def connect(self, who):
        return http.client.HTTPSConnection("localhost", self.port, context=self.context(who), timeout=20)


class Client:
    """A keep-alive client that reconnects when the server closes the connection."""

    def __init__(self, kes, who):
        self.kes, self.who, self.conn = kes, who, None

    def call(self, method, path, body=None):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = self.kes.connect(self.who)
                self.conn.request(method, path, body=body)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.conn = None
        return 0, b""


def b64(data):
    import base64
    return base64.b64encode(data).decode()


def minio_worker(kes, stop, rate):
    """Generate then decrypt data keys, as MinIO does for every object it writes and reads."""
    c = Client(kes, "minio")
    rng = random.Random()
    while not stop.is_set():
        key = "minio-key-%d" % rng.randrange(8)
        ctx = b64(json.dumps({"bucket": "b%d" % rng.randrange(50), "object": "o"}).encode())
        status, data = c.call("POST", "/v1/key/generate/" + key, json.dumps({"context": ctx}))
        if status == 200:
            ct = json.loads(data)["ciphertext"]
            c.call("POST", "/v1/key/decrypt/" + key, json.dumps({"ciphertext": ct, "context": ctx}))
        if rng.random() < 0.05:
            c.call("GET", "/v1/key/describe/minio-missing-%d" % rng.randrange(1000))
        time.sleep(rng.expovariate(rate[0]))


def admin_worker(kes, stop):
    """Occasional key creation, listing and status checks, and a stranger knocking."""
    admin, stranger = Client(kes, "admin"), Client(kes, "stranger")
    n = 0
    while not stop.is_set():
        n += 1
        admin.call("PUT", "/v1/key/create/tenant-%d" % n)
        admin.call("GET", "/v1/key/list/tenant-*")
        admin.call("GET", "/v1/status")
        if n % 3 == 0:
            stranger.call("GET", "/v1/key/describe/minio-key-0")
        time.sleep(1)


def subscriber(kes, path, stop, read=True):
    conn = socket.socket()
    if not read:
        # A small receive buffer, so that this stalled subscriber's share of kernel buffers fills
        # in seconds rather than minutes and its queue overflows within the phase.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.connect(("127.0.0.1", kes.port))
    tls = kes.context("admin").wrap_socket(conn, server_hostname="localhost")
    tls.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
    tls.settimeout(0.5)
    while not stop.is_set():
        if not read:
            time.sleep(0.2)
            continue
        try:
            if not tls.recv(65536):
                break
        except (socket.timeout, TimeoutError):
            pass
    tls.close()


def scanner(kes, stop):
    """A client probing long unknown paths (404, audited but not in the request counters): its
    events fill a stalled subscriber's queue quickly."""
    c = Client(kes, "admin")
    rng = random.Random()
    while not stop.is_set():
        c.call("GET", "/scan/%s" % "".join(rng.choice("abcdefgh") for _ in range(2000)))
        time.sleep(0.01)


def bad_certificates(kes, stop):
    """Clients without a certificate: their handshakes fail."""
    while not stop.is_set():
        c = kes.connect(None)
        try:
            c.request("GET", "/v1/status")
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            c.close()
        time.sleep(0.25)


def phase(name, seconds):
    print("%6.0f s  %s (%d s)" % (time.time() - T0, name, seconds), flush=True)
    time.sleep(seconds)


def main():
    global T0
    ap = argparse.ArgumentParser()
    ap.add_argument("--kes", default=os.path.join(ROOT, "target", "release", "kes"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "grafana", "capture.json"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kes-capture-")
    kes = Kes(args.kes, tmp)
    prom_port = free_port()
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 2s
scrape_configs:
- job_name: kes
  scheme: https
  metrics_path: /v1/metrics
  params:
    all: ['true']
  tls_config:
    ca_file: {tmp}/server.crt
    cert_file: {tmp}/admin.crt
    key_file: {tmp}/admin.key
    server_name: localhost
  static_configs:
  - targets: ['127.0.0.1:{kes.port}']
""")
    prom = subprocess.Popen([args.prometheus, "--config.file", os.path.join(tmp, "prometheus.yml"),
                             "--storage.tsdb.path", os.path.join(tmp, "prom"),
                             "--web.listen-address", "127.0.0.1:%d" % prom_port],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prometheus.log"), "w"))
    admin = Client(kes, "admin")
    for i in range(8):
        admin.call("PUT", "/v1/key/create/minio-key-%d" % i)

    T0 = time.time()
    start = T0
    stop = threading.Event()
    rate = [40.0]  # requests per second and worker (generate + decrypt pairs)
    threads = [threading.Thread(target=minio_worker, args=(kes, stop, rate), daemon=True) for _ in range(4)]
    threads.append(threading.Thread(target=admin_worker, args=(kes, stop), daemon=True))
    for t in threads:
        t.start()
    phase("steady MinIO traffic", 40)

    sub_stop = threading.Event()
    threading.Thread(target=subscriber, args=(kes, "/v1/log/audit", sub_stop), daemon=True).start()
    threading.Thread(target=subscriber, args=(kes, "/v1/log/error", sub_stop), daemon=True).start()
    phase("audit and error log subscribers reading", 20)

    stall_stop = threading.Event()
    threading.Thread(target=subscriber, args=(kes, "/v1/log/audit", stall_stop, False), daemon=True).start()
    threading.Thread(target=scanner, args=(kes, stall_stop), daemon=True).start()
    phase("an audit subscriber that stops reading; a scanner sends long unknown paths", 40)
    stall_stop.set()

    keys = os.path.join(tmp, "keys")
    os.rename(keys, keys + "-away")
    phase("keystore outage (directory gone)", 25)
    os.rename(keys + "-away", keys)
    phase("keystore back", 15)

    rate[0] = 120.0
    phase("burst", 25)
    rate[0] = 40.0

    kes.proc.send_signal(signal.SIGHUP)
    bad_stop = threading.Event()
    threading.Thread(target=bad_certificates, args=(kes, bad_stop), daemon=True).start()
    phase("SIGHUP reload; clients without certificates", 30)
    bad_stop.set()
    sub_stop.set()
    phase("steady again", 30)
    end = time.time()
    stop.set()
    time.sleep(5)  # the last scrapes of the window

    dashboard = json.load(open(DASHBOARD))
    out = {"start": start, "end": end, "step": STEP, "rate_interval": RATE_INTERVAL,
           "prometheus": "Prometheus " + re.search(r"version (\S+)", run([args.prometheus, "--version"])).group(1),
           "panels": []}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        p = {"id": panel["id"], "title": panel["title"], "targets": []}
        for t in panel["targets"]:
            expr = t["expr"].replace("$__rate_interval", RATE_INTERVAL).replace('instance=~"$instance"', 'instance=~".*"')
            q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP})
            url = "http://127.0.0.1:%d/api/v1/query_range?%s" % (prom_port, q)
            reply = json.load(urllib.request.urlopen(url))
            if reply["status"] != "success":
                raise SystemExit("query failed: %s: %s" % (expr, reply))
            p["targets"].append({"expr": t["expr"], "legend": t.get("legendFormat", ""),
                                 "series": reply["data"]["result"]})
        out["panels"].append(p)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", args.out)
    prom.terminate()
    kes.proc.terminate()
    prom.wait()
    kes.proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
