"""Goldens for flow-matching (FLUX.1, SD3) sampling: ComfyUI v0.3.64's
ModelSamplingFlux and ModelSamplingDiscreteFlow (comfy/model_sampling.py), its schedulers
(comfy/samplers.py: simple, sgm_uniform, karras, exponential, ddim_uniform,
beta, normal, linear_quadratic, kl_optimal), CONST.noise_scaling and
sample_euler_ancestral_RF (comfy/k_diffusion/sampling.py), restated here with
torch (float32 CPU, as ComfyUI runs them) for ModelSamplingFlux's shifts 1.15
(FLUX.1-dev, key shift115) and 1.0 (schnell, shift100) and for SD3's
ModelSamplingDiscreteFlow (shift 3, 1000 timesteps, multiplier 1000; key
sd3). beta's scipy.stats.beta.ppf is replaced by an mpmath root of
the regularized incomplete beta (exact to double rounding).

Writes tests/data/flow/flow.safetensors (read by tests/test_schedule.c):
  <S>.table                         [10000] the sigma table ([1000] for sd3)
  <S>.<scheduler>.s<steps>     the scheduler's sigmas, steps 1, 4, 20
                                    (kl_optimal 2, 4, 20)
  <S>.percent_to_sigma         [len(PERCENTS)] at PERCENTS below
  <S>.start_x.<case>           CONST noise scaling of `noise` (and
                                    `latent` or zeros) at sigma0 = 1 and at
                                    the 20-step normal schedule's 6th sigma
  <S>.euler_a_rf.{x,noise}     euler_ancestral_RF, simple 4 steps,
                                    from start_x.max_empty, with the mock
                                    model denoised = 0.75 * x and per-step
                                    noise `noise` [4, N]
  <S>.<sampler>.x              the other samplers ComfyUI runs its own
                                    way on CONST models (dpm_2_ancestral_RF,
                                    dpmpp_2s_ancestral_RF, lcm's CONST
                                    noise scaling, and dpmpp_sde, dpmpp_2m_sde,
                                    dpmpp_3m_sde, dpmpp_2m_sde_heun in the flow half-log-SNR with
                                    the first sigma offset below 1), simple 4
                                    steps from start_x.max_empty, the mock
                                    model denoised = 0.75 * x + 0.1 * sigma
                                    and noise drawn in order from
                                    sampler_noise [8, N]; <sampler>.draws how
                                    many it drew
  noise, latent                     [N] inputs

Run from the repository root: python3 tests/data/flow/make_flow_data.py
"""
import math

import mpmath
import torch
from safetensors.torch import save_file

OUT = "tests/data/flow/flow.safetensors"
SAMPLINGS = {"shift115": lambda: ModelSamplingFlux(1.15), "shift100": lambda: ModelSamplingFlux(1.0),
             "sd3": lambda: ModelSamplingDiscreteFlow(3.0)}
PERCENTS = [-0.5, 0.0, 1e-4, 0.1, 0.25, 0.5, 0.9, 1.0]  # same list in tests/test_schedule.c
N = 64


def flux_time_shift(mu, sigma, t):
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


class ModelSamplingFlux:
    def __init__(self, shift=1.15, timesteps=10000):
        self.shift = shift
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, 1) / timesteps)

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        return sigma

    def sigma(self, timestep):
        return flux_time_shift(self.shift, 1.0, timestep)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return flux_time_shift(self.shift, 1.0, 1.0 - percent)


def time_snr_shift(alpha, t):
    if alpha == 1.0:
        return t
    return alpha * t / (1 + (alpha - 1) * t)


class ModelSamplingDiscreteFlow(ModelSamplingFlux):
    """SD3's: the timestep is sigma times the multiplier, and the shift
    bends t by time_snr_shift rather than flux_time_shift."""

    def __init__(self, shift=3.0, timesteps=1000, multiplier=1000):
        self.shift = shift
        self.multiplier = multiplier
        self.sigmas = self.sigma((torch.arange(1, timesteps + 1, 1) / timesteps) * multiplier)

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        return time_snr_shift(self.shift, timestep / self.multiplier)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return time_snr_shift(self.shift, 1.0 - percent)


def noise_scaling(sigma, noise, latent_image):  # CONST
    return sigma * noise + (1.0 - sigma) * latent_image


def append_zero(x):
    return torch.cat([x, x.new_zeros([1])])


def karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n, sigma_min, sigma_max):
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def simple(s, steps):
    sigs = []
    ss = len(s.sigmas) / steps
    for x in range(steps):
        sigs += [float(s.sigmas[-(1 + int(x * ss))])]
    sigs += [0.0]
    return torch.FloatTensor(sigs)


