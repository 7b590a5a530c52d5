#!/usr/bin/env bash
# bench/shader_variants.sh builds every variant of the tensor-core GEMM it
# lists (each compiled and run through the SPIR-V validator), and the
# variants with two knobs turned from the defaults (4 subgroups a tile and a
# K step of 32; a K step of 32 and two shared-memory stages; K steps of 32
# loaded three ahead) pass the Vulkan op suite on emulated
# matrices: the knobs stay correct for the GPU runs that time them
# (bench/device.sh SHADER_VARIANTS=...). Only the suite's tests that run the
# shaders a variant folder replaces (the tensor-core GEMMs on 64-row tiles
# loading 1 K step ahead, on both multiply shapes) run with them: the rest
# of the suite would only rebuild the built-in shaders on lavapipe, minutes
# each time.
# Usage: shader_variants.sh BIN_DIR DATA_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -x "$1/test_ops_vulkan" ] || ! command -v glslangValidator >/dev/null; then
    echo "SKIP: no Vulkan build (test_ops_vulkan) or no glslangValidator"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$root/bench/shader_variants.sh" "$dir"
for v in bk32 t128 t128_bk32 s2_bk32 t128_s2_bk32 pf2_bk32 pf3_bk32; do
    n=$(ls "$dir/$v"/*.spv | wc -l)
    [ "$n" -eq 8 ] || { echo "FAIL: $v has $n shaders, expected 8" >&2; exit 1; }
done
for v in t128_bk32 s2_bk32 pf3_bk32; do
    for t in f16_compute_f16_weights f16_compute_f16_weights_on_16x8x16; do
        rc=0
        KILN_VULKAN_SHADER_DIR=$dir/$v "$1/test_ops_vulkan" $t >"$dir/ops.log" 2>&1 || rc=$?
        echo "$v, $t: $(grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$dir/ops.log" | tr '\n' ' ' || true)"
        if [ $rc -ne 0 ]; then
            [ $rc -eq 77 ] && { echo "SKIP: $(tail -n 1 "$dir/ops.log")"; exit 77; }
            grep -E "FAIL" "$dir/ops.log" | head -n 20 >&2
            exit 1
        fi
        # a test skipped (no 16x8x16 on this device) did not check the variant
        if grep -q '^\[  SKIPPED \]' "$dir/ops.log"; then
            echo "FAIL: $v, $t was skipped here: $(grep -m1 'no .* pass' "$dir/ops.log")" >&2
            exit 1
        fi
    done
done
