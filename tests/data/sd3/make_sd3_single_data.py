"""Writes tests/data/sd3/single: the tiny SD3 models of tests/data/sd3 in the
single-file layouts users download, for kiln's readers of them.

  sd3.5-tiny.safetensors: tiny/ (SD3.5 Medium shaped) as Stability and
       ComfyUI ship an SD3 checkpoint with its text encoders included
       (sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors, sd3_medium_incl_
       clips_t5xxlfp16.safetensors; here all float16):
       model.diffusion_model.*  the MMDiT in its original names (below);
       text_encoders.clip_l.transformer.*  text_encoder/ in transformers'
         names (text_model.*, text_projection.weight);
       text_encoders.clip_g.transformer.*  text_encoder_2/, the same;
       text_encoders.t5xxl.transformer.*  text_encoder_3/ in transformers'
         T5EncoderModel names (shared.weight, encoder.*; no
         encoder.embed_tokens.weight, the tied copy of shared.weight);
       first_stage_model.*  vae/ in the original autoencoder's names (the
         mid attention's q/k/v/proj_out as 1x1 convolutions; no quant_conv /
         post_quant_conv: SD3's VAE has none).
  sd3-tiny-transformer.safetensors: tiny_sd3/'s (SD3.0 Medium shaped)
       transformer alone in the MMDiT names with no prefix (a bare MMDiT file,
       what ComfyUI's UNETLoader reads).

The MMDiT names (mmdit.py of Stability's sd3 reference code and ComfyUI):
  x_embedder.proj  <- pos_embed.proj (the patch convolution)
  pos_embed (1, S*S, D)  <- pos_embed.pos_embed (the sin-cos table, S =
       pos_embed_max_size; stored, as in the real checkpoints)
  t_embedder.mlp.{0,2}  <- time_text_embed.timestep_embedder.linear_{1,2}
  y_embedder.mlp.{0,2}  <- time_text_embed.text_embedder.linear_{1,2}
  context_embedder  <- context_embedder
  joint_blocks.N.x_block.
       adaLN_modulation.1  <- norm1.linear (6 or, in a dual block, 9 chunks,
                              in the same order)
       attn.qkv  <- attn.to_q, to_k, to_v, their rows stacked
       attn.ln_q, attn.ln_k  <- attn.norm_q, norm_k (SD3.5's rms norms)
       attn.proj  <- attn.to_out.0
       attn2.qkv, attn2.ln_q, attn2.ln_k, attn2.proj  <- attn2.* (dual blocks)
       mlp.fc1, mlp.fc2  <- ff.net.0.proj, ff.net.2
  joint_blocks.N.context_block.
       adaLN_modulation.1  <- norm1_context.linear; in the last block (the
                              context_pre_only one) its two halves swapped:
                              diffusers' AdaLayerNormContinuous keeps
                              (scale, shift), MMDiT (shift, scale)
       attn.qkv  <- attn.add_q_proj, add_k_proj, add_v_proj, stacked
       attn.ln_q, attn.ln_k  <- attn.norm_added_q, norm_added_k
       attn.proj  <- attn.to_add_out (not in the last block)
       mlp.fc1, mlp.fc2  <- ff_context.net.0.proj, ff_context.net.2 (not in
                              the last block)
  final_layer.adaLN_modulation.1  <- norm_out.linear, halves swapped as above
  final_layer.linear  <- proj_out

Origin: the weights of tests/data/sd3/tiny and tests/data/sd3/tiny_sd3
(diffusers' and transformers' names, float16), renamed; every tensor keeps
the folder's dtype and values bit for bit. Checked in this script with
diffusers 0.32.2's own converters: convert_sd3_transformer_checkpoint_to_
diffusers (which reads the layer count, the dual-attention layers, the qk
norms and the modulation width off the key names and shapes, so it takes the
tiny models as they are) gives back each folder's transformer exactly, with
no name of the file left unread; SD3Transformer2DModel.from_single_file with
the folder's config loads each file to the folder's weights;
convert_ldm_vae_checkpoint gives back vae/ from first_stage_model.* (the
renaming is tests/data/flux/make_flux_single_data.py's, of the same tiny VAE:
tests/data/vae_flux/vae.safetensors); diffusers' SD3 text-encoder readers
(convert_ldm_clip_checkpoint with the text_encoders.clip_*.transformer.
prefixes, convert_sd3_t5_checkpoint_to_diffusers) give back the three
encoders.

Run from the repository root with diffusers 0.32.2, transformers and torch
installed (after tests/data/sd3/make_sd3_data.py and
tests/data/flux/make_flux_single_data.py's inputs exist):
  python3 tests/data/sd3/make_sd3_single_data.py
"""
import json
import os
import sys

