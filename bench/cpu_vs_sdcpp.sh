#!/usr/bin/env bash
# kiln's CPU backend against stable-diffusion.cpp (sd.cpp), side by side on one
# checkpoint: SD 1.5 UNet seconds per sampling step (euler, CFG 7, so cond and
# uncond per step) and peak RSS, at each size, alternating the two programs
# ROUNDS times and never running both at once.
#
# Usage: bench/cpu_vs_sdcpp.sh SD_CLI CHECKPOINT [RESULTS_DIR]
#   SD_CLI      an sd.cpp CPU build's sd-cli, built outside this repository
#   CHECKPOINT  an SD 1.5 .safetensors both programs load (e.g. the output of
#               build-bench/bin/make_sd15_hashinit)
#   RESULTS_DIR logs and the table (default: a new directory under /tmp)
# Environment: BUILD (kiln build dir, default build-bench), THREADS (2),
#   SIZES ("256 512"), STEPS_256 (3), STEPS_512 (2), ROUNDS (2), SDCPP_ARGS
#   (extra sd-cli flags, e.g. --diffusion-fa; default none: its defaults).
#
# What is compared:
#   kiln    unet_s_per_step from `bench --json`: the mean of STEPS batch-2 UNet
#           evaluations after one warm-up evaluation.
#   sd.cpp  the per-step times it prints in its sampling progress bar; each
#           step runs the UNet twice at batch 1 (cond, then uncond). Its first
#           step also loads the UNet weights and allocates, so the table shows
#           the mean of the steps after the first ("warm") and the whole
#           sampling time over the steps ("all").
#   Peak RSS of both from /usr/bin/time -v (kiln's includes its mmapped
#   weights, sd.cpp's the weights it reads into memory).
# The load average is logged before every run: on a shared machine, rerun
# when it is far above the thread count.
set -uo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
sd_cli=$1
checkpoint=$2
root=$(cd "$(dirname "$0")/.." && pwd)
results=${3:-$(mktemp -d /tmp/cpu_vs_sdcpp.XXXXXX)}
build=${BUILD:-$root/build-bench}
threads=${THREADS:-2}
sizes=${SIZES:-256 512}
rounds=${ROUNDS:-2}
read -r -a sdcpp_args <<<"${SDCPP_ARGS:-}"
bench=$build/bin/bench

for f in "$sd_cli" "$bench" /usr/bin/time; do
    [ -x "$f" ] || { echo "cpu_vs_sdcpp.sh: $f: not an executable" >&2; exit 1; }
done
[ -r "$checkpoint" ] || { echo "cpu_vs_sdcpp.sh: $checkpoint: cannot read" >&2; exit 1; }
mkdir -p "$results"

# peak RSS in MiB from a /usr/bin/time -v log
peak_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
load1() { awk '{ print $1 }' /proc/loadavg; }

echo "machine: $(lscpu | awk -F': +' '/Model name/ { print $2; exit }'), $(nproc) CPUs," \
    "$(free -g | awk '/Mem:/ { print $2 }') GiB" | tee "$results/machine.txt"
echo "kiln $(git -C "$root" rev-parse --short HEAD); sd.cpp: $("$sd_cli" --version 2>&1 | head -n 1)${SDCPP_ARGS:+ (sd-cli $SDCPP_ARGS)}" |
    tee -a "$results/machine.txt"

table=$results/table.tsv
printf 'size\tround\tprogram\ts_per_step\ts_per_step_all\tpeak_rss_mib\tload_before\tload_after\n' >"$table"
for size in $sizes; do
    steps_var=STEPS_$size
    steps=${!steps_var:-$([ "$size" -ge 512 ] && echo 2 || echo 3)}
    for round in $(seq 1 "$rounds"); do
        tag=${size}_r$round
        before=$(load1)
        /usr/bin/time -v -o "$results/kiln_$tag.time" "$bench" --model "$checkpoint" --width "$size" \
            --height "$size" --steps "$steps" --backend cpu --threads "$threads" --json \
            >"$results/kiln_$tag.json" 2>"$results/kiln_$tag.err" ||
            { echo "cpu_vs_sdcpp.sh: kiln bench failed, see $results/kiln_$tag.err" >&2; exit 1; }
        after=$(load1)
        s=$(grep -o '"unet_s_per_step":[0-9.]*' "$results/kiln_$tag.json" | cut -d: -f2)
        printf '%s\t%s\tkiln\t%s\t%s\t%s\t%s\t%s\n' "$size" "$round" "$s" "$s" \
            "$(peak_mib "$results/kiln_$tag.time")" "$before" "$after" | tee -a "$table"

        before=$(load1)
        /usr/bin/time -v -o "$results/sdcpp_$tag.time" "$sd_cli" -m "$checkpoint" -p "a photograph" \
            --sampling-method euler --cfg-scale 7 -W "$size" -H "$size" --steps "$steps" -t "$threads" -s 42 \
            "${sdcpp_args[@]}" -o "$results/sdcpp_$tag.png" >"$results/sdcpp_$tag.log" 2>&1 ||
            { echo "cpu_vs_sdcpp.sh: sd-cli failed, see $results/sdcpp_$tag.log" >&2; exit 1; }
        after=$(load1)
        read -r warm all < <("$root/bench/sdcpp_steps.sh" "$results/sdcpp_$tag.log") ||
            { echo "cpu_vs_sdcpp.sh: no sampling steps in $results/sdcpp_$tag.log" >&2; exit 1; }
        printf '%s\t%s\tsd.cpp\t%s\t%s\t%s\t%s\t%s\n' "$size" "$round" "$warm" "$all" \
            "$(peak_mib "$results/sdcpp_$tag.time")" "$before" "$after" | tee -a "$table"
    done
done

# best (lowest) per program and size: on a shared machine the least disturbed run
echo
echo "best of $rounds rounds (s/step; ratio = kiln / sd.cpp warm steps; RSS MiB):"
awk -F'\t' 'NR > 1 { key = $1 SUBSEP $3
                     if (!(key in best) || $4 < best[key]) best[key] = $4
                     if (!(key in rss) || $6 > rss[key]) rss[key] = $6; sizes[$1] = 1 }
            END { for (s in sizes) {
                      k = best[s SUBSEP "kiln"]; d = best[s SUBSEP "sd.cpp"]
                      printf "%sx%s  kiln %.3f  sd.cpp %.3f  ratio %.2f (target <= 0.70)  RSS kiln %d sd.cpp %d\n",
                             s, s, k, d, (d > 0 ? k / d : 0), rss[s SUBSEP "kiln"], rss[s SUBSEP "sd.cpp"] } }' \
    "$table" | sort -n | tee "$results/summary.txt"
echo "logs: $results"
