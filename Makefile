# Two entry points for a fresh Debian machine with only the Rust toolchain:
#   make run   builds Skiff and runs `skiff server` on the embedded defaults (and fetches the
#              real kubectl into .tools/bin for the README's tour)
#   make test  runs the whole test suite (unit + end-to-end with the real kubectl, helm and
#              containerd, which the OCI tests start themselves)
# Both install what they need first (scripts/bootstrap.sh).

export CARGO_TARGET_DIR ?= $(HOME)/.cache/skiff/target
export SKIFF_TOOLS_DIR ?= $(CURDIR)/.tools/bin
export SKIFF_GUESTS_DIR ?= $(CARGO_TARGET_DIR)/guests/out

.PHONY: run test bootstrap build guests bench bench-store bench-api bench-authz bench-admission bench-autoscale bench-node bench-controllers bench-scheduler bench-network bench-streams bench-pull bench-crd

bootstrap:
	bash scripts/bootstrap.sh

build: bootstrap
	cargo build --release --bin skiff

guests: bootstrap
	bash scripts/build-guests.sh

# The data dir `skiff server` uses by default (root: /var/lib/skiff).
SKIFF_DATA_DIR = $(shell [ "$$(id -u)" -eq 0 ] && echo /var/lib/skiff || echo $$HOME/.local/share/skiff)

run: build guests
	bash scripts/fetch-tools.sh $(SKIFF_TOOLS_DIR) >/dev/null
	$(CARGO_TARGET_DIR)/release/skiff images import $(SKIFF_GUESTS_DIR)/hello-wasm.wasip2.wasm --name hello-wasm:latest
	$(CARGO_TARGET_DIR)/release/skiff images import $(SKIFF_GUESTS_DIR)/hello-http.wasip2.wasm --name hello-http:latest
	@echo
	@echo "Skiff starts below. In another shell, from this directory:"
	@echo "  export PATH=\"$(SKIFF_TOOLS_DIR):\$$PATH\" KUBECONFIG=$(SKIFF_DATA_DIR)/kubeconfig.yaml"
	@echo "  kubectl get nodes"
	@echo
	$(CARGO_TARGET_DIR)/release/skiff server

test: bootstrap guests
	bash scripts/fetch-tools.sh $(SKIFF_TOOLS_DIR)
	bash scripts/containerd.sh install
	bash scripts/test.sh

# The benchmarks are binaries of the `skiff-bench` workspace member (bench/). `--workspace` lets
# `--bin` find them and resolves features as for the whole workspace, the same as `--bin skiff`
# alone (a `-p` selection may resolve them differently and rebuild RocksDB).
bench: bootstrap guests
	cargo build --release --workspace --bin skiff --bin skiff-bench-pods
	$(CARGO_TARGET_DIR)/release/skiff-bench-pods --skiff $(CARGO_TARGET_DIR)/release/skiff --guest $(SKIFF_GUESTS_DIR)/test-guest.wasip1.wasm --pods 1000

# Skiff's store vs etcd (real etcd processes it starts and stops itself, data under /tmp).
# BENCH_STORE_ARGS=--footprint adds the disk footprint after 1 M writes (long).
BENCH_STORE_ARGS ?=
# Custom resources: 10,000 objects vs ConfigMaps (creates/s, RSS), 10 CEL rules vs none, and
# 1,000 CRDs (time to Established, discovery with kubectl, RSS).
bench-crd: bootstrap
	cargo build --release --workspace --bin skiff --bin skiff-bench-crd
	$(CARGO_TARGET_DIR)/release/skiff-bench-crd --skiff $(CARGO_TARGET_DIR)/release/skiff --kubectl $(SKIFF_TOOLS_DIR)/kubectl $(BENCH_CRD_ARGS)

bench-store: bootstrap
	cargo build --release --workspace --bin skiff-bench-store
	$(CARGO_TARGET_DIR)/release/skiff-bench-store $(BENCH_STORE_ARGS)

# The api server with its embedded store: pod creates (JSON and protobuf, 1 and 64 clients),
# lists of 10,000 pods, 1,000 watchers receiving a burst of 1,000 writes. Data under /tmp.
BENCH_API_ARGS ?=
bench-api: bootstrap
	cargo build --release --workspace --bin skiff --bin skiff-bench-api
	$(CARGO_TARGET_DIR)/release/skiff-bench-api --skiff $(CARGO_TARGET_DIR)/release/skiff $(BENCH_API_ARGS)

# The RBAC authorizer in-process: one check's p99 with 1,000 Roles and 1,000 RoleBindings.
# (RBAC on vs off through the api server: BENCH_API_ARGS=--only-authz make bench-api.)
bench-authz: bootstrap
	cargo build --release --workspace --bin skiff-bench-authz
	$(CARGO_TARGET_DIR)/release/skiff-bench-authz

# Admission on the pod create path: no policy vs 20 ValidatingAdmissionPolicies vs 20 Wasm
# policies vs 1 Wasm policy vs 1 webhook, in one run (BENCH_ADMISSION_ARGS=--pods 5000 ...).
bench-admission: bootstrap guests
	cargo build --release --workspace --bin skiff --bin skiff-bench-admission
	$(CARGO_TARGET_DIR)/release/skiff-bench-admission --skiff $(CARGO_TARGET_DIR)/release/skiff --policy $(SKIFF_GUESTS_DIR)/policy-allowed-registries.wasm $(BENCH_ADMISSION_ARGS)

