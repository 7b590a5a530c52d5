"""Writes kiln's PixArt-alpha test data: a small random model with PixArt-alpha's
architecture (the T5 v1.1 text encoder, the adaLN-single DiT) in the diffusers
folder layout that PixArtAlphaPipeline loads, and what upstream code computes
with it.

Origin: transformers 4.40 (T5EncoderModel) and diffusers 0.27.2
(Transformer2DModel with norm_type "ada_norm_single", as PixArt-XL-2-1024-MS
configures it) on PyTorch (CPU, float32). Every weight is random (seeded; the
norms too) and rounded to float16, and the files store float16, so the float32
goldens are exactly what the stored weights give.

  tiny/text_encoder/  transformers' T5EncoderModel folder (config.json, model.safetensors)
       of a tiny T5 v1.1 (gated GELU, 2 layers, 4 heads of 16, d_model 64,
       relative-position buckets 32 up to distance 128).
  tiny/transformer/  a tiny PixArt-alpha DiT: 2 blocks of 2 heads of 72 (the real
       head width), patch 2, sample_size 128 (so, as the 1024 model, it embeds
       the picture's size and aspect ratio: use_additional_conditions),
       caption_channels 64 (the tiny T5's width), 8 output channels (the
       learned variance after the noise).
  golden.safetensors
       t5.ids.N, t5.out.N: three id rows (EOS = 1 last; the third 120 long,
         PixArt's longest prompt) and the encoder's last_hidden_state for
         each, run on its own without padding;
       t5.buckets: transformers' relative-position bucket of every distance
         from -300 to 300 (32 buckets up to 128, bidirectional);
       t5.padded.out: the first two rows padded with 0 to 12 with their attention mask
         (what PixArtAlphaPipeline runs): the unpadded rows must equal its
         unmasked part, which is why kiln runs each prompt at its own length;
       dit.sample (2,4,12,10), dit.timestep (2), dit.context.N (1,T_N,64),
       dit.resolution (2,2), dit.aspect_ratio (2,1), and dit.out (2,8,12,10):
         the DiT with both rows' contexts padded to one length under
         encoder_attention_mask, as the pipeline calls it; dit.x.<module>:
         hooks on the patch embedding, adaLN-single, caption projection and
         every block (row-batched, for finding where a port goes wrong).

  tiny/  is also the whole model as a diffusers folder: tokenizer/spiece.model
       (a link to tests/data/spm_tokenizer's small unigram model, whose 1000
       pieces fit the T5's table), vae/ (the tiny SD 1.x model's VAE: PixArt
       uses SD's), scheduler/ (PixArt's DPM-Solver config on its linear betas
       0.0001 .. 0.02) and model_index.json (PixArtAlphaPipeline).
  golden.safetensors, run.*: a KSampler run restated from ComfyUI's code on
       that folder (ComfyUI's PixArtAlpha sampling: "sqrt_linear" betas
       0.0001 .. 0.02, eps prediction, the first 4 of the 8 output channels;
       euler, normal scheduler, 5 steps, cfg 4.5, seed 42, a 12x10 latent,
       the picture's size as the tiny VAE makes it, 24x20):
       run.ids.positive / run.ids.negative (T5Tokenizer(legacy=True) of
       RUN_PROMPT and of the empty negative prompt), run.noise, run.sigmas,
       run.denoised.N, run.latent_out and run.image (VAEDecode of it).

Run from the repository root with torch, diffusers and transformers installed:
  python3 tests/data/pixart/make_pixart_data.py
"""
import os
import sys

import torch
from diffusers import Transformer2DModel
from transformers import T5Config, T5EncoderModel, T5Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sd_common import (PT, cfg_denoiser, comfy_normal_sigmas, decode_image, eps_x0, ksampler,  # noqa: E402
                       randomize, record_outputs, save_goldens, save_half, save_t5_folder, tiny_vae, tiny_vae_config,
                       write_json)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
RUN_PROMPT = "a red fox in the snow, 1024 pixels"

