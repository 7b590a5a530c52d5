"""Writes kiln's test data for FLUX.1's (and SD3's) VAE: a small random
AutoencoderKL of that kind in the single-file names, and what upstream
computes with it.

Origin: diffusers 0.30.3 (AutoencoderKL) on PyTorch (CPU, float32). The VAE
has FLUX.1's layout at a small width: 16 latent channels and no quant_conv /
post_quant_conv (use_quant_conv and use_post_quant_conv False), as FLUX.1's
and SD3's VAEs, with block_out_channels (32, 64), one ResBlock per level and
32 groups (FLUX.1: (128, 256, 512, 512), two ResBlocks, 32 groups). Its
config carries FLUX.1's scaling_factor 0.3611 and shift_factor 0.1159. Every
weight is random (seeded; the norms too) and rounded to float16, and the file
stores float16, so the float32 goldens are exactly what the stored weights
give.

  vae.safetensors
       the VAE as single files store it (`first_stage_model.*`, LDM's
       names, the mid attention's q/k/v/proj_out as 1x1 convolutions),
       float16; diffusers' own converter (convert_ldm_vae_checkpoint) gives
       back from it exactly the model's weights
  golden.safetensors
       dec8.z (1,16,8,8) -> dec8.image (1,3,16,16), dec_odd.z (1,16,7,5) ->
         dec_odd.image (1,3,14,10): vae.decode(z).sample (the decoder alone:
         there is no post_quant_conv)
       enc.image (1,3,32,24) in [-1,1] -> enc.mean, enc.logvar (1,16,16,12):
         vae.encode(image).latent_dist's (no quant_conv; the logvar is
         within the clamp to [-30, 20], so it is the raw one)
       fmt.x (1,16,7,5): a latent as the sampler holds it, fmt.z: what
         FluxPipeline hands the VAE of it, x / scaling_factor + shift_factor
         (and fmt.x is (fmt.z - shift_factor) * scaling_factor back, ComfyUI's
         Flux latent format process_in); fmt.scaling_factor,
         fmt.shift_factor (1): the constants they were made with

Run from the repository root with diffusers 0.30.3 and torch installed:
  python3 tests/data/vae_flux/make_vae_flux_data.py
"""
import os
import sys

import torch
from diffusers import AutoencoderKL
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_vae_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from sd_common import check_equal, randomize, save_goldens, save_half  # noqa: E402

SCALE, SHIFT = 0.3611, 0.1159  # FLUX.1's vae/config.json
CONFIG = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[32, 64],
              down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
              layers_per_block=1, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
              scaling_factor=SCALE, shift_factor=SHIFT)

ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_name(k, levels):
    """A diffusers AutoencoderKL name -> its single-file name (under
    first_stage_model.), as convert_ldm_vae_checkpoint reads them."""
    half, rest = k.split(".", 1)
    parts = rest.split(".")
    if parts[0] == "down_blocks":
        i = parts[1]
        if parts[2] == "resnets":
            rest = f"down.{i}.block.{parts[3]}." + ".".join(parts[4:])
        else:  # downsamplers.0.conv.*
            rest = f"down.{i}.downsample.conv." + parts[-1]
    elif parts[0] == "up_blocks":
        i = levels - 1 - int(parts[1])  # LDM counts the decoder's levels from the bottom
        if parts[2] == "resnets":
            rest = f"up.{i}.block.{parts[3]}." + ".".join(parts[4:])
        else:  # upsamplers.0.conv.*
            rest = f"up.{i}.upsample.conv." + parts[-1]
    elif parts[0] == "mid_block" and parts[1] == "resnets":
        rest = f"mid.block_{int(parts[2]) + 1}." + ".".join(parts[3:])
    elif parts[0] == "mid_block":  # attentions.0.<module>.<weight|bias>
        module = ".".join(parts[3:-1])
        rest = f"mid.attn_1.{ATTENTION[module]}.{parts[-1]}"
    elif parts[0] == "conv_norm_out":
        rest = "norm_out." + parts[1]
    rest = rest.replace("conv_shortcut", "nin_shortcut")
    return f"first_stage_model.{half}.{rest}"


def ldm_state(vae):
    levels = len(CONFIG["block_out_channels"])
    out = {}
    for k, v in vae.state_dict().items():
        name = ldm_name(k, levels)
        if ".mid.attn_1." in name and name.endswith("weight") and "norm" not in name:
            v = v[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[name] = v.clone()
    return out


def check_converter(single, vae):
    """diffusers' converter must give the model's weights back from the file.
    It requires the quant convs SD's files have: stand-ins go in and are
    dropped from what comes out."""
    L = CONFIG["latent_channels"]
    stand_ins = {"first_stage_model.quant_conv.weight": torch.zeros(2 * L, 2 * L, 1, 1),
                 "first_stage_model.quant_conv.bias": torch.zeros(2 * L),
                 "first_stage_model.post_quant_conv.weight": torch.zeros(L, L, 1, 1),
                 "first_stage_model.post_quant_conv.bias": torch.zeros(L)}
    back = convert_ldm_vae_checkpoint({**single, **stand_ins}, dict(vae.config))
    back = {k: v for k, v in back.items() if "quant_conv" not in k}
    check_equal(back, vae.state_dict(), "vae")


def main():
    torch.manual_seed(23)
    vae = AutoencoderKL(**CONFIG).eval()
    assert vae.quant_conv is None and vae.post_quant_conv is None
    randomize(vae, table=lambda name: False)
    single = ldm_state(vae)
    check_converter(single, vae)
    save_half(single, f"{HERE}/vae.safetensors")

    g = {}
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, (h, w) in (("dec8", (8, 8)), ("dec_odd", (7, 5))):
            z = torch.randn(1, 16, h, w, generator=gen)
            g[f"{name}.z"] = z
            g[f"{name}.image"] = vae.decode(z).sample
        image = torch.rand(1, 3, 32, 24, generator=gen) * 2 - 1
        dist = vae.encode(image).latent_dist
        assert dist.logvar.min() > -30 and dist.logvar.max() < 20  # no clamping: the raw moments
        g["enc.image"], g["enc.mean"], g["enc.logvar"] = image, dist.mean, dist.logvar
        x = torch.randn(1, 16, 7, 5, generator=gen)
        g["fmt.x"] = x
        g["fmt.z"] = x / vae.config.scaling_factor + vae.config.shift_factor  # FluxPipeline's, before decode
        # the constants they were made with, as tensors (safetensors writes metadata in no fixed order)
        g["fmt.scaling_factor"] = torch.tensor([vae.config.scaling_factor])
        g["fmt.shift_factor"] = torch.tensor([vae.config.shift_factor])
    save_goldens(g, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
