"""Writes kiln's test data for ComfyUI's ImageMorphology node: its pictures
of canny_61x47.png (flat shapes, gradients, a noisy corner) for every
operation at kernel sizes 3, 4 (even: the window off centre) and 9.

Origin: kornia 0.9.0's morphology on PyTorch (CPU, float32), called as
comfy_extras/nodes_morphology.py calls it (a kernel of ones, the picture as
LoadImage makes it, moved to NCHW), back to bytes by SaveImage's rule
(clip(255 x, 0, 255) cast to uint8).

  morphology.safetensors
      <operation>.<kernel>: (H,W,3) uint8

Run from the repository root with torch, kornia and Pillow installed:
  python3 tests/data/image_ops/make_morphology_data.py
"""
import numpy as np
import torch
from kornia.morphology import bottom_hat, closing, dilation, erosion, gradient, opening, top_hat
from PIL import Image
from safetensors.torch import save_file

OUT = "tests/data/image_ops"
OPERATIONS = {"erode": erosion, "dilate": dilation, "open": opening, "close": closing, "gradient": gradient,
              "top_hat": top_hat, "bottom_hat": bottom_hat}


def main():
    pixels = np.array(Image.open(f"{OUT}/canny_61x47.png").convert("RGB")).astype(np.float32) / 255.0
    image = torch.from_numpy(pixels)[None]
    golden = {}
    for name, op in OPERATIONS.items():
        for k in (3, 4, 9):
            out = op(image.movedim(-1, 1), torch.ones(k, k)).movedim(1, -1)[0].numpy()
            golden[f"{name}.{k}"] = torch.from_numpy(np.ascontiguousarray(np.clip(255.0 * out, 0, 255).astype(np.uint8)))
    save_file(golden, f"{OUT}/morphology.safetensors")
    print(len(golden), "pictures")


if __name__ == "__main__":
    main()
