"""Writes kiln's data for an IP-Adapter given two pictures at once (an
ImageBatch into IPAdapterAdvanced, its combine_embeds "concat": the
pictures' image tokens side by side, the negative rows the negative's tokens
once per picture, as ComfyUI_IPAdapter_plus's attention patch lays them).

Origin: diffusers 0.32.2 on PyTorch (CPU, float32): the tiny UNet with the
plain or the Plus adapter of this folder (UNet2DConditionModel.
_load_ip_adapter_weights, as load_ip_adapter does) at weight 0.7, given
each row's pictures as diffusers' multi-image embeds (batch, pictures, ...),
whose attention attends to all of their tokens; the tower is
transformers' CLIPVisionModelWithProjection with clip_vision_tiny's weights.
The pictures are golden.safetensors' pixels.big (picture_251x233.png) and
pixels.small (controlnet/hint_37x23.png), ComfyUI's clip_preprocess of each;
the Plus negative is a black picture's hidden states, the plain one a zero
embedding.

  pictures.safetensors
      ip_tokens, noise_pred: the plain adapter's tokens (2,8,32) (row 0 the
          negative's) and the UNet's output
      plus.ip_tokens, plus.noise_pred: the same for the Plus adapter (2,16,32)

Run from the repository root with torch, transformers and diffusers
installed and the project's shared goldens at ../shared/goldens (after
make_ip_adapter_data.py):
  python3 tests/data/ip_adapter/make_pictures_data.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

sys.path.insert(0, os.path.dirname(__file__))
from make_ip_adapter_data import MODEL, OUT, SCALE, clip_preprocess  # noqa: E402
from make_multi_ip_adapter_data import h94_state_dict  # noqa: E402


def unet_with(adapter):
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    unet._load_ip_adapter_weights([h94_state_dict(os.path.join(OUT, adapter))])
    for proc in unet.attn_processors.values():
        if hasattr(proc, "scale"):
            proc.scale = [SCALE]
    return unet


def main():
    g = load_file(os.path.join(OUT, "golden.safetensors"))
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=224, patch_size=14, projection_dim=24, hidden_act="gelu",
                              layer_norm_eps=1e-5)
    tower = CLIPVisionModelWithProjection(config).eval()
    tower.load_state_dict(load_file(os.path.join(OUT, "clip_vision_tiny.safetensors")), strict=False)
    black = clip_preprocess(torch.zeros(1, 224, 224, 3))
    pixels = torch.cat([black, g["pixels.big"], g["pixels.small"]])
    with torch.no_grad():
        out = tower(pixel_values=pixels, output_hidden_states=True)
    assert torch.allclose(out.image_embeds[1], g["image_embeds"][0], atol=1e-6)
    sample, timesteps, context = g["sample"], g["timesteps"], g["encoder_hidden_states"]
    result = {}
    # rows (negative, positive) x two pictures: plain from image embeds, Plus from penultimate hidden states
    plain = torch.stack([torch.zeros_like(out.image_embeds[1:]), out.image_embeds[1:]])  # (2,2,24)
    hidden = out.hidden_states[-2]
    plus = torch.stack([hidden[:1].expand(2, -1, -1), hidden[1:]])  # (2,2,257,32)
    for prefix, adapter, embeds in (("", "ip_adapter_tiny.safetensors", plain),
                                    ("plus.", "ip_adapter_plus_tiny.safetensors", plus)):
        unet = unet_with(adapter)
        with torch.no_grad():
            tokens = unet.encoder_hid_proj([embeds])[0]  # (2, pictures, tokens, ctx)
            result[prefix + "ip_tokens"] = tokens.reshape(2, -1, tokens.shape[-1])
            result[prefix + "noise_pred"] = unet(sample, timesteps.long(), context,
                                                 added_cond_kwargs={"image_embeds": [embeds]}).sample
    save_file({k: v.contiguous().float() for k, v in result.items()}, os.path.join(OUT, "pictures.safetensors"))
    for k, v in result.items():
        print(k, tuple(v.shape), float(v.abs().mean()))


if __name__ == "__main__":
    main()
