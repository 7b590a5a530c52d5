"""Writes kiln's Flux test data: a small random FLUX.1-dev-shaped transformer
in the diffusers layout and what upstream computes with it.

Origin: diffusers 0.30.3 (FluxTransformer2DModel) on PyTorch (CPU, float32).
The transformer has Flux's architecture at a small width: 1 double-stream
(MMDiT) block and 2 single-stream blocks, 2 heads of 16 with rotary axes
(4, 6, 6) (Flux: 24 heads of 128, axes (16, 56, 56)), the guidance embedding
of the dev model, joint_attention_dim 64 (tests/data/pixart's tiny T5) and
pooled_projection_dim 32 (the tiny SD 1.x model's CLIP width). Every weight
is random (seeded; the norms too) and rounded to float16, and the file stores
float16, so the float32 goldens are exactly what the stored weights give.

  transformer/  config.json, diffusion_pytorch_model.safetensors
  golden.safetensors
       sample (2,16,8,6): two latents as the pipeline holds them before
         packing; packed (2,12,64): diffusers' _pack_latents of it;
       context (2,5,64), pooled (2,32), timestep (2) in [0,1], guidance (2);
       img_ids (12,3), txt_ids (5,3): FluxPipeline's _prepare_latent_image_ids;
       out (2,12,64): the transformer's output (packed), and x.<module>:
         hooks on the embedders and every block (for finding where a port
         goes wrong).

Run from the repository root with diffusers 0.30.3 and torch installed:
  python3 tests/data/flux/make_flux_data.py
"""
import os
import sys

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from sd_common import PT, randomize, record_outputs, save_goldens, save_half, write_json  # noqa: E402

CONFIG = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
              axes_dims_rope=[4, 6, 6])


def main():
    torch.manual_seed(17)
    flux = FluxTransformer2DModel(**CONFIG).eval()
    randomize(flux, table=lambda name: False)
    folder = f"{HERE}/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(flux.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxTransformer2DModel", **CONFIG}, f"{folder}/config.json")
    back = FluxTransformer2DModel.from_pretrained(folder).eval()
    for k, v in flux.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k

    g = {}
    torch.manual_seed(19)
    B, C, H, W, T = 2, 16, 8, 6, 5
    sample = torch.randn(B, C, H, W)
    packed = FluxPipeline._pack_latents(sample, B, C, H, W)
    context = torch.randn(B, T, 64)
    pooled = torch.randn(B, 32)
    timestep = torch.tensor([1.0, 0.37])
    guidance = torch.tensor([3.5, 3.5])
    # diffusers 0.30 makes the ids per batch row (the same in every row)
    img_ids = FluxPipeline._prepare_latent_image_ids(B, H, W, "cpu", torch.float32)
    txt_ids = torch.zeros(B, T, 3)
    names = ["x_embedder", "context_embedder", "time_text_embed", "transformer_blocks.0",
             "single_transformer_blocks.0", "single_transformer_blocks.1", "norm_out"]
    hooks = record_outputs(flux, names, g)
    with torch.no_grad():
        out = flux(hidden_states=packed, encoder_hidden_states=context, pooled_projections=pooled,
                   timestep=timestep, img_ids=img_ids, txt_ids=txt_ids, guidance=guidance, return_dict=False)[0]
    for h in hooks:
        h.remove()
    g.update({"sample": sample, "packed": packed, "context": context, "pooled": pooled, "timestep": timestep,
              "guidance": guidance, "img_ids": img_ids[0], "txt_ids": txt_ids[0], "out": out})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
