"""Writes kiln's layout manifests: the name, dtype and shape of every tensor
of four real full-size single-file checkpoint layouts and of the image
encoders and IP-Adapters that go with SD 1.5 and SDXL, so that a test can write
a sparse safetensors file with exactly those tensors and check kiln's layer
tables against the real layouts without shipping gigabytes of weights.

Origin: diffusers 0.27.2 and transformers 4.40 on PyTorch. Every module is
built on the meta device (nothing is allocated; only names and shapes
matter) with the published configs, restated below: the unet/ and vae/
configs of runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1,
stabilityai/stable-diffusion-xl-base-1.0 and
stabilityai/stable-diffusion-xl-refiner-1.0, the text towers as those
checkpoints carry them (CLIP ViT-L/14 for SD 1.5; OpenCLIP ViT-H/14 for SD
2.1; CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 for SDXL base; OpenCLIP
ViT-bigG/14 alone for the refiner), and the image encoders' vision configs.
The IP-Adapter layouts follow diffusers' loader
(UNet2DConditionModel._convert_ip_adapter_attn_to_diffusers). The
diffusers/transformers names of the checkpoints are renamed to the original single-file names (the UNet and OpenCLIP mappings of
tests/data/sd_common.py, which tests/data/sd2/make_sd2_data.py and
tests/data/sdxl/make_sdxl_data.py use too, for any block layout; the VAE's is
here), and each part is checked against diffusers' own converters from the
original layout (convert_ldm_unet_checkpoint and convert_ldm_vae_checkpoint
on the meta tensors; convert_ldm_clip_checkpoint and
convert_open_clip_checkpoint on constant tensors of the shape that take no
memory, as they load CPU weights): converting back must give exactly the
diffusers/transformers names and shapes, each tensor from the original name
this script gives it.

  sd15.json  Stable Diffusion 1.5, e.g. v1-5-pruned-emaonly:
      `model.diffusion_model.*` (UNet: 8 heads everywhere, proj_in and
      proj_out 1x1 convolutions), `cond_stage_model.transformer.text_model.*`
      (CLIP ViT-L/14 in transformers names) and `first_stage_model.*`.
  clip_vision_h14.json, clip_vision_bigg14.json  the CLIP ViT-H/14 and
      ViT-bigG/14 image encoders of h94/IP-Adapter (models/image_encoder,
      sdxl_models/image_encoder) in transformers' names: `vision_model.*`
      and `visual_projection.weight`.
  ip_adapter_sd15.json, ip_adapter_sdxl.json  ip-adapter_sd15 and
      ip-adapter_sdxl .safetensors: `image_proj.proj/norm` and
      `ip_adapter.N.to_k_ip/to_v_ip.weight` for SD 1.5's 16 and SDXL base's 70
      cross-attentions, N odd in diffusers' processor order, as diffusers'
      loader takes them (checked with it).
  ip_adapter_plus_sd15.json, ip_adapter_plus_sdxl_vit_h.json
      ip-adapter-plus_sd15 and ip-adapter-plus_sdxl_vit-h .safetensors: the
      Resampler (`image_proj.latents`, `proj_in`, `proj_out`, `norm_out`,
      `layers.N.0.norm1/norm2/to_q/to_kv/to_out`, `layers.N.1.0/1/3`) on
      ViT-H/14's hidden states, and the same `ip_adapter.N.*`.
  sd21_768v.json  Stable Diffusion 2.1 (768-v), e.g. v2-1_768-ema-pruned:
      `model.diffusion_model.*` (UNet: use_linear_projection, so proj_in and
      proj_out are 2-D), `first_stage_model.*` (the SD VAE in the original
      names: encoder.down.N.block.M, downsample.conv, mid.block_1/attn_1/
      block_2, norm_out, decoder.up.N with up.3 the first level after mid,
      nin_shortcut, quant_conv, post_quant_conv; the mid attention's
      q/k/v/proj_out as (512, 512, 1, 1) convolutions as real files store
      them) and `cond_stage_model.model.*` (the OpenCLIP ViT-H/14 text tower
      in OpenCLIP names: fused attn.in_proj, all 24 resblocks, ln_final,
      text_projection, logit_scale).
  sdxl_base.json  SDXL 1.0 base, e.g. sd_xl_base_1.0: `model.diffusion_model.*`
      (label_emb.0.0/label_emb.0.2 for the added embedding),
      `conditioner.embedders.0.transformer.text_model.*` (CLIP ViT-L/14 in
      transformers names, without the position_ids buffer),
      `conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG/14 in OpenCLIP names,
      32 resblocks, text_projection (1280, 1280), logit_scale) and
      `first_stage_model.*` (the same SD VAE).
  sdxl_refiner.json  SDXL 1.0 refiner, e.g. sd_xl_refiner_1.0:
      `model.diffusion_model.*` (384/768/1536/1536 channels, attention at the
      two middle levels only, transformers 4 deep, cross-attention dim 1280,
      label_emb.0.0 taking 2560 = 1280 pooled + 5 x 256 size/aesthetic
      inputs), `conditioner.embedders.0.model.*` (OpenCLIP ViT-bigG/14 in
      OpenCLIP names as in sdxl_base.json; the refiner's only embedder with
      weights, its size and aesthetic-score embedders 1..3 have none) and
      `first_stage_model.*` (the same SD VAE).

Each file is JSON: {"origin": one sentence, "dtype": "F16" (the dtype of
every tensor: real files are usually float16), "tensors": [[name, shape],
...]} sorted by name, one tensor a line, shape [] for a scalar. Not listed:
what real files may carry beside the weights (the DDPM schedule buffers of
SD 2.x files, CLIP-L's position_ids, EMA copies).

Run from the repository root with torch, diffusers and transformers
installed (no network, no weights needed; it imports tests/data/sd_common.py);
the output is deterministic:
  python3 tests/data/layouts/make_layout_manifests.py
"""
import json
import os
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (convert_ldm_clip_checkpoint,
                                                                   convert_ldm_unet_checkpoint,
                                                                   convert_ldm_vae_checkpoint,
                                                                   convert_open_clip_checkpoint)
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import ldm_unet_name, open_clip_sources  # noqa: E402

