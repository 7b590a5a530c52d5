#!/usr/bin/env bash
# Builds kiln and generates a picture with the embedded default model.
# Usage: tools/demo.sh [PROMPT] [OUTPUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target gen
prompt=${1:-"a red circle on a blue background"}
out=${2:-kiln.png}
model=()
if [[ ! -f models/kiln-shapes.safetensors ]]; then
    # no embedded model in this checkout: the tiny test model (random weights) stands in
    model=(--model tests/data/tiny/sd15_tiny_ldm_fp32.safetensors --width 64 --height 64)
fi
build/bin/gen "${model[@]}" --prompt "$prompt" --output "$out"
echo "kiln: wrote $out"
