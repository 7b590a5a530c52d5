#!/usr/bin/env bash
# gen on bad input: each case exits non-zero, says what is wrong (naming the
# file, tensor or flag), and leaves no output file behind.
# Usage: gen_errors.sh BIN_DIR DATA_DIR
set -u
bin=$1 data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=$data/tiny/sd15_tiny_ldm_fp32.safetensors
failures=0

# expect_error "what" "pattern in stderr" gen-args...
expect_error() {
    local what=$1 pattern=$2
    shift 2
    local out=$tmp/out.png
    rm -f "$out"
    "$bin/gen" "$@" --output "$out" >"$tmp/stdout" 2>"$tmp/stderr"
    local rc=$?
    if [[ $rc -eq 0 ]]; then
        echo "FAIL $what: exit 0"; failures=$((failures + 1)); return
    fi
    if [[ $rc -ge 128 ]]; then
        echo "FAIL $what: crashed (exit $rc)"; failures=$((failures + 1)); return
    fi
    if ! grep -q -- "$pattern" "$tmp/stderr"; then
        echo "FAIL $what: stderr lacks '$pattern':"; cat "$tmp/stderr"; failures=$((failures + 1)); return
    fi
    if compgen -G "$tmp/out*" >/dev/null; then
        echo "FAIL $what: left $(ls "$tmp"/out*)"; failures=$((failures + 1)); return
    fi
    echo "ok   $what: $(head -c 160 "$tmp/stderr" | head -n 1)"
}

head -c 1000 "$tiny" >"$tmp/truncated.safetensors"
: >"$tmp/empty.safetensors"
mkdir -p "$tmp/notamodel"
python3 - "$tmp" <<'PY' 2>/dev/null || printf 'skip python fixtures\n'
import json, struct, sys
d = sys.argv[1]
def write(name, tensors):
    header, blob = {}, b""
    for key, (shape, data) in tensors.items():
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    open(f"{d}/{name}", "wb").write(struct.pack("<Q", len(h)) + h + blob)
write("lora.safetensors", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ([4, 1], b"\0" * 16)})
write("vae.safetensors", {"decoder.conv_in.weight": ([1], b"\0" * 4)})
PY

expect_error "unknown sampler" "--sampler" --model "$tiny" --prompt x --sampler euler_b
expect_error "unknown scheduler" "--scheduler" --model "$tiny" --prompt x --scheduler fancy
expect_error "steps out of range" "--steps" --model "$tiny" --prompt x --steps 0
expect_error "sigmas that are no numbers" "1..5" --model "$tiny" --prompt x --sigmas "14.6, 1..5, 0"
expect_error "one sigma" "at least two noise levels" --model "$tiny" --prompt x --sigmas "14.6"
expect_error "sigmas with hires fix" "--sigmas with --hires-scale" --model "$tiny" --prompt x --sigmas "14.6, 0" \
    --hires-scale 2
expect_error "sigmas with denoise" "--sigmas with --denoise" --model "$tiny" --prompt x --sigmas "14.6, 0" --denoise 0.5
expect_error "width out of range" "--width" --model "$tiny" --prompt x --width 100000
expect_error "size not a multiple" "multiples of 2" --model "$tiny" --prompt x --width 17 --height 16
expect_error "denoise out of range" "--denoise" --model "$tiny" --prompt x --denoise 1.5
expect_error "bad seed" "--seed" --model "$tiny" --prompt x --seed -3
expect_error "unknown flag" "unknown" --model "$tiny" --prompt x --frobnicate
expect_error "missing prompt" "--prompt" --model "$tiny"
expect_error "unknown backend" "--backend" --model "$tiny" --prompt x --backend metal
expect_error "missing model" "nosuch.safetensors" --model "$tmp/nosuch.safetensors" --prompt x
expect_error "empty model" "empty.safetensors" --model "$tmp/empty.safetensors" --prompt x
expect_error "truncated model" "truncated.safetensors" --model "$tmp/truncated.safetensors" --prompt x
expect_error "directory that is no model" "notamodel" --model "$tmp/notamodel" --prompt x
if [[ -f $tmp/lora.safetensors ]]; then
    expect_error "LoRA given as model" "LoRA" --model "$tmp/lora.safetensors" --prompt x
    expect_error "VAE given as model" "VAE" --model "$tmp/vae.safetensors" --prompt x
