#!/usr/bin/env python3
"""Turns a benchmark run (results.jsonl + env.json, written by scripts/bench.sh) into summary.md
and plots (SVG, written here: no plotting library needed).

Every figure is the median over the repetitions of the run; "min-max" ranges show the spread.
Ratios against the targets of issue 8 are computed from the same run, and the real-client goals
(kes beside the Go server, driven by MinIO's client library) are stated as met or not met with
their figures. Nothing here fails: no goal is turned into an exit status.

Usage: bench/report.py RUN_DIR
"""
import json
import math
import os
import statistics
import sys

LABELS = {
    "kes": "kes (glibc)",
    "kes-musl": "kes (static musl)",
    "kes-nomlock": "kes (glibc, memory not locked)",
    "kes-fs": "kes (filesystem keystore)",
    "kes-vault": "kes (Vault keystore)",
    "openbao": "OpenBao transit",
    "tlsconst": "TLS ceiling: rustls constant reply",
    "nginx": "TLS ceiling: nginx constant reply",
}
COLORS = {"kes": "#1f77b4", "kes-musl": "#17becf", "openbao": "#d62728",
          "tlsconst": "#2ca02c", "nginx": "#7f7f7f"}


def load(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "results.jsonl")) if l.strip()]
    env_path = os.path.join(run_dir, "env.json")
    env = json.load(open(env_path)) if os.path.exists(env_path) else {}
    return rows, env


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:,.{digits}f}".replace(",", " ")


def us(x):
    """Latency in µs, shown in ms above 10 ms."""
    if x is None:
        return "–"
    if x >= 10000:
        return f"{x / 1000:.0f} ms"
    if x >= 1000:
        return f"{x / 1000:.2f} ms"
    return f"{x:.0f} µs"


def group(rows, **want):
    out = {}
    for r in rows:
        if all(r.get(k) == v for k, v in want.items() if k != "mode") and isinstance(r.get("result"), dict):
            res = r["result"]
            if "mode" in want and res.get("mode") != want["mode"]:
                continue
            out.setdefault((r["target"], r["op"], res.get("connections")), []).append(r)
    return out


def stat(runs, key, sub=None):
    vals = []
    for r in runs:
        v = r["result"].get(key)
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        vals.append(v)
    return med(vals), min((v for v in vals if v is not None), default=None), max((v for v in vals if v is not None), default=None)


def keepalive(rows):
    g = group(rows, mode="keep-alive")
    table = {}
    for (target, op, c), runs in g.items():
        if op in ("list-burst", "fill-cache", "cold", "create-keys", "startup"):
            continue
        rps = stat(runs, "rps")
        table[(target, op, c)] = {
            "rps": rps[0], "rps_min": rps[1], "rps_max": rps[2],
            "p50": stat(runs, "latency_us", "p50")[0],
            "p99": stat(runs, "latency_us", "p99")[0],
            "p999": stat(runs, "latency_us", "p999")[0],
            "mean": stat(runs, "latency_us", "mean")[0],
            "cpu": stat(runs, "server_cpu_us_per_req")[0],
            "client_cpu": stat(runs, "client_cpu_us_per_req")[0],
            "errors": sum(r["result"].get("errors", 0) for r in runs),
            "reps": len(runs),
            "tls": runs[0]["result"].get("tls", ""),
        }
    return table


def ratio(a, b):
    return a / b if a is not None and b else None


