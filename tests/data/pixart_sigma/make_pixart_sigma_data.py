"""Writes kiln's PixArt-Sigma test data: a small random model with
PixArt-Sigma's architecture as the diffusers folder PixArtSigmaPipeline
loads, and a KSampler run on it.

Origin: diffusers 0.30.3 (PixArtTransformer2DModel, which PixArt-Sigma needs:
diffusers 0.27 has no Sigma) and transformers 4.44.2 on PyTorch (CPU,
float32). What differs from tests/data/pixart's alpha model, as upstream's
PixArt-Sigma-XL-2-1024-MS has it: no size conditions at sample_size 128
(use_additional_conditions false), SDXL's VAE scale (0.13025) and prompts of
up to 300 T5 ids (PixArtSigmaPipeline's max_sequence_length).

  tiny/  the folder: transformer/ a tiny Sigma DiT (2 blocks of 2 heads of 72,
       caption_channels 64, 8 output channels), seeded and rounded to
       float16; text_encoder/ and tokenizer/ links to tests/data/pixart's
       (the same tiny T5 and SentencePiece model); vae/ the tiny SD 1.x VAE's
       weights (a link) with scaling_factor 0.13025 in its config, as
       SDXL's VAE has; scheduler/ and model_index.json (PixArtSigmaPipeline).
  golden.safetensors
       run.ids.positive / run.ids.negative: T5Tokenizer(legacy=True) of
         RUN_PROMPT (more than 120 ids, fewer than 300) and of "";
       run.noise, run.sigmas, run.denoised.N, run.latent_out, run.image: a
         KSampler run restated from ComfyUI's code (ComfyUI's PixArtSigma:
         PixArtAlpha's "sqrt_linear" betas 0.0001 .. 0.02, eps, SDXL's latent
         scale; euler, normal scheduler, 4 steps, cfg 4.5, seed 42, a 12x10
         latent).

Run from the repository root with diffusers 0.30.3, transformers 4.44.2 and
torch installed:
  python3 tests/data/pixart_sigma/make_pixart_sigma_data.py
"""
import os
import sys

import torch
from diffusers import PixArtTransformer2DModel
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, f"{DATA}/pixart")
from make_pixart_data import encode_prompts, write_scheduler_and_index  # noqa: E402
from sd_common import (PT, cfg_denoiser, comfy_normal_sigmas, decode_image, eps_x0, ksampler,  # noqa: E402
                       randomize, save_goldens, save_half, tiny_vae, tiny_vae_config, write_json)

ALPHA = f"{DATA}/pixart/tiny"
SCALE = 0.13025
RUN_PROMPT = ("a watercolour of a lighthouse on a cliff at dusk, waves breaking on black rocks below, "
              "gulls in a pale orange sky, a narrow path winding up through tall grass to a white door, "
              "one lit window, fishing boats")

DIT_CONFIG = dict(num_attention_heads=2, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=144, norm_type="ada_norm_single", caption_channels=64, sample_size=128,
                  patch_size=2, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                  norm_elementwise_affine=False, norm_eps=1e-6, attention_bias=True, upcast_attention=False,
                  dropout=0.0, interpolation_scale=2, use_additional_conditions=False)


def link(name, target):
    path = f"{HERE}/tiny/{name}"
    if not os.path.islink(path):
        os.symlink(target, path)


def make_folder():
    folder = f"{HERE}/tiny"
    os.makedirs(f"{folder}/transformer", exist_ok=True)
    torch.manual_seed(13)
    dit = PixArtTransformer2DModel(**DIT_CONFIG).eval()
    randomize(dit, table=lambda name: name.endswith("scale_shift_table"))
    save_half(dit.state_dict(), f"{folder}/transformer/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "PixArtTransformer2DModel", **DIT_CONFIG}, f"{folder}/transformer/config.json")
    back = PixArtTransformer2DModel.from_pretrained(f"{folder}/transformer").eval()
    for k, v in dit.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    link("text_encoder", "../../pixart/tiny/text_encoder")
    link("tokenizer", "../../pixart/tiny/tokenizer")
    os.makedirs(f"{folder}/vae", exist_ok=True)
    link("vae/diffusion_pytorch_model.safetensors", "../../../pixart/tiny/vae/diffusion_pytorch_model.safetensors")
    write_json(tiny_vae_config(f"{DATA}/tiny", SCALE), f"{folder}/vae/config.json")
    write_scheduler_and_index(folder, "PixArtSigmaPipeline", "PixArtTransformer2DModel", "0.30.3")
    return dit


def main():
    dit = make_folder()
    t5 = T5EncoderModel.from_pretrained(f"{ALPHA}/text_encoder").eval()
    g = {}
    context, mask = encode_prompts(g, t5, RUN_PROMPT, 300)
    assert 120 < g["run.ids.positive"].shape[1] < 300, g["run.ids.positive"].shape

    def model(xin, t):
        with torch.no_grad():
            out = dit(xin, encoder_hidden_states=context, timestep=t, encoder_attention_mask=mask,
                      added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
        return out[:, :4]

    betas = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)
    sigmas, timestep = comfy_normal_sigmas(4, betas)
    torch.manual_seed(42)
    noise = torch.randn(1, 4, 12, 10)
    latent = ksampler(cfg_denoiser(model, eps_x0, 4.5, timestep), noise, sigmas, SCALE, g)
    vae = tiny_vae(f"{DATA}/tiny")
    g.update({"run.noise": noise, "run.sigmas": sigmas, "run.latent_out": latent,
              "run.image": decode_image(vae, latent)})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