# The node: Wasm pod start (create -> Running, p50/p99, 1 and 16 clients), density of idle
# wasi:http pods (RSS per pod), and HTTP requests/s of one pod against `wasmtime serve` of the
# same component (wrk). BENCH_NODE_ARGS=--with-containerd adds OCI pod start through a containerd
# it starts itself; e.g. BENCH_NODE_ARGS="--only start --pods 200" for a shorter run.
WASMTIME_DIR ?= $(CURDIR)/.tools/wasmtime
BENCH_NODE_ARGS ?=
# Image pulls from a loopback registry (docker-registry, skopeo) against skopeo copy.
bench-pull: bootstrap guests
	bash scripts/containerd.sh install
	cargo build --release --workspace --bin skiff --bin skiff-bench-pull
	$(CARGO_TARGET_DIR)/release/skiff-bench-pull --skiff $(CARGO_TARGET_DIR)/release/skiff --guests-dir $(SKIFF_GUESTS_DIR) --with-containerd $(BENCH_PULL_ARGS)

# kubectl exec round trips into a Wasm and a busybox pod (an isolated containerd it starts).
bench-streams: bootstrap guests
	bash scripts/fetch-tools.sh $(SKIFF_TOOLS_DIR) >/dev/null
	bash scripts/containerd.sh install
	cargo build --release --workspace --bin skiff --bin skiff-bench-streams
	$(CARGO_TARGET_DIR)/release/skiff-bench-streams --skiff $(CARGO_TARGET_DIR)/release/skiff --guests-dir $(SKIFF_GUESTS_DIR) --kubectl $(SKIFF_TOOLS_DIR)/kubectl --with-containerd $(BENCH_STREAMS_ARGS)

bench-node: bootstrap guests
	command -v wrk >/dev/null || { s=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$s apt-get update -qq && $$s apt-get install -y -qq wrk; }
	case "$(BENCH_NODE_ARGS)" in *--with-containerd*) bash scripts/containerd.sh install ;; esac
	bash scripts/fetch-wasmtime.sh $(WASMTIME_DIR) >/dev/null
	cargo build --release --workspace --bin skiff --bin skiff-bench-node
	$(CARGO_TARGET_DIR)/release/skiff-bench-node --skiff $(CARGO_TARGET_DIR)/release/skiff \
		--guests-dir $(SKIFF_GUESTS_DIR) --wasmtime $(WASMTIME_DIR)/bin/wasmtime $(BENCH_NODE_ARGS)

# Scale one Deployment of Wasm pods 0 -> 5,000 on one node (issue target: all Ready < 15 s).
bench-controllers: bootstrap guests
	cargo build --release --workspace --bin skiff --bin skiff-bench-node
	$(CARGO_TARGET_DIR)/release/skiff-bench-node --skiff $(CARGO_TARGET_DIR)/release/skiff \
		--guests-dir $(SKIFF_GUESTS_DIR) --only scale $(BENCH_CONTROLLERS_ARGS)

# Scheduling throughput on 5,000 simulated nodes (scheduler_perf's cases; target 10x their thresholds).
BENCH_SCHEDULER_ARGS ?=
bench-scheduler: bootstrap
	cargo build --release --workspace --bin skiff --bin skiff-bench-scheduler
	$(CARGO_TARGET_DIR)/release/skiff-bench-scheduler --skiff $(CARGO_TARGET_DIR)/release/skiff $(BENCH_SCHEDULER_ARGS)

# The node network (root; each program works in network namespaces of its own): the cluster
# DNS under dnsperf and its own load generator (target >= 40k queries/s, p99 < 1 ms), the node
# proxy's nftables programming for 1,000 and 10,000 Services x 4 endpoints (full sync < 1 s,
# endpoint change p99 < 50 ms), and wrk to a Wasm Service by ClusterIP vs pod IP (kernel path
# >= 0.8x direct, in-process path >= 0.9x).
bench-network: bootstrap guests
	cargo build --release --workspace --bin skiff --bin skiff-bench-dns --bin skiff-bench-proxy --bin skiff-bench-service
	$(CARGO_TARGET_DIR)/release/skiff-bench-dns
	$(CARGO_TARGET_DIR)/release/skiff-bench-proxy
	$(CARGO_TARGET_DIR)/release/skiff-bench-service --skiff $(CARGO_TARGET_DIR)/release/skiff \
		--guests-dir $(SKIFF_GUESTS_DIR) --wrk "$$(command -v wrk)"

# Autoscaling: first response from zero replicas (100 cold starts), the HPA's reaction time with
# 1 s metrics, and the metrics pipeline's cost with 5,000 pods. Root (network namespaces).
# BENCH_AUTOSCALE_ARGS="--only cold --cold-starts 20" for a shorter run.
BENCH_AUTOSCALE_ARGS ?=
bench-autoscale: bootstrap guests
	cargo build --release --workspace --bin skiff --bin skiff-bench-autoscale
	$(CARGO_TARGET_DIR)/release/skiff-bench-autoscale --skiff $(CARGO_TARGET_DIR)/release/skiff --guests-dir $(SKIFF_GUESTS_DIR) $(BENCH_AUTOSCALE_ARGS)
