"""Goldens for ComfyUI's ImageAddNoise (comfy_extras/nodes_images.py): the
node's line run as it is with torch on the pictures `a` and `b` of
image_ops.safetensors (bytes / 255 in float32, LoadImage's rule):
  torch.clip(image + strength * torch.randn(image.size(), generator=torch.manual_seed(seed)), 0, 1)
on the batch (B, H, W, 3) at once, back to bytes by SaveImage's rule,
np.clip(255.0 * v, 0, 255).astype(np.uint8).

Writes tests/data/image_ops/add_noise.safetensors (read by
tests/test_image_ops.c), U8 [B, H, W, 3]:
  noise.a.<seed>.<strength>   a alone: seeds 0 and 123456789 at 0.5, seed 42 at 0.13 and 1
  noise.ab.7.0.3              the batch (a, b), one draw for both

Run from the repository root (torch, numpy, safetensors):
  python3 tests/data/image_ops/make_add_noise_data.py
"""
import numpy as np
import torch
from safetensors.numpy import load_file, save_file

pictures = load_file("tests/data/image_ops/image_ops.safetensors")


def add_noise(batch, seed, strength):
    image = torch.from_numpy(np.stack(batch).astype(np.float32) / 255.0)
    generator = torch.manual_seed(seed)
    s = torch.clip(image + strength * torch.randn(image.size(), generator=generator, device="cpu").to(image), 0.0, 1.0)
    return np.clip(255.0 * s.numpy(), 0, 255).astype(np.uint8)


out = {}
for seed, strength in ((0, 0.5), (123456789, 0.5), (42, 0.13), (42, 1.0)):
    out[f"noise.a.{seed}.{strength:g}"] = add_noise([pictures["a"]], seed, strength)
out["noise.ab.7.0.3"] = add_noise([pictures["a"], pictures["b"]], 7, 0.3)
save_file(out, "tests/data/image_ops/add_noise.safetensors")
