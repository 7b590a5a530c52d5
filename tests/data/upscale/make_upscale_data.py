"""Writes kiln's ESRGAN test data: a tiny random RRDBNet x4 in both key
layouts and what upstream spandrel 0.4.2 (ComfyUI's upscale model loader;
PyTorch CPU, float32) computes with it.

  rrdb_basicsr.safetensors   BasicSR names (conv_first, body.N.rdbK.convJ,
                             conv_body, conv_up1/2, conv_hr, conv_last):
                             8 features, growth 32, 1 block
  rrdb_esrgan.safetensors    the same weights under the original ESRGAN names
                             (model.0, model.1.sub.N.RDBK.convJ.0, model.1.sub.1,
                             model.3/6/8/10)
  golden.safetensors
    image                    (1,3,13,10) random pixels in [0,1]
    raw                      the network on it (spandrel's RRDBNet module)
    whole                    the model as ComfyUI calls it (spandrel's
                             descriptor: the network, clamped to [0,1])
    tiled                    ImageUpscaleWithModel's tiling of the same picture
                             with tile 8 and overlap 2 (ComfyUI v0.3.64's
                             tiled_scale_multidim rule, restated here; the
                             descriptor runs each tile), clamped to [0,1]

Run from the repository root with torch and spandrel installed:
  python3 tests/data/upscale/make_upscale_data.py
"""
import itertools

import torch
from safetensors.torch import save_file
from spandrel import ModelLoader

OUT = "tests/data/upscale"
F, G, B = 8, 32, 1  # spandrel takes the growth to be 32, as every released model has it


def basicsr_weights():
    sd = {}

    def conv(name, out, inp):
        sd[name + ".weight"] = torch.randn(out, inp, 3, 3) * (0.5 / (inp * 9) ** 0.5)
        sd[name + ".bias"] = torch.randn(out) * 0.05

    conv("conv_first", F, 3)
    for b in range(B):
        for k in range(1, 4):
            for j in range(1, 6):
                conv(f"body.{b}.rdb{k}.conv{j}", F if j == 5 else G, F + (j - 1) * G)
    conv("conv_body", F, F)
    conv("conv_up1", F, F)
    conv("conv_up2", F, F)
    conv("conv_hr", F, F)
    conv("conv_last", 3, F)
    sd["conv_last.bias"] += 0.5  # pictures around mid-grey, some past 0 and 1: both clamps matter
    sd["conv_last.weight"] *= 30.0
    return sd


def esrgan_names(sd):
    out = {}
    tail = {"conv_first": "model.0", "conv_body": f"model.1.sub.{B}", "conv_up1": "model.3", "conv_up2": "model.6",
            "conv_hr": "model.8", "conv_last": "model.10"}
    for k, v in sd.items():
        head, kind = k.rsplit(".", 1)
        if head in tail:
            out[f"{tail[head]}.{kind}"] = v
        else:
            _, b, rdb, conv = head.split(".")
            out[f"model.1.sub.{b}.RDB{rdb[3:]}.{conv}.0.{kind}"] = v
    return out


def tiled(model, image, tile, overlap, scale):
    """The tiling rule: tile starts every tile - overlap below size - overlap
    (or one tile when the picture fits), each tile's output weighted by a ramp
    (t + 1) / (scale * overlap) over its edges, per axis; sums over weights."""
    _, c, h, w = image.shape
    if h <= tile and w <= tile:
        return model(image)
    out = torch.zeros(1, c, h * scale, w * scale)
    div = torch.zeros_like(out)
    starts = [range(0, n - overlap, tile - overlap) if n > tile else [0] for n in (h, w)]
    for y, x in itertools.product(*starts):
        y, x = max(0, min(h - overlap, y)), max(0, min(w - overlap, x))
        part = image[:, :, y:y + min(tile, h - y), x:x + min(tile, w - x)]
        ps = model(part)
        mask = torch.ones_like(ps)
        feather = round(overlap * scale)
        for d in (2, 3):
            if feather >= mask.shape[d]:
                continue
            for t in range(feather):
                a = (t + 1) / feather
                mask.narrow(d, t, 1).mul_(a)
                mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(a)
        region = (slice(None), slice(None), slice(y * scale, y * scale + ps.shape[2]),
                  slice(x * scale, x * scale + ps.shape[3]))
        out[region] += ps * mask
        div[region] += mask
    return out / div


def main():
    torch.manual_seed(4)
    sd = basicsr_weights()
    save_file(sd, f"{OUT}/rrdb_basicsr.safetensors")
    save_file(esrgan_names(sd), f"{OUT}/rrdb_esrgan.safetensors")
    model = ModelLoader().load_from_state_dict(sd).eval()
    other = ModelLoader().load_from_state_dict(esrgan_names(sd)).eval()
    assert model.scale == 4 and other.scale == 4
    image = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        raw = model.model(image)
        whole = model(image)
        assert torch.equal(whole, other(image))
        tiles = tiled(model, image, 8, 2, 4).clamp(0, 1)
    save_file({"image": image, "raw": raw.contiguous(), "whole": whole.contiguous(), "tiled": tiles.contiguous()},
              f"{OUT}/golden.safetensors")
    print(type(model.model).__name__, tuple(whole.shape), "raw in", float(raw.min()), float(raw.max()),
          "tiled vs whole", float((tiles - whole).abs().max()))


if __name__ == "__main__":
    main()
