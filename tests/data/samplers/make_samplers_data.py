"""Goldens for the samplers kiln added after the ComfyUI v0.3.64 sampler runs
of ../shared/goldens (those are in tests/data/comfyui): res_multistep and its
ancestral and CFG++ kinds, gradient_estimation(_cfg_pp), er_sde, seeds_2,
seeds_3, ddpm, heunpp2, ipndm_v, sa_solver(_pece), euler_cfg_pp (and
SamplerEulerCFGpp's alternative version, ComfyUI's sample_euler_pp),
euler_ancestral_cfg_pp, dpmpp_2m_cfg_pp and dpmpp_2s_ancestral_cfg_pp, and
uni_pc_bh2 with uni_pc (bh1) beside it to check the restated UniPC against
kiln's uni_pc, which ComfyUI's recorded runs check, and KSampler's dpm_fast
and dpm_adaptive (k-diffusion's DPM-Solver at eta 0).

Their math is ComfyUI's comfy/k_diffusion/sampling.py and sa_solver.py
(read at ComfyUI 0.8.1), restated here with torch in float32 as ComfyUI runs
them: sigmas a float32 tensor, every per-step scalar a 0-dim float32 tensor.
Noise comes in order from a pool (the samplers' noise_sampler), so the
sampler math is checked apart from the generator that feeds it.

The model is a mock: the guided x0 prediction denoised = 0.75 x + 0.1 sigma
tanh(x), and for the CFG++ samplers the unconditional one uncond = 0.7 x -
0.05 sigma (ComfyUI's post-CFG "uncond_denoised").

Writes tests/data/samplers/samplers.safetensors (read by tests/test_sampler.c):
  noise                     [8, N] the noise pool, drawn in order
  x                         [N] the start latent before scaling by the first sigma
  <case>.sigmas             the schedule; <case>.first_sigma [1] the first sigma
                            ComfyUI puts in place of a flow schedule's 1
                            (percent_to_sigma(1e-4)), 0 for a discrete model;
                            <case>.sa_sigmas [2] sa_solver's stochastic interval,
                            percent_to_sigma(0.2) and (0.8)
  <case>.<sampler>.x        the final latent from x * sigmas[0]
  <case>.<sampler>.calls    [1] I32 model calls; .draws [1] I32 noise draws
  <case>.<sampler>.<variant>.{x,calls,draws}  the same with a custom sampler
                            node's settings (SamplerER_SDE, SamplerSEEDS2,
                            SamplerSASolver, SamplerEulerCFGpp's alternative
                            version; see main()); <case>.sa_custom_sigmas
                            [2] percent_to_sigma(0.1) and (0.9)
Cases: sd15 (SD 1.x's discrete table, karras 8 steps), sd15_cut (its first
5 steps, ending above 0, as KSamplerAdvanced's first half), sd3 (SD3's flow,
shift 3, simple 8 steps).

Run from the repository root: python3 tests/data/samplers/make_samplers_data.py
"""
import math
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "flow"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sigmas"))
import make_flow_data as flow  # noqa: E402  ModelSamplingDiscreteFlow, karras, simple
import make_sigmas_data as sig  # noqa: E402  ModelSamplingDiscrete

OUT = "tests/data/samplers/samplers.safetensors"
N = 64


class Model:
    """The mock denoiser; counts its calls and keeps the last uncond."""

    def __init__(self):
        self.calls = 0
        self.uncond = None

    def __call__(self, x, sigma):
        self.calls += 1
        self.uncond = x * 0.7 - 0.05 * sigma
        return x * 0.75 + 0.1 * sigma * torch.tanh(x)


class Pool:
    def __init__(self, noise):
        self.noise, self.draws = noise, 0

    def __call__(self, sigma, sigma_next):
        self.draws += 1
        return self.noise[self.draws - 1]


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def ancestral_step(sigma_from, sigma_to, eta=1.0):
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def half_log_snr(sigma, const):
    return sigma.logit().neg() if const else sigma.log().neg()


def half_log_snr_to_sigma(lam, const):
    return lam.neg().sigmoid() if const else lam.neg().exp()


