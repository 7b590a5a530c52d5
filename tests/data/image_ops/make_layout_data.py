"""Goldens for ComfyUI's image nodes that lay pictures out
(comfy_extras/nodes_images.py at ComfyUI v0.3.64's successors, the nodes
upstreamed from KJNodes): ImageStitch, ResizeAndPadImage and
ImageScaleToMaxDimension, as kiln_image_stitch, kiln_image_resize_and_pad and
kiln_image_scale_to_max_dimension compute them.

Each node is restated here with torch on the pictures' bytes / 255 in
float32 (LoadImage's rule), its resize ComfyUI's common_upscale without a
crop (torch's interpolate for nearest-exact, bilinear, bicubic and area;
"lanczos" through Pillow on the bytes, np.clip(255 * v).astype(uint8), as
comfy.utils.lanczos does), and the result back to bytes by SaveImage's rule,
np.clip(255.0 * v, 0, 255).astype(np.uint8) (truncation):
  - ImageStitch: image2 matched to image1's height (right, left: width
    int(h1 * w2 / h2)) or width (down, up: height int(w1 / (w2 / h2))) by
    lanczos, or else the smaller padded evenly (top/left half rounded down)
    with 1.0 for white, else 0.0; spacing rounded up to even, filled with the
    colour; concatenated image2 first for left and up.
  - ResizeAndPadImage: scale = min(tw / w, th / h), the picture resized to
    int(w * scale) x int(h * scale), pasted at ((tw - nw) // 2, (th - nh) // 2)
    on 1.0 (white) or 0.0.
  - ImageScaleToMaxDimension: the longer side to `largest`, the other
    round(side / longer * largest) (Python's round), then resized.

Writes tests/data/image_ops/layout.safetensors (read by
tests/test_image_ops.c), pictures as U8 [H, W, 3]:
  a [11, 13, 3], b [7, 5, 3]   random pictures
  stitch.<direction>.<match>.<spacing>.<color>   ImageStitch(a, b, ...)
  pad.<method>.<w>x<h>.<color>                   ResizeAndPadImage(a, ...)
  max.<a|b>.<method>.<largest>                   ImageScaleToMaxDimension

Run from the repository root (torch, numpy, Pillow, safetensors):
  python3 tests/data/image_ops/make_layout_data.py
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file

rng = np.random.default_rng(20261129)
pictures = {"a": rng.integers(0, 256, (11, 13, 3), dtype=np.uint8),
            "b": rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)}


def unit(img):  # bytes -> [1, H, W, 3] float32, LoadImage's rule
    return torch.from_numpy(img.astype(np.float32) / 255.0)[None]


def to_bytes(t):  # SaveImage's rule
    return np.clip(255.0 * t[0].numpy(), 0, 255).astype(np.uint8)


def upscale(image, width, height, method):  # common_upscale(..., crop="disabled") on [B, H, W, C]
    samples = image.movedim(-1, 1)
    if method == "lanczos":
        out = []
        for s in samples:
            pil = Image.fromarray(np.clip(255.0 * s.movedim(0, -1).numpy(), 0, 255).astype(np.uint8))
            pil = pil.resize((width, height), resample=Image.Resampling.LANCZOS)
            out.append(torch.from_numpy(np.array(pil).astype(np.float32) / 255.0).movedim(-1, 0))
        result = torch.stack(out)
    else:
        result = F.interpolate(samples, size=(height, width), mode=method)
    return result.movedim(1, -1)


def stitch(image1, image2, direction, match, spacing, color):
    if match:
        h1, w1 = image1.shape[1:3]
        h2, w2 = image2.shape[1:3]
        aspect = w2 / h2
        if direction in ("left", "right"):
            th, tw = h1, int(h1 * aspect)
        else:
            tw, th = w1, int(w1 / aspect)
        image2 = upscale(image2, tw, th, "lanczos")
    colors = {"white": 1.0, "black": 0.0, "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
    value = colors[color]
    if not match:
        pad = value if not isinstance(value, tuple) else 0.0
        h1, w1 = image1.shape[1:3]
        h2, w2 = image2.shape[1:3]
        if direction in ("left", "right"):
            th = max(h1, h2)
            if h1 < th:
                image1 = F.pad(image1, (0, 0, 0, 0, (th - h1) // 2, th - h1 - (th - h1) // 2), value=pad)
            if h2 < th:
                image2 = F.pad(image2, (0, 0, 0, 0, (th - h2) // 2, th - h2 - (th - h2) // 2), value=pad)
        else:
            tw = max(w1, w2)
            if w1 < tw:
                image1 = F.pad(image1, (0, 0, (tw - w1) // 2, tw - w1 - (tw - w1) // 2), value=pad)
            if w2 < tw:
                image2 = F.pad(image2, (0, 0, (tw - w2) // 2, tw - w2 - (tw - w2) // 2), value=pad)
    images = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing > 0:
        spacing += spacing % 2
        if direction in ("left", "right"):
            shape = (1, max(image1.shape[1], image2.shape[1]), spacing, 3)
        else:
            shape = (1, spacing, max(image1.shape[2], image2.shape[2]), 3)
        gap = torch.full(shape, 0.0)
        if isinstance(value, tuple):
            for i, c in enumerate(value):
                gap[..., i] = c
        else:
            gap[..., :3] = value
        images.insert(1, gap)
    return torch.cat(images, dim=2 if direction in ("left", "right") else 1)


def resize_and_pad(image, tw, th, color, method):
    _, h, w, c = image.shape
    scale = min(tw / w, th / h)
    nw, nh = int(w * scale), int(h * scale)
    resized = upscale(image, nw, nh, method).movedim(-1, 1)
    padded = torch.full((1, c, th, tw), 0.0 if color == "black" else 1.0)
    y, x = (th - nh) // 2, (tw - nw) // 2
    padded[:, :, y:y + nh, x:x + nw] = resized
    return padded.permute(0, 2, 3, 1)


def scale_to_max(image, method, largest):
    h, w = image.shape[1:3]
    if h > w:
        w, h = round((w / h) * largest), largest
    elif w > h:
        h, w = round((h / w) * largest), largest
    else:
        h = w = largest
    return upscale(image, w, h, method)


out = dict(pictures)
a, b = unit(pictures["a"]), unit(pictures["b"])
for direction in ("right", "down", "left", "up"):
    out[f"stitch.{direction}.1.0.white"] = to_bytes(stitch(a, b, direction, True, 0, "white"))
    out[f"stitch.{direction}.0.3.red"] = to_bytes(stitch(a, b, direction, False, 3, "red"))
out["stitch.right.0.0.white"] = to_bytes(stitch(a, b, "right", False, 0, "white"))
out["stitch.down.1.2.blue"] = to_bytes(stitch(a, b, "down", True, 2, "blue"))
out["stitch.up.0.4.black"] = to_bytes(stitch(a, b, "up", False, 4, "black"))
for method in ("lanczos", "bilinear", "bicubic", "nearest-exact", "area"):
    out[f"pad.{method}.17x9.white"] = to_bytes(resize_and_pad(a, 17, 9, "white", method))
    out[f"pad.{method}.6x20.black"] = to_bytes(resize_and_pad(a, 6, 20, "black", method))
    out[f"max.a.{method}.20"] = to_bytes(scale_to_max(a, method, 20))
    out[f"max.b.{method}.9"] = to_bytes(scale_to_max(b, method, 9))
out["max.b.bicubic.3"] = to_bytes(scale_to_max(b, "bicubic", 3))  # 5/7*3 = 2.14: rounds to 2
save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, "tests/data/image_ops/layout.safetensors")
