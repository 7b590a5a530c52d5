#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU:
#   1. configure and build kiln with CUDA (and Vulkan when its SDK is there),
#      or use binaries built elsewhere (KILN_PREBUILT=DIR holding them, or
#      their programs.tar.xz as bench/device_prep.sh packs them);
#   2. the CUDA and Vulkan op and parity test programs, and the CUDA op tests
#      under compute-sanitizer memcheck when it is installed (last: it is slow);
#   3. `bench --backend cuda` (f16 and f32 compute), `bench --backend vulkan`,
#      PyTorch/diffusers (bench/diffusers_bench.py) and, where a build of it is
#      given, stable-diffusion.cpp's Vulkan sd-cli, side by side on the same
#      full-size random SD 1.5 checkpoint, 512x512, batch 2 (CFG), printing a
#      short table last.
#
# Usage: bench/device.sh [RESULTS_DIR]     (default: build-gpu/results; $OUT if set)
# Environment: STEPS (default 20), BUILD (default build-gpu), JOBS (default nproc),
#              KILN_PREBUILT (a folder of prebuilt test and bench binaries),
#              FOCUS=vulkan-f16 (only what issue 4's speed target needs, for a
#              short device lease: the Vulkan backend tests and f16 GEMM op
#              passes, kiln CUDA f16 and Vulkan f16 side by side with their
#              op-by-op traces, the pipeline statistics, and Vulkan f16 with
#              each choice not yet run on a GPU forced: 128x64 tiles,
#              128-row attention, workgroup-scope matrices (forced, and
#              timed at open beside the other GEMM kinds)),
#              SKIP_VULKAN=1 (leave out the Vulkan tests and bench),
#              SKIP_MEMCHECK=1 (leave out compute-sanitizer),
#              SKIP_DIFFUSERS=1 (leave out the PyTorch/diffusers bench),
#              SHADER_VARIANTS (a folder from bench/shader_variants.sh: each
#              variant's model parity, bench_ops GEMM rows and Vulkan f16
#              bench, loaded into the same binaries with KILN_VULKAN_SHADER_DIR),
#              BASELINE_BIN (a folder with an earlier commit's bench and
#              bench_ops, and COMMIT naming it: its Vulkan f16 bench and
#              bench_ops beside this build's, for a before/after in one run),
#              SDCPP_VULKAN (an sd.cpp sd-cli built with -DSD_VULKAN=ON, built
#              outside this repository; default $bin/sd-cli-vulkan if there,
#              else the cyllama-vulkan wheel's if it is among the wheels).
#
# On a machine that cannot reach a package registry, bring what is missing:
#   - Debian packages (the runtime libraries kiln links, the Vulkan loader and
#     glvnd for NVIDIA's Vulkan driver; -dev packages too to build there) as .deb
#     files in .devdeps/: they are unpacked into /tmp/kiln-deps, never over /;
#   - diffusers (and its own dependencies) as wheels in .whl/, and
#     cyllama-vulkan for stable-diffusion.cpp's Vulkan build: installed with
#     pip --no-index into /tmp/site.
# Every step's log lands in RESULTS_DIR; a failing build stops the script, a
# failing test is reported in the table and makes the exit status non-zero.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
results=${1:-${OUT:-$root/build-gpu/results}}
build=${BUILD:-$root/build-gpu}
steps=${STEPS:-20}
focus=${FOCUS:-}
case $focus in "" | vulkan-f16) ;; *) echo "device.sh: FOCUS=$focus: must be vulkan-f16 or unset" >&2; exit 2 ;; esac
full() { [ -z "$focus" ]; } # the whole check, not FOCUS's part of it
jobs=${JOBS:-$(nproc)}
mkdir -p "$results"
cd "$root" || exit 1

say() {
    printf '\n== %s (%s s)\n' "$*" "$SECONDS"
    printf '%s|%s\n' "$(date '+%Y/%m/%d %H:%M:%S.%3N')" "$*" >>"$results/phases.txt"
}
status=0
: >"$results/phases.txt"

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$results/gpu.txt" ||
    { echo "device.sh: nvidia-smi found no GPU" >&2; exit 1; }
