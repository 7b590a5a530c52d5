"""Writes kiln's Chroma test data: a small random Chroma transformer (Flux's
blocks without their modulation layers, every block's shift, scale and gate
read from one table that a small MLP, the "distilled guidance layer", makes
from the timestep, the guidance and each table row's index) in diffusers'
and in the original single-file layout, and what upstream computes with it.

Origin: diffusers 0.42.1 (ChromaTransformer2DModel) on PyTorch (CPU,
float32), with what ComfyUI v0.3.64 (comfy/ldm/chroma/model.py) does
differently restated on it:
  - the modulation table has 344 rows whatever the block count (FLUX.1's
    19 double and 38 single blocks' 3 * 38 + 12 * 19 + 2), the final layer's
    shift and scale its last two (diffusers sizes the table by the blocks);
  - the guidance row of the approximator's input is the conditioning's
    guidance (FluxGuidance; 0 without), where diffusers always puts 0;
  - the approximator's RMS norms take eps 1e-6 (diffusers' nn.RMSNorm:
    float32's epsilon).
The transformer: 1 double and 2 single blocks, 2 heads of 16, rotary axes
(4, 6, 6), joint_attention_dim 64 (tests/data/pixart's tiny T5), an
approximator 48 wide of 2 layers (Chroma: 3072 heads' width, 5120 and 5).
Every weight is random (seeded) and rounded to float16; the files store
float16, so the float32 goldens are exactly what the stored weights give.

  transformer/  config.json, diffusion_pytorch_model.safetensors
  single/chroma-tiny.safetensors: the same weights in the original names
       (Chroma1-HD.safetensors', ComfyUI's UNETLoader file: Flux's names,
       fused q/k/v, distilled_guidance_layer.layers.N.in_layer/out_layer,
       norms.N.scale); the renaming checked against diffusers' converter
       on a Chroma-sized key set.
  tiny/  the whole model as a ChromaPipeline folder: transformer/ the one
       above, text_encoder/ and tokenizer/ tests/data/pixart's tiny T5 and
       SentencePiece model, vae/ tests/data/flux/tiny's 16-channel VAE, all
       linked; model_index.json.
  golden.safetensors
       sample (2,16,8,6), packed (2,12,64), context (2,5,64), timestep (2)
       in [0,1], guidance (2) (0 and 3.5), img_ids (12,3), txt_ids (5,3);
       mod_input (2,344,64): the approximator's input, mods (2,344,D): the
       modulation table; out (2,12,64): the output.
       run.*: a KSampler run restated from ComfyUI's code (ModelSamplingFlux,
       shift 1.15; CONST; the simple scheduler, 4 steps of euler, cfg 2, seed
       42, an 8x6 latent): run.t5_ids.{positive,negative}
       (T5Tokenizer(legacy)'s ids: SentencePiece's and EOS, unpadded, as ComfyUI's PixArt/Chroma T5
       tokenizer), run.noise, run.sigmas, run.denoised.N, run.latent_out (x /
       0.3611 + 0.1159) and run.image (VAEDecode of it); guided.*: the same
       with FluxGuidance 4 on the positive prompt; padded.*: the plain run
       through T5TokenizerOptions (min_padding 1, min_length 0: a pad after
       each prompt's EOS).

Run from the repository root with diffusers 0.42.1, sentencepiece and torch installed:
  python3 tests/data/chroma/make_chroma_data.py
"""
import math
import os
import sys

