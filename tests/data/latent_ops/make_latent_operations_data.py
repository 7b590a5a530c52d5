"""Goldens for ComfyUI's latent operations: LatentOperationTonemapReinhard and
LatentOperationSharpen, applied to a latent (LatentApplyOperation) and to the
guidance (LatentApplyOperationCFG, a pre-CFG function on the model).

The math is ComfyUI's (read at commit a125cd84, ComfyUI 0.3.64):
comfy_extras/nodes_latent.py for the four nodes, gaussian_kernel from
comfy_extras/nodes_post_processing.py, and comfy/samplers.py
(sampling_function, cfg_function) for how the pre-CFG function is called;
restated here with torch (2.15) in float32 on the CPU.

The operations, in words (v = the channel vector at one pixel of one image):
  TonemapReinhard (multiplier m):
    mag = |v| + 1e-10 (L2 over the channels), one value per pixel;
    per image, mean and std of mag over its H*W pixels, the std unbiased
    (torch.std's default: divided by H*W - 1);
    top = (5 * std + mean) * m;
    r = mag * (1 / top) (multiplied by the reciprocal, as ComfyUI does);
    the result v / mag * (r / (r + 1) * top).
    (m = 0 gives top 0 and NaN; the node allows it, nothing here uses it.)
  Sharpen (sharpen_radius R, sigma s, alpha a):
    lum = |v| + 1e-6 per pixel; n = v / lum;
    K = 2R + 1; the kernel is gaussian_kernel(K, s): coordinates
    t = torch.linspace(-1, 1, K) in float32 (normalized to [-1, 1], NOT in
    pixels, so sigma is relative to the kernel's half width R), on the grid
    g[i][j] = exp(-(d * d) / (2 s^2)) with d = sqrt(t_i^2 + t_j^2) (the sqrt
    then the square, in float32), divided by its sum;
    then kernel *= -10 a, and the centre becomes
    kernel[c][c] - sum(kernel) + 1 (the sum taken after the scaling and
    including the old centre), so the kernel sums to 1 (about);
    n reflect-padded by R on each side (torch 'reflect': the edge pixel not
    repeated; needs R < H and R < W), then conv2d per channel (groups =
    channels, the same kernel for each) with zero padding K // 2 = R, then
    R cropped off each side. The window of every kept output lies wholly in
    the reflect-padded image, so the zero padding never contributes: it is
    a plain correlation of the reflect-padded n with the kernel (the kernel
    is symmetric, so correlation and convolution agree);
    the result lum * that.
  LatentApplyOperation: the operation on the latent samples.
  LatentApplyOperationCFG: a pre-CFG function; on conds_out = [cond, uncond]
    (two entries, the usual case) it replaces cond by op(cond - uncond) +
    uncond (the op on the difference, batch and all); with one entry it
    would apply op to cond alone. Then plain CFG:
    uncond + (cond' - uncond) * cfg.
    At a cfg of 1 (math.isclose; the cfg1 optimization not disabled) the
    uncond is not run: calc_cond_batch returns zeros for its slot (zeros over
    counts of 1e-37), conds_out still has two entries, so cond' =
    op(cond - 0) + 0 and the result 0 + (cond' - 0) * 1 = cond'.

Writes tests/data/latent_ops/operations.safetensors (float32):
  x                    [2, 4, 12, 16] the latent (seed 11: 1.5 randn)
  tonemap.1            [2, 4, 12, 16] TonemapReinhard(multiplier 1.0) on x
  tonemap.0.5          [2, 4, 12, 16] TonemapReinhard(multiplier 0.5) on x
  sharpen.9_1_0.1      [2, 4, 12, 16] Sharpen(radius 9, sigma 1.0, alpha 0.1)
                       on x (the node's defaults)
  sharpen.3_0.5_1.5    [2, 4, 12, 16] Sharpen(radius 3, sigma 0.5, alpha 1.5)
                       on x
  cond, uncond         [2, 4, 12, 16] two x0 predictions (same generator:
                       cond = randn, uncond = 0.8 randn + 0.4 cond)
  cfg.tonemap          [2, 4, 12, 16] LatentApplyOperationCFG(
                       TonemapReinhard(1.0)) at cfg 4
  cfg.sharpen          [2, 4, 12, 16] LatentApplyOperationCFG(
                       Sharpen(3, 0.5, 1.5)) at cfg 4
  cfg1.tonemap         [2, 4, 12, 16] LatentApplyOperationCFG(
                       TonemapReinhard(1.0)) at cfg 1 (uncond skipped)

Run from the repository root (needs torch and safetensors):
  python3 tests/data/latent_ops/make_latent_operations_data.py
"""
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = "tests/data/latent_ops/operations.safetensors"
f32 = torch.float32


# --- the operations (each maps a [B, C, H, W] latent to one of that shape) ---

def channel_norm(latent, eps):
    """|v| + eps per pixel, shaped [B, 1, H, W]."""
    return torch.linalg.vector_norm(latent, dim=1, keepdim=True) + eps


