#!/usr/bin/env bash
# Build the Wasm guests (examples/hello-wasm, tests/guests) for wasm32-wasip1 (core modules)
# and wasm32-wasip2 (components), release mode, and copy them to one stable directory:
#
#   $SKIFF_GUESTS_DIR (default: ${CARGO_TARGET_DIR:-target}/guests/out)
#     hello-wasm.wasip1.wasm  hello-wasm.wasip2.wasm
#     test-guest.wasip1.wasm  test-guest.wasip2.wasm
#     hello-http.wasip2.wasm  (a wasi:http component)
#     test-guest.static       (the test guest as a static Linux executable of this machine's
#                              architecture, for OCI pods: run from a hostPath over any image)
#     policy-<name>.wasm      (admission policies, components of wit/policy.wit: the
#                              examples allowed-registries and default-label, and trap, spin,
#                              hog for fault-injection tests)
#     static-site-operator.wasm    (examples/operator: the operator, a wasm32-wasip2 command
#                                   reaching the api server through wasi:http)
#     static-site-operator.static  (the same operator as a static Linux executable, for an OCI
#                                   pod: kube's own hyper and rustls client)
#     site-server.wasm             (the wasi:http component serving a StaticSite's files)
#
# The runtime's tests look for the guests there (set SKIFF_GUESTS_DIR to the same value).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host_target="${CARGO_TARGET_DIR:-$repo/target}"
case "$host_target" in /*) ;; *) host_target="$repo/$host_target" ;; esac
guest_target="$host_target/guests"
out="${SKIFF_GUESTS_DIR:-$guest_target/out}"
mkdir -p "$out"

build() { # <project dir> <bin name> <output stem>
    local dir="$1" bin="$2" stem="$3" target suffix
    for target in wasm32-wasip1 wasm32-wasip2; do
        suffix="${target#wasm32-}"
        CARGO_TARGET_DIR="$guest_target" cargo build --quiet --release \
            --manifest-path "$repo/$dir/Cargo.toml" --target "$target"
        cp "$guest_target/$target/release/$bin.wasm" "$out/$stem.$suffix.wasm.tmp"
        mv "$out/$stem.$suffix.wasm.tmp" "$out/$stem.$suffix.wasm"
    done
}

build examples/hello-wasm hello-wasm hello-wasm
build tests/guests skiff-test-guest test-guest

# Statically linked (glibc's static libc): it runs in any container image, even one with no
# libc at all. RUSTFLAGS apply to the target only, since --target is given.
host_triple="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$guest_target" cargo build --quiet \
    --release --manifest-path "$repo/tests/guests/Cargo.toml" --target "$host_triple"
cp "$guest_target/$host_triple/release/skiff-test-guest" "$out/test-guest.static.tmp"
mv "$out/test-guest.static.tmp" "$out/test-guest.static"

# A wasi:http component (a library exporting wasi:http/incoming-handler): wasip2 only.
CARGO_TARGET_DIR="$guest_target" cargo build --quiet --release \
    --manifest-path "$repo/examples/hello-http/Cargo.toml" --target wasm32-wasip2
cp "$guest_target/wasm32-wasip2/release/hello_http.wasm" "$out/hello-http.wasip2.wasm.tmp"
mv "$out/hello-http.wasip2.wasm.tmp" "$out/hello-http.wasip2.wasm"

# Admission policies (the skiff:policy world, wit/policy.wit): one workspace, wasip2 only.
CARGO_TARGET_DIR="$guest_target" cargo build --quiet --release --workspace \
    --manifest-path "$repo/examples/policies/Cargo.toml" --target wasm32-wasip2
for policy in allowed-registries default-label trap spin hog; do
    cp "$guest_target/wasm32-wasip2/release/policy_${policy//-/_}.wasm" "$out/policy-$policy.wasm.tmp"
    mv "$out/policy-$policy.wasm.tmp" "$out/policy-$policy.wasm"
done

# The static-site-operator example (its own workspace). Built from its directory: its
# .cargo/config.toml gives the wasm32-wasip2 build the `tokio_unstable` cfg that kube-client's
# tokio features need on WASI (see examples/operator/README.md).
(
    cd "$repo/examples/operator"
    CARGO_TARGET_DIR="$guest_target" cargo build --quiet --release --workspace --target wasm32-wasip2
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$guest_target" cargo build --quiet \
        --release -p static-site-operator --target "$host_triple"
)
copy_out() { # <path under the target directory> <name in the out directory>
    cp "$guest_target/$1" "$out/$2.tmp"
    mv "$out/$2.tmp" "$out/$2"
}
copy_out wasm32-wasip2/release/static-site-operator.wasm static-site-operator.wasm
copy_out wasm32-wasip2/release/site_server.wasm site-server.wasm
copy_out "$host_triple/release/static-site-operator" static-site-operator.static

echo "$out"
