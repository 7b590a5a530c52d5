"""Goldens for ComfyUI's SIGMAS nodes: its scheduler nodes
(comfy_extras/nodes_custom_sampler.py: BasicScheduler, KarrasScheduler,
ExponentialScheduler, PolyexponentialScheduler, LaplaceScheduler,
VPScheduler, SDTurboScheduler, BetaSamplingScheduler;
comfy_extras/nodes_align_your_steps.py: AlignYourStepsScheduler;
comfy_extras/nodes_optimalsteps.py: OptimalStepsScheduler), its
ExtendIntermediateSigmas on a fixed list (EXTEND_INPUT), and the
k-diffusion schedules they call (comfy/k_diffusion/sampling.py), restated
here with torch and numpy as ComfyUI runs them (float32 tensors on the CPU;
Align Your Steps' and OptimalSteps' interpolation in numpy float64), on SD
1.x's discrete table (ModelSamplingDiscrete, betas 0.00085 .. 0.012) and
SD3's flow table (ModelSamplingDiscreteFlow, shift 3). The beta quantiles come from mpmath,
as in flow/make_flow_data.py (exact to double rounding where ComfyUI calls
scipy).

Writes tests/data/sigmas/sigmas.safetensors (read by tests/test_schedule.c):
one float32 vector per case, named <node>.<case>; the cases and their
inputs are the CASES table below, which tests/test_schedule.c repeats.

Run from the repository root: python3 tests/data/sigmas/make_sigmas_data.py
"""
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "flow"))
import make_flow_data as flow  # noqa: E402  ModelSamplingDiscreteFlow, its schedulers, beta_ppf

OUT = "tests/data/sigmas/sigmas.safetensors"


class ModelSamplingDiscrete(flow.ModelSamplingFlux):
    """ComfyUI's, for SD's scaled-linear betas: sigmas and log sigmas in
    float64, kept float32; sigma(t) interpolates log sigma in float32 (the
    flow class lends its sigma_min and sigma_max)."""

    def __init__(self):
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=(len(self.sigmas) - 1))
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]).exp()


def append_zero(x):
    return torch.cat([x, x.new_zeros([1])])


def polyexponential(n, sigma_min, sigma_max, rho):
    ramp = torch.linspace(1, 0, n) ** rho
    return append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def laplace(n, sigma_min, sigma_max, mu, beta):  # no 0 appended, as ComfyUI has it
    x = torch.linspace(0, 1, n)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max)


def vp(n, beta_d, beta_min, eps_s):
    t = torch.linspace(1, eps_s, n)
    return append_zero(torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t)))


def basic(s, scheduler, steps, denoise):
    total_steps = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.FloatTensor([])
        total_steps = int(steps / denoise)
    return flow.schedule(scheduler, s, total_steps)[-(steps + 1):]


def sd_turbo(s, steps, denoise):
    start_step = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start_step:start_step + steps]
    return append_zero(s.sigma(timesteps))


AYS_NOISE_LEVELS = {  # Align Your Steps' published noise levels (NVIDIA), as ComfyUI lists them
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
            0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002]}


OPTIMAL_STEPS_NOISE_LEVELS = {  # OptimalSteps' published noise levels, as ComfyUI lists them
    "FLUX": [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001],
    "Wan": [1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946, 0.927,
            0.902, 0.864, 0.776, 0.539, 0.208, 0.001],
    "Chroma": [0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9, 0.881,
               0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355, 0.311, 0.27,
               0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001]}


def published(levels, steps, denoise):
    """AlignYourStepsScheduler's and OptimalStepsScheduler's get_sigmas."""
    total_steps = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.FloatTensor([])
        total_steps = round(steps * denoise)
    sigmas = levels[:]
    if steps + 1 != len(sigmas):  # log-linear interpolation, in numpy float64
        xs = np.linspace(0, 1, len(sigmas))
        ys = np.log(sigmas[::-1])
        sigmas = np.exp(np.interp(np.linspace(0, 1, steps + 1), xs, ys))[::-1].copy()
    sigmas = sigmas[-(total_steps + 1):]
    sigmas[-1] = 0
    return torch.FloatTensor(sigmas)


def extend(sigmas, steps, start_at_sigma, end_at_sigma, spacing):
    """ExtendIntermediateSigmas."""
    if start_at_sigma < 0:
        start_at_sigma = float("inf")
    interpolator = {"linear": lambda x: x, "cosine": lambda x: torch.sin(x * math.pi / 2),
                    "sine": lambda x: 1 - torch.cos(x * math.pi / 2)}[spacing]
    computed_spacing = interpolator(torch.linspace(0, 1, steps + 1)[1:-1])
    extended = []
    for i in range(len(sigmas) - 1):
        sigma_current, sigma_next = sigmas[i], sigmas[i + 1]
        extended.append(sigma_current)
        if end_at_sigma <= sigma_current <= start_at_sigma:
            extended.extend((computed_spacing * (sigma_next - sigma_current) + sigma_current).tolist())
    if len(sigmas) > 0:
        extended.append(sigmas[-1])
    return torch.FloatTensor(extended)


EXTEND_INPUT = torch.FloatTensor([14.6, 7.3, 2.2, 0.6, 0.0])  # the same list in tests/test_schedule.c
KARRAS_DEFAULTS = (14.614642, 0.0291675)  # the nodes' sigma_max and sigma_min

