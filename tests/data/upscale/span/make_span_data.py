"""Writes kiln's SPAN (Swift Parameter-free Attention Network: 4xNomos8k_span,
2xHFA2kSPAN, ...) test data: two tiny random models in the released key
layout and what upstream spandrel 0.4.2 (ComfyUI's upscale model loader;
PyTorch CPU, float32) computes with them.

  span_x4.safetensors   8 features, x4, with the input normalisation
  span_x2.safetensors   6 features, x2, a `no_norm` buffer (no normalisation)
      every Conv3XC (conv_1, block_N.c{1,2,3}_r, conv_2) has its training
      branches (sk: 1x1; conv.0: 1x1 to 2x, conv.1: 3x3, conv.2: 1x1 back)
      and an eval_conv 3x3 drawn at random too: spandrel's forward in eval
      mode fuses the branches into eval_conv each call (update_params), so
      the stored eval_conv is never read; x4's first Conv3XC's 1x1 weights
      are divided by 255, so that its features are O(1) as a trained
      model's are
  span.golden.safetensors
      input    (1,3,23,37)   controlnet/hint_37x23.png as ComfyUI's LoadImage
                             makes it (u8 / 255 in float32), NCHW
      x4.out, x2.out         each network on it (descriptor.model(input)),
                             not clamped

Run from the repository root with torch, safetensors, pillow and spandrel
installed:
  python3 tests/data/upscale/span/make_span_data.py
"""
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from spandrel import ImageModelDescriptor, ModelLoader
from spandrel.architectures.SPAN import SPAN

OUT = "tests/data/upscale/span"
PICTURE = "tests/data/controlnet/hint_37x23.png"


def main():
    torch.manual_seed(29)
    picture = np.array(Image.open(PICTURE).convert("RGB")).astype(np.float32) / 255.0
    image = torch.from_numpy(picture)[None].movedim(-1, -3).contiguous()
    golden = {"input": image}
    for name, feat, scale, norm in (("x4", 8, 4, True), ("x2", 6, 2, False)):
        model = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=feat, upscale=scale, norm=norm).train()
        with torch.no_grad():
            for key, p in model.named_parameters():
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn_like(p) * ((1.0 / fan_in) ** 0.5 if p.ndim > 1 else 0.05))
            if norm:  # the input comes 255-fold: the first Conv3XC reads it back to O(1), as trained ones do
                model.conv_1.sk.weight /= 255.0
                model.conv_1.conv[0].weight /= 255.0
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        path = f"{OUT}/span_{name}.safetensors"
        save_file(sd, path)
        desc = ModelLoader().load_from_state_dict(load_file(path)).eval()
        assert isinstance(desc, ImageModelDescriptor) and desc.architecture.id == "SPAN" and desc.scale == scale
        with torch.no_grad():
            raw = desc.model(image.clone())
        print(name, "out", tuple(raw.shape), "range", float(raw.min()), float(raw.max()), "std", float(raw.std()))
        golden[f"{name}.out"] = raw.contiguous()
    save_file(golden, f"{OUT}/span.golden.safetensors")


if __name__ == "__main__":
    main()
