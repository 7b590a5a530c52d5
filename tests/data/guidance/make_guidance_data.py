"""Goldens for the guidance patches on a model, APG, RescaleCFG and
CFGZeroStar (ComfyUI's nodes): their guidance of a conditional and an
unconditional x0 prediction.

The math is ComfyUI's (read at ComfyUI 0.8.1): RescaleCFG from
comfy_extras/nodes_model_advanced.py as comfy/samplers.py's cfg_function
calls it (its "cond" and "uncond" are x minus each prediction, and the
result is x minus what it returns), CFGZeroStar from comfy_extras/nodes_cfg.py
as a post-CFG function on cfg_function's result, APG from
comfy_extras/nodes_apg.py as a pre-CFG function (its running average kept
from call to call, restarted where the sigma rises); restated with numpy in
float32 as torch computes it, the std torch's (unbiased, over each image).

Writes tests/data/guidance/guidance.safetensors (read by
tests/test_guidance.c):
  x, cond, uncond    [2, 4, 6, 5] the sampler's x and the two x0 predictions
  <case>.settings    [4] sigma, cfg, RescaleCFG's multiplier (0: none),
                     CFGZeroStar (1: on)
  <case>.denoised    [2, 4, 6, 5] the guided x0 prediction
Cases: early (sigma 14.6, cfg 7.5, RescaleCFG 0.7), late (sigma 0.5, cfg 4,
RescaleCFG 1), zero_star (sigma 3, cfg 6, CFGZeroStar), both (sigma 1.2, cfg
5, RescaleCFG 0.7 and CFGZeroStar).
  apg.<k>.denoised   [2, 4, 6, 5] APG (eta 0.5, norm_threshold 5, momentum
                     -0.5) at cfg 6 over four calls at sigmas 3, 2, 2.5 (a
                     restart), 1, call k on cond * (1 + 0.1 k) + 0.5 (uncond
                     shifted k places along its flattened values) and
                     uncond * (1 - 0.05 k)
  apg_all.denoised   APG (eta 0.3, norm_threshold 0, momentum 0.4) with
                     RescaleCFG 0.7 and CFGZeroStar, sigma 1.5, cfg 5

Run from the repository root: python3 tests/data/guidance/make_guidance_data.py
"""
import numpy as np
from safetensors.numpy import save_file

OUT = "tests/data/guidance/guidance.safetensors"
f32 = np.float32


def torch_std(v):
    """torch.std(v, dim=(1, 2, 3), keepdim=True): unbiased, float32 out."""
    flat = v.reshape(v.shape[0], -1).astype(np.float64)
    return flat.std(axis=1, ddof=1).astype(f32).reshape(-1, 1, 1, 1)


def rescale_cfg(x_orig, cond_pred, uncond_pred, sigma, cond_scale, multiplier):
    cond, uncond = x_orig - cond_pred, x_orig - uncond_pred  # cfg_function's args
    sigma = f32(sigma)
    x = x_orig / (sigma * sigma + f32(1.0))
    root = (sigma ** 2 + f32(1.0)) ** f32(0.5)
    cond = ((x - (x_orig - cond)) * root) / sigma
    uncond = ((x - (x_orig - uncond)) * root) / sigma
    x_cfg = uncond + f32(cond_scale) * (cond - uncond)
    x_rescaled = x_cfg * (torch_std(cond) / torch_std(x_cfg))
    x_final = f32(multiplier) * x_rescaled + f32(1.0 - multiplier) * x_cfg
    returned = x_orig - (x - x_final * sigma / (sigma * sigma + f32(1.0)) ** f32(0.5))
    return x_orig - returned


def optimized_scale(positive, negative):
    """CFG-Zero*'s alpha per image: <positive, negative> / (|negative|^2 + 1e-8)."""
    p = positive.reshape(positive.shape[0], -1)
    n = negative.reshape(negative.shape[0], -1)
    dot = np.sum(p * n, axis=1, keepdims=True, dtype=f32)
    norm = np.sum(n ** 2, axis=1, keepdims=True, dtype=f32) + f32(1e-8)
    return (dot / norm).reshape(-1, 1, 1, 1)


