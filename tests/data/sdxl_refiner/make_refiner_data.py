"""Writes kiln's SDXL refiner test data: a small random model with the
architecture of stabilityai/stable-diffusion-xl-refiner-1.0 (ONE text encoder,
OpenCLIP bigG's, read at its penultimate layer without the final layer norm;
a UNet whose first level has no attention, transformers of depth 2 below it,
and an added embedding of the pooled text embedding and FIVE numbers: height,
width, crop top, crop left and the aesthetic score; eps-prediction) in the two
layouts people have, and what upstream code computes with it.

Origin: diffusers 0.27.2 and transformers 4.40 on PyTorch (CPU, float32).
The UNet is diffusers' UNet2DConditionModel as the refiner configures it, in
small: DownBlock2D + CrossAttnDownBlock2D (32, 64 channels),
transformer_layers_per_block [1, 2] (level 1, the mid block and up block 0
have transformers of depth 2), use_linear_projection, attention heads of 16
channels (4 at 64), cross-attention dim 32 (the refiner's context is bigG's
hidden state alone), addition_embed_type "text_time" with 8-wide sinusoidal
embeddings of the five numbers after the 32-wide pooled embedding (72 inputs;
the real refiner has 1280 + 5 * 256 = 2560). The text encoder is
transformers' CLIPTextModelWithProjection (bigG's small twin: hidden 32,
3 layers, 4 heads, gelu, MLP 64, projection 32). The VAE is the tiny SD 1.x
model's with SDXL's latent scaling factor 0.13025. Every weight is random
(seed 1, where tests/data/sdxl/make_sdxl_data.py uses seed 0, so the two tiny
models differ; the norms too; the VAE's are the shared tiny ones) and rounded
to float16, and both layouts store float16, so the float32 goldens below are
exactly what the stored weights give.

  tiny_refiner.safetensors  the original single-file layout of refiner files
      (sd_xl_refiner_1.0.safetensors): `model.diffusion_model.*`
      (input_blocks, middle_block, output_blocks, time_embed,
      label_emb.0.0/label_emb.0.2 for the added embedding, out),
      `conditioner.embedders.0.model.*` (bigG in OpenCLIP names: fused in_proj
      q/k/v, resblocks, ln_final, text_projection stored transposed as
      OpenCLIP multiplies x @ text_projection, logit_scale; the refiner's
      embedders 1..3, its size and aesthetic-score embedders, have no weights)
      and `first_stage_model.*`. Checked against upstream's own converters
      (convert_ldm_unet_checkpoint, convert_open_clip_checkpoint with prefix
      "conditioner.embedders.0.model.", convert_ldm_vae_checkpoint), which must
      give back the diffusers/transformers weights exactly.
  tiny_refiner_diffusers/   the diffusers folder layout, as diffusers ships the
      refiner: unet/, vae/ (scaling_factor 0.13025), text_encoder_2/ (bigG with
      text_projection.weight; there is NO text_encoder/), scheduler/
      (EulerDiscreteScheduler, prediction_type "epsilon"), model_index.json
      (StableDiffusionXLImg2ImgPipeline, text_encoder [null, null],
      requires_aesthetics_score true); its safetensors headers carry
      {"format": "pt"} as transformers and diffusers write them.
  golden.safetensors (float32, ids int64)
      g.input_ids (2,77): the rows of tests/data/tiny/clip_text.safetensors
        padded with 0 after the first EOS (ComfyUI's SDXL clip_g tokenizer,
        which the refiner uses);
      g.hidden (2,77,32): the penultimate hidden state, hidden_states[-2],
        without the final layer norm (ComfyUI's SDXLRefinerClipModel,
        layer_norm_hidden_state=False; diffusers' refiner pipeline reads the
        same); g.pooled (2,32): text_embeds (the last layer through the final
        layer norm at the first EOS, times the projection);
      sample (2,4,8,8), timesteps [999, 500], encoder_hidden_states (g.hidden),
        text_embeds (g.pooled), time_ids (2,5) (height, width, crop_h, crop_w,
        aesthetic_score: ComfyUI's SDXLRefiner.encode_adm order, the same as
        diffusers' refiner add_time_ids original_size + crops + (score,)),
        y (2,72): what the UNet's add_embedding receives (text_embeds then the
        five flattened 8-wide sinusoidal embeddings), noise_pred (the UNet's
        eps) and x.<block>: every block's output (x.add_embedding: the added
        embedding's output, before it is summed with x.time_embedding);
      run.*: a KSampler run restated from ComfyUI's code (model_sampling EPS,
        euler, normal scheduler, 4 steps, cfg 5, seed 42, one 8x8 latent):
        run.positive/run.negative the contexts (rows 0 and 1 above) and
        run.positive_pooled/run.negative_pooled their pooled embeddings; the
        positive calls get time_ids [64, 64, 0, 0, 6.0] and the negative ones
        [64, 64, 0, 0, 2.5] (ComfyUI's SDXLRefiner.encode_adm: width and height
        default to 8 x the latent's, crops 0, aesthetic score 6, or 2.5 where
        prompt_type is "negative"); run.noise (torch.manual_seed(42) randn),
        run.sigmas, run.denoised.N (each step's guided x0), run.latent_out (the
        final x divided by 0.13025, what KSampler returns), run.image
        (VAEDecode of it, (1,16,16,3) in [0,1]).

The name mappings, the random weights, the tiny VAE, ComfyUI's sigmas and
KSampler (euler, CFG, VAEDecode) and the block hooks are
tests/data/sd_common.py's, shared with the SDXL, SD 2.x, ControlNet and layout
scripts; so are, shared with the SDXL script, bigG's OpenCLIP names, the
checks of the single file, the writing of the diffusers folder and of the
goldens, and the goldens of bigG, of the UNet (y checked against the size
embedding restated) and of the run. This script gives them its models, its
context (bigG's hidden state alone) and its time_ids (the aesthetic scores).

Run from the repository root with torch, diffusers and transformers
installed and the project's shared goldens at ../shared/goldens; the output is
deterministic:
  python3 tests/data/sdxl_refiner/make_refiner_data.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.numpy import load_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import (check_ldm_unet_vae, check_open_clip_g, clip_g_goldens, euler_scheduler_config,  # noqa: E402
                       ldm_unet, open_clip_g, pad_after_eos, randomize, save_goldens, save_half, sdxl_run,
                       sdxl_unet_goldens, state, tiny_vae, tiny_vae_config, tiny_vae_ldm, write_diffusers_folder)

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
TINY = os.path.join(SHARED, "models")
OUT = "tests/data/sdxl_refiner"
PREFIX_G = "conditioner.embedders.0.model."  # bigG's, in refiner files (its only embedder with weights)
SCALING = 0.13025
LAYERS_PER_BLOCK = 2
TIME_DIM = 8
SEED = 1  # the SDXL tiny model's is 0

UNET_CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                   up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], block_out_channels=[32, 64],
                   layers_per_block=LAYERS_PER_BLOCK, transformer_layers_per_block=[1, 2], cross_attention_dim=32,
                   attention_head_dim=[2, 4], use_linear_projection=True, addition_embed_type="text_time",
                   addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=32 + 5 * TIME_DIM,
                   norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0)
CLIP_G_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=3,
                     num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
                     pad_token_id=1, bos_token_id=0, eos_token_id=2)
# stabilityai/stable-diffusion-xl-refiner-1.0's model_index.json, without the tokenizer (no tokenizer/ here)
MODEL_INDEX = {"_class_name": "StableDiffusionXLImg2ImgPipeline", "force_zeros_for_empty_prompt": False,
               "requires_aesthetics_score": True, "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"], "text_encoder": [None, None],
               "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
               "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
BLOCKS = ["conv_in", "time_proj", "time_embedding", "add_embedding", "down_blocks.0", "down_blocks.1", "mid_block",
          "up_blocks.0", "up_blocks.1", "conv_norm_out", "conv_out"]
# height, width, crop_h, crop_w, aesthetic_score
TIME_IDS = [[64.0, 64.0, 0.0, 0.0, 6.0], [40.0, 56.0, 3.0, 5.0, 2.5]]


def main():
    torch.manual_seed(SEED)
    # lookup tables (token and position embeddings) std 0.5; every other weight,
    # the UNet's time_embedding/add_embedding linears included, std 1/sqrt(fan_in)
    # so that the added embedding stays of order 1
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    randomize(unet)
    te_g = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G_CONFIG)).eval()
    randomize(te_g)
    vae_ldm = tiny_vae_ldm(TINY)
    vae = tiny_vae(TINY)

    # the single file, checked against upstream's converters
    unet_sd, g_sd, vae_sd = state(unet), state(te_g), state(vae)
    parts = [ldm_unet(unet_sd, UNET_CONFIG), open_clip_g(g_sd, CLIP_G_CONFIG["num_hidden_layers"], PREFIX_G), vae_ldm]
    single = {k: v for part in parts for k, v in part.items()}
    assert len(single) == sum(len(part) for part in parts)  # no name twice
    check_ldm_unet_vae(single, unet, unet_sd, vae, vae_sd)
    check_open_clip_g(single, PREFIX_G, CLIP_G_CONFIG, g_sd)
    os.makedirs(OUT, exist_ok=True)
    save_half(single, f"{OUT}/tiny_refiner.safetensors")

    # the diffusers folder: bigG as text_encoder_2, there is no text_encoder/
    encoders = [("text_encoder_2", CLIPTextModelWithProjection, g_sd, CLIP_G_CONFIG)]
    write_diffusers_folder(f"{OUT}/tiny_refiner_diffusers", unet_sd, UNET_CONFIG, vae_sd,
                           tiny_vae_config(TINY, SCALING), encoders, euler_scheduler_config("epsilon"), MODEL_INDEX,
                           load_back=["text_encoder_2"])

    g = {}
    ids = load_file("tests/data/tiny/clip_text.safetensors")["input_ids"]
    g["g.input_ids"] = torch.from_numpy(pad_after_eos(ids))
    clip_g_goldens(te_g, g)

    # the UNet's goldens, y restated as ComfyUI's SDXLRefiner encode_adm builds it
    sdxl_unet_goldens(unet, BLOCKS, g, g["g.hidden"], TIME_IDS, TIME_DIM)

    # KSampler: euler, normal, eps-prediction, CFG in x0 space, on one latent;
    # 8 x the 8x8 latent, crops 0; aesthetic score 2.5 for the negative (the uncond row, first), 6 for the positive
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 2.5], [64.0, 64.0, 0.0, 0.0, 6.0]])
    sdxl_run(unet, vae, g, g["g.hidden"], time_ids, SCALING, steps=4, cfg=5.0)
    save_goldens(g, f"{OUT}/golden.safetensors")


if __name__ == "__main__":
    main()
