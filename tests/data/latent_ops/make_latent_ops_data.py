"""Goldens for ComfyUI's latent nodes: LatentComposite, LatentCompositeMasked, LatentBlend,
LatentAdd, LatentSubtract, LatentMultiply, LatentInterpolate, LatentBatch,
LatentCrop, LatentFlip and LatentRotate, on latents of the same size (the
resize where sizes differ is LatentUpscale's, checked in its own tests).

The math is ComfyUI's nodes.py and comfy_extras/nodes_latent.py (read at
ComfyUI 0.8.1), restated with numpy in float32 as torch computes it,
Python's slicing included (LatentComposite's feather past the size of what
it pastes picks rows from the end, as torch's negative slices do).

Writes tests/data/latent_ops/latent_ops.safetensors (read by
tests/test_latent_ops.c):
  a [2, 4, 10, 12], b [2, 4, 10, 12], one [1, 4, 10, 12], small [1, 4, 3, 5]
  composite.<x>_<y>_<feather>  LatentComposite(a, small) at latent x, y
  composite_big.<x>_<y>_<feather>  LatentComposite(a, b) (b cut to fit)
  masked.<x>_<y>  LatentCompositeMasked(a, small) at latent x, y without a
              mask; masked_mask.<x>_<y> with mask_3x5 (the source's size)
  blend       LatentBlend(a, one, 0.3)
  add, subtract  LatentAdd(a, one), LatentSubtract(a, b)
  multiply    LatentMultiply(a, -1.7)
  interpolate LatentInterpolate(a[:1], b[:1], 0.35)
  crop.<x>_<y>_<w>_<h>  LatentCrop(a) (latent pixels)
  flip.x, flip.y, rotate.<k>  LatentFlip, LatentRotate (k quarter turns)

Run from the repository root: python3 tests/data/latent_ops/make_latent_ops_data.py
"""
import numpy as np
from safetensors.numpy import save_file

OUT = "tests/data/latent_ops/latent_ops.safetensors"
f32 = np.float32


def composite(to, frm, x, y, feather):
    s = to.copy()
    frm = frm[:, :, :to.shape[2] - y, :to.shape[3] - x]
    h, w = frm.shape[2], frm.shape[3]
    if feather == 0:
        s[:, :, y:y + h, x:x + w] = frm
        return s
    mask = np.ones_like(frm)
    for t in range(feather):
        f = f32((1.0 / feather) * (t + 1))
        if y != 0:
            mask[:, :, t:1 + t, :] *= f
        if y + h < to.shape[2]:
            mask[:, :, mask.shape[2] - 1 - t:mask.shape[2] - t, :] *= f
        if x != 0:
            mask[:, :, :, t:1 + t] *= f
        if x + w < to.shape[3]:
            mask[:, :, :, mask.shape[3] - 1 - t:mask.shape[3] - t] *= f
    rev = np.ones_like(mask) - mask
    s[:, :, y:y + h, x:x + w] = frm * mask + s[:, :, y:y + h, x:x + w] * rev
    return s


def composite_masked(destination, source, x, y, mask=None, multiplier=8):
    """comfy_extras/nodes_mask.py's composite without resize_source, the mask
    already the source's size (the interpolation to it the identity)."""
    destination = destination.copy()
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[3] * multiplier, min(x, destination.shape[3] * multiplier))
    y = max(-source.shape[2] * multiplier, min(y, destination.shape[2] * multiplier))
    left, top = x // multiplier, y // multiplier
    right, bottom = left + source.shape[3], top + source.shape[2]
    if mask is None:
        mask = np.ones_like(source)
    else:
        assert mask.shape == source.shape[2:]
        mask = np.broadcast_to(mask[None, None], source.shape)
    visible_width, visible_height = destination.shape[3] - left + min(0, x), destination.shape[2] - top + min(0, y)
    mask = mask[:, :, :visible_height, :visible_width]
    inverse = np.ones_like(mask) - mask
    source_portion = mask * source[:, :, :visible_height, :visible_width]
    destination_portion = inverse * destination[:, :, top:bottom, left:right]
    destination[:, :, top:bottom, left:right] = source_portion + destination_portion
    return destination


