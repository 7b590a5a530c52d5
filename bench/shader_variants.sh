#!/usr/bin/env bash
# Builds variants of the tensor-core GEMM shaders (shaders/gemm_coopmat.glsl's
# GEMM_BK, GEMM_THREADS, GEMM_STAGES and GEMM_PREFETCH) from the current sources, one folder each, for
# KILN_VULKAN_SHADER_DIR: what bench/device.sh measures side by side with the
# built-in shaders when given SHADER_VARIANTS=OUT_DIR. Each folder holds
# matmul and conv2d on both multiply shapes and their emulated twins, so that
# lavapipe can check a variant before a GPU times it:
#   KILN_VULKAN_SHADER_DIR=OUT_DIR/bk32 build/bin/test_ops_vulkan
# (the suite's tensor-core passes run emulated there).
# Usage: bench/shader_variants.sh OUT_DIR
set -euo pipefail
out=${1:?usage: bench/shader_variants.sh OUT_DIR}
src=$(cd "$(dirname "$0")/../shaders" && pwd)
command -v glslangValidator >/dev/null || { echo "shader_variants.sh: glslangValidator not found (Debian: glslang-tools)" >&2; exit 1; }

variant() { # NAME, then defines
    local name=$1 dir=$out/$1
    shift
    mkdir -p "$dir"
    for op in matmul conv2d; do
        for shape in "" n8_; do
            for emu in "" emu_; do
                local defs=(-DW_F16_STORAGE -DGEMM_COOPMAT "$@")
                [ -n "$shape" ] && defs+=(-DCM_N=8)
                [ -n "$emu" ] && defs+=(-DCOOPMAT_EMULATED)
                glslangValidator -V --target-env vulkan1.2 --spirv-val "${defs[@]}" \
                    -o "$dir/${op}_coopmat_${shape}${emu}f16.spv" "$src/$op.comp" >/dev/null
            done
        done
    done
    echo "$dir: $*"
}
variant bk32 -DGEMM_BK=32
variant t128 -DGEMM_THREADS=128
variant t128_bk32 -DGEMM_THREADS=128 -DGEMM_BK=32
variant s2_bk32 -DGEMM_STAGES=2 -DGEMM_BK=32
variant t128_s2_bk32 -DGEMM_THREADS=128 -DGEMM_STAGES=2 -DGEMM_BK=32
# (loading 2 and 3 K steps ahead at K steps of 64 is built in:
# KILN_VULKAN_GEMM_PREFETCH)
variant pf2_bk32 -DGEMM_PREFETCH=2 -DGEMM_BK=32
variant pf3_bk32 -DGEMM_PREFETCH=3 -DGEMM_BK=32
