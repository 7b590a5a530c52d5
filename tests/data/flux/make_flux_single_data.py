"""Writes tests/data/flux/single: the tiny Flux model of tests/data/flux in
the single-file layouts users download, for kiln's readers of them.

  flux1-tiny.safetensors: the transformer alone in Black Forest Labs' names
       (flux1-dev.safetensors as BFL ship it, ComfyUI's UNETLoader file):
       fused q/k/v (double_blocks.N.img_attn.qkv), single blocks' q/k/v and
       MLP input in one linear1, the final modulation as (shift, scale).
  flux1-tiny-comfy.safetensors: as ComfyUI saves a Flux checkpoint, the
       transformer under model.diffusion_model. and the VAE under vae. in
       the original autoencoder's names (ae.safetensors' names); its text
       encoders are given beside it as separate files in the tests.

Origin: the weights of tests/data/flux/transformer and tests/data/flux/tiny/vae
(diffusers names), renamed. The renaming is checked against diffusers 0.30.3's
own converter (convert_flux_transformer_checkpoint_to_diffusers) on a
FLUX.1-dev-sized key set whose rows carry their own index (the converter
splits at FLUX.1's widths, so it cannot take the tiny model itself), and
the VAE's against convert_ldm_vae_checkpoint on the tiny VAE. Values are
the tiny model's float16 ones, unchanged.

Run from the repository root with diffusers 0.30.3 and torch installed:
  python3 tests/data/flux/make_flux_single_data.py
"""
import json
import os
import sys

import torch
from diffusers.loaders.single_file_utils import (convert_flux_transformer_checkpoint_to_diffusers,
                                                 convert_ldm_vae_checkpoint)
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from sd_common import PT  # noqa: E402

ATTN = {"to_q": 0, "to_k": 1, "to_v": 2}
CONTEXT = {"add_q_proj": 0, "add_k_proj": 1, "add_v_proj": 2}


def to_bfl(sd):
    """A FluxTransformer2DModel state dict in BFL's names."""
    out = {}
    top = {"time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
           "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
           "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
           "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear"}
    double = {"norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
              "attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
              "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
              "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
              "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
              "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj"}
    single = {"norm.linear": "modulation.lin", "attn.norm_q": "norm.query_norm",
              "attn.norm_k": "norm.key_norm", "proj_out": "linear2"}
    fused = {}  # BFL name -> {order: tensor}
    for name, t in sd.items():
        module, kind = name.rsplit(".", 1)
        parts = module.split(".")
        if module in top:
            out[f"{top[module]}.{kind}"] = t
        elif module == "norm_out.linear":  # diffusers keeps (scale, shift)
            scale, shift = t.chunk(2, dim=0)
            out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale])
        elif parts[0] == "transformer_blocks":
            i, rest = parts[1], ".".join(parts[2:])
            if rest in double:
                bfl_kind = "scale" if "norm." in double[rest] else kind
                out[f"double_blocks.{i}.{double[rest]}.{bfl_kind}"] = t
            elif parts[2] == "attn" and parts[3] in ATTN:
                fused.setdefault(f"double_blocks.{i}.img_attn.qkv.{kind}", {})[ATTN[parts[3]]] = t
            elif parts[2] == "attn" and parts[3] in CONTEXT:
                fused.setdefault(f"double_blocks.{i}.txt_attn.qkv.{kind}", {})[CONTEXT[parts[3]]] = t
            else:
                raise KeyError(name)
        elif parts[0] == "single_transformer_blocks":
            i, rest = parts[1], ".".join(parts[2:])
            if rest in single:
                bfl_kind = "scale" if "norm." in single[rest] else kind
                out[f"single_blocks.{i}.{single[rest]}.{bfl_kind}"] = t
            elif parts[2] == "attn" and parts[3] in ATTN:
                fused.setdefault(f"single_blocks.{i}.linear1.{kind}", {})[ATTN[parts[3]]] = t
            elif rest == "proj_mlp":
                fused.setdefault(f"single_blocks.{i}.linear1.{kind}", {})[3] = t
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    for name, pieces in fused.items():
        out[name] = torch.cat([pieces[k] for k in sorted(pieces)])
    return out