def res_multistep(model, x, sigmas, noise, eta, cfg_pp, s_noise=1.0):
    sigma_fn = lambda t: t.neg().exp()  # noqa: E731
    t_fn = lambda sigma: sigma.log().neg()  # noqa: E731
    phi1_fn = lambda t: torch.expm1(t) / t  # noqa: E731
    phi2_fn = lambda t: (phi1_fn(t) - 1.0) / t  # noqa: E731
    old_sigma_down = old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        uncond = model.uncond
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old, t_next, t_prev = t_fn(sigmas[i]), t_fn(old_sigma_down), t_fn(sigma_down), t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1_val, phi2_val = phi1_fn(-h), phi2_fn(-h)
            b1 = torch.nan_to_num(phi1_val - phi2_val / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2_val / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
                x = sigma_fn(h) * x + h * (b1 * uncond + b2 * old_denoised)
            else:
                x = sigma_fn(h) * x + h * (b1 * denoised + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised = uncond if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


def gradient_estimation(model, x, sigmas, cfg_pp, ge_gamma=2.0):
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        d = to_d(x, sigmas[i], model.uncond if cfg_pp else denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def er_sde(model, x, sigmas, noise, const, s_noise=1.0, max_stage=3, power=None):
    """power: SamplerER_SDE's reverse-time SDE noise scaler lambda ** power
    (eta + 1; ODE: 1 with s_noise 0); None: the ER-SDE one."""
    def scaler(v):
        return v * ((v ** 0.3).exp() + 10.0) if power is None else v ** power
    points = 200.0
    point_indice = torch.arange(0, points, dtype=torch.float32)
    er_lambdas = half_log_snr(sigmas, const).neg().exp()
    old_denoised = old_denoised_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            ls, lt = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / ls, sigmas[i + 1] / lt
            r_alpha = alpha_t / alpha_s
            r = scaler(lt) / scaler(ls)
            x = r_alpha * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lt - ls
                step = -dt / points
                pos = lt + point_indice * step
                scaled = scaler(pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (ls - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * scaler(lt)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((pos - ls) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((ls - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * scaler(lt)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * \
                    (lt ** 2 - ls ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0)
        old_denoised = denoised
    return x


def seeds(model, x, sigmas, noise, const, rs, eta=1.0, s_noise=1.0, phi_2=False):
    """seeds_2 (rs = [r], ComfyUI's phi_1 or phi_2 solver) and seeds_3 (rs = [1/3, 2/3])."""
    lam_fn = lambda s: half_log_snr(s, const)  # noqa: E731
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = lam_fn(sigmas[i]), lam_fn(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        r1 = rs[0]
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r1)
        sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, const)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r1 * h * eta).exp() * x - alpha_s_1 * torch.expm1(-r1 * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r1 * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1)
            x_2 = x_2 + sde_noise * sigma_s_1 * s_noise
        denoised_2 = model(x_2, sigma_s_1)
        if len(rs) == 1 and phi_2:
            b2 = ((torch.expm1(-h_eta) - (-h_eta)) / (-h_eta)) / r1
            b1 = torch.expm1(-h_eta) - b2
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised_2)
            last_r, last_sigma = r1, sigma_s_1
        elif len(rs) == 1:
            denoised_d = torch.lerp(denoised, denoised_2, 1 / (2 * r1))
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * torch.expm1(-h_eta) * denoised_d
            last_r, last_sigma = r1, sigma_s_1
        else:
            r2 = rs[1]
            lambda_s_2 = torch.lerp(lambda_s, lambda_t, r2)
            sigma_s_2 = half_log_snr_to_sigma(lambda_s_2, const)
            alpha_s_2 = sigma_s_2 * lambda_s_2.exp()
            a3_2 = r2 / r1 * ((torch.expm1(-r2 * h_eta) - (-r2 * h_eta)) / (-r2 * h_eta))
            a3_1 = torch.expm1(-r2 * h_eta) - a3_2
            x_3 = sigma_s_2 / sigmas[i] * (-r2 * h * eta).exp() * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2)
            if inject:
                segment = (r1 - r2) * h * eta
                sde_noise = sde_noise * segment.exp()
                sde_noise = sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_1, sigma_s_2)
                x_3 = x_3 + sde_noise * sigma_s_2 * s_noise
            denoised_3 = model(x_3, sigma_s_2)
            b3 = ((torch.expm1(-h_eta) - (-h_eta)) / (-h_eta)) / r2
            b1 = torch.expm1(-h_eta) - b3
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
            last_r, last_sigma = r2, sigma_s_2
        if inject:
            segment = (last_r - 1) * h * eta
            sde_noise = sde_noise * segment.exp()
            sde_noise = sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(last_sigma, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def ddpm(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        eps = (x - denoised) / sigma
        xs = x / torch.sqrt(1.0 + sigma ** 2.0)
        alpha_cumprod = 1 / ((sigma * sigma) + 1)
        alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
        alpha = alpha_cumprod / alpha_cumprod_prev
        mu = (1.0 / alpha).sqrt() * (xs - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
        if sigma_prev > 0:
            mu += ((1 - alpha) * (1. - alpha_cumprod_prev) / (1. - alpha_cumprod)).sqrt() * noise(sigma, sigma_prev)
        x = mu
        if sigmas[i + 1] != 0:
            x *= torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


def heunpp2(model, x, sigmas):
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2]))
            w = 3 * sigmas[0]
            w2, w3 = sigmas[i + 1] / w, sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


def ipndm_v(model, x, sigmas, max_order=4):
    t = sigmas
    buf = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, t_cur)
        d_cur = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (t_next - t_cur) * d_cur
        else:
            h_n, h_n_1 = t_next - t_cur, t_cur - t[i - 1]
            if order == 2:
                c1 = (2 + (h_n / h_n_1)) / 2
                c2 = -(h_n / h_n_1) / 2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1])
            elif order == 3:
                h_n_2 = t[i - 1] - t[i - 2]
                temp = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                c1 = (2 + (h_n / h_n_1)) / 2 + temp
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp
                c3 = temp * h_n_1 / h_n_2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1] + c3 * buf[-2])
            else:
                h_n_2, h_n_3 = t[i - 1] - t[i - 2], t[i - 2] - t[i - 3]
                temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                temp2 = ((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n
                         / (6 * (h_n + h_n_1 + h_n_2))) \
                    * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3))
                q = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
                c1 = (2 + (h_n / h_n_1)) / 2 + temp1 + temp2
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + q) * temp2
                c3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + q * (1 + h_n_2 / h_n_3)) * temp2
                c4 = -temp2 * q * h_n_1 / h_n_2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1] + c3 * buf[-2] + c4 * buf[-3])
        if len(buf) == max_order - 1:
            buf = buf[1:] + [d_cur]
        else:
            buf.append(d_cur)
        x = x_next
    return x


