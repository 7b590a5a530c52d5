#!/usr/bin/env bash
# gen --info on a checkpoint (single file, diffusers folder), LoRA and ControlNet files:
# what it prints against what the files are (tests/data/tiny, tests/data/lora).
# Usage: gen_info.sh BIN_DIR DATA_DIR
set -u
bin=$1 data=$2
failures=0

# expect_info FILE line...: every given line appears in gen --info FILE's output
# (with the options in parts=(...), the files a model alone needs)
parts=()
expect_info() {
    local file=$1
    shift
    local out
    if ! out=$("$bin/gen" --info "$file" "${parts[@]}" 2>&1); then
        echo "FAIL --info $file: exit non-zero: $out"; failures=$((failures + 1)); return
    fi
    for line in "$@"; do
        if ! grep -qxF -- "$line" <<<"$out"; then
            echo "FAIL --info $file: no line '$line' in:"; echo "$out"; failures=$((failures + 1)); return
        fi
    done
    echo "ok   --info $(basename "$file")"
}

expect_info "$data/tiny/sd15_tiny_ldm_fp16.safetensors" "family       sd1 (txt2img)" \
    "unet         sd15-tiny-test, 1.1 M parameters, F16" "text encoder clip-tiny-test, 1.6 M parameters" \
    "vae          vae-tiny-test, 0.7 M parameters"
expect_info "$data/tiny/sd15_tiny_diffusers" "unet         sd15-tiny-test, 1.1 M parameters, F32"
expect_info "$data/tiny/sd15_tiny_ldm_fp32.safetensors" "prediction   eps (default)"
# SD 2.x: v-prediction read off the last transformer's norm bias (single file) or the scheduler config (folder)
expect_info "$data/sd2/tiny_sd2.safetensors" "family       sd2 (txt2img)" "prediction   v (norm bias spread)" \
    "unet         sd2-tiny-test, 1.1 M parameters, F16" "text encoder openclip-tiny-test, 1.6 M parameters"
expect_info "$data/sd2/tiny_sd2_diffusers" "family       sd2 (txt2img)" "prediction   v (scheduler_config.json)"
# SDXL: two text towers, in both layouts
expect_info "$data/sdxl/tiny_sdxl.safetensors" "family       sdxl (txt2img)" "prediction   eps (default)" \
    "unet         sdxl-tiny-test, 2.0 M parameters, F16" "text encoder clip-tiny-test, 1.6 M parameters" \
    "text encoder openclip-tiny-test, 1.6 M parameters"
expect_info "$data/sdxl_refiner/tiny_refiner.safetensors" "family       sdxl-refiner (txt2img)" \
    "text encoder openclip-tiny-test, 1.6 M parameters"
expect_info "$data/sdxl/tiny_sdxl_diffusers" "family       sdxl (txt2img)" \
    "text encoder openclip-tiny-test, 1.6 M parameters"
# IP-Adapter and its CLIP vision tower
expect_info "$data/ip_adapter/ip_adapter_plus_tiny.safetensors" \
    "kind         Plus: a Resampler of 4 layers, 1 heads, on the tower's hidden states" \
    "tokens       8, 32 wide (the UNet's context)" "reads        32-wide hidden states (the CLIP vision model's width)"
expect_info "$data/ip_adapter/ip_adapter_tiny.safetensors" "tokens       4, 32 wide (the UNet's context)" \
    "image embeds 24 wide (the CLIP vision model's projection)" "layers       6 cross-attentions"
expect_info "$data/ip_adapter/clip_vision_tiny.safetensors" \
    "network      clip-vit-tiny-test: 3 layers 32 wide, 224x224 pictures in 14-pixel patches" "image embeds 24 wide"
# kohya_locon: 36 attention/projection modules in 3 transformers and 7 convolutions
# (5 of them 3x3) in the UNet, 12 text encoder linears; rank 4, alphas 2 and one 1
expect_info "$data/lora/kohya_locon.safetensors" \
    "modules      55: 43 UNet, 12 text encoder (LoRA 50, LoCon 5, LoHa 0)" "rank         4, alpha 1 to 2" \
    "text width   32"
expect_info "$data/lora/diffusers.safetensors" \
    "modules      68: 60 UNet, 8 text encoder (LoRA 68, LoCon 0, LoHa 0)" "rank         4, no alpha (scale 1)"
# Flux's: sd-scripts' (BFL's names, CLIP-L's lora_te1_), XLabs', PEFT's
expect_info "$data/flux/lora/kohya.safetensors" \
    "modules      9: 7 UNet, 2 text encoder (LoRA 9, LoCon 0, LoHa 0)" "rank         4, alpha 2" \
    "for          a DiT: 7 modules in Flux's (BFL's, XLabs'), SD3's (Stability's) or diffusers' transformer names"
