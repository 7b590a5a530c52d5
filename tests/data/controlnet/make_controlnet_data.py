"""Writes kiln's ControlNet test data: a small random ControlNet for the tiny
SD 1.x model (tests/data/tiny) in both layouts people have, and what upstream
diffusers computes with it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32). The ControlNet is
diffusers' ControlNetModel.from_unet(tiny UNet), its hint encoder 8-16-16-32
wide, with every weight random
(seeded; the zero convolutions too, so that residuals are not zero and the
encoder is not the UNet's own). The original-layout file (`control_model.*`,
as lllyasviel's and ComfyUI users' files) is checked against upstream's own
converter (convert_from_ckpt.convert_ldm_unet_checkpoint), which must give
back the diffusers weights exactly.

  tiny_diffusers.safetensors  diffusers' names (save_pretrained)
  tiny_ldm.safetensors        original names under `control_model.`
  golden.safetensors          sample, timesteps, encoder_hidden_states (the
      tiny UNet golden's inputs), hint (B,3,8h,8w) in [0,1], scale;
      residual.N (ControlNet's down_block_res_samples, times scale),
      residual.mid, and noise_pred: the tiny UNet with those residuals added;
      denoise.*: one guided denoiser call as ComfyUI makes it with Apply
      ControlNet on both prompts (x, sigma = the training sigma of t = 500,
      cfg 7.5, rows 0 and 1 of the context as negative and positive, hint
      row 0): c_in = 1/sqrt(sigma^2+1), x0 = x - sigma * eps per half, then
      uncond + (cond - uncond) * cfg.
  hint_37x23.png, fit.WxH  a random 37x23 picture and what ComfyUI's
      common_upscale(.., "nearest-exact", "center") makes of it at 64x48 and
      24x64 (its crop rule, then torch's interpolate), as it fits a hint.

The name mapping (ldm_controlnet) and ComfyUI's sigmas are
tests/data/sd_common.py's, shared with the SD 2.x, SDXL and layout scripts.

Run from the repository root with torch and diffusers installed and the
project's shared goldens at ../shared/goldens:
  python3 tests/data/controlnet/make_controlnet_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_unet_checkpoint
from safetensors.numpy import load_file
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import comfy_fit, comfy_sigmas, ldm_controlnet  # noqa: E402

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/controlnet"
SCALE = 0.8


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20261127)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    # a narrower hint encoder than SD's (16, 32, 96, 256) keeps the files small;
    # kiln reads the widths off the shapes
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32),
                                           load_weights_from_unet=False).eval()
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            # every weight random: the zero convolutions would give zero residuals
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05))
    sd = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(sd, f"{OUT}/tiny_diffusers.safetensors")

    cfg = dict(controlnet.config)
    original = ldm_controlnet(sd, cfg["layers_per_block"])
    back = convert_ldm_unet_checkpoint(dict(original), cfg, controlnet=True)
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    save_file(original, f"{OUT}/tiny_ldm.safetensors")

    inputs = load_file("tests/data/tiny/unet.safetensors")
    sample = torch.from_numpy(inputs["sample"])
    timesteps = torch.from_numpy(inputs["timesteps"])
    context = torch.from_numpy(inputs["encoder_hidden_states"])
    b, _, h, w = sample.shape
    rng = np.random.default_rng(5)
    hint = torch.from_numpy(rng.random((b, 3, 8 * h, 8 * w), dtype=np.float32))
    golden = {"sample": sample, "timesteps": timesteps, "encoder_hidden_states": context, "hint": hint,
              "scale": torch.tensor([SCALE])}
    with torch.no_grad():
        down, mid = controlnet(sample, timesteps, encoder_hidden_states=context, controlnet_cond=hint,
                               conditioning_scale=SCALE, return_dict=False)
        golden["noise_pred"] = unet(sample, timesteps, encoder_hidden_states=context,
                                    down_block_additional_residuals=down,
                                    mid_block_additional_residual=mid).sample
    for i, r in enumerate(down):
        golden[f"residual.{i}"] = r
    golden["residual.mid"] = mid

    # one denoiser call: SD's scaled-linear betas (ComfyUI's sigmas), sigma at training step 500
    sigma = comfy_sigmas()[500]
    x = torch.from_numpy(rng.standard_normal((1, 4, h, w)).astype(np.float32)) * sigma
    cfg = 7.5
    xin = (x / (sigma ** 2 + 1).sqrt()).repeat(2, 1, 1, 1)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        down, mid = controlnet(xin, t, encoder_hidden_states=context, controlnet_cond=hint[:1].repeat(2, 1, 1, 1),
                               conditioning_scale=SCALE, return_dict=False)
        eps = unet(xin, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
    uncond, cond = x - eps[0:1] * sigma, x - eps[1:2] * sigma
    golden["denoise.x"] = x
    golden["denoise.sigma"] = sigma.reshape(1)
    golden["denoise.cfg"] = torch.tensor([cfg])
    golden["denoise.out"] = uncond + (cond - uncond) * cfg
    from PIL import Image
    pixels = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(f"{OUT}/hint_37x23.png")
    image = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    for width, height in [(64, 48), (24, 64)]:
        golden[f"fit.{width}x{height}"] = comfy_fit(image, width, height)[0]
    save_file({k: v.contiguous() for k, v in golden.items()}, f"{OUT}/golden.safetensors")
    plain = load_file("tests/data/tiny/unet.safetensors")["noise_pred"]
    change = np.linalg.norm(golden["noise_pred"].numpy() - plain) / np.linalg.norm(plain)
    print(f"{len(down)} residuals; the noise prediction moves by {change:.3f} (relative L2)")


if __name__ == "__main__":
    main()