fi
if [[ -f $tmp/lora.safetensors ]]; then
    expect_error "LoRA without its down factor" "lacks its down" --model "$tiny" --prompt x --lora "$tmp/lora.safetensors"
fi
expect_error "checkpoint given as LoRA" "sd15_tiny_ldm_fp16.safetensors is a checkpoint, not a LoRA" --model "$tiny" \
    --prompt x --lora "$data/tiny/sd15_tiny_ldm_fp16.safetensors:0.5"
expect_error "ControlNet for another model" "a ControlNet for sd15-tiny-test, not for this model's UNet (kiln-shapes)" \
    --prompt x --controlnet "$data/controlnet/tiny_ldm.safetensors" --control-image "$data/controlnet/hint_37x23.png"
expect_error "LoRA given as ControlNet" "kohya_locon.safetensors: no tensor 'input_hint_block.0.weight'" \
    --model "$tiny" --prompt x --controlnet "$data/lora/kohya_locon.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png"
expect_error "ControlNet hint that is no image" "tiny_ldm.safetensors" --model "$tiny" --prompt x \
    --controlnet "$data/controlnet/tiny_ldm.safetensors" --control-image "$data/controlnet/tiny_ldm.safetensors"
expect_error "ControlNet given as model" "tiny_ldm.safetensors is a ControlNet, not a whole model" \
    --model "$data/controlnet/tiny_ldm.safetensors" --prompt x
expect_error "Flux ControlNet on an SD model" "a Flux ControlNet (controlnet_blocks.0), for a Flux model's transformer" \
    --model "$tiny" --prompt x --controlnet "$data/flux/controlnet/xlabs.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png"
expect_error "Redux on an SD model" "a style model (FLUX.1 Redux) works with Flux models" --model "$tiny" --prompt x \
    --redux "$data/redux/redux_tiny.safetensors" --redux-vision "$data/redux/siglip_tiny.safetensors" \
    --redux-image "$data/controlnet/hint_37x23.png"
expect_error "union type on a ControlNet of one kind" "control type 1, but it has 0" --model "$data/flux/controlnet" \
    --prompt x --width 16 --height 16 --steps 1 --controlnet "$data/flux/controlnet/xlabs.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png" --control-type depth
ipa=$data/ip_adapter/ip_adapter_tiny.safetensors vision=$data/ip_adapter/clip_vision_tiny.safetensors
picture=$data/ip_adapter/picture_251x233.png
expect_error "IP-Adapter for another model" "for another base model than this one (kiln-shapes, context 64)" \
    --prompt x --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$picture"
expect_error "CLIP vision model given as IP-Adapter" "clip_vision_tiny.safetensors: no tensors 'image_proj.proj.weight'" \
    --model "$tiny" --prompt x --ip-adapter "$vision" --clip-vision "$vision" --ip-image "$picture"
expect_error "IP-Adapter given as CLIP vision model" "ip_adapter_tiny.safetensors: no tensor 'vision_model." \
    --model "$tiny" --prompt x --ip-adapter "$ipa" --clip-vision "$ipa" --ip-image "$picture"
expect_error "IP-Adapter picture that is no image" "--ip-image: .*ip_adapter_tiny.safetensors" \
    --model "$tiny" --prompt x --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$ipa"
printf 'PK\003\004 a torch.save archive' >"$tmp/ip-adapter_sd15.bin"
expect_error "torch.save IP-Adapter cut short" "ip-adapter_sd15.bin: a zip archive without its directory at the end" \
    --model "$tiny" --prompt x --ip-adapter "$tmp/ip-adapter_sd15.bin" --clip-vision "$vision" --ip-image "$picture"
expect_error "SDXL numbers for an SD 1.x model" "are for SDXL base models; $tiny is sd1" --model "$tiny" --prompt x \
    --sdxl-crop 0,8