OUT = "tests/data/layouts"

# runwayml/stable-diffusion-v1-5 unet/config.json (attention_head_dim is the
# number of heads there: 8 in every transformer)
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4,
                 down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                 block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, attention_head_dim=8,
                 cross_attention_dim=768, norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True,
                 freq_shift=0, center_input_sample=False, downsample_padding=1, mid_block_scale_factor=1)
# stabilityai/stable-diffusion-2-1 unet/config.json (attention_head_dim is the
# number of heads there: 64-channel heads)
SD21_UNET = dict(sample_size=96, in_channels=4, out_channels=4,
                 down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                 block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, attention_head_dim=[5, 10, 20, 20],
                 cross_attention_dim=1024, use_linear_projection=True, upcast_attention=True, norm_num_groups=32,
                 norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0, center_input_sample=False,
                 downsample_padding=1, mid_block_scale_factor=1, dual_cross_attention=False,
                 only_cross_attention=False, num_class_embeds=None)
# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 block_out_channels=[320, 640, 1280], layers_per_block=2, transformer_layers_per_block=[1, 2, 10],
                 attention_head_dim=[5, 10, 20], cross_attention_dim=2048, use_linear_projection=True,
                 upcast_attention=False, addition_embed_type="text_time", addition_embed_type_num_heads=64,
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32,
                 norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0, center_input_sample=False,
                 downsample_padding=1, mid_block_scale_factor=1, dual_cross_attention=False,
                 only_cross_attention=False, num_class_embeds=None)
# stabilityai/stable-diffusion-xl-refiner-1.0 unet/config.json (upcast_attention
# is null there; it shapes nothing)
REFINER_UNET = dict(sample_size=128, in_channels=4, out_channels=4,
                    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                    block_out_channels=[384, 768, 1536, 1536], layers_per_block=2, transformer_layers_per_block=4,
                    attention_head_dim=[6, 12, 24, 24], cross_attention_dim=1280, use_linear_projection=True,
                    addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2560, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
                    flip_sin_to_cos=True, freq_shift=0, center_input_sample=False, downsample_padding=1,
                    mid_block_scale_factor=1, dual_cross_attention=False, only_cross_attention=False,
                    num_class_embeds=None)