command -v nvcc >/dev/null && nvcc --version | tail -n 1
# The GPU's clocks through the whole run, summarised per phase at the end:
# whether Vulkan work runs at the clocks CUDA work gets.
nvidia-smi --query-gpu=timestamp,pstate,clocks.sm,clocks.mem,power.draw --format=csv,noheader,nounits -lms 200 \
    >"$results/clocks.csv" 2>/dev/null &
sampler=$!
trap 'kill $sampler 2>/dev/null' EXIT
lscpu | grep -m1 "Model name"

if compgen -G ".devdeps/*.deb" >/dev/null; then
    deps=/tmp/kiln-deps
    for deb in .devdeps/*.deb; do dpkg -x "$deb" "$deps"; done
    libs=$deps/usr/lib/x86_64-linux-gnu
    export LD_LIBRARY_PATH=$libs:$libs/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export CPATH=$deps/usr/include${CPATH:+:$CPATH} LIBRARY_PATH=$libs:$libs/openblas-pthread
    export CMAKE_PREFIX_PATH=$deps/usr PKG_CONFIG_PATH=$libs/pkgconfig
    echo "unpacked $(ls .devdeps/*.deb | wc -l) packages into $deps"
fi
# cuBLASLt and the CUDA runtime: the toolkit's, or the ones PyTorch's wheels carry.
if ! ldconfig -p | grep -q libcublasLt.so.13; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib \
             /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib; do
        [ -e "$d/libcublasLt.so.13" ] || [ -e "$d/libcudart.so.13" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
    done
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$icd" ] && export VK_DRIVER_FILES=$icd
done
echo "Vulkan driver: ${VK_DRIVER_FILES:-loader default}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ -n "${KILN_PREBUILT:-}" ]; then
    bin=$(cd "$KILN_PREBUILT" && pwd)
    if [ -e "$bin/programs.tar.xz" ]; then # as bench/device_prep.sh packs them
        mkdir -p /tmp/kiln-prebuilt && tar -C /tmp/kiln-prebuilt -xJf "$bin/programs.tar.xz" || exit 1
        cp "$bin/COMMIT" /tmp/kiln-prebuilt/ 2>/dev/null
        bin=/tmp/kiln-prebuilt
    fi
    ldd "$bin/test_ops_cuda" | grep "not found" # a library neither the machine nor .devdeps has
    # tests find their data through the source path they were built in
    data=$(strings "$bin/test_parity_cuda" | grep -m1 -o '/[^ ]*/tests/data' || true)
    if [ -n "$data" ] && [ ! -e "$data" ]; then mkdir -p "$(dirname "${data%/tests/data}")" && ln -s "$root" "${data%/tests/data}"; fi
else
    bin=$build/bin
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
    echo "built: CUDA ON, Vulkan $vulkan"
fi

# One test program (and its arguments): passed (0), skipped (77: counted as
# not run) or FAILED.
declare -A outcome
run_test() {
    local name=$1
    [ -x "$bin/$name" ] || return 0
    say "$*"
    timeout 150 "$bin/$name" "${@:2}" >"$results/$name.log" 2>&1
    local rc=$?
    case $rc in
        0) outcome[$name]=passed ;;
        77) outcome[$name]="skipped: $(tail -n 1 "$results/$name.log")"; status=1 ;;
        *) outcome[$name]="FAILED (rc $rc)"; status=1 ;;
    esac
    grep -E "^\[  (PASSED|FAILED|  OK|ERROR|SKIPPED) " "$results/$name.log" | grep -v "  OK" | tail -n 8
    echo "${outcome[$name]}"
}
full && for t in test_ops_cuda test_parity_cuda; do run_test $t; done

say "checkpoint"
ckpt=$build/sd15_hashinit.safetensors # where tests/support/full_checkpoint.c also looks
mkdir -p "$build"
[ -s "$ckpt" ] || "$bin/make_sd15_hashinit" "$ckpt" >/dev/null || { echo "device.sh: no checkpoint" >&2; exit 1; }
ls -l "$ckpt"

