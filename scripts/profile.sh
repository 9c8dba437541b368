#!/usr/bin/env bash
# Instructions (and allocations) per request of generate and decrypt, counted by valgrind's
# callgrind: repeatable whatever else the machine is doing, so hot-path changes can be compared
# exactly. Method (docs/benchmarks.md): kes runs under callgrind with instrumentation off; after
# a warm-up, counting is switched on around 1 request and around N+1 requests on one keep-alive
# connection; the difference divided by N is the cost of one request without the handshake.
#
# Usage: scripts/profile.sh [N]      (N = 2000 by default; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

echo "==> building (release with line tables, target/profile) and the load generator" >&2
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=false \
    cargo build --release --quiet --target-dir target/profile
cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
KES=target/profile/release/kes
LOADGEN=bench/loadgen/target/release/loadgen

DIR=$(mktemp -d)
trap 'kill $KES_PID 2>/dev/null; wait $KES_PID 2>/dev/null; rm -rf "$DIR"' EXIT
$KES identity new --key "$DIR/server.key" --cert "$DIR/server.crt" --ip 127.0.0.1 localhost >/dev/null 2>&1
API_KEY=$($KES identity </dev/null)
ADMIN=$($KES identity of "$API_KEY")
$KES identity cert --key "$DIR/client.key" --cert "$DIR/client.crt" "$API_KEY" >/dev/null 2>&1
cat >"$DIR/config.yaml" <<YAML
admin:
  identity: $ADMIN
tls:
  key: $DIR/server.key
  cert: $DIR/server.crt
keystore:
  fs:
    path: $DIR/keys
YAML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/cg.out" \
    $KES server --config "$DIR/config.yaml" --addr "127.0.0.1:$PORT" >"$DIR/kes.log" 2>&1 &
KES_PID=$!
for _ in $(seq 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$PORT/version" && break
    sleep 0.2
done
URL="https://127.0.0.1:$PORT"
kcurl() { curl -sk --cert "$DIR/client.crt" --key "$DIR/client.key" "$@"; }
kcurl -X POST "$URL/v1/key/create/bench" >/dev/null 2>&1
GEN_BODY='{"context":"eyJNaW5JTyBhZG1pbiBBUEkiOiJTZXJ2ZXJJbmZvSGFuZGxlciJ9"}'
CT=$(kcurl -X POST -d "$GEN_BODY" "$URL/v1/key/generate/bench" | python3 -c 'import json,sys;print(json.load(sys.stdin)["ciphertext"])')
DEC_BODY="{\"ciphertext\":\"$CT\",\"context\":\"eyJNaW5JTyBhZG1pbiBBUEkiOiJTZXJ2ZXJJbmZvSGFuZGxlciJ9\"}"

# count OP BODY REQUESTS: instructions and allocations of REQUESTS requests on one connection.
count() {
    callgrind_control -z "$KES_PID" >/dev/null 2>&1
    callgrind_control -i on "$KES_PID" >/dev/null 2>&1
    $LOADGEN run -c 1 -n "$3" --url "$URL/v1/key/$1/bench" --body "$2" \
        --cert "$DIR/client.crt" --key "$DIR/client.key" --cacert "$DIR/server.crt" >/dev/null 2>&1
    callgrind_control -i off "$KES_PID" >/dev/null 2>&1
    rm -f "$DIR"/cg.out.*
    callgrind_control -d "$KES_PID" >/dev/null 2>&1
    local f=""
    for _ in $(seq 50); do
        f=$(ls -t "$DIR"/cg.out.* 2>/dev/null | head -1)
        [ -n "$f" ] && break
        sleep 0.1
    done
    [ -n "$f" ] || { echo "profile.sh: callgrind wrote no dump" >&2; exit 1; }
    # Instructions, then calls of the allocator functions (summed over every caller).
    python3 - "$f" <<'PY'
import re, sys
names, calls, cfn = {}, {"malloc": 0, "calloc": 0, "realloc": 0, "free": 0}, None
total = 0
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("totals:"):
        total = int(line.split()[1])
    # A name is given once, with its id ("fn=(12) malloc"); later lines give the id only.
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1):
            cfn = names.get(m.group(2))
        continue
    if line.startswith("calls=") and cfn in calls:
        calls[cfn] += int(line[6:].split()[0])
print(total, calls["malloc"], calls["calloc"], calls["realloc"], calls["free"])
PY
}

echo "==> counting ($N requests per operation)" >&2
for op in generate decrypt; do
    body=$GEN_BODY
    [ "$op" = decrypt ] && body=$DEC_BODY
    $LOADGEN run -c 1 -n 50 --url "$URL/v1/key/$op/bench" --body "$body" \
        --cert "$DIR/client.crt" --key "$DIR/client.key" --cacert "$DIR/server.crt" >/dev/null 2>&1
    read -r one m1 c1 r1 f1 < <(count "$op" "$body" 1)
    read -r many m2 c2 r2 f2 < <(count "$op" "$body" $((N + 1)))
    per=$(( (many - one) / N ))
    printf '%-9s %8d instructions per request (1 request incl. handshake: %d)\n' "$op" "$per" "$one"
    awk -v op="$op" -v n="$N" -v m=$((m2 - m1)) -v c=$((c2 - c1)) -v r=$((r2 - r1)) -v f=$((f2 - f1)) \
        'BEGIN { printf "%-9s allocator calls per request: malloc %.2f, calloc %.2f, realloc %.2f, free %.2f\n", op, m/n, c/n, r/n, f/n }'
done
