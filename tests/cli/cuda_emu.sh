#!/usr/bin/env bash
# The CUDA kernels on the CPU emulator (tests/cuda_emu/README.md): builds
# tests/cuda_emu with g++ and AddressSanitizer and runs it against cpu_ref.
# Usage: cuda_emu.sh BIN_DIR DATA_DIR (both unused: it builds from source).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
emu=$src/tests/cuda_emu
if ! command -v g++ >/dev/null || ! command -v python3 >/dev/null; then
    echo "skipped: needs g++ and python3"
    exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for family in elementwise norm attention conv dequantize; do
    python3 "$emu/preprocess.py" "$src/kernels/$family.cu" "$work/$family.cpp"
done
cp "$src/kernels/cuda_common.cuh" "$work/"
san=("-fsanitize=address,undefined" -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
inc=(-I "$emu/include" -I "$work" -I "$src/runtime" -I "$src/runtime/include")
for c in runtime/cpu_ref runtime/resample runtime/status runtime/tensor runtime/quant tests/support/quant_blocks; do
    gcc -std=c17 -O1 -g -D_GNU_SOURCE -ffp-contract=off "${san[@]}" "${inc[@]}" -I "$src/tests/support" -c "$src/$c.c" \
        -o "$work/$(basename "$c").o"
done
# a 4 KiB column budget makes conv2d split images into 256-pixel chunks
for f in "$work"/elementwise.cpp "$work"/norm.cpp "$work"/attention.cpp "$work"/conv.cpp "$work"/dequantize.cpp \
         "$emu/emu.cpp" "$emu/test_kernels.cpp"; do
    g++ -std=c++17 -O1 -g -ffp-contract=off -Wall -Wno-unknown-pragmas -DCONV_COL_BYTES=4096 "${san[@]}" "${inc[@]}" \
        -I "$src/tests/support" \
        -c "$f" -o "$work/$(basename "$f" .cpp).o"
done
g++ "${san[@]}" "$work"/*.o -lm -o "$work/test_kernels"
# ucontext stacks confuse the leak checker, and nothing here is long-lived
ASAN_OPTIONS=detect_leaks=0 "$work/test_kernels"
