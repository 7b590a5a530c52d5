"""Writes kiln's test data for ComfyUI's FluxKontextImageScale: the picture
cut to the preferred Kontext size nearest its aspect ratio (common_upscale's
centre crop) and resized by PIL's LANCZOS on 8-bit pixels, as
comfy.utils.lanczos does (LoadImage's floats times 255, clipped, cast to
uint8 first).

Origin: ComfyUI's FluxKontextImageScale and comfy.utils.common_upscale /
lanczos restated with numpy and Pillow (PIL.Image.resize, LANCZOS).

  golden.safetensors
      lanczos.down (29,37,3) uint8: ip_adapter/picture_251x233.png resized
          to 37x29 whole (no crop: the same aspect ratio within rounding is
          not asked; common_upscale's crop is kiln_image_resize_center's,
          tested apart);
      lanczos.up (45,61,3): controlnet/hint_37x23.png resized to 61x45;
      scale.size (2): the width and height FluxKontextImageScale picks for
          controlnet/hint_37x23.png (1328x800); scale.rows (800,2) int64:
          each row of its output's byte sum and its sum with byte i of the
          row weighted by i % 13 + 1 (exact in float32)

Run from the repository root with numpy, Pillow, torch and safetensors:
  python3 tests/data/kontext/make_kontext_scale_data.py
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
from sd_common import center_margins  # noqa: E402
RESOLUTIONS = [(672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
               (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
               (1456, 720), (1504, 688), (1568, 672)]


def load(path):
    """LoadImage: uint8 / 255 in float32, (H,W,3)."""
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0


def lanczos(image, width, height):
    """comfy.utils.lanczos on one (H,W,3) float picture."""
    pixels = np.clip(255.0 * image, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((width, height), resample=Image.Resampling.LANCZOS))


def center_crop(image, width, height):
    """common_upscale's crop "center" of an (H,W,3) picture."""
    old_h, old_w = image.shape[:2]
    x, y = center_margins(old_w, old_h, width, height)
    return image[y:old_h - y, x:old_w - x]


def main():
    g = {"lanczos.down": lanczos(load(f"{DATA}/ip_adapter/picture_251x233.png"), 37, 29),
         "lanczos.up": lanczos(load(f"{DATA}/controlnet/hint_37x23.png"), 61, 45)}
    hint = load(f"{DATA}/controlnet/hint_37x23.png")
    aspect = hint.shape[1] / hint.shape[0]
    _, width, height = min((abs(aspect - w / h), w, h) for w, h in RESOLUTIONS)
    out = lanczos(center_crop(hint, width, height), width, height).astype(np.int64).reshape(height, -1)
    weights = np.arange(out.shape[1], dtype=np.int64) % 13 + 1  # sums stay exact in float32
    g["scale.size"] = np.array([width, height], dtype=np.int64)
    g["scale.rows"] = np.stack([out.sum(1), (out * weights).sum(1)], axis=1)
    save_file({k: torch.from_numpy(np.array(v)) for k, v in g.items()}, f"{HERE}/golden.safetensors")
    print({k: v.shape for k, v in g.items()}, width, height)


if __name__ == "__main__":
    main()
