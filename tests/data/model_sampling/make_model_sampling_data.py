"""Writes tests/data/model_sampling/lcm.safetensors and zsnr.safetensors:
ComfyUI's ModelSamplingDiscrete "lcm" and zsnr on SD 1.x's betas, restated
with torch as ComfyUI v0.3.64 computes them (comfy/model_sampling.py,
comfy/samplers.py).

lcm.safetensors, ModelSamplingDiscreteDistilled with the LCM model type:

- `sigmas`: the distilled table, 50 of the 1000 sigmas, every 20th counted
  back from the last;
- `timestep.sigma` -> `timestep.t`: model_sampling.timestep of some sigmas
  (the table's, between its entries, past both ends);
- `sigma.t` -> `sigma.sigma`: model_sampling.sigma of some timesteps;
- `normal.N`, `sgm_uniform.N`, `simple.N`, `karras.N`: the schedulers' sigmas;
- `boundary.t` -> `boundary.c_skip`, `boundary.c_out`: LCM.calculate_denoised's
  coefficients (x0 = c_out (x - sigma eps) + c_skip x) at those timesteps.

edm.safetensors, ModelSamplingContinuousEDM at sigma_min 0.002, sigma_max
120: `sigmas` (1000, log-spaced), `timestep.sigma` -> `timestep.t`,
`sigma.t` -> `sigma.sigma`, `percent.p` -> `percent.sigma` and the
`normal.N`, `simple.N`, `karras.N` and `sgm_uniform.N` schedules.

zsnr.safetensors, ModelSamplingDiscrete(zsnr=True): `sigmas`, the 1000
sigmas after rescale_zero_terminal_snr_sigmas (on the float64 sigmas, then
float32), and the `normal.N`, `simple.N` and `karras.N` schedules on them.

Run from the repository root with a python that has torch and safetensors:
python3 tests/data/model_sampling/make_model_sampling_data.py
"""
import math

import torch
from safetensors.torch import save_file


def base_sigmas(zsnr=False):
    # ModelSamplingDiscrete._register_schedule for "linear": betas from the roots, in float64
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    if zsnr:
        sigmas = rescale_zero_terminal_snr_sigmas(sigmas)
    return sigmas.float(), sigmas.log().float()


def rescale_zero_terminal_snr_sigmas(sigmas):
    alphas_cumprod = 1 / ((sigmas * sigmas) + 1)
    alphas_bar_sqrt = alphas_cumprod.sqrt()
    first = alphas_bar_sqrt[0].clone()
    last = alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


class Discrete:
    """ModelSamplingDiscrete: timestep the nearest entry, sigma interpolated in log space."""

    def __init__(self, zsnr):
        self.sigmas, self.log_sigmas = base_sigmas(zsnr)

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=(len(self.sigmas) - 1))
        low_idx = t.floor().long()
        high_idx = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()


class Distilled(Discrete):
    """ModelSamplingDiscreteDistilled: 50 entries of the table, each standing for every 20th timestep."""
    original_timesteps = 50

    def __init__(self):
        full, _ = base_sigmas()
        self.skip_steps = 1000 // self.original_timesteps
        valid = torch.zeros(self.original_timesteps, dtype=torch.float32)
        for x in range(self.original_timesteps):
            valid[self.original_timesteps - 1 - x] = full[1000 - 1 - x * self.skip_steps]
        self.sigmas = valid.float()
        self.log_sigmas = valid.log().float()

    def timestep(self, sigma):
        return super().timestep(sigma) * self.skip_steps + (self.skip_steps - 1)

    def sigma(self, timestep):
        return super().sigma((timestep.float() - (self.skip_steps - 1)) / self.skip_steps)


class ContinuousEDM(Discrete):
    """ModelSamplingContinuousEDM.set_parameters(sigma_min, sigma_max, sigma_data)."""

    def __init__(self, sigma_min, sigma_max):
        sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.sigmas = sigmas
        self.log_sigmas = sigmas.log()

    def timestep(self, sigma):
        return 0.25 * sigma.log()

    def sigma(self, timestep):
        return (timestep / 0.25).exp()

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        percent = 1.0 - percent
        log_sigma_min = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - log_sigma_min) * percent + log_sigma_min)


