"""Goldens for ComfyUI's SelfAttentionGuidance on a model Deep Shrink
(PatchModelAddDownscale) patches, with its KSampler.

Origin: make_sag_data.py's SAG and make_deep_shrink_data.py's Deep Shrink
forward (ComfyUI v0.3.64, commit a125cd84, restated there on diffusers 0.42.1
and PyTorch, CPU, float32; see their headers), put together as ComfyUI runs
both patches on one model: the UNet's forward carries Deep Shrink in every
call at a sigma within its bounds, SAG's pass (the uncond alone on the
degraded x0, at the step's sigma) included; in a shrunk call the middle
block's self-attention has the shrunk path's tokens (3 x 4 on the 12 x 16
latent with the resize after block 3, 12 tokens, where the plain calls have
6 x 8, 48), and create_blur_map finds their grid from the token count by its
factor search, so the map is 3 x 4, nearest-upsampled to the latent.

Run: SAG scale 0.5, blur_sigma 2.0; Deep Shrink block 3, factor 2.0,
start 0.0, end 0.5, after the skip, bicubic down and up; cfg 5; euler,
normal, 3 steps, seed 42; tests/data/tiny's UNet and contexts.

Writes tests/data/sag/sag_deep_shrink.safetensors, every tensor float32, in
make_sag_data.py's layout (one run, "shrunk"):
  positive (1, 77, 32), negative (1, 77, 32): the conditioning rows
  shrunk.settings (3,): [cfg, scale, blur_sigma]
  shrunk.deep_shrink (5,): [block_number, downscale_factor, start_percent,
      end_percent, downscale_after_skip] (bicubic down and up)
  shrunk.shrunk_steps (3,): 1 where the step's calls were shrunk
  shrunk.grid_rows (3,): the rows of each step's SAG grid (3 shrunk, 6 not)
  shrunk.latent_out (1, 4, 12, 16): the LATENT KSampler returns

Run from the repository root:
  /tmp/tv/bin/python tests/data/sag/make_sag_deep_shrink_data.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "deep_shrink"))
from make_sag_data import BLUR_SIGMA, SCALE, THRESHOLD, RecordingSelfAttn, blur_map, check_plain  # noqa: E402
from make_deep_shrink_data import (CFG, H, INPUTS, MODEL, SCALING, STEPS, W, DeepShrink,  # noqa: E402
                                   forward)
from sd_common import comfy_normal_sigmas, eps_x0, ksampler, rel_l2  # noqa: E402

SHRINK = dict(block=3, factor=2.0, start=0.0, end=0.5, after_skip=True, down="bicubic", up="bicubic")


def denoiser(unet, proc, patch, pair, timestep, info):
    """ComfyUI's guided x0 with both patches (the pair [negative, positive])."""
    def eps(x, sigma, context):
        n = x.shape[0]
        with torch.no_grad():
            return forward(unet, x / (sigma ** 2 + 1) ** 0.5, timestep(sigma.view(1)).float().repeat(n), context,
                           patch, sigma.view(1).repeat(n))

    def denoised(x, sigma):
        xc = torch.cat([x, x])
        proc.record, proc.uncond_row, proc.attn = True, 0, None
        x0s = eps_x0(xc, eps(xc, sigma, pair), sigma)
        proc.record = False
        uncond_x0, cond_x0 = x0s[0:1], x0s[1:2]
        cfg_result = uncond_x0 + (cond_x0 - uncond_x0) * CFG
        degraded, _, _, grid = blur_map(uncond_x0, proc.attn, BLUR_SIGMA, THRESHOLD)
        degraded_noised = degraded + x - uncond_x0
        sag_x0 = eps_x0(degraded_noised, eps(degraded_noised, sigma, pair[0:1]), sigma)
        info["shrunk"].append(1.0 if patch.active(sigma.view(1)) else 0.0)
        info["grid"].append(float(grid[0]))
        return cfg_result + (degraded - sag_x0) * SCALE

    return denoised


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    target = unet.mid_block.attentions[0].transformer_blocks[0].attn1
    check_plain(target)
    proc = RecordingSelfAttn()
    target.set_processor(proc)
    ctx = load_file(INPUTS)["encoder_hidden_states"].float()
    pair = torch.cat([ctx[1:2], ctx[0:1]])  # calc_cond_batch's order: the negative (uncond) row first
    sigmas, timestep = comfy_normal_sigmas(STEPS)
    noise = torch.randn(1, 4, H, W, generator=torch.manual_seed(42))
    s = SHRINK
    patch = DeepShrink(s["block"], s["factor"], s["start"], s["end"], s["after_skip"], s["down"], s["up"])
    info = {"shrunk": [], "grid": []}
    out = ksampler(denoiser(unet, proc, patch, pair, timestep, info), noise, sigmas, SCALING, None)
    print("shrunk per step", info["shrunk"], "grid rows per step", info["grid"])
    assert 0 < sum(info["shrunk"]) < STEPS and sorted(set(info["grid"])) == [3.0, 6.0]
    plain = ksampler(denoiser(unet, proc, DeepShrink(3, 2.0, 1.0, 1.0, True, "bicubic", "bicubic"), pair, timestep,
                              {"shrunk": [], "grid": []}), noise, sigmas, SCALING, None)
    print(f"latent_out vs SAG alone: rel L2 {rel_l2(out, plain):.6e}")
    assert rel_l2(out, plain) > 1e-3
    g = {"positive": ctx[0:1], "negative": ctx[1:2], "shrunk.settings": torch.tensor([CFG, SCALE, BLUR_SIGMA]),
         "shrunk.deep_shrink": torch.tensor([s["block"], s["factor"], s["start"], s["end"], 1.0]),
         "shrunk.shrunk_steps": torch.tensor(info["shrunk"]), "shrunk.grid_rows": torch.tensor(info["grid"]),
         "shrunk.latent_out": out}
    save_file({k: v.float().contiguous() for k, v in g.items()}, os.path.join(HERE, "sag_deep_shrink.safetensors"))


if __name__ == "__main__":
    main()
