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

  tiny/  the whole model as a FluxPipeline folder: transformer/ the one above,
       text_encoder/ the tiny SD 1.x model's CLIP (read for its pooled
       output, 32 wide), text_encoder_2/ and tokenizer_2/ tests/data/pixart's
       tiny T5 and SentencePiece model, all linked; vae/ tests/data/vae_flux's
       16-channel VAE (the same seeded weights, rebuilt by its script's
       config) in diffusers' names with FLUX.1's scale and shift;
       model_index.json.
  run.golden.safetensors: a KSampler run restated from ComfyUI's code
       (tests/data/flow/make_flow_data.py's ModelSamplingFlux, shift 1.15;
       CONST; the simple scheduler, 4 steps of euler, cfg 2, seed 42, an 8x6
       latent, FluxGuidance 3.5): run.clip_ids.{positive,negative} (the
       CLIP tokenizer goldens' ids of RUN_PROMPT and of ""), run.pooled.*
       (CLIPTextModel's pooler_output), run.t5_ids.* (T5Tokenizer(legacy)
       ids padded with 0 to 256, as ComfyUI's Flux T5 tokenizer), run.noise,
       run.sigmas, run.denoised.N, run.latent_out (x / 0.3611 + 0.1159) and
       run.image (VAEDecode of it); img2img.*: the same at denoise 0.6 from
       img2img.latent_in (a random LATENT as VAEEncode gives one); inpaint.*:
       that LATENT inpainted at denoise 1 with SetLatentNoiseMask's
       inpaint.mask (8x6, the latent's size) through KSamplerX0Inpaint;
       guided.*: the txt2img run with FluxGuidance 2.5 on the positive
       prompt and 5 on the negative.

Run from the repository root with diffusers 0.30.3 and torch installed:
  python3 tests/data/flux/make_flux_data.py
"""
import os
import sys

import json

import torch
from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vae_flux"))
import make_vae_flux_data  # noqa: E402
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from sd_common import (PT, decode_image, randomize, record_outputs, save_goldens, save_half,  # noqa: E402
                       write_json)

DATA = os.path.dirname(HERE)
RUN_PROMPT = "a photograph of an astronaut riding a horse"  # a case of tests/data/tokenizer's goldens

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
    flux_run(flux)


def link(name, target):
    path = f"{HERE}/tiny/{name}"
    if not os.path.islink(path):
        os.symlink(target, path)


def tiny_vae():
    """tests/data/vae_flux's VAE: its script's config and seed give the same
    weights; written in diffusers' names as a folder part."""
    torch.manual_seed(23)
    vae = AutoencoderKL(**make_vae_flux_data.CONFIG).eval()
    randomize(vae, table=lambda name: False)
    os.makedirs(f"{HERE}/tiny/vae", exist_ok=True)
    save_half(vae.state_dict(), f"{HERE}/tiny/vae/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "AutoencoderKL", **make_vae_flux_data.CONFIG}, f"{HERE}/tiny/vae/config.json")
    return vae


def flux_run(flux):
    os.makedirs(f"{HERE}/tiny", exist_ok=True)
    link("transformer", "../transformer")
    link("text_encoder", "../../tiny/sd15_tiny_diffusers/text_encoder")
    link("text_encoder_2", "../../pixart/tiny/text_encoder")
    link("tokenizer_2", "../../pixart/tiny/tokenizer")
    vae = tiny_vae()
    write_json({"_class_name": "FluxPipeline", "_diffusers_version": "0.30.3",
                "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
                "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}, f"{HERE}/tiny/model_index.json")

    with open(f"{DATA}/tokenizer/tokenizer_goldens.json") as f:
        cases = {c["prompt"]: c["ids_77"] for c in json.load(f)["prompts"]}
    clip_ids = {"positive": cases[RUN_PROMPT], "negative": [49406] + [49407] * 76}
    clip = CLIPTextModel.from_pretrained(f"{HERE}/tiny/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{HERE}/tiny/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{HERE}/tiny/tokenizer_2/spiece.model", legacy=True)
    g, ctx, pooled = {}, {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            ids = torch.tensor([clip_ids[which]])
            g[f"run.clip_ids.{which}"] = ids.int()
            pooled[which] = g[f"run.pooled.{which}"] = clip(input_ids=ids).pooler_output
            t5_ids = tok(text).input_ids
            t5_ids = t5_ids + [0] * (256 - len(t5_ids))
            g[f"run.t5_ids.{which}"] = torch.tensor([t5_ids]).int()
            ctx[which] = t5(input_ids=torch.tensor([t5_ids])).last_hidden_state

    h, w, steps, cfg, guidance = 8, 6, 4, 2.0, 3.5
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, h, w, "cpu", torch.float32)
    txt_ids = torch.zeros(1, 256, 3)

    guidances = {"positive": guidance, "negative": guidance}  # FluxGuidance on each prompt (3.5: ComfyUI's default)

    def model(x, sigma, which):
        packed = FluxPipeline._pack_latents(x, 1, 16, h, w)
        with torch.no_grad():
            out = flux(hidden_states=packed, encoder_hidden_states=ctx[which], pooled_projections=pooled[which],
                       timestep=sigma.view(1), img_ids=img_ids, txt_ids=txt_ids,
                       guidance=torch.tensor([guidances[which]]), return_dict=False)[0]
        return FluxPipeline._unpack_latents(out, h, w, 2)  # (h/2, w/2) patches of 2x2

    def sample(sigmas, latent_in, prefix, mask=None):
        """KSampler: CONST's noise mixing of the latent as the model takes it
        (process_in), euler with CFG, process_out; with a noise mask,
        KSamplerX0Inpaint around the model: the kept part of x renoised to
        the step's sigma the CONST way (noise_scaling) before the call, of
        the prediction the latent image after it."""
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        image = (latent_in - 0.1159) * 0.3611
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x_in = x if mask is None else x * mask + (s * noise + (1.0 - s) * image) * (1.0 - mask)
            x0 = {k: x_in - model(x_in, s, k) * s for k in ("negative", "positive")}  # CONST: x - out sigma
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            if mask is not None:
                d = d * mask + image * (1.0 - mask)
            g[f"{prefix}denoised.{i}"] = d
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        latent = x / 0.3611 + 0.1159  # process_out (inverse noise scaling at sigma 0 is x itself)
        g.update({f"{prefix}noise": noise, f"{prefix}sigmas": sigmas, f"{prefix}latent_out": latent,
                  f"{prefix}image": decode_image(vae, latent)})

    sample(sigmas, torch.zeros(1, 16, h, w), "run.")  # txt2img: the empty latent
    # img2img at denoise 0.6: KSampler's schedule for int(4 / 0.6) = 6 steps, its last 5 sigmas
    latent_in = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(8))
    g["img2img.latent_in"] = latent_in
    sample(simple(ms, int(steps / 0.6))[-(steps + 1):], latent_in, "img2img.")
    # inpainting (SetLatentNoiseMask) of that latent at full denoise, a noise mask at the latent's size
    # (repaint the left half, keep the right, a soft column between)
    mask = torch.zeros(1, 1, h, w)
    mask[..., : w // 2] = 1.0
    mask[..., w // 2] = 0.25
    g["inpaint.mask"] = mask
    sample(sigmas, latent_in, "inpaint.", mask)
    # FluxGuidance on both prompts: 2.5 on the positive, 5 on the negative
    guidances.update(positive=2.5, negative=5.0)
    sample(sigmas, torch.zeros(1, 16, h, w), "guided.")
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/run.golden.safetensors")


if __name__ == "__main__":
    main()
