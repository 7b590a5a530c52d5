"""Goldens for SamplerCustomAdvanced's guiders of three prompts: DualCFGGuider
("regular" and "nested") and PerpNegGuider, on x0 predictions.

The math is ComfyUI's comfy_extras/nodes_custom_sampler.py (Guider_DualCFG's
predict_noise) and comfy_extras/nodes_perpneg.py (perp_neg), read at
ComfyUI v0.3.64, restated with numpy in float32 as torch computes it: a
float32 tensor times a Python float works in float32 with the scalar rounded
to float32 first, one rounding a step. perp_neg's two sums over the whole
batch (torch.mul(neg, pos).sum() and torch.norm(pos) ** 2) are float32
results of a wider accumulation in torch; here they are summed in float64
and rounded once, which is what kiln does too, so its test allows 1e-6.

Writes tests/data/guiders/guiders.safetensors (read by tests/test_guiders.c):
  positive, middle, negative [2, 4, 5, 6]   three prompts' x0 predictions
                                            (middle is DualCFG's cond2 and
                                            PerpNeg's empty prompt)
  dual.<cfg1>_<cfg2>         DualCFG "regular": cfg_function(middle,
                             negative, cfg2) + (positive - middle) * cfg1
  nested.<cfg1>_<cfg2>       DualCFG "nested": negative + cfg2 * (text -
                             negative), text = cfg_function(positive, middle, cfg1)
  perp.<neg_scale>_<cfg>     perp_neg(positive, negative, empty = middle)

Run from the repository root: python3 tests/data/guiders/make_guiders_data.py
"""
import numpy as np
from safetensors.numpy import save_file

OUT = "tests/data/guiders/guiders.safetensors"
f32 = np.float32


def cfg_function(cond, uncond, scale):
    return uncond + (cond - uncond) * f32(scale)


def perp_neg(pos_pred, neg_pred, empty, neg_scale, cfg):
    pos = pos_pred - empty
    neg = neg_pred - empty
    dot = f32(np.sum((neg * pos).astype(np.float64)))
    norm = f32(np.sqrt(np.sum(pos.astype(np.float64) ** 2)))
    perp = neg - (dot / (norm * norm)) * pos
    return empty + f32(cfg) * (pos - perp * f32(neg_scale))


def main():
    rng = np.random.default_rng(20261129)
    shape = (2, 4, 5, 6)
    positive, middle, negative = (rng.standard_normal(shape).astype(f32) for _ in range(3))
    out = {"positive": positive, "middle": middle, "negative": negative}
    for cfg1, cfg2 in ((5.5, 2.0), (1.0, 3.0), (7.0, 0.5)):
        key = f"{cfg1:g}_{cfg2:g}"
        out[f"dual.{key}"] = cfg_function(middle, negative, cfg2) + (positive - middle) * f32(cfg1)
        text = cfg_function(positive, middle, cfg1)
        out[f"nested.{key}"] = negative + f32(cfg2) * (text - negative)
    for neg_scale, cfg in ((1.0, 7.0), (0.5, 4.5), (2.0, 1.0)):
        out[f"perp.{neg_scale:g}_{cfg:g}"] = perp_neg(positive, negative, middle, neg_scale, cfg)
    save_file({k: np.ascontiguousarray(v, dtype=f32) for k, v in out.items()}, OUT)


if __name__ == "__main__":
    main()
