"""Writes kiln's SDXL base -> refiner hand-off golden: ComfyUI's standard SDXL
base + refiner workflow (two KSamplerAdvanced nodes sharing one schedule) run
with the tiny random SDXL base model and the tiny random refiner.

Origin: the diffusers 0.27.2 models (UNet2DConditionModel, AutoencoderKL) of
tests/data/sdxl/tiny_sdxl_diffusers and tests/data/sdxl_refiner/
tiny_refiner_diffusers, loaded in float32 (their float16 weights are exact in
float32), called inside ComfyUI's KSamplerAdvanced steps restated with torch
(CPU, float32). The conditionings are the ones those models' goldens already
hold (the prompts "a photograph of an astronaut riding a horse" / ""):
tests/data/sdxl/golden.safetensors run.positive (1,77,64), run.negative,
run.positive_pooled (1,32), run.negative_pooled for the base, and
tests/data/sdxl_refiner/golden.safetensors run.positive (1,77,32), ... for the
refiner. ComfyUI's sigmas and timestep function, its CFG guider and euler
steps and the VAE decode are tests/data/sd_common.py's (cfg_denoiser, euler,
decode_image), shared with the models' own scripts; this one keeps the UNet
call and KSamplerAdvanced's cut schedule and start x.

The sampler, as ComfyUI's KSampler (eps-prediction, euler, CFG in x0 space):
every step calls the UNet on cat([x, x]) / sqrt(sigma^2 + 1) at the timestep
of the nearest training sigma, with the negative row first; x0 = x - eps *
sigma; denoised = x0_neg + (x0_pos - x0_neg) * cfg; x += (x - denoised) /
sigma * (sigma_next - sigma). SDXL's y goes in as added_cond_kwargs
text_embeds (pooled) + time_ids: base [64, 64, 0, 0, 64, 64] for both rows
(encode_adm: 8 x the 8x8 latent, crops 0, target the size); refiner
[64, 64, 0, 0, 2.5] for the negative row and [64, 64, 0, 0, 6.0] for the
positive (SDXLRefiner.encode_adm's aesthetic scores).

The schedule, as ComfyUI's KSampler.sample cuts it: sigmas = the normal
scheduler's for `steps`; if last_step < len(sigmas) - 1: sigmas =
sigmas[:last_step + 1], and if force_full_denoise the last is set to 0; then
if start_step < len(sigmas) - 1: sigmas = sigmas[start_step:].
KSamplerAdvanced passes force_full_denoise = (return_with_leftover_noise ==
"disable") and disable_noise = (add_noise == "disable"); common_ksampler uses
zeros for the noise when disable_noise. The start x is noise * sqrt(1 +
sigma0^2) + latent when sigma0 is sigma_max ("max denoise"), else noise *
sigma0 + latent, where latent = the LATENT * 0.13025 (process_latent_in); the
LATENT returned is the final x / 0.13025 (process_latent_out).

Settings: euler, normal, steps 6, cfg 5, seed 42, one 8x8 latent (empty),
switch at step 4.
  base pass (SDXL base): add_noise enable, start 0, end 4,
    return_with_leftover_noise enable -> sigmas[0..4], the last kept (not 0),
    start x = noise * sqrt(1 + sigma0^2), four euler steps.
  refiner pass (refiner): add_noise disable, start 4, end 10000,
    return_with_leftover_noise disable -> sigmas[4..6] (sigma4, sigma5, 0),
    start x = zeros * sigma4 + base.latent_out * 0.13025, two euler steps,
    then VAEDecode (the refiner's VAE, the same tiny VAE as the base's).

handoff.golden.safetensors (float32):
  sigmas (7,): the normal sigmas for 6 steps, the final 0 included;
  noise (1,4,8,8): torch.randn after torch.manual_seed(42);
  base.denoised.N (1,4,8,8), N = 0..3: each base step's guided x0;
  base.latent_out (1,4,8,8): the base KSamplerAdvanced's LATENT (still noisy,
    at sigma4), / 0.13025;
  refiner.denoised.N (1,4,8,8), N = 0..1: each refiner step's guided x0;
  refiner.latent_out (1,4,8,8): the refiner KSamplerAdvanced's LATENT;
  image (1,16,16,3): clamp((VAE decode of refiner.latent_out + 1) / 2, 0, 1);
  base_only.latent_out (1,4,8,8): a plain 6-step KSampler run of the base
    model alone (same seed, settings and conditioning), for comparison.
The script asserts that the hand-off matters: refiner.latent_out and
base.latent_out both differ from base_only.latent_out by a relative L2 above
0.01 (they come out near 0.030 and 0.021; float32 noise is near 3e-6), and so
do the refiner results of two likely mistakes: the base pass fully denoised
(its last sigma set to 0) before the hand-off, and noise added again at the
hand-off. The margins are small because the tiny random models' guided x0
is large (std near 18 against unit noise; cfg 5 amplifies the random
cond/uncond difference), so the latent is mostly fixed in the first steps and
the last two, at sigma4 ~0.57 and sigma5 ~0.029, move it by a few percent.
It also checks its sampler against the existing goldens: a 4-step run of each
model must give that model's golden run.latent_out (relative L2 below 1e-5).

Run from the repository root with torch and diffusers installed (after
tests/data/sdxl/make_sdxl_data.py and tests/data/sdxl_refiner/
make_refiner_data.py have written the models); the output is deterministic:
  python3 tests/data/sdxl_refiner/make_handoff_data.py
"""
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import cfg_denoiser, comfy_normal_sigmas, decode_image, eps_x0, euler  # noqa: E402

