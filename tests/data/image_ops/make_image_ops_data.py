"""Goldens for ComfyUI's image nodes on 8-bit pictures: EmptyImage,
ImageInvert (nodes.py), ImageBlend, ImageBlur and ImageSharpen
(comfy_extras/nodes_post_processing.py), as kiln_image_empty,
kiln_image_invert, kiln_image_blend, kiln_image_blur and kiln_image_sharpen
compute them.

The rules are those files read at ComfyUI v0.3.64 (the version of the
project's shared goldens), restated here with numpy in float32 as torch
computes them: a picture is its bytes / 255 in float32 (LoadImage's rule),
a float32 tensor with a Python float works in float32 with the scalar
rounded to float32 first, each step is one float32 rounding in torch's
left-to-right order, and a result goes back to bytes by SaveImage's rule,
np.clip(255.0 * v, 0, 255).astype(np.uint8) (truncation).
  - EmptyImage fills each channel with float32(((color >> s) & 0xFF) / 255.0).
  - ImageInvert is 1.0 - v.
  - ImageBlend applies its mode (normal, multiply, screen, overlay,
    soft_light with its g(x), difference), then
    image1 * (1 - factor) + blended * factor, clamped to [0, 1]. Only
    pictures of one size: the resize of image2 to image1's size (common_upscale,
    bicubic, centre cut) is checked elsewhere.
  - ImageBlur and ImageSharpen build gaussian_kernel(2r + 1, sigma) in
    float32 (torch.linspace(-1, 1, k) as torch computes it: from both ends
    with a float32 step; d = sqrt(x^2 + y^2); exp(-d^2 / (2 sigma^2));
    over its float32 sum), Sharpen's times -(alpha * 10) with its centre
    raised by 1 - its sum, pad the picture by r with torch's 'reflect' (the
    edge pixel not repeated) and correlate each channel with the kernel
    (conv2d), keeping H x W; Sharpen clamps to [0, 1]. torch's conv2d sums
    in an order numpy cannot repeat, so the convolution here is taken in
    float64 from the float32 kernel and picture and rounded to float32 once:
    the test allows these bytes 1 level either way (and wants 99% equal).

Writes tests/data/image_ops/image_ops.safetensors (read by
tests/test_image_ops.c), pictures as U8 [H, W, 3], kernels F32:
  a [11, 13, 3]      random, holding every byte value at least once
  b [11, 13, 3]      random
  small [5, 6, 3]    random (blur radius below its 5 rows)
  empty.<rrggbb>_<w>_<h>        EmptyImage(w, h, 0xrrggbb)
  invert                        ImageInvert(a)
  blend.<mode>.<factor>         ImageBlend(a, b, factor, mode) for the six
              modes at factors 0.5, 0.8 and 1 (%g: "0.5", "0.8", "1")
  blur.<r>_<sigma>              ImageBlur(a, r, sigma) at (1, 1), (3, 0.5), (5, 2.5)
  blur_small.<r>_<sigma>        ImageBlur(small, ...) at (1, 1), (4, 2.5)
  sharpen.<r>_<sigma>_<alpha>   ImageSharpen(a, ...) at (1, 1, 1), (2, 0.7, 0.3), (4, 3, 2)
  sharpen_small.<r>_<sigma>_<alpha>  ImageSharpen(small, ...) at (2, 0.7, 0.3)
  kernel.blur.<r>_<sigma>, kernel.sharpen.<r>_<sigma>_<alpha>  their kernels
              [2r + 1, 2r + 1] F32, for reference

Run from the repository root (numpy, safetensors):
  python3 tests/data/image_ops/make_image_ops_data.py
"""
import os

import numpy as np
from safetensors.numpy import save_file

DIR = "tests/data/image_ops"
OUT = os.path.join(DIR, "image_ops.safetensors")
f32 = np.float32
MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")


# ---- pictures in and out ---------------------------------------------------

def to_float(picture):
    """LoadImage: bytes / 255.0 in float32."""
    return picture.astype(f32) / f32(255.0)


def to_bytes(v):
    """SaveImage: 255 v in float32, clipped, truncated."""
    assert v.dtype == f32
    return np.clip(f32(255.0) * v, 0, 255).astype(np.uint8)


# ---- the nodes ---------------------------------------------------------------

def empty(w, h, color):
    out = np.empty((h, w, 3), dtype=f32)
    for c, shift in enumerate((16, 8, 0)):
        out[..., c] = f32(((color >> shift) & 0xFF) / 255.0)  # a Python float, then float32
    return to_bytes(out)


def invert(picture):
    return to_bytes((f32(1.0) - to_float(picture)).astype(f32))


def soft_light_g(x):
    one = ((f32(16) * x - f32(12)) * x + f32(4)) * x
    return np.where(x <= f32(0.25), one, np.sqrt(x)).astype(f32)


def blend_mode(i1, i2, mode):
    one, two = f32(1), f32(2)
    if mode == "normal":
        return i2
    if mode == "multiply":
        return i1 * i2
    if mode == "screen":
        return one - (one - i1) * (one - i2)
    if mode == "overlay":
        return np.where(i1 <= f32(0.5), two * i1 * i2, one - two * (one - i1) * (one - i2))
    if mode == "soft_light":
        low = i1 - (one - two * i2) * i1 * (one - i1)
        high = i1 + (two * i2 - one) * (soft_light_g(i1) - i1)
        return np.where(i2 <= f32(0.5), low, high)
    if mode == "difference":
        return i1 - i2
    raise ValueError(mode)