pixart=$data/pixart/tiny
expect_error "an SD LoRA on PixArt" "of $pixart (a LoRA for another base model?)" --model "$pixart" \
    --prompt x --lora "$data/lora/kohya_ldm.safetensors"
expect_error "clip skip on PixArt" "clip skip 2: a pixart model's text encoders are read at the layers it was trained on" \
    --model "$pixart" --prompt x --clip-skip 2 --width 16 --height 16
expect_error "ControlNet on PixArt" "ControlNet works with SD 1.x/2.x/XL UNets" --model "$pixart" --prompt x \
    --controlnet "$data/controlnet/tiny_ldm.safetensors" --control-image "$data/controlnet/hint_37x23.png"
expect_error "PixArt latent of odd size" "not whole 2x2 patches" --model "$pixart" --prompt x --width 18 --height 16
sd3=$data/sd3/tiny
expect_error "SkipLayerGuidance on a UNet" "SkipLayerGuidance works with SD3 and Flux models; this is a sd1 model" \
    --model "$tiny" --prompt x --slg 7,8,9
expect_error "SkipLayerGuidance past the blocks" "SkipLayerGuidance: double (SD3: joint) block 9; the model has 3" \
    --model "$sd3" --prompt x --width 16 --height 16 --slg 9 --slg-start 0 --slg-end 1
expect_error "SkipLayerGuidance blocks that are no list" "--slg 7-9: must be block numbers 0..63" \
    --model "$sd3" --prompt x --slg 7-9
expect_error "Canny thresholds out of order" "--control-canny 0.8,0.4: must be LOW,HIGH" --model "$tiny" --prompt x \
    --controlnet "$data/t2i_adapter/full_original.safetensors" --control-image "$data/controlnet/hint_37x23.png" \
    --control-canny 0.8,0.4
expect_error "SkipLayerGuidanceDiTSimple without blocks" "--slg-uncond without --slg or --slg-single" \
    --model "$sd3" --prompt x --slg-uncond
expect_error "SD3 picture past the position table" "past the position table's 8x8" --model "$sd3" --prompt x \
    --width 48 --height 16
flux=$data/flux/tiny
expect_error "a threshold past 3" "--easy-cache 4: THRESHOLD" --model "$tiny" --prompt x --easy-cache 4
expect_error "two step caches" "--lazy-cache 0.2: THRESHOLD" --model "$tiny" --prompt x \
    --easy-cache 0.2 --lazy-cache 0.2
expect_error "EasyCache with a guidance pass" "EasyCache with PerturbedAttentionGuidance" --model "$tiny" --prompt x \
    --easy-cache 0.2 --pag 2 --steps 2 --width 16 --height 16
expect_error "a guidance neither number nor none" "--guidance nil: must be 0.01..100 or none" --model "$tiny" \
    --prompt x --guidance nil
expect_error "a PixArt size on an SD model" "--pixart-size is PixArt-alpha's" --model "$tiny" --prompt x \
    --pixart-size 1024x768
expect_error "a PixArt size of one number" "--pixart-size 1024: must be WxH" --model "$tiny" --prompt x \
    --pixart-size 1024
expect_error "a FreSca scale past 10" "--fresca 11,1: LOW,HIGH" --model "$tiny" --prompt x --fresca 11,1
expect_error "a hypernetwork strength past 10" "--hypernetwork $data/hypernetwork/relu_ln.pt:12: a strength" \
    --model "$tiny" --prompt x --hypernetwork "$data/hypernetwork/relu_ln.pt:12"
expect_error "a missing hypernetwork" "--hypernetwork $tmp/none.pt" --model "$tiny" --prompt x \
    --hypernetwork "$tmp/none.pt"
expect_error "a hypernetwork with an activation ComfyUI lacks" "activation_func 'gelu'" --model "$tiny" --prompt x \
    --hypernetwork "$data/hypernetwork/gelu.pt"
