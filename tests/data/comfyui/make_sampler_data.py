"""Extracts the ComfyUI seed, schedule and sampler goldens kiln's tests read
(test_rng, test_schedule, test_sampler) from ../shared/goldens/comfyui (not
shipped with kiln) into two small files here:

noise.safetensors
  avx2.<name> / scalar.<name>: torch.randn goldens from noise_goldens.safetensors
  (AVX2 build) and noise_goldens_nosimd.safetensors (default-capability
  build), flattened. Tensors of at most 1536 values are kept whole (AVX2: every seed;
  scalar: seeds 0 and 4294967297); every tensor, large ones included, also
  gets <name>.fnv1a: the 64-bit FNV-1a hash of its float32 bytes (I64 [1],
  the hash's bits) so the test checks all of them bit for bit.

samplers.safetensors, per run id of runs/*.safetensors:
  <run>.sigmas               every run
  and for the sampler runs (16 samplers x normal, img2img euler and
  dpmpp_2m_karras):
  (tensors of more than two dims are stored as [dim0, rest]: kiln reads at most 4)
  <run>.x_init [B,4,8,8]     the start latent (B = 2 for the ancestral and
                             SDE samplers, which draw noise for the whole
                             batch; B = 1, the first image, for the rest,
                             whose math is per element)
  <run>.eps [calls,B,4,8,8]  every UNet call's classifier-free-guided eps,
                             eps_u + (eps_c - eps_u) * cfg, computed in float64
  <run>.xc [calls,B,4,8,8]   every UNet call's input x / sqrt(sigma^2 + 1)
  <run>.t [calls]            every UNet call's timestep
  <run>.x_final [B,4,8,8]
  <run>.noise_sigmas [draws,2]  (sigma, sigma_next) of each noise-sampler call
  <run>.noise_draws [draws,B,4,8,8]  the Brownian draws (SDE samplers only)
  txt2img.noise, img2img.noise, img2img.latent_in [2,4,8,8]: for the start-x rule
  beta_timesteps.<steps> (I64): the beta scheduler's table indices for 1..40
                             steps, from Beta(0.6, 0.6) quantiles computed by
                             mpmath (an independent reference, not ComfyUI)
  __metadata__ <run>.settings: {sampler_name, scheduler, steps, denoise}

Run from the repository root: python3 tests/data/comfyui/make_sampler_data.py
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
SRC = os.path.join(SHARED, "comfyui")
OUT = "tests/data/comfyui"
CFG = 5.0
ANCESTRAL = {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "lcm"}
SDE = {"dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"}
WHOLE_MAX = 1536
SCALAR_WHOLE_SEEDS = {"0", "4294967297"}


def fnv1a64(array):
    h = 0xCBF29CE484222325
    for byte in np.ascontiguousarray(array, dtype="<f4").tobytes():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.array([h], dtype=np.uint64).view(np.int64)


def noise_file():
    out = {}
    for tag, fname in (("avx2", "noise_goldens.safetensors"), ("scalar", "noise_goldens_nosimd.safetensors")):
        for name, value in load_file(os.path.join(SRC, fname)).items():
            seed = name.split(".")[1][len("seed"):]
            out[f"{tag}.{name}.fnv1a"] = fnv1a64(value)
            if value.size <= WHOLE_MAX and (tag == "avx2" or seed in SCALAR_WHOLE_SEEDS):
                out[f"{tag}.{name}"] = value.astype(np.float32).reshape(-1)
    return out


def beta_timesteps(steps, alpha=0.6, beta=0.6):
    """ComfyUI's beta scheduler's table indices, with the Beta quantiles
    computed independently by mpmath at 40 digits."""
    import mpmath

    mpmath.mp.dps = 40
    out, last = [], None
    for i in range(steps):
        q = 1 - i * (1.0 / steps)
        if q >= 1:
            x = mpmath.mpf(1)
        else:
            x = mpmath.findroot(lambda v: mpmath.betainc(alpha, beta, 0, v, regularized=True) - q,
                                (mpmath.mpf("1e-30"), mpmath.mpf(1) - mpmath.mpf("1e-30")), solver="anderson")
        t = int(np.rint(float(x) * 999))
        if t != last:
            out.append(t)
        last = t
    return np.array(out, dtype=np.int64)


def sampler_file(meta):
    out = {}
    for steps in range(1, 41):
        out[f"beta_timesteps.{steps}"] = beta_timesteps(steps)
    runs_dir = os.path.join(SRC, "runs")
    for fname in sorted(os.listdir(runs_dir)):
        if not fname.endswith(".safetensors"):
            continue
        run = fname[: -len(".safetensors")]
        settings = json.load(open(os.path.join(runs_dir, run + ".json")))
        d = load_file(os.path.join(runs_dir, fname))
        out[f"{run}.sigmas"] = d["sigmas"]
        meta[f"{run}.settings"] = json.dumps({k: settings[k] for k in ("sampler_name", "scheduler", "steps", "denoise")})
        sampler = settings["sampler_name"]
        if "samplers_x_normal" not in settings["groups"] and settings["mode"] != "img2img":
            continue
        batch = 2 if sampler in ANCESTRAL or sampler in SDE else 1
        # calc_cond_batch puts uncond first: unet.cond_or_uncond rows are [1, 0]
        assert (d["unet.cond_or_uncond"] == np.array([1, 0])).all(), run
        eps = d["unet.eps"].astype(np.float64)
        b2 = eps.shape[1] // 2
        eps_u, eps_c = eps[:, :b2], eps[:, b2:]
        out[f"{run}.eps"] = (eps_u + (eps_c - eps_u) * CFG).astype(np.float32)[:, :batch].copy()
        out[f"{run}.xc"] = d["unet.xc"][:, :batch].copy()
        out[f"{run}.t"] = d["unet.t"][:, 0].copy()
        out[f"{run}.x_final"] = d["x_final"][:batch].copy()
        if sampler == "uni_pc":
            # the golden's x_init for uni_pc is already divided by sqrt(1 + sigma0^2);
            # kiln's sampler takes the k-diffusion start latent like every other
            sigma0 = np.float32(d["sigmas"][0])
            x_init = d["noise"] * np.sqrt(np.float32(1) + sigma0 * sigma0)
        else:
            x_init = d["x_init"]
        out[f"{run}.x_init"] = x_init[:batch].astype(np.float32).copy()
        if "noise_sampler.sigmas" in d:
            out[f"{run}.noise_sigmas"] = d["noise_sampler.sigmas"]
        if sampler in SDE:
            out[f"{run}.noise_draws"] = d["noise_sampler.noise"][:, :batch].copy()
        if run == "txt2img_euler_normal_s8":
            out["txt2img.noise"] = d["noise"]
            out["txt2img.x_init"] = d["x_init"]
        if run == "img2img_d0.6_euler_normal_s8":
            out["img2img.noise"] = d["noise"]
            out["img2img.latent_in"] = d["latent_in"]
            out["img2img.x_init"] = d["x_init"]
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    # kiln reads at most 4 dims: per-call tensors become [calls, B*4*8*8]
    flat = lambda tensors: {k: v.reshape(v.shape[0], -1) if v.ndim > 2 else v for k, v in tensors.items()}
    meta = {"origin": "ComfyUI a125cd84 (v0.3.64) on torch 1.13 CPU, see ../shared/goldens/README.md"}
    save_file(noise_file(), os.path.join(OUT, "noise.safetensors"), metadata=dict(meta))
    save_file(flat(sampler_file(meta)), os.path.join(OUT, "samplers.safetensors"), metadata=meta)
    for name in ("noise.safetensors", "samplers.safetensors"):
        os.chmod(os.path.join(OUT, name), 0o644)


if __name__ == "__main__":
    sys.exit(main())