import torch
from diffusers import SD3Transformer2DModel
from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_vae_checkpoint,
                                                 convert_sd3_t5_checkpoint_to_diffusers,
                                                 convert_sd3_transformer_checkpoint_to_diffusers)
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, os.path.join(DATA, "flux"))
from make_flux_single_data import ldm_vae  # noqa: E402
from sd_common import PT  # noqa: E402

DIT = "model.diffusion_model."
CLIP_L, CLIP_G, T5 = ("text_encoders.clip_l.transformer.", "text_encoders.clip_g.transformer.",
                      "text_encoders.t5xxl.transformer.")
VAE = "first_stage_model."

TOP = {"pos_embed.proj": "x_embedder.proj",
       "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
       "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
       "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
       "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
       "context_embedder": "context_embedder", "proj_out": "final_layer.linear"}
BLOCK = {"norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
         "attn.norm_q": "x_block.attn.ln_q", "attn.norm_k": "x_block.attn.ln_k",
         "attn.norm_added_q": "context_block.attn.ln_q", "attn.norm_added_k": "context_block.attn.ln_k",
         "attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
         "attn2.norm_q": "x_block.attn2.ln_q", "attn2.norm_k": "x_block.attn2.ln_k",
         "attn2.to_out.0": "x_block.attn2.proj",
         "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
         "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2"}
# q, k, v of each attention: the fused qkv they make and their order in it
QKV = {"attn.to_q": ("x_block.attn.qkv", 0), "attn.to_k": ("x_block.attn.qkv", 1),
       "attn.to_v": ("x_block.attn.qkv", 2),
       "attn.add_q_proj": ("context_block.attn.qkv", 0), "attn.add_k_proj": ("context_block.attn.qkv", 1),
       "attn.add_v_proj": ("context_block.attn.qkv", 2),
       "attn2.to_q": ("x_block.attn2.qkv", 0), "attn2.to_k": ("x_block.attn2.qkv", 1),
       "attn2.to_v": ("x_block.attn2.qkv", 2)}


def swap_halves(t):
    """(scale, shift) <-> (shift, scale): the two halves of a modulation."""
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a])


def to_mmdit(sd):
    """An SD3Transformer2DModel state dict in MMDiT's names."""
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
    out, fused = {}, {}
    for name, t in sd.items():
        if name == "pos_embed.pos_embed":
            out["pos_embed"] = t
            continue
        module, kind = name.rsplit(".", 1)
        parts = module.split(".")
        if module in TOP:
            out[f"{TOP[module]}.{kind}"] = t
        elif module == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{kind}"] = swap_halves(t)
        elif parts[0] == "transformer_blocks":
            i, rest = int(parts[1]), ".".join(parts[2:])
            if rest in QKV:
                target, order = QKV[rest]
                fused.setdefault(f"joint_blocks.{i}.{target}.{kind}", {})[order] = t
            elif rest in BLOCK:
                if i == last:
                    assert rest not in ("attn.to_add_out", "ff_context.net.0.proj", "ff_context.net.2"), name
                if rest == "norm1_context.linear" and i == last:
                    t = swap_halves(t)  # the pre-only context block's AdaLayerNormContinuous
                out[f"joint_blocks.{i}.{BLOCK[rest]}.{kind}"] = t
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    for name, pieces in fused.items():
        assert sorted(pieces) == [0, 1, 2], name
        out[name] = torch.cat([pieces[0], pieces[1], pieces[2]])
    return out


def same(a, b, what):
    """a and b hold the same names and bitwise equal tensors (dtype too)."""
    assert set(a) == set(b), (what, sorted(set(a) ^ set(b))[:8])
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), (what, k)


def check_transformer(mmdit, folder, what):
    """diffusers' converter, and from_single_file with the folder's config,
    give back the folder's transformer from `mmdit` (a file's state dict)."""
    sd = load_file(f"{folder}/transformer/diffusion_pytorch_model.safetensors")
    left = dict(mmdit)
    back = convert_sd3_transformer_checkpoint_to_diffusers(left)
    assert not left, (what, f"names diffusers' converter left unread: {sorted(left)[:5]}")
    same(back, sd, what)
    return sd


