"""Writes kiln's SD 2.x test data: a small random model with SD 2.x's
architecture (OpenCLIP text tower with GELU read at its penultimate layer,
UNet with linear projections and a fixed head width, v-prediction) in the two
layouts people have, and what upstream code computes with it.

Origin: diffusers 0.27.2 and transformers 4.40 on PyTorch (CPU, float32).
The UNet is diffusers' UNet2DConditionModel as SD 2.x configures it
(use_linear_projection, upcast_attention, attention heads of 16 channels at
every level: 2 heads at 32 channels, 4 at 64); the text encoder is
transformers' CLIPTextModel with hidden_act "gelu" and 3 layers; the VAE is
the tiny SD 1.x model's (SD 2.x kept SD 1.x's VAE). Every weight is random
(seeded; the norms too) and rounded to float16, and both files store float16,
so the float32 goldens below are exactly what the stored weights give.

  tiny_sd2.safetensors  the original single-file layout of SD 2.x files:
      `model.diffusion_model.*`, `first_stage_model.*` and OpenCLIP's
      `cond_stage_model.model.*` (fused in_proj q/k/v, resblocks, ln_final,
      text_projection). Checked against upstream's own converters
      (convert_ldm_unet_checkpoint, convert_open_clip_checkpoint), which must
      give back the diffusers weights exactly.
  tiny_sd2_diffusers/   the diffusers folder layout, as diffusers ships SD 2.x:
      the text encoder without its last layer (diffusers' SD 2.x pipelines
      read the last hidden state), scheduler_config.json with
      prediction_type "v_prediction".
  golden.safetensors
      input_ids (2,77): rows of tests/data/tiny/clip_text.safetensors padded
        after EOS with 0, as ComfyUI's SD2 tokenizer pads;
      last_hidden_state (the last layer through the final layer norm) and
        clip_skip2 (the penultimate layer through it: what SD 2.x conditions
        on, ComfyUI's SD2ClipHModel "penultimate");
      sample, timesteps, encoder_hidden_states (clip_skip2), noise_pred (the
        UNet's v) and x.<block>: every block's output;
      run.*: a KSampler run restated from ComfyUI's code (model_sampling
        V_PREDICTION, euler, normal scheduler, 4 steps, cfg 5, seed 42, one
        8x8 latent): run.positive/run.negative the conditionings (rows 0 and 1
        above), run.noise (torch.manual_seed(42) randn), run.sigmas,
        run.denoised.N (each step's guided x0), run.latent_out (the final x
        divided by 0.18215, what KSampler returns), run.image (VAEDecode of it,
        (1,16,16,3) in [0,1]).

The name mappings, the random weights, the tiny VAE, ComfyUI's sigmas and
KSampler (euler, CFG, VAEDecode), the block hooks and the writing of weights,
configs and goldens are tests/data/sd_common.py's, shared with the SDXL,
ControlNet and layout scripts; the run here gives it only the UNet call and
v-prediction.

Run from the repository root with torch, diffusers and transformers
installed and the project's shared goldens at ../shared/goldens:
  python3 tests/data/sd2/make_sd2_data.py
"""
import os
import shutil
import sys
import tempfile

import torch
from diffusers import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (convert_ldm_unet_checkpoint,
                                                                   convert_open_clip_checkpoint)
from safetensors.numpy import load_file
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import (cfg_denoiser, check_equal, comfy_normal_sigmas, decode_image,  # noqa: E402
                       euler_scheduler_config, ksampler, ldm_unet, open_clip, pad_after_eos, randomize,
                       record_outputs, save_goldens, save_half, state, tiny_vae, tiny_vae_ldm, v_x0, write_json)

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
TINY = os.path.join(SHARED, "models")
OUT = "tests/data/sd2"
PREFIX = "cond_stage_model.model."  # the text tower's, in SD 2.x files
SCALING = 0.18215
LAYERS_PER_BLOCK = 2

UNET_CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], block_out_channels=[32, 64],
                   layers_per_block=LAYERS_PER_BLOCK, cross_attention_dim=32, attention_head_dim=[2, 4],
                   use_linear_projection=True, upcast_attention=True, norm_num_groups=32, norm_eps=1e-5,
                   act_fn="silu", flip_sin_to_cos=True, freq_shift=0)
CLIP_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=3,
                   num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
                   pad_token_id=1, bos_token_id=0, eos_token_id=2)
BLOCKS = ["conv_in", "time_proj", "time_embedding", "down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0",
          "up_blocks.1", "conv_norm_out", "conv_out"]


def embedding(name):
    """The tables randomize() gives std 0.5 here: every weight named
    *embedding*, the UNet's time_embedding linears included (this data was
    made so; SDXL's script picks the text tower's tables only)."""
    return "embedding" in name


def open_clip_sd2(sd, layers):
    """transformers CLIPTextModel names -> OpenCLIP's `cond_stage_model.model.*`
    with q, k, v fused into in_proj as SD 2.x files store them (sd_common's
    open_clip), and the projection and logit scale those files carry."""
    out = open_clip(sd, layers, PREFIX)
    # the projection and logit scale SD 2.x files carry; the text tower does not use them
    out[PREFIX + "text_projection"] = torch.randn(32, 32).half().float()
    out[PREFIX + "logit_scale"] = torch.tensor(4.6052)
    return out


