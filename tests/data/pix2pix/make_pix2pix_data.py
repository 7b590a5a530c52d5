"""Writes kiln's InstructPix2Pix test data for the tiny SD 1.x model.

Origin: the models are diffusers 0.27.2's (PyTorch CPU, float32): the tiny
UNet with a random 8-channel conv_in (what an InstructPix2Pix checkpoint
changes) and the tiny VAE's encoder. The steps around them are ComfyUI's
(v0.3.x InstructPixToPixConditioning: the picture cropped to the VAE's
multiple and encoded, its latent given unscaled to the UNet beside the noisy
latent on both prompts, SD15_instructpix2pix's concat_cond; then KSampler's
plain two-way guidance), written out here with torch.

  golden.safetensors
    conv_in.weight     the 8-channel conv_in (32,8,3,3)
    unet8.sample/.timesteps/.encoder_hidden_states/.noise_pred
                       the 8-channel UNet on random inputs
    edit.latent        the latent of tests/data/inpaint/image_20x17.png (20x16
                       after the crop), unscaled, as the conditioning carries it
    call.x/.sigma/.cfg/.out
                       one guided sampler call (t = 500) with that latent; the
                       contexts are rows 0 (negative) and 1 (positive) of
                       tests/data/tiny/unet.safetensors' encoder_hidden_states

Run from the repository root with torch, diffusers and pillow installed and
the project's shared goldens at ../shared/goldens (the widened UNet is
make_inpaint_data.py's):
  python3 tests/data/pix2pix/make_pix2pix_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.numpy import load_file
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inpaint"))
from make_inpaint_data import MODEL, widened_unet  # noqa: E402

OUT = "tests/data/pix2pix"
FACTOR = 2  # the tiny VAE's downscale


def main():
    torch.manual_seed(20261128)
    unet = widened_unet(8)
    vae = AutoencoderKL.from_pretrained(MODEL, subfolder="vae").eval()
    golden = {"conv_in.weight": unet.conv_in.weight.detach().clone()}

    inputs = load_file("tests/data/tiny/unet.safetensors")
    context = torch.from_numpy(inputs["encoder_hidden_states"])
    t = torch.from_numpy(inputs["timesteps"])
    sample = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        golden["unet8.noise_pred"] = unet(sample, t, encoder_hidden_states=context).sample
    golden["unet8.sample"], golden["unet8.timesteps"], golden["unet8.encoder_hidden_states"] = sample, t, context

    # InstructPixToPixConditioning: crop to the VAE's multiple (centred), encode
    pixels = torch.from_numpy(np.asarray(Image.open("tests/data/inpaint/image_20x17.png").convert("RGB"),
                                         dtype=np.float32) / 255.0)[None]
    h, w = pixels.shape[1] // FACTOR * FACTOR, pixels.shape[2] // FACTOR * FACTOR
    y0, x0 = pixels.shape[1] % FACTOR // 2, pixels.shape[2] % FACTOR // 2
    pixels = pixels[:, y0:y0 + h, x0:x0 + w, :]
    with torch.no_grad():
        edit = vae.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mean
    golden["edit.latent"] = edit

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    sigma = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()[500]
    x = torch.randn(edit.shape) * sigma
    unet_in = torch.cat([x / (sigma ** 2 + 1) ** 0.5, edit], 1).repeat(2, 1, 1, 1)
    with torch.no_grad():
        eps = unet(unet_in, torch.tensor([500.0, 500.0]), encoder_hidden_states=context).sample
    uncond, cond = x - eps[0:1] * sigma, x - eps[1:2] * sigma
    golden["call.x"], golden["call.sigma"], golden["call.cfg"] = x, sigma.reshape(1), torch.tensor([7.5])
    golden["call.out"] = uncond + (cond - uncond) * 7.5
    save_file({k: v.detach().clone().contiguous() for k, v in golden.items()}, f"{OUT}/golden.safetensors")
    print({k: tuple(v.shape) for k, v in golden.items()})


if __name__ == "__main__":
    main()