expect_error "FreSca of one number" "--fresca 1: LOW,HIGH" --model "$tiny" --prompt x --fresca 1
expect_error "a FreSca cutoff not whole" "--fresca 1,1.2,2.5: LOW,HIGH" --model "$tiny" --prompt x --fresca 1,1.2,2.5
expect_error "T5 padding on a model without T5" "pad T5's ids (PixArt, Flux, Chroma, SD3 with T5)" --model "$tiny" \
    --prompt x --t5-min-padding 1
expect_error "T5 padding out of range" "--t5-min-length" --model "$flux" --prompt x --t5-min-length 10001
expect_error "an SD LoRA on Flux" "which $flux lacks (a LoRA for another base model?)" --model "$flux" --prompt x \
    --lora "$data/lora/kohya_ldm.safetensors"
expect_error "one Flux text encoder" "Flux reads CLIP-L and T5; give both" --model "$flux" --prompt x \
    --text-encoder "$data/pixart/tiny/text_encoder/model.safetensors"
expect_error "a VAE that is none" "no VAE in it" --model "$flux" --prompt x --vae "$data/lora/kohya_ldm.safetensors"
expect_error "a picture as a VAE" "hint_37x23.png: header length" --model "$flux" --prompt x \
    --vae "$data/controlnet/hint_37x23.png"
expect_error "a config that is no folder" "/nonexistent: not a diffusers folder" --model "$flux" --prompt x \
    --config /nonexistent
expect_error "a missing tokenizer" "no T5 tokenizer at /nonexistent/spiece.model" --model "$flux" --prompt x \
    --tokenizer /nonexistent/spiece.model
expect_error "a tokenizer that is none" "not a SentencePiece model" --model "$flux" --prompt x \
    --tokenizer "$data/tiny/vae.safetensors"
expect_error "parts beside a workflow" "of the files beside a model it takes only --tokenizer and --config" \
    --workflow "$data/flux/lora/peft.safetensors" --vae "$data/lora/kohya_ldm.safetensors"
expect_error "eps sampling of Flux" "model sampling 'eps' on a flux model" --model "$flux" --prompt x --prediction eps
expect_error "guidance on an SD model" "--guidance is Flux dev's" --model "$tiny" --prompt x --guidance 2
expect_error "Flux latent of odd size" "flux: a 8x9 latent is not whole 2x2 patches" --model "$flux" --prompt x \
    --width 18 --height 16
expect_error "missing init image" "nosuch.png" --model "$tiny" --prompt x --init-image "$tmp/nosuch.png"
expect_error "init noise of wrong shape" "noise" --model "$tiny" --prompt x --width 16 --height 16 \
    --init-noise "$data/tiny/unet.safetensors"
expect_error "malformed safetensors corpus file" "header_past_end" --model "$data/safetensors_bad/header_past_end.safetensors" --prompt x
expect_error "checkpoint as an upscale model" "not an ESRGAN (RRDBNet) upscale model" --model "$tiny" --prompt x \
    --width 16 --height 16 --steps 1 --upscale-model "$tiny"
touch "$tmp/4x.pth"
expect_error "upscale model .pth that is empty" "4x.pth: empty file" --model "$tiny" --prompt x --upscale-model "$tmp/4x.pth"
expect_error "--convert to other than safetensors" "give --output FILE.safetensors" \
    --convert "$data/torch_files/control_tiny.pth"
expect_error "--save-checkpoint to other than safetensors" "--save-checkpoint $tmp/out.ckpt: a .safetensors file" \
    --model "$tiny" --save-checkpoint "$tmp/out.ckpt"
expect_error "--save-checkpoint with a prompt" "give it without --prompt" \
    --model "$tiny" --prompt x --save-checkpoint "$tmp/out.safetensors"
expect_error "--save-checkpoint of a Flux folder" "which a diffusers folder's transformer does not have" \
    --model "$data/flux/tiny" --save-checkpoint "$tmp/out.safetensors"
printf '\200\002\212\012lZ\374\234' >"$tmp/old.ckpt"
expect_error "checkpoint in torch.save's legacy format" "old.ckpt: torch.save's legacy (pre-1.6) format" \
    --model "$tmp/old.ckpt" --prompt x

