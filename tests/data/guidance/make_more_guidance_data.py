"""Goldens for more of ComfyUI's guidance patches on a model: Epsilon Scaling,
CFGNorm, Mahiro and TCFG, and all of them together with CFGZeroStar.

The math is ComfyUI's (read at commit a125cd84, ComfyUI 0.3.64): Epsilon
Scaling from comfy_extras/nodes_eps.py, CFGNorm and CFGZeroStar from
comfy_extras/nodes_cfg.py, Mahiro from comfy_extras/nodes_mahiro.py (all
post-CFG functions) and TCFG from comfy_extras/nodes_tcfg.py (a pre-CFG
function), called the way comfy/samplers.py's sampling_function and
cfg_function call them; restated here with torch in float32.

How ComfyUI calls them (comfy/samplers.py, sampling_function and
cfg_function):
  - at a cfg of 1 (math.isclose) the uncond is not run: its slot in the
    conds list is None, and calc_cond_batch returns zeros for it (zeros
    divided by counts of 1e-37), so the uncond prediction is 0 and plain CFG,
    0 + (cond - 0) * 1, is the cond prediction itself. None of these nodes
    turns that optimization off.
  - the pre-CFG functions run in the order they were added, each on the
    list the one before returned; TCFG passes the list back unchanged where
    either of conds[0], conds[1] is None (so at cfg 1).
  - plain CFG: uncond + (cond - uncond) * cfg, on the predictions the pre-CFG
    functions left.
  - the post-CFG functions run in the order they were added, each given
    "denoised" = what the one before returned (the CFG result for the first),
    "cond_denoised" and "uncond_denoised" = the predictions after the pre-CFG
    functions (the same two for every post-CFG function), "input" = x and
    "cond_scale" = cfg; the last one's return is the guided prediction.

The patches, in words:
  Epsilon Scaling (scaling_factor s): the noise x - denoised divided by s,
    the result x - (x - denoised) / s.
  CFGNorm (strength k): per pixel, the L2 norm over the channels of
    cond_denoised and of denoised; scale = clamp(|cond| / (|denoised| + 1e-8),
    0, 1); the result denoised * scale * k (k applied everywhere, also where
    scale is 1).
  Mahiro: leap = cond_denoised * cfg, u_leap = uncond_denoised * cfg,
    merge = (leap + denoised) / 2; both u_leap and merge mapped through
    sign(v) * sqrt(|v|); their cosine similarity over the channels at each
    pixel (torch's F.cosine_similarity, dim 1, eps 1e-8: each vector divided
    by max(its norm, eps), then the dot product), then the mean of those over
    every image and pixel at once, one scalar sim for the whole batch;
    w = 2 * (sim + 1); the result (w * denoised + (4 - w) * leap) / 4.
  CFGZeroStar: per image alpha = <x - cond_denoised, x - uncond_denoised> /
    (|x - uncond_denoised|^2 + 1e-8) over all its values; the result
    denoised + uncond_denoised * (alpha - 1) + cfg * uncond_denoised * (1 - alpha).
  TCFG: scores c = x - cond, u = x - uncond, each image's flattened into a
    row; the 2 x N matrix [u; c] (uncond first) per image; v1 its first right
    singular vector (the largest singular value's; its sign does not matter);
    u replaced by (u . v1) v1, the uncond prediction by x - that. The cond is
    kept.

Writes tests/data/guidance/more_guidance.safetensors:
  x, cond, uncond    [2, 4, 8, 8] the sampler's x and the two x0 predictions
                     (seed 7: x = 3 randn, cond = randn,
                     uncond = 0.8 randn + 0.3 cond)
  <case>.settings    float32 vector, per case below
  <case>.denoised    [2, 4, 8, 8] the guided x0 prediction
Cases (settings):
  eps_scaling        [cfg 6, scaling_factor 1.005]: plain CFG, then Epsilon
                     Scaling
  eps_scaling_cfg1   [cfg 1, scaling_factor 0.9]: uncond skipped, CFG = cond,
                     then Epsilon Scaling
  cfg_norm           [cfg 5, strength 1.0]: plain CFG, then CFGNorm
  cfg_norm_weak      [cfg 5, strength 0.8]: plain CFG, then CFGNorm
  cfg_norm_cfg1      [cfg 1, strength 0.9]: uncond skipped, CFG = cond, then
                     CFGNorm
  mahiro             [cfg 5]: plain CFG, then Mahiro
  tcfg               [cfg 5]: TCFG on the predictions, then plain CFG with
                     the damped uncond
  all                [cfg 4]: TCFG (pre-CFG), plain CFG, then the post-CFG
                     functions in this order: CFGZeroStar, Mahiro, CFGNorm
                     (strength 0.9), Epsilon Scaling (scaling_factor 1.01);
                     every one of them given the TCFG-damped uncond as
                     uncond_denoised

Run from the repository root (needs torch and safetensors):
  python3 tests/data/guidance/make_more_guidance_data.py
"""
import math
import os

import torch
from safetensors.torch import save_file

OUT = "tests/data/guidance/more_guidance.safetensors"
f32 = torch.float32


# --- the patches (post-CFG ones take the args dict cfg_function builds) ---

def eps_scaling(factor):
    def post(a):
        return a["input"] - (a["input"] - a["denoised"]) / factor
    return post


