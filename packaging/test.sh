#!/usr/bin/env bash
# packaging/test.sh: the slow packaging tests. About 10-15 minutes on 2 cores the first time
# (the static LTO build, the offline build of the tarball, a Debian chroot), so not in the
# default suite; run them with
#
#   KES_TEST_PACKAGING=1 scripts/test.sh     (everything), or
#   packaging/test.sh                        (only these)
#   packaging/test.sh rpm_queries rpm_install  (some of them, on the artifacts in target/dist)
#
# Needs root (chroot, unshare -n, dpkg/rpm into a chroot) and the Debian package archive for
# the tools and the chroot (debootstrap); needs no network for the builds it checks to be
# offline. The fast part of the packaging tests is tests/it/packaging.rs (cargo test).
#
# What it checks, each test printing what it measured:
#   build            packaging/build.sh all: static binary, .deb, .rpm, source tarball
#   static_binary    `file` says static; no ELF interpreter, no shared libraries; the server
#                    starts in an empty directory as its root (no libc, no /etc, no CA bundle)
#   tarball_offline  vendor/ has no Windows import libraries; the tarball, extracted, builds
#                    with `cargo build --release --offline --frozen` with no network
#                    (unshare -n) and an empty CARGO_HOME
#   deb_contents     files, conffiles, maintainer scripts; no private key in the package
#   deb_install      dpkg -i into a Debian chroot (debootstrap); the kes user, modes and owners;
#                    systemd-analyze verify of the installed unit; the installed binary, run as
#                    kes with CAP_IPC_LOCK and RLIMIT_MEMLOCK=infinity like the unit, with the
#                    installed config and fs keystore: mlock works, create/generate/decrypt
#                    round trip, SIGHUP reload
#   deb_upgrade      dpkg -i of a newer version keeps an edited config, the keys, certificates
#                    and keystore; the server decrypts what it encrypted before; purge keeps
#                    the keystore
#   rpm_queries      rpm -qlp / --configfiles / --scripts; no private key in the package
#   rpm_install      rpm -i into a copy of the chroot (scriptlets run there); round trip;
#                    reinstall keeps an edited %config(noreplace)
#   systemd_unit     the static binary as /usr/bin/kes under the packaged unit and a real
#                    systemd booted in namespaces (tests/it/systemd.rs): Type=notify start, reload
#                    and refused reload, stop, and its system calls within SystemCallFilter=
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "packaging/test.sh: needs root (chroot, unshare, dpkg --root)" >&2; exit 1; }

WORK=$ROOT/target/packaging-test
TOOLS=$ROOT/target/tools
PRISTINE=$TOOLS/chroot-bookworm
DIST=$ROOT/target/dist
VERSION=$(awk -F'"' '/^\[package\]/ {p = 1} p && /^version *=/ {print $2; exit}' Cargo.toml)
DEB=$DIST/kes_${VERSION}_amd64.deb
RPM=$DIST/kes-$VERSION-1.x86_64.rpm
TARBALL=$DIST/kes-$VERSION.tar.gz

passed=0
failed=0
failures=()
SERVER_PID=
MOUNTS=()

cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