def normal_scheduler(s, steps, sgm=False):
    start = s.timestep(s.sigma_max)
    end = s.timestep(s.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(s.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sig = [s.sigma(ts) for ts in timesteps]
    if append_zero:
        sig += [0.0]
    return torch.FloatTensor(sig)


def simple_scheduler(s, steps):
    sigs = []
    ss = len(s.sigmas) / steps
    for x in range(steps):
        sigs += [float(s.sigmas[-(1 + int(x * ss))])]
    sigs += [0.0]
    return torch.FloatTensor(sigs)


def karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])]).float()


def boundary(timestep):
    sigma_data = 0.5
    scaled_timestep = timestep * 10.0
    c_skip = sigma_data ** 2 / (scaled_timestep ** 2 + sigma_data ** 2)
    c_out = scaled_timestep / (scaled_timestep ** 2 + sigma_data ** 2) ** 0.5
    return c_skip, c_out


def main():
    s = Distilled()
    out = {"sigmas": s.sigmas.clone()}
    probe = torch.cat([s.sigmas[[0, 1, 7, 25, 49]], torch.tensor([0.01, 0.05, 0.5, 1.0, 3.0, 9.0, 20.0])])
    out["timestep.sigma"] = probe
    out["timestep.t"] = s.timestep(probe).float()
    ts = torch.tensor([0.0, 10.0, 19.0, 27.5, 39.0, 500.0, 519.0, 998.0, 999.0, 1200.0])
    out["sigma.t"] = ts
    out["sigma.sigma"] = s.sigma(ts)
    for steps in (1, 4, 8):
        out[f"normal.{steps}"] = normal_scheduler(s, steps)
        out[f"sgm_uniform.{steps}"] = normal_scheduler(s, steps, sgm=True)
        out[f"simple.{steps}"] = simple_scheduler(s, steps)
        out[f"karras.{steps}"] = karras(steps, float(s.sigma_min), float(s.sigma_max))
    bt = torch.tensor([19, 39, 259, 519, 999])
    c_skip, c_out = boundary(bt)
    out["boundary.t"] = bt.float()
    out["boundary.c_skip"] = c_skip.float()
    out["boundary.c_out"] = c_out.float()
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/model_sampling/lcm.safetensors")
    for k, v in out.items():
        print(k, tuple(v.shape), v[:6].tolist())

    e = ContinuousEDM(0.002, 120.0)
    out = {"sigmas": e.sigmas.clone()}
    probe = torch.tensor([0.002, 0.01, 0.5, 1.0, 7.5, 120.0])
    out["timestep.sigma"] = probe
    out["timestep.t"] = e.timestep(probe)
    ts = torch.tensor([-1.5, -0.2, 0.0, 0.4, 1.1])
    out["sigma.t"] = ts
    out["sigma.sigma"] = e.sigma(ts)
    ps = [0.1, 0.5, 0.9]
    out["percent.p"] = torch.tensor(ps, dtype=torch.float32)
    out["percent.sigma"] = torch.tensor([float(e.percent_to_sigma(p)) for p in ps], dtype=torch.float32)
    for steps in (1, 4, 8):
        out[f"normal.{steps}"] = normal_scheduler(e, steps)
        out[f"simple.{steps}"] = simple_scheduler(e, steps)
        out[f"karras.{steps}"] = karras(steps, float(e.sigma_min), float(e.sigma_max))
        out[f"sgm_uniform.{steps}"] = normal_scheduler(e, steps, sgm=True)
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/model_sampling/edm.safetensors")
    for k, v in out.items():
        print("edm", k, tuple(v.shape), v[:5].tolist())

    z = Discrete(zsnr=True)
    out = {"sigmas": z.sigmas.clone()}
    for steps in (1, 4, 8):
        out[f"normal.{steps}"] = normal_scheduler(z, steps)
        out[f"simple.{steps}"] = simple_scheduler(z, steps)
        out[f"karras.{steps}"] = karras(steps, float(z.sigma_min), float(z.sigma_max))
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/model_sampling/zsnr.safetensors")
    for k, v in out.items():
        print("zsnr", k, tuple(v.shape), v[-4:].tolist())


if __name__ == "__main__":
    main()
