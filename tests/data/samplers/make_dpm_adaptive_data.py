"""Goldens for SamplerDPMAdaptative's settings: k-diffusion's adaptive
DPM-Solver (ComfyUI's comfy/k_diffusion/sampling.py, DPMSolver.
dpm_solver_adaptive with its PIDStepSizeController, read at ComfyUI 0.8.1)
at order 2, with another PID controller and tolerances, and with noise
(eta, s_noise), restated with numpy in float32 as torch computes it, on
samplers.safetensors' mock model, start and noise pool (the noise drawn from
the pool in order, one draw a step taken).

Its default run (order 3, KSampler's dpm_adaptive) is checked here against
samplers.safetensors' torch one first, which checks this restatement.

Writes tests/data/samplers/dpm_adaptive.safetensors (read by
tests/test_sampler.c):
  <case>.dpm_adaptive.<variant>.x      the final latent
  <case>.dpm_adaptive.<variant>.calls  [1] I32 model calls; .draws [1] noise draws
Variants (order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety,
eta, s_noise): see VARIANTS. Cases: samplers.safetensors' sd15, sd15_cut,
sd3 (its flow schedule run as ComfyUI runs dpm_adaptive on it: the same
solver in t = -log sigma).

Run from the repository root: python3 tests/data/samplers/make_dpm_adaptive_data.py
"""
import math

import numpy as np
from safetensors.numpy import load_file, save_file

IN = "tests/data/samplers/samplers.safetensors"
OUT = "tests/data/samplers/dpm_adaptive.safetensors"
f32 = np.float32

VARIANTS = {
    "order2": dict(order=2),
    "pid": dict(rtol=0.02, atol=0.005, h_init=0.1, pcoeff=0.3, icoeff=0.9, dcoeff=0.2, accept_safety=0.9),
    "eta05": dict(eta=0.5, s_noise=0.9),
}


class Run:
    """The mock model (0.75 x + 0.1 sigma tanh(x)) and the noise pool."""

    def __init__(self, pool):
        self.pool, self.calls, self.draws = pool, 0, 0

    def model(self, x, sigma):
        self.calls += 1
        return (x * f32(0.75) + f32(0.1) * sigma * np.tanh(x)).astype(f32)

    def noise(self):
        self.draws += 1
        return self.pool[self.draws - 1]


def t_of(sigma):
    return f32(-np.log(f32(sigma)))


def sigma_of(t):
    return f32(np.exp(-f32(t)))


def eps(run, cache, key, x, t):
    if key in cache:
        return cache[key], cache
    e = ((x - run.model(x, sigma_of(t))) / sigma_of(t)).astype(f32)
    return e, {key: e, **cache}


def step_1(run, x, t, t_next, cache):
    h = f32(t_next - t)
    e, cache = eps(run, cache, "eps", x, t)
    return (x - sigma_of(t_next) * np.expm1(h) * e).astype(f32), cache


def step_2(run, x, t, t_next, cache, r1=1 / 2):
    h = f32(t_next - t)
    e, cache = eps(run, cache, "eps", x, t)
    s1 = f32(t + f32(r1 * h))
    u1 = (x - sigma_of(s1) * np.expm1(f32(r1 * h)) * e).astype(f32)
    e1, cache = eps(run, cache, "eps_r1", u1, s1)
    x2 = x - sigma_of(t_next) * np.expm1(h) * e - sigma_of(t_next) / f32(2 * r1) * np.expm1(h) * (e1 - e)
    return x2.astype(f32), cache


