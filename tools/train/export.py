"""Diffusers/transformers state dicts <-> the single-file original (ldm) layout of an SD 1.x checkpoint.

The mapping is built per key from the block structure (levels, layers per block), so it holds for any
width and any number of levels. The VAE decoder's up blocks are numbered in reverse of diffusers' order
over however many levels the VAE has (n-1-i), which matters for VAEs of other than 4 levels.
"""
import argparse
import json
import os
import re

import torch
from safetensors.torch import load_file, save_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_key(name, config):
    """diffusers UNet2DConditionModel parameter name -> ldm name (without the prefix)."""
    per_level = config["layers_per_block"] + 1  # input blocks per level: the resnets and a downsampler
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for src, dst in fixed.items():
        if name.startswith(src + "."):
            return dst + name[len(src):]

    def resnet(rest):
        part, tail = rest.split(".", 1)
        return RESNET_UNET[part] + "." + tail

    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = per_level * level + j + 1
        return f"input_blocks.{index}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)
    if m:
        return f"input_blocks.{per_level * (int(m[1]) + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", name)
    if m:
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", name)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = per_level * level + j
        return f"output_blocks.{index}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name)
    if m:
        level = int(m[1])
        # The upsampler follows the level's last resnet (and its attention, when the level has one).
        slot = 2 if config["up_block_types"][level].startswith("CrossAttn") else 1
        return f"output_blocks.{per_level * level + per_level - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no ldm name for UNet parameter {name}")


def vae_key(name, levels):
    """diffusers AutoencoderKL parameter name -> ldm name (without the prefix)."""
    def resnet(rest):
        return rest.replace("conv_shortcut", "nin_shortcut")

    for part in ("encoder", "decoder"):
        if not name.startswith(part + "."):
            continue
        rest = name[len(part) + 1:]
        if rest.startswith("conv_norm_out."):
            return f"{part}.norm_out.{rest[len('conv_norm_out.'):]}"
        m = re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
        if m:
            level = int(m[2]) if m[1] == "down" else levels - 1 - int(m[2])
            return f"{part}.{m[1]}.{level}.block.{m[3]}.{resnet(m[4])}"
        m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.(.*)", rest)
        if m:
            return f"{part}.down.{m[1]}.downsample.{m[2]}"
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest)
        if m:
            return f"{part}.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
        m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
        if m:
            return f"{part}.mid.block_{int(m[1]) + 1}.{resnet(m[2])}"
        m = re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", rest)
        if m:
            return f"{part}.mid.attn_1.{VAE_ATTENTION[m[1]]}.{m[2]}"
        return name  # conv_in, conv_out keep their names
    return name  # quant_conv, post_quant_conv


def to_original(unet_sd, unet_config, vae_sd, vae_levels, text_sd):
    """One dict in the original single-file layout. VAE attention projections become 1x1 convs."""
    out = {}
    for name, t in unet_sd.items():
        out[UNET_PREFIX + unet_key(name, unet_config)] = t
    for name, t in vae_sd.items():
        key = vae_key(name, vae_levels)
        if ".mid.attn_1." in key and key.endswith(".weight") and t.dim() == 2:
            t = t[:, :, None, None]
        out[VAE_PREFIX + key] = t
    for name, t in text_sd.items():
        if name.endswith("position_ids"):
            continue  # a buffer, not a weight; SD 1.5 files may or may not carry it
        out[TEXT_PREFIX + name] = t
    if len(out) != len(unet_sd) + len(vae_sd) + sum(1 for n in text_sd if not n.endswith("position_ids")):
        raise ValueError("two parameters mapped to the same original name")
    return out


def from_original(original, unet_sd_names, unet_config, vae_sd_shapes, vae_levels, text_sd_names):
    """Inverse of to_original, given the diffusers names (and VAE shapes) to fill."""
    unet = {n: original[UNET_PREFIX + unet_key(n, unet_config)] for n in unet_sd_names}
    vae = {}
    for n, shape in vae_sd_shapes.items():
        vae[n] = original[VAE_PREFIX + vae_key(n, vae_levels)].reshape(shape)
    text = {n: original[TEXT_PREFIX + n] for n in text_sd_names if not n.endswith("position_ids")}
    return unet, vae, text


