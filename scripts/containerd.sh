#!/usr/bin/env bash
# containerd for Skiff's OCI (CRI) runtime, without systemd and without a registry:
#
#   containerd.sh install              apt-get containerd, runc, the CNI plugins and busybox-static
#   containerd.sh images OUTDIR        build OCI image-layout tarballs: skiff.local/busybox:1.36
#                                      (busybox-static) and skiff.local/pause:3.10 (runtime/cri/pause)
#   containerd.sh start DIR [BRIDGE]   run an isolated containerd with everything under DIR, the two
#                                      images imported into namespace k8s.io, registry hosts.toml
#                                      files read from DIR/certs.d; prints the socket path
#   containerd.sh stop DIR             stop the instance started in DIR
#
# Instances are independent: each has its own root, state, socket, runc root, CNI network
# (named after its bridge) and host-local IPAM directory, so several may run at once as long as
# their DIR and BRIDGE differ. Pod networking needs a pod CIDR first: the CRI client sends it with
# UpdateRuntimeConfig and containerd renders DIR/net.d from DIR/cni.template. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
BUSYBOX_REF="skiff.local/busybox:1.36"
PAUSE_REF="skiff.local/pause:3.10"
CNI_BIN_DIR="${CNI_BIN_DIR:-/usr/lib/cni}"
START_TIMEOUT_SECS="${CONTAINERD_START_TIMEOUT_SECS:-30}"

die() { echo "containerd.sh: $*" >&2; exit 1; }

cmd_install() {
    local need=()
    command -v containerd >/dev/null 2>&1 || need+=(containerd)
    command -v runc >/dev/null 2>&1 || need+=(runc)
    [ -x "$CNI_BIN_DIR/bridge" ] || need+=(containernetworking-plugins)
    busybox_is_static || need+=(busybox-static)
    command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
        # The package starts a system containerd where systemd runs; Skiff runs its own.
        if [[ " ${need[*]} " == *" containerd "* ]] && command -v systemctl >/dev/null 2>&1; then
            $sudo systemctl disable --now containerd >/dev/null 2>&1 || true
        fi
    fi
}

busybox_path() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        [ -x "$b" ] && { echo "$b"; return 0; }
    done
    return 1
}

busybox_is_static() {
    local b
    b="$(busybox_path)" || return 1
    # A dynamically linked busybox has an ELF interpreter; a static one does not.
    ! LC_ALL=C readelf -l "$b" 2>/dev/null | grep -q 'program interpreter'
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# write_blob LAYOUT FILE: move FILE into LAYOUT/blobs/sha256 under its digest; prints the hex.
write_blob() {
    local hex
    hex="$(sha256 "$2")"
    mv "$2" "$1/blobs/sha256/$hex"
    echo "$hex"
}

# build_image REF OUT.tar ROOTFS CONFIG_JSON: an OCI image-layout tarball with one uncompressed
# layer holding ROOTFS and CONFIG_JSON as the image config's "config" object.
build_image() {
    local ref="$1" out="$2" rootfs="$3" config="$4"
    local work arch layer_hex layer_size config_hex config_size manifest_hex manifest_size
    work="$(mktemp -d "${out}.work.XXXXXX")"
    mkdir -p "$work/layout/blobs/sha256"
    arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
    # Reproducible layer: sorted names, fixed times and owners.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "$rootfs" -cf "$work/layer.tar" .
    layer_size="$(stat -c %s "$work/layer.tar")"
    layer_hex="$(write_blob "$work/layout" "$work/layer.tar")"
    printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/containerd.sh"}]}' \
        "$arch" "$config" "$layer_hex" >"$work/config.json"
    config_size="$(stat -c %s "$work/config.json")"
    config_hex="$(write_blob "$work/layout" "$work/config.json")"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$config_hex" "$config_size" "$layer_hex" "$layer_size" >"$work/manifest.json"
    manifest_size="$(stat -c %s "$work/manifest.json")"
    manifest_hex="$(write_blob "$work/layout" "$work/manifest.json")"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"%s","os":"linux"}}]}' \
        "$manifest_hex" "$manifest_size" "$ref" "$ref" "$arch" >"$work/layout/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        -C "$work/layout" -cf "$out.tmp.$$" oci-layout index.json blobs
    mv "$out.tmp.$$" "$out"
    rm -rf "$work"
}

# up_to_date OUT INPUT...: OUT exists and is newer than every input.
up_to_date() {
    local out="$1" input
    shift
    [ -s "$out" ] || return 1
    for input in "$@"; do
        [ "$out" -nt "$input" ] || return 1
    done
}

