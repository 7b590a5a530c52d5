#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages kiln builds and tests with, when missing.
# Usage: tools/deps.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail

packages=(build-essential cmake pkg-config libcjson-dev zlib1g-dev libpng-dev libjpeg-dev
          libopenblas-dev libutf8proc-dev libzip-dev libvulkan-dev libvulkan-volk-dev glslang-tools)
if [[ "${1:-}" == "--test" ]]; then
    # lavapipe (Vulkan on the CPU) so the Vulkan suite runs without a GPU
    packages+=(libcmocka-dev mesa-vulkan-drivers python3)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    echo "kiln: installing ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