expect_info "$data/flux/lora/xlabs.safetensors" \
    "for          a DiT: 6 modules in Flux's (BFL's, XLabs'), SD3's (Stability's) or diffusers' transformer names"
expect_info "$data/flux/lora/peft.safetensors" \
    "for          a DiT: 4 modules in Flux's (BFL's, XLabs'), SD3's (Stability's) or diffusers' transformer names"
# SD3's: sd-scripts' in Stability's names
expect_info "$data/lora/lokr.safetensors" "modules      4: 3 UNet, 1 text encoder (LoRA 0, LoCon 0, LoHa 0, LoKr 4)" \
    "rank         2 to 3, alpha 1 to 4"
expect_info "$data/lora/dora.safetensors" \
    "modules      5: 4 UNet, 1 text encoder (LoRA 3, LoCon 1, LoHa 0, LoKr 1), 5 with DoRA magnitudes"
expect_info "$data/sd3/lora/kohya.safetensors" "modules      32: 32 UNet, 0 text encoder (LoRA 32, LoCon 0, LoHa 0)" \
    "for          a DiT: 32 modules in Flux's (BFL's, XLabs'), SD3's (Stability's) or diffusers' transformer names"

expect_info "$data/controlnet/tiny_diffusers.safetensors" "for unet     sd15-tiny-test"
expect_info "$data/controlnet/tiny_ldm.safetensors" "for unet     sd15-tiny-test"
# T2I-Adapters: the kind, the family, the input and the levels' widths
expect_info "$data/t2i_adapter/full_diffusers.safetensors" "kind         full, for sd1/sd2"
expect_info "$data/t2i_adapter/light_original.safetensors" "input        1 channel (the picture's mean), unshuffled by 8"
expect_info "$data/t2i_adapter/xl_diffusers.safetensors" "levels       4 of 2 res blocks: 32 64 64 64 wide"
expect_info "$data/flux/controlnet/xlabs.safetensors" "for          flux, XLabs' kind: the picture through a hint encoder, 2 double and 0 single blocks"
expect_info "$data/sd3/controlnet/instantx" "for          sd3, InstantX's kind: the picture's latent, 3 joint blocks"
expect_info "$data/sd3/controlnet/inpaint" \
    "for          sd3, InstantX's kind: the masked picture's latent and the mask, 3 joint blocks"
expect_info "$data/sd3/controlnet_sd35/sd3.5-tiny-controlnet-depth.safetensors" \
    "for          sd3.5, Stability's kind (depth): the picture's latent, 2 blocks without a caption side"
expect_info "$data/flux/controlnet/instantx" "union        3 control types"
expect_info "$data/flux/controlnet/alimama" \
    "for          flux, Alimama's inpainting kind: the masked picture's latent and the mask, 2 double and 2 single blocks"
expect_info "$data/flux/controlnet/ip_adapter.safetensors" "layers       3 double blocks"
expect_info "$data/redux/redux_tiny.safetensors" "kind         FLUX.1 Redux: SigLIP's 32-wide tokens to 64-wide T5 rows"
expect_info "$data/redux/siglip_tiny.safetensors" "hidden state 32 wide a token, 16 tokens (SigLIP's, which FLUX.1 Redux reads)"
expect_info "$data/upscale/rrdb_basicsr.safetensors" \
    "network      RRDBNet x4 (BasicSR layout), 8 features, growth 32, 1 block"
expect_info "$data/upscale/span/span_x2.safetensors" "network      SPAN x2, 6 features, no input normalisation"

# ComfyUI-GGUF's Flux: the stored types, and the transformer's by the most of its parameters
parts=(--text-encoder "$data/tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"
       --text-encoder "$data/gguf/t5-tiny-Q8_0.gguf" --vae "$data/flux/tiny/vae/diffusion_pytorch_model.safetensors"
       --config "$data/flux/tiny")
expect_info "$data/gguf/flux1-tiny-Q8_0.gguf" \
    "format       GGUF: F32 40, Q8_0 14, BF16 6 (linear layers keep their blocks)" \
    "transformer  flux-dev, 0.1 M parameters, Q8_0"
parts=()
# Chroma: a flow-matching Flux transformer on T5 alone
expect_info "$data/chroma/tiny" "family       chroma (txt2img)" \
    "prediction   flow (Chroma is a flow-matching model)" "transformer  chroma, 0.1 M parameters, F16"

if "$bin/gen" --info "$data/tiny/unet.safetensors" >/dev/null 2>&1; then
    echo "FAIL --info on a golden file: exit 0"; failures=$((failures + 1))
else
    echo "ok   --info on a file that is neither refused"
fi
[[ $failures -eq 0 ]] || { echo "$failures failures"; exit 1; }
