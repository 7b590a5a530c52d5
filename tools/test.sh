#!/usr/bin/env bash
# Builds kiln and runs the whole test suite: unit and parity tests, the
# Vulkan suite on whatever Vulkan device exists (lavapipe without a GPU), CUDA
# tests where a GPU exists (skipped otherwise), the slow full-size tests, and
# the unit tests and the Vulkan host tests again under AddressSanitizer/UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh --test
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
# In parallel, one test a core: the Vulkan suites on lavapipe spend most of
# their time compiling shaders on one core (tests/CMakeLists.txt starts them
# first); the two full-size tests take turns (they share a checkpoint).
KILN_SLOW=1 ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# the CUDA emulator test builds its own sanitized binary: once is enough
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -L unit -E cuda_emu -j"$jobs"
# The Vulkan host code (arena, command recording and replay, model runs) under
# the sanitizers too, on lavapipe. Leak checking is off for these: Mesa's
# driver leaves a few allocations in modules it has unloaded by exit, which
# LeakSanitizer cannot tell apart. (The op suite is left out: its float64
# references take minutes under ASan, and its host path is the one above.)
ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build-asan --output-on-failure -R '^test_(vulkan_backend|parity_vulkan)$' -j"$jobs"