# bad destinations: refused before the model loads or sampling starts (no
# "step" line), with an error naming the path, and nothing written
expect_refused() {
    local what=$1 pattern=$2
    shift 2
    if "$bin/gen" --model "$tiny" --prompt x --width 16 --height 16 --steps 1 "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then
        echo "FAIL $what: exit 0"; failures=$((failures + 1))
    elif ! grep -q -- "$pattern" "$tmp/stderr"; then
        echo "FAIL $what: stderr lacks '$pattern':"; cat "$tmp/stderr"; failures=$((failures + 1))
    elif grep -q "^step\|sampling" "$tmp/stderr"; then
        echo "FAIL $what: refused only after sampling:"; cat "$tmp/stderr"; failures=$((failures + 1))
    elif compgen -G "$tmp/out*" >/dev/null || compgen -G "$tmp/latent*" >/dev/null; then
        echo "FAIL $what: left a file"; failures=$((failures + 1))
    else
        echo "ok   $what: $(head -n 1 "$tmp/stderr")"
    fi
}
expect_refused "output in a missing folder" "missing/out.png" --output "$tmp/missing/out.png"
expect_refused "output under a file" "truncated.safetensors/out.png: cannot write" \
    --output "$tmp/truncated.safetensors/out.png"
mkdir -p "$tmp/folder.png"
expect_refused "output that is a folder" "folder.png: is a folder" --output "$tmp/folder.png"
expect_refused "output of no image format" "out.webp: name a .png, .jpg or .jpeg" --output "$tmp/out.webp"
expect_refused "missing LoRA" "--lora $tmp/nosuch.safetensors: No such file" --output "$tmp/out.png" \
    --lora "$tmp/nosuch.safetensors:0.8"
expect_refused "ControlNet without its hint" "--controlnet needs --control-image" --output "$tmp/out.png" \
    --controlnet "$data/controlnet/tiny_ldm.safetensors"
expect_refused "hint without a ControlNet" "--control-image needs --controlnet" --output "$tmp/out.png" \
    --control-image "$data/controlnet/hint_37x23.png"
expect_refused "missing ControlNet" "--controlnet $tmp/nosuch.safetensors: No such file" --output "$tmp/out.png" \
    --controlnet "$tmp/nosuch.safetensors" --control-image "$data/controlnet/hint_37x23.png"
expect_refused "Redux without its tower" "--redux needs --redux-vision" --output "$tmp/out.png" \
    --redux "$data/redux/redux_tiny.safetensors" --redux-image "$data/controlnet/hint_37x23.png"
expect_refused "unknown union type" "--control-type: union control type 'scribble'" --output "$tmp/out.png" \
    --controlnet "$data/controlnet/tiny_ldm.safetensors" --control-image "$data/controlnet/hint_37x23.png" \
    --control-type scribble
expect_refused "control range backwards" "--control-start 0.8 is after --control-end 0.2" --output "$tmp/out.png" \
    --controlnet "$data/controlnet/tiny_ldm.safetensors" --control-image "$data/controlnet/hint_37x23.png" \
    --control-start 0.8 --control-end 0.2
expect_refused "three ControlNets, two hints" "--control-image given 2 times for 3 --controlnet" \
    --output "$tmp/out.png" --controlnet "$data/controlnet/tiny_ldm.safetensors" \
    --controlnet "$data/controlnet/second_ldm.safetensors" --controlnet "$data/controlnet/tiny_ldm.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png" --control-image "$data/controlnet/hint_37x23.png"
expect_refused "strengths for some ControlNets" "--control-strength given 2 times for 3 --controlnet" \
    --output "$tmp/out.png" --controlnet "$data/controlnet/tiny_ldm.safetensors" \
    --controlnet "$data/controlnet/second_ldm.safetensors" --controlnet "$data/controlnet/tiny_ldm.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png" --control-image "$data/controlnet/hint_37x23.png" \
    --control-image "$data/controlnet/hint_37x23.png" --control-strength 1 --control-strength 0.5
expect_refused "the second range backwards" "--control-start 0.8 is after --control-end 0.2" --output "$tmp/out.png" \
    --controlnet "$data/controlnet/tiny_ldm.safetensors" --controlnet "$data/controlnet/second_ldm.safetensors" \
    --control-image "$data/controlnet/hint_37x23.png" --control-image "$data/controlnet/hint_37x23.png" \
    --control-start 0 --control-start 0.8 --control-end 0.2
