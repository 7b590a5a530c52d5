"""Writes kiln's ControlNet test data for SD 2.x: a random ControlNet for the
tiny SD 2.x model of this folder (its linear transformer projections and
upcast attention) in the original layout, and what upstream diffusers
computes with it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32): ControlNetModel.from_unet
of the diffusers folder's UNet, its hint encoder 8-16-16-32 wide, every
weight random (seeded; the zero convolutions too), written in the original
names (`control_model.*`, as control_v11p_sd21 and ComfyUI users' SD 2.x
ControlNets) and checked against upstream's converter
(convert_ldm_unet_checkpoint), which must give back the diffusers weights.

  controlnet/tiny_ldm.safetensors
  controlnet/golden.safetensors  sample, timesteps, encoder_hidden_states (the
      SD 2.x golden's inputs), hint (B,3,8h,8w) in [0,1], scale 0.8;
      residual.N, residual.mid (the ControlNet's, times scale) and
      noise_pred (the UNet with them)

Run from the repository root with torch and diffusers installed:
  python3 tests/data/sd2/make_sd2_controlnet_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_unet_checkpoint
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import ldm_controlnet  # noqa: E402

FOLDER = "tests/data/sd2/tiny_sd2_diffusers"
OUT = "tests/data/sd2/controlnet"
SCALE = 0.8


def main():
    os.makedirs(OUT, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(FOLDER, subfolder="unet").to(torch.float32).eval()
    torch.manual_seed(20261128)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32),
                                           load_weights_from_unet=False).eval()
    with torch.no_grad():
        for p in controlnet.parameters():  # every weight random, the zero convolutions too
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05))
    sd = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    cfg = dict(controlnet.config)
    original = ldm_controlnet(sd, cfg["layers_per_block"])
    back = convert_ldm_unet_checkpoint(dict(original), cfg, controlnet=True)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    save_file(original, f"{OUT}/tiny_ldm.safetensors")

    g = load_file("tests/data/sd2/golden.safetensors")
    sample, timesteps, context = g["sample"], g["timesteps"], g["encoder_hidden_states"]
    b, _, h, w = sample.shape
    hint = torch.from_numpy(np.random.default_rng(7).random((b, 3, 8 * h, 8 * w), dtype=np.float32))
    golden = {"sample": sample, "timesteps": timesteps, "encoder_hidden_states": context, "hint": hint,
              "scale": torch.tensor([SCALE])}
    with torch.no_grad():
        down, mid = controlnet(sample, timesteps, encoder_hidden_states=context, controlnet_cond=hint,
                               conditioning_scale=SCALE, return_dict=False)
        golden["noise_pred"] = unet(sample, timesteps, encoder_hidden_states=context,
                                    down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    for i, r in enumerate(down):
        golden[f"residual.{i}"] = r
    golden["residual.mid"] = mid
    save_file({k: v.contiguous() for k, v in golden.items()}, f"{OUT}/golden.safetensors")
    change = float((golden["noise_pred"] - g["noise_pred"]).norm() / g["noise_pred"].norm())
    print(f"{len(down)} residuals; the noise prediction moves by {change:.3f}")


if __name__ == "__main__":
    main()