def check_from_single_file(path, folder, sd, what):
    model = SD3Transformer2DModel.from_single_file(path, config=folder, subfolder="transformer",
                                                   local_files_only=True, torch_dtype=torch.float16)
    same(model.state_dict(), sd, what + " (from_single_file)")


def main():
    os.makedirs(f"{HERE}/single", exist_ok=True)

    # SD3.5 Medium shaped, with its text encoders and VAE
    tiny = f"{HERE}/tiny"
    sd35 = load_file(f"{tiny}/transformer/diffusion_pytorch_model.safetensors")
    mmdit = to_mmdit(sd35)
    clip_l = load_file(f"{tiny}/text_encoder/model.safetensors")
    clip_g = load_file(f"{tiny}/text_encoder_2/model.safetensors")
    t5 = load_file(f"{tiny}/text_encoder_3/model.safetensors")
    assert "encoder.embed_tokens.weight" not in t5
    vae_sd = load_file(f"{tiny}/vae/diffusion_pytorch_model.safetensors")
    vae = ldm_vae(vae_sd)  # asserts diffusers' converter gives vae_sd back
    assert not any("quant_conv" in k for k in vae)
    single = {f"{DIT}{k}": v for k, v in mmdit.items()}
    for prefix, part in ((CLIP_L, clip_l), (CLIP_G, clip_g), (T5, t5), (VAE, vae)):
        single.update({f"{prefix}{k}": v for k, v in part.items()})
    path35 = f"{HERE}/single/sd3.5-tiny.safetensors"
    save_file({k: v.contiguous() for k, v in single.items()}, path35, metadata=PT)

    # the bare SD3.0 Medium shaped MMDiT
    tiny_sd3 = f"{HERE}/tiny_sd3"
    bare = to_mmdit(load_file(f"{tiny_sd3}/transformer/diffusion_pytorch_model.safetensors"))
    path3 = f"{HERE}/single/sd3-tiny-transformer.safetensors"
    save_file({k: v.contiguous() for k, v in bare.items()}, path3, metadata=PT)

    # checks, on the files as written
    single = load_file(path35)
    assert all(v.dtype == torch.float16 for v in single.values())
    dit = {k[len(DIT):]: v for k, v in single.items() if k.startswith(DIT)}
    assert not any(k.startswith("model.diffusion_model.") for k in dit)
    check_transformer(dit, tiny, "sd3.5-tiny")
    # and as from_single_file hands it over, prefixed (the converter strips model.diffusion_model.)
    check_transformer({k: v for k, v in single.items() if k.startswith(DIT)}, tiny, "sd3.5-tiny, prefixed")
    check_from_single_file(path35, tiny, sd35, "sd3.5-tiny")
    bare_back = load_file(path3)
    assert all(v.dtype == torch.float16 for v in bare_back.values())
    sd3 = check_transformer(bare_back, tiny_sd3, "sd3-tiny-transformer")
    check_from_single_file(path3, tiny_sd3, sd3, "sd3-tiny-transformer")

    with open(f"{tiny}/vae/config.json") as f:
        vae_config = json.load(f)
    back = convert_ldm_vae_checkpoint({k: v for k, v in single.items() if k.startswith(VAE)}, vae_config)
    assert set(back) == set(vae_sd), sorted(set(back) ^ set(vae_sd))
    for k, v in back.items():  # the attention's 1x1 convolutions are diffusers' linears
        assert v.dtype == vae_sd[k].dtype and torch.equal(v.reshape(vae_sd[k].shape), vae_sd[k]), k

    same(convert_ldm_clip_checkpoint(single, CLIP_L), clip_l, "clip_l")
    same(convert_ldm_clip_checkpoint(single, CLIP_G), clip_g, "clip_g")
    same(convert_sd3_t5_checkpoint_to_diffusers(single), t5, "t5xxl")
    prefixes = (DIT, CLIP_L, CLIP_G, T5, VAE)
    assert all(k.startswith(prefixes) for k in single)
    assert len(single) == len(mmdit) + len(clip_l) + len(clip_g) + len(t5) + len(vae)

    for p in (path35, path3):
        os.chmod(p, 0o644)


if __name__ == "__main__":
    main()
