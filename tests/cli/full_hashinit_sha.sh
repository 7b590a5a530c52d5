#!/usr/bin/env bash
# Writes the whole 2.13 GB hash-initialised SD 1.5 checkpoint and checks its
# sha256 against the one make_sd15_hashinit.py gives for the default seed
# (published in the goldens' README). Slow (about 20 s and 2.13 GB of
# temporary disk), so it runs only with KILN_SLOW=1.
# Usage: full_hashinit_sha.sh BIN_DIR DATA_DIR
set -euo pipefail
if [ "${KILN_SLOW:-0}" != 1 ]; then
    echo "skipped: writes a 2.13 GB file; set KILN_SLOW=1 to run it"
    exit 77
fi
expected=3d2d72a9e029f03e04e20d47d0a74b23f325ac9f4fbf375c315340f237438f6d
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-hashinit-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$1/make_sd15_hashinit" "$dir/sd15.safetensors"
got=$(sha256sum "$dir/sd15.safetensors" | cut -d' ' -f1)
if [ "$got" != "$expected" ]; then
    echo "FAIL: sha256 $got, expected $expected" >&2
    exit 1
fi
leftover=$(ls "$dir" | grep -v '^sd15.safetensors$' || true)
if [ -n "$leftover" ]; then
    echo "FAIL: temporary files left behind: $leftover" >&2
    exit 1
fi
echo "sha256 $got matches make_sd15_hashinit.py"