cmd_images() {
    local out="${1:?usage: containerd.sh images OUTDIR}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    # Instances started at once share the image cache: one builds, the others wait for it.
    exec 9>"$out/.lock"
    flock 9
    local busybox pause_src="$repo/runtime/cri/pause/pause.c" self="${BASH_SOURCE[0]}"
    busybox="$(busybox_path)" || die "busybox not found (containerd.sh install)"
    busybox_is_static || die "$busybox is not statically linked (install busybox-static)"

    if ! up_to_date "$out/busybox.tar" "$busybox" "$self"; then
        local rootfs
        rootfs="$(mktemp -d "$out/busybox-rootfs.XXXXXX")"
        mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev}
        chmod 1777 "$rootfs/tmp"
        cp "$busybox" "$rootfs/bin/busybox"
        local applet
        for applet in $("$busybox" --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
        build_image "$BUSYBOX_REF" "$out/busybox.tar" "$rootfs" \
            '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'
        rm -rf "$rootfs"
    fi

    if ! up_to_date "$out/pause.tar" "$pause_src" "$self"; then
        local rootfs
        rootfs="$(mktemp -d "$out/pause-rootfs.XXXXXX")"
        gcc -static -Os -s -o "$rootfs/pause" "$pause_src"
        build_image "$PAUSE_REF" "$out/pause.tar" "$rootfs" '{"Entrypoint":["/pause"]}'
        rm -rf "$rootfs"
    fi
    echo "$out/busybox.tar"
    echo "$out/pause.tar"
}

# Whether overlayfs mounts work under DIR (not on every filesystem, nor inside every container).
overlay_works() {
    local t="$1/overlay-probe"
    mkdir -p "$t"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" "$t/merged" 2>/dev/null; then
        umount "$t/merged"
        rm -rf "$t"
        return 0
    fi
    rm -rf "$t"
    return 1
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

cmd_start() {
    local dir="${1:?usage: containerd.sh start DIR [BRIDGE]}" bridge="${2:-skiff0}"
    [ ${#bridge} -le 15 ] || die "bridge name $bridge is longer than 15 characters"
    command -v containerd >/dev/null 2>&1 || die "containerd is not installed (containerd.sh install)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local sock="$dir/containerd.sock"
    if [ -f "$dir/containerd.pid" ] && pid_alive "$(cat "$dir/containerd.pid")" && [ -S "$sock" ]; then
        echo "$sock"
        return 0
    fi
    [ ${#sock} -lt 100 ] || die "socket path $sock is too long for a unix socket"
    local images_dir="${SKIFF_OCI_IMAGES_DIR:-$dir/images}"
    cmd_images "$images_dir" >/dev/null

    local snapshotter="native"
    mkdir -p "$dir/root"
    overlay_works "$dir/root" && snapshotter="overlayfs"
    mkdir -p "$dir/net.d" "$dir/state" "$dir/runc" "$dir/cni-ipam" "$dir/certs.d"
    echo "$bridge" >"$dir/bridge"
    # Rendered by containerd once it has a pod CIDR (CRI UpdateRuntimeConfig).
    cat >"$dir/cni.template" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "skiff-$bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni-ipam",
        "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  # Without CAP_SYS_RESOURCE a container may not lower its OOM score below ours.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pods' network namespaces live under DIR/state, not in the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$dir/net.d"
    conf_template = "$dir/cni.template"
    max_conf_num = 1
  # Registry hosts (mirrors, CAs) as containerd's hosts.toml files, one directory per
  # registry host: skiff writes them from its registries.yaml (--containerd-registry-config-path).
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
EOF
    rm -f "$sock"
    # setsid: the daemon outlives the caller's process group (test harnesses kill theirs).
    setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$dir/containerd.pid"
    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    until [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; do
        pid_alive "$pid" || { tail -n 20 "$dir/containerd.log" >&2; die "containerd exited during start"; }
        [ $SECONDS -lt $deadline ] || { tail -n 20 "$dir/containerd.log" >&2; die "containerd socket $sock not ready after ${START_TIMEOUT_SECS}s"; }
        sleep 0.1
    done
    local tarball
    for tarball in "$images_dir/pause.tar" "$images_dir/busybox.tar"; do
        ctr --address "$sock" -n k8s.io images import --snapshotter "$snapshotter" "$tarball" >/dev/null \
            || die "importing $tarball failed"
    done
    echo "$sock"
}

cmd_stop() {
    local dir="${1:?usage: containerd.sh stop DIR}"
    [ -d "$dir" ] || return 0
    dir="$(cd "$dir" && pwd)"
    local pid=""
    [ -f "$dir/containerd.pid" ] && pid="$(cat "$dir/containerd.pid")"
    if pid_alive "$pid"; then
        local sock="$dir/containerd.sock"
        # Containers' shims outlive containerd: stop the pods first so nothing keeps running.
        if command -v crictl >/dev/null 2>&1; then
            crictl --runtime-endpoint "unix://$sock" rmp -fa >/dev/null 2>&1 || true
        else
            local task
            for task in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
                ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
            done
        fi
        kill "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
    fi
    # Shims of this instance (their command line names its socket) that survived.
    local shim
    for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd.sock" || true); do
        kill -9 "$shim" 2>/dev/null || true
    done
    # Mounts left under the instance's root or state (sandbox shm, rootfs) keep DIR busy.
    local m
    for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    # The bridge holds the pod CIDR's gateway address: left behind, it would shadow a later
    # instance's pods on the same CIDR.
    if [ -f "$dir/bridge" ]; then
        ip link delete "$(cat "$dir/bridge")" type bridge >/dev/null 2>&1 || true
        rm -f "$dir/bridge"
    fi
    rm -f "$dir/containerd.pid"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    images) shift; cmd_images "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) die "usage: containerd.sh install | images OUTDIR | start DIR [BRIDGE] | stop DIR" ;;
esac