bench() { # NAME BACKEND COMPUTE [BENCH FLAGS]
    say "kiln bench $1 ($steps steps)"
    timeout 150 "$bin/bench" --model "$ckpt" --width 512 --height 512 --steps "$steps" --backend "$2" --compute "$3" \
        "${@:4}" --json >"$results/$1.json" 2>"$results/$1.err" || { tail -n 5 "$results/$1.err"; status=1; }
}
bench kiln_cuda_f16 cuda f16 --trace "$results/kiln_cuda_f16.trace"
full && bench kiln_cuda_f16_noreplay cuda f16 --no-replay
full && bench kiln_cuda_f32 cuda f32

if full && [ -x "$bin/bench_ops" ]; then
    say "bench_ops (cuda f16)"
    timeout 120 "$bin/bench_ops" --backend cuda --compute f16 2>&1 | tee "$results/bench_ops.txt"
fi

if full && [ -z "${SKIP_DIFFUSERS:-}" ]; then
    say "diffusers bench (fp16, SDPA, $steps steps)"
    PYTHONUNBUFFERED=1 timeout 180 python3 bench/diffusers_bench.py --checkpoint "$ckpt" --steps "$steps" \
        >"$results/diffusers.json" 2>"$results/diffusers.err" || { tail -n 20 "$results/diffusers.err"; status=1; }
fi

