#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ one after another, each for a bounded time. Not part of CI's test
# run (.ci/run): fuzzing is CPU-heavy and open-ended. See docs/fuzzing.md.
#
#   scripts/fuzz.sh                  every target for 60 s
#   scripts/fuzz.sh 600              every target for 10 minutes (the campaign of docs/fuzzing.md)
#   scripts/fuzz.sh 120 http_request config
#   scripts/fuzz.sh 0                build, and replay the seeds and fuzz/regressions only
#
# What it does:
# * installs cargo-fuzz if it is missing (`cargo install cargo-fuzz --locked`, a few minutes);
# * builds the targets with `RUSTC_BOOTSTRAP=1`: cargo-fuzz passes nightly-only `-Z` flags to
#   rustc (sanitizer coverage), and RUSTC_BOOTSTRAP lets the stable toolchain accept them;
# * builds with debug assertions and overflow checks on (cargo-fuzz's default) and no sanitizer:
#   the crate has no unsafe code to check, and a panic is what we look for. FUZZ_SANITIZER=address
#   turns AddressSanitizer on;
# * writes the seed corpus (fuzz/seeds.py) into fuzz/corpus/<target>/, which then grows;
# * replays fuzz/regressions/<target>/* (inputs that once crashed), then fuzzes with one job and
#   one worker at nice 19, so that other work on the machine goes first;
# * runs the config target without network (`unshare --net`), because the loader resolves host
#   names in `address:` and a fuzzer must not send random names to a resolver;
# * prints executions, corpus entries and coverage per target into fuzz/logs/summary.txt, and exits
#   non-zero when a target crashed (the input is in fuzz/artifacts/<target>/).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
shift || true

export RUSTC_BOOTSTRAP=1
# build.rs otherwise watches .git/HEAD, which a git worktree does not have: kes would be rebuilt
# on every cargo invocation.
export KES_BUILD_COMMIT=fuzz
sanitizer=${FUZZ_SANITIZER:-none}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    nice -n 19 cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

python3 seeds.py
nice -n 19 cargo fuzz build --sanitizer "$sanitizer"
bin="$root/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

netns=()
if unshare --net true 2>/dev/null; then
    netns=(unshare --net --)
fi

mkdir -p logs
summary="$root/fuzz/logs/summary.txt"
failed=()
for target in "${targets[@]}"; do
    corpus="$root/fuzz/corpus/$target"
    artifacts="$root/fuzz/artifacts/$target"
    logs="$root/fuzz/logs/$target"
    mkdir -p "$corpus" "$artifacts" "$logs"
    rm -f "$logs"/fuzz-*.log

    # -timeout is wall-clock time: 120 s, not less, because on a shared machine a process at
    # nice 19 can wait many seconds for a CPU (a 10 s limit reported an input that runs in 1 ms).
    # Every input of these parsers takes well under a millisecond, so a real hang still shows.
    args=(-timeout=120 -rss_limit_mb=2048 -print_final_stats=1 "-artifact_prefix=$artifacts/")
    case $target in
        http_request) args+=("-dict=$root/fuzz/dicts/http.dict") ;;
        config) args+=("-dict=$root/fuzz/dicts/yaml.dict") ;;
        ciphertext | stored_key | small_parsers | crypto_body) args+=("-dict=$root/fuzz/dicts/json.dict") ;;
    esac
    wrap=()
    if [ "$target" = config ]; then
        if [ ${#netns[@]} -eq 0 ]; then
            echo "fuzz.sh: config: cannot run without network (unshare --net failed);" \
                "the target skips inputs that could name a host" >&2
        fi
        wrap=("${netns[@]}")
    fi

    before=$(find "$artifacts" -type f | wc -l)
    # Inputs that crashed once must not crash again.
    regressions=("$root/fuzz/regressions/$target"/*)
    if [ -e "${regressions[0]}" ]; then
        if ! "${wrap[@]}" "$bin/$target" "${args[@]}" "${regressions[@]}" >"$logs/regressions.log" 2>&1; then
            echo "fuzz.sh: $target: a regression input crashes again, see $logs/regressions.log" >&2
            failed+=("$target")
            continue
        fi
    fi
    if [ "$seconds" -eq 0 ]; then
        "${wrap[@]}" "$bin/$target" "${args[@]}" -runs=0 "$corpus" >"$logs/replay.log" 2>&1 ||
            failed+=("$target")
        continue
    fi

    echo "fuzz.sh: $target for ${seconds}s" >&2
    start=$(date +%s)
    # -jobs=1 -workers=1: one fuzzing process, its output in $logs/fuzz-0.log.
    (cd "$logs" && nice -n 19 "${wrap[@]}" "$bin/$target" "${args[@]}" -jobs=1 -workers=1 \
        -max_total_time="$seconds" "$corpus") >"$logs/driver.log" 2>&1 || true
    elapsed=$(( $(date +%s) - start ))

    log="$logs/fuzz-0.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    entries=$(find "$corpus" -type f | wc -l)
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    load=$(cut -d' ' -f1 /proc/loadavg)
    line="$(date -u +%FT%TZ) $target: ${elapsed}s, ${runs:-?} executions, corpus ${entries} entries, cov ${cov:-?} edges, ft ${ft:-?} features, ${crashes} new crash files (load ${load})"
    echo "$line" | tee -a "$summary"
    if [ "$crashes" -gt 0 ] || grep -qE '^(==[0-9]+== ERROR|SUMMARY: libFuzzer)' "$log"; then
        echo "fuzz.sh: $target crashed, see $log and $artifacts" >&2
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
