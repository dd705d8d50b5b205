#!/usr/bin/env bash
# Install the peer `wasmtime` CLI that `skiff-bench-node --only http` compares against
# (`wasmtime serve` of the same wasi:http component). Built from crates.io with cargo, so only
# the package registry is needed. 48.x is the newest release that builds with the project's rustc.
# Idempotent: nothing is done when DIR/bin/wasmtime already reports that version.
# Usage: scripts/fetch-wasmtime.sh [DIR]   (default: .tools/wasmtime); prints DIR/bin/wasmtime.
# Extra cargo flags (for example `-j 1`) can be passed in WASMTIME_CARGO_FLAGS.
set -euo pipefail
version="48.0.8"
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/.tools/wasmtime}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
bin="$dest/bin/wasmtime"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^wasmtime $version\b"; then
    echo "$bin"
    exit 0
fi
# shellcheck disable=SC2086
cargo install wasmtime-cli --version "=$version" --locked --root "$dest" --force \
    ${WASMTIME_CARGO_FLAGS:-} >&2
"$bin" --version >&2
echo "$bin"