def full_size_blocks(modulated=True):
    """Two double and two single blocks at FLUX.1's widths: each linear's
    name and rows (the blocks' modulation layers where modulated)."""
    D, mlp = 3072, 12288
    shapes = {}
    for i in range(2):
        p = f"transformer_blocks.{i}."
        for m in ("norm1.linear", "norm1_context.linear") if modulated else ():
            shapes[p + m] = 6 * D
        for m in ("attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
                  "attn.to_out.0", "attn.to_add_out", "ff.net.2", "ff_context.net.2"):
            shapes[p + m] = D
        shapes[p + "ff.net.0.proj"] = shapes[p + "ff_context.net.0.proj"] = mlp
        p = f"single_transformer_blocks.{i}."
        if modulated:
            shapes[p + "norm.linear"] = 3 * D
        for m in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_out"):
            shapes[p + m] = D
        shapes[p + "proj_mlp"] = mlp
    return shapes


def labelled_state(shapes):
    """A state dict of `shapes`' linears (rows, 1) and the blocks' q/k norms
    (128), each row holding its tensor's number and its index."""
    sd = {}
    for n, (module, rows) in enumerate(shapes.items()):
        index = torch.arange(rows, dtype=torch.float64)
        for kind in ("weight", "bias"):
            sd[f"{module}.{kind}"] = (index + 1e6 * (2 * n + (kind == "bias"))).unsqueeze(1)
    for i in range(2):
        for k, w in (("transformer_blocks", ("norm_q", "norm_k", "norm_added_q", "norm_added_k")),
                     ("single_transformer_blocks", ("norm_q", "norm_k"))):
            for j, m in enumerate(w):
                sd[f"{k}.{i}.attn.{m}.weight"] = torch.arange(128, dtype=torch.float64) + 1e8 * (i * 10 + j + 1)
    return sd


def check_round_trip(sd, rename, converter):
    """rename (to the original names, under model.diffusion_model.), then
    diffusers' converter, gives sd back row for row."""
    bfl = {f"model.diffusion_model.{k}": v for k, v in rename(sd).items()}
    back = converter(bfl)
    assert not bfl, f"names diffusers' converter left unread: {sorted(bfl)[:5]}"
    assert set(back) == set(sd), set(back) ^ set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def check_against_diffusers():
    """to_bfl, then diffusers' converter, gives back every FLUX.1-dev-sized
    tensor row for row (each row holds its tensor's number and its index)."""
    D = 3072
    shapes = {"x_embedder": D, "context_embedder": D, "proj_out": 64, "norm_out.linear": 2 * D}
    for e in ("timestep_embedder", "text_embedder", "guidance_embedder"):
        shapes[f"time_text_embed.{e}.linear_1"] = D
        shapes[f"time_text_embed.{e}.linear_2"] = D
    shapes.update(full_size_blocks())
    check_round_trip(labelled_state(shapes), to_bfl, convert_flux_transformer_checkpoint_to_diffusers)


def ldm_vae(diffusers_vae):
    """The tiny VAE in the original autoencoder's names, from
    tests/data/vae_flux (the same weights, stored under first_stage_model.),
    checked against diffusers' converter back into the tiny folder's VAE."""
    ldm = {k[len("first_stage_model."):]: v
           for k, v in load_file(os.path.join(os.path.dirname(HERE), "vae_flux", "vae.safetensors")).items()}
    with open(f"{HERE}/tiny/vae/config.json") as f:
        config = json.load(f)
    back = convert_ldm_vae_checkpoint(dict(ldm), config)
    assert set(back) == set(diffusers_vae), set(back) ^ set(diffusers_vae)
    for k, v in back.items():
        assert torch.equal(v.reshape(diffusers_vae[k].shape), diffusers_vae[k]), k
    return ldm


def main():
    check_against_diffusers()
    sd = load_file(f"{HERE}/transformer/diffusion_pytorch_model.safetensors")
    bfl = to_bfl(sd)
    vae = ldm_vae(load_file(f"{HERE}/tiny/vae/diffusion_pytorch_model.safetensors"))
    os.makedirs(f"{HERE}/single", exist_ok=True)
    save_file({k: v.contiguous() for k, v in bfl.items()}, f"{HERE}/single/flux1-tiny.safetensors")
    comfy = {f"model.diffusion_model.{k}": v for k, v in bfl.items()}
    comfy.update({f"vae.{k}": v for k, v in vae.items()})
    save_file({k: v.contiguous() for k, v in comfy.items()}, f"{HERE}/single/flux1-tiny-comfy.safetensors",
              metadata=PT)


if __name__ == "__main__":
    main()
