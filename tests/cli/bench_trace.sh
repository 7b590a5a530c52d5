#!/usr/bin/env bash
# bench --trace writes the profiled UNet step op by op (bench also times the
# DiTs' steps: checked last), and
# bench/compare_traces.py sets two traces side by side: the trace holds every
# op the step's per-op totals count, the comparison's rates follow from the
# operand shapes (checked on a trace written here with known times), and
# traces of different graphs or a path that cannot be written are errors.
# Usage: bench_trace.sh BIN_DIR DATA_DIR
set -uo pipefail
bin=$1 data=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
compare="$root/bench/compare_traces.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=$data/tiny/sd15_tiny_ldm_fp16.safetensors
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
if ! command -v python3 >/dev/null; then
    echo "skipped: needs python3 for bench/compare_traces.py"
    exit 77
fi

run() { "$bin/bench" --model "$tiny" --backend cpu --threads 2 --steps 1 --json "$@"; }
if ! run --width 64 --height 64 --trace "$tmp/a.trace" >"$tmp/a.json" 2>"$tmp/a.err"; then
    fail "bench --trace: $(cat "$tmp/a.err")"
else
    # every op the JSON's totals count has its line, with the same times
    python3 - "$tmp/a.json" "$tmp/a.trace" <<'PY' || failures=$((failures + 1))
import json, sys
totals = json.load(open(sys.argv[1]))["ops"]
calls, ms = {}, {}
for line in open(sys.argv[2]):
    op, t, operands = line.rstrip("\n").split("\t")
    assert " -> " in operands, line
    calls[op] = calls.get(op, 0) + 1
    ms[op] = ms.get(op, 0.0) + float(t)
assert set(calls) == set(totals), (sorted(calls), sorted(totals))
for op, v in totals.items():
    assert calls[op] == v["calls"], (op, calls[op], v["calls"])
    assert abs(ms[op] - v["ms"]) <= 0.01 + 1e-3 * v["ms"], (op, ms[op], v["ms"])
print(f"ok   trace: {sum(calls.values())} ops, as the step's totals count them")
PY
    # the tiny model's VAE halves the image: a 32x32 latent
    grep -q $'^conv2d\t[0-9.]*\tF32:2x4x32x32 F16:32x4x3x3 F16:32 -> F32:2x32x32x32$' "$tmp/a.trace" ||
        fail "trace lacks the first conv as F32:2x4x32x32 F16:32x4x3x3 F16:32 -> F32:2x32x32x32: $(head -n 8 "$tmp/a.trace")"
    if ! python3 "$compare" "$tmp/a.trace" "$tmp/a.trace" >"$tmp/same.txt"; then
        fail "compare_traces.py on one trace twice failed"
    elif ! grep -Eq '^all +[0-9]+ +[0-9.]+ +[0-9.]+ +1\.00$' "$tmp/same.txt"; then
        fail "a trace against itself is not 1.00: $(tail -n 1 "$tmp/same.txt")"
    else
        echo "ok   compare_traces.py: a trace against itself is 1.00"
    fi

    # another size is another graph
    if ! run --width 72 --height 64 --trace "$tmp/b.trace" >/dev/null 2>"$tmp/b.err"; then
        fail "bench --trace at 72x64: $(cat "$tmp/b.err")"
    elif python3 "$compare" "$tmp/a.trace" "$tmp/b.trace" >/dev/null 2>"$tmp/diff.err"; then
        fail "compare_traces.py accepted traces of two sizes"
    elif ! grep -q "not the same graph" "$tmp/diff.err"; then
        fail "compare_traces.py on two sizes: $(cat "$tmp/diff.err")"
    else
        echo "ok   compare_traces.py refuses two graphs: $(head -n 1 "$tmp/diff.err")"
    fi
fi

# HyperTile: the 32x32 latent's 1024 tokens in 8x8 tiles of 4x4, each a batch row of 16 queries (2 x 64 rows)
if ! run --width 64 --height 64 --hypertile 32 --trace "$tmp/h.trace" >"$tmp/h.json" 2>"$tmp/h.err"; then
    fail "bench --hypertile 32: $(cat "$tmp/h.err")"
elif ! grep -q '"hypertile":true' "$tmp/h.json"; then
    fail "bench --hypertile's JSON does not say so: $(head -c 300 "$tmp/h.json")"
elif ! grep -q $'^attention\t[0-9.]*\tF32:128x16x32 F32:128x16x32 F32:128x16x32 - -> F32:128x16x32$' "$tmp/h.trace"; then
    fail "bench --hypertile 32's trace lacks 128 rows of 16 queries: $(grep attention "$tmp/h.trace" | head -n 3)"
else
    echo "ok   bench --hypertile: the self-attention in tiles"
