"""Goldens for ComfyUI's AddNoise and SamplingPercentToSigma nodes.

Origin: PyTorch (CPU, float32) with ComfyUI v0.3.64's
comfy_extras/nodes_custom_sampler.py (AddNoise.add_noise,
SamplingPercentToSigma.get_sigma, RandomNoise), comfy/model_sampling.py
(ModelSamplingDiscrete's table, sigma() and percent_to_sigma; EPS's and
CONST's noise_scaling; ModelSamplingFlux's percent_to_sigma) and
comfy/latent_formats.py (SD15, Flux: process_in / process_out) restated
here, not copied. The models: kiln's tiny SD 1.x model (eps, SD's linear
betas 0.00085 .. 0.012, latent scale 0.18215) and tiny FLUX.1 folder
(flow, shift 1.15 as FLUX.1-dev's, its VAE config's scale 0.3611 and shift
0.1159).

  sd.percent, flux.percent (5,): 0, 0.25, 0.5, 0.999, 1
  sd.sigma, flux.sigma (5,): percent_to_sigma of each (the Python float)
  sd.actual, flux.actual (2,): return_actual_sigma's at 0 and 1 (sigma_max,
      sigma_min)
  (these three float64, stored as their bits in int64: safetensors readers
  such as kiln's take no F64)
  For P in sd, flux:
  P.latent (2,4,8,6): a latent (seeded normal times 0.5 plus 0.1)
  P.sigmas (3,): sigmas; P.noisy: AddNoise with RandomNoise seed 7 (the
      difference of the first and last sigma)
  P.one_sigma (1,): a single sigma; P.empty_noisy: AddNoise of an all-zero
      latent (2,4,8,6) at it, seed 11 (left unshifted by the format)

Run from the repository root:
  /tmp/tv/bin/python tests/data/sigmas/make_add_noise_data.py
"""
import math
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
PERCENTS = [0.0, 0.25, 0.5, 0.999, 1.0]


def discrete_table():
    """ModelSamplingDiscrete's float32 sigmas and log_sigmas for SD's betas."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    return sigmas.float(), sigmas.log().float()


def discrete_sigma(log_sigmas, timestep):
    t = torch.clamp(timestep.float(), min=0, max=999)
    lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()


def discrete_percent_to_sigma(log_sigmas, percent):
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    return discrete_sigma(log_sigmas, torch.tensor((1.0 - percent) * 999.0)).item()


def flux_percent_to_sigma(shift, percent):
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    return math.exp(shift) / (math.exp(shift) + (1 / t - 1) ** 1.0)


def flux_table(shift):
    """ModelSamplingFlux's sigmas: flux_time_shift of (1 .. 10000) / 10000, float32."""
    ts = torch.arange(1, 10001, 1) / 10000
    return math.exp(shift) / (math.exp(shift) + (1 / ts - 1) ** 1.0)


def add_noise(latent, seed, sigmas, flow, scale, shift):
    noise = torch.randn(latent.size(), dtype=latent.dtype, layout=latent.layout,
                        generator=torch.manual_seed(seed), device="cpu")
    sigma = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
    if torch.count_nonzero(latent) > 0:
        latent = (latent - shift) * scale
    if flow:
        noisy = sigma * noise + (1.0 - sigma) * latent
    else:
        noisy = noise * sigma + latent
    noisy = noisy / scale + shift
    return torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)


def main():
    g = {}
    sd_sigmas, sd_log = discrete_table()
    flux_sigmas = flux_table(1.15).float()
    models = {"sd": (False, 0.18215, 0.0), "flux": (True, 0.3611, 0.1159)}
    for name, (flow, scale, shift) in models.items():
        g[f"{name}.percent"] = torch.tensor(PERCENTS, dtype=torch.float64)
        if flow:
            g[f"{name}.sigma"] = torch.tensor([flux_percent_to_sigma(1.15, p) for p in PERCENTS], dtype=torch.float64)
            g[f"{name}.actual"] = torch.tensor([flux_sigmas[-1].item(), flux_sigmas[0].item()], dtype=torch.float64)
        else:
            g[f"{name}.sigma"] = torch.tensor([discrete_percent_to_sigma(sd_log, p) for p in PERCENTS],
                                              dtype=torch.float64)
            g[f"{name}.actual"] = torch.tensor([sd_sigmas[-1].item(), sd_sigmas[0].item()], dtype=torch.float64)
        torch.manual_seed(3 if flow else 2)
        latent = torch.randn(2, 4, 8, 6) * 0.5 + 0.1
        sigmas = torch.tensor([0.9, 0.6, 0.2]) if flow else torch.tensor([14.6, 3.3, 0.5])
        one = torch.tensor([0.7]) if flow else torch.tensor([2.0])
        g[f"{name}.latent"], g[f"{name}.sigmas"], g[f"{name}.one_sigma"] = latent, sigmas, one
        g[f"{name}.noisy"] = add_noise(latent, 7, sigmas, flow, scale, shift)
        g[f"{name}.empty_noisy"] = add_noise(torch.zeros(2, 4, 8, 6), 11, one, flow, scale, shift)
    stored = {k: v.view(torch.int64) if v.dtype == torch.float64 else v for k, v in g.items()}
    save_file({k: v.contiguous() for k, v in stored.items()}, f"{HERE}/add_noise.safetensors")
    for k, v in g.items():
        print(k, tuple(v.shape), v.flatten()[:3].tolist())


if __name__ == "__main__":
    main()