def check_against_goldens(goldens):
    """Converts the goldens' tiny diffusers model and compares with their original-layout file."""
    folder = os.path.join(goldens, "models", "sd15_tiny_diffusers")
    unet_cfg = json.load(open(os.path.join(folder, "unet", "config.json")))
    vae_cfg = json.load(open(os.path.join(folder, "vae", "config.json")))
    unet = load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    vae = load_file(os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    text = load_file(os.path.join(folder, "text_encoder", "model.safetensors"))
    mine = to_original(unet, unet_cfg, vae, len(vae_cfg["block_out_channels"]), text)
    ref = load_file(os.path.join(goldens, "models", "sd15_tiny_ldm_fp32.safetensors"))
    missing = sorted(set(ref) - set(mine))
    extra = sorted(set(mine) - set(ref))
    differ = [k for k in set(ref) & set(mine) if ref[k].shape != mine[k].shape or not torch.equal(ref[k], mine[k])]
    print(f"goldens tiny model: {len(ref)} keys; missing {len(missing)} extra {len(extra)} differing {len(differ)}")
    for k in (missing + extra + differ)[:10]:
        print("  ", k)
    return not (missing or extra or differ)


def metadata(scaling_factor, description):
    """safetensors __metadata__ (all strings): what a loader cannot infer from keys and shapes."""
    import models

    return {
        "modelspec.title": "kiln-shapes",
        "modelspec.resolution": "64x64",  # what gen uses when no --width/--height is given
        "description": description,
        "vae_scaling_factor": f"{scaling_factor:.6f}",
        "prediction_type": "epsilon",
        "noise_schedule": f"scaled_linear beta_start={models.BETA_START} beta_end={models.BETA_END} "
                          f"timesteps={models.NUM_TRAIN_TIMESTEPS}",
        "unet_attention_heads": str(models.UNET_CONFIG["attention_head_dim"]),
        "text_encoder_attention_heads": str(models.CLIP_CONFIG["num_attention_heads"]),
        "unet_config": json.dumps(models.UNET_CONFIG),
        "vae_config": json.dumps(models.VAE_CONFIG),
        "text_encoder_config": json.dumps(models.CLIP_CONFIG),
    }


def load_checkpoint(path):
    """models/kiln-shapes.safetensors -> (unet, vae, text_encoder, tokenizer, scaling_factor), float32."""
    from safetensors import safe_open

    import models

    with safe_open(path, "pt") as fh:
        meta = fh.metadata()
    original = {k: v.float() for k, v in load_file(path).items()}
    unet, vae, text = models.build_unet(), models.build_vae(), models.build_text_encoder()
    levels = len(models.VAE_CONFIG["block_out_channels"])
    u, v, t = from_original(original, unet.state_dict().keys(), models.UNET_CONFIG,
                            {n: p.shape for n, p in vae.state_dict().items()}, levels, text.state_dict().keys())
    unet.load_state_dict(u)
    vae.load_state_dict(v)
    text.load_state_dict(t, strict=False)  # position_ids is a buffer the checkpoint does not carry
    used = len(u) + len(v) + len(t)
    if used != len(original):
        raise ValueError(f"{path}: {len(original) - used} tensors not used by the model")
    return unet.eval(), vae.eval(), text.eval(), models.load_tokenizer(), float(meta["vae_scaling_factor"])


DESCRIPTION = ("kiln-shapes: a small Stable Diffusion 1.x-architecture model trained by kiln on synthetic "
               "64x64 scenes of one circle, square or triangle (red, yellow, green, blue; small or large; "
               "top left/top right/bottom left/bottom right/center) on a flat background of another of those "
               "colours. Captions like 'a small red circle at the top left on a blue background'.")


def export(out_path, unet_path=None):
    """Writes the trained stages (work/) as one f16 original-layout file and checks it reloads exactly."""
    import models

    vae_state = torch.load(os.path.join(models.WORK, "vae_final.pt"))
    unet_state = torch.load(unet_path or os.path.join(models.WORK, "unet_final.pt"))
    text_sd = {k: v for k, v in unet_state["text_encoder"].items() if not k.endswith("position_ids")}
    original = to_original(unet_state["unet"], models.UNET_CONFIG, vae_state["state_dict"],
                           len(models.VAE_CONFIG["block_out_channels"]), text_sd)
    original = {k: v.detach().to(torch.float16).contiguous() for k, v in sorted(original.items())}
    scaling = vae_state["scaling_factor"]
    save_file(original, out_path, metadata=metadata(scaling, DESCRIPTION))
    print(f"wrote {out_path}: {len(original)} tensors, {os.path.getsize(out_path)} bytes, scaling {scaling:.6f}")

    # Reload through the inverse mapping: every diffusers weight must equal the f16 rounding of the trained one.
    unet, vae, text, _, scaling_back = load_checkpoint(out_path)
    trained = [(unet, unet_state["unet"]), (vae, vae_state["state_dict"]), (text, text_sd)]
    for module, sd in trained:
        loaded = module.state_dict()
        for name, value in sd.items():
            if not torch.equal(loaded[name], value.to(torch.float16).float()):
                raise ValueError(f"reloaded {name} differs from the trained weight")
    print(f"reload check: all {len(original)} tensors round-trip; scaling factor {scaling_back:.6f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "models", "kiln-shapes.safetensors"))
    ap.add_argument("--goldens", default="/work/shared/goldens",
                    help="check the key mapping against the goldens' tiny model in both layouts, if present")
    ap.add_argument("--unet", default=None, help="UNet + text encoder stage to export (default work/unet_final.pt)")
    args = ap.parse_args()
    if os.path.isdir(args.goldens) and not check_against_goldens(args.goldens):
        raise SystemExit("key mapping disagrees with the goldens' original-layout file")
    export(args.out, args.unet)
