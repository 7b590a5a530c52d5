"""Writes kiln's test data for PixArt's original single files, the layout
PixArt's own repository saves and ComfyUI's UNETLoader reads.

Origin: the tiny PixArt-alpha transformer of tests/data/pixart/tiny (see
make_pixart_data.py) renamed to PixArt's original names by the key map of
ComfyUI v0.3.64's comfy/utils.py (pixart_to_diffusers: attn.qkv holds
attn1's q, k, v rows; cross_attn.kv_linear attn2's k, v), restated here, not
copied; and what ComfyUI's PixArtMS (comfy/ldm/pixart/pixartms.py) computes
with it, restated as diffusers 0.42.1's PixArtTransformer2DModel (PyTorch,
CPU, float32) with ComfyUI's position table in place of diffusers'. The two
models differ only there: ComfyUI builds the 2-D sine table for the latent it
is given, c_res = (h + w) // 2, pe_interpolation = round(c_res / 64) (Python's
round, half to even) unless the file's `pos_embed` buffer fixes it at
input_size // 64, and base_size = round(c_res / 64) * 64 // 2.

  single/pixart_alpha_tiny.safetensors
       the transformer alone in the original names (float16 as the folder
       stores it), with y_embedder.y_embedding (120 x 64 zeros: PixArt-alpha's
       caption length, which ComfyUI reads as model_max_length) and no
       pos_embed buffer.
  single/golden.safetensors
       positions.table (159, 144): ComfyUI's table for a 2 x 318 latent
         (c_res 160: round(2.5) = 2, half to even);
       alpha.sample (2,4,32,40), alpha.timestep (2), alpha.out (2,8,32,40):
         the file's model on the two contexts of tests/data/pixart/golden's
         t5.out.0 and t5.out.1, each row on its own caption, c_size the
         latent's 8x and c_ar h / w (ComfyUI's defaults);
       sized.out: the same with CLIPTextEncodePixArtAlpha's size on the
         first row's prompt (width 1024, height 768: c_size [768, 1024], c_ar
         0.75);
       wide.sample (1,4,16,176), wide.out: the same at c_res 96 (round(1.5)
         = 2, base_size 64) on t5.out.0 at timestep 500;
       sigma.out: that call without the size embedders and with the table
         fixed at pe_interpolation 1, as a Sigma file whose pos_embed buffer
         has 32 x 32 tokens reads (the test writes that file from the alpha
         one: size embedders out, y_embedding of 300 rows, pos_embed in);
       run.ids.positive, run.ids.negative (RUN_PROMPT's and the empty
         prompt's, from tests/data/pixart/golden), run.noise, run.latent_out,
         run.image: ComfyUI's KSampler with the file as UNETLoader's model, the
         folder's T5 as CLIPLoader's (type pixart: each prompt's ids and EOS,
         unpadded) and its VAE as VAELoader's (euler, normal, 4 steps, cfg
         4.5, seed 42, a 36 x 36 latent; c_size the picture's pixels, 72 x 72,
         which ComfyUI's latent-times-8 is for a real VAE; PixArt-alpha's
         latent scale 0.18215).

Run from the repository root:
  /tmp/tv/bin/python tests/data/pixart/make_pixart_single_data.py
"""
import os
import sys

import torch
from diffusers import AutoencoderKL, PixArtTransformer2DModel
from safetensors.torch import load_file, save_file
from transformers import T5EncoderModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sd_common import (PT, cfg_denoiser, comfy_normal_sigmas, decode_image, eps_x0, ksampler,  # noqa: E402
                       save_goldens)

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = f"{HERE}/tiny"
RUN_PROMPT = "a red fox in the snow, 1024 pixels"  # make_pixart_data.py's, whose ids its golden keeps

