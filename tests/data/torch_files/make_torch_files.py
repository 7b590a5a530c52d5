#!/usr/bin/env python3
"""Writes models of the test data as torch.save files, the form older
checkpoints, ControlNet 1.1's models and early diffusers repositories come in:

  sd15_tiny_ldm_fp16.ckpt  tiny/sd15_tiny_ldm_fp16.safetensors' tensors as a
                           PyTorch Lightning checkpoint saves them: under
                           "state_dict", beside the global step, the epoch
                           and a callback's state (an object of a class of
                           the trainer's); with LDM's EMA bookkeeping
                           (model_ema.decay, model_ema.num_updates, an EMA
                           copy of one weight); one weight saved as a
                           transposed view (strides, not rows) and one bias
                           as a view into a longer storage (an offset)
  control_tiny.pth         controlnet/tiny_ldm.safetensors' tensors, a bare
                           state dict as lllyasviel's ControlNet 1.1 files
  ip_adapter_tiny.bin      ip_adapter/ip_adapter_tiny.safetensors' tensors as
                           h94's .bin files hold them: {"image_proj": {...},
                           "ip_adapter": {...}}
  vae/diffusion_pytorch_model.bin
                           tiny/sd15_tiny_diffusers/vae's tensors, as a
                           diffusers folder saved before safetensors

Run from the repository root (torch 2.x, safetensors):
    python3 tests/data/torch_files/make_torch_files.py
"""
import collections
import os

import torch
from safetensors.torch import load_file

OUT = "tests/data/torch_files"


class CheckpointState:
    """Stands for pytorch_lightning's ModelCheckpoint state: a class the
    loader does not know, pickled by reference."""

    def __init__(self):
        self.best_model_score = 0.25
        self.dirpath = "logs/checkpoints"


sd = collections.OrderedDict(load_file("tests/data/tiny/sd15_tiny_ldm_fp16.safetensors"))
weight = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
bias = "first_stage_model.decoder.conv_out.bias"
assert weight in sd and bias in sd
sd[weight] = sd[weight].t().contiguous().t()
assert not sd[weight].is_contiguous()
sd[bias] = torch.cat([torch.zeros(5, dtype=sd[bias].dtype), sd[bias]])[5:]
assert sd[bias].storage_offset() == 5
sd["model_ema.decay"] = torch.tensor(0.9999)
sd["model_ema.num_updates"] = torch.tensor(840000, dtype=torch.int32)
sd["model_ema.diffusion_modelout2bias"] = sd["model.diffusion_model.out.2.bias"].clone()
torch.save({"epoch": 6, "global_step": 840000, "pytorch-lightning_version": "1.4.2",
            "state_dict": sd, "callbacks": {"ModelCheckpoint": CheckpointState()},
            "optimizer_states": [], "lr_schedulers": []},
           f"{OUT}/sd15_tiny_ldm_fp16.ckpt")

torch.save(load_file("tests/data/controlnet/tiny_ldm.safetensors"), f"{OUT}/control_tiny.pth")

adapter = load_file("tests/data/ip_adapter/ip_adapter_tiny.safetensors")
parts = {part: {k[len(part) + 1:]: v for k, v in adapter.items() if k.startswith(part + ".")}
         for part in ("image_proj", "ip_adapter")}
assert sum(len(p) for p in parts.values()) == len(adapter)
torch.save(parts, f"{OUT}/ip_adapter_tiny.bin")

os.makedirs(f"{OUT}/vae", exist_ok=True)
torch.save(load_file("tests/data/tiny/sd15_tiny_diffusers/vae/diffusion_pytorch_model.safetensors"),
           f"{OUT}/vae/diffusion_pytorch_model.bin")

for name in ["control_tiny.pth", "ip_adapter_tiny.bin", "vae/diffusion_pytorch_model.bin"]:
    torch.load(f"{OUT}/{name}", weights_only=True)  # as ComfyUI's loader reads them
