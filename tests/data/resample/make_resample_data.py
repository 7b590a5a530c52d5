"""Writes tests/data/resample/golden.safetensors: ComfyUI's LatentUpscaleBy
on a random latent, as torch computes it.

Origin: PyTorch (CPU, float32) torch.nn.functional.interpolate with each
method and no align_corners, at the sizes LatentUpscaleBy asks for
(round(side * scale), Python's round), as ComfyUI's common_upscale calls it
with crop "disabled".

  latent                      (2,4,7,9) random normal
  <method>.<scale>            the latent resized, for nearest-exact, bilinear
                              and bicubic at scales 1.5 (7x9 -> 10x14: both
                              halves round to even), 2 and 0.75

And tests/data/resample/latent_upscale.golden.safetensors: ComfyUI's
LatentUpscale (width and height in pixels, 0 keeping the aspect ratio, each
at least 64; the latent's sides those // 8; crop "center" cutting the
largest centred part of the new aspect ratio first, Python's round) on the
same latent, restated:

  <method>.<width>x<height>.<crop>   for bilinear 96x64 disabled (8x12),
                              bicubic 64x96 center (12x8 of the middle 5
                              columns), nearest-exact 0x80 disabled (10x12:
                              the width round(9 * 80 / 7) = 103) and
                              bilinear 40x0 center (8x8: both at least 64)

And tests/data/resample/image_scale.golden.safetensors: ComfyUI's ImageScale
and ImageScaleBy on tests/data/controlnet/hint_37x23.png (LoadImage's
floats, u8 / 255), each result as SaveImage stores it (255 x clipped to
[0, 255] and truncated), in bytes (H, W, 3) uint8:

  by.bilinear.1.5             ImageScaleBy: round(37 * 1.5) = 56 (half to
                              even) by round(23 * 1.5) = 34
  bicubic.30x30.center        ImageScale, the centre cut
  nearest-exact.0x40.disabled ImageScale, the width round(37 * 40 / 23) = 64
  lanczos.20x12.disabled      comfy.utils.lanczos: Pillow's LANCZOS on the
                              bytes

And tests/data/resample/area.golden.safetensors: the "area" method
(torch's adaptive average pooling) on the same latent and picture:

  latent.<scale>              LatentUpscaleBy area at 0.5 (7x9 -> 4x4:
                              overlapping windows), 1.5 (10x14: windows of
                              one and two sources) and 2
  image.by.0.6                ImageScaleBy area: 22 by 14, SaveImage's bytes

And tests/data/resample/bislerp.golden.safetensors: ComfyUI's bislerp
(comfy/utils.py), restated below, on the same latent:

  latent.<scale>              LatentUpscaleBy bislerp at 1.5 (10x14) and
                              0.75 (5x7)
  latent.<w>x<h>.center       LatentUpscale bislerp 96x64 with the centre cut
  zeros.2.0                   a latent whose left half is zero (vectors of
                              no length) and whose right half has its
                              vectors' signs flipped by column (opposite
                              neighbours), at 2

Run from the repository root: python3 tests/data/resample/make_resample_data.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sd_common import center_margins  # noqa: E402


def main():
    torch.manual_seed(1127)
    latent = torch.randn(2, 4, 7, 9)
    out = {"latent": latent}
    for method in ["nearest-exact", "bilinear", "bicubic"]:
        for scale in [1.5, 2.0, 0.75]:
            size = (round(latent.shape[2] * scale), round(latent.shape[3] * scale))
            out[f"{method}.{scale}"] = F.interpolate(latent, size=size, mode=method)
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/resample/golden.safetensors")
    print({k: tuple(v.shape) for k, v in out.items()})
    upscaled = {f"{m}.{w}x{h}.{c}": latent_upscale(latent, m, w, h, c)
                for m, w, h, c in [("bilinear", 96, 64, "disabled"), ("bicubic", 64, 96, "center"),
                                   ("nearest-exact", 0, 80, "disabled"), ("bilinear", 40, 0, "center")]}
    save_file({k: v.contiguous() for k, v in upscaled.items()}, "tests/data/resample/latent_upscale.golden.safetensors")
    print({k: tuple(v.shape) for k, v in upscaled.items()})
    picture = np.array(Image.open("tests/data/controlnet/hint_37x23.png").convert("RGB"))
    image = torch.from_numpy(picture.astype(np.float32) / 255.0)[None].movedim(-1, 1)  # LoadImage, (1,3,H,W)
    scaled = {"by.bilinear.1.5": common_upscale(image, round(37 * 1.5), round(23 * 1.5), "bilinear", "disabled"),
              "bicubic.30x30.center": common_upscale(image, 30, 30, "bicubic", "center"),
              "nearest-exact.0x40.disabled": common_upscale(image, round(37 * 40 / 23), 40, "nearest-exact",
                                                            "disabled"),
              "lanczos.20x12.disabled": common_upscale(image, 20, 12, "lanczos", "disabled")}
    saved = {k: torch.from_numpy(np.clip(255.0 * v[0].movedim(0, -1).numpy(), 0, 255).astype(np.uint8))
             for k, v in scaled.items()}  # SaveImage
    saved = {k: v.contiguous() for k, v in saved.items()}
    save_file(saved, "tests/data/resample/image_scale.golden.safetensors")
    print({k: tuple(v.shape) for k, v in saved.items()})
    area = {f"latent.{scale}": F.interpolate(latent, size=(round(7 * scale), round(9 * scale)), mode="area")
            for scale in [0.5, 1.5, 2.0]}
    shrunk = common_upscale(image, round(37 * 0.6), round(23 * 0.6), "area", "disabled")
    area["image.by.0.6"] = torch.from_numpy(np.clip(255.0 * shrunk[0].movedim(0, -1).numpy(), 0, 255).astype(np.uint8))
    save_file({k: v.contiguous() for k, v in area.items()}, "tests/data/resample/area.golden.safetensors")
    print({k: tuple(v.shape) for k, v in area.items()})
    edges = latent[:1].clone()
    edges[:, :, :, :4] = 0
    edges[:, :, :, 4::2] *= -1
    slerped = {"latent.1.5": bislerp(latent, 14, 10), "latent.0.75": bislerp(latent, 7, 5),
               "latent.96x64.center": latent_upscale(latent, "bislerp", 96, 64, "center"),
               "zeros.2.0": bislerp(edges, 18, 14), "zeros": edges}
    save_file({k: v.contiguous() for k, v in slerped.items()}, "tests/data/resample/bislerp.golden.safetensors")
    print({k: tuple(v.shape) for k, v in slerped.items()})


def spherical(v1, v2, t):
    """Vectors (rows of v1, v2) moved from v1 toward v2 by t along the great
    circle of their directions, their length going linearly; a zero vector
    has no direction; nearly equal directions keep v1, nearly opposite ones
    take the straight line, as ComfyUI's bislerp's slerp does."""
    len1, len2 = v1.norm(dim=-1, keepdim=True), v2.norm(dim=-1, keepdim=True)
    dir1 = torch.where(len1 == 0, torch.zeros_like(v1), v1 / len1)
    dir2 = torch.where(len2 == 0, torch.zeros_like(v2), v2 / len2)
    cos = (dir1 * dir2).sum(1)
    angle = torch.acos(cos)
    sin = torch.sin(angle)
    w1 = (torch.sin((1.0 - t.squeeze(1)) * angle) / sin).unsqueeze(1)
    w2 = (torch.sin(t.squeeze(1) * angle) / sin).unsqueeze(1)
    out = (w1 * dir1 + w2 * dir2) * (len1 * (1.0 - t) + len2 * t)
    out = torch.where((cos > 1 - 1e-5).unsqueeze(1), v1, out)
    return torch.where((cos < 1e-5 - 1).unsqueeze(1), v1 * (1.0 - t) + v2 * t, out)


def neighbours(n_old, n_new):
    """Each target's two sources and how far it lies toward the second: the
    bilinear resize of the ramp 0..n-1 and of 1..n-1, n-1."""
    ramp = torch.arange(n_old, dtype=torch.float32).reshape(1, 1, 1, -1)
    at = F.interpolate(ramp, size=(1, n_new), mode="bilinear").reshape(-1)
    nxt = ramp + 1
    nxt[..., -1] -= 1
    at2 = F.interpolate(nxt, size=(1, n_new), mode="bilinear").reshape(-1)
    return at.to(torch.int64), at2.to(torch.int64), at - at.floor()


def bislerp(samples, width, height):
    """ComfyUI's bislerp: along the width, then the height, each pixel's
    channel vector slerped between its two bilinear neighbours."""
    n, c, h, w = samples.shape
    first, second, t = neighbours(w, width)
    a = samples[:, :, :, first].permute(0, 2, 3, 1).reshape(-1, c)
    b = samples[:, :, :, second].permute(0, 2, 3, 1).reshape(-1, c)
    rows = spherical(a, b, t.repeat(n * h).reshape(-1, 1)).reshape(n, h, width, c).permute(0, 3, 1, 2)
    first, second, t = neighbours(h, height)
    a = rows[:, :, first, :].permute(0, 2, 3, 1).reshape(-1, c)
    b = rows[:, :, second, :].permute(0, 2, 3, 1).reshape(-1, c)
    t = t.reshape(-1, 1).repeat(1, width).reshape(-1).repeat(n).reshape(-1, 1)
    return spherical(a, b, t).reshape(n, height, width, c).permute(0, 3, 1, 2)


def common_upscale(samples, width, height, method, crop):
    """comfy.utils.common_upscale on (N,C,H,W); lanczos as comfy.utils.lanczos (Pillow on the bytes)."""
    s = samples
    if crop == "center":
        old_width, old_height = samples.shape[-1], samples.shape[-2]
        x, y = center_margins(old_width, old_height, width, height)
        s = samples.narrow(-2, y, old_height - y * 2).narrow(-1, x, old_width - x * 2)
    if method == "bislerp":
        return bislerp(s, width, height)
    if method != "lanczos":
        return F.interpolate(s, size=(height, width), mode=method)
    images = [Image.fromarray(np.clip(255.0 * i.movedim(0, -1).numpy(), 0, 255).astype(np.uint8)) for i in s]
    images = [i.resize((width, height), resample=Image.Resampling.LANCZOS) for i in images]
    return torch.stack([torch.from_numpy(np.array(i).astype(np.float32) / 255.0).movedim(-1, 0) for i in images])


def latent_upscale(samples, method, width, height, crop):
    """LatentUpscale's sizes, then common_upscale."""
    if width == 0:
        height = max(64, height)
        width = max(64, round(samples.shape[-1] * height / samples.shape[-2]))
    elif height == 0:
        width = max(64, width)
        height = max(64, round(samples.shape[-2] * width / samples.shape[-1]))
    else:
        width, height = max(64, width), max(64, height)
    return common_upscale(samples, width // 8, height // 8, method, crop)


if __name__ == "__main__":
    main()
