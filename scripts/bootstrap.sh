#!/usr/bin/env bash
# Install what building and testing Skiff needs on Debian: a C/C++ toolchain and libclang for
# RocksDB's bindings, protoc, etcd (the store benchmark's baseline), python3 with pip and venv
# (the client tests), iproute2 and nftables (pod addresses, cluster routes and the node proxy's
# Service rules), dig (the cluster DNS tests), dnsperf and wrk (the network benchmarks),
# docker-registry and skopeo (the registry pull tests), curl and openssl (the access tests),
# prometheus (the metrics tests), and the Rust wasm targets for the example guests. Idempotent.
set -euo pipefail
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# The node routes its Wasm pods' addresses locally with `ip route` (iproute2).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The node proxy programs Services with `nft`.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server) # for make bench-store
# The registry tests (tests/e2e_registry.rs) run a real registry and push images with skopeo.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
# The metrics tests (tests/e2e_metrics.rs) run the real Prometheus with charts/skiff-monitoring.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# The access tests (tests/e2e_rbac.rs) call the API anonymously, which kubectl cannot do.
command -v curl >/dev/null 2>&1 || need+=(curl)
# The OIDC tests (tests/e2e_oidc.rs) serve a test issuer's discovery document with `openssl s_server`.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3 python3-pip)
# The Python client tests run in a venv (scripts/fetch-tools.sh); Debian splits venv out.
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
    # The package starts a system etcd; the store benchmark runs its own and wants a quiet disk.
    if [[ " ${need[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
        $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
    # Likewise the package's Prometheus (and its node exporter): the tests start their own.
    if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
        $sudo systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
    # Likewise the package's system registry (port 5000): the tests start their own.
    if [[ " ${need[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
        $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
fi
installed="$(rustup target list --installed)"
for t in wasm32-wasip1 wasm32-wasip2; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
