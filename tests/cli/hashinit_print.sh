#!/usr/bin/env bash
# make_sd15_hashinit --print must show, byte for byte, what the normative
# Python generator (make_sd15_hashinit.py --print) shows for the same tensors:
# the expected text in tests/data/hashinit/ was produced by that script.
# Usage: hashinit_print.sh BIN_DIR DATA_DIR
set -euo pipefail
bin="$1/make_sd15_hashinit"
data="$2/hashinit"
status=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT

check() { # expected-file, then the tool's arguments
    local expected="$data/$1"
    shift
    if ! diff -u "$expected" <("$bin" "$@"); then
        echo "FAIL: make_sd15_hashinit $* differs from $expected" >&2
        status=1
    fi
}

check print_f16.txt \
    --print model.diffusion_model.input_blocks.0.0.weight \
    --print model.diffusion_model.input_blocks.0.0.bias \
    --print model.diffusion_model.out.0.weight \
    --print model.diffusion_model.out.0.bias \
    --print cond_stage_model.transformer.text_model.embeddings.token_embedding.weight \
    --print cond_stage_model.transformer.text_model.embeddings.position_embedding.weight \
    --print model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight \
    --print first_stage_model.post_quant_conv.bias \
    --print cond_stage_model.transformer.text_model.final_layer_norm.bias
check print_seed7.txt --seed 7 \
    --print first_stage_model.decoder.conv_out.weight \
    --print model.diffusion_model.time_embed.0.bias
check print_f32.txt --dtype f32 \
    --print model.diffusion_model.output_blocks.11.1.proj_out.weight \
    --print first_stage_model.encoder.norm_out.weight

# bad input: a clear message and a non-zero exit, never a file
if "$bin" --print no.such.tensor 2>"$err"; then
    echo "FAIL: an unknown tensor name was accepted" >&2
    status=1
elif ! grep -q "no tensor 'no.such.tensor'" "$err"; then
    echo "FAIL: unknown tensor message: $(cat "$err")" >&2
    status=1
fi
if "$bin" --seed -3 --print model.diffusion_model.out.0.bias >/dev/null 2>&1; then
    echo "FAIL: a negative seed was accepted" >&2
    status=1
fi
[ "$status" = 0 ] && echo "hashinit --print matches make_sd15_hashinit.py"
exit "$status"