# the SD VAE (kl-f8) of the vae/config.json files; they differ only in
# sample_size (768, 1024) and SDXL's scaling_factor, which shape nothing (the
# refiner's is SDXL base's)
SD21_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32, act_fn="silu",
                sample_size=768, scaling_factor=0.18215)
SDXL_VAE = dict(SD21_VAE, sample_size=1024, scaling_factor=0.13025)
# the text towers as transformers configures them (vocabulary 49408, 77 positions)
CLIP_COMMON = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, pad_token_id=1,
                   bos_token_id=0, eos_token_id=2)
OPENCLIP_H = dict(CLIP_COMMON, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, projection_dim=1024, hidden_act="gelu")
CLIP_L = dict(CLIP_COMMON, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              projection_dim=768, hidden_act="quick_gelu")
OPENCLIP_BIGG = dict(CLIP_COMMON, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                     num_attention_heads=20, projection_dim=1280, hidden_act="gelu")

# the CLIP vision towers IP-Adapters read pictures with, as transformers'
# CLIPVisionConfig of h94/IP-Adapter's models/image_encoder (ViT-H/14, laion2B)
# and sdxl_models/image_encoder (ViT-bigG/14)
VISION_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
VISION_BIGG = dict(hidden_size=1664, intermediate_size=8192, num_hidden_layers=48, num_attention_heads=16,
                   image_size=224, patch_size=14, projection_dim=1280, hidden_act="gelu", layer_norm_eps=1e-5)

POSITION_IDS = "text_model.embeddings.position_ids"


def shapes(module):
    """name -> shape of a module's state dict (the buffer position_ids left out)."""
    return {k: list(v.shape) for k, v in module.state_dict().items() if k != POSITION_IDS}


# ---------------------------------------------------------------- VAE

VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_vae_name(k, config):
    """A diffusers AutoencoderKL name -> its `first_stage_model.*` name. The
    decoder's levels count the other way: diffusers' up_blocks.0 (the first
    after mid) is the original up.<levels - 1>."""
    levels = len(config["block_out_channels"])
    p = k.split(".")
    if p[0] in ("quant_conv", "post_quant_conv"):
        return "first_stage_model." + k
    part, what, rest = p[0], p[1], p[2:]
    if what == "conv_norm_out":
        n = ["norm_out"] + rest
    elif what in ("conv_in", "conv_out"):
        n = [what] + rest
    elif what == "down_blocks":
        i, kind = rest[0], rest[1]
        n = ["down", i, "downsample", *rest[3:]] if kind == "downsamplers" else ["down", i, "block", *rest[2:]]
    elif what == "up_blocks":
        i, kind = str(levels - 1 - int(rest[0])), rest[1]
        n = ["up", i, "upsample", *rest[3:]] if kind == "upsamplers" else ["up", i, "block", *rest[2:]]
    elif what == "mid_block":
        kind, j, inner = rest[0], int(rest[1]), ".".join(rest[2:])
        if kind == "resnets":
            n = ["mid", f"block_{j + 1}", inner]
        else:
            for a, b in VAE_ATTENTION.items():
                if inner.startswith(a + "."):
                    inner = b + inner[len(a):]
                    break
            else:
                raise ValueError(k)
            n = ["mid", "attn_1", inner]
    else:
        raise ValueError(k)
    return "first_stage_model." + ".".join([part] + n).replace("conv_shortcut", "nin_shortcut")


def ldm_vae_shape(k, shape):
    """The mid attention's q/k/v/proj_out weights are 1x1 convolutions in
    original files (diffusers stores them as linears)."""
    if ".attentions." in k and k.endswith("weight") and len(shape) == 2:
        return shape + [1, 1]
    return shape


# ---------------------------------------------------------------- OpenCLIP text towers