def blend(p1, p2, factor, mode):
    assert p1.shape == p2.shape
    i1, i2 = to_float(p1), to_float(p2)
    blended = blend_mode(i1, i2, mode).astype(f32)
    out = i1 * f32(1 - factor) + blended * f32(factor)
    assert out.dtype == f32
    return to_bytes(np.clip(out, f32(0), f32(1)))


def linspace(start, end, steps):
    """torch.linspace for float32: a float32 step, the first half counted
    from start, the second from end."""
    start, end = f32(start), f32(end)
    step = (end - start) / f32(steps - 1)
    out = np.empty(steps, dtype=f32)
    for i in range(steps):
        out[i] = start + step * f32(i) if i < steps // 2 else end - step * f32(steps - 1 - i)
    return out


def gaussian_kernel(k, sigma):
    t = linspace(-1, 1, k)
    x, y = np.meshgrid(t, t, indexing="ij")
    d = np.sqrt(x * x + y * y)
    g = np.exp(-(d * d) / f32(2.0 * sigma * sigma))
    assert g.dtype == f32
    return (g / g.sum(dtype=f32)).astype(f32)


def sharpen_kernel(r, sigma, alpha):
    k = 2 * r + 1
    kernel = gaussian_kernel(k, sigma) * f32(-(alpha * 10))
    c = k // 2
    kernel[c, c] = kernel[c, c] - kernel.sum(dtype=f32) + f32(1.0)
    return kernel.astype(f32)


def correlate_reflect(v, kernel):
    """F.pad(reflect, r) then conv2d per channel, the H x W kept: in float64,
    rounded to float32 once."""
    r = kernel.shape[0] // 2
    h, w = v.shape[:2]
    assert r < h and r < w
    padded = np.pad(v.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    out = np.zeros((h, w, 3))
    kk = kernel.astype(np.float64)
    for p in range(2 * r + 1):
        for q in range(2 * r + 1):
            out += padded[p:p + h, q:q + w, :] * kk[p, q]
    return out.astype(f32)


def blur(picture, r, sigma):
    kernel = gaussian_kernel(2 * r + 1, sigma)
    return to_bytes(correlate_reflect(to_float(picture), kernel)), kernel


def sharpen(picture, r, sigma, alpha):
    kernel = sharpen_kernel(r, sigma, alpha)
    out = np.clip(correlate_reflect(to_float(picture), kernel), f32(0), f32(1))
    return to_bytes(out), kernel


# ---- checks of the restatement on its own ------------------------------------

def check_reflect():
    v = np.arange(4, dtype=np.float64)[None, :, None]
    v = np.repeat(v, 3, axis=0)
    got = np.pad(v, ((0, 0), (2, 2), (0, 0)), mode="reflect")[0, :, 0]
    assert list(got) == [2, 1, 0, 1, 2, 3, 2, 1], got  # torch's 'reflect'


def main():
    check_reflect()
    rng = np.random.default_rng(20251129)
    a = rng.integers(0, 256, size=(11, 13, 3), dtype=np.uint8)
    a.reshape(-1)[rng.permutation(a.size)[:256]] = np.arange(256, dtype=np.uint8)
    assert len(np.unique(a)) == 256
    b = rng.integers(0, 256, size=(11, 13, 3), dtype=np.uint8)
    small = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    out = {"a": a, "b": b, "small": small}

    for color, w, h in ((0xFF8000, 13, 11), (0x123456, 1, 1), (0xFFFFFF, 6, 5), (0x000000, 2, 3),
                        (0x41BF7F, 5, 2)):
        out["empty.%06x_%d_%d" % (color, w, h)] = empty(w, h, color)

    out["invert"] = invert(a)

    for mode in MODES:
        for factor in (0.5, 0.8, 1.0):
            out["blend.%s.%s" % (mode, format(factor, "g"))] = blend(a, b, factor, mode)

    def blur_case(prefix, picture, r, sigma):
        tag = "%d_%s" % (r, format(sigma, "g"))
        out["%s.%s" % (prefix, tag)], kernel = blur(picture, r, sigma)
        out["kernel.blur.%s" % tag] = kernel

    def sharpen_case(prefix, picture, r, sigma, alpha):
        tag = "%d_%s_%s" % (r, format(sigma, "g"), format(alpha, "g"))
        out["%s.%s" % (prefix, tag)], kernel = sharpen(picture, r, sigma, alpha)
        out["kernel.sharpen.%s" % tag] = kernel

    for r, sigma in ((1, 1.0), (3, 0.5), (5, 2.5)):
        blur_case("blur", a, r, sigma)
    for r, sigma in ((1, 1.0), (4, 2.5)):
        blur_case("blur_small", small, r, sigma)
    for r, sigma, alpha in ((1, 1.0, 1.0), (2, 0.7, 0.3), (4, 3.0, 2.0)):
        sharpen_case("sharpen", a, r, sigma, alpha)
    sharpen_case("sharpen_small", small, 2, 0.7, 0.3)

    for k, v in out.items():
        assert v.dtype in (f32, np.uint8), k
        out[k] = np.ascontiguousarray(v)
    save_file(out, OUT)
    os.chmod(OUT, 0o644)


if __name__ == "__main__":
    main()