# run_test NAME FUNCTION: runs FUNCTION in a subshell with errexit; prints its output and time.
run_test() {
    local name=$1 start=$SECONDS log=$WORK/$1.log
    echo "--- $name"
    # Each test cleans up after itself (its server, its /proc mounts), pass or fail.
    if ( set -euo pipefail; trap cleanup EXIT; "$2" ) >"$log" 2>&1; then
        sed 's/^/    /' "$log"
        echo "ok $name ($((SECONDS - start)) s)"
        passed=$((passed + 1))
    else
        sed 's/^/    /' "$log"
        echo "FAILED $name ($((SECONDS - start)) s)"
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

fail() {
    echo "FAIL: $*"
    exit 1
}

install_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    command -v rpm >/dev/null || missing+=(rpm)
    command -v cpio >/dev/null || missing+=(cpio)
    command -v file >/dev/null || missing+=(file)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# A minimal Debian 12 root, made once and copied for each install test.
pristine_chroot() {
    [ -x "$PRISTINE/usr/bin/dpkg" ] && return
    echo "==> debootstrap --variant=minbase bookworm (once; cached in $PRISTINE)"
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    rm -rf "$PRISTINE.tmp"
    debootstrap --variant=minbase bookworm "$PRISTINE.tmp" "${mirror:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; return 1; }
    mv "$PRISTINE.tmp" "$PRISTINE"
}

# mount_proc DIR: mounts /proc in the chroot DIR until the test ends.
mount_proc() {
    mount -t proc proc "$1/proc"
    MOUNTS+=("$1/proc")
}

# new_chroot DIR: a fresh copy of the pristine root, with /proc mounted.
new_chroot() {
    umount "$1/proc" 2>/dev/null || true
    ! mountpoint -q "$1/proc" 2>/dev/null || fail "$1/proc is still mounted"
    rm -rf "$1"
    rm -f "$WORK/admin-$(basename "$1")".*
    cp -a "$PRISTINE" "$1"
    mount_proc "$1"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_installed R PORT LOG: starts R's /usr/bin/kes as the unit does (user kes, only
# CAP_IPC_LOCK, RLIMIT_MEMLOCK=infinity, EnvironmentFile /etc/kes/kes.env, the installed config)
# but on 127.0.0.1:PORT. Sets SERVER_PID; waits for the banner.
start_installed() {
    local r=$1 port=$2 log=$3
    # LimitMEMLOCK=infinity, if this machine lets root raise the hard limit (it needs
    # CAP_SYS_RESOURCE, which some containers lack). CAP_IPC_LOCK alone also lets mlockall work.
    local limit=(prlimit --memlock=unlimited:unlimited)
    if ! prlimit --memlock=unlimited:unlimited true 2>/dev/null; then
        echo "note: cannot raise RLIMIT_MEMLOCK here (no CAP_SYS_RESOURCE); running with CAP_IPC_LOCK alone"
        limit=()
    fi
    # Empty the log here: the redirection below happens in the background child, and a log left
    # from an earlier run could otherwise show its banner before the new server starts.
    : >"$log"
    # shellcheck disable=SC2046
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $(grep -E '^[A-Z_]+=' "$r/etc/kes/kes.env") \
        "${limit[@]}" chroot "$r" setpriv --reuid=kes --regid=kes --init-groups \
        --inh-caps=-all,+ipc_lock --ambient-caps=+ipc_lock --bounding-set=-all,+ipc_lock \
        /usr/bin/kes server --config /etc/kes/config.yaml --addr "127.0.0.1:$port" >"$log" 2>&1 &
    SERVER_PID=$!
    local waited=0
    while ! grep -q '^MLock' "$log"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" && rc=0 || rc=$?
            cat "$log"
            fail "the installed server exited with status $rc"
        fi
        [ "$waited" -lt 300 ] || { cat "$log"; ps -o pid,stat,etime,args -p "$SERVER_PID" || true; fail "no banner from the installed server in 30 s"; }
        sleep 0.1
        waited=$((waited + 1))
    done
    cat "$log"
}

stop_installed() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# api R PORT METHOD PATH [BODY]: a request as the admin (R/etc/kes/admin.key), verifying the
# server against the installed certificate R/etc/kes/server.cert. Prints the body; fails on
# a status other than 200.
api() {
    local r=$1 port=$2 method=$3 path=$4 body=${5:-}
    if [ ! -f "$WORK/admin-$(basename "$r").crt" ]; then
        "$r/usr/bin/kes" identity cert --key "$WORK/admin-$(basename "$r").key" \
            --cert "$WORK/admin-$(basename "$r").crt" - <"$r/etc/kes/admin.key" >/dev/null
    fi
    curl -sS --fail-with-body --cacert "$r/etc/kes/server.cert" \
        --cert "$WORK/admin-$(basename "$r").crt" --key "$WORK/admin-$(basename "$r").key" \
        -X "$method" ${body:+-d "$body"} "https://127.0.0.1:$port$path"
}

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# round_trip R PORT: create, generate, decrypt; prints the ciphertext file path it wrote.
round_trip() {
    local r=$1 port=$2 reply plaintext ciphertext back
    api "$r" "$port" POST /v1/key/create/pkg-key >/dev/null
    reply=$(api "$r" "$port" POST /v1/key/generate/pkg-key '{"context":"e30="}')
    plaintext=$(json_field plaintext <<<"$reply")
    ciphertext=$(json_field ciphertext <<<"$reply")
    back=$(api "$r" "$port" POST /v1/key/decrypt/pkg-key "{\"ciphertext\":\"$ciphertext\",\"context\":\"e30=\"}" |
        json_field plaintext)
    [ "$back" = "$plaintext" ] || fail "decrypt gave $back, generate gave $plaintext"
    [ -f "$r/var/lib/kes/keys/pkg-key" ] || fail "the key file is not in /var/lib/kes/keys"
    echo "round trip OK: generate -> decrypt gave the same 32-byte key (ciphertext ${#ciphertext} chars)"
    printf '%s %s\n' "$plaintext" "$ciphertext" >"$WORK/$(basename "$r").datakey"
}

# check_mode R PATH MODE OWNER GROUP: owner and group by name inside R.
check_mode() {
    local r=$1 path=$2 mode=$3 owner=$4 group=$5 got uid gid
    got=$(stat -c '%a %u %g' "$r$path")
    uid=$(chroot "$r" id -u "$owner")
    gid=$(chroot "$r" getent group "$group" | cut -d: -f3)
    [ "$got" = "$mode $uid $gid" ] || fail "$path: mode/uid/gid $got, expected $mode $uid ($owner) $gid ($group)"
    echo "$path: $mode $owner:$group"
}

# no_private_key DIR: fails if any file under DIR (text or binary) holds a PEM private key, i.e.
# a BEGIN ... PRIVATE KEY line followed by base64 (the binary names the header in its parser,
# which is fine), or is named *.key.
no_private_key() {
    python3 - "$1" <<'PY' || fail "a private key is in the package"
import os, re, sys
pem = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]{40,}-----END")
found = []
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(d, f)
        if f.endswith(".key") or (os.path.isfile(p) and pem.search(open(p, "rb").read())):
            found.append(p)
print("\n".join(found) or "no PEM private key and no *.key file in the payload")
sys.exit(1 if found else 0)
PY
}

# --------------------------------------------------------------------------------------------

t_build() {
    local start=$SECONDS
    packaging/build.sh all
    echo "build.sh all: $((SECONDS - start)) s"
    ls -l "$DIST"
    for f in "$DEB" "$RPM" "$TARBALL" "$DIST/kes-$VERSION-x86_64-linux-musl"; do
        [ -s "$f" ] || fail "missing $f"
    done
    (cd "$DIST" && sha256sum -c SHA256SUMS)
}

t_static_binary() {
    local bin=$DIST/kes-$VERSION-x86_64-linux-musl
    file -b "$bin"
    file -b "$bin" | grep -q 'static' || fail "not statically linked"
    ! readelf -l "$bin" | grep -q INTERP || fail "has an ELF interpreter"
    ! readelf -d "$bin" | grep -q NEEDED || fail "needs shared libraries: $(readelf -d "$bin" | grep NEEDED)"
    echo "size: $(stat -c %s "$bin") bytes"
    # An empty root: no libc, no /etc, no /dev, no CA bundle, no /proc.
    local empty=$WORK/empty-root port
    rm -rf "$empty"
    mkdir -p "$empty"
    cp "$bin" "$empty/kes"
    chroot "$empty" /kes --version
    port=$(free_port)
    : >"$WORK/empty-root.log"
    chroot "$empty" /kes server --dev --addr "127.0.0.1:$port" >"$WORK/empty-root.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do grep -q '^MLock' "$WORK/empty-root.log" && break; sleep 0.1; done
    cat "$WORK/empty-root.log"
    grep -q "^Endpoint    https://127.0.0.1:$port" "$WORK/empty-root.log" || fail "did not start in an empty root"
    # The TLS handshake and an API call work there too (the dev key is the admin).
    local key
    key=$(awk '$1 ~ /^kes:v1:/ {print $1; exit}' "$WORK/empty-root.log")
    "$bin" identity cert --key "$WORK/dev.key" --cert "$WORK/dev.crt" "$key" >/dev/null
    curl -sS --fail-with-body -k --cert "$WORK/dev.crt" --key "$WORK/dev.key" \
        -X POST "https://127.0.0.1:$port/v1/key/create/empty-root"
    echo "created a key in the empty root"
    stop_installed
}

t_tarball_offline() {
    echo "tarball: $(stat -c %s "$TARBALL") bytes"
    local dir=$WORK/offline
    rm -rf "$dir"
    mkdir -p "$dir"
    tar -xzf "$TARBALL" -C "$dir"
    local src=$dir/kes-$VERSION
    echo "vendor/: $(du -sm "$src/vendor" | cut -f1) MiB, $(find "$src/vendor" -type f | wc -l) files, $(find "$src/vendor" -mindepth 1 -maxdepth 1 -type d | wc -l) crates"
    local libs
    libs=$(find "$src/vendor" \( -name '*.lib' -o -name '*.a' -o -name '*.dll' \) | wc -l)
    [ "$libs" = 0 ] || fail "vendor/ has $libs .lib/.a/.dll files: $(find "$src/vendor" \( -name '*.lib' -o -name '*.a' \) | head -3)"
    [ ! -e "$src/.git" ] || fail "the tarball has .git"
    cat "$src/.cargo/config.toml"
    local home=$dir/cargo-home start=$SECONDS
    mkdir -p "$home"
    # No network at all: a new network namespace has only a loopback interface, which is down.
    unshare -n sh -c '! getent ahosts crates.io >/dev/null 2>&1' || fail "unshare -n left name resolution working"
    (cd "$src" && unshare -n env CARGO_HOME="$home" cargo build --release --offline --frozen) ||
        fail "the offline build failed"
    echo "offline cargo build --release: $((SECONDS - start)) s"
    "$src/target/release/kes" --version
    [ -z "$(ls -A "$home" 2>/dev/null | grep -v -e '^\.' -e '^registry$' -e '^\.package-cache' || true)" ] || ls -la "$home"
    [ ! -d "$home/registry/cache" ] || [ -z "$(ls -A "$home/registry/cache")" ] || fail "cargo downloaded crates into CARGO_HOME"
}

t_systemd_unit() {
    local bin=$DIST/kes-$VERSION-x86_64-linux-musl out
    [ -x "$bin" ] || fail "needs build ($bin)"
    out=$(KES_SYSTEMD_TEST_BIN=$bin cargo test --test it systemd:: -- --nocapture 2>&1) || { echo "$out"; fail "tests/it/systemd.rs failed"; }
    echo "$out"
    ! grep -q SKIPPED <<<"$out" || fail "tests/it/systemd.rs could not boot systemd here"
    grep -q "/usr/bin/kes is $bin" <<<"$out" || fail "tests/it/systemd.rs did not run $bin"
}

t_deb_contents() {
    dpkg-deb --info "$DEB"
    dpkg-deb --contents "$DEB" | awk '{print $1, $2, $6}'
    [ "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles)" = /etc/kes/config.yaml ] || fail "conffiles"
    local x=$WORK/deb-x
    rm -rf "$x"
    dpkg-deb -x "$DEB" "$x"
    for f in /usr/bin/kes /usr/lib/kes/kes-setup /usr/lib/systemd/system/kes.service \
        /etc/kes/config.yaml /usr/share/man/man1/kes.1.gz /usr/share/bash-completion/completions/kes \
        /usr/share/zsh/vendor-completions/_kes /usr/share/fish/vendor_completions.d/kes.fish \
        /usr/share/doc/kes/copyright /usr/share/doc/kes/THIRD-PARTY-LICENSES; do
        [ -s "$x$f" ] || fail "$f missing or empty"
    done
    no_private_key "$x"
    zcat "$x/usr/share/man/man1/kes.1.gz" | head -5
    echo "no private key in the package; $(find "$x" -type f | wc -l) files"
}

t_deb_install() {
    pristine_chroot
    local r=$WORK/deb-root port
    new_chroot "$r"
    cp "$DEB" "$r/tmp/"
    chroot "$r" dpkg -i "/tmp/$(basename "$DEB")"
    chroot "$r" getent passwd kes
    check_mode "$r" /etc/kes/server.key 640 root kes
    check_mode "$r" /etc/kes/server.cert 644 root root
    check_mode "$r" /etc/kes/admin.key 600 root root
    check_mode "$r" /etc/kes/kes.env 640 root kes
    check_mode "$r" /etc/kes/config.yaml 644 root root
    check_mode "$r" /var/lib/kes 700 kes kes
    check_mode "$r" /var/lib/kes/keys 700 kes kes
    check_mode "$r" /usr/bin/kes 755 root root
    # The chroot is a minimal Debian without systemd and procps: those two complaints are about
    # the chroot, anything else is about the unit.
    # (Its exit status reflects those too, so the messages decide.)
    local verify
    verify=$(systemd-analyze verify --root="$r" --man=no kes.service 2>&1) || true
    echo "$verify"
    verify=$(grep -v -e 'Unit sysinit.target not found' -e 'Command /bin/kill is not executable' <<<"$verify" || true)
    [ -z "$verify" ] || fail "systemd-analyze verify --root complained: $verify"
    echo "systemd-analyze verify --root: ok"
    port=$(free_port)
    start_installed "$r" "$port" "$WORK/deb-server.log"
    grep -q '^MLock       enabled' "$WORK/deb-server.log" || fail "memory locking failed as user kes with CAP_IPC_LOCK"
    # Like the unit: not root, and CAP_IPC_LOCK (bit 14) is its only capability.
    local uid cap
    uid=$(awk '/^Uid:/ {print $3}' "/proc/$SERVER_PID/status")
    cap=$(awk '/^CapEff:/ {print $2}' "/proc/$SERVER_PID/status")
    echo "server process: uid $uid (kes is $(chroot "$r" id -u kes)), CapEff $cap"
    [ "$uid" = "$(chroot "$r" id -u kes)" ] || fail "the server does not run as kes"
    [ "$cap" = 0000000000004000 ] || fail "capabilities $cap, expected only CAP_IPC_LOCK"
    round_trip "$r" "$port"
    [ "$(stat -c %U "$r/var/lib/kes/keys/pkg-key")" = "$(stat -c %U "$r/var/lib/kes/keys")" ] || fail "key file owner"
    kill -HUP "$SERVER_PID"
    # The server logs "reloaded /etc/kes/config.yaml: ..." (older builds: "configuration reloaded").
    local reloaded='reloaded /etc/kes/config.yaml|configuration reloaded'
    for _ in $(seq 100); do grep -qE "$reloaded" "$WORK/deb-server.log" && break; sleep 0.1; done
    grep -E "$reloaded" "$WORK/deb-server.log" || fail "SIGHUP did not reload"
    stop_installed
}

t_deb_upgrade() {
    local r=$WORK/deb-root port
    [ -f "$WORK/deb-root.datakey" ] || fail "needs deb_install"
    mount_proc "$r"
    echo "# edited by the operator" >>"$r/etc/kes/config.yaml"
    local before
    before=$(cd "$r" && find etc/kes var/lib/kes/keys -type f -print0 | sort -z | xargs -0 sha256sum)
    # A newer version of the same package.
    local next=$WORK/next
    rm -rf "$next"
    dpkg-deb -R "$DEB" "$next"
    sed -i "s/^Version: .*/Version: $VERSION+test1/" "$next/DEBIAN/control"
    dpkg-deb --root-owner-group -Zxz -b "$next" "$r/tmp/kes-next.deb" >/dev/null
    chroot "$r" dpkg -i /tmp/kes-next.deb </dev/null
    chroot "$r" dpkg-query -W kes
    local after
    after=$(cd "$r" && find etc/kes var/lib/kes/keys -type f -print0 | sort -z | xargs -0 sha256sum)
    diff <(echo "$before") <(echo "$after") || fail "the upgrade changed files"
    echo "unchanged by the upgrade:"
    echo "$after"
    port=$(free_port)
    start_installed "$r" "$port" "$WORK/deb-server2.log"
    read -r plaintext ciphertext <"$WORK/deb-root.datakey"
    back=$(api "$r" "$port" POST /v1/key/decrypt/pkg-key "{\"ciphertext\":\"$ciphertext\",\"context\":\"e30=\"}" | json_field plaintext)
    [ "$back" = "$plaintext" ] || fail "after the upgrade, decrypt gave $back"
    echo "after the upgrade the server decrypts the data key made before it"
    stop_installed
    chroot "$r" dpkg --purge kes
    [ ! -e "$r/usr/bin/kes" ] || fail "purge left /usr/bin/kes"
    [ ! -e "$r/etc/kes" ] || fail "purge left /etc/kes: $(ls "$r/etc/kes")"
    [ -f "$r/var/lib/kes/keys/pkg-key" ] || fail "purge deleted the keystore"
    echo "purge removed /etc/kes and kept /var/lib/kes/keys/pkg-key"
}

t_rpm_queries() {
    rpm -qip "$RPM"
    local files
    files=$(rpm -qlp "$RPM")
    echo "$files"
    for f in /usr/bin/kes /usr/lib/kes/kes-setup /usr/lib/systemd/system/kes.service /etc/kes/config.yaml \
        /usr/share/man/man1/kes.1.gz /usr/share/bash-completion/completions/kes \
        /usr/share/zsh/site-functions/_kes /usr/share/fish/vendor_completions.d/kes.fish \
        /usr/share/licenses/kes/THIRD-PARTY-LICENSES; do
        grep -qx "$f" <<<"$files" || fail "$f not in the rpm"
    done
    [ "$(rpm -qp --configfiles "$RPM")" = /etc/kes/config.yaml ] || fail "config files: $(rpm -qp --configfiles "$RPM")"
    # Flags of the config file: c (config) and n (noreplace).
    rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -x 'cn /etc/kes/config.yaml' ||
        fail "config.yaml is not %config(noreplace)"
    local scripts
    scripts=$(rpm -qp --scripts "$RPM")
    echo "$scripts"
    grep -q 'preinstall scriptlet' <<<"$scripts" && grep -q 'useradd --system' <<<"$scripts" || fail "%pre"
    grep -q 'kes-setup install' <<<"$scripts" || fail "%post"
    grep -q 'systemctl disable --now kes.service' <<<"$scripts" || fail "%preun"
    grep -q 'try-restart' <<<"$scripts" || fail "%postun"
    local x=$WORK/rpm-x
    rm -rf "$x"
    mkdir -p "$x"
    (cd "$x" && rpm2cpio "$RPM" | cpio -idm --quiet)
    no_private_key "$x"
    cmp "$x/usr/bin/kes" "$DIST/kes-$VERSION-x86_64-linux-musl" || fail "the rpm's binary is not the static build"
    echo "payload: $(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$RPM"); no private key in the package"
}