def guided(x, cond_pred, uncond_pred, sigma, cfg, multiplier, zero_star):
    if multiplier:
        out = rescale_cfg(x, cond_pred, uncond_pred, sigma, cfg, multiplier)
    else:
        out = uncond_pred + (cond_pred - uncond_pred) * f32(cfg)
    if zero_star:
        alpha = optimized_scale(x - cond_pred, x - uncond_pred)
        out = out + uncond_pred * (alpha - f32(1.0)) + f32(cfg) * uncond_pred * (f32(1.0) - alpha)
    return out


def norm(v):
    """torch's v.norm(p=2, dim=[-1, -2, -3], keepdim=True) in float32."""
    return np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=(1, 2, 3), keepdims=True)).astype(f32)


class APG:
    """nodes_apg.py's pre_cfg_function and its state."""

    def __init__(self, eta, norm_threshold, momentum):
        self.eta, self.norm_threshold, self.momentum = eta, norm_threshold, momentum
        self.running_avg, self.prev_sigma = 0, None

    def __call__(self, cond, uncond, sigma, cond_scale):
        if self.prev_sigma is not None and sigma > self.prev_sigma:
            self.running_avg = 0
        self.prev_sigma = sigma
        guidance = cond - uncond
        if self.momentum != 0:
            if not isinstance(self.running_avg, np.ndarray):
                self.running_avg = guidance
            else:
                self.running_avg = f32(self.momentum) * self.running_avg + guidance
            guidance = self.running_avg
        if self.norm_threshold > 0:
            scale = np.minimum(np.ones_like(norm(guidance)), f32(self.norm_threshold) / norm(guidance))
            guidance = guidance * scale
        v1 = cond / np.maximum(norm(cond), f32(1e-12))
        parallel = np.sum((guidance * v1).astype(np.float64), axis=(1, 2, 3), keepdims=True).astype(f32) * v1
        orthogonal = guidance - parallel
        modified = orthogonal + f32(self.eta) * parallel
        return ((uncond + modified) + (cond - uncond) / f32(cond_scale)).astype(f32)


def main():
    rng = np.random.default_rng(3)
    shape = (2, 4, 6, 5)
    x = (rng.standard_normal(shape) * 3.0).astype(f32)
    cond = (0.6 * x + 0.3 * rng.standard_normal(shape)).astype(f32)
    uncond = (0.5 * x + 0.2 * rng.standard_normal(shape)).astype(f32)
    out = {"x": x, "cond": cond, "uncond": uncond}
    for name, sigma, cfg, multiplier, zero_star in (("early", 14.6, 7.5, 0.7, False), ("late", 0.5, 4.0, 1.0, False),
                                                    ("zero_star", 3.0, 6.0, 0.0, True),
                                                    ("both", 1.2, 5.0, 0.7, True)):
        out[name + ".settings"] = np.array([sigma, cfg, multiplier, zero_star], f32)
        out[name + ".denoised"] = guided(x, cond, uncond, sigma, cfg, multiplier, zero_star).astype(f32)
    apg = APG(0.5, 5.0, -0.5)
    for k, sigma in enumerate((3.0, 2.0, 2.5, 1.0)):
        c = (cond * f32(1 + 0.1 * k) + f32(0.5) * np.roll(uncond.ravel(), k).reshape(uncond.shape)).astype(f32)
        u = (uncond * f32(1 - 0.05 * k)).astype(f32)
        out[f"apg.{k}.denoised"] = guided(x, apg(c, u, f32(sigma), 6.0), u, sigma, 6.0, 0.0, False).astype(f32)
    apg = APG(0.3, 0.0, 0.4)
    out["apg_all.denoised"] = guided(x, apg(cond, uncond, f32(1.5), 5.0), uncond, 1.5, 5.0, 0.7, True).astype(f32)
    save_file(out, OUT)


if __name__ == "__main__":
    main()