# PixArt's original names -> diffusers' (whole names, or prefixes kept with their ends)
MODEL_NAMES = [
    ("csize_embedder.mlp.0.", "adaln_single.emb.resolution_embedder.linear_1."),
    ("csize_embedder.mlp.2.", "adaln_single.emb.resolution_embedder.linear_2."),
    ("ar_embedder.mlp.0.", "adaln_single.emb.aspect_ratio_embedder.linear_1."),
    ("ar_embedder.mlp.2.", "adaln_single.emb.aspect_ratio_embedder.linear_2."),
    ("x_embedder.proj.", "pos_embed.proj."),
    ("y_embedder.y_proj.fc1.", "caption_projection.linear_1."),
    ("y_embedder.y_proj.fc2.", "caption_projection.linear_2."),
    ("t_embedder.mlp.0.", "adaln_single.emb.timestep_embedder.linear_1."),
    ("t_embedder.mlp.2.", "adaln_single.emb.timestep_embedder.linear_2."),
    ("t_block.1.", "adaln_single.linear."),
    ("final_layer.linear.", "proj_out."),
    ("final_layer.scale_shift_table", "scale_shift_table"),
]
BLOCK_NAMES = [
    ("scale_shift_table", "scale_shift_table"),
    ("attn.proj.", "attn1.to_out.0."),
    ("cross_attn.q_linear.", "attn2.to_q."),
    ("cross_attn.proj.", "attn2.to_out.0."),
    ("mlp.fc1.", "ff.net.0.proj."),
    ("mlp.fc2.", "ff.net.2."),
]


def original_state(sd, layers):
    """diffusers' state dict -> PixArt's original one (q, k, v and k, v fused)."""
    out = {}
    for orig, diff in MODEL_NAMES:
        for k, v in sd.items():
            if k.startswith(diff):
                out[orig + k[len(diff):]] = v
    for i in range(layers):
        b = f"transformer_blocks.{i}."
        for orig, diff in BLOCK_NAMES:
            for k, v in sd.items():
                if k.startswith(b + diff):
                    out[f"blocks.{i}.{orig}{k[len(b + diff):]}"] = v
        for end in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{end}"] = torch.cat([sd[f"{b}attn1.to_{x}.{end}"] for x in "qkv"])
            out[f"blocks.{i}.cross_attn.kv_linear.{end}"] = torch.cat([sd[f"{b}attn2.to_{x}.{end}"] for x in "kv"])
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in sd.values())
    return out


