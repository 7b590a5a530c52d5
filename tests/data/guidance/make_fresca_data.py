"""Goldens for ComfyUI's FreSca node.

Origin: PyTorch (CPU, float32) with ComfyUI v0.3.64's
comfy_extras/nodes_fresca.py (Fourier_filter: torch.fft.fftn over the last
two axes, fftshift, the centre block of min(cutoff, side // 2) on each side
scaled by scale_low and the rest by scale_high, ifftshift, ifftn's real
part; the pre-CFG function: cond = filter(cond - uncond) + uncond) restated
here, not copied; and a KSampler run of kiln's tiny SD 1.x UNet (diffusers
0.42.1) with it (euler, "normal", 6 steps, cfg 5, seed 42, a 12 x 10
latent, the tiny model's unet.safetensors contexts as prompts).

  filter.<k>.cond, filter.<k>.uncond, filter.<k>.settings (low, high,
  cutoff), filter.<k>.out for k in even (2, 4, 12, 10; cutoff 3), odd
  (1, 4, 7, 9; cutoff 2), wide (1, 2, 6, 8; cutoff 20: every frequency
  low);
  run.positive, run.negative, run.noise, run.settings, run.latent_out.

Run from the repository root:
  /tmp/tv/bin/python tests/data/guidance/make_fresca_data.py
"""
import os
import sys

import torch
import torch.fft as fft
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
from sd_common import comfy_normal_sigmas, eps_x0, ksampler, save_goldens  # noqa: E402

RUN = (0.8, 1.6, 2)  # scale_low, scale_high, freq_cutoff


def fourier_filter(x, low, high, cutoff):
    freq = fft.fftshift(fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.ones(freq.shape) * high
    m = mask
    for d in range(len(freq.shape) - 2):
        dim = d + 2
        cc = freq.shape[dim] // 2
        f = min(cutoff, cc)
        m = m.narrow(dim, cc - f, f * 2)
    m[:] = low
    return fft.ifftn(fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real


def fresca(cond, uncond, low, high, cutoff):
    return fourier_filter(cond - uncond, low, high, cutoff) + uncond


def main():
    torch.manual_seed(61)
    g = {}
    for name, shape, settings in (("even", (2, 4, 12, 10), (0.7, 1.4, 3)), ("odd", (1, 4, 7, 9), (1.2, 0.6, 2)),
                                  ("wide", (1, 2, 6, 8), (0.5, 2.0, 20))):
        cond, uncond = torch.randn(shape), torch.randn(shape)
        g.update({f"filter.{name}.cond": cond, f"filter.{name}.uncond": uncond,
                  f"filter.{name}.settings": torch.tensor(settings, dtype=torch.float32),
                  f"filter.{name}.out": fresca(cond, uncond, *settings)})

    unet = UNet2DConditionModel.from_pretrained(f"{DATA}/tiny/sd15_tiny_diffusers", subfolder="unet",
                                                torch_dtype=torch.float32).eval()
    ctx = load_file(f"{DATA}/tiny/unet.safetensors")["encoder_hidden_states"].float()
    positive, negative = ctx[0:1].clone(), ctx[1:2].clone()
    pair = torch.cat([negative, positive])
    sigmas, timestep = comfy_normal_sigmas(6)
    noise = torch.randn(1, 4, 12, 10, generator=torch.manual_seed(42))

    def guided(x, sigma):
        xc = torch.cat([x, x])
        with torch.no_grad():
            out = unet(xc / (sigma ** 2 + 1) ** 0.5, timestep(sigma.view(1)).float().repeat(2),
                       encoder_hidden_states=pair).sample
        x0 = eps_x0(xc, out, sigma)
        uncond, cond = x0[0:1], x0[1:2]
        cond = fresca(cond, uncond, *RUN)  # the pre-CFG function on [cond, uncond]
        return uncond + (cond - uncond) * 5.0

    g.update({"run.positive": positive, "run.negative": negative, "run.noise": noise,
              "run.settings": torch.tensor(RUN, dtype=torch.float32),
              "run.latent_out": ksampler(guided, noise, sigmas, 0.18215, None)})
    save_goldens(g, f"{HERE}/fresca.safetensors")


if __name__ == "__main__":
    main()
