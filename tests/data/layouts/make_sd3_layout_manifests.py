"""Writes kiln's layout manifests for Stable Diffusion 3 and 3.5: the name,
dtype and shape of every tensor of SD3.5 Medium's and SD3.5 Large's MMDiT as
Stability ship them in their single files, of SD3 Medium's diffusers
transformer/, and of the SD3 folders' two CLIP text encoders, so that a test
can write a sparse file with exactly those tensors and check kiln's binding
against the real layouts without shipping gigabytes of weights.

Origin: diffusers 0.32.2 and transformers 4.44.2 on PyTorch. Every module is
built on the meta device (nothing is allocated; the sin-cos pos_embed table
included) with the published configs, restated here:

  SD3Transformer2DModel (all: sample_size 128, patch_size 2, in_channels 16,
  out_channels 16, attention_head_dim 64, joint_attention_dim 4096,
  pooled_projection_dim 2048)
    stabilityai/stable-diffusion-3.5-medium transformer/: num_layers 24,
      num_attention_heads 24 (width 1536), caption_projection_dim 1536,
      pos_embed_max_size 384, qk_norm "rms_norm", dual_attention_layers
      0..12 (the MMDiT-X blocks)
    stabilityai/stable-diffusion-3.5-large transformer/: num_layers 38,
      num_attention_heads 38 (width 2432), caption_projection_dim 2432,
      pos_embed_max_size 192, qk_norm "rms_norm", no dual attention
    stabilityai/stable-diffusion-3-medium-diffusers transformer/:
      num_layers 24, num_attention_heads 24 (width 1536),
      caption_projection_dim 1536, pos_embed_max_size 192, no qk norm, no
      dual attention
  CLIPTextModelWithProjection (vocab 49408, 77 positions)
    text_encoder/ (CLIP ViT-L/14): hidden 768, 12 layers, 12 heads, MLP
      3072, quick_gelu, projection 768
    text_encoder_2/ (OpenCLIP ViT-bigG/14): hidden 1280, 32 layers, 20
      heads, MLP 5120, gelu, projection 1280

diffusers 0.32.2 keeps no numbers of its own for these: its single-file
loader (loaders/single_file_utils.py, infer_diffusers_model_type) tells the
three apart by key names and shapes (context_block.adaLN_modulation.1 of
block 0 6 x 1536 = 9216 wide: SD3 or SD3.5 Medium, then pos_embed's 192^2 =
36864 or 384^2 = 147456 positions; joint_blocks.37 present: SD3.5 Large) and
then fetches the config.json of the repositories above. This script checks
that each MMDiT manifest is classified as its model by that function, and
that convert_sd3_transformer_checkpoint_to_diffusers (which reads the layer
count, the dual-attention layers, the qk norms and the caption width off the
names and shapes) maps it back onto the diffusers module's names and shapes
with nothing left unread. It also checks the shapes Stability's reference
code (sd3_impls.py BaseModel, Stability-AI/sd3.5) reads its config from:
depth = x_embedder.proj.weight rows / 64, pos_embed_max_size = sqrt(pos_embed
positions), qk norm from ln_k, the dual blocks from attn2.ln_k.

  sd35_medium_mmdit.json, sd35_large_mmdit.json: the transformer as
    Stability ship it in sd3.5_medium.safetensors / sd3.5_large.safetensors:
    the original MMDiT names (tests/data/sd3/make_sd3_single_data.py's
    to_mmdit, which fuses each q, k, v into one (3D, D) qkv and otherwise
    keeps shapes) under `model.diffusion_model.` -- the prefix Stability's
    reference loader (sd3_infer.py: BaseModel(prefix="model.diffusion_model."),
    load_into(f, model, "model.")) reads those files with, and the one
    diffusers' detection keys and converter accept; the files also hold the
    VAE (first_stage_model.*) and none of the text encoders, which are not in
    these manifests
  sd3_medium_transformer.json: SD3 Medium's transformer/ in diffusers' names
  sd35_large_controlnet.json: SD 3.5 Large's ControlNets (blur, canny,
    depth) as Stability ship them: diffusers' SD3ControlNetModel as its
    scripts/convert_sd3_controlnet_to_diffusers.py builds it (19 blocks of
    38 heads of 64, no caption side, no patch embedding of its own), in the
    names that converter reads (make_sd35_controlnet_data.py's to_stability,
    checked to map back), and the 0-d control_type the converter drops
  sd3_clip_l_text.json, sd3_clip_g_text.json: text_encoder/ and
    text_encoder_2/ of the SD3 / SD3.5 folders as transformers saves a
    CLIPTextModelWithProjection (text_model.*, text_projection.weight)

Every manifest says F16, the 16-bit dtype kiln's tests write them in. SD3
Medium's transformer/ and the CLIP folders are float16; the SD3.5 single
files are 16-bit (sd3.5_medium.safetensors' ~5.1 GB is the 2.47 B MMDiT plus
the VAE at 2 bytes each) but were not inspected here, and Hugging Face's SD3.5
announcement calls the original Large checkpoint bfloat16: a test that cares
about the exact 16-bit type should not take it from these manifests. Each
run prints every manifest's tensor count and the total element count of each
transformer manifest, pos_embed included and without it (the stored sin-cos
table is 384^2 x 1536 in SD3.5 Medium, 192^2 x 2432 in Large, 192^2 x 1536 in
SD3 Medium).

Run from the repository root with diffusers 0.32.2, transformers and torch
installed:
  python3 tests/data/layouts/make_sd3_layout_manifests.py
"""
import json
import math
import os
import sys

