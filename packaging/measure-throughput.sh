#!/usr/bin/env bash
# Measures generate requests/s of one or more kes binaries, one after the other under the same
# load, to compare builds (glibc vs static musl, one allocator vs another). Not a benchmark suite
# (that is bench/): a quick, repeatable figure for packaging decisions.
#
# Usage: packaging/measure-throughput.sh [-c CONNECTIONS] [-z SECONDS] [-r ROUNDS] BINARY...
#
# Method: each binary serves on 127.0.0.1 with the filesystem keystore in a temporary directory;
# oha (cargo install --locked oha; found on PATH or in target/tools/bin) sends POST
# /v1/key/generate/bench for SECONDS over CONNECTIONS keep-alive mTLS connections, as the admin
# identity (an API key turned into a client certificate by `kes identity cert`). The client
# shares the machine's cores with the server, as in dependencies.md's prototype figures. The binaries take turns for ROUNDS rounds so that load from other processes
# on the machine spreads over all of them; the median of the rounds is printed. Also printed: the
# server's peak resident memory (VmHWM) after the run; the server runs as the calling user, so as
# root it locks its memory (mlockall) exactly as under systemd.
set -euo pipefail

conns=8 seconds=10 rounds=3
while getopts c:z:r: opt; do
    case $opt in
    c) conns=$OPTARG ;;
    z) seconds=$OPTARG ;;
    r) rounds=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-c CONNS] [-z SECONDS] [-r ROUNDS] BINARY..." >&2; exit 2; }
PATH=$PATH:$(cd "$(dirname "$0")/.." && pwd)/target/tools/bin
command -v oha >/dev/null || { echo "$0: needs oha (cargo install --locked oha)" >&2; exit 1; }

# Under target/, not /tmp: other test suites on a shared machine clean /tmp/tmp.* up.
mkdir -p "$(dirname "$0")/../target"
work=$(mktemp -d "$(cd "$(dirname "$0")/../target" && pwd)/measure-XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

kes0=$1
"$kes0" identity new --key "$work/server.key" --cert "$work/server.cert" --ip 127.0.0.1 --dns localhost localhost >/dev/null
# The API key is the first kes:v1: word of `kes identity new` (in every version's output).
api_key=$("$kes0" identity new </dev/null | grep -o 'kes:v1:[A-Za-z0-9+/=]*' | head -n1)
admin=$("$kes0" identity of "$api_key")
"$kes0" identity cert --key "$work/client.key" --cert "$work/client.cert" "$api_key" >/dev/null

port=$((20000 + RANDOM % 20000))
cat >"$work/config.yaml" <<YAML
address: 127.0.0.1:$port
admin:
  identity: $admin
tls:
  key: $work/server.key
  cert: $work/server.cert
keys:
  - name: bench
keystore:
  fs:
    path: $work/keys
YAML

# run BINARY: writes "requests/s peak-RSS-KiB" to $work/result. Runs in this shell (not in a
# $(...) subshell) so that the EXIT trap knows the server's pid.
run() {
    # Emptied here, not by the background child's redirection, so that the wait below cannot
    # see the previous server's banner.
    : >"$work/server.log"
    "$1" server --config "$work/config.yaml" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        grep -q '^MLock' "$work/server.log" && break
        sleep 0.1
    done
    grep -q '^MLock' "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
    local out rps hwm
    out=$(oha --no-tui --output-format json -z "${seconds}s" -c "$conns" -m POST -d '{"context":"e30="}' \
        --cacert "$work/server.cert" --cert "$work/client.cert" --key "$work/client.key" \
        "https://localhost:$port/v1/key/generate/bench" 2>&1)
    rps=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
codes = r["statusCodeDistribution"]
# Requests still in flight when the time is up are "aborted due to deadline": not errors.
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
if set(codes) != {"200"} or errors:
    sys.exit("unexpected replies: %s %s" % (codes, errors))
print(round(r["summary"]["requestsPerSec"]))' "$out") || {
        echo "$0: requests failed with $1: $out" >&2
        exit 1
    }
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    echo "$rps $hwm" >"$work/result"
}

declare -A results
for round in $(seq "$rounds"); do
    for bin in "$@"; do
        run "$bin"
        r=$(cat "$work/result")
        echo "round $round  $bin  $r" >&2
        results[$bin]+="$r"$'\n'
    done
done
printf '%-60s %12s %14s\n' binary "requests/s" "peak RSS KiB"
for bin in "$@"; do
    med_rps=$(printf '%s' "${results[$bin]}" | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    med_rss=$(printf '%s' "${results[$bin]}" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-60s %12s %14s\n' "$bin" "$med_rps" "$med_rss"
done
echo "($rounds rounds of ${seconds}s over $conns keep-alive connections, binaries interleaved; medians)"