expect_refused "a start without a ControlNet" "--control-start needs --controlnet" --output "$tmp/out.png" \
    --control-start 0.5
expect_refused "IP-Adapter without its picture" "--ip-adapter needs --ip-image" --output "$tmp/out.png" \
    --ip-adapter "$ipa" --clip-vision "$vision"
expect_refused "picture without an IP-Adapter" "--ip-image needs --ip-adapter" --output "$tmp/out.png" \
    --ip-image "$picture"
expect_refused "pictures for some IP-Adapters" "--ip-image given 3 times for 2 --ip-adapter" --output "$tmp/out.png" \
    --ip-adapter "$ipa" --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$picture" --ip-image "$picture" \
    --ip-image "$picture"
expect_refused "a second picture that is not there" "--ip-image $tmp/nosuch.png: No such file" --output "$tmp/out.png" \
    --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$picture" --ip-image "$tmp/nosuch.png"
expect_refused "IP weight without an IP-Adapter" "--ip-weight needs --ip-adapter" --output "$tmp/out.png" \
    --ip-weight 0.5
expect_refused "IP weight out of range" "--ip-weight 7: must be -1..5" --output "$tmp/out.png" --ip-weight 7
expect_refused "IP range without an IP-Adapter" "--ip-end needs --ip-adapter" --output "$tmp/out.png" \
    --ip-end 0.5
expect_refused "IP range backwards" "--ip-start 0.7 is after --ip-end 0.3" --output "$tmp/out.png" \
    --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$picture" --ip-start 0.7 --ip-end 0.3
expect_refused "weights for some IP-Adapters" "--ip-weight given 2 times for 3 --ip-adapter" --output "$tmp/out.png" \
    --ip-adapter "$ipa" --ip-adapter "$ipa" --ip-adapter "$ipa" --clip-vision "$vision" --ip-image "$picture" \
    --ip-weight 0.5 --ip-weight 0.7
expect_refused "missing CLIP vision model" "--clip-vision $tmp/nosuch.safetensors: No such file" \
    --output "$tmp/out.png" --ip-adapter "$ipa" --clip-vision "$tmp/nosuch.safetensors" --ip-image "$picture"
expect_refused "SDXL size that is no size" "--sdxl-size 1024: must be WxH, each 8..16384" --output "$tmp/out.png" \
    --sdxl-size 1024
expect_refused "DifferentialDiffusion without a mask" "--differential-diffusion needs --mask or --outpaint" \
    --output "$tmp/out.png" --differential-diffusion 1
expect_refused "DifferentialDiffusion out of range" "--differential-diffusion 2: must be in (0, 1]" \
    --output "$tmp/out.png" --differential-diffusion 2
expect_refused "VAE tiles too small" "--vae-tile 32: must be SIZE or SIZE:OVERLAP" --output "$tmp/out.png" \
    --vae-tile 32
expect_refused "negative SDXL size that is no size" "--negative-sdxl-size 7x7: must be WxH, each 8..16384" \
    --output "$tmp/out.png" --negative-sdxl-size 7x7
expect_refused "SDXL crop out of range" "--sdxl-crop 8,-1: must be X,Y, each 0..16384" --output "$tmp/out.png" \
    --sdxl-crop 8,-1
expect_error "CLIP-L's own text on SD 1.5" "--prompt-l and --negative-prompt-l are for SDXL base models" \
    --model "$tiny" --prompt x --prompt-l y
expect_refused "aesthetic score without a refiner" "--aesthetic/--negative-aesthetic need --refiner" \
    --output "$tmp/out.png" --aesthetic 7
expect_refused "mask without an image" "--mask needs --init-image" --output "$tmp/out.png" \
    --mask "$data/inpaint/mask_20x17.png"
expect_refused "missing mask" "--mask $tmp/nosuch.png: No such file" --output "$tmp/out.png" \
    --init-image "$data/inpaint/image_20x17.png" --mask "$tmp/nosuch.png"
