#!/usr/bin/env bash
# Seconds per sampling step in a stable-diffusion.cpp sd-cli log, read from
# its progress bar ("|===...| k/N - X s/it", or it/s when faster than one a
# second). Prints "WARM ALL": the mean over the steps after the first (the
# first also loads the UNet's weights and allocates) and over all steps; WARM
# is ALL when there is only one step. Exits 1 when the log has no steps.
#
# Usage: bench/sdcpp_steps.sh LOG
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: bench/sdcpp_steps.sh LOG" >&2; exit 2; }
tr '\r' '\n' <"$1" | grep -a -oE '\|[=> ]+\| [0-9]+/[0-9]+ - [0-9.]+(s/it|it/s)' | sed 's/^.*| //' |
    awk '{ split($1, k, "/"); v = $3; sub(/(s\/it|it\/s)$/, "", v);
           s = ($3 ~ /it\/s$/) ? 1 / v : v;
           all += s; n++; if (k[1] > 1) { warm += s; w++ } }
         END { if (!n) exit 1; printf "%.4f %.4f\n", w ? warm / w : all / n, all / n }'
