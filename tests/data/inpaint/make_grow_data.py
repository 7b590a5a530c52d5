"""Goldens for VAEEncodeForInpaint's grow_mask_by: the noise mask it makes of
mask_20x17.png's red channel for a picture of 20x17 and a VAE that shrinks
by 2 (the tiny SD 1.x model's), at grows of 0 to 13.

The steps are ComfyUI's nodes.py VAEEncodeForInpaint.encode (read at ComfyUI
v0.3.64), restated with numpy: the mask (LoadImageMask: red / 255 in
float32) stretched bilinearly to the picture's size (the same size here, so
unchanged), cut as the picture is to a multiple of the VAE's factor (rows
from (17 % 2) // 2 = 0: 16 x 20), then for grow_mask_by g > 0 a g x g box of
ones over the mask rounded, zero-padded by ceil((g - 1) / 2), clamped to
[0, 1]; for g = 0 the mask itself; cut to the picture's size and rounded
(numpy's and torch's round both go half to even).

Writes tests/data/inpaint/grow.safetensors (read by tests/test_inpaint.c):
  grow.<g>  [16, 20] for g in 0, 1, 2, 3, 6, 8, 13

Run from the repository root: python3 tests/data/inpaint/make_grow_data.py
(numpy, safetensors and Pillow).
"""
import math

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

OUT = "tests/data/inpaint/grow.safetensors"
FACTOR = 2


def box_sum(mask, g):
    """conv2d of mask with a g x g kernel of ones, zero padding p on each side."""
    p = math.ceil((g - 1) / 2)
    h, w = mask.shape
    padded = np.zeros((h + 2 * p, w + 2 * p), np.float32)
    padded[p:p + h, p:p + w] = mask
    oh, ow = h + 2 * p - g + 1, w + 2 * p - g + 1
    out = np.zeros((oh, ow), np.float32)
    for dy in range(g):
        for dx in range(g):
            out += padded[dy:dy + oh, dx:dx + ow]
    return out


def main():
    picture = Image.open("tests/data/inpaint/mask_20x17.png").convert("RGBA")
    mask = np.array(picture.getchannel("R")).astype(np.float32) / np.float32(255.0)
    h, w = mask.shape
    x, y = h // FACTOR * FACTOR, w // FACTOR * FACTOR
    x0, y0 = (h % FACTOR) // 2, (w % FACTOR) // 2
    mask = mask[x0:x0 + x, y0:y0 + y]
    out = {}
    for g in (0, 1, 2, 3, 6, 8, 13):
        grown = mask if g == 0 else np.clip(box_sum(np.round(mask), g), 0, 1)
        out[f"grow.{g}"] = np.ascontiguousarray(np.round(grown[:x, :y]), dtype=np.float32)
    save_file(out, OUT)


if __name__ == "__main__":
    main()