BASE = "tests/data/sdxl"
REFINER = "tests/data/sdxl_refiner"
OUT = f"{REFINER}/handoff.golden.safetensors"
SCALING = 0.13025
STEPS, CFG, SEED, SWITCH = 6, 5.0, 42, 4
MIN_DIFF = 0.01  # relative L2 the hand-off must change the result by (see the docstring)
BASE_TIME_IDS = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 2)  # negative row, positive row
REFINER_TIME_IDS = torch.tensor([[64.0, 64.0, 0.0, 0.0, 2.5], [64.0, 64.0, 0.0, 0.0, 6.0]])


def rel(a, b):
    """Relative L2 difference of a from b."""
    return ((a - b).norm() / b.norm()).item()


def cut_sigmas(sigmas, start_step, last_step, force_full_denoise):
    """ComfyUI's KSampler.sample: the schedule cut to [start_step, last_step]."""
    sigmas = sigmas.clone()
    if last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1]
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step < len(sigmas) - 1:
        sigmas = sigmas[start_step:]
    return sigmas


class Model:
    """One SDXL-type UNet with its conditioning, as ComfyUI's CFG guider calls it."""

    def __init__(self, folder, golden, time_ids):
        self.unet = UNet2DConditionModel.from_pretrained(f"{folder}/unet").eval()
        g = load_file(golden)
        self.golden = g
        self.context = torch.cat([g["run.negative"], g["run.positive"]])
        self.pooled = torch.cat([g["run.negative_pooled"], g["run.positive_pooled"]])
        self.time_ids = time_ids

    def __call__(self, xin, t):
        """The UNet's eps on the [negative, positive] pair, with its added conditioning."""
        return self.unet(xin, t, encoder_hidden_states=self.context,
                         added_cond_kwargs={"text_embeds": self.pooled, "time_ids": self.time_ids}).sample


def ksampler_advanced(model, noise, latent, steps, start_step, last_step, add_noise, leftover_noise, store=None,
                      prefix=""):
    """KSamplerAdvanced with euler / normal: returns the LATENT (x / 0.13025);
    each step's guided x0 goes to store[prefix + "denoised.N"]."""
    all_sigmas, timestep = comfy_normal_sigmas(steps)
    sigma_max = all_sigmas[0]
    sigmas = cut_sigmas(all_sigmas, start_step, last_step, force_full_denoise=not leftover_noise)
    if not add_noise:
        noise = torch.zeros_like(latent)
    latent = latent * SCALING  # process_latent_in
    # EPS noise_scaling; max_denoise when the first sigma is sigma_max (isclose, rel 1e-5) or above
    max_denoise = bool(sigmas[0] >= sigma_max * (1 - 1e-5))
    x = noise * ((1.0 + sigmas[0] ** 2) ** 0.5 if max_denoise else sigmas[0]) + latent
    x = euler(cfg_denoiser(model, eps_x0, CFG, timestep), x, sigmas, store, prefix)
    return x / SCALING  # process_latent_out