T5_CONFIG = dict(vocab_size=1152, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                 is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

DIT_CONFIG = dict(num_attention_heads=2, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=2,
                  cross_attention_dim=144, norm_type="ada_norm_single", caption_channels=64, sample_size=128,
                  patch_size=2, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                  norm_elementwise_affine=False, norm_eps=1e-6, attention_bias=True, upcast_attention=False,
                  use_linear_projection=False, only_cross_attention=False, double_self_attention=False,
                  dropout=0.0)


def t5_table(name):
    return name.endswith(("shared.weight", "embed_tokens.weight", "relative_attention_bias.weight"))


def make_t5():
    torch.manual_seed(5)
    t5 = T5EncoderModel(T5Config(**T5_CONFIG)).eval()
    randomize(t5, table=t5_table)
    save_t5_folder(t5, T5_CONFIG, f"{HERE}/tiny/text_encoder")
    return t5


def make_dit():
    torch.manual_seed(7)
    dit = Transformer2DModel(**DIT_CONFIG).eval()

    def table(name):  # the adaLN tables are added to a timestep embedding: keep them of order 1
        return name.endswith("scale_shift_table")

    randomize(dit, table=table)
    folder = f"{HERE}/tiny/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(dit.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "Transformer2DModel", **DIT_CONFIG}, f"{folder}/config.json")
    back = Transformer2DModel.from_pretrained(folder).eval()
    for k, v in dit.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    return dit


def write_scheduler_and_index(folder, pipeline, transformer, version):
    """A PixArt folder's scheduler/ (its DPM-Solver on PixArt's linear betas
    0.0001 .. 0.02) and model_index.json (`pipeline` with a `transformer`
    class, as diffusers `version` writes it); shared with
    pixart_sigma/make_pixart_sigma_data.py."""
    os.makedirs(f"{folder}/scheduler", exist_ok=True)
    write_json({"_class_name": "DPMSolverMultistepScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001,
                "beta_end": 0.02, "beta_schedule": "linear", "prediction_type": "epsilon",
                "solver_order": 2, "algorithm_type": "dpmsolver++"}, f"{folder}/scheduler/scheduler_config.json")
    write_json({"_class_name": pipeline, "_diffusers_version": version,
                "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"],
                "transformer": ["diffusers", transformer], "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "DPMSolverMultistepScheduler"]}, f"{folder}/model_index.json")


def write_folder_rest():
    """The parts of tiny/ besides the transformer and the T5: the tokenizer
    (a link), the VAE, the scheduler and model_index.json."""
    folder = f"{HERE}/tiny"
    os.makedirs(f"{folder}/tokenizer", exist_ok=True)
    link = f"{folder}/tokenizer/spiece.model"
    if not os.path.islink(link):
        os.symlink("../../../spm_tokenizer/spiece.model", link)
    vae = tiny_vae(f"{DATA}/tiny")
    os.makedirs(f"{folder}/vae", exist_ok=True)
    save_half(vae.state_dict(), f"{folder}/vae/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json(tiny_vae_config(f"{DATA}/tiny", 0.18215), f"{folder}/vae/config.json")
    write_scheduler_and_index(folder, "PixArtAlphaPipeline", "Transformer2DModel", "0.27.2")
    return vae


def encode_prompts(g, t5, prompt, max_length):
    """The empty negative prompt and `prompt` as PixArt's pipelines encode
    them: T5Tokenizer(legacy=True) ids cut at max_length (kept as
    g["run.ids.negative"] and g["run.ids.positive"]), the encoder on each,
    and the two padded to one length with their mask, as the DiT is called.
    Returns (context, mask); shared with make_pixart_sigma_data.py."""
    tok = T5Tokenizer(vocab_file=f"{HERE}/tiny/tokenizer/spiece.model", legacy=True)
    ids = [tok(text, max_length=max_length, truncation=True).input_ids for text in ("", prompt)]
    g["run.ids.negative"], g["run.ids.positive"] = (torch.tensor([i]).int() for i in ids)
    with torch.no_grad():
        captions = [t5(input_ids=torch.tensor([i])).last_hidden_state[0] for i in ids]
    T = max(len(i) for i in ids)
    context = torch.zeros(2, T, captions[0].shape[1])
    mask = torch.zeros(2, T)
    for r, c in enumerate(captions):
        context[r, :len(c)] = c
        mask[r, :len(c)] = 1
    return context, mask


def run_goldens(g, t5, dit, vae):
    """ComfyUI's KSampler on the folder (see run.* above)."""
    context, mask = encode_prompts(g, t5, RUN_PROMPT, 120)
    h, w, steps, cfg = 12, 10, 5, 4.5
    f = 2 ** (len(vae.config.block_out_channels) - 1)  # the picture's pixels per latent cell (8 in real models)
    size = {"resolution": torch.tensor([[1.0 * f * h, 1.0 * f * w]] * 2),
            "aspect_ratio": torch.tensor([[h / w]] * 2)}

    def model(xin, t):
        with torch.no_grad():
            out = dit(xin, encoder_hidden_states=context, timestep=t, encoder_attention_mask=mask,
                      added_cond_kwargs=size, return_dict=False)[0]
        return out[:, :4]

    betas = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)
    sigmas, timestep = comfy_normal_sigmas(steps, betas)
    torch.manual_seed(42)
    noise = torch.randn(1, 4, h, w)
    latent = ksampler(cfg_denoiser(model, eps_x0, cfg, timestep), noise, sigmas, 0.18215, g)
    g.update({"run.noise": noise, "run.sigmas": sigmas, "run.latent_out": latent,
              "run.image": decode_image(vae, latent)})


def main():
    g = {}
    t5 = make_t5()
    rows = [[37, 5, 900, 14, 1000, 3, 77, 8, 1], [263, 12, 1]]
    gen = torch.Generator().manual_seed(3)
    rows.append(torch.randint(3, 1152, (119,), generator=gen).tolist() + [1])  # PixArt's longest prompt
    with torch.no_grad():
        for i, r in enumerate(rows):
            ids = torch.tensor([r])
            g[f"t5.ids.{i}"] = ids.int()
            g[f"t5.out.{i}"] = t5(input_ids=ids).last_hidden_state
        padded = torch.zeros(2, 12, dtype=torch.long)
        mask = torch.zeros(2, 12, dtype=torch.long)
        for i, r in enumerate(rows[:2]):
            padded[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        out = t5(input_ids=padded, attention_mask=mask).last_hidden_state
        g["t5.padded.out"] = out
        for i, r in enumerate(rows[:2]):  # masking is running each row on its own
            assert torch.allclose(out[i, :len(r)], g[f"t5.out.{i}"][0], atol=1e-5), i

    distance = torch.arange(-300, 301)
    g["t5.buckets"] = t5.encoder.block[0].layer[0].SelfAttention._relative_position_bucket(
        distance, bidirectional=True, num_buckets=32, max_distance=128).int()

    dit = make_dit()
    torch.manual_seed(11)
    sample = torch.randn(2, 4, 12, 10)
    timestep = torch.tensor([999.0, 261.0])
    contexts = [g["t5.out.0"], g["t5.out.1"]]
    T = max(c.shape[1] for c in contexts)
    context = torch.zeros(2, T, 64)
    cmask = torch.zeros(2, T)
    for i, c in enumerate(contexts):
        context[i, :c.shape[1]] = c[0]
        cmask[i, :c.shape[1]] = 1
    resolution = torch.tensor([[96.0, 80.0], [96.0, 80.0]])
    aspect_ratio = torch.tensor([[96.0 / 80.0], [96.0 / 80.0]])
    names = ["pos_embed", "adaln_single", "caption_projection", "transformer_blocks.0", "transformer_blocks.1"]
    hooks = record_outputs(dit, names, g, prefix="dit.x.")
    with torch.no_grad():
        out = dit(sample, encoder_hidden_states=context, timestep=timestep, encoder_attention_mask=cmask,
                  added_cond_kwargs={"resolution": resolution, "aspect_ratio": aspect_ratio},
                  return_dict=False)[0]
    for h in hooks:
        h.remove()
    g["dit.x.adaln_single.embedded"] = dit.adaln_single.emb(
        timestep, resolution=resolution, aspect_ratio=aspect_ratio, batch_size=2, hidden_dtype=torch.float32)
    g.update({"dit.sample": sample, "dit.timestep": timestep, "dit.resolution": resolution,
              "dit.aspect_ratio": aspect_ratio, "dit.out": out})
    for i, c in enumerate(contexts):
        g[f"dit.context.{i}"] = c
    run_goldens(g, t5, dit, write_folder_rest())
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