import torch
from diffusers import SD3ControlNetModel, SD3Transformer2DModel
from diffusers.loaders.single_file_utils import (convert_sd3_transformer_checkpoint_to_diffusers,
                                                 infer_diffusers_model_type)
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "sd3"))
from make_sd3_single_data import DIT, to_mmdit  # noqa: E402
from make_sd35_controlnet_data import from_stability, to_stability  # noqa: E402

COMMON = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
              joint_attention_dim=4096, pooled_projection_dim=2048)
SD35_MEDIUM = dict(COMMON, num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                   pos_embed_max_size=384, qk_norm="rms_norm", dual_attention_layers=tuple(range(13)))
SD35_LARGE = dict(COMMON, num_layers=38, num_attention_heads=38, caption_projection_dim=2432,
                  pos_embed_max_size=192, qk_norm="rms_norm", dual_attention_layers=())
SD3_MEDIUM = dict(COMMON, num_layers=24, num_attention_heads=24, caption_projection_dim=1536,
                  pos_embed_max_size=192, qk_norm=None, dual_attention_layers=())
# diffusers' scripts/convert_sd3_controlnet_to_diffusers.py's model of Stability's SD 3.5 Large ControlNets
SD35_LARGE_CONTROLNET = dict(patch_size=2, in_channels=16, num_layers=19, attention_head_dim=64,
                             num_attention_heads=38, joint_attention_dim=None, caption_projection_dim=2048,
                             pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=None,
                             pos_embed_type=None, use_pos_embed=False, force_zeros_for_pooled_projection=False)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, projection_dim=1280, num_hidden_layers=32,
              num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu")


def write(name, module, dtype, origin, drop=()):
    state = module if isinstance(module, dict) else module.state_dict()
    tensors = [[k, list(v.shape)] for k, v in state.items() if k not in drop]
    with open(f"{HERE}/{name}.json", "w") as f:
        json.dump({"origin": origin, "dtype": dtype, "tensors": tensors}, f, indent=0)
    print(name, len(tensors), "tensors", sum(math.prod(s) for _, s in tensors), "elements")
    return tensors


