#!/usr/bin/env bash
# gen --list-devices: exits 0 and prints the CPU, then for each GPU backend
# either its devices, numbered from 0 as --device takes them, exactly one
# marked as the default, or one line saying why it sees none. In CI, where
# the Vulkan suite must find lavapipe, the Vulkan backend must list it.
# Usage: gen_list_devices.sh BIN_DIR DATA_DIR
set -u
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

"$bin/gen" --list-devices >"$out" 2>&1
rc=$?
cat "$out"
[[ $rc -eq 0 ]] || fail "exit $rc"
grep -qE '^cpu: [0-9]+ cores$' "$out" || fail "no 'cpu: N cores' line"
for backend in vulkan cuda; do
    if grep -qE "^$backend: none \(.+\)$" "$out"; then
        grep -qE "^$backend [0-9]+: " "$out" && fail "$backend: both devices and 'none'"
        continue
    fi
    lines=$(grep -cE "^$backend [0-9]+: " "$out")
    [[ $lines -ge 1 ]] || { fail "$backend: neither devices nor 'none (why)'"; continue; }
    # numbered 0, 1, ... in order
    want=0
    while read -r index; do
        [[ $index -eq $want ]] || fail "$backend: device $index listed where $want was due"
        want=$((want + 1))
    done < <(grep -oE "^$backend [0-9]+:" "$out" | grep -oE '[0-9]+')
    defaults=$(grep -cE "^$backend [0-9]+: .*\(the default\)$" "$out")
    [[ $defaults -eq 1 ]] || fail "$backend: $defaults devices marked as the default"
done
if [[ -n "${CI:-}${KILN_REQUIRE_VULKAN:-}" ]] && [[ -x "$bin/test_ops_vulkan" ]]; then
    grep -qE '^vulkan 0: ' "$out" || fail "CI: no Vulkan device listed"
fi
if [[ $failures -ne 0 ]]; then
    echo "$failures failed"
    exit 1
fi
echo "gen --list-devices: ok"