def step_3(run, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
    h = f32(t_next - t)
    e, cache = eps(run, cache, "eps", x, t)
    s1, s2 = f32(t + f32(r1 * h)), f32(t + f32(r2 * h))
    u1 = (x - sigma_of(s1) * np.expm1(f32(r1 * h)) * e).astype(f32)
    e1, cache = eps(run, cache, "eps_r1", u1, s1)
    u2 = x - sigma_of(s2) * np.expm1(f32(r2 * h)) * e - sigma_of(s2) * f32(r2 / r1) * \
        (np.expm1(f32(r2 * h)) / f32(r2 * h) - f32(1)) * (e1 - e)
    e2, cache = eps(run, cache, "eps_r2", u2.astype(f32), s2)
    x3 = x - sigma_of(t_next) * np.expm1(h) * e - sigma_of(t_next) / f32(r2) * (np.expm1(h) / h - f32(1)) * (e2 - e)
    return x3.astype(f32), cache


def ancestral_step(sigma_from, sigma_to, eta):
    up = min(sigma_to, f32(eta) * f32(np.sqrt(sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2)))
    return f32(np.sqrt(sigma_to ** 2 - up ** 2)), f32(up)


def adaptive(run, x, t_start, t_end, order=3, rtol=.05, atol=.0078, h_init=.05, pcoeff=0., icoeff=1., dcoeff=0.,
             accept_safety=.81, eta=0., s_noise=1.):
    atol, rtol = f32(atol), f32(rtol)
    s, x_prev = t_start, x
    k = 1.5 if eta else order
    b1, b2, b3 = (pcoeff + icoeff + dcoeff) / k, -(pcoeff + 2 * dcoeff) / k, dcoeff / k
    h, errs = h_init, []
    while s < t_end - 1e-5:
        t = min(t_end, f32(s + h))
        if eta:
            sd, su = ancestral_step(sigma_of(s), sigma_of(t), eta)
            t_ = min(t_end, t_of(sd))
            su = f32(np.sqrt(sigma_of(t) ** 2 - sigma_of(t_) ** 2))
        else:
            t_, su = t, 0.
        e, cache = eps(run, {}, "eps", x, s)
        if order == 2:
            x_low, cache = step_1(run, x, s, t_, cache)
            x_high, cache = step_2(run, x, s, t_, cache)
        else:
            x_low, cache = step_2(run, x, s, t_, cache, r1=1 / 3)
            x_high, cache = step_3(run, x, s, t_, cache)
        delta = np.maximum(atol, rtol * np.maximum(np.abs(x_low), np.abs(x_prev)))
        error = f32(np.linalg.norm(((x_low - x_high) / delta).astype(f32)) / x.size ** 0.5)
        inv_error = 1 / (float(error) + 1e-8)
        if not errs:
            errs = [inv_error] * 3
        errs[0] = inv_error
        factor = 1 + math.atan(errs[0] ** b1 * errs[1] ** b2 * errs[2] ** b3 - 1)
        if factor >= accept_safety:
            errs[2], errs[1] = errs[1], errs[0]
            x_prev = x_low
            x = (x_high + f32(su) * f32(s_noise) * run.noise()).astype(f32) if eta else x_high
            s = t
        h *= factor
    return x


def run_case(golden, case, pool, settings):
    sigmas = golden[f"{case}.sigmas"]
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    run = Run(pool)
    x = (golden["x"] * sigmas[0]).astype(f32)
    x = adaptive(run, x, t_of(sigmas[0]), t_of(sigma_min), **settings)
    return x, run.calls, run.draws


def main():
    golden = load_file(IN)
    pool = golden["noise"]
    out = {}
    for case in ("sd15", "sd15_cut", "sd3"):
        x, calls, _ = run_case(golden, case, pool, {})
        want = golden[f"{case}.dpm_adaptive.x"]
        err = np.linalg.norm(x - want) / np.linalg.norm(want)
        assert err < 1e-6 and calls == golden[f"{case}.dpm_adaptive.calls"][0], (case, err, calls)
        for name, settings in VARIANTS.items():
            x, calls, draws = run_case(golden, case, pool, settings)
            key = f"{case}.dpm_adaptive.{name}"
            out[key + ".x"] = x
            out[key + ".calls"] = np.array([calls], np.int32)
            out[key + ".draws"] = np.array([draws], np.int32)
            print(key, calls, draws)
    save_file(out, OUT)


if __name__ == "__main__":
    main()
