"""Writes kiln's test data for SD3 inpainting ControlNets (InstantX's and
alimama-creative's SD3-Controlnet-Inpainting: diffusers' SD3ControlNetModel
with extra_conditioning_channels 1, whose pos_embed_input reads the masked
picture's latent and a mask, 17 channels in 2x2 patches) for
tests/data/sd3/tiny's transformer, and what upstream computes with it.

Origin: diffusers 0.32.2's SD3ControlNetModel and SD3Transformer2DModel on
PyTorch (CPU, float32); the residuals taken by the transformer as
make_sd3_controlnet_data.py's ComfyUI restatement takes them (its
comfy_outputs and with_controls: each of the 3 blocks' residuals for
depth // 3 = 1 transformer block, the last one's for none), the pooled input
zeroed; ComfyUI restated for the hint: load_controlnet_mmdit (a
pos_embed_input 17 channels wide: concat_mask; SD3's latent format with its
shift set to 0) and ControlNetInpaintingAliMamaApply (the mask inverted, 1
repaints -> 0 keeps; the picture times that mask stretched to it, bilinear,
centre crop, rounded; the picture fitted to the latent times the VAE's
factor, its latent the VAE's mean times 1.5305; the inverted mask resized to
the latent, nearest-exact, centre crop, as the 17th channel).

  sd3/controlnet/inpaint/  SD3ControlNetModel (3 joint blocks of 2 heads of
       16 as sd3/controlnet/instantx, extra_conditioning_channels 1):
       config.json, diffusion_pytorch_model.safetensors (f16)
  sd3/controlnet/inpaint.golden.safetensors
       hint (2,17,8,6): 16 random latent channels and a mask channel in
         [0,1] (seeded 41); residual.N (2,12,32), N = 0..2: the
         ControlNet's controlnet_block_samples at scale 0.7 on
         sd3/golden.safetensors' sd35.sample, sd35.context, sd35.timestep
         with zeros as pooled; out (2,16,8,6): tiny/'s transformer on
         sd35.sample, sd35.context, sd35.pooled, sd35.timestep with
         residuals 0 and 1 after blocks 0 and 1;
       hint_latent (1,17,8,6): ControlNetInpaintingAliMamaApply's hint of
         sd3/controlnet/hint_12x16.png and flux/controlnet/mask_16x12.png
         (16 tall, 12 wide: the picture's size) for an 8x6 latent

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_sd3_data.py, make_sd3_controlnet_data.py and
tests/data/flux/make_flux_alimama_data.py, whose files it reads):
  python3 tests/data/sd3/make_sd3_controlnet_inpaint_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, SD3ControlNetModel, SD3Transformer2DModel
from PIL import Image
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_sd3_controlnet_data import (CONTROLNET, OUT, TINY, comfy_outputs, readable, rel,  # noqa: E402
                                      residuals, with_controls)
from make_sd3_data import SCALE, make_model  # noqa: E402
from sd_common import comfy_fit, save_goldens  # noqa: E402

INPAINT = dict(CONTROLNET, extra_conditioning_channels=1)
MASK = os.path.join(os.path.dirname(HERE), "flux", "controlnet", "mask_16x12.png")


def load_rgb(path):
    """An 8-bit picture as (1,3,H,W) floats in [0,1]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255


def hint_latent(vae, picture, mask, h, w):
    """ControlNetInpaintingAliMamaApply's hint for an h x w latent of the
    tiny VAE (which halves a side), in an SD3 ControlNet's latent format
    (shift 0)."""
    inverted = 1.0 - mask  # (1,1,H,W): 1 keeps
    kept = picture * torch.round(comfy_fit(inverted, picture.shape[-1], picture.shape[-2], "bilinear"))
    kept = comfy_fit(kept, 2 * w, 2 * h)
    with torch.no_grad():
        latent = vae.encode(kept * 2 - 1).latent_dist.mean * SCALE
    return torch.cat([latent, comfy_fit(inverted, w, h)], dim=1)


def main():
    net = make_model(SD3ControlNetModel, INPAINT, 37, f"{OUT}/inpaint")
    assert net.pos_embed_input.proj.weight.shape[1] == 17
    transformer = SD3Transformer2DModel.from_pretrained(f"{TINY}/transformer").eval()
    depth = len(transformer.transformer_blocks)
    src = load_file(f"{HERE}/golden.safetensors")
    sample, context, pooled, timestep = (src[f"sd35.{k}"].clone() for k in ("sample", "context", "pooled", "timestep"))
    torch.manual_seed(41)
    hint = torch.cat([torch.randn(2, 16, 8, 6), torch.rand(2, 1, 8, 6)], dim=1)
    res = residuals(net, 0.7, hint, sample, context, pooled, timestep)
    inputs = dict(hidden_states=sample, encoder_hidden_states=context, pooled_projections=pooled, timestep=timestep)
    out = with_controls(transformer, comfy_outputs(res, depth), **inputs)
    with torch.no_grad():
        plain = transformer(**inputs).sample
    print("residuals' effect on the transformer's output: relative difference", rel(out, plain))
    g = {"hint": hint, "out": out}
    g.update({f"residual.{i}": r for i, r in enumerate(res)})

    vae = AutoencoderKL.from_pretrained(f"{TINY}/vae").eval()
    picture = load_rgb(f"{OUT}/hint_12x16.png")
    mask = load_rgb(MASK)[:, :1]  # the red channel
    assert picture.shape[-2:] == mask.shape[-2:] == (16, 12)
    g["hint_latent"] = hint_latent(vae, picture, mask, 8, 6)
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/inpaint.golden.safetensors")
    readable()


if __name__ == "__main__":
    main()