def summary(rows, env):
    rc_rows = [r for r in rows if r.get("part") == "realclient"]
    rows = [r for r in rows if r.get("part") != "realclient"]
    t = keepalive(rows)
    conns = sorted({c for (_, _, c) in t})
    out = []
    w = out.append
    w(f"# Benchmark run {env.get('date', '?')} ({env.get('mode', '?')})\n")
    if not rows:  # only the realclient part
        w(f"Commit {env.get('commit', '?')}; {env.get('cpu', '?')}, {env.get('cores', '?')} cores, Linux "
          f"{env.get('kernel', '?')}; {env.get('rustc', '?')}. kes build: {env.get('profile', '?')}. "
          f"Parts run: {env.get('parts', '?')}. Runs with errors: {env.get('failed_runs', '?')}.\n")
        realclient(rc_rows, env, w)
        return "\n".join(out) + "\n", t
    w(f"Commit {env.get('commit', '?')}; {env.get('cpu', '?')}, {env.get('cores', '?')} cores, Linux "
      f"{env.get('kernel', '?')}; {env.get('rustc', '?')}; {env.get('openbao', '?')}; nginx "
      f"{env.get('nginx') or 'not installed'}. kes build: {env.get('profile', '?')}"
      f"{' + static musl' if env.get('musl') else ''}; memory locking: {env.get('mlock', '?')}.")
    w(f"{env.get('reps', '?')} interleaved repetitions of {env.get('duration_s', '?')} s "
      f"(after {env.get('warmup_s', '?')} s warm-up) per point; figures are medians over the "
      f"repetitions, ranges are min-max. Load average before the run: {env.get('loadavg_before') or '?'}, "
      f"after: {' '.join(env.get('loadavg_after', []))}. "
      + (f"Matrix {env['seconds_matrix']} s, " if env.get("seconds_matrix") is not None else
         f"Parts run: {env.get('parts', '?')}; ")
      + f"whole run {env.get('seconds_total', '?')} s. Runs with errors: {env.get('failed_runs', '?')}.\n")
    w("Client and servers share the machine's cores: every server's figure includes the load "
      "generator's CPU competing with it, the same for all. The load generator is bench/loadgen "
      "(closed loop; keep-alive connections opened before the measured window and driven by one "
      "epoll event loop per core; ECDSA P-256 client certificate).\n")

    if t:  # the keep-alive matrix ran
        w("## Keep-alive: requests/s and latency by connections\n")
        w("generate = kes `POST /v1/key/generate/<key>` (MinIO-like context) and OpenBao "
          "`POST /v1/transit/datakey/plaintext/<key>`; decrypt = kes `POST /v1/key/decrypt/<key>` and "
          "OpenBao `POST /v1/transit/decrypt/<key>`; const = a constant reply of the same size over the "
          "same TLS (the ceiling).\n")
        w("| op | server | conns | req/s (median, min-max) | p50 | p99 | p99.9 | server CPU/req | client CPU/req | errors |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        order = ["kes", "kes-musl", "openbao", "tlsconst", "nginx"]
        for op in ["generate", "decrypt", "const"]:
            for target in order:
                for c in conns:
                    r = t.get((target, op, c))
                    if not r:
                        continue
                    w(f"| {op} | {LABELS.get(target, target)} | {c} | {fmt(r['rps'])} ({fmt(r['rps_min'])}-{fmt(r['rps_max'])}) "
                      f"| {us(r['p50'])} | {us(r['p99'])} | {us(r['p999'])} | {us(r['cpu'])} | {us(r['client_cpu'])} | {r['errors']} |")
        w("")
        tls = {}
        for (target, _, _), r in t.items():
            if r.get("tls"):
                tls.setdefault(r["tls"], set()).add(LABELS.get(target, target))
        if tls:
            w("Negotiated (TLS version, cipher suite): " + "; ".join(
                f"{', '.join(sorted(names))}: {v}" for v, names in sorted(tls.items())) + ".\n")

        w("## Ratios against the targets of issue 8 (same run)\n")
        w("\"By CPU\" is the same ratio computed from CPU time per request (server + load generator), "
          "i.e. the throughput ratio to expect when the two processes have the cores to themselves; "
          "it is much less sensitive to other load on the machine than requests/s.\n")
        w("| target | measured (req/s) | by CPU | goal |")
        w("|---|---:|---:|---|")

        def get(target, op, c, k="rps"):
            return (t.get((target, op, c)) or {}).get(k)

        def cpu_ratio(a, b):
            """Throughput ratio a/b implied by CPU per request (server + client)."""
            ra, rb = t.get(a), t.get(b)
            if not ra or not rb or None in (ra["cpu"], ra["client_cpu"], rb["cpu"], rb["client_cpu"]):
                return None
            ca, cb = ra["cpu"] + ra["client_cpu"], rb["cpu"] + rb["client_cpu"]
            return cb / ca if ca else None

        def pct(x):
            return "–" if x is None else f"{x * 100:.0f} %"

        def times(x):
            return "–" if x is None else f"{x:.1f}x"

        for op in ["generate", "decrypt"]:
            for c in [8, 64, 256]:
                r = ratio(get("kes", op, c), get("openbao", op, c))
                if r is not None:
                    w(f"| kes {op} / OpenBao {op}, req/s at {c} conns | {r:.1f}x | {times(cpu_ratio(('kes', op, c), ('openbao', op, c)))} | ≥ 10x |")
        for op in ["generate", "decrypt"]:
            p = get("kes", op, 64, "p99")
            if p is not None:
                w(f"| kes {op} p99 at 64 conns | {us(p)} | | < 1 ms |")
        for ceiling in ["tlsconst", "nginx"]:
            for op in ["generate", "decrypt"]:
                r = ratio(get("kes", op, 8), get(ceiling, "const", 8))
                if r is not None:
                    w(f"| kes {op} / {LABELS[ceiling]}, req/s at 8 conns | {r * 100:.0f} % | {pct(cpu_ratio(('kes', op, 8), (ceiling, 'const', 8)))} | ≥ 75 % |")
        for op in ["generate", "decrypt"]:
            for c in conns:
                r = ratio(get("kes-musl", op, c), get("kes", op, c))
                if r is not None:
                    w(f"| kes musl / glibc {op}, req/s at {c} conns | {r * 100:.0f} % | {pct(cpu_ratio(('kes-musl', op, c), ('kes', op, c)))} | ≥ 90 % |")
        big = max(conns) if conns else None
        if big and big > 64:
            for op in ["generate", "decrypt"]:
                r = ratio(get("kes", op, big), get("kes", op, 64))
                if r is not None:
                    w(f"| kes {op} req/s at {big} / at 64 conns | {r * 100:.0f} % | {pct(cpu_ratio(('kes', op, big), ('kes', op, 64)))} | ≥ 100 % (does not fall) |")
                x, p99, mean = get("kes", op, big), get("kes", op, big, "p99"), get("kes", op, big, "mean")
                if x and p99:
                    queue_us = big / x * 1e6
                    w(f"| kes {op} at {big} conns: p99 ÷ queue time (conns ÷ req/s = {us(queue_us)}) | {p99 / queue_us:.1f}x | | no more than about 2x: latency is the queue |")
        w("")

    # New connections.
    nc = group(rows, mode="new-conn")
    if nc:
        w("## A new mutual-TLS connection per request\n")
        w("Each request opens a TCP connection, does a full TLS handshake (no resumption) presenting "
          "the client certificate, sends one request (kes: generate; OpenBao: datakey; ceilings: "
          "constant) and closes. OpenBao's dev listener does not ask for a client certificate, so "
          "its handshakes skip the client's signature and its check.\n")
        w("| server | client certificate | connections/s (median, min-max) | p50 | p99 | server CPU/conn |")
        w("|---|---|---:|---:|---:|---:|")
        for (target, op, c), runs in sorted(nc.items()):
            kind = op.split("-", 1)[1] if "-" in op else "(not requested)"
            rps = stat(runs, "rps")
            w(f"| {LABELS.get(target, target)} | {kind} | {fmt(rps[0])} ({fmt(rps[1])}-{fmt(rps[2])}) "
              f"| {us(stat(runs, 'latency_us', 'p50')[0])} | {us(stat(runs, 'latency_us', 'p99')[0])} "
              f"| {us(stat(runs, 'server_cpu_us_per_req')[0])} |")
        w("")

    lb = {k: v for k, v in group(rows, op="list-burst").items()}
    if lb:
        w("## MinIO LIST burst: serial decrypts on one connection\n")
        w("| server | requests | total time (median, min-max) | p50 | p99 | max |")
        w("|---|---:|---:|---:|---:|---:|")
        for (target, op, c), runs in sorted(lb.items()):
            s = stat(runs, "seconds")
            w(f"| {LABELS.get(target, target)} | {runs[0]['result']['ok']} | {s[0] * 1000:.1f} ms ({s[1] * 1000:.1f}-{s[2] * 1000:.1f}) "
              f"| {us(stat(runs, 'latency_us', 'p50')[0])} | {us(stat(runs, 'latency_us', 'p99')[0])} | {us(stat(runs, 'latency_us', 'max')[0])} |")
        w("")

    cold = [r for r in rows if r["op"] in ("cold", "cold-reads", "cold-pending")]
    if cold:
        w("## Cold path: first use of keys\n")
        for r in cold:
            res = r["result"]
            if r["op"] == "cold":
                store = "Vault (OpenBao K/V v1)" if r["target"] == "kes-vault" else "filesystem"
                w(f"- {store}: {res['ok']} generate requests for {res['ok'] // 4 if res['ok'] else 0} keys, "
                  f"each key asked for 4 times in a row, {res['connections']} connections: "
                  f"{res['seconds']:.2f} s, {fmt(res['rps'])} req/s, p50 {us(res['latency_us']['p50'])}, "
                  f"p99 {us(res['latency_us']['p99'])}, errors {res['errors']}.")
            elif r["op"] == "cold-reads":
                store = "Vault" if r["target"] == "kes-vault" else "filesystem"
                w(f"- {store} keystore reads during a cold run ({res.get('how', '')}): "
                  f"{res.get('keystore_reads')} for {res['keys']} keys (goal: exactly one per key).")
            else:
                w(f"- Vault keystore: **pending** (not in this build: {res['reason']}).")
        w("")

    mem = [r for r in rows if r["op"] in ("memory", "hold")]
    if mem:
        w("## Memory (resident set size)\n")
        w("| server | what | RSS |")
        w("|---|---|---:|")
        for r in mem:
            res = r["result"]
            what = res.get("what") or f"{res.get('opened')} open connections (one request each)"
            if r["op"] == "hold" and res.get("failed"):
                what += f", {res['failed']} failed"
            kib = res.get("rss_kib")
            w(f"| {LABELS.get(r['target'], r['target'])} | {what} | {fmt(kib / 1024, 1) + ' MiB' if kib else '–'} |")
        w("")

    st = group(rows, op="startup")
    if st:
        w("## Start-up: exec to the first served request\n")
        w("kes: `kes server --config` with the filesystem keystore, until a generate succeeds. "
          "OpenBao: `bao server -dev -dev-tls`, until `/v1/sys/health` answers 200 (transit not yet "
          "mounted: a lower bound).\n")
        w("| server | median | min-max | runs |")
        w("|---|---:|---:|---:|")
        runs_by = {}
        for r in rows:
            if r["op"] == "startup":
                runs_by.setdefault(r["target"], []).append(r["result"].get("startup_ms"))
        for target, ms in runs_by.items():
            good = [m for m in ms if m is not None]
            w(f"| {LABELS.get(target, target)} | {fmt(med(good), 1)} ms | {fmt(min(good, default=None), 1)}-{fmt(max(good, default=None), 1)} ms | {len(good)}/{len(ms)} |")
        w("")
    if rc_rows:
        realclient(rc_rows, env, w)
    return "\n".join(out) + "\n", t


# ------------------------------------------------------------------------ the realclient part
RC_SERVERS = ["kes", "kes-go"]
RC_OPS = ["generate", "decrypt"]


def rc_points(rows):
    """(target, op, protocol, concurrency) -> [result, ...] of the kesload runs."""
    pts = {}
    for r in rows:
        res = r.get("result") or {}
        if res.get("mode") == "realclient":
            key = (r["target"], res.get("op", r["op"]), res.get("protocol"), res.get("concurrency"))
            pts.setdefault(key, []).append(res)
    return pts


def rc_agg(runs):
    def m(k):
        return med([x.get(k) for x in runs])

    def cores(k):
        return med([x[k] / x["wall_s"] if x.get(k) is not None and x.get("wall_s") else None for x in runs])

    rps = [x.get("rps") for x in runs if x.get("rps") is not None]
    return {
        "rps": med(rps), "rps_min": min(rps, default=None), "rps_max": max(rps, default=None),
        "p50": m("p50_us"), "p99": m("p99_us"),
        "cpu": m("server_cpu_us_per_req"), "client_cpu": m("client_cpu_us_per_req"),
        "dials": m("dials"), "handshakes": m("handshakes"), "resumed": m("resumed"),
        "server_cores": cores("server_cpu_s"), "client_cores": cores("client_cpu_s"),
        "other_cores": m("other_cores"), "machine_cores": m("machine_busy_cores"),
        "errors": sum(x.get("errors") or 0 for x in runs),
        "first_error": next((x["first_error"] for x in runs if x.get("first_error")), ""),
        "reps": len(runs),
    }


def cpu_us(x):
    return "–" if x is None else f"{x:.1f} µs"


def realclient(rows, env, w):
    w("## Real client: MinIO's KES library (kesload) beside the Go KES server\n")
    not_run = [r for r in rows if r["op"] == "not-run"]
    if not_run:
        w(f"**Did not run**: {not_run[0]['result'].get('reason', '?')}. No figure of this part comes "
          "from this run, and none of its goals was measured.\n")
        return
    servers = {r["target"]: r["result"] for r in rows if r["op"] == "server"}
    pts = rc_points(rows)
    if not pts:
        w("**No measurement**: the part started but recorded no kesload run.\n")
        return
    agg = {k: rc_agg(v) for k, v in pts.items()}

    def desc(t):
        s = servers.get(t, {})
        return f"{s.get('version', '?')}; answers h2,http/1.1 with {s.get('alpn', '?')}"

    w(f"kesload (MinIO's client library kms-go/kes v0.3.1, configured as MinIO configures it: h2 "
      f"offered, the default transport's 2 idle HTTP/1.1 connections per host, a TLS session cache; "
      f"C goroutines share one client) against `kes server --dev` ({desc('kes')}) and "
      f"`kes-go server --dev` ({desc('kes-go')}), both with an in-memory keystore, on 127.0.0.1. "
      f"{env.get('reps', '?')} interleaved repetitions of "
      f"{env.get('duration_s', '?')} s per point (each point on both servers back to back, the first "
      f"server alternating), after a {env.get('warmup_s', '?')} s warm-up per server; medians over the "
      f"repetitions, req/s ranges min-max. Load average before the part: "
      f"{env.get('realclient_loadavg_before') or '?'}, after: {env.get('realclient_loadavg_after') or '?'}"
      f"; the part took {env.get('realclient_seconds') or '?'} s.\n")
    ticks = [(1 / x["clk_tck"]) / x["ok"] * 1e6 for v in pts.values() for x in v
             if x.get("clk_tck") and x.get("ok")]
    w("Server CPU/req: utime + stime of the server process (`/proc/PID/stat`) over the kesload run, "
      "divided by the requests served; its clock tick"
      + (f" makes a resolution of at most {max(ticks):.2f} µs per request in this run" if ticks else "")
      + ". kesload's own CPU (its rusage) likewise, in the second table. Both include kesload's "
      "set-up (key creation, first connection). dials / handshakes / resumed: TCP connections "
      "kesload opened, TLS handshakes, and how many of them resumed a session, during the measured "
      "window.\n")

    def srv(a):
        if not a:
            return ["–"] * 4
        return [f"{fmt(a['rps'])} ({fmt(a['rps_min'])}-{fmt(a['rps_max'])})",
                f"{us(a['p50'])} / {us(a['p99'])}", cpu_us(a["cpu"]),
                f"{fmt(a['dials'])} / {fmt(a['handshakes'])} / {fmt(a['resumed'])}"]

    def x(v):
        return "–" if v is None else f"{v:.2f}"

    keys = sorted({(op, proto, c) for (_, op, proto, c) in pts},
                  key=lambda k: (k[1] != "h2", RC_OPS.index(k[0]) if k[0] in RC_OPS else 9, k[2] or 0))
    w("| op | C | kes req/s (min-max) | kes p50 / p99 | kes CPU/req | kes-go req/s (min-max) "
      "| kes-go p50 / p99 | kes-go CPU/req | req/s kes÷kes-go | CPU/req kes÷kes-go "
      "| kes dials / handshakes / resumed | kes-go dials / handshakes / resumed | errors kes / kes-go |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op, proto, c in keys:
        a, b = agg.get(("kes", op, proto, c)), agg.get(("kes-go", op, proto, c))
        sa, sb = srv(a), srv(b)
        label = op if proto == "h2" else f"{op}, HTTP/1.1 only (-no-h2)"
        w(f"| {label} | {c} | {sa[0]} | {sa[1]} | {sa[2]} | {sb[0]} | {sb[1]} | {sb[2]} "
          f"| {x(ratio(a and a['rps'], b and b['rps']))} | {x(ratio(a and a['cpu'], b and b['cpu']))} "
          f"| {sa[3]} | {sb[3]} | {a['errors'] if a else '–'} / {b['errors'] if b else '–'} |")
    w("")
    errs = [(k, v["first_error"]) for k, v in agg.items() if v["errors"] and v["first_error"]]
    for (t, op, proto, c), e in errs:
        w(f"- first error, {t} {op} C={c} {proto}: `{e}`")
    if errs:
        w("")

    w(f"How the {env.get('cores', '?')} cores were shared (CPU per request, and cores busy: CPU seconds ÷ "
      "the kesload run's wall time; \"other processes\": the CPU time of every other process over the "
      "run, from /proc; \"all CPUs busy\": /proc/stat, which also holds interrupt and softirq time and "
      "the cost of waking idle CPUs that no process is charged with; medians):\n")
    w("| op | C | server | server CPU/req | kesload CPU/req | server cores | kesload cores | other processes | all CPUs busy |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for op, proto, c in keys:
        for t in RC_SERVERS:
            a = agg.get((t, op, proto, c))
            if a:
                label = op if proto == "h2" else f"{op}, HTTP/1.1 only"
                w(f"| {label} | {c} | {t} | {cpu_us(a['cpu'])} | {cpu_us(a['client_cpu'])} "
                  f"| {x(a['server_cores'])} | {x(a['client_cores'])} | {x(a['other_cores'])} "
                  f"| {x(a['machine_cores'])} |")
    w("")
    others = [r.get("other_cores") for v in pts.values() for r in v if r.get("other_cores") is not None]
    if others:
        busy = sorted(((k, r) for k, v in pts.items() for r in v if (r.get("other_cores") or 0) > 0.2),
                      key=lambda kr: -kr[1]["other_cores"])
        w(f"Other processes during the kesload runs: median {med(others):.2f} cores, max {max(others):.2f}; "
          f"{len(busy)} of {len(others)} runs had more than 0.2 cores of other work"
          + (" (their figures are lower and noisier than on a quiet machine): " + "; ".join(
              f"{t} {op} C={c}{'' if proto == 'h2' else ' HTTP/1.1'} {r['other_cores']:.2f}"
              for (t, op, proto, c), r in busy) + "." if busy else ".")
          + "\n")
    waits = [r for v in pts.values() for r in v if "quiet_at_start" in r]
    if waits:
        w(f"Each run waited for a quiet machine first (--quiet-wait): median wait "
          f"{med([r['quiet_wait_s'] for r in waits]):.0f} s, longest {max(r['quiet_wait_s'] for r in waits):.0f} s; "
          f"{sum(1 for r in waits if not r['quiet_at_start'])} of {len(waits)} runs started without the "
          "machine having become quiet.\n")

    # The goals, judged on the medians.
    w("### Real-client goals\n")
    w("| goal | measured | |")
    w("|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("met" if ok else "**not met**")

    def get(t, op, c, proto="h2"):
        return agg.get((t, op, proto, c))

    for op in RC_OPS:
        for c in (64, 256):
            a, b = get("kes", op, c), get("kes-go", op, c)
            if not a or not b:
                w(f"| {op}, C={c}: kes ≥ 1.5× kes-go req/s, lower p99, ≤ 0.4× its server CPU/req | not measured | – |")
                continue
            r = ratio(a["rps"], b["rps"])
            w(f"| {op}, C={c}: kes req/s ≥ 1.5× kes-go | {fmt(a['rps'])} vs {fmt(b['rps'])}: {x(r)}× "
              f"| {verdict(None if r is None else r >= 1.5)} |")
            pa, pb = a["p99"], b["p99"]
            w(f"| {op}, C={c}: kes p99 below kes-go's | {us(pa)} vs {us(pb)} "
              f"| {verdict(None if pa is None or pb is None else pa < pb)} |")
            r = ratio(a["cpu"], b["cpu"])
            w(f"| {op}, C={c}: kes server CPU/req ≤ 0.4× kes-go's | {cpu_us(a['cpu'])} vs {cpu_us(b['cpu'])}: "
              f"{x(r)}× | {verdict(None if r is None else r <= 0.4)} |")
        for c in (1, 8):
            a, b = get("kes", op, c), get("kes-go", op, c)
            if not a or not b:
                w(f"| {op}, C={c}: kes req/s ≥ kes-go's | not measured | – |")
                continue
            r = ratio(a["rps"], b["rps"])
            w(f"| {op}, C={c}: kes req/s ≥ kes-go's | {fmt(a['rps'])} vs {fmt(b['rps'])}: {x(r)}× "
              f"| {verdict(None if r is None else r >= 1.0)} |")
    h1 = [(k, v) for k, v in pts.items() if k[2] == "http1"]
    if not h1:
        w("| HTTP/1.1 only: ≥ 95 % of kes's handshakes resumed | not measured | – |")
    for (t, op, _, c), runs in sorted(h1):
        if t != "kes":
            continue
        hs = sum(x.get("handshakes") or 0 for x in runs)
        res = sum(x.get("resumed") or 0 for x in runs)
        # One handshake per run is forgiven: the first may find no session to resume.
        could = sum(max((x.get("handshakes") or 0) - 1, 0) for x in runs)
        other = [v for k, v in pts.items() if k[0] == "kes-go" and k[2] == "http1" and k[3] == c]
        ohs = sum(x.get("handshakes") or 0 for v in other for x in v)
        ores = sum(x.get("resumed") or 0 for v in other for x in v)
        if hs == 0:
            w(f"| HTTP/1.1 only ({op}, C={c}): ≥ 95 % of kes's handshakes resumed | no handshake in the "
              f"measured windows (connections kept) | met |")
            continue
        share = min(res / could, 1.0) if could else 1.0
        w(f"| HTTP/1.1 only ({op}, C={c}): ≥ 95 % of kes's handshakes resumed (one per run forgiven) "
          f"| {fmt(res)} of {fmt(hs)} handshakes resumed over {len(runs)} runs: {share * 100:.1f} % "
          f"(kes-go: {fmt(ores)} of {fmt(ohs)}) | {verdict(share >= 0.95)} |")
    w("")


# ------------------------------------------------------------------------------------ SVG plots
def svg_plot(t, path):
    conns = sorted({c for (_, _, c) in t})
    if not conns:
        return
    W, H, M = 460, 300, (60, 20, 30, 45)  # panel size; margins left, right, top, bottom
    panels = [("generate", "rps", "generate: requests/s"), ("generate", "p99", "generate: p99 latency"),
              ("decrypt", "rps", "decrypt: requests/s"), ("decrypt", "p99", "decrypt: p99 latency")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{2 * H + 40}" '
             f'font-family="sans-serif" font-size="11">', f'<rect width="100%" height="100%" fill="white"/>']
    xlo, xhi = math.log10(min(conns)), math.log10(max(conns))
    if xhi == xlo:
        xhi = xlo + 1
    for i, (op, key, title) in enumerate(panels):
        ox, oy = (i % 2) * W, (i // 2) * H
        series = {}
        for target in ["kes", "kes-musl", "openbao", "tlsconst", "nginx"]:
            o = "const" if target in ("tlsconst", "nginx") else op
            pts = [(c, t[(target, o, c)][key]) for c in conns if (target, o, c) in t and t[(target, o, c)][key]]
            if pts:
                series[target] = pts
        vals = [v for pts in series.values() for _, v in pts]
        if not vals:
            continue
        ylo, yhi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
        if yhi == ylo:
            yhi += 1
        px0, px1, py0, py1 = ox + M[0], ox + W - M[1], oy + H - M[3], oy + M[2]

        def X(c):
            return px0 + (math.log10(c) - xlo) / (xhi - xlo) * (px1 - px0)

        def Y(v):
            return py0 - (math.log10(v) - ylo) / (yhi - ylo) * (py0 - py1)

        parts.append(f'<text x="{(px0 + px1) / 2}" y="{oy + 16}" text-anchor="middle" font-weight="bold">{title}</text>')
        parts.append(f'<rect x="{px0}" y="{py1}" width="{px1 - px0}" height="{py0 - py1}" fill="none" stroke="#444"/>')
        for e in range(ylo, yhi + 1):
            y = Y(10 ** e)
            lab = (f"{10 ** e / 1000:g} ms" if 10 ** e >= 1000 else f"{10 ** e:g} µs") if key == "p99" else f"{10 ** e:g}"
            parts.append(f'<line x1="{px0}" x2="{px1}" y1="{y}" y2="{y}" stroke="#ddd"/>')
            parts.append(f'<text x="{px0 - 4}" y="{y + 4}" text-anchor="end">{lab}</text>')
        for c in conns:
            x = X(c)
            parts.append(f'<line x1="{x}" x2="{x}" y1="{py0}" y2="{py1}" stroke="#eee"/>')
            parts.append(f'<text x="{x}" y="{py0 + 14}" text-anchor="middle">{c}</text>')
        parts.append(f'<text x="{(px0 + px1) / 2}" y="{py0 + 30}" text-anchor="middle">connections (keep-alive)</text>')
        for target, pts in series.items():
            dash = ' stroke-dasharray="5,3"' if target in ("tlsconst", "nginx") else ""
            d = " ".join(f"{X(c):.1f},{Y(v):.1f}" for c, v in pts)
            parts.append(f'<polyline points="{d}" fill="none" stroke="{COLORS[target]}" stroke-width="2"{dash}/>')
            for c, v in pts:
                parts.append(f'<circle cx="{X(c):.1f}" cy="{Y(v):.1f}" r="3" fill="{COLORS[target]}"/>')
    lx = 10
    for target in ["kes", "kes-musl", "openbao", "tlsconst", "nginx"]:
        if any(k[0] == target for k in t):
            parts.append(f'<rect x="{lx}" y="{2 * H + 15}" width="14" height="4" fill="{COLORS[target]}"/>')
            parts.append(f'<text x="{lx + 18}" y="{2 * H + 21}">{LABELS[target]}</text>')
            lx += 30 + 6 * len(LABELS[target])
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run_dir = sys.argv[1]
    rows, env = load(run_dir)
    if not rows:
        sys.exit(f"{run_dir}: no results")
    text, table = summary(rows, env)
    open(os.path.join(run_dir, "summary.md"), "w").write(text)
    svg_plot(table, os.path.join(run_dir, "keepalive.svg"))
    print(text)


if __name__ == "__main__":
    main()
