#!/usr/bin/env bash
# packaging/build.sh: builds what an operator carries to an air-gapped host. Output: target/dist/.
#
#   packaging/build.sh binary    static x86_64 musl binary, profile production (LTO):
#                                target/dist/kes-<version>-x86_64-linux-musl (+ .sha256 in SHA256SUMS)
#   packaging/build.sh deb       kes_<version>_amd64.deb     (builds the binary first)
#   packaging/build.sh rpm       kes-<version>-1.x86_64.rpm  (builds the binary first)
#   packaging/build.sh tarball   kes-<version>.tar.gz: the committed sources (git HEAD), vendor/
#                                with every crate they need on Linux, and .cargo/config.toml that
#                                points cargo at vendor/; builds with no network
#   packaging/build.sh vendor    fills ./vendor and writes vendor/config.toml, for an offline build
#                                of this checkout (cargo build --offline --config vendor/config.toml)
#   packaging/build.sh all       binary, deb, rpm and tarball
#
# Needs a Rust toolchain (rustup), git and python3. Installs what else it needs when missing
# (as root, with apt-get on Debian/Ubuntu): musl-tools (the musl C compiler that ring needs) and
# rpm (rpmbuild), the rustup target x86_64-unknown-linux-musl, and cargo-vendor-filterer (into
# target/tools). dpkg-deb comes with every Debian system.
#
# The deb and rpm hold the man page and shell completions, which the built binary prints
# (`kes man`, `kes completion bash|zsh|fish`) from the same definitions as --help.
#
# Environment: SOURCE_DATE_EPOCH (default: time of the last commit) stamps every file, so that
# the same commit gives the same tarball and packages.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TARGET=x86_64-unknown-linux-musl
PROFILE=production
DIST=$ROOT/target/dist
TOOLS=$ROOT/target/tools
# The platforms whose dependencies go into vendor/: the Linux targets we build and ship, for
# x86_64 and arm64. Anything only another OS needs (Windows import libraries through ring's and
# getrandom's dependencies: about 100 MiB) is left out.
VENDOR_PLATFORMS=(x86_64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl)
VENDOR_FILTERER_VERSION=0.5.18

VERSION=$(awk -F'"' '/^\[package\]/ {p = 1} p && /^version *=/ {print $2; exit}' Cargo.toml)
[ -n "$VERSION" ] || { echo "build.sh: no version in Cargo.toml" >&2; exit 1; }
BIN=$ROOT/target/$TARGET/$PROFILE/kes

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

log() { echo "==> $*" >&2; }
die() {
    echo "build.sh: $*" >&2
    exit 1
}

# apt_install PACKAGE...: installs Debian packages, or says what to install.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $* (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
    else
        die "please install: $* (Debian/Ubuntu package names)"
    fi
}

need_musl() {
    if ! rustc --print target-libdir --target "$TARGET" >/dev/null 2>&1 ||
        [ ! -d "$(rustc --print target-libdir --target "$TARGET")" ]; then
        command -v rustup >/dev/null || die "the Rust target $TARGET is missing and there is no rustup to add it"
        log "adding the Rust target $TARGET (rustup)"
        rustup target add "$TARGET"
    fi
    command -v musl-gcc >/dev/null || apt_install musl-tools
}

need_vendor_filterer() {
    FILTERER=$TOOLS/bin/cargo-vendor-filterer
    if ! "$FILTERER" --version 2>/dev/null | grep -q "$VENDOR_FILTERER_VERSION"; then
        log "installing cargo-vendor-filterer $VENDOR_FILTERER_VERSION into $TOOLS (takes a few minutes once)"
        cargo install --quiet --locked --root "$TOOLS" --version "$VENDOR_FILTERER_VERSION" cargo-vendor-filterer
    fi
}

# sha256sums: rewrites target/dist/SHA256SUMS for every artifact there.
sha256sums() {
    (cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort |
        xargs -r sha256sum >SHA256SUMS)
}

build_binary() {
    need_musl
    log "building the static binary: cargo build --profile $PROFILE --target $TARGET"
    local start=$SECONDS
    # ring's C and assembly parts are built with musl-gcc; cargo links with rustc's own musl
    # start files and libc.a, so the result needs nothing from the host at run time.
    CC_x86_64_unknown_linux_musl=musl-gcc \
        cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin kes
    log "built in $((SECONDS - start)) s: $BIN ($(stat -c %s "$BIN") bytes)"
    file -b "$BIN" | grep -q 'static' || die "$BIN is not statically linked: $(file -b "$BIN")"
    mkdir -p "$DIST"
    cp "$BIN" "$DIST/kes-$VERSION-x86_64-linux-musl"
    sha256sums
}

