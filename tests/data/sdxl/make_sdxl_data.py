"""Writes kiln's SDXL test data: a small random model with SDXL's architecture
(two text encoders, CLIP ViT-L's and OpenCLIP bigG's, both read at their
penultimate layer without the final layer norm and concatenated; a UNet whose
first level has no attention, transformers of depth 2 below it, and an added
embedding of the pooled text embedding and six size numbers; eps-prediction)
in the two layouts people have, and what upstream code computes with it.

Origin: diffusers 0.27.2 and transformers 4.40 on PyTorch (CPU, float32).
The UNet is diffusers' UNet2DConditionModel as SDXL configures it, in small:
DownBlock2D + CrossAttnDownBlock2D (32, 64 channels), transformer_layers_per_block
[1, 2] (level 1, the mid block and up block 0 have transformers of depth 2),
use_linear_projection, attention heads of 16 channels (4 at 64), cross-attention
dim 64, addition_embed_type "text_time" with 8-wide sinusoidal embeddings of
the six size numbers after the 32-wide pooled embedding (80 inputs). The text
encoders are transformers' CLIPTextModel ("clip_l": hidden 32, 2 layers,
quick_gelu, MLP 37) and CLIPTextModelWithProjection ("clip_g": hidden 32,
3 layers, gelu, MLP 64, projection 32). The VAE is the tiny SD 1.x model's
with SDXL's latent scaling factor 0.13025. Every weight is random (seeded; the
norms too; the VAE's are the shared tiny ones) and rounded to float16, and
both layouts store float16, so the float32 goldens below are exactly what the
stored weights give.

  tiny_sdxl.safetensors  the original single-file layout of SDXL files:
      `model.diffusion_model.*` (input_blocks, middle_block, output_blocks,
      time_embed, label_emb.0.0/label_emb.0.2 for the added embedding, out),
      `conditioner.embedders.0.transformer.text_model.*` (clip_l, transformers
      names), `conditioner.embedders.1.model.*` (clip_g in OpenCLIP names: fused
      in_proj q/k/v, resblocks, ln_final, text_projection stored transposed as
      OpenCLIP multiplies x @ text_projection, logit_scale) and
      `first_stage_model.*`. Checked against upstream's own converters
      (convert_ldm_unet_checkpoint, convert_ldm_clip_checkpoint,
      convert_open_clip_checkpoint, convert_ldm_vae_checkpoint), which must
      give back the diffusers/transformers weights exactly.
  tiny_sdxl_diffusers/   the diffusers folder layout, as diffusers ships SDXL:
      unet/, vae/ (scaling_factor 0.13025), text_encoder/ (clip_l),
      text_encoder_2/ (clip_g with text_projection.weight), scheduler/
      (EulerDiscreteScheduler, prediction_type "epsilon"), model_index.json;
      its safetensors headers carry {"format": "pt"} as transformers and
      diffusers write them (transformers' from_pretrained requires it).
  golden.safetensors (float32, ids int64)
      l.input_ids (2,77): the rows of tests/data/tiny/clip_text.safetensors as
        they are (EOS padding: ComfyUI's SD1 tokenizer, which SDXL's clip_l
        uses); g.input_ids: the same rows padded with 0 after the first EOS
        (ComfyUI's SDXL clip_g tokenizer);
      l.hidden (2,77,32), g.hidden (2,77,32): each encoder's penultimate
        hidden state, hidden_states[-2], without the final layer norm (ComfyUI's
        SDXLClipModel, layer_norm_hidden_state=False; diffusers' SDXL pipeline
        reads the same); g.pooled (2,32): clip_g's text_embeds (the last layer
        through the final layer norm at the first EOS, times the projection);
      context (2,77,64): cat([l.hidden, g.hidden], -1);
      sample (2,4,8,8), timesteps [999, 500], encoder_hidden_states (context),
        text_embeds (g.pooled), time_ids (2,6) (height, width, crop_top,
        crop_left, target_height, target_width), y (2,80): what the UNet's
        add_embedding receives (text_embeds then the six flattened 8-wide
        sinusoidal embeddings), noise_pred (the UNet's eps) and x.<block>:
        every block's output (x.add_embedding: the added embedding's output,
        before it is summed with x.time_embedding);
      run.*: a KSampler run restated from ComfyUI's code (model_sampling EPS,
        euler, normal scheduler, 4 steps, cfg 5, seed 42, one 8x8 latent):
        run.positive/run.negative the contexts (rows 0 and 1 above) and
        run.positive_pooled/run.negative_pooled their pooled embeddings; every
        UNet call gets time_ids [64, 64, 0, 0, 64, 64] (ComfyUI's SDXL
        encode_adm: width and height default to 8 x the latent's, crops 0,
        targets the size); run.noise (torch.manual_seed(42) randn), run.sigmas,
        run.denoised.N (each step's guided x0), run.latent_out (the final x
        divided by 0.13025, what KSampler returns), run.image (VAEDecode of it,
        (1,16,16,3) in [0,1]).

The name mappings, the random weights, the tiny VAE, ComfyUI's sigmas and
KSampler (euler, CFG, VAEDecode) and the block hooks are
tests/data/sd_common.py's, shared with the SD 2.x, ControlNet and layout
scripts; so are, shared with the refiner's script, clip_g's OpenCLIP names,
the checks of the single file, the writing of the diffusers folder and of the
goldens, and the goldens of clip_g, of the UNet (y checked against the size
embedding restated) and of the run. This script gives them its models, its
context (clip_l's and clip_g's hidden states) and its time_ids.

Run from the repository root with torch, diffusers and transformers
installed and the project's shared goldens at ../shared/goldens:
  python3 tests/data/sdxl/make_sdxl_data.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_clip_checkpoint
from safetensors.numpy import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import (check_equal, check_ldm_unet_vae, check_open_clip_g, clip_g_goldens,  # noqa: E402
                       euler_scheduler_config, ldm_unet, open_clip_g, pad_after_eos, randomize, save_goldens,
                       save_half, sdxl_run, sdxl_unet_goldens, state, tiny_vae, tiny_vae_config, tiny_vae_ldm,
                       write_diffusers_folder)

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
TINY = os.path.join(SHARED, "models")
OUT = "tests/data/sdxl"
PREFIX_G = "conditioner.embedders.1.model."  # clip_g's, in SDXL files
SCALING = 0.13025
LAYERS_PER_BLOCK = 2
TIME_DIM = 8

UNET_CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                   up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], block_out_channels=[32, 64],
                   layers_per_block=LAYERS_PER_BLOCK, transformer_layers_per_block=[1, 2], cross_attention_dim=64,
                   attention_head_dim=[2, 4], use_linear_projection=True, addition_embed_type="text_time",
                   addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=32 + 6 * TIME_DIM,
                   norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0)
CLIP_L_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                     pad_token_id=1, bos_token_id=0, eos_token_id=2)
CLIP_G_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=3,
                     num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
                     pad_token_id=1, bos_token_id=0, eos_token_id=2)
# the folder's model_index.json (no tokenizers here)
MODEL_INDEX = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
               "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
               "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
BLOCKS = ["conv_in", "time_proj", "time_embedding", "add_embedding", "down_blocks.0", "down_blocks.1", "mid_block",
          "up_blocks.0", "up_blocks.1", "conv_norm_out", "conv_out"]
TIME_IDS = [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [40.0, 56.0, 3.0, 5.0, 48.0, 72.0]]


def main():
    torch.manual_seed(0)
    # lookup tables (token and position embeddings) std 0.5; every other weight,
    # the UNet's time_embedding/add_embedding linears included, std 1/sqrt(fan_in)
    # so that the added embedding stays of order 1
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    randomize(unet)
    te_l = CLIPTextModel(CLIPTextConfig(**CLIP_L_CONFIG)).eval()
    randomize(te_l)
    te_g = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G_CONFIG)).eval()
    randomize(te_g)
    vae_ldm = tiny_vae_ldm(TINY)
    vae = tiny_vae(TINY)

    # the single file, checked against upstream's converters
    unet_sd, l_sd, g_sd, vae_sd = state(unet), state(te_l), state(te_g), state(vae)
    single = {**ldm_unet(unet_sd, UNET_CONFIG),
              **{"conditioner.embedders.0.transformer." + k: v for k, v in l_sd.items()},
              **open_clip_g(g_sd, CLIP_G_CONFIG["num_hidden_layers"], PREFIX_G), **vae_ldm}
    check_ldm_unet_vae(single, unet, unet_sd, vae, vae_sd)
    fresh = CLIPTextModel(CLIPTextConfig(**CLIP_L_CONFIG)).eval()
    back = state(convert_ldm_clip_checkpoint(dict(single), text_encoder=fresh))
    check_equal(back, l_sd, "clip_l")
    check_open_clip_g(single, PREFIX_G, CLIP_G_CONFIG, g_sd)
    os.makedirs(OUT, exist_ok=True)
    save_half(single, f"{OUT}/tiny_sdxl.safetensors")

    # the diffusers folder
    encoders = [("text_encoder", CLIPTextModel, l_sd, CLIP_L_CONFIG),
                ("text_encoder_2", CLIPTextModelWithProjection, g_sd, CLIP_G_CONFIG)]
    write_diffusers_folder(f"{OUT}/tiny_sdxl_diffusers", unet_sd, UNET_CONFIG, vae_sd, tiny_vae_config(TINY, SCALING),
                           encoders, euler_scheduler_config("epsilon"), MODEL_INDEX, load_back=["text_encoder_2"])

    g = {}
    l_ids = load_file("tests/data/tiny/clip_text.safetensors")["input_ids"]
    g["l.input_ids"] = torch.from_numpy(l_ids.copy())
    g["g.input_ids"] = torch.from_numpy(pad_after_eos(l_ids))
    with torch.no_grad():
        out_l = te_l(g["l.input_ids"], output_hidden_states=True)
    g["l.hidden"] = out_l.hidden_states[-2]
    clip_g_goldens(te_g, g)
    g["context"] = torch.cat([g["l.hidden"], g["g.hidden"]], dim=-1)

    # the UNet's goldens, y restated as ComfyUI's SDXL encode_adm builds it
    sdxl_unet_goldens(unet, BLOCKS, g, g["context"], TIME_IDS, TIME_DIM)

    # KSampler: euler, normal, eps-prediction, CFG in x0 space, on one latent; every
    # UNet call gets 8 x the 8x8 latent as its sizes, crops 0
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(2, 1)
    sdxl_run(unet, vae, g, g["context"], time_ids, SCALING, steps=4, cfg=5.0)
    save_goldens(g, f"{OUT}/golden.safetensors")


if __name__ == "__main__":
    main()