def open_clip_layout(sd, prefix, layers):
    """transformers CLIPTextModelWithProjection names and shapes -> OpenCLIP's
    (original name -> shape, and each transformers name -> the original name
    it comes from), by sd_common's open_clip_sources: q, k, v fused into
    attn.in_proj_*, text_projection stored as OpenCLIP multiplies (x @ it, the
    transpose of transformers' linear), plus logit_scale, a scalar the text
    tower does not use."""
    out, origin = {}, {}
    for o, src in open_clip_sources(layers).items():
        shape = sd[src[0]]
        assert all(sd[t] == shape for t in src)
        out[prefix + o] = [len(src) * shape[0]] + shape[1:]
        for t in src:
            origin[t] = prefix + o
    out[prefix + "text_projection"] = sd["text_projection.weight"][::-1]
    origin["text_projection.weight"] = prefix + "text_projection"
    out[prefix + "logit_scale"] = []
    assert origin.keys() == sd.keys()
    return out, origin


# ---------------------------------------------------------------- checks

def meta(shape):
    return torch.empty(shape, device="meta")


def tagged(layout):
    """Original name -> a float32 CPU tensor of its shape that holds one value,
    the name's index, and takes no memory (a scalar expanded)."""
    return {name: torch.full((), float(i)).expand(layout[name]) for i, name in enumerate(sorted(layout))}


def first(t):
    return t[tuple([0] * t.dim())].item()


def check_unet(config, sd, layout, names):
    """convert_ldm_unet_checkpoint on meta tensors of the original layout gives
    back exactly the diffusers names and shapes, each the very tensor of the
    original name ldm_unet_name gives it."""
    single = {name: meta(shape) for name, shape in layout.items()}
    back = convert_ldm_unet_checkpoint(dict(single), dict(config), extract_ema=False)  # it pops what it reads
    assert {k: list(v.shape) for k, v in back.items()} == sd, sorted(set(back) ^ set(sd))[:8]
    for k, v in back.items():
        assert v is single[names[k]], k


def check_vae(config, sd, layout, names):
    """convert_ldm_vae_checkpoint likewise; the 1x1 attention convolutions come
    back as views of the original tensors, as linears."""
    single = {name: meta(shape) for name, shape in layout.items()}
    back = convert_ldm_vae_checkpoint(dict(single), dict(config))
    assert {k: list(v.shape) for k, v in back.items()} == sd, sorted(set(back) ^ set(sd))[:8]
    for k, v in back.items():
        assert v is single[names[k]] or v._base is single[names[k]], k


def check_text(model, sd, layout, origin):
    """A text tower converted back by diffusers: every transformers name with
    its shape, each holding the value of the original name it should come from."""
    back = {k: v for k, v in model.state_dict().items() if k != POSITION_IDS}
    assert {k: list(v.shape) for k, v in back.items()} == sd, sorted(set(back) ^ set(sd))[:8]
    index = {name: i for i, name in enumerate(sorted(layout))}
    for k, v in back.items():
        assert first(v) == index[origin[k]], (k, first(v), origin[k])


def check_open_clip(layout, config, prefix, sd, origin):
    with tempfile.TemporaryDirectory() as d:
        CLIPTextConfig(**config).save_pretrained(d)
        model = convert_open_clip_checkpoint(tagged(layout), d, prefix=prefix, has_projection=True,
                                             local_files_only=True)
    check_text(model, sd, layout, origin)


def check_clip_l(layout, config, prefix, sd):
    with torch.device("meta"):
        empty = CLIPTextModel(CLIPTextConfig(**config))
    model = convert_ldm_clip_checkpoint(tagged(layout), text_encoder=empty)
    check_text(model, sd, layout, {k: prefix + k for k in sd})


# ---------------------------------------------------------------- manifests

def unet_part(config):
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    sd = shapes(unet)
    names = {k: ldm_unet_name(k, unet.config) for k in sd}
    layout = {names[k]: sd[k] for k in sd}
    assert len(layout) == len(sd)
    check_unet(unet.config, sd, layout, names)
    return layout


def vae_part(config):
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    sd = shapes(vae)
    names = {k: ldm_vae_name(k, vae.config) for k in sd}
    layout = {names[k]: ldm_vae_shape(k, sd[k]) for k in sd}
    assert len(layout) == len(sd)
    for k in ["encoder.mid.attn_1.q.weight", "decoder.mid.attn_1.proj_out.weight"]:
        assert layout["first_stage_model." + k] == [512, 512, 1, 1]
    check_vae(vae.config, sd, layout, names)
    return layout