def ddim_uniform(s, steps):
    x = 1
    if math.isclose(float(s.sigmas[x]), 0, abs_tol=0.00001):
        steps += 1
        sigs = []
    else:
        sigs = [0.0]
    ss = max(len(s.sigmas) // steps, 1)
    while x < len(s.sigmas):
        sigs += [float(s.sigmas[x])]
        x += ss
    return torch.FloatTensor(sigs[::-1])


def normal(s, steps, sgm=False):
    start = s.timestep(s.sigma_max)
    end = s.timestep(s.sigma_min)
    append = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(s.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(s.sigma(timesteps[x])) for x in range(len(timesteps))]
    if append:
        sigs += [0.0]
    return torch.FloatTensor(sigs)


def beta_ppf(p, a, b):
    mpmath.mp.dps = 50
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    return float(mpmath.findroot(lambda x: mpmath.betainc(a, b, 0, x, regularized=True) - p, (0, 1),
                                 solver="bisect", tol=1e-40))


def beta(s, steps, alpha=0.6, b=0.6):
    total_timesteps = len(s.sigmas) - 1
    ts = [1 - i / steps for i in range(steps)]  # 1 - numpy.linspace(0, 1, steps, endpoint=False)
    ts = [float(round(beta_ppf(t, alpha, b) * total_timesteps)) for t in ts]  # numpy.rint: half to even, as round
    sigs = []
    last_t = -1
    for t in ts:
        if t != last_t:
            sigs += [float(s.sigmas[int(t)])]
        last_t = t
    sigs += [0.0]
    return torch.FloatTensor(sigs)


def linear_quadratic(s, steps, threshold_noise=0.025):
    if steps == 1:
        sched = [1.0, 0.0]
    else:
        linear_steps = steps // 2
        lin = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        qc = diff / (linear_steps * quadratic_steps ** 2)
        lc = threshold_noise / linear_steps - 2 * diff / (quadratic_steps ** 2)
        const = qc * (linear_steps ** 2)
        quad = [qc * (i ** 2) + lc * i + const for i in range(linear_steps, steps)]
        sched = [1.0 - x for x in lin + quad + [1.0]]
    return torch.FloatTensor(sched) * s.sigma_max.cpu()


def kl_optimal(n, sigma_min, sigma_max):
    adj = torch.arange(n, dtype=torch.float).div_(n - 1)
    sigmas = adj.new_zeros(n + 1)
    sigmas[:-1] = (adj * math.atan(sigma_min) + (1 - adj) * math.atan(sigma_max)).tan_()
    return sigmas


def schedule(name, s, steps):
    lo, hi = float(s.sigma_min), float(s.sigma_max)
    return {
        "simple": lambda: simple(s, steps),
        "sgm_uniform": lambda: normal(s, steps, sgm=True),
        "karras": lambda: karras(steps, lo, hi),
        "exponential": lambda: exponential(steps, lo, hi),
        "ddim_uniform": lambda: ddim_uniform(s, steps),
        "beta": lambda: beta(s, steps),
        "normal": lambda: normal(s, steps),
        "linear_quadratic": lambda: linear_quadratic(s, steps),
        "kl_optimal": lambda: kl_optimal(steps, lo, hi),
    }[name]()


def euler_ancestral_rf(model, x, sigmas, noises, eta=1.0, s_noise=1.0):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            downstep_ratio = 1 + (sigmas[i + 1] / sigmas[i] - 1) * eta
            sigma_down = sigmas[i + 1] * downstep_ratio
            alpha_ip1 = 1 - sigmas[i + 1]
            alpha_down = 1 - sigma_down
            renoise_coeff = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
            sigma_down_i_ratio = sigma_down / sigmas[i]
            x = sigma_down_i_ratio * x + (1 - sigma_down_i_ratio) * denoised
            if eta > 0:
                x = (alpha_ip1 / alpha_down) * x + noises[i] * s_noise * renoise_coeff
    return x


def lerp_log_midpoint(a, b):
    return a.log().lerp(b.log(), 0.5).exp()


def rf_step(sigma, sigma_next, eta):
    downstep_ratio = 1 + (sigma_next / sigma - 1) * eta
    sigma_down = sigma_next * downstep_ratio
    alpha_ip1, alpha_down = 1 - sigma_next, 1 - sigma_down
    renoise = (sigma_next ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
    return sigma_down, alpha_ip1 / alpha_down, renoise


def dpm_2_ancestral_rf(model, x, sigmas, noise, eta=1.0):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, rescale, renoise = rf_step(sigmas[i], sigmas[i + 1], eta)
        d = (x - denoised) / sigmas[i]
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = lerp_log_midpoint(sigmas[i], sigma_down)
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = (x_2 - model(x_2, sigma_mid)) / sigma_mid
            x = x + d_2 * (sigma_down - sigmas[i])
            x = rescale * x + noise() * renoise
    return x


def dpmpp_2s_ancestral_rf(model, x, sigmas, noise, eta=1.0):
    lambda_fn = lambda sigma: ((1 - sigma) / sigma).log()  # noqa: E731
    sigma_fn = lambda lbda: (lbda.exp() + 1) ** -1  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, rescale, renoise = rf_step(sigmas[i], sigmas[i + 1], eta)
        if sigmas[i + 1] == 0:
            x = x + (x - denoised) / sigmas[i] * (sigma_down - sigmas[i])
        else:
            if sigmas[i] == 1.0:
                sigma_s = torch.tensor(0.9999)
            else:
                t_i, t_down = lambda_fn(sigmas[i]), lambda_fn(sigma_down)
                sigma_s = sigma_fn(t_i + 0.5 * (t_down - t_i))
            ratio = sigma_s / sigmas[i]
            u = ratio * x + (1 - ratio) * denoised
            d_i = model(u, sigma_s)
            ratio = sigma_down / sigmas[i]
            x = ratio * x + (1 - ratio) * d_i
        if sigmas[i + 1] > 0 and eta > 0:
            x = rescale * x + noise() * renoise
    return x


def lcm_const(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i])
        if sigmas[i + 1] > 0:
            x = noise_scaling(sigmas[i + 1], noise(), x)
    return x


def half_log_snr(sigma):  # CONST: log((1 - sigma) / sigma)
    return sigma.logit().neg()


def ancestral_step(sigma_from, sigma_to, eta=1.0):
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def dpmpp_sde_const(model, x, sigmas, noise, eta=1.0, r=0.5):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        fac = 1 / (2 * r)
        sigma_s_1 = lambda_s_1.neg().sigmoid()
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        x_2 = x_2 + alpha_s_1 * noise() * su
        denoised_2 = model(x_2, sigma_s_1)
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        x = x + alpha_t * noise() * su
    return x


def dpmpp_multistep_sde_const(model, x, sigmas, noise, order, eta=1.0, solver="midpoint"):
    denoised_1 = denoised_2 = h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if order == 3 and h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif order == 3 and h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                x = x + (alpha_t * (h_eta.neg().expm1() / h_eta + 1)) * d
            elif order == 2 and denoised_1 is not None and solver == "heun":
                x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / (h_1 / h)) * (denoised - denoised_1)
            elif order == 2 and denoised_1 is not None:  # midpoint
                x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / (h_1 / h)) * (denoised - denoised_1)
            x = x + noise() * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt()
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def main():
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(N, generator=gen)
    latent = torch.randn(N, generator=gen)
    out = {"noise": noise, "latent": latent}
    for key, make in SAMPLINGS.items():
        s = make()
        out[f"{key}.table"] = s.sigmas.clone()
        for name in ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                     "linear_quadratic", "kl_optimal"]:
            for steps in ([2, 4, 20] if name == "kl_optimal" else [1, 4, 20]):
                out[f"{key}.{name}.s{steps}"] = schedule(name, s, steps).float()
        out[f"{key}.percent_to_sigma"] = torch.tensor([s.percent_to_sigma(p) for p in PERCENTS],
                                                           dtype=torch.float32)
        mid = schedule("normal", s, 20)[5]
        for case, sigma0, lat in [("max_empty", s.sigma_max, torch.zeros(N)), ("max_latent", s.sigma_max, latent),
                                  ("mid_latent", mid, latent)]:
            out[f"{key}.start_x.{case}"] = noise_scaling(sigma0, noise, lat)
        steps = 4
        sigmas = simple(s, steps)
        noises = torch.randn(steps, N, generator=gen)
        x0 = noise_scaling(s.sigma_max, noise, torch.zeros(N))
        out[f"{key}.euler_a_rf.noise"] = noises
        out[f"{key}.euler_a_rf.x"] = euler_ancestral_rf(lambda x, sigma: x * 0.75, x0, sigmas, noises)

        pool = torch.randn(8, N, generator=torch.Generator().manual_seed(11))
        out["sampler_noise"] = pool
        offset = sigmas.clone()
        if offset[0] >= 1:  # offset_first_sigma_for_snr
            offset[0] = s.percent_to_sigma(1e-4)
        runs = {"dpm_2_ancestral": lambda m, nz: dpm_2_ancestral_rf(m, x0, sigmas, nz),
                "dpmpp_2s_ancestral": lambda m, nz: dpmpp_2s_ancestral_rf(m, x0, sigmas, nz),
                "lcm": lambda m, nz: lcm_const(m, x0, sigmas, nz),
                "dpmpp_sde": lambda m, nz: dpmpp_sde_const(m, x0, offset, nz),
                "dpmpp_2m_sde": lambda m, nz: dpmpp_multistep_sde_const(m, x0, offset, nz, 2),
                "dpmpp_3m_sde": lambda m, nz: dpmpp_multistep_sde_const(m, x0, offset, nz, 3),
                "dpmpp_2m_sde_heun": lambda m, nz: dpmpp_multistep_sde_const(m, x0, offset, nz, 2, solver="heun")}
        for name, run in runs.items():
            drawn = []

            def draw():
                drawn.append(1)
                return pool[len(drawn) - 1]
            out[f"{key}.{name}.x"] = run(lambda x, sigma: x * 0.75 + 0.1 * sigma, draw)
            out[f"{key}.{name}.draws"] = torch.tensor([len(drawn)], dtype=torch.int32)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT)


if __name__ == "__main__":
    main()