def main():
    base = Model(f"{BASE}/tiny_sdxl_diffusers", f"{BASE}/golden.safetensors", BASE_TIME_IDS)
    refiner = Model(f"{REFINER}/tiny_refiner_diffusers", f"{REFINER}/golden.safetensors", REFINER_TIME_IDS)
    vae = AutoencoderKL.from_pretrained(f"{REFINER}/tiny_refiner_diffusers", subfolder="vae").eval()

    noise = torch.randn(1, 4, 8, 8, generator=torch.manual_seed(SEED))
    empty = torch.zeros(1, 4, 8, 8)

    # the sampler against the existing goldens: a plain 4-step KSampler of each model
    for m in (base, refiner):
        assert torch.equal(m.golden["run.noise"], noise)
        out = ksampler_advanced(m, noise, empty, 4, 0, 10000, add_noise=True, leftover_noise=False)
        assert rel(out, m.golden["run.latent_out"]) < 1e-5, rel(out, m.golden["run.latent_out"])

    g = {}
    sigmas, _ = comfy_normal_sigmas(STEPS)
    g["sigmas"] = sigmas
    g["noise"] = noise
    g["base.latent_out"] = ksampler_advanced(base, noise, empty, STEPS, 0, SWITCH, add_noise=True,
                                             leftover_noise=True, store=g, prefix="base.")
    g["refiner.latent_out"] = ksampler_advanced(refiner, noise, g["base.latent_out"], STEPS, SWITCH, 10000,
                                                add_noise=False, leftover_noise=False, store=g, prefix="refiner.")
    g["image"] = decode_image(vae, g["refiner.latent_out"])
    g["base_only.latent_out"] = ksampler_advanced(base, noise, empty, STEPS, 0, 10000, add_noise=True,
                                                  leftover_noise=False)

    assert len([k for k in g if k.startswith("base.denoised.")]) == SWITCH
    assert len([k for k in g if k.startswith("refiner.denoised.")]) == STEPS - SWITCH
    d_refiner = rel(g["refiner.latent_out"], g["base_only.latent_out"])
    d_base = rel(g["base.latent_out"], g["base_only.latent_out"])
    assert d_refiner > MIN_DIFF, d_refiner
    assert d_base > MIN_DIFF, d_base
    # two likely mistakes give other results: the base pass fully denoised before the hand-off ...
    clean = ksampler_advanced(base, noise, empty, STEPS, 0, SWITCH, add_noise=True, leftover_noise=False)
    wrong = ksampler_advanced(refiner, noise, clean, STEPS, SWITCH, 10000, add_noise=False, leftover_noise=False)
    d_clean = rel(wrong, g["refiner.latent_out"])
    assert d_clean > MIN_DIFF, d_clean
    # ... and noise added again at the hand-off
    wrong = ksampler_advanced(refiner, noise, g["base.latent_out"], STEPS, SWITCH, 10000, add_noise=True,
                              leftover_noise=False)
    d_noise = rel(wrong, g["refiner.latent_out"])
    assert d_noise > MIN_DIFF, d_noise
    save_file({k: v.clone().contiguous() for k, v in g.items()}, OUT)
    print("sigmas", [round(v, 6) for v in sigmas.tolist()])
    print(f"rel L2 refiner.latent_out vs base_only: {d_refiner:.4f}; base.latent_out vs base_only: {d_base:.4f}")
    print(f"rel L2 vs refiner.latent_out: base fully denoised first {d_clean:.4f}; noise re-added {d_noise:.4f}")
    print("std base.latent_out %.4f refiner.latent_out %.4f base_only.latent_out %.4f"
          % (g["base.latent_out"].std(), g["refiner.latent_out"].std(), g["base_only.latent_out"].std()))
    print({k: tuple(v.shape) for k, v in g.items()})


if __name__ == "__main__":
    main()