def check_mmdit(mmdit, sd, config, model_type):
    """`mmdit` (a prefixed single-file state dict of meta tensors) is what
    diffusers' single-file loader calls `model_type`, what Stability's
    BaseModel reads `config` from, and converts back to `sd`'s names and
    shapes."""
    assert infer_diffusers_model_type(mmdit) == model_type, (model_type, infer_diffusers_model_type(mmdit))
    width = config["num_attention_heads"] * config["attention_head_dim"]
    bare = {k[len(DIT):]: v for k, v in mmdit.items()}
    assert bare["x_embedder.proj.weight"].shape == (width, 16, 2, 2)
    assert bare["x_embedder.proj.weight"].shape[0] // 64 == config["num_layers"]
    assert bare["pos_embed"].shape == (1, config["pos_embed_max_size"] ** 2, width)
    assert bare["y_embedder.mlp.0.weight"].shape[1] == 2048
    assert bare["context_embedder.weight"].shape == (config["caption_projection_dim"], 4096)
    assert ("joint_blocks.0.context_block.attn.ln_k.weight" in bare) == (config["qk_norm"] == "rms_norm")
    duals = sorted(int(k.split(".")[1]) for k in bare if k.endswith(".x_block.attn2.ln_k.weight"))
    assert duals == list(config["dual_attention_layers"]), duals
    for i in range(config["num_layers"]):
        assert bare[f"joint_blocks.{i}.x_block.attn.qkv.weight"].shape == (3 * width, width)
        chunks = 9 if i in config["dual_attention_layers"] else 6
        assert bare[f"joint_blocks.{i}.x_block.adaLN_modulation.1.weight"].shape == (chunks * width, width)
    left = dict(mmdit)
    back = convert_sd3_transformer_checkpoint_to_diffusers(left)
    assert not left, f"names diffusers' converter left unread: {sorted(left)[:5]}"
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))[:8]
    for k, v in back.items():
        assert v.shape == sd[k].shape, (k, v.shape, sd[k].shape)


def main():
    with torch.device("meta"):
        medium35 = SD3Transformer2DModel(**SD35_MEDIUM)
        large35 = SD3Transformer2DModel(**SD35_LARGE)
        medium3 = SD3Transformer2DModel(**SD3_MEDIUM)
        controlnet35 = SD3ControlNetModel(**SD35_LARGE_CONTROLNET)
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G))

    counts = {}
    for name, model, config, model_type, origin in (
            ("sd35_medium_mmdit", medium35, SD35_MEDIUM, "sd35_medium",
             "stabilityai/stable-diffusion-3.5-medium sd3.5_medium.safetensors (MMDiT only)"),
            ("sd35_large_mmdit", large35, SD35_LARGE, "sd35_large",
             "stabilityai/stable-diffusion-3.5-large sd3.5_large.safetensors (MMDiT only)")):
        sd = model.state_dict()
        mmdit = {f"{DIT}{k}": v for k, v in to_mmdit(sd).items()}
        check_mmdit(mmdit, sd, config, model_type)
        tensors = write(name, mmdit, "F16", origin)
        counts[name] = (sum(math.prod(s) for _, s in tensors), mmdit[f"{DIT}pos_embed"].numel())
        assert counts[name][0] == sum(v.numel() for v in sd.values())

    sd = medium3.state_dict()
    check_mmdit({f"{DIT}{k}": v for k, v in to_mmdit(sd).items()}, sd, SD3_MEDIUM, "sd3")
    tensors = write("sd3_medium_transformer", medium3, "F16",
                    "stabilityai/stable-diffusion-3-medium-diffusers transformer/")
    counts["sd3_medium_transformer"] = (sum(math.prod(s) for _, s in tensors), sd["pos_embed.pos_embed"].numel())

    sd = controlnet35.state_dict()
    stability = dict(to_stability(sd), control_type=torch.empty((), device="meta"))
    back = from_stability(stability)
    assert set(back) == set(sd) and all(back[k].shape == v.shape for k, v in sd.items())
    write("sd35_large_controlnet", stability, "F16",
          "stabilityai/stable-diffusion-3.5-controlnets sd3.5_large_controlnet_{blur,canny,depth}.safetensors")

    drop = ("text_model.embeddings.position_ids",)  # a non-persistent buffer, not in the files
    for name, model, origin in (
            ("sd3_clip_l_text", clip_l, "SD3/SD3.5 text_encoder/ (CLIP ViT-L/14, CLIPTextModelWithProjection)"),
            ("sd3_clip_g_text", clip_g,
             "SD3/SD3.5 text_encoder_2/ (OpenCLIP ViT-bigG/14, CLIPTextModelWithProjection)")):
        tensors = write(name, model, "F16", origin, drop=drop)
        names = [k for k, _ in tensors]
        assert names[-1] == "text_projection.weight" and all(
            k.startswith("text_model.") for k in names[:-1]), names[-3:]

    for name, (n, pos) in counts.items():
        print(f"{name}: {n} parameters ({n / 1e9:.3f} B), {n - pos} ({(n - pos) / 1e9:.3f} B) without the "
              f"{pos}-element pos_embed table")


if __name__ == "__main__":
    main()
