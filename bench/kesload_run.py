#!/usr/bin/env python3
"""One point of the real-client benchmark: runs `kesload` (MinIO's KES client library, from the
reference peers) against a running server and prints one results.jsonl line, the kesload result
plus the CPU time the server and the client used during the run.

Server CPU: utime + stime of the server process (fields 14 and 15 of /proc/PID/stat, in clock
ticks of 1/CLK_TCK s, all threads, exited ones included) read just before kesload starts and just
after it exits, divided by the requests kesload counted (ok). Client CPU: kesload's own user +
system time (getrusage of the finished child, µs resolution), divided likewise. Both include
kesload's set-up (key creation, first connection) and the requests still in flight when its
measured window closes: a few requests' worth, against the tens of thousands of a run.
Other processes: the CPU time every other process used over the same interval (utime + stime +
cutime + cstime of each /proc/PID/stat but the server's and this script's, whose children are
kesload; a process that ends in the interval is counted through its parent's cutime), so that a
run on a machine that was not quiet says so. The busy time of all CPUs (/proc/stat) is recorded
too; it also holds interrupt and softirq time and the cost of waking idle CPUs, which no process
is charged with.

Exit status 0 if kesload exited 0, served at least one request and saw no error; 1 otherwise (the
line is printed either way, with "exit" set to kesload's status).

With --quiet-wait S, it first waits (up to S seconds) until the machine has been quiet for 2 s
(all CPUs together busy less than 0.1 core: our servers are idle between runs), so that a
machine shared with other work gives the run a clean start; how long it waited, and whether the
machine got quiet, is recorded. Whatever starts during the run shows in "other_cores".

Usage: bench/kesload_run.py --server-pid PID --rep N --target NAME --protocol h2|http1 \
           [--quiet-wait S] -- KESLOAD [kesload args...]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")  # getconf CLK_TCK


def server_cpu_s(pid):
    """utime + stime of a process in seconds (resolution 1/CLK_TCK)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    return (utime + stime) / TICK


def machine_busy_s():
    """Busy time of all CPUs in seconds (user nice system irq softirq steal; not idle, iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def others_cpu_s(exclude):
    """CPU seconds of all processes but `exclude`, their reaped children included."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def wait_quiet(limit_s, busy_limit=0.1, need=2):
    """Waits until `need` consecutive 1 s windows had less than `busy_limit` cores busy, at most
    limit_s seconds. Returns (seconds waited, whether it got quiet)."""
    t0 = time.monotonic()
    quiet = 0
    while True:
        a = machine_busy_s()
        time.sleep(1)
        busy = machine_busy_s() - a
        quiet = quiet + 1 if busy < busy_limit else 0
        waited = time.monotonic() - t0
        if quiet >= need:
            return round(waited, 1), True
        if waited >= limit_s:
            return round(waited, 1), False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--rep", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--protocol", choices=["h2", "http1"], required=True,
                    help="h2: the client offers h2 and HTTP/1.1 (MinIO's default); http1: -no-h2")
    ap.add_argument("--quiet-wait", type=float, default=0,
                    help="wait up to this many seconds for a quiet machine before the run")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no kesload command after --")

    result = {}
    quiet = None
    if a.quiet_wait > 0:
        waited, got_quiet = wait_quiet(a.quiet_wait)
        quiet = {"quiet_wait_s": waited, "quiet_at_start": got_quiet}
    try:
        s0 = server_cpu_s(a.server_pid)
    except OSError as e:
        s0 = None
        result["first_error"] = f"server process {a.server_pid} not readable before the run: {e}"
    exclude = {a.server_pid, os.getpid()}
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    o0 = others_cpu_s(exclude)
    m0 = machine_busy_s()
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    m1 = machine_busy_s()
    o1 = others_cpu_s(exclude)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        s1 = server_cpu_s(a.server_pid)
    except OSError as e:
        s1 = None
        result["first_error"] = f"server process {a.server_pid} gone after the run: {e}"

    line = next((l for l in p.stdout.splitlines() if l.startswith("{")), None)
    if line is not None:
        try:
            result = {**json.loads(line), **result}
        except ValueError:
            line = None
    if line is None:
        result.setdefault("first_error", f"kesload printed no JSON result (exit {p.returncode}; its "
                                         f"message is on standard error): {p.stdout.strip()[:300]!r}")
        result.setdefault("ok", 0)
        result.setdefault("errors", 0)
        # Keep the point identifiable from the command line, so a failed run is still grouped.
        args = dict(zip(cmd[1::2], cmd[2::2])) if len(cmd) > 2 else {}
        result.setdefault("op", args.get("-op", "generate"))
        try:
            result.setdefault("c", int(args.get("-c", "8")))
        except ValueError:
            pass

    ok = result.get("ok") or 0
    client = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    server = s1 - s0 if s0 is not None and s1 is not None else None
    result.update({
        "mode": "realclient",
        "concurrency": result.get("c"),
        "protocol": a.protocol,
        "wall_s": round(wall, 3),
        "server_cpu_s": None if server is None else round(server, 3),
        "server_cpu_us_per_req": round(server / ok * 1e6, 2) if server is not None and ok else None,
        "client_cpu_s": round(client, 3),
        "client_cpu_us_per_req": round(client / ok * 1e6, 2) if ok else None,
        "clk_tck": TICK,
        "machine_busy_cores": round((m1 - m0) / wall, 3) if wall else None,
        "other_cores": round(max(o1 - o0, 0.0) / wall, 3) if wall else None,
    })
    if quiet:
        result.update(quiet)
    row = {"rep": a.rep, "part": "realclient", "target": a.target, "op": result.get("op", "?"),
           "exit": p.returncode, "result": result}
    print(json.dumps(row, separators=(",", ":")))
    good = p.returncode == 0 and ok > 0 and not result.get("errors") and server is not None
    if not good:
        print(f"kesload_run: {a.target} {result.get('op')} c={result.get('c')} {a.protocol}: exit "
              f"{p.returncode}, ok {ok}, errors {result.get('errors')}, first error: "
              f"{result.get('first_error') or '-'}", file=sys.stderr)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