def tonemap_reinhard(multiplier):
    def op(latent):
        mag = channel_norm(latent, 1e-10)
        direction = latent / mag
        mean = mag.mean(dim=(1, 2, 3), keepdim=True)
        std = mag.std(dim=(1, 2, 3), keepdim=True, correction=1)  # unbiased
        top = (5.0 * std + mean) * multiplier
        r = mag * top.reciprocal()
        return direction * (r / (r + 1.0) * top)
    return op


def gaussian_kernel(size, sigma):
    t = torch.linspace(-1.0, 1.0, size, dtype=f32)
    ti, tj = t[:, None].expand(size, size), t[None, :].expand(size, size)
    d = torch.sqrt(ti * ti + tj * tj)
    g = torch.exp(-(d * d) / (2.0 * sigma * sigma))
    return g / g.sum()


def sharpen_kernel(radius, sigma, alpha):
    size = 2 * radius + 1
    k = gaussian_kernel(size, sigma) * (alpha * -10.0)
    centre = k[radius, radius] - k.sum() + 1.0
    k[radius, radius] = centre
    return k


def sharpen(radius, sigma, alpha):
    def op(latent):
        lum = channel_norm(latent, 1e-6)
        n = latent / lum
        c = n.shape[1]
        k = sharpen_kernel(radius, sigma, alpha)
        weight = k.expand(c, 1, *k.shape).contiguous()
        padded = F.pad(n, (radius,) * 4, mode="reflect")
        # ComfyUI's form: zero padding R on the reflect-padded image, crop R.
        full = F.conv2d(padded, weight, padding=radius, groups=c)
        out = full[:, :, radius:-radius, radius:-radius]
        # The same as a valid correlation of the reflect-padded image.
        valid = F.conv2d(padded, weight, padding=0, groups=c)
        assert torch.allclose(out, valid, rtol=0, atol=1e-5)
        # And as an explicit sum over the window (the pad being 'reflect').
        h, w = n.shape[2], n.shape[3]
        rows = [abs(i) if i < 0 else (2 * (h - 1) - i if i >= h else i) for i in range(-radius, h + radius)]
        cols = [abs(j) if j < 0 else (2 * (w - 1) - j if j >= w else j) for j in range(-radius, w + radius)]
        mirrored = n[:, :, rows][:, :, :, cols]
        assert torch.equal(mirrored, padded)
        acc = torch.zeros_like(n, dtype=torch.float64)
        for a in range(2 * radius + 1):
            for b in range(2 * radius + 1):
                acc += k[a, b].double() * mirrored[:, :, a:a + h, b:b + w].double()
        assert torch.allclose(out.double(), acc, rtol=0, atol=1e-5)
        return lum * out
    return op


# --- LatentApplyOperationCFG's pre-CFG function, as sampling_function calls it ---

def guide(cond, uncond, cfg, op=None):
    skip_uncond = math.isclose(cfg, 1.0)
    conds_out = [cond.clone(), torch.zeros_like(cond) if skip_uncond else uncond.clone()]
    if op is not None:
        if len(conds_out) == 2:
            conds_out[0] = op(conds_out[0] - conds_out[1]) + conds_out[1]
        else:
            conds_out[0] = op(conds_out[0])
    cond_pred, uncond_pred = conds_out
    return uncond_pred + (cond_pred - uncond_pred) * cfg


def report(name, out, ref):
    diff = out - ref
    rel = (torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(ref)).item()
    print(f"{name:20s} {tuple(out.shape)}  max abs diff {diff.abs().max().item():.4e}  rel L2 {rel:.4e}")
    assert torch.isfinite(out).all() and rel > 1e-3, name


def main():
    g = torch.Generator().manual_seed(11)
    shape = (2, 4, 12, 16)
    x = 1.5 * torch.randn(shape, generator=g, dtype=f32)
    cond = torch.randn(shape, generator=g, dtype=f32)
    uncond = 0.8 * torch.randn(shape, generator=g, dtype=f32) + 0.4 * cond
    out = {"x": x, "cond": cond, "uncond": uncond}

    print("vs x:")
    for name, op in (("tonemap.1", tonemap_reinhard(1.0)),
                     ("tonemap.0.5", tonemap_reinhard(0.5)),
                     ("sharpen.9_1_0.1", sharpen(9, 1.0, 0.1)),
                     ("sharpen.3_0.5_1.5", sharpen(3, 0.5, 1.5))):
        y = op(x)
        report(name, y, x)
        out[name] = y

    print("vs plain CFG at the same cfg:")
    for name, cfg, op in (("cfg.tonemap", 4.0, tonemap_reinhard(1.0)),
                          ("cfg.sharpen", 4.0, sharpen(3, 0.5, 1.5)),
                          ("cfg1.tonemap", 1.0, tonemap_reinhard(1.0))):
        y = guide(cond, uncond, cfg, op)
        report(name, y, guide(cond, uncond, cfg))
        out[name] = y
    assert torch.equal(out["cfg1.tonemap"], tonemap_reinhard(1.0)(cond - 0.0) + 0.0)

    out = {k: v.to(f32).contiguous() for k, v in out.items()}
    save_file(out, OUT)
    os.chmod(OUT, 0o644)


if __name__ == "__main__":
    main()