def euler_ancestral_cfg_pp(model, x, sigmas, noise, const, eta=1.0, s_noise=1.0):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * half_log_snr(sigmas[i], const).exp()
        alpha_t = sigmas[i + 1] * half_log_snr(sigmas[i + 1], const).exp()
        d = to_d(x, sigmas[i], alpha_s * model.uncond)
        sigma_down, sigma_up = ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta)
        sigma_down = alpha_t * sigma_down
        x = alpha_t * denoised + sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def euler_pp(model, x, sigmas):
    """SamplerEulerCFGpp's "alternative" version (sample_euler_pp): the
    guided prediction's Euler step from x - denoised + uncond."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        d = to_d(x - denoised + model.uncond, sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def dpmpp_2m_cfg_pp(model, x, sigmas):
    t_fn = lambda sigma: sigma.log().neg()  # noqa: E731
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        uncond = model.uncond
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


def dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, noise, eta=1.0, s_noise=1.0):
    sigma_fn = lambda t: t.neg().exp()  # noqa: E731
    t_fn = lambda sigma: sigma.log().neg()  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        uncond = model.uncond
        guidance = denoised - uncond
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], uncond) * (sigma_down - sigmas[i])
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (sigma_fn(s) / sigma_fn(t)) * x - (-h * 0.5).expm1() * uncond
            model(x_2, sigma_fn(s))
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * model.uncond
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        x += guidance
    return x


def dpmpp_2s_ancestral_rf_cfg_pp(model, x, sigmas, noise, eta=1.0, s_noise=1.0):
    sigma_fn = lambda lbda: (lbda.exp() + 1) ** -1  # noqa: E731
    lambda_fn = lambda sigma: ((1 - sigma) / sigma).log()  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        uncond = model.uncond
        guidance = denoised - uncond
        sigma_down, rescale, renoise = flow.rf_step(sigmas[i], sigmas[i + 1], eta)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], uncond) * (sigma_down - sigmas[i])
        else:
            if sigmas[i] == 1.0:
                sigma_s = torch.tensor(0.9999)
            else:
                t_i, t_down = lambda_fn(sigmas[i]), lambda_fn(sigma_down)
                sigma_s = sigma_fn(t_i + 0.5 * (t_down - t_i))
            ratio = sigma_s / sigmas[i]
            model(ratio * x + (1 - ratio) * uncond, sigma_s)
            ratio = sigma_down / sigmas[i]
            x = ratio * x + (1 - ratio) * model.uncond
        if sigmas[i + 1] > 0 and eta > 0:
            x = rescale * x + noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
        x += (1 - sigmas[i + 1]) * guidance
    return x


def sa_exponential_coeffs(s, t, order, tau):
    tau_mul = 1 + tau ** 2
    h = t - s
    p = torch.arange(order, dtype=s.dtype)
    product = t ** p - s ** p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_factorial = (p + 1).lgamma()
    coeff = log_factorial.unsqueeze(1) - log_factorial.unsqueeze(0)
    if tau > 0:
        coeff = coeff - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (coeff.exp() * signs).tril() @ product


def sa_b_coeffs(sigma_next, lambdas, lambda_s, lambda_t, tau, simple_order_2=False, corrector=False):
    k = lambdas.shape[0]
    if simple_order_2 and k == 2:
        tau_mul = 1 + tau ** 2
        h = lambda_t - lambda_s
        alpha_t = sigma_next * lambda_t.exp()
        if corrector:
            b_1 = alpha_t * (0.5 * tau_mul * h)
            b_2 = alpha_t * (-h * tau_mul).expm1().neg() - b_1
        else:
            b_2 = alpha_t * (0.5 * tau_mul * h ** 2) / (lambdas[-2] - lambda_s)
            b_1 = alpha_t * (-h * tau_mul).expm1().neg() - b_2
        return torch.stack([b_2, b_1])
    integrals = torch.linalg.solve(torch.vander(lambdas, k, increasing=True).T,
                                   sa_exponential_coeffs(lambda_s, lambda_t, k, tau))
    return sigma_next * lambda_t.exp() * integrals


def sa_solver(model, x, sigmas, noise, const, tau_sigmas, pece, s_noise=1.0, predictor_order=3,
              corrector_order=4, eta=1.0, simple_order_2=False):
    lambdas = half_log_snr(sigmas, const)
    start, end = tau_sigmas

    def tau_func(sigma):
        if eta <= 0:
            return 0.0
        return eta if start >= sigma.item() >= end else 0.0
    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h = tau_t = 0.0
    sde = 0.0
    preds = []
    lower_to_end = sigmas[-1].item() == 0
    for i in range(len(sigmas) - 1):
        denoised = model(x_pred, sigmas[i])
        preds = (preds + [denoised])[-max_order:]
        p_order = min(predictor_order, len(preds))
        c_order = 0 if i == 0 or (sigmas[i + 1] == 0 and not pece) else min(corrector_order, len(preds))
        if lower_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = sa_b_coeffs(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau_t,
                            simple_order_2, True)
            res = torch.tensordot(torch.stack(preds[-c_order:], dim=0), b, dims=([0], [0]))
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t ** 2) * h).exp() * x + res
            if tau_t > 0 and s_noise > 0:
                x = x + sde
            if pece:
                preds[-1] = denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x_pred = denoised
        else:
            tau_t = tau_func(sigmas[i + 1])
            b = sa_b_coeffs(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau_t,
                            simple_order_2, False)
            res = torch.tensordot(torch.stack(preds[-p_order:], dim=0), b, dims=([0], [0]))
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t ** 2) * h).exp() * x + res
            if tau_t > 0 and s_noise > 0:
                sde = noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * tau_t ** 2 * h).expm1().neg().sqrt() \
                    * s_noise
                x_pred = x_pred + sde
    return x_pred


class SigmaConvert:
    """ComfyUI's uni_pc noise schedule over k-diffusion sigmas (VP: alpha =
    1 / sqrt(sigma^2 + 1)), in float32."""

    def log_alpha(self, s):
        return 0.5 * torch.log(1 / ((s * s) + 1))

    def alpha(self, s):
        return torch.exp(self.log_alpha(s))

    def std(self, s):
        return torch.sqrt(1. - torch.exp(2. * self.log_alpha(s)))

    def lam(self, s):
        log_alpha = self.log_alpha(s)
        return log_alpha - 0.5 * torch.log(1. - torch.exp(2. * log_alpha))


def uni_pc(model, x, sigmas, variant):
    """comfy/extra_samplers/uni_pc.py's sample_unipc: UniPC multistep, data
    prediction, on the VP form of x, through predict_eps_sigma."""
    ns = SigmaConvert()
    timesteps = sigmas.clone()
    if sigmas[-1] == 0:
        timesteps[-1] = 0.001

    def model_x0(x_vp, s):
        x_in = x_vp * ((s ** 2 + 1.0) ** 0.5)
        eps = (x_in - model(x_in, s)) / s
        return (x_vp - ns.std(s) * eps) / ns.alpha(s)

    def update(x, model_prev, t_prev, t, order, use_corrector):
        lambda_prev_0, lambda_t = ns.lam(t_prev[-1]), ns.lam(t)
        model_prev_0 = model_prev[-1]
        sigma_prev_0, sigma_t = ns.std(t_prev[-1]), ns.std(t)
        alpha_t = torch.exp(ns.log_alpha(t))
        h = lambda_t - lambda_prev_0
        rks, d1s = [], []
        for i in range(1, order):
            rk = (ns.lam(t_prev[-(i + 1)]) - lambda_prev_0) / h
            rks.append(rk)
            d1s.append((model_prev[-(i + 1)] - model_prev_0) / rk)
        rks.append(torch.tensor(1.))
        rks = torch.stack(rks)
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if variant == "bh1" else torch.expm1(hh)
        R, b, factorial_i = [], [], 1
        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= (i + 1)
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        R, b = torch.stack(R), torch.stack(b)
        if d1s:
            d1s = torch.stack(d1s, dim=0)
            rhos_p = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
        if use_corrector:
            rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(R, b)
        x_t_ = sigma_t / sigma_prev_0 * x - alpha_t * h_phi_1 * model_prev_0
        pred_res = torch.einsum("k,kn->n", rhos_p, d1s) if len(d1s) else 0
        x_t = x_t_ - alpha_t * b_h * pred_res
        model_t = None
        if use_corrector:
            model_t = model_x0(x_t, t)
            corr_res = torch.einsum("k,kn->n", rhos_c[:-1], d1s) if len(d1s) else 0
            x_t = x_t_ - alpha_t * b_h * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    steps = len(timesteps) - 1
    order = min(3, len(timesteps) - 2)
    for step_index in range(steps):
        if step_index == 0:
            model_prev, t_prev = [model_x0(x, timesteps[0])], [timesteps[0]]
        elif step_index < order:
            x, model_x = update(x, model_prev, t_prev, timesteps[step_index], step_index, True)
            model_prev.append(model_x if model_x is not None else model_x0(x, timesteps[step_index]))
            t_prev.append(timesteps[step_index])
        else:
            for step in range(step_index, step_index + 1 + (step_index == steps - 1)):
                x, model_x = update(x, model_prev, t_prev, timesteps[step], min(order, steps + 1 - step), step != steps)
                for i in range(order - 1):
                    t_prev[i], model_prev[i] = t_prev[i + 1], model_prev[i + 1]
                t_prev[-1] = timesteps[step]
                if step < steps:
                    model_prev[-1] = model_x if model_x is not None else model_x0(x, timesteps[step])
    return x / ns.alpha(timesteps[-1])


class DPMSolver:
    """k-diffusion's DPM-Solver (ComfyUI's comfy/k_diffusion/sampling.py) at
    eta 0, as KSampler's dpm_fast and dpm_adaptive run it: in t = -log
    sigma, float32 tensors."""

    def __init__(self, model):
        self.model = model

    def t(self, sigma):
        return -sigma.log()

    def sigma(self, t):
        return t.neg().exp()

    def eps(self, cache, key, x, t):
        if key in cache:
            return cache[key], cache
        eps = (x - self.model(x, self.sigma(t))) / self.sigma(t)
        return eps, {key: eps, **cache}

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps, cache

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, cache

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        u2 = x - self.sigma(s2) * (r2 * h).expm1() * eps - self.sigma(s2) * (r2 / r1) * \
            ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        eps_r2, cache = self.eps(cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, cache

    def fast(self, x, t_start, t_end, nfe):
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i, order in enumerate(orders):
            t, t_next = ts[i], ts[i + 1]
            eps, cache = self.eps({}, "eps", x, t)
            x, cache = [self.step_1, self.step_2, self.step_3][order - 1](x, t, t_next, cache)
        return x

    def adaptive(self, x, t_start, t_end, order=3, rtol=0.05, atol=0.0078, h_init=0.05, accept_safety=0.81):
        atol, rtol = torch.tensor(atol), torch.tensor(rtol)
        s, x_prev = t_start, x
        h, errs = h_init, []  # PIDStepSizeController(h_init, 0, 1, 0, order, accept_safety)
        while s < t_end - 1e-5:
            t = torch.minimum(t_end, s + h)
            eps, cache = self.eps({}, "eps", x, s)
            x_low, cache = self.step_2(x, s, t, cache, r1=1 / 3)
            x_high, cache = self.step_3(x, s, t, cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            inv_error = 1 / (float(error) + 1e-8)
            if not errs:
                errs = [inv_error] * 3
            errs[0] = inv_error
            factor = errs[0] ** (1 / order) * errs[1] ** 0.0 * errs[2] ** 0.0
            factor = 1 + math.atan(factor - 1)
            if factor >= accept_safety:
                errs[2], errs[1] = errs[1], errs[0]
                x_prev, x, s = x_low, x_high, t
            h *= factor
        return x


def dpm_solver(model, x, sigmas, adaptive):
    """KSampler's dpm_fast and dpm_adaptive: from sigmas[0] to the last
    sigma above 0, dpm_fast in len(sigmas) - 1 model calls."""
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    solver = DPMSolver(model)
    t_start, t_end = solver.t(sigmas[0].clone()), solver.t(sigma_min.clone())
    if adaptive:
        return solver.adaptive(x, t_start, t_end)
    return solver.fast(x, t_start, t_end, len(sigmas) - 1)


SAMPLERS = {
    "dpm_fast": lambda m, x, s, nz, c: dpm_solver(m, x, s, False),
    "dpm_adaptive": lambda m, x, s, nz, c: dpm_solver(m, x, s, True),
    "uni_pc": lambda m, x, s, nz, c: uni_pc(m, x, s, "bh1"),
    "uni_pc_bh2": lambda m, x, s, nz, c: uni_pc(m, x, s, "bh2"),
    "res_multistep": lambda m, x, s, nz, c: res_multistep(m, x, s, nz, 0.0, False),
    "res_multistep_ancestral": lambda m, x, s, nz, c: res_multistep(m, x, s, nz, 1.0, False),
    "res_multistep_cfg_pp": lambda m, x, s, nz, c: res_multistep(m, x, s, nz, 0.0, True),
    "res_multistep_ancestral_cfg_pp": lambda m, x, s, nz, c: res_multistep(m, x, s, nz, 1.0, True),
    "gradient_estimation": lambda m, x, s, nz, c: gradient_estimation(m, x, s, False),
    "gradient_estimation_cfg_pp": lambda m, x, s, nz, c: gradient_estimation(m, x, s, True),
    "er_sde": lambda m, x, s, nz, c: er_sde(m, x, s, nz, c),
    "seeds_2": lambda m, x, s, nz, c: seeds(m, x, s, nz, c, [0.5]),
    "seeds_3": lambda m, x, s, nz, c: seeds(m, x, s, nz, c, [1.0 / 3, 2.0 / 3]),
    "ddpm": lambda m, x, s, nz, c: ddpm(m, x, s, nz),
    "heunpp2": lambda m, x, s, nz, c: heunpp2(m, x, s),
    "ipndm_v": lambda m, x, s, nz, c: ipndm_v(m, x, s),
    "euler_cfg_pp": lambda m, x, s, nz, c: euler_ancestral_cfg_pp(m, x, s, nz, c, eta=0.0, s_noise=0.0),
    "euler_ancestral_cfg_pp": lambda m, x, s, nz, c: euler_ancestral_cfg_pp(m, x, s, nz, c),
    "dpmpp_2m_cfg_pp": lambda m, x, s, nz, c: dpmpp_2m_cfg_pp(m, x, s),
    "dpmpp_2s_ancestral_cfg_pp": lambda m, x, s, nz, c: (dpmpp_2s_ancestral_rf_cfg_pp(m, x, s, nz) if c
                                                         else dpmpp_2s_ancestral_cfg_pp(m, x, s, nz)),
}
OFFSET_SNR = {"er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece"}  # offset_first_sigma_for_snr


def main():
    gen = torch.Generator().manual_seed(23)
    pool = torch.randn(40, N, generator=gen)
    x_start = torch.randn(N, generator=gen)
    out = {"noise": pool, "x": x_start}
    sd15, sd3 = sig.ModelSamplingDiscrete(), flow.ModelSamplingDiscreteFlow(3.0)

    def sd15_percent(p):
        return sd15.sigma(torch.tensor((1.0 - p) * 999.0)).item()
    karras = flow.karras(8, 0.0291675, 14.614642)
    cases = {"sd15": (karras, False, 0.0, (sd15_percent(0.2), sd15_percent(0.8))),
             "sd15_cut": (karras[:6].clone(), False, 0.0, (sd15_percent(0.2), sd15_percent(0.8))),
             "sd3": (flow.simple(sd3, 8), True, sd3.percent_to_sigma(1e-4),
                     (sd3.percent_to_sigma(0.2), sd3.percent_to_sigma(0.8)))}
    for case, (sigmas, const, first, sa_sigmas) in cases.items():
        sigmas = sigmas.float()
        out[f"{case}.sigmas"] = sigmas
        out[f"{case}.first_sigma"] = torch.tensor([first], dtype=torch.float32)
        out[f"{case}.sa_sigmas"] = torch.tensor(sa_sigmas, dtype=torch.float32)
        runs = dict(SAMPLERS)
        runs["sa_solver"] = lambda m, x, s, nz, c: sa_solver(m, x, s, nz, c, sa_sigmas, False)
        runs["sa_solver_pece"] = lambda m, x, s, nz, c: sa_solver(m, x, s, nz, c, sa_sigmas, True)
        # the custom sampler nodes' settings (SamplerER_SDE, SamplerSEEDS2, SamplerSASolver)
        percent = sd15_percent if not const else sd3.percent_to_sigma
        custom = (percent(0.1), percent(0.9))
        out[f"{case}.sa_custom_sigmas"] = torch.tensor(custom, dtype=torch.float32)
        runs.update({
            "er_sde.reverse_eta05": lambda m, x, s, nz, c: er_sde(m, x, s, nz, c, power=1.5),
            "er_sde.ode_stage2": lambda m, x, s, nz, c: er_sde(m, x, s, nz, c, s_noise=0.0, max_stage=2, power=1.0),
            "seeds_2.phi_2_r07": lambda m, x, s, nz, c: seeds(m, x, s, nz, c, [0.7], phi_2=True),
            "seeds_2.exp_heun": lambda m, x, s, nz, c: seeds(m, x, s, nz, c, [1.0], eta=0.0, s_noise=0.0, phi_2=True),
            "sa_solver.p2_c1_simple_eta06": lambda m, x, s, nz, c: sa_solver(
                m, x, s, nz, c, custom, False, predictor_order=2, corrector_order=1, eta=0.6, simple_order_2=True),
            "sa_solver_pece.p5_c6": lambda m, x, s, nz, c: sa_solver(
                m, x, s, nz, c, sa_sigmas, True, predictor_order=5, corrector_order=6),
            "euler_cfg_pp.alternative": lambda m, x, s, nz, c: euler_pp(m, x, s),
        })
        for name, run in runs.items():
            model, noise = Model(), Pool(pool)
            walked = sigmas
            if const and name.split(".")[0] in OFFSET_SNR and walked[0] >= 1:
                walked = walked.clone()
                walked[0] = first
            x = run(model, x_start * sigmas[0], walked, noise, const)
            out[f"{case}.{name}.x"] = x
            out[f"{case}.{name}.calls"] = torch.tensor([model.calls], dtype=torch.int32)
            out[f"{case}.{name}.draws"] = torch.tensor([noise.draws], dtype=torch.int32)
            print(f"{case:8s} {name:32s} calls {model.calls:2d} draws {noise.draws:2d} |x| {x.norm():.4f}")
    save_file({k: v.contiguous() for k, v in out.items()}, OUT)


if __name__ == "__main__":
    main()