import torch
from diffusers import AutoencoderKL, ChromaTransformer2DModel, FluxPipeline
from diffusers.loaders.single_file_utils import convert_chroma_transformer_checkpoint_to_diffusers
from safetensors.torch import save_file
import sentencepiece
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, os.path.join(DATA, "flow"))
sys.path.insert(0, os.path.join(DATA, "flux"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_single_data import check_round_trip, full_size_blocks, labelled_state  # noqa: E402
from make_flux_single_data import to_bfl as flux_to_bfl  # noqa: E402
from sd_common import PT, decode_image, randomize, save_goldens, save_half, write_json  # noqa: E402

RUN_PROMPT = "a photograph of an astronaut riding a horse"
MOD_ROWS = 344  # ComfyUI's mod_index_length
CONFIG = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=[4, 6, 6], approximator_num_channels=64,
              approximator_hidden_dim=48, approximator_layers=2)


def embed(t, dim):
    """comfy.ldm.flux.layers.timestep_embedding past its time_factor: [cos |
    sin] of t, which the caller gives as ComfyUI's 1000 x (in float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def comfy_modulation_input(timestep, guidance):
    """Chroma.forward_orig's approximator input (B, 344, 64); timestep is
    diffusers' 1000 sigma, the float32 product ComfyUI's embedding makes."""
    B = timestep.shape[0]
    index = embed(1000.0 * torch.arange(MOD_ROWS), 32).unsqueeze(0).repeat(B, 1, 1)
    tg = torch.cat([embed(timestep, 16), embed(1000.0 * guidance, 16)], dim=1).unsqueeze(1).repeat(1, MOD_ROWS, 1)
    return torch.cat([tg, index], dim=-1)


def as_comfyui(model, guidance):
    """model's table made as ComfyUI makes it, with `guidance` (a list of
    one value a row, changed by the caller between calls)."""
    model.time_text_embed.forward = lambda timestep: comfy_modulation_input(
        timestep, torch.tensor(guidance[: timestep.shape[0]], dtype=torch.float32))
    for norm in model.distilled_guidance_layer.norms:
        norm.eps = 1e-6
    return model


def to_bfl(sd):
    """A ChromaTransformer2DModel state dict in the original names: the
    approximator's renamed here, the rest as Flux's."""
    out, rest = {}, {}
    for name, t in sd.items():
        if not name.startswith("distilled_guidance_layer."):
            rest[name] = t
            continue
        n = name.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.")
        if ".norms." in n:
            n = n.replace(".weight", ".scale")
        out[n] = t
    out.update(flux_to_bfl(rest))
    return out


def check_against_diffusers():
    """to_bfl, then diffusers' converter, gives back every Chroma-sized
    tensor row for row (each row holds its tensor's number and its index;
    the converter splits fused q/k/v at Chroma's widths, so it cannot take
    the tiny model itself)."""
    D, hidden = 3072, 5120
    shapes = {"x_embedder": D, "context_embedder": D, "proj_out": 64, "distilled_guidance_layer.in_proj": hidden,
              "distilled_guidance_layer.out_proj": D}
    for i in range(2):
        shapes[f"distilled_guidance_layer.layers.{i}.linear_1"] = hidden
        shapes[f"distilled_guidance_layer.layers.{i}.linear_2"] = hidden
    shapes.update(full_size_blocks(modulated=False))
    sd = labelled_state(shapes)
    for i in range(2):
        sd[f"distilled_guidance_layer.norms.{i}.weight"] = torch.arange(hidden, dtype=torch.float64) + 1e9 * (i + 1)
    check_round_trip(sd, to_bfl, convert_chroma_transformer_checkpoint_to_diffusers)


def main():
    torch.manual_seed(31)
    model = ChromaTransformer2DModel(**CONFIG).eval()
    randomize(model, table=lambda name: False)
    folder = f"{HERE}/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(model.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "ChromaTransformer2DModel", **CONFIG}, f"{folder}/config.json")
    check_against_diffusers()
    bfl = to_bfl(model.state_dict())
    os.makedirs(f"{HERE}/single", exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in bfl.items()}, f"{HERE}/single/chroma-tiny.safetensors")

    guidance = [0.0, 3.5]
    as_comfyui(model, guidance)
    g = {}
    torch.manual_seed(37)
    B, C, H, W, T = 2, 16, 8, 6, 5
    sample = torch.randn(B, C, H, W)
    packed = FluxPipeline._pack_latents(sample, B, C, H, W)
    context = torch.randn(B, T, 64)
    timestep = torch.tensor([1.0, 0.37])
    img_ids = FluxPipeline._prepare_latent_image_ids(B, H // 2, W // 2, "cpu", torch.float32)
    txt_ids = torch.zeros(T, 3)
    with torch.no_grad():
        g["mod_input"] = model.time_text_embed(timestep * 1000)
        g["mods"] = model.distilled_guidance_layer(g["mod_input"])
        out = model(hidden_states=packed, encoder_hidden_states=context, timestep=timestep, img_ids=img_ids,
                    txt_ids=txt_ids, return_dict=False)[0]
    g.update({"sample": sample, "packed": packed, "context": context, "timestep": timestep,
              "guidance": torch.tensor(guidance), "img_ids": img_ids, "txt_ids": txt_ids, "out": out})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/golden.safetensors")
    chroma_run(model, guidance)


def link(name, target):
    path = f"{HERE}/tiny/{name}"
    if not os.path.islink(path):
        os.symlink(target, path)


def chroma_run(model, guidance):
    os.makedirs(f"{HERE}/tiny", exist_ok=True)
    link("transformer", "../transformer")
    link("text_encoder", "../../pixart/tiny/text_encoder")
    link("tokenizer", "../../pixart/tiny/tokenizer")
    link("vae", "../../flux/tiny/vae")
    write_json({"_class_name": "ChromaPipeline", "_diffusers_version": "0.42.1",
                "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
                "transformer": ["diffusers", "ChromaTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}, f"{HERE}/tiny/model_index.json")
    vae = AutoencoderKL.from_pretrained(f"{HERE}/tiny/vae", torch_dtype=torch.float32).eval()
    t5 = T5EncoderModel.from_pretrained(f"{HERE}/tiny/text_encoder", torch_dtype=torch.float32).eval()
    # T5Tokenizer(legacy=True) is SentencePiece's pieces and EOS; transformers 5's T5Tokenizer reads this small
    # model's pieces as unknown, so SentencePiece itself
    spm = sentencepiece.SentencePieceProcessor(model_file=f"{HERE}/tiny/tokenizer/spiece.model")
    g, ctx, padded = {}, {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            ids = spm.encode(text) + [spm.eos_id()]  # no padding (ComfyUI's PixArt tokenizer)
            g[f"run.t5_ids.{which}"] = torch.tensor([ids]).int()
            ctx[which] = t5(input_ids=torch.tensor([ids])).last_hidden_state
            # T5TokenizerOptions(min_padding=1, min_length=0): one pad (0) after EOS
            padded[which] = t5(input_ids=torch.tensor([ids + [0]])).last_hidden_state

    h, w, steps, cfg = 8, 6, 4, 2.0
    sigmas = simple(ModelSamplingFlux(1.15), steps)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, "cpu", torch.float32)
    guidances = {"positive": 0.0, "negative": 0.0}

    def call(x, sigma, which):
        guidance[0] = guidances[which]
        packed = FluxPipeline._pack_latents(x, 1, 16, h, w)
        with torch.no_grad():
            out = model(hidden_states=packed, encoder_hidden_states=ctx[which], timestep=sigma.view(1),
                        img_ids=img_ids, txt_ids=torch.zeros(ctx[which].shape[1], 3), return_dict=False)[0]
        return FluxPipeline._unpack_latents(out, h, w, 1)  # 2x2 patches back into the h x w latent

    def run(prefix):
        """KSampler: CONST's noise mixing, euler with CFG, process_out."""
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        x = sigmas[0] * noise
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x0 = {k: x - call(x, s, k) * s for k in ("negative", "positive")}
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            g[f"{prefix}denoised.{i}"] = d
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        latent = x / 0.3611 + 0.1159
        g.update({f"{prefix}noise": noise, f"{prefix}sigmas": sigmas, f"{prefix}latent_out": latent,
                  f"{prefix}image": decode_image(vae, latent)})

    run("run.")
    guidances["positive"] = 4.0  # FluxGuidance on the positive prompt
    run("guided.")
    guidances["positive"] = 0.0
    ctx.update(padded)
    run("padded.")
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/run.golden.safetensors")


if __name__ == "__main__":
    main()