# name: (function of the two model samplings, the inputs as the test restates them)
CASES = {
    "basic.sd15_karras_s10_d055": lambda sd, f: basic(sd, "karras", 10, 0.55),
    "basic.sd15_normal_s4_d1": lambda sd, f: basic(sd, "normal", 4, 1.0),
    "basic.sd3_simple_s6_d08": lambda sd, f: basic(f, "simple", 6, 0.8),
    "karras.s1": lambda sd, f: flow.karras(1, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0], 7.0),
    "karras.s20": lambda sd, f: flow.karras(20, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0], 7.0),
    "karras.s10_rho3": lambda sd, f: flow.karras(10, 0.002, 120.0, 3.0),
    "karras.s9_rho05": lambda sd, f: flow.karras(9, 0.01, 1.0, 0.5),
    "exponential.s20": lambda sd, f: flow.exponential(20, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0]),
    "exponential.s6": lambda sd, f: flow.exponential(6, 0.002, 80.0),
    "polyexponential.s20": lambda sd, f: polyexponential(20, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0], 1.0),
    "polyexponential.s9_rho2": lambda sd, f: polyexponential(9, 0.03, 14.6, 2.0),
    "polyexponential.s12_rho17": lambda sd, f: polyexponential(12, 0.002, 80.0, 1.7),
    "laplace.s20": lambda sd, f: laplace(20, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0], 0.0, 0.5),
    "laplace.s7": lambda sd, f: laplace(7, 0.03, 14.6, 0.3, 1.2),
    "laplace.s1": lambda sd, f: laplace(1, KARRAS_DEFAULTS[1], KARRAS_DEFAULTS[0], 0.0, 0.5),
    "vp.s20": lambda sd, f: vp(20, 19.9, 0.1, 0.001),
    "vp.s5": lambda sd, f: vp(5, 10.0, 0.5, 0.01),
    "vp.s1": lambda sd, f: vp(1, 19.9, 0.1, 0.001),
    "sd_turbo.sd15_s1": lambda sd, f: sd_turbo(sd, 1, 1.0),
    "sd_turbo.sd15_s4": lambda sd, f: sd_turbo(sd, 4, 1.0),
    "sd_turbo.sd15_s10": lambda sd, f: sd_turbo(sd, 10, 1.0),
    "sd_turbo.sd15_s2_d05": lambda sd, f: sd_turbo(sd, 2, 0.5),
    "sd_turbo.sd15_s3_d029": lambda sd, f: sd_turbo(sd, 3, 0.29),
    "sd_turbo.sd3_s4": lambda sd, f: sd_turbo(f, 4, 1.0),
    "beta.sd15_s10": lambda sd, f: flow.beta(sd, 10, 0.6, 0.6),
    "beta.sd15_s12_a05_b07": lambda sd, f: flow.beta(sd, 12, 0.5, 0.7),
    "beta.sd15_s20_a15_b12": lambda sd, f: flow.beta(sd, 20, 1.5, 1.2),
    "beta.sd3_s8_a06_b06": lambda sd, f: flow.beta(f, 8, 0.6, 0.6),
    "ays.sd1_s10": lambda sd, f: published(AYS_NOISE_LEVELS["SD1"], 10, 1.0),
    "ays.sd1_s20": lambda sd, f: published(AYS_NOISE_LEVELS["SD1"], 20, 1.0),
    "ays.sdxl_s7_d06": lambda sd, f: published(AYS_NOISE_LEVELS["SDXL"], 7, 0.6),
    "ays.svd_s30": lambda sd, f: published(AYS_NOISE_LEVELS["SVD"], 30, 1.0),
    "ays.sd1_s5_d05": lambda sd, f: published(AYS_NOISE_LEVELS["SD1"], 5, 0.5),
    "optimal.flux_s10": lambda sd, f: published(OPTIMAL_STEPS_NOISE_LEVELS["FLUX"], 10, 1.0),
    "optimal.flux_s28": lambda sd, f: published(OPTIMAL_STEPS_NOISE_LEVELS["FLUX"], 28, 1.0),
    "optimal.wan_s3": lambda sd, f: published(OPTIMAL_STEPS_NOISE_LEVELS["Wan"], 3, 1.0),
    "optimal.chroma_s25_d08": lambda sd, f: published(OPTIMAL_STEPS_NOISE_LEVELS["Chroma"], 25, 0.8),
    "extend.linear_s3": lambda sd, f: extend(EXTEND_INPUT, 3, -1.0, 12.0, "linear"),
    "extend.cosine_s4": lambda sd, f: extend(EXTEND_INPUT, 4, -1.0, 1.0, "cosine"),
    "extend.sine_s2": lambda sd, f: extend(EXTEND_INPUT, 2, 8.0, 0.5, "sine"),
    "extend.sine_s1": lambda sd, f: extend(EXTEND_INPUT, 1, -1.0, 0.0, "sine"),
}


def main():
    sd, f = ModelSamplingDiscrete(), flow.ModelSamplingDiscreteFlow(3.0)
    out = {name: make(sd, f).float().contiguous() for name, make in CASES.items()}
    save_file(out, OUT)


if __name__ == "__main__":
    main()
