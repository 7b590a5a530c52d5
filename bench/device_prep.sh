#!/usr/bin/env bash
# Gets a GPU check ready on this (CPU) machine, so that a short device lease
# is spent on the GPU and not on building: `bench/device.sh` then runs on
# binaries built here.
#   1. builds, in build-device/, the programs device.sh runs, for Hopper
#      (sm_90) and any x86-64 CPU (KILN_NATIVE=OFF), and packs them stripped
#      into .devbin/programs.tar.xz (a seventh of their size: device.sh unpacks
#      it), with .devbin/COMMIT naming what they were built from;
#   2. downloads into .devdeps/ the Debian packages of the shared libraries
#      they load that a bare device machine may lack (the Vulkan loader,
#      cJSON, libpng, libjpeg, OpenBLAS, utf8proc, ...): device.sh unpacks
#      them into /tmp/kiln-deps;
#   3. keeps both out of git (.git/info/exclude), and says what would travel.
#
# The checked-in test data and models are larger than what a device call
# takes along (64 MiB), and device.sh needs none of the big files: take them
# out of the index for the call and put them back after, never committing
# in between:
#   git rm -r -q --cached tests/data/full tests/data/tiny/sd15_tiny_diffusers models/kiln-shapes.safetensors
#   ... the device call: carry [".devbin", ".devdeps"], command
#       "KILN_PREBUILT=.devbin FOCUS=vulkan-f16 bench/device.sh"  (or without FOCUS: the whole check)
#   git reset -q
#
# Usage: bench/device_prep.sh      Environment: JOBS (default nproc), ARCHS (default 90-real)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${JOBS:-$(nproc)}
archs=${ARCHS:-90-real}
build="build-device"
programs=(bench bench_ops make_sd15_hashinit test_ops_cuda test_parity_cuda test_ops_vulkan test_parity_vulkan
    test_vulkan_backend)

echo "== build ($build: CUDA $archs, Vulkan, KILN_NATIVE=OFF)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_NATIVE=OFF -DKILN_CUDA=ON -DKILN_VULKAN=ON \
    -DKILN_CUDA_ARCHS="$archs" >/dev/null
cmake --build "$build" -j "$jobs" --target "${programs[@]}"

echo "== .devbin"
rm -rf .devbin
mkdir -p .devbin/programs
for p in "${programs[@]}"; do
    cp "$build/bin/$p" .devbin/programs/
    strip .devbin/programs/"$p"
done
git rev-parse --short HEAD >.devbin/COMMIT
git diff --quiet HEAD || echo "$(cat .devbin/COMMIT) with uncommitted changes" >.devbin/COMMIT
cat .devbin/COMMIT

echo "== .devdeps"
# Every shared library the programs load, less what any Linux with a GPU
# driver has (the C library, libstdc++, the CUDA driver) and what comes with
# CUDA itself (device.sh finds cuBLASLt and the runtime in the toolkit or in
# PyTorch's wheels).
rm -rf .devdeps
mkdir .devdeps
mapfile -t libs < <(for p in "${programs[@]}"; do ldd ".devbin/programs/$p"; done | awk '$3 ~ /^\// {print $3}' |
    sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcuda|libcublas|libcublasLt|libcudart)\.so')
libs+=("$(ldconfig -p | awk '/libvulkan\.so\.1 /{path = $NF} END {print path}')") # loaded at run time: no ldd line
# dpkg knows a library by the path its package installed, which on a merged
# /usr is often not the one ldd resolves: ask by file name
mapfile -t packages < <(for lib in "${libs[@]}"; do
    dpkg -S "*/$(basename "$(readlink -f "$lib")")" 2>/dev/null | cut -d: -f1 || echo "no package has $lib" >&2
done | sort -u)
(cd .devdeps && apt-get download "${packages[@]}") 2>&1 | { grep -v "unsandboxed" || true; } # _apt cannot write here
ls .devdeps

for path in /.devbin/ /.devdeps/ /.whl/; do
    grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >>.git/info/exclude
done

XZ_OPT=-T0 tar -C .devbin/programs -cJf .devbin/programs.tar.xz "${programs[@]}"
rm -rf .devbin/programs

big=(tests/data/full tests/data/tiny/sd15_tiny_diffusers models/kiln-shapes.safetensors)
travel=$(
    { git ls-files -z | grep -z -v -E "^($(IFS='|'; echo "${big[*]}"))" | du -cb --files0-from=- | tail -n 1
      du -cb .devbin .devdeps | tail -n 1; } | awk '{n += $1} END {printf "%.1f", n / 1048576}'
)
echo "== ready: ${travel} MiB would travel with ${big[*]} out of the index (the limit is 64)"
