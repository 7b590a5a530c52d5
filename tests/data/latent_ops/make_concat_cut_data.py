"""Goldens for ComfyUI's LatentConcat and LatentCut (comfy_extras/nodes_latent.py,
the nodes of ComfyUI's io API), on image latents (B, C, H, W): restated with
torch's own cat and narrow, the node's rules in words:
  LatentConcat(samples1, samples2, dim): samples2 repeated or cut to
    samples1's batch (comfy.utils.repeat_to_batch_size), then
    torch.cat((s1, s2)) along dim "x" (-1, width), "y" (-2, height) or "t"
    (-3: an image latent's channels), (s2, s1) for "-x", "-y", "-t".
  LatentCut(samples, dim, index, amount): along x/y/t as above; an index at
    or past 0 clamped to the last row and the amount to what is left; a
    negative one clamped to -size and the amount to -index; torch.narrow.

Writes tests/data/latent_ops/concat_cut.safetensors (read by
tests/test_latent_ops.c), F32:
  a [2, 4, 3, 5], b [1, 4, 3, 2], c [3, 4, 2, 5], d [2, 2, 3, 5]   random
  concat.x, concat.-x (a, b), concat.y, concat.-y (a, c), concat.t, concat.-t (a, d)
  cut.<dim>.<index>.<amount> for x 1 3, x 4 9, x -2 5, x -9 2, y 0 2, t 1 2, t -1 1

Run from the repository root (torch, safetensors):
  python3 tests/data/latent_ops/make_concat_cut_data.py
"""
import math

import torch
from safetensors.torch import save_file

g = torch.Generator().manual_seed(20261129)
t = {name: torch.randn(shape, generator=g) for name, shape in
     {"a": (2, 4, 3, 5), "b": (1, 4, 3, 2), "c": (3, 4, 2, 5), "d": (2, 2, 3, 5)}.items()}


def repeat_to_batch_size(x, batch):
    if x.shape[0] > batch:
        return x[:batch]
    if x.shape[0] < batch:
        return x.repeat([math.ceil(batch / x.shape[0])] + [1] * (x.ndim - 1))[:batch]
    return x


AXIS = {"x": -1, "y": -2, "t": -3}


def concat(s1, s2, dim):
    s2 = repeat_to_batch_size(s2, s1.shape[0])
    pair = (s2, s1) if dim.startswith("-") else (s1, s2)
    return torch.cat(pair, dim=AXIS[dim.lstrip("-")])


def cut(s, dim, index, amount):
    d = s.ndim + AXIS[dim]
    if index >= 0:
        index = min(index, s.shape[d] - 1)
        amount = min(s.shape[d] - index, amount)
    else:
        index = max(index, -s.shape[d])
        amount = min(-index, amount)
    return torch.narrow(s, d, index, amount)


out = dict(t)
for dim, other in (("x", "b"), ("y", "c"), ("t", "d")):
    for sign in ("", "-"):
        out[f"concat.{sign}{dim}"] = concat(t["a"], t[other], sign + dim)
for dim, index, amount in (("x", 1, 3), ("x", 4, 9), ("x", -2, 5), ("x", -9, 2), ("y", 0, 2), ("t", 1, 2), ("t", -1, 1)):
    out[f"cut.{dim}.{index}.{amount}"] = cut(t["a"], dim, index, amount)
save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/latent_ops/concat_cut.safetensors")