def repeat_to_batch(t, batch):
    if t.shape[0] > batch:
        return t[:batch]
    if t.shape[0] < batch:
        return np.concatenate([t] * -(-batch // t.shape[0]))[:batch]
    return t


def nan_to_num(v):
    return np.nan_to_num(v, nan=0.0, posinf=np.finfo(f32).max, neginf=np.finfo(f32).min)


def interpolate(s1, s2, ratio):
    # per image, as the node runs on one (its norms over dim 1 broadcast only for a batch of 1)
    m1 = np.sqrt(np.sum(s1 * s1, axis=1, dtype=f32)).astype(f32)
    m2 = np.sqrt(np.sum(s2 * s2, axis=1, dtype=f32)).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        u1 = nan_to_num(s1 / m1)
        u2 = nan_to_num(s2 / m2)
        t = u1 * f32(ratio) + u2 * f32(1.0 - ratio)
        mt = np.sqrt(np.sum(t * t, axis=1, dtype=f32)).astype(f32)
        st = nan_to_num(t / mt)
    return (st * (m1 * f32(ratio) + m2 * f32(1.0 - ratio))).astype(f32)


def crop(s, x, y, width, height):
    if x > s.shape[3] - 8:
        x = s.shape[3] - 8
    if y > s.shape[2] - 8:
        y = s.shape[2] - 8
    return s[:, :, y:y + height, x:x + width]


def main():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 4, 10, 12)).astype(f32)
    b = rng.standard_normal((2, 4, 10, 12)).astype(f32)
    one = rng.standard_normal((1, 4, 10, 12)).astype(f32)
    small = rng.standard_normal((1, 4, 3, 5)).astype(f32)
    a[0, :, 2, 3] = 0.0  # a pixel whose channel vector is 0 (LatentInterpolate's nan_to_num)
    out = {"a": a, "b": b, "one": one, "small": small}
    for x, y, feather in ((0, 0, 0), (4, 2, 0), (4, 2, 1), (9, 8, 2), (0, 3, 2), (2, 2, 5)):
        out[f"composite.{x}_{y}_{feather}"] = composite(a, small, x, y, feather)
    for x, y, feather in ((3, 4, 2), (0, 0, 3)):
        out[f"composite_big.{x}_{y}_{feather}"] = composite(a, b, x, y, feather)
    mask = rng.uniform(0.0, 1.0, (3, 5)).astype(f32)
    out["mask_3x5"] = mask
    for x, y in ((2, 1), (9, 8), (12, 0)):
        out[f"masked.{x}_{y}"] = composite_masked(a, small, 8 * x, 8 * y)
        out[f"masked_mask.{x}_{y}"] = composite_masked(a, small, 8 * x, 8 * y, mask)
    out["blend"] = (a * f32(0.3) + one * f32(1 - 0.3)).astype(f32)
    out["add"] = a + repeat_to_batch(one, 2)
    out["subtract"] = a - b
    out["multiply"] = (a * f32(-1.7)).astype(f32)
    out["interpolate"] = interpolate(a[:1], b[:1], 0.35)
    for x, y, w, h in ((1, 1, 8, 8), (7, 5, 8, 8), (0, 0, 20, 20)):
        out[f"crop.{x}_{y}_{w}_{h}"] = np.ascontiguousarray(crop(a, x, y, w, h))
    out["flip.x"] = np.ascontiguousarray(np.flip(a, axis=2))
    out["flip.y"] = np.ascontiguousarray(np.flip(a, axis=3))
    for k in range(4):
        out[f"rotate.{k}"] = np.ascontiguousarray(np.rot90(a, k, axes=(3, 2)))
    save_file(out, OUT)


if __name__ == "__main__":
    main()
