"""Writes kiln's data for two ControlNets at once (chained Apply ControlNet
nodes, whose residuals ComfyUI sums, each times its own strength): a second
random ControlNet for the tiny SD 1.x model and one guided denoiser call with
both, as diffusers' MultiControlNetModel computes it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32). The first ControlNet is
the one in tiny_diffusers.safetensors (make_controlnet_data.py's), read back
from the file; the second is made the same way from a seed of its own and
written in the original layout, checked against upstream's own converter.
The call is golden.safetensors' denoise.* (x, sigma, cfg 7.5, rows 0 and 1
of the context as negative and positive, the first ControlNet on hint row 0
at strength 0.8) with the second on a hint of its own at strength 0.5.

  second_ldm.safetensors  the second ControlNet, names under `control_model.`
  multi.safetensors       hint (1,3,8h,8w) in [0,1] and scale: the second's;
                          out: the guided denoiser output with both

Run from the repository root with torch and diffusers installed and the
project's shared goldens at ../shared/goldens (after make_controlnet_data.py):
  python3 tests/data/controlnet/make_multi_controlnet_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.controlnet.multicontrolnet import MultiControlNetModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_unet_checkpoint
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import ldm_controlnet  # noqa: E402

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/controlnet"
SECOND_SCALE = 0.5


def controlnet_like(unet):
    # the hint encoder's widths as the first one's (8, 16, 16, 32)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32),
                                     load_weights_from_unet=False).eval()


def main():
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    first = controlnet_like(unet)
    first.load_state_dict(load_file(f"{OUT}/tiny_diffusers.safetensors"))
    torch.manual_seed(20261128)
    second = controlnet_like(unet)
    with torch.no_grad():
        for p in second.parameters():  # every weight random, the zero convolutions too
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05))
    sd = {k: v.contiguous() for k, v in second.state_dict().items()}
    layers = second.config["layers_per_block"]
    original = ldm_controlnet(sd, layers)
    back = convert_ldm_unet_checkpoint(dict(original), dict(second.config), controlnet=True)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    save_file(original, f"{OUT}/second_ldm.safetensors")

    golden = load_file(f"{OUT}/golden.safetensors")
    x, sigma, cfg = golden["denoise.x"], golden["denoise.sigma"][0], golden["denoise.cfg"][0]
    context, hint, scale = golden["encoder_hidden_states"], golden["hint"], golden["scale"][0]
    _, _, h, w = x.shape
    hint2 = torch.from_numpy(np.random.default_rng(6).random((1, 3, 8 * h, 8 * w), dtype=np.float32))
    xin = (x / (sigma ** 2 + 1).sqrt()).repeat(2, 1, 1, 1)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        down, mid = MultiControlNetModel([first, second])(
            xin, t, encoder_hidden_states=context,
            controlnet_cond=[hint[:1].repeat(2, 1, 1, 1), hint2.repeat(2, 1, 1, 1)],
            conditioning_scale=[float(scale), SECOND_SCALE], return_dict=False)
        eps = unet(xin, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
    uncond, cond = x - eps[0:1] * sigma, x - eps[1:2] * sigma
    out = uncond + (cond - uncond) * cfg
    save_file({"hint": hint2, "scale": torch.tensor([SECOND_SCALE]), "out": out.contiguous()},
              f"{OUT}/multi.safetensors")
    change = np.linalg.norm((out - golden["denoise.out"]).numpy()) / np.linalg.norm(golden["denoise.out"].numpy())
    print(f"the second ControlNet moves the call by {change:.3f} (relative L2)")


if __name__ == "__main__":
    main()
