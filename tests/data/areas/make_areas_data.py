"""Goldens for prompts on areas (ConditioningSetArea,
ConditioningSetAreaPercentage, ConditioningSetAreaStrength,
ConditioningSetMask's "mask bounds"): the runs ComfyUI's sampling makes of a
side's prompts and the weights each run's prediction gets on its box.

The logic is ComfyUI's comfy/samplers.py (read at ComfyUI 0.8.1; the same
as v0.3.64's), restated with numpy in float32 as torch computes it:
  resolve_areas_and_cond_masks_multidim: a percentage area rounded with
    Python's round (half to even, at least 1), a mask's "mask bounds" box
    (get_mask_aabb, each side at least 8);
  process_conds: each area given an opposite area on the other side
    (create_cond_with_same_area_if_none, the positive side first): a copy of
    the part with the prompt of the smallest part of that side holding it;
  get_area_and_mult: the box cut to the latent, mult = mask * mask_strength
    * strength, and without a mask the fade over min(8, size // 4) pixels
    inside each edge that is not the latent's.
The masks are given at the latent's size (no resize).

Writes tests/data/areas/areas.safetensors (read by tests/test_cond_area.c):
  <case>.runs    [R, 8] per run: side (0 negative, 1 positive), the side's
                 part whose prompt it runs, the side and part whose settings
                 it has, then y, x, h, w of its box
  <case>.mult.<r> [h, w] run r's weights
  <case>.mask.<side>.<part> [H, W] the masks the cases give (inputs)
The cases' parts are spelled out in main() and in tests/test_cond_area.c.

Run from the repository root: python3 tests/data/areas/make_areas_data.py
"""
import numpy as np
from safetensors.numpy import save_file

OUT = "tests/data/areas/areas.safetensors"


def resolve(spec, side, index, H, W):
    """A part as the sampler sees it; spec holds the node settings."""
    p = {"text": index, "source": (side, index), "area": None, "mask": spec.get("mask"),
         "mask_strength": spec.get("mask_strength", 1.0), "strength": spec.get("strength", 1.0)}
    if "area" in spec:  # ConditioningSetArea: x, y, w, h in latent pixels -> (h, w, y, x)
        x, y, w, h = spec["area"]
        p["area"] = (h, w, y, x)
    if "percent" in spec:  # (x, y, w, h) fractions
        fx, fy, fw, fh = spec["percent"]
        p["area"] = (max(1, round(fh * H)), max(1, round(fw * W)), round(fy * H), round(fx * W))
    if spec.get("bounds"):
        m = np.abs(p["mask"])
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            p["area"] = (8, 8, 0, 0)
        else:
            h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            p["area"] = (max(8, int(h)), max(8, int(w)), int(ys.min()), int(xs.min()))
    return p


def inside(a, b):
    return a[2] >= b[2] and a[3] >= b[3] and a[0] + a[2] <= b[0] + b[2] and a[1] + a[3] <= b[1] + b[3]


def add_opposite(other, c):
    if c["area"] is None:
        return
    smallest = None
    for x in other:
        if x["area"] is not None:
            if inside(c["area"], x["area"]):
                if smallest is None or smallest["area"] is None or \
                        smallest["area"][0] * smallest["area"][1] > x["area"][0] * x["area"][1]:
                    smallest = x
        elif smallest is None:
            smallest = x
    if smallest is None or (smallest["area"] is not None and smallest["area"] == c["area"]):
        return
    copy = dict(c)
    copy["text"] = smallest["text"]
    other.append(copy)


def area_and_mult(p, H, W):
    area = [H, W, 0, 0] if p["area"] is None else list(p["area"])
    dims = (H, W)
    for i in range(2):
        area[i] = min(dims[i] - area[2 + i], area[i])
    h, w, y, x = area
    if p["mask"] is not None:
        mask = p["mask"][y:y + h, x:x + w] * np.float32(1) * p["mask_strength"]
        mask = mask.astype(np.float32)
    else:
        mask = np.ones((h, w), np.float32)
    mult = (mask * p["strength"]).astype(np.float32)
    if p["mask"] is None and p["area"] is not None:
        for i in range(2):
            rr = min(8, mult.shape[i] // 4)
            for t in range(rr):
                f = np.float32((1.0 / rr) * (t + 1))
                if area[2 + i] != 0:
                    if i == 0:
                        mult[t, :] *= f
                    else:
                        mult[:, t] *= f
                if area[i] + area[2 + i] < dims[i]:
                    if i == 0:
                        mult[area[0] - 1 - t, :] *= f
                    else:
                        mult[:, area[1] - 1 - t] *= f
    return (y, x, h, w), mult


def plan(name, H, W, sides, out):
    """sides: [negative specs, positive specs]"""
    lists = [[resolve(s, side, i, H, W) for i, s in enumerate(sides[side])] for side in range(2)]
    for k in (1, 0):  # positive first, as ComfyUI's conds dict
        for c in lists[k]:
            add_opposite(lists[1 - k], c)
    runs = []
    for side in range(2):
        for p in lists[side]:
            box, mult = area_and_mult(p, H, W)
            out[f"{name}.mult.{len(runs)}"] = mult
            runs.append([side, p["text"], p["source"][0], p["source"][1], *box])
    out[f"{name}.runs"] = np.array(runs, np.float32)
    for side in range(2):
        for i, s in enumerate(sides[side]):
            if "mask" in s:
                out[f"{name}.mask.{side}.{i}"] = s["mask"]


def main():
    rng = np.random.default_rng(7)
    H, W = 12, 16
    out = {}
    # a prompt everywhere, one on a box at strength 1.5, one on a box in fractions (at the bottom right)
    plan("mixed", H, W, [[{}], [{}, {"area": (2, 1, 8, 6), "strength": 1.5},
                               {"percent": (0.5, 0.25, 0.5, 0.75)}]], out)
    # a mask's bounds (rows 4..6, columns 5..13) beside a prompt at strength 2; negative areas given back
    bounds = np.zeros((H, W), np.float32)
    bounds[4:7, 5:14] = rng.uniform(0.2, 1.0, (3, 9)).astype(np.float32)
    plan("nested", H, W, [[{"area": (0, 0, 16, 8)}, {}, {"area": (4, 2, 12, 9)}],
                          [{"strength": 2.0}, {"mask": bounds, "mask_strength": 0.8, "bounds": True}]], out)
    # a box past the latent's edge, fractions at half a pixel, a box with a mask (no fade)
    soft = rng.uniform(0.0, 1.0, (H, W)).astype(np.float32)
    plan("edges", H, W, [[{}, {}], [{"area": (6, 2, 16, 10)}, {"percent": (0.03125, 0.125, 0.40625, 0.375)},
                                    {"area": (1, 5, 6, 6), "mask": soft, "mask_strength": 0.7, "strength": 1.25}]],
         out)
    save_file(out, OUT)


if __name__ == "__main__":
    main()