if [ -z "${SKIP_VULKAN:-}" ]; then
    if full; then
        for t in test_ops_vulkan test_parity_vulkan test_vulkan_backend; do run_test $t; done
    else
        run_test test_ops_vulkan 'f16_compute_f16_weights*'
        run_test test_vulkan_backend
    fi
    if [ -x "$bin/test_ops_vulkan" ]; then
        if [ -x "$bin/bench_ops" ]; then
            for compute in $(full && echo f32) f16; do
                say "bench_ops (vulkan $compute)"
                timeout 120 "$bin/bench_ops" --backend vulkan --compute $compute --reps 5 2>&1 |
                    tee "$results/bench_ops_vulkan_$compute.txt"
            done
        fi
        full && bench kiln_vulkan vulkan f32
        # tensor-core GEMMs where the driver has VK_NV_cooperative_matrix; its
        # profiled step op by op beside CUDA's, where the gap is by shape
        bench kiln_vulkan_f16 vulkan f16 --trace "$results/kiln_vulkan_f16.trace"
        if [ -s "$results/kiln_cuda_f16.trace" ] && [ -s "$results/kiln_vulkan_f16.trace" ]; then
            say "op by op: A = kiln cuda f16, B = kiln vulkan f16"
            python3 bench/compare_traces.py "$results/kiln_cuda_f16.trace" "$results/kiln_vulkan_f16.trace" --top 40 |
                tee "$results/cuda_vs_vulkan_f16_ops.txt" || status=1
        fi
        # the tensor-core shaders on each multiply shape (16x16x16 is the
        # default); a driver without 16x8x16 makes the second fail, which is
        # no failure of kiln's
        # (this repeat of the default also lists every pipeline's registers and
        # shared memory as the driver reports them, in pipelines.txt)
        KILN_VULKAN_PIPELINE_STATS=1 KILN_VULKAN_COOPMAT_N=16 bench kiln_vulkan_f16_n16 vulkan f16
        grep -E "pipeline|timing" "$results/kiln_vulkan_f16_n16.err" >"$results/pipelines.txt" || true
        kept=$status
        full && KILN_VULKAN_COOPMAT_N=8 bench kiln_vulkan_f16_n8 vulkan f16
        status=$kept
        # the tensor-core attention with its softmax through shared memory,
        # as before attention_registers.comp (its bench_ops rows beside the
        # default's in bench_ops_vulkan_f16.txt)
        if full; then
            KILN_VULKAN_REGISTER_SOFTMAX=0 timeout 120 "$bin/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
                grep attention | tee "$results/bench_ops_vulkan_f16_shared_softmax.txt"
            KILN_VULKAN_REGISTER_SOFTMAX=0 bench kiln_vulkan_f16_shared_softmax vulkan f16
            KILN_VULKAN_REGISTER_SOFTMAX=1 bench kiln_vulkan_f16_register_softmax vulkan f16
        fi
        # ... and in registers on 128 query rows a workgroup
        KILN_VULKAN_ATTENTION_ROWS=128 timeout 120 "$bin/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
            grep attention | tee "$results/bench_ops_vulkan_f16_attention_rows128.txt"
        KILN_VULKAN_ATTENTION_ROWS=128 bench kiln_vulkan_f16_attention_rows128 vulkan f16
        # the tensor-core GEMMs on 64x64 tiles loading operands 1, 2 and 3 K
        # steps ahead, and on 128x64 tiles, beside the default, which times
        # them when the device opens (its choice is in the device name of
        # kiln_vulkan_f16.json); the tall tiles' bench_ops rows beside the
        # default's in bench_ops_vulkan_f16.txt
        for ahead in $(full && echo 1 2 3); do
            KILN_VULKAN_GEMM_PREFETCH=$ahead bench kiln_vulkan_f16_prefetch$ahead vulkan f16
        done
        KILN_VULKAN_GEMM_ROWS=128 bench kiln_vulkan_f16_rows128 vulkan f16
        KILN_VULKAN_GEMM_ROWS=128 timeout 120 "$bin/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
            grep -E "matmul|conv" | tee "$results/bench_ops_vulkan_f16_rows128.txt"
        # ... and on VK_NV_cooperative_matrix2's workgroup-scope matrices
        # (gemm_workgroup.glsl); a driver without them refuses the switch,
        # which is no failure of kiln's
        kept=$status
        KILN_VULKAN_GEMM_WORKGROUP=1 bench kiln_vulkan_f16_workgroup vulkan f16
        KILN_VULKAN_GEMM_WORKGROUP=1 timeout 120 "$bin/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
            grep -E "matmul|conv|vulkan" | tee "$results/bench_ops_vulkan_f16_workgroup.txt"
        # ... and timed at open beside the other kinds, as it would be by
        # default (the times and the kind kept in the .err)
        KILN_VULKAN_PIPELINE_STATS=1 KILN_VULKAN_GEMM_WORKGROUP=2 bench kiln_vulkan_f16_workgroup_timed vulkan f16
        grep -E "timing|check" "$results/kiln_vulkan_f16_workgroup_timed.err" || true
        status=$kept
        # GEMMs never splitting K, and splitting it as estimated, beside the
        # default, which times the two when the device opens
        for split in $(full && echo 0 1); do
            KILN_VULKAN_SPLIT_K=$split bench kiln_vulkan_f16_split$split vulkan f16
        done
        if [ -n "${BASELINE_BIN:-}" ]; then
            say "baseline build $(cat "$BASELINE_BIN/COMMIT" 2>/dev/null || echo "(no COMMIT file)")"
            timeout 120 "$BASELINE_BIN/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
                tee "$results/baseline_bench_ops_vulkan_f16.txt"
            bin=$BASELINE_BIN bench kiln_vulkan_f16_baseline vulkan f16
        fi
        for dir in ${SHADER_VARIANTS:+"$SHADER_VARIANTS"/*/}; do
            v=$(basename "$dir")
            say "shader variant $v"
            if KILN_VULKAN_GEMM_PREFETCH=1 KILN_VULKAN_SHADER_DIR=$dir timeout 150 "$bin/test_parity_vulkan" >"$results/variant_${v}_parity.log" 2>&1; then
                outcome[variant $v parity]=passed
            else
                outcome[variant $v parity]="FAILED (see variant_${v}_parity.log)"
                status=1
            fi
            KILN_VULKAN_GEMM_PREFETCH=1 KILN_VULKAN_SHADER_DIR=$dir timeout 120 "$bin/bench_ops" --backend vulkan --compute f16 --reps 5 2>&1 |
                grep -E "matmul|conv2d" | tee "$results/variant_${v}_bench_ops.txt"
            KILN_VULKAN_GEMM_PREFETCH=1 KILN_VULKAN_SHADER_DIR=$dir bench "kiln_vulkan_f16_variant_$v" vulkan f16
        done
    fi
    # stable-diffusion.cpp's Vulkan build: an sd-cli given in SDCPP_VULKAN,
    # else the one inside the cyllama-vulkan wheel (PyPI; its ggml has the
    # KHR and NV cooperative-matrix shaders) through that wheel's CLI, which
    # takes sd-cli's flags but --sampler for --sampling-method. Its default,
    # then with flash attention in the UNet (--diffusion-fa). sd.cpp's step
    # is also cond + uncond (two batch-1 UNet runs), so its steps per second
    # compare with kiln's it/s.
    sdcpp=${SDCPP_VULKAN:-$bin/sd-cli-vulkan}
    if [ -x "$sdcpp" ]; then
        sdcpp_cmd=("$sdcpp" --sampling-method)
    elif python3 -c "import cyllama.sd" 2>/dev/null; then
        sdcpp_cmd=(python3 -m cyllama.sd txt2img --sampler)
    else
        sdcpp_cmd=()
    fi
    for fa in "" --diffusion-fa; do
        full && [ ${#sdcpp_cmd[@]} -gt 0 ] || break
        name=sdcpp_vulkan${fa:+_fa}
        say "stable-diffusion.cpp vulkan ${fa:+with flash attention }($steps steps)"
        timeout 300 "${sdcpp_cmd[@]}" euler -m "$ckpt" -p "a photograph" --cfg-scale 7 -W 512 -H 512 \
            --steps "$steps" -s 42 -v $fa -o "$results/$name.png" >"$results/$name.log" 2>&1 ||
            { tail -n 10 "$results/$name.log"; status=1; }
        # ggml goes on on the CPU when it finds no Vulkan device: no number
        # then (-v has sd.cpp name the backend it initialises)
        if ! grep -q "Initializing backend: Vulkan" "$results/$name.log"; then
            echo "device.sh: stable-diffusion.cpp found no Vulkan device (see $name.log)" >&2
            status=1
            continue
        fi
        grep -m2 -a "ggml_vulkan: " "$results/$name.log"
        if read -r warm _ < <(bench/sdcpp_steps.sh "$results/$name.log"); then
            python3 -c "import json, sys; print(json.dumps({'it_per_s': 1 / float(sys.argv[1]), 'precision': sys.argv[2]}))" \
                "$warm" "sd.cpp default${fa:+, flash attention}" >"$results/$name.json"
        fi
    done
fi

memcheck="not installed"
if [ -n "${SKIP_MEMCHECK:-}" ] || ! full; then
    memcheck="not run (SKIP_MEMCHECK or FOCUS)"
elif command -v compute-sanitizer >/dev/null; then
    say "compute-sanitizer memcheck on test_ops_cuda"
    if timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 "$bin/test_ops_cuda" >"$results/memcheck.log" 2>&1; then
        memcheck="clean"
    else
        memcheck="FAILED or timed out (see memcheck.log)"
        status=1
    fi
    tail -n 5 "$results/memcheck.log"
fi

say "summary"
kill $sampler 2>/dev/null
for t in "${!outcome[@]}"; do printf '%-22s %s\n' "$t" "${outcome[$t]}"; done | sort
python3 - "$results" "$memcheck" <<'PY'
import json, os, sys
results, memcheck = sys.argv[1], sys.argv[2]

def load(name):
    try:
        with open(os.path.join(results, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

print(f"GPU, driver, memory : {open(os.path.join(results, 'gpu.txt')).read().strip()}")
print(f"memcheck            : {memcheck}")
rows = [("kiln cuda f16", load("kiln_cuda_f16.json")),
        ("kiln cuda f16 no graph", load("kiln_cuda_f16_noreplay.json")), ("kiln cuda f32", load("kiln_cuda_f32.json")),
        ("kiln vulkan f32", load("kiln_vulkan.json")), ("kiln vulkan f16", load("kiln_vulkan_f16.json")),
        ("kiln vulkan f16 16x16x16", load("kiln_vulkan_f16_n16.json")),
        ("kiln vulkan f16 16x8x16", load("kiln_vulkan_f16_n8.json")),
        ("kiln vulkan f16 smem softmax", load("kiln_vulkan_f16_shared_softmax.json")),
        ("kiln vulkan f16 reg softmax", load("kiln_vulkan_f16_register_softmax.json")),
        *[(f"kiln vulkan f16 {a} ahead", load(f"kiln_vulkan_f16_prefetch{a}.json")) for a in (1, 2, 3)],
        ("kiln vulkan f16 128x64", load("kiln_vulkan_f16_rows128.json")),
        ("kiln vulkan f16 att128", load("kiln_vulkan_f16_attention_rows128.json")),
        ("kiln vulkan f16 workgroup", load("kiln_vulkan_f16_workgroup.json")),
        ("kiln vulkan f16 wg timed", load("kiln_vulkan_f16_workgroup_timed.json")),
        ("kiln vulkan f16 K whole", load("kiln_vulkan_f16_split0.json")),
        ("kiln vulkan f16 K split", load("kiln_vulkan_f16_split1.json")),
        *([("kiln vulkan f16 baseline", load("kiln_vulkan_f16_baseline.json"))]
          if os.path.exists(os.path.join(results, "kiln_vulkan_f16_baseline.json")) else []),
        *[(f"kiln vulkan f16 {f[24:-5]}", load(f)) for f in sorted(os.listdir(results))
          if f.startswith("kiln_vulkan_f16_variant_") and f.endswith(".json")],
        ("sd.cpp vulkan", load("sdcpp_vulkan.json")), ("sd.cpp vulkan fa", load("sdcpp_vulkan_fa.json")),
        ("diffusers fp16 SDPA", load("diffusers.json"))]
peer = rows[-1][1]
print("SD 1.5 UNet, 512x512, batch 2 (CFG)")
# diffusers: torch's peak allocation; kiln: weights + activation arena (+ a few MiB of scratch)
print(f"{'runner':<24}{'it/s':>9}{'x diffusers':>13}{'device MiB':>12}  precision")
for name, r in rows:
    if r is None:
        print(f"{name:<24}{'-':>9}  (not run, or failed: see its .err)")
        continue
    its = r.get("it_per_s", 0.0)
    ratio = f"{its / peer['it_per_s']:.2f}" if peer and peer.get("it_per_s") else "-"
    if "peak_device_bytes" in r:
        dev = f"{r['peak_device_bytes'] / 2**20:.0f}"
    else:
        dev = f"~{(r.get('weight_bytes', 0) + r.get('unet_arena_bytes', 0)) / 2**20:.0f}"
    print(f"{name:<24}{its:>9.2f}{ratio:>13}{dev:>12}  {r.get('precision', '')}")
    ops = r.get("ops")
    if ops:
        top = sorted(ops.items(), key=lambda kv: -kv[1]["ms"])[:6]
        clock = "device-timed" if r.get("op_timing") == "device" else "host-timed"
        print(f"    per op ms ({clock} step): " + ", ".join(f"{k} {v['ms']:.1f}" for k, v in top))

# issue 4's ratio: each Vulkan f16 run against kiln CUDA f16 of this run
cuda = rows[0][1]
if cuda and cuda.get("it_per_s"):
    print("x kiln cuda f16 (target >= 0.80): " + ", ".join(
        f"{name[len('kiln vulkan '):]} {r['it_per_s'] / cuda['it_per_s']:.2f}" for name, r in rows
        if r and name.startswith("kiln vulkan f16") and r.get("it_per_s")))

# GPU clocks per phase: median SM and memory clock (MHz) of the samples taken
# while it ran, and the performance states seen.
from datetime import datetime
from statistics import median
stamp = lambda t: datetime.strptime(t.strip(), "%Y/%m/%d %H:%M:%S.%f")
try:
    phases = [(stamp(t), name) for t, name in (l.rstrip("\n").split("|", 1) for l in open(os.path.join(results, "phases.txt")))]
    samples = [[f.strip() for f in l.split(",")] for l in open(os.path.join(results, "clocks.csv"))]
    samples = [(stamp(f[0]), f[1], float(f[2]), float(f[3])) for f in samples if len(f) >= 4 and f[2].replace(".", "").isdigit()]
except (OSError, ValueError):
    phases, samples = [], []
if phases and samples:
    print("GPU clocks per phase (median SM / memory MHz, performance states):")
    for i, (start, name) in enumerate(phases):
        end = phases[i + 1][0] if i + 1 < len(phases) else samples[-1][0]
        s = [x for x in samples if start <= x[0] < end]
        if s:
            states = ",".join(sorted({x[1] for x in s}))
            print(f"    {name[:40]:<40} {median(x[2] for x in s):6.0f} / {median(x[3] for x in s):5.0f}  {states}")
PY
exit $status
