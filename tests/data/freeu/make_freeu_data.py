"""Goldens for ComfyUI's FreeU and FreeU_V2 model patches on the SD 1.x UNet.

Origin: upstream diffusers 0.42.1 on PyTorch CPU float32, with ComfyUI
v0.3.64's FreeU/FreeU_V2 patch restated (comfy_extras/nodes_freelunch.py).
ComfyUI's patch is an output_block_patch: at every decoder block it gets
(h, hsp), the block's input and the skip it concatenates, before
torch.cat([h, hsp], 1), and keys on h's channel count: model_channels * 4
takes (b1, s1), model_channels * 2 takes (b2, s2), any other width is left
alone. FreeU scales h's first half of channels by b; FreeU_V2 scales it by
(b - 1) * m + 1, m being h's channel mean rescaled to [0, 1] per image; both
scale hsp's lowest frequencies (the centre 2 x 2 of its shifted 2-D FFT) by s.
diffusers' UpBlock2D and CrossAttnUpBlock2D call the module-level
`apply_freeu` at exactly that place when FreeU is enabled on the UNet, so the
script enables it (unet.enable_freeu) and puts the restatement in place of
diffusers.models.unets.unet_2d_blocks.apply_freeu (diffusers' own rule, keyed
on the up block's index, is not ComfyUI's). Every call is counted by h's width
and checked.

Node defaults: FreeU b1 1.1, b2 1.2, s1 0.9, s2 0.2; FreeU_V2 b1 1.3, b2 1.4,
s1 0.9, s2 0.2.

Writes, each tensor float32, under the prefixes "plain." (no patch),
"freeu." (FreeU, defaults) and "freeu_v2." (FreeU_V2, defaults):
  <prefix>sample, <prefix>timesteps, <prefix>encoder_hidden_states,
  <prefix>noise_pred
tests/data/freeu/tiny.safetensors: the tiny SD 1.x UNet
  (tests/data/tiny/sd15_tiny_diffusers, unet; model_channels 32, so only the
  64-wide key (b2, s2) fires: 4 of its 6 decoder calls). sample [2, 4, 16, 12]
  (torch.manual_seed(0) randn), timesteps [2] and encoder_hidden_states
  [2, 77, 32] those of tests/data/tiny/unet.safetensors.
tests/data/freeu/full.safetensors: the full-size SD 1.5 UNet of kiln's
  hash-initialised checkpoint (build/bin/make_sd15_hashinit; F16 weights
  upcast to float32, converted from the LDM layout by diffusers'
  convert_ldm_unet_checkpoint with SD 1.5's UNet config, loaded strictly).
  model_channels 320: the 1280-wide key (b1, s1) fires 7 times and the
  640-wide key (b2, s2) 3 times of the 12 decoder calls. sample [2, 4, 24, 16]
  (torch.manual_seed(1) randn), timesteps [999, 500], encoder_hidden_states
  [2, 8, 768] (randn after the sample).
Before writing it checks the plain UNets against tests/data/tiny/unet.safetensors
and tests/data/full/unet.safetensors (diffusers 0.27.2) on their own inputs.

Run from the repository root with a python that has torch and diffusers:
  python3 tests/data/freeu/make_freeu_data.py [checkpoint]
checkpoint defaults to /tmp/sd15_hashinit.safetensors; when it is missing it is
written there with build/bin/make_sd15_hashinit (2.1 GB) and removed after.
"""
import collections
import os
import subprocess
import sys

import torch
import diffusers.models.unets.unet_2d_blocks as unet_2d_blocks
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import rel_l2  # noqa: E402

OUT = "tests/data/freeu"
TINY_MODEL = "tests/data/tiny/sd15_tiny_diffusers"
MAKE_HASHINIT = "build/bin/make_sd15_hashinit"

FREEU = dict(b1=1.1, b2=1.2, s1=0.9, s2=0.2)
FREEU_V2 = dict(b1=1.3, b2=1.4, s1=0.9, s2=0.2)

SD15_UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)


# --- ComfyUI v0.3.64 comfy_extras/nodes_freelunch.py, restated ---

