"""Writes kiln's SD3 test data: two small random MMDiT transformers with the
architectures of Stable Diffusion 3.5 Medium and 3.0 Medium, a
StableDiffusion3Pipeline folder for each, and what upstream computes with them.

Origin: diffusers 0.32.2 (SD3Transformer2DModel) and transformers 4.44
(CLIPTextModelWithProjection, T5EncoderModel) on PyTorch (CPU, float32);
the sampling restated from ComfyUI's code (comfy/text_encoders/sd3_clip.py,
ModelSamplingDiscreteFlow, CONST, KSampler). Every weight is random (seeded;
the norms too) and rounded to float16, and the files store float16, so the
float32 goldens are exactly what the stored weights give. The transformers'
sin-cos position table (pos_embed.pos_embed, (1, 64, 32): a buffer diffusers
computes, stored because pos_embed_max_size is set) is stored float16 too, so
every golden is computed with the transformers loaded back from their files.

  tiny/  a StableDiffusion3Pipeline folder, SD3.5 Medium shaped:
       transformer/ 3 joint blocks of 2 heads of 16 (width 32), patch 2,
         pos_embed_max_size 8, qk_norm "rms_norm", the second (dual)
         attention in block 0 (SD3.5 Medium's dual_attention_layers),
         joint_attention_dim 96 (the T5's width), caption_projection_dim 32,
         pooled_projection_dim 64 (the two CLIPs' pooled outputs);
       text_encoder/ CLIP-L shaped CLIPTextModelWithProjection (hidden 32, 2
         layers of 4 heads, MLP 37, quick_gelu, projection 32);
       text_encoder_2/ OpenCLIP bigG shaped (hidden 32, 3 layers of 4 heads, MLP
         64, gelu, projection 32): model.safetensors a link to tests/data/sdxl's
         tiny clip_g (the same architecture; its 49408-token table is 3 MB), its
         own config.json with CLIP's bos/eos ids;
       text_encoder_3/ a tiny T5 v1.1 encoder (d_model 96, 2 layers of 4 heads
         of 16, gated GELU 128), config.json and model.safetensors as
         tests/data/pixart/tiny/text_encoder;
       tokenizer_3/spiece.model a link to tests/data/spm_tokenizer's model;
       vae/ tests/data/flux's 16-channel tiny VAE (its weights linked) with SD3's
         scaling_factor 1.5305 and shift_factor 0.0609 in its config.json;
       scheduler/ FlowMatchEulerDiscreteScheduler, shift 3; model_index.json.
  tiny_sd3/  the same folder with an SD3.0 Medium shaped transformer/ (2 joint
       blocks, no qk norm, no dual attention); every other part a link to tiny/.
  golden.safetensors, for <m> = sd35 (tiny/'s transformer) and sd3
       (tiny_sd3/'s), each from torch.manual_seed(19):
       <m>.sample (2,16,8,6), <m>.context (2,5,96), <m>.pooled (2,64),
       <m>.timestep (2) = [1000, 370] (sigma * 1000, as the model takes it)
       and <m>.out (2,16,8,6): the transformer's output; x.<m>.<module>: hooks
       on pos_embed (the patch tokens with their positions, (2,12,32)),
       context_embedder, time_text_embed, norm_out and each
       transformer_blocks.N (its image tokens, the second item of the
       (context, image) pair a block returns; transformer_blocks.N.context
       the first, for the blocks that return one: the last block does not).
  run.golden.safetensors: a KSampler run on tiny/ restated from ComfyUI's
       code (ModelSamplingDiscreteFlow, shift 3, of
       tests/data/flow/make_flow_data.py; CONST; the simple scheduler, 4
       steps of euler, cfg 2, seed 42, an 8x6 latent), RUN_PROMPT against "":
       run.clip_l_ids.{positive,negative} (the CLIP tokenizer goldens' ids,
       padded with EOS), run.clip_g_ids.* (the same with 0 after the first
       EOS, as ComfyUI's clip_g tokenizer pads), run.t5_ids.*
       (T5Tokenizer(legacy) ids padded with 0 to 77, ComfyUI's T5XXL
       tokenizer's min_length), run.context.* (1,154,96): SD3ClipModel's
       conditioning, CLIP-L's and bigG's penultimate hidden states (no final
       norm) side by side, zero-padded to the T5's width, then the T5's
       last_hidden_state (no attention mask); run.pooled.* (1,64): CLIP-L's
       pooler_output (unprojected) and bigG's text_embeds (projected);
       run.noise, run.sigmas, run.denoised.N, run.latent_out (x / 1.5305 +
       0.0609) and run.image (VAEDecode of it); img2img.*: the same at denoise
       0.6 from img2img.latent_in (a random LATENT as VAEEncode gives one).

Run from the repository root with diffusers 0.32.2, transformers and torch
installed (after tests/data/flux/make_flux_data.py and
tests/data/sdxl/make_sdxl_data.py, whose files it links):
  python3 tests/data/sd3/make_sd3_data.py
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingDiscreteFlow, simple  # noqa: E402
from sd_common import (PT, decode_image, pad_after_eos, randomize, record_outputs, save_goldens,  # noqa: E402
                       save_half, save_t5_folder, state, write_json)

DATA = os.path.dirname(HERE)
RUN_PROMPT = "a photograph of an astronaut riding a horse"  # a case of tests/data/tokenizer's goldens
SCALE, SHIFT = 1.5305, 0.0609  # SD3's latent format

# SD3.5 Medium shaped (tiny/); SD3.0 Medium shaped (tiny_sd3/)
CONFIG = dict(sample_size=8, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=16, num_attention_heads=2,
              joint_attention_dim=96, caption_projection_dim=32, pooled_projection_dim=64, out_channels=16,
              pos_embed_max_size=8, qk_norm="rms_norm", dual_attention_layers=(0,))
SD3_CONFIG = dict(CONFIG, num_layers=2, qk_norm=None, dual_attention_layers=())
CLIP_L_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                     pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
CLIP_G_CONFIG = dict(CLIP_L_CONFIG, intermediate_size=64, num_hidden_layers=3, hidden_act="gelu")
T5_CONFIG = dict(vocab_size=1152, d_model=96, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                 is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
# tests/data/sdxl's tiny clip_g: the weights text_encoder_2 links
SDXL_G = "sdxl/tiny_sdxl_diffusers/text_encoder_2"


def main():
    sd35 = make_transformer("tiny", CONFIG, 17)
    sd3 = make_transformer("tiny_sd3", SD3_CONFIG, 18)
    g = {}
    for key, model in (("sd35", sd35), ("sd3", sd3)):
        torch.manual_seed(19)
        sample = torch.randn(2, 16, 8, 6)
        context = torch.randn(2, 5, 96)
        pooled = torch.randn(2, 64)
        timestep = torch.tensor([1000.0, 370.0])
        hooks = record_outputs(model, ["pos_embed", "context_embedder", "time_text_embed", "norm_out"], g,
                               prefix=f"x.{key}.")
        hooks += record_blocks(model, g, prefix=f"x.{key}.")
        with torch.no_grad():
            out = model(hidden_states=sample, encoder_hidden_states=context, pooled_projections=pooled,
                        timestep=timestep).sample
        for h in hooks:
            h.remove()
        g.update({f"{key}.sample": sample, f"{key}.context": context, f"{key}.pooled": pooled,
                  f"{key}.timestep": timestep, f"{key}.out": out})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/golden.safetensors")
    write_folder_rest()
    sd3_run(sd35)
    summary()


def make_transformer(name, config, seed):
    """A random SD3Transformer2DModel as `name`/transformer/, loaded back."""
    return make_model(SD3Transformer2DModel, config, seed, f"{HERE}/{name}/transformer")


def make_model(cls, config, seed, folder):
    """A random diffusers model of class cls in `folder`, loaded back: the
    model the goldens are computed with (its position table as stored, in
    float16)."""
    torch.manual_seed(seed)
    model = cls(**config).eval()
    randomize(model, table=lambda name: False)  # parameters only: pos_embed.pos_embed is a buffer
    os.makedirs(folder, exist_ok=True)
    saved = {k: v.half().float() for k, v in model.state_dict().items()}
    save_half(saved, f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": cls.__name__, **config}, f"{folder}/config.json")
    back = cls.from_pretrained(folder).eval()
    sd = back.state_dict()
    assert sd.keys() == saved.keys(), sorted(set(sd) ^ set(saved))
    for k, v in saved.items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], v), k
    return back


def record_blocks(model, store, prefix):
    """Forward hooks on each joint block, which returns (context, image
    tokens): the image tokens as store[prefix + "transformer_blocks.N"], the
    context (None from the last block, context_pre_only) as
    "transformer_blocks.N.context". record_outputs would keep the context."""
    def hook(name):
        def save(_module, _args, result):
            context, hidden = result
            store[prefix + name] = hidden.detach().clone()
            if context is not None:
                store[prefix + name + ".context"] = context.detach().clone()
        return save

    return [model.get_submodule(f"transformer_blocks.{i}").register_forward_hook(hook(f"transformer_blocks.{i}"))
            for i in range(len(model.transformer_blocks))]


def link(path, target):
    """A link at `path` (under this folder) to `target` (relative to it)."""
    path = f"{HERE}/{path}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.islink(path):
        os.symlink(target, path)
    assert os.path.exists(path), path


def t5_table(name):  # as tests/data/pixart's T5
    return name.endswith(("shared.weight", "embed_tokens.weight", "relative_attention_bias.weight"))


def write_clip(name, config, make=True):
    """A CLIPTextModelWithProjection folder: random (seeded by the caller),
    or with linked weights of the same architecture (make=False)."""
    folder = f"{HERE}/tiny/{name}"
    os.makedirs(folder, exist_ok=True)
    if make:
        te = CLIPTextModelWithProjection(CLIPTextConfig(**config)).eval()
        randomize(te)
        save_half(state(te), f"{folder}/model.safetensors", metadata=PT)
    write_json({"architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model", **config},
               f"{folder}/config.json")
    back, info = CLIPTextModelWithProjection.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    if make:
        for k, v in state(te).items():
            assert torch.equal(state(back)[k], v), k


def write_folder_rest():
    """tiny/'s parts besides the transformer, and tiny_sd3/'s links to them."""
    torch.manual_seed(11)
    write_clip("text_encoder", CLIP_L_CONFIG)
    # bigG: tests/data/sdxl's tiny clip_g has this architecture (only its special ids differ: that
    # folder's config has transformers' old bos 0 / eos 2)
    with open(f"{DATA}/{SDXL_G}/config.json") as f:
        sdxl_g = json.load(f)
    ids = ("bos_token_id", "eos_token_id")
    assert {k: v for k, v in sdxl_g.items() if k not in ids} == {
        "architectures": ["CLIPTextModelWithProjection"], "model_type": "clip_text_model",
        **{k: v for k, v in CLIP_G_CONFIG.items() if k not in ids}}
    link("tiny/text_encoder_2/model.safetensors", f"../../../{SDXL_G}/model.safetensors")
    write_clip("text_encoder_2", CLIP_G_CONFIG, make=False)

    torch.manual_seed(12)
    t5 = T5EncoderModel(T5Config(**T5_CONFIG)).eval()
    randomize(t5, table=t5_table)
    save_t5_folder(t5, T5_CONFIG, f"{HERE}/tiny/text_encoder_3")
    link("tiny/tokenizer_3/spiece.model", "../../../spm_tokenizer/spiece.model")

    link("tiny/vae/diffusion_pytorch_model.safetensors", "../../../flux/tiny/vae/diffusion_pytorch_model.safetensors")
    with open(f"{DATA}/flux/tiny/vae/config.json") as f:
        vae_config = json.load(f)
    write_json(dict(vae_config, scaling_factor=SCALE, shift_factor=SHIFT), f"{HERE}/tiny/vae/config.json")
    os.makedirs(f"{HERE}/tiny/scheduler", exist_ok=True)
    write_json({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0},
               f"{HERE}/tiny/scheduler/scheduler_config.json")
    write_json({"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.32.2",
                "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                "text_encoder_3": ["transformers", "T5EncoderModel"],
                "tokenizer_3": ["transformers", "T5TokenizerFast"],
                "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}, f"{HERE}/tiny/model_index.json")
    for part in ["text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer_3", "vae", "scheduler",
                 "model_index.json"]:
        link(f"tiny_sd3/{part}", f"../tiny/{part}")


def encode(te_l, te_g, t5, tok, l_ids, text):
    """ComfyUI's SD3ClipModel on one prompt: (context (1,154,96), pooled
    (1,64)) and the id rows it ran on."""
    l_ids = torch.tensor([l_ids])
    g_ids = torch.from_numpy(pad_after_eos(l_ids.numpy()))  # clip_g pads with 0 after the end
    t5_ids = tok(text).input_ids  # ends with EOS 1
    t5_ids = torch.tensor([t5_ids + [0] * max(0, 77 - len(t5_ids))])  # T5XXLTokenizer's min_length 77
    with torch.no_grad():
        out_l = te_l.text_model(input_ids=l_ids, output_hidden_states=True)
        out_g = te_g(input_ids=g_ids, output_hidden_states=True)
        out_t5 = t5(input_ids=t5_ids).last_hidden_state
        # ComfyUI's pooled: the last layer through the final norm at the first EOS (bigG's then projected)
        pooled_l = te_l.text_model.final_layer_norm(out_l.hidden_states[-1])[:, l_ids[0].tolist().index(49407)]
        pooled_g = te_g.text_model.final_layer_norm(out_g.hidden_states[-1])[:, g_ids[0].tolist().index(49407)]
    assert torch.equal(pooled_l, out_l.pooler_output)
    assert torch.allclose(pooled_g @ te_g.text_projection.weight.t(), out_g.text_embeds, atol=1e-6)
    lg = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], dim=-1)  # penultimate, no final norm
    lg = torch.nn.functional.pad(lg, (0, out_t5.shape[-1] - lg.shape[-1]))
    context = torch.cat([lg, out_t5], dim=-2)
    pooled = torch.cat([out_l.pooler_output, out_g.text_embeds], dim=-1)  # L unprojected, G projected
    return context, pooled, l_ids, g_ids, t5_ids


def sd3_run(sd35):
    with open(f"{DATA}/tokenizer/tokenizer_goldens.json") as f:
        cases = {c["prompt"]: c["ids_77"] for c in json.load(f)["prompts"]}
    clip_ids = {"positive": cases[RUN_PROMPT], "negative": [49406] + [49407] * 76}
    te_l = CLIPTextModelWithProjection.from_pretrained(f"{HERE}/tiny/text_encoder").eval()
    te_g = CLIPTextModelWithProjection.from_pretrained(f"{HERE}/tiny/text_encoder_2").eval()
    t5 = T5EncoderModel.from_pretrained(f"{HERE}/tiny/text_encoder_3").eval()
    tok = T5Tokenizer(vocab_file=f"{HERE}/tiny/tokenizer_3/spiece.model", legacy=True)
    vae = AutoencoderKL.from_pretrained(f"{HERE}/tiny/vae").eval()
    g, ctx, pooled = {}, {}, {}
    for which, text in (("positive", RUN_PROMPT), ("negative", "")):
        ctx[which], pooled[which], l_ids, g_ids, t5_ids = encode(te_l, te_g, t5, tok, clip_ids[which], text)
        g.update({f"run.clip_l_ids.{which}": l_ids.int(), f"run.clip_g_ids.{which}": g_ids.int(),
                  f"run.t5_ids.{which}": t5_ids.int(), f"run.context.{which}": ctx[which],
                  f"run.pooled.{which}": pooled[which]})
    assert g["run.clip_g_ids.negative"][0, :3].tolist() == [49406, 49407, 0]

    h, w, steps, cfg = 8, 6, 4, 2.0
    ms = ModelSamplingDiscreteFlow(shift=3.0, timesteps=1000, multiplier=1000)
    sigmas = simple(ms, steps)

    def model(x, sigma, which, skip=None):
        with torch.no_grad():
            return sd35(hidden_states=x, encoder_hidden_states=ctx[which], pooled_projections=pooled[which],
                        timestep=ms.timestep(sigma).view(1), skip_layers=skip).sample

    def sample(sigmas, latent_in, prefix, slg=None, g=g):
        """KSampler: CONST's noise mixing of the latent as the model takes it
        (process_in), euler with CFG, process_out; with slg (layers, scale,
        start_percent, end_percent, rescaling_scale), SkipLayerGuidanceDiT's
        post-CFG function (SkipLayerGuidanceSD3's with rescaling 0): within
        its sigmas the positive prompt again with those joint blocks
        skipped (diffusers' skip_layers leaves a block out as ComfyUI's
        identity patch does), scale times the difference added, then the
        std rescaling."""
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        image = (latent_in - SHIFT) * SCALE
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x0 = {k: x - model(x, s, k) * s for k in ("negative", "positive")}  # CONST: x - out sigma
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            if slg:
                layers, scale, start, end, rescale = slg
                if scale > 0 and ms.percent_to_sigma(end) <= s.item() <= ms.percent_to_sigma(start):
                    skipped = x - model(x, s, "positive", layers) * s
                    d = d + (x0["positive"] - skipped) * scale
                    if rescale != 0:
                        factor = x0["positive"].std() / d.std()
                        d = d * (rescale * factor + (1 - rescale))
            g[f"{prefix}denoised.{i}"] = d
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        latent = x / SCALE + SHIFT  # process_out (inverse noise scaling at sigma 0 is x itself)
        g.update({f"{prefix}noise": noise, f"{prefix}sigmas": sigmas, f"{prefix}latent_out": latent,
                  f"{prefix}image": decode_image(vae, latent)})

    sample(sigmas, torch.zeros(1, 16, h, w), "run.")  # txt2img: the empty latent
    # img2img at denoise 0.6: KSampler's schedule for int(4 / 0.6) = 6 steps, its last 5 sigmas
    latent_in = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(8))
    g["img2img.latent_in"] = latent_in
    sample(simple(ms, int(steps / 0.6))[-(steps + 1):], latent_in, "img2img.")
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/run.golden.safetensors")

    # SkipLayerGuidance on the txt2img run: SD3's node (block 1, scale 3, over the first half: sigmas 1, 0.9
    # and 0.75), and the DiT node with rescaling (blocks 0 and 2, scale 2, from 10 % to 60 %)
    slg = {}
    sample(sigmas, torch.zeros(1, 16, h, w), "slg.", ([1], 3.0, 0.0, 0.5, 0.0), slg)
    sample(sigmas, torch.zeros(1, 16, h, w), "slg_rescaled.", ([0, 2], 2.0, 0.1, 0.6, 0.5), slg)
    save_goldens({k: v.detach() for k, v in slg.items()}, f"{HERE}/slg.golden.safetensors")


def summary():
    """The files written readable by all (safetensors writes them 0600), and
    their total size (links not counted)."""
    total = 0
    for root, _, files in os.walk(HERE):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
                total += os.path.getsize(path)
    print(f"{HERE}: {total} bytes")


if __name__ == "__main__":
    main()