def open_clip_part(config, prefix):
    with torch.device("meta"):
        model = CLIPTextModelWithProjection(CLIPTextConfig(**config))
    sd = shapes(model)
    layout, origin = open_clip_layout(sd, prefix, config["num_hidden_layers"])
    check_open_clip(layout, config, prefix, sd, origin)
    return layout


def clip_l_part(config, prefix):
    with torch.device("meta"):
        model = CLIPTextModel(CLIPTextConfig(**config))
    sd = shapes(model)
    layout = {prefix + k: v for k, v in sd.items()}
    check_clip_l(layout, config, prefix, sd)
    return layout


def clip_vision_part(config):
    """CLIPVisionModelWithProjection's names and shapes, as the image encoders'
    model.safetensors files store them (without the position_ids buffer)."""
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    return {k: list(v.shape) for k, v in model.state_dict().items() if k != "vision_model.embeddings.position_ids"}


def resampler_layout(embed_dim, hidden, output, heads, queries=16, depth=4):
    """IP-Adapter Plus's image projection as h94's files store it (the
    Resampler of the IP-Adapter repository: to_kv fused, feed-forward 4x wide,
    heads 64 wide)."""
    inner = 64 * heads
    layout = {"image_proj.latents": [1, queries, hidden], "image_proj.proj_in.weight": [hidden, embed_dim],
              "image_proj.proj_in.bias": [hidden], "image_proj.proj_out.weight": [output, hidden],
              "image_proj.proj_out.bias": [output], "image_proj.norm_out.weight": [output],
              "image_proj.norm_out.bias": [output]}
    for i in range(depth):
        p = f"image_proj.layers.{i}."
        for norm in ("0.norm1", "0.norm2", "1.0"):
            layout[p + norm + ".weight"] = [hidden]
            layout[p + norm + ".bias"] = [hidden]
        layout[p + "0.to_q.weight"] = [inner, hidden]
        layout[p + "0.to_kv.weight"] = [2 * inner, hidden]
        layout[p + "0.to_out.weight"] = [hidden, inner]
        layout[p + "1.1.weight"] = [4 * hidden, hidden]
        layout[p + "1.3.weight"] = [hidden, 4 * hidden]
    return layout


