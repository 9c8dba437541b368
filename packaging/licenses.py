#!/usr/bin/env python3
"""Prints the licenses of every crate compiled into the kes binary.

Reads `cargo metadata --format-version 1 --filter-platform TARGET` on stdin and follows the normal
(not dev, not build) dependencies from the kes package. For each crate it prints its name,
version, declared license and the text of its license files (LICENSE*, COPYING*, NOTICE*, and
UNLICENSE), each distinct text once. A crate without any such file makes this script fail: the package must carry every
notice the licenses require.
"""
import json
import os
import sys

LICENSE_PREFIXES = ("license", "licence", "copying", "notice", "unlicense", "copyright")


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == "kes" and p["source"] is None)

    seen, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            # Build scripts and proc macros run at build time; their code is not in the binary.
            if None in kinds and dep["pkg"] not in seen:
                if "proc-macro" in packages[dep["pkg"]]["targets"][0]["kind"]:
                    continue
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])

    out = sys.stdout
    crates = sorted((packages[i] for i in seen), key=lambda p: (p["name"], p["version"]))
    out.write("Third-party software in the kes binary\n")
    out.write("======================================\n\n")
    out.write("kes is statically linked with the following crates. Each is listed with its\n")
    out.write("declared license and the license files it ships. The static build also contains\n")
    out.write("musl libc (MIT license, Copyright (c) 2005-2020 Rich Felker, et al.;\n")
    out.write("https://git.musl-libc.org/cgit/musl/tree/COPYRIGHT), from the Rust toolchain's\n")
    out.write("x86_64-unknown-linux-musl target.\n\n")
    for p in crates:
        out.write(f"  {p['name']} {p['version']}: {p.get('license') or p.get('license_file')}\n")
    # Many crates ship the very same text (the Apache license above all): print each distinct text
    # once, under the names of all the crates that ship it.
    texts = {}
    missing = []
    for p in crates:
        crate_dir = os.path.dirname(p["manifest_path"])
        files = sorted(
            f for f in os.listdir(crate_dir)
            if f.lower().startswith(LICENSE_PREFIXES) and os.path.isfile(os.path.join(crate_dir, f))
        )
        if not files:
            missing.append(p["name"])
            continue
        for f in files:
            with open(os.path.join(crate_dir, f), encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            texts.setdefault(text, []).append(f"{p['name']} {p['version']} ({f})")
    for text, owners in texts.items():
        out.write("\n" + "-" * 78 + "\n")
        for owner in owners:
            out.write(owner + "\n")
        out.write("-" * 78 + "\n\n")
        out.write(text + "\n")
    if missing:
        sys.stderr.write("licenses.py: no license file in: " + ", ".join(missing) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
