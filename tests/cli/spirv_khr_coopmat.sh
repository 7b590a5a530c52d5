#!/usr/bin/env bash
# tools/build/spirv_khr_coopmat (the build step that writes the shader table's
# VK_KHR_cooperative_matrix variants) on bad input: a module it cannot
# rewrite, one without NV matrices, a file that is no SPIR-V, a missing file.
# Each is an error naming the file and the reason, with a non-zero exit and
# no output file. (What it writes for good input: tests/test_spirv_khr.c.)
# Usage: spirv_khr_coopmat.sh BIN_DIR DATA_DIR
set -euo pipefail
tool="$1/spirv_khr_coopmat"
if [ ! -x "$tool" ]; then
    echo "SKIP: $tool not built (-DKILN_VULKAN=OFF)"
    exit 77
fi
src=$(cd "$(dirname "$0")/../.." && pwd)/shaders
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
status=0

expect_error() { # description, input, expected text
    if "$tool" "$2" "$dir/out.h" kiln_spv_x 2>"$dir/err"; then
        echo "FAIL: $1: accepted" >&2
        status=1
    elif ! grep -qF "$2" "$dir/err" || ! grep -qF "$3" "$dir/err"; then
        echo "FAIL: $1: the error does not name the file and '$3':" >&2
        cat "$dir/err" >&2
        status=1
    elif [ -e "$dir/out.h" ]; then
        echo "FAIL: $1: left $dir/out.h behind" >&2
        status=1
    else
        echo "ok: $1: $(cat "$dir/err")"
    fi
}

# 16x16x16: A and B are one NV type
glslangValidator -V --target-env vulkan1.2 -DW_F16_STORAGE -DGEMM_COOPMAT -o "$dir/n16.spv" "$src/matmul.comp" >/dev/null
expect_error "16x16x16 module" "$dir/n16.spv" "used as more than one of A, B and accumulator"
glslangValidator -V --target-env vulkan1.2 -o "$dir/plain.spv" "$src/softmax.comp" >/dev/null
expect_error "module without NV matrices" "$dir/plain.spv" "no SPV_NV_cooperative_matrix"
printf 'not spir-v at all' >"$dir/text.spv"
expect_error "text file" "$dir/text.spv" "not a SPIR-V module"
head -c 400 "$dir/n16.spv" >"$dir/cut.spv"
expect_error "truncated module" "$dir/cut.spv" "runs past the end"
expect_error "missing file" "$dir/missing.spv" "cannot open"

# and the 16x8x16 one it is built for goes through
glslangValidator -V --target-env vulkan1.2 -DW_F16_STORAGE -DGEMM_COOPMAT -DCM_N=8 -o "$dir/n8.spv" "$src/matmul.comp" >/dev/null
if ! "$tool" "$dir/n8.spv" "$dir/n8.h" kiln_spv_x || ! grep -q "const uint32_t kiln_spv_x\[\] = {" "$dir/n8.h"; then
    echo "FAIL: 16x8x16 module not rewritten" >&2
    status=1
fi
exit $status
