"""Writes kiln's test data for XLabs' Flux IP-Adapter (flux-ip-adapter.safetensors:
the image embeds of CLIP ViT-L/14 projected to a few T5-wide tokens, which
each double block's image queries attend to through k and v of its own, that
attention times the weight added to the block's image tokens): a small
random one for flux/controlnet's transformer (3 double blocks), with
tests/data/ip_adapter's tiny CLIP vision tower, and what upstream computes.

Origin: diffusers 0.32.2 on PyTorch (CPU, float32): FluxTransformer2DModel's
_load_ip_adapter_weights with the file's tensors as its FluxIPAdapterMixin
renames them (ip_adapter_proj_model.* -> image_proj.*,
double_blocks.N.processor.ip_adapter_double_stream_{k,v}_proj ->
N.to_{k,v}_ip), every adapter at scale 0.7, on make_flux_controlnet_data.py's
transformer inputs. The tokens of a picture restate the adapter's ComfyUI
node (x-flux-comfyui) and diffusers' FluxPipeline: ComfyUI's clip_preprocess,
the tower's image embeds, the projection; the negative rows a black
picture's.

  flux/controlnet/ip_adapter.safetensors  XLabs' layout: ip_adapter_proj_model.
      proj (256,24) (4 tokens of 64), norm (64); double_blocks.N.processor.
      ip_adapter_double_stream_{k,v}_proj (32,64) with biases, N = 0..2
  flux/controlnet/ip_adapter.golden.safetensors
      embeds (2,24): random image embeds; tokens (2,4,64): the projection;
      out (2,12,64): the transformer with them on flux/controlnet/golden's
      packed, context, pooled, timestep, guidance;
      picture.tokens (2,4,64): of a black picture's embeds and of
      ip_adapter/picture_251x233.png's

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_controlnet_data.py and ip_adapter/make_ip_adapter_data.py):
  python3 tests/data/flux/make_flux_ip_adapter_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import FluxTransformer2DModel
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(DATA, "ip_adapter"))
from make_flux_canny_data import image_ids  # noqa: E402
from make_ip_adapter_data import clip_preprocess  # noqa: E402

OUT = f"{HERE}/controlnet"
SCALE = 0.7
TOKENS = 4


def main():
    torch.manual_seed(47)
    flux = FluxTransformer2DModel.from_pretrained(f"{OUT}/transformer").eval()
    D, ctx = flux.inner_dim, flux.config.joint_attention_dim
    E = 24  # the tiny tower's projection
    half = lambda t: t.half().float()  # noqa: E731 (the file's f16 values)
    image_proj = {"proj.weight": half(torch.randn(TOKENS * ctx, E) * 0.3), "proj.bias": half(torch.randn(TOKENS * ctx) * 0.05),
                  "norm.weight": half(1 + 0.1 * torch.randn(ctx)), "norm.bias": half(torch.randn(ctx) * 0.05)}
    layers = {}
    for i in range(flux.config.num_layers):
        for kv in ("k", "v"):
            layers[f"{i}.to_{kv}_ip.weight"] = half(torch.randn(D, ctx) * 0.2)
            layers[f"{i}.to_{kv}_ip.bias"] = half(torch.randn(D) * 0.05)
    xlabs = {f"ip_adapter_proj_model.{k}": v for k, v in image_proj.items()}
    for k, v in layers.items():
        i, name, kind = k.split(".")
        xlabs[f"double_blocks.{i}.processor.ip_adapter_double_stream_{name[3]}_proj.{kind}"] = v
    save_file({k: v.half().contiguous() for k, v in xlabs.items()}, f"{OUT}/ip_adapter.safetensors")
    flux._load_ip_adapter_weights({"image_proj": image_proj, "ip_adapter": layers})
    for proc in flux.attn_processors.values():
        if hasattr(proc, "scale"):
            proc.scale = [SCALE]

    g = load_file(f"{OUT}/golden.safetensors")
    B, H, W = 2, 8, 6
    embeds = torch.randn(B, E)
    inputs = dict(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                  timestep=g["timestep"], img_ids=image_ids(H, W), txt_ids=torch.zeros(g["context"].shape[1], 3),
                  guidance=g["guidance"])
    out = {"embeds": embeds}
    with torch.no_grad():
        out["tokens"] = flux.encoder_hid_proj([embeds[:, None]])[0][:, 0]
        out["out"] = flux(**inputs, joint_attention_kwargs={"ip_adapter_image_embeds": [embeds[:, None]]},
                          return_dict=False)[0]
    out.update(picture_tokens(flux))
    save_file({k: v.contiguous() for k, v in out.items()}, f"{OUT}/ip_adapter.golden.safetensors")
    print({k: tuple(v.shape) for k, v in out.items()})


def picture_tokens(flux):
    """The tokens of a black picture and of the picture: ComfyUI's
    clip_preprocess, the tiny tower's image embeds (its file's config as
    make_ip_adapter_data.py builds it), the projection."""
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=224, patch_size=14, projection_dim=24, hidden_act="gelu", layer_norm_eps=1e-5)
    tower = CLIPVisionModelWithProjection(config).eval()
    tower.load_state_dict(load_file(f"{DATA}/ip_adapter/clip_vision_tiny.safetensors"), strict=False)
    picture = np.asarray(Image.open(f"{DATA}/ip_adapter/picture_251x233.png").convert("RGB"))
    image = torch.from_numpy(picture.astype(np.float32) / 255.0)[None]
    pixels = torch.cat([clip_preprocess(torch.zeros(1, 224, 224, 3)), clip_preprocess(image)])
    with torch.no_grad():
        embeds = tower(pixel_values=pixels).image_embeds
        return {"picture.tokens": flux.encoder_hid_proj([embeds[:, None]])[0][:, 0]}


if __name__ == "__main__":
    main()