def ip_adapter_part(unet_config, embed_dim, plus=None):
    """A plain IP-Adapter for a UNet, in the .safetensors layout of
    h94/IP-Adapter's files: image_proj.{proj,norm} (4 tokens of the UNet's
    context width from embed_dim-wide image embeds) and, for the UNet's
    cross-attentions, ip_adapter.N.to_{k,v}_ip.weight numbered as diffusers'
    attention processors walk the UNet (every attention counted, so the
    cross-attentions are the odd numbers). Checked by handing it to diffusers'
    own loader on the meta UNet: every cross-attention's processor takes its
    tensors with their shapes (load_state_dict is strict), none is left over,
    and the image projection loads as ImageProjection."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config)
    ctx = unet.config.cross_attention_dim
    if plus:  # (Resampler width, heads)
        layout = resampler_layout(embed_dim, plus[0], ctx, plus[1])
    else:
        layout = {"image_proj.proj.weight": [4 * ctx, embed_dim], "image_proj.proj.bias": [4 * ctx],
                  "image_proj.norm.weight": [ctx], "image_proj.norm.bias": [ctx]}
    number = 0
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            attn = unet.get_submodule(name[:-len(".processor")])
            for kind in ("to_k_ip", "to_v_ip"):
                layout[f"ip_adapter.{number}.{kind}.weight"] = [attn.to_q.out_features, ctx]
        number += 1
    sd = {"image_proj": {}, "ip_adapter": {}}
    for k, shape in layout.items():
        part, rest = k.split(".", 1)
        sd[part][rest] = meta(shape)
    with torch.device("meta"):
        procs = unet._convert_ip_adapter_attn_to_diffusers([sd])
        proj = unet._convert_ip_adapter_image_proj_to_diffusers(sd["image_proj"])
    taken = sum(2 for p in procs.values() if hasattr(p, "to_k_ip"))
    assert taken == len(sd["ip_adapter"]), (taken, len(sd["ip_adapter"]))
    # the projection loaded every tensor (load_state_dict is strict), each part of one of the file's
    loaded = sum(p.numel() for p in proj.state_dict().values())
    assert loaded == sum(count({k: v}) for k, v in layout.items() if k.startswith("image_proj.")), loaded
    return layout


def count(layout):
    total = 0
    for shape in layout.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def write_manifest(path, origin, parts):
    tensors = {}
    for name, layout in parts:
        assert not tensors.keys() & layout.keys(), name
        tensors.update(layout)
        print(f"  {name}: {len(layout)} tensors, {count(layout):,} parameters")
    lines = [json.dumps([k, tensors[k]]) for k in sorted(tensors)]
    with open(path, "w", newline="\n") as f:
        f.write('{"origin": %s,\n "dtype": "F16",\n "tensors": [\n' % json.dumps(origin))
        f.write(",\n".join(lines))
        f.write("\n]}\n")
    json.load(open(path))  # well-formed
    print(f"{path}: {len(tensors)} tensors, {count(tensors):,} parameters, {os.path.getsize(path):,} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    write_manifest(
        f"{OUT}/sd15.json",
        "The tensors of a Stable Diffusion 1.5 single file: diffusers 0.27.2's UNet2DConditionModel and "
        "AutoencoderKL with runwayml/stable-diffusion-v1-5's published configs and transformers 4.40's "
        "CLIPTextModel as CLIP ViT-L/14, built on the meta device, renamed to the original "
        "model.diffusion_model/cond_stage_model.transformer/first_stage_model names and checked with diffusers' "
        "convert_from_ckpt converters (tests/data/layouts/make_layout_manifests.py).",
        [("unet", unet_part(SD15_UNET)), ("vae", vae_part(SD21_VAE)),
         ("clip_l", clip_l_part(CLIP_L, "cond_stage_model.transformer."))])
    write_manifest(
        f"{OUT}/clip_vision_h14.json",
        "The tensors of the CLIP ViT-H/14 image encoder IP-Adapters for SD 1.5 read pictures with "
        "(h94/IP-Adapter models/image_encoder/model.safetensors, ComfyUI's CLIP-ViT-H-14-laion2B-s32B-b79K): "
        "transformers 4.40's CLIPVisionModelWithProjection with its config, built on the meta device "
        "(tests/data/layouts/make_layout_manifests.py).",
        [("vision", clip_vision_part(VISION_H))])
    write_manifest(
        f"{OUT}/clip_vision_bigg14.json",
        "The tensors of the CLIP ViT-bigG/14 image encoder the SDXL IP-Adapter reads pictures with "
        "(h94/IP-Adapter sdxl_models/image_encoder/model.safetensors): transformers 4.40's "
        "CLIPVisionModelWithProjection with its config, built on the meta device "
        "(tests/data/layouts/make_layout_manifests.py).",
        [("vision", clip_vision_part(VISION_BIGG))])
    write_manifest(
        f"{OUT}/ip_adapter_sd15.json",
        "The tensors of h94/IP-Adapter's models/ip-adapter_sd15.safetensors: the image projection for ViT-H/14's "
        "1024-wide embeds and the k/v weights of SD 1.5's 16 cross-attentions, numbered as diffusers 0.27.2's "
        "loader reads them and checked with it on the meta UNet (tests/data/layouts/make_layout_manifests.py).",
        [("ip_adapter", ip_adapter_part(SD15_UNET, 1024))])
    write_manifest(
        f"{OUT}/ip_adapter_sdxl.json",
        "The tensors of h94/IP-Adapter's sdxl_models/ip-adapter_sdxl.safetensors: the image projection for "
        "ViT-bigG/14's 1280-wide embeds and the k/v weights of SDXL 1.0 base's 70 cross-attentions, numbered as "
        "diffusers 0.27.2's loader reads them and checked with it on the meta UNet "
        "(tests/data/layouts/make_layout_manifests.py).",
        [("ip_adapter", ip_adapter_part(SDXL_UNET, 1280))])
    write_manifest(
        f"{OUT}/ip_adapter_plus_sd15.json",
        "The tensors of h94/IP-Adapter's models/ip-adapter-plus_sd15.safetensors: the Resampler (768 wide, 12 "
        "heads, 16 queries, 4 layers) on ViT-H/14's 1280-wide hidden states and the k/v weights of SD 1.5's 16 "
        "cross-attentions, as diffusers 0.27.2's loader reads them and checked with it on the meta UNet "
        "(tests/data/layouts/make_layout_manifests.py).",
        [("ip_adapter", ip_adapter_part(SD15_UNET, 1280, plus=(768, 12)))])
    write_manifest(
        f"{OUT}/ip_adapter_plus_sdxl_vit_h.json",
        "The tensors of h94/IP-Adapter's sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors: the Resampler (1280 "
        "wide, 20 heads, 16 queries, 4 layers) on ViT-H/14's 1280-wide hidden states and the k/v weights of SDXL "
        "1.0 base's 70 cross-attentions, as diffusers 0.27.2's loader reads them and checked with it on the meta "
        "UNet (tests/data/layouts/make_layout_manifests.py).",
        [("ip_adapter", ip_adapter_part(SDXL_UNET, 1280, plus=(1280, 20)))])
    write_manifest(
        f"{OUT}/sd21_768v.json",
        "The tensors of a Stable Diffusion 2.1 (768-v) single file: diffusers 0.27.2's UNet2DConditionModel and "
        "AutoencoderKL with stabilityai/stable-diffusion-2-1's published configs and transformers 4.40's "
        "CLIPTextModelWithProjection as OpenCLIP ViT-H/14 (1024 wide, 24 layers), built on the meta device, renamed "
        "to the original model.diffusion_model/first_stage_model/cond_stage_model.model names and checked with "
        "diffusers' convert_from_ckpt converters (tests/data/layouts/make_layout_manifests.py).",
        [("unet", unet_part(SD21_UNET)), ("vae", vae_part(SD21_VAE)),
         ("openclip_h", open_clip_part(OPENCLIP_H, "cond_stage_model.model."))])
    write_manifest(
        f"{OUT}/sdxl_base.json",
        "The tensors of a Stable Diffusion XL 1.0 base single file: diffusers 0.27.2's UNet2DConditionModel and "
        "AutoencoderKL with stabilityai/stable-diffusion-xl-base-1.0's published configs, transformers 4.40's "
        "CLIPTextModel as CLIP ViT-L/14 and CLIPTextModelWithProjection as OpenCLIP ViT-bigG/14 (1280 wide, "
        "32 layers), built on the meta device, renamed to the original model.diffusion_model/"
        "conditioner.embedders.0.transformer/conditioner.embedders.1.model/first_stage_model names and checked with "
        "diffusers' convert_from_ckpt converters (tests/data/layouts/make_layout_manifests.py).",
        [("unet", unet_part(SDXL_UNET)), ("vae", vae_part(SDXL_VAE)),
         ("clip_l", clip_l_part(CLIP_L, "conditioner.embedders.0.transformer.")),
         ("openclip_bigg", open_clip_part(OPENCLIP_BIGG, "conditioner.embedders.1.model."))])
    write_manifest(
        f"{OUT}/sdxl_refiner.json",
        "The tensors of a Stable Diffusion XL 1.0 refiner single file: diffusers 0.27.2's UNet2DConditionModel and "
        "AutoencoderKL with stabilityai/stable-diffusion-xl-refiner-1.0's published configs and transformers 4.40's "
        "CLIPTextModelWithProjection as OpenCLIP ViT-bigG/14 (1280 wide, 32 layers), built on the meta device, "
        "renamed to the original model.diffusion_model/conditioner.embedders.0.model/first_stage_model names and "
        "checked with diffusers' convert_from_ckpt converters (tests/data/layouts/make_layout_manifests.py).",
        [("unet", unet_part(REFINER_UNET)), ("vae", vae_part(SDXL_VAE)),
         ("openclip_bigg", open_clip_part(OPENCLIP_BIGG, "conditioner.embedders.0.model."))])


if __name__ == "__main__":
    main()