def comfy_table(dim, h, w, pe_fixed=None):
    """ComfyUI's PixArtMS position table for an (h, w) grid of patches of a
    latent 2h x 2w, restated: float32 grids, float32 frequencies."""
    c_res = (2 * h + 2 * w) // 2
    pe = pe_fixed if pe_fixed is not None else round(c_res / 64.0)
    base = round(c_res / 64) * 64 // 2
    gh, gw = torch.meshgrid(torch.arange(h, dtype=torch.float32) / (h / base) / pe,
                            torch.arange(w, dtype=torch.float32) / (w / base) / pe, indexing="ij")

    def axis(pos):
        omega = torch.arange(dim // 4, dtype=torch.float32)
        omega /= dim / 4.0
        omega = 1.0 / 10000 ** omega
        out = torch.einsum("m,d->md", pos.reshape(-1), omega)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    return torch.cat([axis(gw), axis(gh)], dim=1)


def comfy_model(dit, pe_fixed=None):
    """The transformer with ComfyUI's table in its patch embedding."""
    embed = dit.pos_embed

    def forward(latent):
        h, w = latent.shape[-2] // 2, latent.shape[-1] // 2
        x = embed.proj(latent).flatten(2).transpose(1, 2)
        return x + comfy_table(x.shape[-1], h, w, pe_fixed).unsqueeze(0)

    embed.forward = forward
    return dit


def call(dit, sample, timestep, contexts, sizes):
    """Each row on its own caption (ComfyUI batches rows of one length; kiln
    runs each on its own), ComfyUI's c_size and c_ar: `sizes` (height, width)
    for every row, or a list of one per row."""
    outs = []
    for r in range(sample.shape[0]):
        h, w = sizes[r] if isinstance(sizes, list) else sizes
        cond = {"resolution": torch.tensor([[float(h), float(w)]]), "aspect_ratio": torch.tensor([[h / w]])}
        with torch.no_grad():
            outs.append(dit(sample[r:r + 1], encoder_hidden_states=contexts[r], timestep=timestep[r:r + 1],
                            added_cond_kwargs=cond, return_dict=False)[0])
    return torch.cat(outs)


def main():
    folder = f"{TINY}/transformer"
    dit = comfy_model(PixArtTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval())
    sd = load_file(f"{folder}/diffusion_pytorch_model.safetensors")
    single = original_state(sd, dit.config.num_layers)
    single["y_embedder.y_embedding"] = torch.zeros(120, dit.config.caption_channels, dtype=torch.float16)
    os.makedirs(f"{HERE}/single", exist_ok=True)
    save_file(single, f"{HERE}/single/pixart_alpha_tiny.safetensors", metadata=PT)

    g = {"positions.table": comfy_table(144, 1, 159)}
    assert round(160 / 64.0) == 2
    prompts = load_file(f"{HERE}/golden.safetensors")
    contexts = [prompts["t5.out.0"].float(), prompts["t5.out.1"].float()]
    torch.manual_seed(21)
    g["alpha.sample"] = torch.randn(2, 4, 32, 40)
    g["alpha.timestep"] = torch.tensor([999.0, 261.0])
    g["alpha.out"] = call(dit, g["alpha.sample"], g["alpha.timestep"], contexts, (8 * 32, 8 * 40))
    # CLIPTextEncodePixArtAlpha (width 1024, height 768) on the first row's prompt: c_size [768, 1024], c_ar 0.75;
    # the second row a plain prompt's (the latent's 8x)
    g["sized.out"] = call(dit, g["alpha.sample"], g["alpha.timestep"], contexts, [(768, 1024), (8 * 32, 8 * 40)])
    g["wide.sample"] = torch.randn(1, 4, 16, 176)
    g["wide.out"] = call(dit, g["wide.sample"], torch.tensor([500.0]), contexts, (8 * 16, 8 * 176))
    sigma = comfy_model(PixArtTransformer2DModel.from_pretrained(folder, use_additional_conditions=False,
                                                                 torch_dtype=torch.float32).eval(),
                        pe_fixed=1)
    g["sigma.out"] = call(sigma, g["wide.sample"], torch.tensor([500.0]), contexts, (8 * 16, 8 * 176))
    assert (g["sigma.out"] - g["wide.out"]).abs().max() > 1e-3  # the size embedders and the table count

    t5 = T5EncoderModel.from_pretrained(f"{TINY}/text_encoder", torch_dtype=torch.float32).eval()
    # the prompts' ids as make_pixart_data.py's T5Tokenizer (transformers 4.40) gave them
    ids = [prompts["run.ids.negative"], prompts["run.ids.positive"]]
    g["run.ids.negative"], g["run.ids.positive"] = ids
    with torch.no_grad():
        captions = [t5(input_ids=i.long()).last_hidden_state for i in ids]
    vae = AutoencoderKL.from_pretrained(f"{TINY}/vae", torch_dtype=torch.float32).eval()
    side, f, steps, cfg = 36, 2, 4, 4.5

    def model(xin, t):
        return call(dit, xin, t, captions, (f * side, f * side))[:, :4]

    sigmas, timestep = comfy_normal_sigmas(steps, torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64))
    torch.manual_seed(42)
    g["run.noise"] = torch.randn(1, 4, side, side)
    g["run.latent_out"] = ksampler(cfg_denoiser(model, eps_x0, cfg, timestep), g["run.noise"], sigmas, 0.18215, {})
    g["run.image"] = decode_image(vae, g["run.latent_out"])
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/single/golden.safetensors")
    for k, v in g.items():
        print(k, tuple(v.shape))


if __name__ == "__main__":
    main()
