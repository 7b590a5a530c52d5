"""Writes kiln's Real-ESRGAN Compact (SRVGGNetCompact: realesr-general-x4v3,
realesr-animevideov3, ...) test data: two tiny random models in the released
key layout and what upstream spandrel 0.4.2 (ComfyUI's upscale model loader;
PyTorch 2.15 CPU, float32) computes with them.

  compact_x4.safetensors   16 features, 4 body convs, x4, PReLU
  compact_x2.safetensors   8 features, 2 body convs, x2, PReLU
      body.0.weight (F,3,3,3), body.0.bias (F,)   first conv 3 -> F
      body.1.weight (F,)                          PReLU slopes
      body.{2k}.weight (F,F,3,3), .bias (F,)      k = 1..num_conv
      body.{2k+1}.weight (F,)                     PReLU slopes
      body.{2n+2}.weight (3s^2,F,3,3), .bias      last conv F -> 3*scale^2
  compact.golden.safetensors
      input    (1,3,23,37)   controlnet/hint_37x23.png as ComfyUI's LoadImage
                             makes it (u8 / 255 in float32), moved to NCHW as
                             ImageUpscaleWithModel does
      x4.out   (1,3,92,148)  the x4 network on it (descriptor.model(input)),
                             NOT clamped; values run past 0 and 1
      x2.out   (1,3,46,74)   the same for the x2 model
    ComfyUI's picture is these clamped to [0,1]: spandrel's
    ImageModelDescriptor.__call__ ends in output.clamp_(0, 1) (the script
    checks that), and ImageUpscaleWithModel clamps again.

spandrel's detection (architectures/Compact/__init__.py; Compact is the first
architecture tried): the state dict has both "body.0.weight" and
"body.1.weight". Then n = 1 + the largest integer i among keys "body.<i>.*",
highest = n - 1, in_nc = body.0.weight.shape[1], num_feat =
body.0.weight.shape[0], num_conv = (highest - 2) // 2, and from
x = body.<highest>.bias.shape[0] the first c of [in_nc, 3, 4, 1] with x % c == 0
and x // c a perfect square gives out_nc = c, scale = sqrt(x // c). The
activation is never read: the module is built with its default "prelu"
(a ReLU or LeakyReLU model has no body.1.weight and is not detected). The
weights then load with load_state_dict(strict=True).

The forward, restated in forward() below and checked against spandrel's module
to 1e-6:
  h = x
  for each conv i in 0..num_conv: h = prelu_i(conv3x3_i(h))   (zero pad 1, stride 1)
      prelu(v)[c] = v if v >= 0 else a[c] * v                  (slope per channel)
  h = conv3x3_last(h)                                          (3*s*s channels, no act)
  out[n, c, y*s+i, x*s+j] = h[n, c*s*s + i*s + j, y, x]         (PixelShuffle(s))
  out += F.interpolate(x, scale_factor=s, mode="nearest")      i.e. out[.., Y, X] +=
      x[.., Y // s, X // s] (each input pixel copied into an s x s block)

Run from the repository root with torch, safetensors, pillow and spandrel
installed:
  python3 tests/data/upscale/compact/make_compact_data.py
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from spandrel import ImageModelDescriptor, ModelLoader

OUT = "tests/data/upscale/compact"
PICTURE = "tests/data/controlnet/hint_37x23.png"


def weights(feat, num_conv, scale, gen):
    sd = {}

    def conv(i, out, inp, gain):
        sd[f"body.{i}.weight"] = torch.randn(out, inp, 3, 3, generator=gen) * (gain / (inp * 9) ** 0.5)
        sd[f"body.{i}.bias"] = torch.randn(out, generator=gen) * 0.1

    def prelu(i):
        sd[f"body.{i}.weight"] = torch.rand(feat, generator=gen) * 0.5

    conv(0, feat, 3, 2.0)
    prelu(1)
    for k in range(1, num_conv + 1):
        conv(2 * k, feat, feat, 1.6)
        prelu(2 * k + 1)
    conv(2 * num_conv + 2, 3 * scale * scale, feat, 0.4)  # residual on the upsampled picture
    return sd


def detect(sd):
    """What spandrel's CompactArch reads from the keys."""
    assert "body.0.weight" in sd and "body.1.weight" in sd
    highest = max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    in_nc, feat = sd["body.0.weight"].shape[1], sd["body.0.weight"].shape[0]
    num_conv = (highest - 2) // 2
    x = sd[f"body.{highest}.bias"].shape[0]
    for c in (in_nc, 3, 4, 1):
        if x % c == 0 and int((x // c) ** 0.5) ** 2 == x // c:
            return dict(in_nc=in_nc, num_feat=feat, num_conv=num_conv, out_nc=c, scale=int((x // c) ** 0.5))
    raise AssertionError(x)


def conv3x3(h, w, b):
    """Zero padding 1, stride 1, as a sum over the nine taps (float64)."""
    _, _, H, W = h.shape
    p = F.pad(h, (1, 1, 1, 1))
    out = b.view(1, -1, 1, 1).expand(h.shape[0], -1, H, W).clone()
    for dy in range(3):
        for dx in range(3):
            out += torch.einsum("oi,nihw->nohw", w[:, :, dy, dx], p[:, :, dy:dy + H, dx:dx + W])
    return out


def forward(sd, x):
    info = detect(sd)
    s, n = info["scale"], info["num_conv"]
    sd = {k: v.double() for k, v in sd.items()}
    h = x.double()
    for i in range(n + 1):
        h = conv3x3(h, sd[f"body.{2 * i}.weight"], sd[f"body.{2 * i}.bias"])
        a = sd[f"body.{2 * i + 1}.weight"].view(1, -1, 1, 1)
        h = torch.where(h >= 0, h, a * h)
    h = conv3x3(h, sd[f"body.{2 * n + 2}.weight"], sd[f"body.{2 * n + 2}.bias"])
    N, C, H, W = h.shape
    c = C // (s * s)
    out = h.view(N, c, s, s, H, W).permute(0, 1, 4, 2, 5, 3).reshape(N, c, H * s, W * s)
    base = x.double().repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    return out + base


def main():
    gen = torch.Generator().manual_seed(20)
    picture = np.array(Image.open(PICTURE).convert("RGB")).astype(np.float32) / 255.0
    image = torch.from_numpy(picture)[None].movedim(-1, -3).contiguous()
    golden = {"input": image}
    for name, feat, num_conv, scale in (("x4", 16, 4, 4), ("x2", 8, 2, 2)):
        path = f"{OUT}/compact_{name}.safetensors"
        save_file(weights(feat, num_conv, scale, gen), path)
        sd = load_file(path)
        desc = ModelLoader().load_from_state_dict(sd).eval()
        assert isinstance(desc, ImageModelDescriptor)
        m = desc.model
        print(name, "spandrel:", desc.architecture.id, type(m).__name__, "scale", desc.scale,
              dict(num_in_ch=m.num_in_ch, num_out_ch=m.num_out_ch, num_feat=m.num_feat,
                   num_conv=m.num_conv, upscale=m.upscale, act_type=m.act_type))
        print(name, "read from keys:", detect(sd))
        assert type(m).__name__ == "SRVGGNetCompact" and desc.scale == scale
        assert (m.num_feat, m.num_conv, m.upscale, m.act_type) == (feat, num_conv, scale, "prelu")
        assert detect(sd) == dict(in_nc=3, num_feat=feat, num_conv=num_conv, out_nc=3, scale=scale)
        with torch.no_grad():
            raw = m(image.clone())
            whole = desc(image.clone())
            # per-layer activation sizes, to see they stay O(1)
            h, sizes = image, []
            for layer in m.body:
                h = layer(h)
                sizes.append(round(float(h.std()), 3))
        assert torch.equal(whole, raw.clamp(0, 1)), "descriptor call is the clamped network"
        mine = forward(sd, image)
        err = float((mine - raw.double()).abs().max())
        assert err < 1e-6, err
        print(name, "out", tuple(raw.shape), "range", float(raw.min()), float(raw.max()),
              "outside [0,1]:", int(((raw < 0) | (raw > 1)).sum()), "restated err", err, "layer std", sizes)
        golden[f"{name}.out"] = raw.contiguous()
    save_file(golden, f"{OUT}/compact.golden.safetensors")


if __name__ == "__main__":
    main()
