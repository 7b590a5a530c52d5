"""Golden for ComfyUI's FluxDisableGuidance on the tiny FLUX.1 dev model.

Origin: diffusers 0.42.1's FluxTransformer2DModel (PyTorch, CPU, float32) on
tests/data/flux/transformer, with its time_text_embed made ComfyUI's Flux
vector without a guidance (comfy/ldm/flux/model.py, v0.3.64: with
guidance_embed and guidance None, vec = time_in(t) + vector_in(y), the
guidance_in term left out), restated here, not copied; the inputs are
tests/data/flux/golden.safetensors' (packed, context, pooled, timestep, the
ids as make_flux_data.py makes them).

  no_guidance.out (2,12,64): the transformer's output on those inputs.

Run from the repository root:
  /tmp/tv/bin/python tests/data/flux/make_flux_no_guidance_data.py
"""
import os

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    flux = FluxTransformer2DModel.from_pretrained(f"{HERE}/transformer", torch_dtype=torch.float32).eval()
    embed = flux.time_text_embed

    def without_guidance(timestep, guidance, pooled_projection):
        t = embed.timestep_embedder(embed.time_proj(timestep).to(pooled_projection.dtype))
        return t + embed.text_embedder(pooled_projection)

    g = load_file(f"{HERE}/golden.safetensors")
    B, T = g["context"].shape[0], g["context"].shape[1]
    img_ids = FluxPipeline._prepare_latent_image_ids(B, 8 // 2, 6 // 2, "cpu", torch.float32)
    assert torch.equal(img_ids, g["img_ids"])
    with torch.no_grad():
        plain = flux(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                     timestep=g["timestep"], img_ids=img_ids, txt_ids=torch.zeros(T, 3), guidance=g["guidance"],
                     return_dict=False)[0]
        assert (plain - g["out"]).abs().max() < 1e-5  # the golden's run, as made
        embed.forward = without_guidance
        out = flux(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                   timestep=g["timestep"], img_ids=img_ids, txt_ids=torch.zeros(T, 3), guidance=g["guidance"],
                   return_dict=False)[0]
    print("rel L2 from the guided output", ((out - plain).norm() / plain.norm()).item())
    save_file({"no_guidance.out": out.contiguous()}, f"{HERE}/no_guidance.safetensors")


if __name__ == "__main__":
    main()
