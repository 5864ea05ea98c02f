#!/usr/bin/env bash
# Install (once) the s3s-fs S3-compatible test server and print its path.
#
# Usage:  S3S_BIN=$(.ci/s3-server.sh)
#
# Environment:
#   S3S_ROOT     install root / cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/preau-s3s)
#   S3S_VERSION  s3s-fs version (default 0.14.1; 0.17 needs rustc >= 1.96)
#
# Idempotent: if the binary already exists with the right version, nothing is
# built and the script returns immediately. All cargo output goes to stderr so
# stdout carries only the binary path.
set -euo pipefail

S3S_VERSION="${S3S_VERSION:-0.14.1}"
S3S_ROOT="${S3S_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/preau-s3s}"
BIN="$S3S_ROOT/$S3S_VERSION/bin/s3s-fs"

if [ ! -x "$BIN" ]; then
    echo "s3-server.sh: installing s3s-fs $S3S_VERSION into $S3S_ROOT/$S3S_VERSION" >&2
    mkdir -p "$S3S_ROOT"
    target_dir="${S3S_TARGET_DIR:-$S3S_ROOT/target}"
    # --locked first (reproducible); fall back to an unlocked resolve if the
    # lock file no longer builds (e.g. a yanked dependency).
    if ! CARGO_TARGET_DIR="$target_dir" cargo install s3s-fs \
            --version "$S3S_VERSION" --features binary --locked \
            --root "$S3S_ROOT/$S3S_VERSION" 1>&2; then
        echo "s3-server.sh: --locked install failed, retrying without --locked" >&2
        CARGO_TARGET_DIR="$target_dir" cargo install s3s-fs \
            --version "$S3S_VERSION" --features binary \
            --root "$S3S_ROOT/$S3S_VERSION" 1>&2
    fi
    # The build dir is only needed for the install; drop it to keep CI caches small.
    if [ -z "${S3S_TARGET_DIR:-}" ]; then rm -rf "$target_dir"; fi
fi

echo "$BIN"