expect_refused "mask channel without a mask" "--mask-channel needs --mask" --output "$tmp/out.png" \
    --init-image "$data/inpaint/image_20x17.png" --mask-channel alpha
expect_refused "unknown mask channel" "--mask-channel cyan: red, green, blue or alpha" --output "$tmp/out.png" \
    --init-image "$data/inpaint/image_20x17.png" --mask "$data/inpaint/mask_20x17.png" --mask-channel cyan
img="$data/inpaint/image_20x17.png"
expect_refused "outpaint without an image" "--outpaint needs --init-image" --output "$tmp/out.png" --outpaint 64
expect_refused "outpaint and a mask" "give --mask or --outpaint, not both" --output "$tmp/out.png" \
    --init-image "$img" --mask "$data/inpaint/mask_20x17.png" --outpaint 64
expect_refused "outpaint of three sides" "--outpaint 8,8,8: must be LEFT,TOP,RIGHT,BOTTOM" --output "$tmp/out.png" \
    --init-image "$img" --outpaint 8,8,8
expect_refused "outpaint negative" "--outpaint 8,-8,8,8: must be" --output "$tmp/out.png" \
    --init-image "$img" --outpaint 8,-8,8,8
expect_refused "outpaint too wide" "--outpaint 9000: must be" --output "$tmp/out.png" --init-image "$img" --outpaint 9000
expect_refused "outpaint trailing comma" "--outpaint 8,8,8,8,: must be" --output "$tmp/out.png" \
    --init-image "$img" --outpaint 8,8,8,8,
expect_refused "outpaint of nothing" "--outpaint 0: pads nothing" --output "$tmp/out.png" --init-image "$img" --outpaint 0
expect_refused "feathering without outpaint" "--feathering needs --outpaint" --output "$tmp/out.png" \
    --init-image "$img" --feathering 10
expect_refused "feathering negative" "--feathering -1: must be 0..8192" --output "$tmp/out.png" \
    --init-image "$img" --outpaint 8 --feathering -1
expect_refused "area prompt without text" "--area-prompt 0,0,64,64: X,Y,W,H\[,S\]:TEXT" --output "$tmp/out.png" \
    --area-prompt 0,0,64,64
expect_refused "area prompt too small" "--area-prompt 0,0,4,64:y: X,Y,W,H" --output "$tmp/out.png" \
    --area-prompt 0,0,4,64:y
expect_refused "area prompt at strength 0" "--area-prompt 0,0,64,64,0:y: X,Y,W,H" --output "$tmp/out.png" \
    --area-prompt 0,0,64,64,0:y
expect_refused "area prompt with a mask" "--area-prompt with --mask" --output "$tmp/out.png" \
    --init-image "$img" --mask "$data/inpaint/mask_20x17.png" --area-prompt 0,0,64,64:y
expect_refused "rescale cfg of 0" "--rescale-cfg 0: must be in (0, 1]" --output "$tmp/out.png" --rescale-cfg 0
expect_refused "apg of two numbers" "--apg 1,5: ETA,NORM,MOMENTUM" --output "$tmp/out.png" --apg 1,5
expect_refused "apg momentum past 1" "--apg 1,5,2: ETA,NORM,MOMENTUM" --output "$tmp/out.png" --apg 1,5,2
expect_refused "freeu of three numbers" "--freeu 1.1,1.2,0.9: B1,B2,S1,S2" --output "$tmp/out.png" --freeu 1.1,1.2,0.9
expect_refused "freeu past 10" "--freeu-v2 1.3,1.4,0.9,12: B1,B2,S1,S2, each 0..10" --output "$tmp/out.png" \
    --freeu-v2 1.3,1.4,0.9,12
