#!/usr/bin/env bash
# The crate's top-level modules must not depend on each other in a cycle
# (ARCHITECTURE.md, "Layers and allowed dependencies"). cargo-modules
# lists the library's item-level "uses" edges; each edge is collapsed to
# its two top-level modules, and tsort fails on any loop among them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo modules --version 2>/dev/null | grep -q "0.27"; then
    echo "cargo-modules 0.27 not found: installing it (a few minutes, once)"
    cargo install cargo-modules --version 0.27.0 --locked --quiet
fi

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
# --package: the root is a workspace (the server and benches/, preau-benches).
cargo modules dependencies --package preau --lib --no-externs --no-owns 2>/dev/null \
    | grep -- '->' | grep '"uses"' \
    | sed -E 's/^[[:space:]]*"([^"]+)" -> "([^"]+)".*/\1 \2/' \
    | awk '{ split($1, a, "::"); split($2, b, "::");
             if (a[2] != "" && b[2] != "" && a[2] != b[2]) print a[2], b[2] }' \
    | sort -u > "$edges"
if [ ! -s "$edges" ]; then
    echo "cargo-modules printed no dependency edge: cannot check" >&2
    exit 1
fi
if ! tsort "$edges" > /dev/null; then
    echo "the modules above depend on each other in a cycle" >&2
    exit 1
fi
echo "module graph: $(wc -l < "$edges") edges between top-level modules, no cycle"
