#!/usr/bin/env python3
"""Writes the tiny ESRGANs of this folder as torch.save files, the form most
upscale models are shared in (OpenModelDB, Real-ESRGAN's releases):

  rrdb_basicsr.pth   rrdb_basicsr.safetensors' tensors under "params_ema",
                     as BasicSR's training saves them
  rrdb_esrgan.pth    rrdb_esrgan.safetensors' tensors in float16, their
                     names behind "module." (a DataParallel model's)

Run from the repository root (torch 2.x, safetensors):
    python3 tests/data/upscale/make_pth_data.py
"""
import torch
from safetensors.torch import load_file

basicsr = load_file("tests/data/upscale/rrdb_basicsr.safetensors")
torch.save({"params_ema": basicsr}, "tests/data/upscale/rrdb_basicsr.pth")
esrgan = load_file("tests/data/upscale/rrdb_esrgan.safetensors")
torch.save({"module." + k: v.half() for k, v in esrgan.items()}, "tests/data/upscale/rrdb_esrgan.pth")
for name in ["rrdb_basicsr.pth", "rrdb_esrgan.pth"]:
    torch.load("tests/data/upscale/" + name, weights_only=True)  # loads as ComfyUI's loader would