# third_party_licenses FILE: the license texts of every crate compiled into the shipped binary
# (normal dependencies for the musl target), as the MIT, BSD, ISC and Apache licenses require
# for binary redistribution.
third_party_licenses() {
    cargo metadata --locked --format-version 1 --filter-platform "$TARGET" |
        python3 "$ROOT/packaging/licenses.py" >"$1"
}

# stage DIR FLAVOR: lays out the installed files (FLAVOR deb or rpm) under DIR.
stage() {
    local dir=$1 flavor=$2
    rm -rf "$dir"
    install -D -m 0755 "$BIN" "$dir/usr/bin/kes"
    install -D -m 0755 packaging/kes-setup "$dir/usr/lib/kes/kes-setup"
    install -D -m 0644 packaging/kes.service "$dir/usr/lib/systemd/system/kes.service"
    install -D -m 0644 packaging/config.yaml "$dir/etc/kes/config.yaml"

    # kes(1) and a page per command (kes-key-create(1), ...).
    mkdir -p "$dir/usr/share/man/man1"
    "$BIN" man --dir "$dir/usr/share/man/man1" ||
        die "'$BIN man --dir' failed: this build has no man command (it comes with the client CLI)"
    grep -q '^\.TH' "$dir/usr/share/man/man1/kes.1" || die "'kes man' wrote no kes.1"
    gzip -9n "$dir/usr/share/man/man1/"*.1
    local zsh_dir=usr/share/zsh/vendor-completions
    [ "$flavor" = rpm ] && zsh_dir=usr/share/zsh/site-functions
    mkdir -p "$dir/usr/share/bash-completion/completions" "$dir/$zsh_dir" \
        "$dir/usr/share/fish/vendor_completions.d"
    "$BIN" completion bash >"$dir/usr/share/bash-completion/completions/kes"
    "$BIN" completion zsh >"$dir/$zsh_dir/_kes"
    "$BIN" completion fish >"$dir/usr/share/fish/vendor_completions.d/kes.fish"
    for f in "$dir/usr/share/bash-completion/completions/kes" "$dir/$zsh_dir/_kes" \
        "$dir/usr/share/fish/vendor_completions.d/kes.fish"; do
        [ -s "$f" ] || die "'kes completion' printed nothing for $f"
    done

    local doc=$dir/usr/share/doc/kes
    install -D -m 0644 README.md "$doc/README.md"
    install -D -m 0644 kes.yaml.example "$doc/kes.yaml.example"
    if [ "$flavor" = deb ]; then
        third_party_licenses "$doc/THIRD-PARTY-LICENSES"
        debian_copyright >"$doc/copyright"
    else
        local lic=$dir/usr/share/licenses/kes
        install -D -m 0644 LICENSE-MIT "$lic/LICENSE-MIT"
        install -D -m 0644 LICENSE-APACHE "$lic/LICENSE-APACHE"
        third_party_licenses "$lic/THIRD-PARTY-LICENSES"
    fi
    find "$dir" -type d -exec chmod 0755 {} +
    find "$dir" -type f ! -perm -u+x -exec chmod 0644 {} +
    find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# The Debian copyright file (machine-readable format) with both license texts.
debian_copyright() {
    indent() { sed -e 's/^[[:space:]]*$/./' -e 's/^/ /'; }
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kes
Comment: /usr/bin/kes is statically linked with the Rust crates (and the C parts of ring and
 mimalloc) listed with their licenses in /usr/share/doc/kes/THIRD-PARTY-LICENSES.

Files: *
Copyright: the kes developers
License: MIT or Apache-2.0

License: MIT
EOF
    indent <LICENSE-MIT
    echo
    echo "License: Apache-2.0"
    indent <LICENSE-APACHE
}

build_deb() {
    [ -x "$BIN" ] || build_binary
    command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (package dpkg)"
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    local stage_dir=$work/kes
    log "staging the .deb"
    stage "$stage_dir" deb
    mkdir -p "$stage_dir/DEBIAN"
    sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$(du -sk --exclude=DEBIAN "$stage_dir" | cut -f1)/" \
        packaging/deb/control.in >"$stage_dir/DEBIAN/control"
    install -m 0644 packaging/deb/conffiles "$stage_dir/DEBIAN/conffiles"
    install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage_dir/DEBIAN/"
    (cd "$stage_dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum) \
        >"$stage_dir/DEBIAN/md5sums"
    mkdir -p "$DIST"
    local out=$DIST/kes_${VERSION}_amd64.deb
    # xz: readable by every dpkg still in use (zstd needs dpkg 1.21.18 / Debian 12, Ubuntu 21.10).
    dpkg-deb --root-owner-group -Zxz --build "$stage_dir" "$out" >/dev/null
    log "wrote $out ($(stat -c %s "$out") bytes)"
    sha256sums
}

build_rpm() {
    [ -x "$BIN" ] || build_binary
    command -v rpmbuild >/dev/null || apt_install rpm
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "staging the .rpm"
    stage "$work/stage" rpm
    sed "s/@VERSION@/$VERSION/" packaging/rpm/kes.spec.in >"$work/kes.spec"
    mkdir -p "$DIST"
    rpmbuild -bb --quiet \
        --define "_topdir $work/rpmbuild" \
        --define "_rpmdir $DIST" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "stagedir $work/stage" \
        --define "use_source_date_epoch_as_buildtime 1" \
        --define "clamp_mtime_to_source_date_epoch 1" \
        "$work/kes.spec" >"$work/rpmbuild.log" 2>&1 || { cat "$work/rpmbuild.log" >&2; die "rpmbuild failed"; }
    local out=$DIST/kes-$VERSION-1.x86_64.rpm
    [ -f "$out" ] || die "rpmbuild did not write $out"
    log "wrote $out ($(stat -c %s "$out") bytes)"
    sha256sums
}

# vendor_into DIR: fills DIR with the filtered vendored crates of the project in the current
# directory.
vendor_into() {
    need_vendor_filterer
    local dir=$1 args=()
    for p in "${VENDOR_PLATFORMS[@]}"; do args+=(--platform "$p"); done
    # Tests and benchmarks of dependencies are never compiled by our builds. (Examples stay:
    # clap's documentation include_str!s them.) Keep the dev-dependencies, though: without them
    # `cargo test --offline` cannot resolve.
    local log
    log=$(mktemp)
    "$FILTERER" vendor-filterer "${args[@]}" \
        --exclude-crate-path '*#tests' --exclude-crate-path '*#benches' "$dir" >"$log" 2>&1 ||
        { cat "$log" >&2; rm -f "$log"; die "cargo-vendor-filterer failed"; }
    rm -f "$log"
    [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] || die "cargo-vendor-filterer wrote nothing to $dir"
}

# The cargo configuration that makes a build use vendor/ and never the network.
vendored_cargo_config() {
    cat <<EOF
# Written by packaging/build.sh: build from vendor/, never from the network.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"

[net]
offline = true
EOF
}

build_vendor() {
    local keep
    keep=$(mktemp)
    cp vendor/README.md "$keep"
    log "vendoring into $ROOT/vendor"
    vendor_into vendor
    cp "$keep" vendor/README.md
    rm -f "$keep"
    vendored_cargo_config | sed 's#directory = "vendor"#directory = "'"$ROOT"'/vendor"#' >vendor/config.toml
    log "vendor/ holds $(du -sm --apparent-size vendor | cut -f1) MiB; build offline with:"
    log "  cargo build --release --offline --config vendor/config.toml"
}

build_tarball() {
    command -v git >/dev/null || die "git is missing"
    local commit
    commit=$(git rev-parse HEAD)
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
        log "warning: the tarball is made from HEAD ($commit); uncommitted changes are not in it"
    fi
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    local name=kes-$VERSION src=$work/kes-$VERSION
    git archive --format=tar --prefix="$name/" HEAD | tar -x -C "$work"
    log "vendoring the dependencies of $commit"
    (cd "$src" && vendor_into "$work/vendor")
    cp -a "$work/vendor/." "$src/vendor/"
    # The repository's .cargo/config.toml (its [env] table) plus source replacement; the commit
    # goes in as an environment variable for build.rs, since the tarball has no .git.
    mkdir -p "$src/.cargo"
    {
        echo
        vendored_cargo_config
    } >>"$src/.cargo/config.toml"
    grep -q '^\[env\]' "$src/.cargo/config.toml" || echo "[env]" >>"$src/.cargo/config.toml"
    sed -i "/^\[env\]/a # The commit this tarball was made from (/version reports it; there is no .git here).\\nKES_BUILD_COMMIT = \"$commit\"" \
        "$src/.cargo/config.toml"
    log "vendor/ holds $(du -sm --apparent-size "$src/vendor" | cut -f1) MiB in $(find "$src/vendor" -type f | wc -l) files"
    mkdir -p "$DIST"
    local out=$DIST/$name.tar.gz
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$work" -cf - "$name" | gzip -9n >"$out"
    log "wrote $out ($(stat -c %s "$out") bytes)"
    sha256sums
}

case ${1:-} in
binary) build_binary ;;
deb)
    build_binary
    build_deb
    ;;
rpm)
    build_binary
    build_rpm
    ;;
tarball) build_tarball ;;
vendor) build_vendor ;;
all)
    build_binary
    build_deb
    build_rpm
    build_tarball
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