def cfg_norm(strength):
    def post(a):
        n_cond = torch.linalg.vector_norm(a["cond_denoised"], dim=1, keepdim=True)
        n_den = torch.linalg.vector_norm(a["denoised"], dim=1, keepdim=True)
        scale = torch.clamp(n_cond / (n_den + 1e-8), 0.0, 1.0)
        return a["denoised"] * scale * strength
    return post


def signed_sqrt(v):
    return torch.sign(v) * torch.sqrt(torch.abs(v))


def cosine_dim1(a, b, eps=1e-8):
    """Cosine similarity over dim 1 (each vector divided by max(norm, eps))."""
    na = torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(eps)
    nb = torch.linalg.vector_norm(b, dim=1, keepdim=True).clamp_min(eps)
    return ((a / na) * (b / nb)).sum(dim=1)


def mahiro(a):
    cfg, den = a["cond_scale"], a["denoised"]
    leap = a["cond_denoised"] * cfg
    u_leap = a["uncond_denoised"] * cfg
    merge = (leap + den) / 2
    cos = cosine_dim1(signed_sqrt(u_leap), signed_sqrt(merge))
    assert torch.allclose(cos, torch.nn.functional.cosine_similarity(signed_sqrt(u_leap), signed_sqrt(merge)),
                          rtol=1e-5, atol=1e-6)
    w = 2 * (cos.mean() + 1)  # one scalar for the whole batch
    return (w * den + (4 - w) * leap) / 4


def cfg_zero_star(a):
    x, c, u, cfg = a["input"], a["cond_denoised"], a["uncond_denoised"], a["cond_scale"]
    p = (x - c).reshape(x.shape[0], -1)
    n = (x - u).reshape(x.shape[0], -1)
    alpha = ((p * n).sum(dim=1, keepdim=True) / ((n * n).sum(dim=1, keepdim=True) + 1e-8)).reshape(-1, 1, 1, 1)
    return a["denoised"] + u * (alpha - 1.0) + cfg * u * (1.0 - alpha)


def tcfg(a):
    """Pre-CFG: damp the uncond score to its part along the 2 x N score
    matrix's first right singular vector."""
    out = a["conds_out"]
    if len(out) <= 1 or a["conds"][0] is None or a["conds"][1] is None:
        return out
    x, c_pred, u_pred = a["input"], out[0], out[1]
    b = x.shape[0]
    c = (x - c_pred).reshape(b, 1, -1)
    u = (x - u_pred).reshape(b, 1, -1)
    _, _, vh = torch.linalg.svd(torch.cat((u, c), dim=1), full_matrices=False)
    v1 = vh[:, 0:1, :]                                    # (b, 1, N)
    u_td = (u * v1).sum(dim=2, keepdim=True) * v1          # (u . v1) v1
    return [c_pred, x - u_td.reshape(x.shape)] + list(out[2:])


# --- sampling_function / cfg_function's order of calls ---

def guide(x, cond, uncond, cfg, pre=(), post=()):
    skip_uncond = math.isclose(cfg, 1.0)
    conds = ["cond", None if skip_uncond else "uncond"]
    out = [cond, torch.zeros_like(x) if skip_uncond else uncond]
    for fn in pre:
        out = fn({"conds": conds, "conds_out": out, "cond_scale": cfg, "input": x})
    cond_pred, uncond_pred = out[0], out[1]
    result = uncond_pred + (cond_pred - uncond_pred) * cfg
    for fn in post:
        result = fn({"denoised": result, "cond_scale": cfg, "input": x,
                     "cond_denoised": cond_pred, "uncond_denoised": uncond_pred})
    return result


def main():
    g = torch.Generator().manual_seed(7)
    shape = (2, 4, 8, 8)
    x = 3.0 * torch.randn(shape, generator=g, dtype=f32)
    cond = torch.randn(shape, generator=g, dtype=f32)
    uncond = 0.8 * torch.randn(shape, generator=g, dtype=f32) + 0.3 * cond
    out = {"x": x, "cond": cond, "uncond": uncond}
    cases = (
        ("eps_scaling", [6.0, 1.005], (), (eps_scaling(1.005),)),
        ("eps_scaling_cfg1", [1.0, 0.9], (), (eps_scaling(0.9),)),
        ("cfg_norm", [5.0, 1.0], (), (cfg_norm(1.0),)),
        ("cfg_norm_weak", [5.0, 0.8], (), (cfg_norm(0.8),)),
        ("cfg_norm_cfg1", [1.0, 0.9], (), (cfg_norm(0.9),)),
        ("mahiro", [5.0], (), (mahiro,)),
        ("tcfg", [5.0], (tcfg,), ()),
        ("all", [4.0], (tcfg,), (cfg_zero_star, mahiro, cfg_norm(0.9), eps_scaling(1.01))),
    )
    for name, settings, pre, post in cases:
        cfg = settings[0]
        den = guide(x, cond, uncond, cfg, pre, post)
        plain = guide(x, cond, uncond, cfg)
        rel = (torch.linalg.vector_norm(den - plain) / torch.linalg.vector_norm(plain)).item()
        print(f"{name:18s} settings {settings}  rel L2 from plain CFG {rel:.4e}")
        out[name + ".settings"] = torch.tensor(settings, dtype=f32)
        out[name + ".denoised"] = den.to(f32).contiguous()
    save_file(out, OUT)
    os.chmod(OUT, 0o644)


if __name__ == "__main__":
    main()
