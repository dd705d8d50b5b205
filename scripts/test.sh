#!/usr/bin/env bash
# Run every test of the workspace (unit, integration, end-to-end) and close with one summary
# line, `tests: N passed, N failed`, summed over all test binaries.
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
sum() { awk -v what="$1" '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ "^" what) n += $i } END { print n + 0 }' "$log"; }
passed=$(sum passed)
failed=$(sum failed)
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
if [ "${passed:-0}" -eq 0 ]; then
    echo "no test ran" >&2
    exit 1
fi
exit "$status"