fi
if "$bin/bench" --model "$tiny" --hypertile 256,0 >/dev/null 2>"$tmp/hb.err" || ! grep -q -- "--hypertile 256,0" "$tmp/hb.err"; then
    fail "bench --hypertile 256,0 not refused by name: $(cat "$tmp/hb.err")"
fi

# rates from shapes: 2 GFLOP in 1 ms, 2 in 2 ms, 0.2 in 0.1 ms, 3 MB in 1 us
printf '%s\t%s\t%s\n' \
    matmul 1.0000 'F32:1000x1000 F16:1000x1000 - -> F32:1000x1000' \
    conv2d 2.0000 'F32:2x50x100x100 F16:100x50x2x5 F16:100 -> F32:2x100x100x100' \
    attention 0.1000 'F32:1x1000x100 F32:1x500x100 F32:1x500x100 -> F32:1x1000x100' \
    add 0.0010 'F32:250000 F32:250000 -> F32:250000' >"$tmp/known.trace"
python3 "$compare" "$tmp/known.trace" "$tmp/known.trace" >"$tmp/known.txt" || fail "compare_traces.py on known times"
for expect in 'matmul .* 2\.0 TFLOP/s' 'conv2d .* 1\.0 TFLOP/s' 'attention .* 2\.0 TFLOP/s' 'add .* 3000 GB/s'; do
    grep -Eq "^$expect" "$tmp/known.txt" || fail "known rates: no line '$expect' in: $(cat "$tmp/known.txt")"
done
[ "$failures" = 0 ] && echo "ok   compare_traces.py rates from shapes"

# a trace that cannot be written: an error naming it, no file
if run --width 64 --height 64 --trace "$tmp/no/such/dir/t.trace" >/dev/null 2>"$tmp/bad.err"; then
    fail "bench wrote a trace into a directory that does not exist"
elif ! grep -q -- "--trace $tmp/no/such/dir/t.trace" "$tmp/bad.err"; then
    fail "unwritable trace: $(cat "$tmp/bad.err")"
else
    echo "ok   unwritable trace: $(head -n 1 "$tmp/bad.err")"
fi

# the DiTs' steps: PixArt's and Flux's own ops in the profiled step, a size
# that is no whole number of patches refused
for dit in "pixart/tiny ada_layer_norm" "flux/tiny rope"; do
    set -- $dit
    if ! "$bin/bench" --model "$data/$1" --backend cpu --threads 2 --steps 1 --width 32 --height 32 --json \
        >"$tmp/dit.json" 2>"$tmp/dit.err"; then
        fail "bench on $1: $(cat "$tmp/dit.err")"
    elif ! python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["it_per_s"] > 0 and sys.argv[2] in d["ops"], d' \
        "$tmp/dit.json" "$2"; then
        fail "bench on $1: no $2 in its step"
    else
        echo "ok   bench on $1: a step with $2"
    fi
done
# Flux from its single files, as gen takes them: the same step as the folder's
if ! "$bin/bench" --model "$data/flux/single/flux1-tiny.safetensors" \
    --text-encoder "$data/tiny/sd15_tiny_diffusers/text_encoder/model.safetensors" \
    --text-encoder "$data/pixart/tiny/text_encoder/model.safetensors" \
    --vae "$data/flux/tiny/vae/diffusion_pytorch_model.safetensors" --config "$data/flux/tiny" \
    --backend cpu --threads 2 --steps 1 --width 32 --height 32 --json >"$tmp/dit.json" 2>"$tmp/dit.err"; then
    fail "bench on Flux's single files: $(cat "$tmp/dit.err")"
elif ! python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["it_per_s"] > 0 and "rope" in d["ops"], d' \
    "$tmp/dit.json"; then
    fail "bench on Flux's single files: no rope in its step"
else
    echo "ok   bench on Flux's single files"
fi
if "$bin/bench" --model "$data/flux/single/flux1-tiny.safetensors" >/dev/null 2>"$tmp/dit.err"; then
    fail "bench ran a Flux transformer without its text encoders"
elif ! grep -q "gen --text-encoder" "$tmp/dit.err"; then
    fail "Flux alone: $(cat "$tmp/dit.err")"
else
    echo "ok   Flux alone: $(head -n 1 "$tmp/dit.err")"
fi
if "$bin/bench" --model "$data/flux/tiny" --width 30 --height 32 >/dev/null 2>"$tmp/dit.err"; then
    fail "bench ran Flux at a width of no whole patches"
elif ! grep -q "multiples of 4" "$tmp/dit.err"; then
    fail "Flux width: $(cat "$tmp/dit.err")"
else
    echo "ok   Flux width: $(head -n 1 "$tmp/dit.err")"
fi
exit $((failures > 0))
