"""Writes kiln's test data for ComfyUI's Canny node: a picture with flat
shapes, soft gradients and a noisy corner (canny_61x47.png, seeded numpy),
and the node's edges for it and for controlnet/hint_37x23.png (random
pixels) at three pairs of thresholds.

Origin: kornia 0.9.0's filters.canny on PyTorch (CPU, float32), called as
comfy_extras/nodes_canny.py calls it: the picture as LoadImage makes it
(bytes / 255 in float32, (1,H,W,3)), moved to (1,3,H,W), canny(image, low,
high)[1] repeated over three channels; as bytes the edges are 0 or 255.

  canny.safetensors
      <picture>.<low>_<high>: (H,W) uint8, 255 on an edge, for pictures
      "shapes" (canny_61x47.png) and "hint" (controlnet/hint_37x23.png) and
      thresholds 0.4_0.8 (the node's defaults), 0.1_0.3 and 0.6_1.2

Run from the repository root with torch, kornia and Pillow installed:
  python3 tests/data/image_ops/make_canny_data.py
"""
import numpy as np
import torch
from kornia.filters import canny
from PIL import Image
from safetensors.torch import save_file

OUT = "tests/data/image_ops"
THRESHOLDS = [(0.4, 0.8), (0.1, 0.3), (0.6, 1.2)]


def shapes_picture():
    h, w = 47, 61
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img[...] = (0.2, 0.3, 0.5)
    img[(x - 20) ** 2 + (y - 20) ** 2 < 12 ** 2] = (0.9, 0.1, 0.1)  # a flat disc
    box = (x > 34) & (x < 55) & (y > 8) & (y < 30)
    img[box] = np.stack([x[box] / w, 0.5 + 0 * x[box], y[box] / h], -1)  # a box of gradients
    img[(y > 36) & (x < 30)] = (1.0, 1.0, 1.0)  # a white band
    rng = np.random.default_rng(61)
    noisy = (y > 32) & (x > 40)
    img[noisy] = rng.random((noisy.sum(), 3))  # a noisy corner
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def node(pixels, low, high):
    image = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None]
    edges = canny(image.movedim(-1, 1), low, high)[1].repeat(1, 3, 1, 1).movedim(1, -1)
    out = np.clip(255.0 * edges[0].numpy(), 0, 255).astype(np.uint8)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    return torch.from_numpy(out[..., 0].copy())


def main():
    Image.fromarray(shapes_picture()).save(f"{OUT}/canny_61x47.png")
    pictures = {"shapes": f"{OUT}/canny_61x47.png", "hint": "tests/data/controlnet/hint_37x23.png"}
    golden = {}
    for name, path in pictures.items():
        pixels = np.array(Image.open(path).convert("RGB"))
        for low, high in THRESHOLDS:
            edges = node(pixels, low, high)
            golden[f"{name}.{low:g}_{high:g}"] = edges
            print(name, low, high, int((edges > 0).sum()), "edge pixels of", edges.numel())
    save_file(golden, f"{OUT}/canny.safetensors")


if __name__ == "__main__":
    main()