expect_refused "edm of an unknown sampling" "edm_playground': eps, v_prediction" --output "$tmp/out.png" --edm edm_playground
expect_refused "edm sigmas the wrong way" "--edm edm,0.002,120: SAMPLING" --output "$tmp/out.png" --edm edm,0.002,120
expect_refused "edm with zsnr" "--edm with --zsnr" --output "$tmp/out.png" --edm cosxl --zsnr
expect_refused "pag of 0" "--pag 0: must be in (0, 100]" --output "$tmp/out.png" --pag 0
expect_refused "epsilon scaling of 2" "--epsilon-scaling 2: must be 0.5..1.5" --output "$tmp/out.png" --epsilon-scaling 2
expect_refused "cfg norm of 0" "--cfg-norm 0: must be in (0, 100]" --output "$tmp/out.png" --cfg-norm 0
expect_refused "sag of 0" "--sag 0: SCALE" --output "$tmp/out.png" --sag 0
expect_refused "hypertile of four numbers" "--hypertile 256,2,0,1: TILE" --output "$tmp/out.png" \
    --hypertile 256,2,0,1
expect_refused "hypertile depth past 10" "--hypertile 256,2,11: TILE" --output "$tmp/out.png" \
    --hypertile 256,2,11
expect_refused "hypertile scale depth alone" "--hypertile-scale-depth goes with --hypertile" --output "$tmp/out.png" \
    --hypertile-scale-depth
expect_refused "two latent operations" "--latent-sharpen 3,1,1: one latent operation" --output "$tmp/out.png" --latent-tonemap 1 --latent-sharpen 3,1,1
expect_refused "pag with apg" "--apg with --pag" --output "$tmp/out.png" --pag 3 --apg 1,5,0
expect_refused "freeu twice" "--freeu-v2 1,1,1,1: FreeU is given already" --output "$tmp/out.png" \
    --freeu 1.1,1.2,0.9,0.2 --freeu-v2 1,1,1,1
expect_refused "hires flag without a scale" "need --hires-scale" --output "$tmp/out.png" --hires-denoise 0.4
expect_refused "hires on img2img" "--hires-scale is for txt2img" --output "$tmp/out.png" --init-image "$img" \
    --hires-scale 2
expect_refused "hires scale too large" "--hires-scale 9: must be 0.1..8" --output "$tmp/out.png" --hires-scale 9
expect_refused "hires method unknown" "--hires-method lanczos: must be nearest-exact, bilinear, bicubic, area or bislerp" \
    --output "$tmp/out.png" --hires-scale 2 --hires-method lanczos
expect_refused "missing upscale model" "--upscale-model $tmp/nosuch.safetensors: No such file" \
    --output "$tmp/out.png" --upscale-model "$tmp/nosuch.safetensors"
refiner=$data/sdxl_refiner/tiny_refiner.safetensors
expect_refused "refiner switch without a refiner" "--refiner-switch needs --refiner" --output "$tmp/out.png" \
    --refiner-switch 0.5
expect_refused "refiner switch out of range" "--refiner-switch 1: must be 0.01..0.99" --output "$tmp/out.png" \
    --refiner "$refiner" --refiner-switch 1
expect_refused "refiner on img2img" "--refiner is for txt2img without --init-image" --output "$tmp/out.png" \
    --refiner "$refiner" --init-image "$data/inpaint/image_20x17.png"
expect_refused "refiner after an SD 1.x model" "--refiner follows an SDXL base model" --output "$tmp/out.png" \
    --refiner "$refiner"
expect_error "a base model as the refiner" "not an SDXL refiner" --model "$data/sdxl/tiny_sdxl.safetensors" \
    --prompt a --width 16 --height 16 --steps 2 --refiner "$data/sdxl/tiny_sdxl.safetensors"
expect_refused "prediction unknown" "--prediction x1: must be eps, v, lcm, x0 or img_to_img" --output "$tmp/out.png" --prediction x1
expect_error "clip skip past a folder's last layer" "--clip-skip 1: this checkpoint's text encoder has 2 of its 3 layers" \
    --model "$data/sd2/tiny_sd2_diffusers" --prompt a --width 16 --height 16 --steps 1 --clip-skip 1
expect_refused "latent in a missing folder" "missing/latent.safetensors" --output "$tmp/out.png" \
    --save-latent "$tmp/missing/latent.safetensors"

[[ $failures -eq 0 ]] || { echo "$failures failures"; exit 1; }