def main():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    randomize(unet, table=embedding)
    te = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG)).eval()
    randomize(te, table=embedding)
    vae_ldm = tiny_vae_ldm(TINY)

    # the single file, checked against upstream's converters
    unet_sd, te_sd = state(unet), state(te)
    single = {**ldm_unet(unet_sd, UNET_CONFIG), **open_clip_sd2(te_sd, CLIP_CONFIG["num_hidden_layers"]), **vae_ldm}
    back = convert_ldm_unet_checkpoint(dict(single), dict(unet.config), extract_ema=False)  # it pops what it reads
    check_equal(back, unet_sd, "unet")
    with tempfile.TemporaryDirectory() as d:
        CLIPTextConfig(**CLIP_CONFIG).save_pretrained(d)
        back = convert_open_clip_checkpoint(single, d, has_projection=True).state_dict()
    back.pop("text_model.embeddings.position_ids", None)
    back.pop("text_projection.weight")
    check_equal(back, te_sd, "text encoder")
    os.makedirs(OUT, exist_ok=True)
    save_half(single, f"{OUT}/tiny_sd2.safetensors")

    # the diffusers folder: the text encoder's last layer dropped, v-prediction
    folder = f"{OUT}/tiny_sd2_diffusers"
    shutil.rmtree(folder, ignore_errors=True)
    for part in ["unet", "vae", "text_encoder", "scheduler"]:
        os.makedirs(f"{folder}/{part}")
    save_half(unet_sd, f"{folder}/unet/diffusion_pytorch_model.safetensors")
    write_json({"_class_name": "UNet2DConditionModel", **UNET_CONFIG}, f"{folder}/unet/config.json")
    vae = tiny_vae(TINY)
    save_half(vae.state_dict(), f"{folder}/vae/diffusion_pytorch_model.safetensors")
    shutil.copy(os.path.join(TINY, "sd15_tiny_diffusers", "vae", "config.json"), f"{folder}/vae/config.json")
    dropped = dict(CLIP_CONFIG, num_hidden_layers=CLIP_CONFIG["num_hidden_layers"] - 1)
    last = f"text_model.encoder.layers.{CLIP_CONFIG['num_hidden_layers'] - 1}."
    save_half({k: v for k, v in te_sd.items() if not k.startswith(last)}, f"{folder}/text_encoder/model.safetensors")
    write_json({"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **dropped},
               f"{folder}/text_encoder/config.json")
    write_json(euler_scheduler_config("v_prediction"), f"{folder}/scheduler/scheduler_config.json")
    write_json({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                "scheduler": ["diffusers", "EulerDiscreteScheduler"]}, f"{folder}/model_index.json")

    g = {}
    ids = pad_after_eos(load_file("tests/data/tiny/clip_text.safetensors")["input_ids"])
    g["input_ids"] = torch.from_numpy(ids)
    with torch.no_grad():
        out = te(g["input_ids"], output_hidden_states=True)
        g["last_hidden_state"] = out.last_hidden_state
        g["clip_skip2"] = te.text_model.final_layer_norm(out.hidden_states[-2])
        # what the folder's 2-layer encoder gives is the same penultimate state
        te2 = CLIPTextModel(CLIPTextConfig(**dropped)).eval()
        te2.load_state_dict({k: v for k, v in te.state_dict().items() if not k.startswith(last)})
        assert torch.allclose(te2(g["input_ids"]).last_hidden_state, g["clip_skip2"], atol=1e-6)

    g["timesteps"] = torch.tensor([999.0, 500.0])
    g["encoder_hidden_states"] = g["clip_skip2"]
    g["sample"] = torch.randn(2, 4, 8, 8)

    handles = record_outputs(unet, BLOCKS, g)
    with torch.no_grad():
        g["noise_pred"] = unet(g["sample"], g["timesteps"], encoder_hidden_states=g["encoder_hidden_states"]).sample
    for h in handles:
        h.remove()

    # KSampler: euler, normal, v-prediction, CFG in x0 space, on one latent
    steps, cfg = 4, 5.0
    sigmas, timestep = comfy_normal_sigmas(steps)
    positive, negative = g["clip_skip2"][0:1], g["clip_skip2"][1:2]
    noise = torch.randn(1, 4, 8, 8, generator=torch.manual_seed(42))
    g.update({"run.positive": positive, "run.negative": negative, "run.noise": noise, "run.sigmas": sigmas})
    context = torch.cat([negative, positive])  # the uncond row first

    def model(xin, t):
        """The UNet's v on the [negative, positive] pair."""
        return unet(xin, t, encoder_hidden_states=context).sample

    g["run.latent_out"] = ksampler(cfg_denoiser(model, v_x0, cfg, timestep), noise, sigmas, SCALING, g)
    g["run.image"] = decode_image(vae, g["run.latent_out"])
    save_goldens(g, f"{OUT}/golden.safetensors")


if __name__ == "__main__":
    main()