t_rpm_install() {
    pristine_chroot
    local r=$WORK/rpm-root port
    new_chroot "$r"
    rpm --root "$r" --initdb
    rpm --root "$r" -ivh --nodeps "$RPM"
    rpm --root "$r" -q kes
    chroot "$r" getent passwd kes
    check_mode "$r" /etc/kes/server.key 640 root kes
    check_mode "$r" /etc/kes/admin.key 600 root root
    check_mode "$r" /var/lib/kes/keys 700 kes kes
    port=$(free_port)
    start_installed "$r" "$port" "$WORK/rpm-server.log"
    round_trip "$r" "$port"
    stop_installed
    echo "# edited by the operator" >>"$r/etc/kes/config.yaml"
    local before after
    before=$(cd "$r" && find etc/kes var/lib/kes/keys -type f -print0 | sort -z | xargs -0 sha256sum)
    rpm --root "$r" -Uvh --replacepkgs --nodeps "$RPM"
    after=$(cd "$r" && find etc/kes var/lib/kes/keys -type f -print0 | sort -z | xargs -0 sha256sum)
    diff <(echo "$before") <(echo "$after") || fail "reinstalling changed files"
    echo "reinstall kept the edited config, keys and certificates"
}

mkdir -p "$WORK"
install_tools
if [ $# -gt 0 ]; then
    # packaging/test.sh TEST...: only these tests, on the artifacts already in target/dist.
    for t in "$@"; do run_test "$t" "t_$t"; done
else
    run_test build t_build
fi
if [ $# = 0 ] && [ "$failed" = 0 ]; then
    run_test static_binary t_static_binary
    run_test tarball_offline t_tarball_offline
    run_test deb_contents t_deb_contents
    run_test deb_install t_deb_install
    run_test deb_upgrade t_deb_upgrade
    run_test rpm_queries t_rpm_queries
    run_test rpm_install t_rpm_install
    run_test systemd_unit t_systemd_unit
fi
cleanup
trap - EXIT
echo
[ "$failed" = 0 ] || echo "failed: ${failures[*]}"
echo "packaging: $passed passed, $failed failed"
[ "$failed" = 0 ]
