"""Writes kiln's layout manifests for the DiT families' diffusers folders:
the name, dtype and shape of every tensor of each part of PixArt-XL-2-1024-MS
and of FLUX.1-dev and FLUX.1-schnell, so that a test can write a sparse
folder with exactly those tensors and check kiln's binding against the real
layouts without shipping gigabytes of weights.

Origin: diffusers 0.30.3 and transformers 4.44.2 on PyTorch. Every module is
built on the meta device (nothing is allocated) with the published configs,
restated below: PixArt-alpha/PixArt-XL-2-1024-MS's transformer/ (28 blocks
of 16 heads of 72, caption_channels 4096, sample_size 128) and
text_encoder/ (T5 v1.1 XXL: d_model 4096, d_ff 10240, 24 layers, 64 heads of
64, vocab 32128, as transformers saves a T5EncoderModel: `shared.weight`
and `encoder.*`), black-forest-labs/FLUX.1-dev's and FLUX.1-schnell's
transformer/ (19 double and 38 single blocks of 24 heads of 128, axes 16, 56,
56; dev with the guidance embedder), text_encoder/ (CLIP ViT-L/14's text
model) and vae/ (16 latent channels, no quant convs); the same T5 as
text_encoder_2/. Each manifest is the state dict's names and shapes, the
dtype the published files store.

  pixart_xl_2_1024_transformer.json, t5_v1_1_xxl.json,
  flux_dev_transformer.json, flux_schnell_transformer.json,
  clip_vit_l14_text.json, flux_vae.json, sd_vae.json (SD's VAE, PixArt's vae/, in
  diffusers' names)
  flux_dev_bfl.json: FLUX.1-dev's transformer as Black Forest Labs ship it
  (flux1-dev.safetensors, ComfyUI's UNETLoader file): the dev transformer's
  state dict renamed by tests/data/flux/make_flux_single_data.py's to_bfl,
  which that script checks against diffusers' converter

Run from the repository root with diffusers 0.30.3, transformers 4.44.2 and
torch installed:
  python3 tests/data/layouts/make_dit_layout_manifests.py
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel, PixArtTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flux"))
from make_flux_single_data import to_bfl  # noqa: E402


def write(name, module, dtype, origin, drop=()):
    state = module if isinstance(module, dict) else module.state_dict()
    tensors = [[k, list(v.shape)] for k, v in state.items() if k not in drop]
    with open(f"{HERE}/{name}.json", "w") as f:
        json.dump({"origin": origin, "dtype": dtype, "tensors": tensors}, f, indent=0)
    print(name, len(tensors))


def main():
    with torch.device("meta"):
        pixart = PixArtTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4,
                                          out_channels=8, num_layers=28, cross_attention_dim=1152,
                                          norm_type="ada_norm_single", caption_channels=4096, sample_size=128,
                                          patch_size=2, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                          norm_elementwise_affine=False, norm_eps=1e-6, attention_bias=True,
                                          use_additional_conditions=True)
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                     num_heads=64, relative_attention_num_buckets=32,
                                     relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                                     is_encoder_decoder=False, tie_word_embeddings=False))
        flux = {guidance: FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                                 attention_head_dim=128, num_attention_heads=24,
                                                 joint_attention_dim=4096, pooled_projection_dim=768,
                                                 guidance_embeds=guidance, axes_dims_rope=[16, 56, 56])
                for guidance in (True, False)}
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12,
                                            max_position_embeddings=77, hidden_act="quick_gelu"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16,
                            block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
                            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            use_quant_conv=False, use_post_quant_conv=False)
        sd_vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                               block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
                               down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    write("pixart_xl_2_1024_transformer", pixart, "F16", "PixArt-alpha/PixArt-XL-2-1024-MS transformer/")
    # transformers writes the tied token table once, as shared.weight
    write("t5_v1_1_xxl", t5, "F16", "T5 v1.1 XXL encoder (PixArt's text_encoder/, FLUX.1's text_encoder_2/)",
          drop=("encoder.embed_tokens.weight",))
    write("flux_dev_transformer", flux[True], "BF16", "black-forest-labs/FLUX.1-dev transformer/")
    write("flux_schnell_transformer", flux[False], "BF16", "black-forest-labs/FLUX.1-schnell transformer/")
    write("flux_dev_bfl", to_bfl(flux[True].state_dict()), "BF16", "black-forest-labs/FLUX.1-dev flux1-dev.safetensors")
    write("clip_vit_l14_text", clip, "F16", "FLUX.1's text_encoder/ (CLIP ViT-L/14's text model)",
          drop=("text_model.embeddings.position_ids",))
    write("flux_vae", vae, "F32", "black-forest-labs/FLUX.1-dev vae/")
    write("sd_vae", sd_vae, "F32", "SD's VAE in diffusers' names (PixArt-XL-2-1024-MS vae/, sd-vae-ft-ema)")


if __name__ == "__main__":
    main()
