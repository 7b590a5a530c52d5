#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU:
#   1. configure and build kiln with CUDA (and Vulkan when its SDK is there),
#   2. the op tests and parity tests (ctest -R "ops|parity"), and the CUDA op
#      tests under compute-sanitizer memcheck when it is installed,
#   3. `bench --backend cuda` and PyTorch/diffusers (bench/diffusers_bench.py)
#      side by side on the same full-size random SD 1.5 checkpoint, 512x512,
#      batch 2 (CFG), printing a short table last.
#
# Usage: bench/device.sh [RESULTS_DIR]     (default: build-gpu/results; $OUT if set)
# Environment: STEPS (default 20), BUILD (default build-gpu), JOBS (default nproc).
#
# On a machine that cannot reach a package registry, bring what is missing:
#   - Debian packages kiln builds with (tools/deps.sh --test lists them) as .deb
#     files in .debs/ at the repository root: they are unpacked with dpkg -x;
#   - diffusers (and its own dependencies) as wheels in .whl/: installed with
#     pip --no-index into /tmp/site.
# Every step's log lands in RESULTS_DIR; a failing build stops the script, a
# failing test is reported in the table and makes the exit status non-zero.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
results=${1:-${OUT:-$root/build-gpu/results}}
build=${BUILD:-$root/build-gpu}
steps=${STEPS:-20}
jobs=${JOBS:-$(nproc)}
mkdir -p "$results"
cd "$root" || exit 1

say() { printf '\n== %s\n' "$*"; }
status=0

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$results/gpu.txt" ||
    { echo "device.sh: nvidia-smi found no GPU" >&2; exit 1; }
nvcc --version | tail -n 2

if compgen -G ".debs/*.deb" >/dev/null; then
    say "unpacking .debs/"
    for deb in .debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    say "installing .whl/"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

say "configure and build ($build)"
vulkan=OFF
if command -v glslangValidator >/dev/null && { pkg-config --exists vulkan 2>/dev/null || [ -e /usr/include/vulkan/vulkan.h ]; }; then
    vulkan=ON
fi
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_VULKAN=$vulkan \
        >"$results/configure.log" 2>&1 || ! cmake --build "$build" -j "$jobs" >"$results/build.log" 2>&1; then
    tail -n 40 "$results/configure.log" "$results/build.log" 2>/dev/null
    echo "device.sh: build failed" >&2
    exit 1
fi
grep -i "warning" "$results/build.log" | grep -v "^$" | head -n 20
echo "built: CUDA ON, Vulkan $vulkan"

say "op and parity tests"
ctest --test-dir "$build" -R "ops|parity" --output-on-failure >"$results/ctest.log" 2>&1
ctest_rc=$?
tail -n 15 "$results/ctest.log"
[ $ctest_rc -eq 0 ] || status=1

memcheck="not installed"
if command -v compute-sanitizer >/dev/null; then
    say "compute-sanitizer memcheck on test_ops_cuda"
    if compute-sanitizer --tool memcheck --error-exitcode 3 "$build/bin/test_ops_cuda" >"$results/memcheck.log" 2>&1; then
        memcheck="clean"
    else
        memcheck="FAILED (see memcheck.log)"
        status=1
    fi
    tail -n 5 "$results/memcheck.log"
fi

say "checkpoint"
ckpt=$build/sd15_hashinit.safetensors # where tests/support/full_checkpoint.c also looks
[ -s "$ckpt" ] || "$build/bin/make_sd15_hashinit" "$ckpt" || { echo "device.sh: no checkpoint" >&2; exit 1; }
ls -l "$ckpt"

say "kiln bench (cuda, $steps steps)"
"$build/bin/bench" --model "$ckpt" --width 512 --height 512 --steps "$steps" --backend cuda --json \
    >"$results/kiln_cuda.json" 2>"$results/kiln_cuda.err" || { cat "$results/kiln_cuda.err"; status=1; }
if [ $vulkan = ON ]; then
    say "kiln bench (vulkan, $steps steps)"
    "$build/bin/bench" --model "$ckpt" --width 512 --height 512 --steps "$steps" --backend vulkan --json \
        >"$results/kiln_vulkan.json" 2>"$results/kiln_vulkan.err" || { cat "$results/kiln_vulkan.err"; status=1; }
fi

say "diffusers bench (fp16, SDPA, $steps steps)"
PYTHONUNBUFFERED=1 python3 bench/diffusers_bench.py --checkpoint "$ckpt" --steps "$steps" \
    >"$results/diffusers.json" 2>"$results/diffusers.err" || { tail -n 20 "$results/diffusers.err"; status=1; }

say "summary"
python3 - "$results" "$ctest_rc" "$memcheck" <<'EOF'
import json, os, sys
results, ctest_rc, memcheck = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def load(name):
    try:
        with open(os.path.join(results, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

gpu = open(os.path.join(results, "gpu.txt")).read().strip()
rows = [("kiln cuda", load("kiln_cuda.json")), ("kiln vulkan", load("kiln_vulkan.json")),
        ("diffusers fp16 SDPA", load("diffusers.json"))]
peer = rows[2][1]
print(f"GPU, driver, memory : {gpu}")
print(f"ctest ops|parity    : {'passed' if ctest_rc == 0 else 'FAILED (see ctest.log)'}")
print(f"memcheck            : {memcheck}")
print("SD 1.5 UNet, 512x512, batch 2 (CFG)")
# diffusers: torch's peak allocation; kiln: weights + activation arena (+ a few MiB of scratch)
print(f"{'runner':<22}{'it/s':>9}{'x diffusers':>13}{'device MiB':>12}  precision")
for name, r in rows:
    if name == "kiln vulkan" and r is None:
        continue
    if r is None:
        print(f"{name:<22}{'failed':>9}")
        continue
    its = r.get("it_per_s", 0.0)
    ratio = f"{its / peer['it_per_s']:.2f}" if peer and peer.get("it_per_s") else "-"
    if "peak_device_bytes" in r:
        dev = f"{r['peak_device_bytes'] / 2**20:.0f}"
    else:
        dev = f"~{(r.get('weight_bytes', 0) + r.get('unet_arena_bytes', 0)) / 2**20:.0f}"
    print(f"{name:<22}{its:>9.2f}{ratio:>13}{dev:>12}  {r.get('precision', '')}")
EOF
exit $status