def fourier_filter(x, threshold, scale):
    x_freq = torch.fft.fftn(x.float(), dim=(-2, -1))
    x_freq = torch.fft.fftshift(x_freq, dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W), device=x.device)
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    x_freq = x_freq * mask
    x_freq = torch.fft.ifftshift(x_freq, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real.to(x.dtype)


def freeu_patch(h, hsp, scale_dict):
    scale = scale_dict.get(int(h.shape[1]))
    if scale is not None:
        h[:, :h.shape[1] // 2] = h[:, :h.shape[1] // 2] * scale[0]
        hsp = fourier_filter(hsp, threshold=1, scale=scale[1])
    return h, hsp


def freeu_v2_patch(h, hsp, scale_dict):
    scale = scale_dict.get(int(h.shape[1]))
    if scale is not None:
        hidden_mean = h.mean(1).unsqueeze(1)
        B = hidden_mean.shape[0]
        hidden_max, _ = torch.max(hidden_mean.view(B, -1), dim=-1, keepdim=True)
        hidden_min, _ = torch.min(hidden_mean.view(B, -1), dim=-1, keepdim=True)
        hidden_mean = (hidden_mean - hidden_min.unsqueeze(2).unsqueeze(3)) / \
            (hidden_max - hidden_min).unsqueeze(2).unsqueeze(3)
        h[:, :h.shape[1] // 2] = h[:, :h.shape[1] // 2] * ((scale[0] - 1) * hidden_mean + 1)
        hsp = fourier_filter(hsp, threshold=1, scale=scale[1])
    return h, hsp


# --- diffusers' hook: its up blocks call unet_2d_blocks.apply_freeu before the cat ---

CALLS = collections.Counter()   # h's width -> calls
FIRED = collections.Counter()   # h's width -> calls where a key matched
STATE = {"version": None, "model_channels": None}


def comfy_apply_freeu(resolution_idx, hidden_states, res_hidden_states, **kw):
    del resolution_idx  # ComfyUI keys on h's width, not on the block
    mc = STATE["model_channels"]
    scale_dict = {mc * 4: (kw["b1"], kw["s1"]), mc * 2: (kw["b2"], kw["s2"])}
    width = int(hidden_states.shape[1])
    CALLS[width] += 1
    if width in scale_dict:
        FIRED[width] += 1
    patch = freeu_patch if STATE["version"] == "v1" else freeu_v2_patch
    return patch(hidden_states, res_hidden_states, scale_dict)


unet_2d_blocks.apply_freeu = comfy_apply_freeu


def run(unet, inputs, version):
    CALLS.clear()
    FIRED.clear()
    if version is None:
        unet.disable_freeu()
    else:
        params = FREEU if version == "v1" else FREEU_V2
        unet.enable_freeu(s1=params["s1"], s2=params["s2"], b1=params["b1"], b2=params["b2"])
    STATE["version"] = version
    STATE["model_channels"] = unet.config.block_out_channels[0]
    with torch.no_grad():
        out = unet(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample
    unet.disable_freeu()
    return out.float().contiguous(), dict(CALLS), dict(FIRED)


def make(unet, inputs, name, expect_calls, expect_fired):
    tensors = {}
    plain = None
    for prefix, version in [("plain.", None), ("freeu.", "v1"), ("freeu_v2.", "v2")]:
        noise_pred, calls, fired = run(unet, inputs, version)
        print(f"{name} {prefix:10s} calls by width {calls}  fired {fired}  noise_pred std {noise_pred.std().item():.6f}")
        if version is None:
            assert calls == {} and fired == {}, (calls, fired)
            plain = noise_pred
        else:
            assert calls == expect_calls, (calls, expect_calls)
            assert fired == expect_fired, (fired, expect_fired)
            d = rel_l2(noise_pred, plain)
            print(f"{name} {prefix:10s} rel L2 vs plain {d:.6e}")
            assert d > 1e-3, d
        assert torch.isfinite(noise_pred).all()
        for k in ["sample", "timesteps", "encoder_hidden_states"]:
            tensors[prefix + k] = inputs[k].float().clone().contiguous()
        tensors[prefix + "noise_pred"] = noise_pred
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path)
    os.chmod(path, 0o644)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def check_plain(unet, golden_path, name):
    g = load_file(golden_path)
    out, calls, _ = run(unet, g, None)
    assert calls == {}
    d = rel_l2(out, g["noise_pred"])
    print(f"{name} plain vs {golden_path} noise_pred: rel L2 {d:.3e}")
    assert d < 1e-4, d


def tiny():
    unet = UNet2DConditionModel.from_pretrained(TINY_MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    check_plain(unet, "tests/data/tiny/unet.safetensors", "tiny")
    g = load_file("tests/data/tiny/unet.safetensors")
    torch.manual_seed(0)
    inputs = {"sample": torch.randn(2, 4, 16, 12), "timesteps": g["timesteps"],
              "encoder_hidden_states": g["encoder_hidden_states"]}
    # model_channels 32: up_blocks.0 sees h 64 wide three times, up_blocks.1 64 once then 32 twice
    make(unet, inputs, "tiny", expect_calls={64: 4, 32: 2}, expect_fired={64: 4})


def load_full(checkpoint):
    sd = {}
    with safe_open(checkpoint, "pt") as f:
        for k in f.keys():
            if k.startswith("model.diffusion_model."):
                sd[k] = f.get_tensor(k).float()
    print(f"full: {len(sd)} UNet tensors from {checkpoint}")
    config = dict(SD15_UNET_CONFIG)
    converted = convert_ldm_unet_checkpoint(sd, config)
    del sd
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    unet.load_state_dict(converted, strict=True, assign=True)
    assert len(converted) == len(unet.state_dict())
    for n, t in list(unet.named_parameters()) + list(unet.named_buffers()):
        assert not t.is_meta and t.dtype == torch.float32, n
    print(f"full: {len(converted)} converted tensors loaded strictly")
    return unet.eval()


def full(checkpoint):
    unet = load_full(checkpoint)
    check_plain(unet, "tests/data/full/unet.safetensors", "full")
    torch.manual_seed(1)
    sample = torch.randn(2, 4, 24, 16)
    encoder_hidden_states = torch.randn(2, 8, 768)
    inputs = {"sample": sample, "timesteps": torch.tensor([999.0, 500.0]),
              "encoder_hidden_states": encoder_hidden_states}
    # model_channels 320: output blocks 0-6 see h 1280 wide, 7-9 640, 10-11 320
    make(unet, inputs, "full", expect_calls={1280: 7, 640: 3, 320: 2}, expect_fired={1280: 7, 640: 3})


def main():
    checkpoint = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sd15_hashinit.safetensors"
    os.makedirs(OUT, exist_ok=True)
    tiny()
    made = False
    if not os.path.exists(checkpoint):
        subprocess.run([MAKE_HASHINIT, checkpoint], check=True)
        made = True
    try:
        full(checkpoint)
    finally:
        if made:
            os.remove(checkpoint)


if __name__ == "__main__":
    sys.exit(main())
