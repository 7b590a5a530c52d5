"""Writes kiln's LoRA test data: LoRA files for the tiny random SD 1.x model
(tests/data/tiny) in the layouts people have, and what upstream diffusers
computes with each one merged.

Origin: the LoRA weights are random (seeded); every golden output was
computed by diffusers 0.27.2 / transformers 4.40 / peft 0.10 on PyTorch (CPU,
float32): the file loaded with `load_lora_weights`, merged with
`fuse_lora(lora_scale=STRENGTH)`, then the UNet and text encoder run on the
inputs of tests/data/tiny/unet.safetensors and clip_text.safetensors.

  kohya_locon.safetensors  kohya sd-scripts / LyCORIS names (`lora_unet_*`,
      `lora_te_*`, diffusers block names), f16 factors with alphas: attention,
      feed-forward and projections (LoRA), resnet, shortcut, time-embedding,
      down- and upsampler convolutions (LoCon, 3x3 and 1x1).
  kohya_ldm.safetensors    the same kind with the original block names
      (`lora_unet_input_blocks_1_1_*`), as some trainers write.
  diffusers.safetensors    what diffusers' `save_lora_weights` writes
      (`unet.*.lora.down.weight`, `text_encoder.*.lora_linear_layer.*`), no alphas.
  <name>.golden.safetensors  input_ids, last_hidden_state, clip_skip2 (CLIP)
      and sample, timesteps, encoder_hidden_states, noise_pred, x.<block>
      (UNet), with the LoRA merged at STRENGTH.

Run from the repository root with torch, diffusers, transformers and peft
installed and the project's shared goldens at ../shared/goldens:
  python3 tests/data/lora/make_lora_data.py
"""
import os

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/lora"
STRENGTH = 0.75
RANK = 4

rng = np.random.default_rng(20261127)


def factor(*shape):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 0.2)


def add_lora(sd, name, out_dim, in_dim, kernel=None, alpha=None, dtype=torch.float16):
    """One kohya module: down (r, in[, k, k]), up (out, r[, 1, 1]), alpha."""
    if kernel is None:
        sd[name + ".lora_down.weight"] = factor(RANK, in_dim).to(dtype)
        sd[name + ".lora_up.weight"] = factor(out_dim, RANK).to(dtype)
    else:
        sd[name + ".lora_down.weight"] = factor(RANK, in_dim, kernel, kernel).to(dtype)
        sd[name + ".lora_up.weight"] = factor(out_dim, RANK, 1, 1).to(dtype)
    sd[name + ".alpha"] = torch.tensor(float(alpha if alpha is not None else RANK / 2))


def add_text_encoder(sd, dtype):
    """Every linear of both CLIP layers: diffusers 0.27 reads them only all together."""
    te = "lora_te_text_model_encoder_layers_"
    for layer in (0, 1):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add_lora(sd, f"{te}{layer}_self_attn_{proj}", 32, 32, dtype=dtype)
        add_lora(sd, f"{te}{layer}_mlp_fc1", 37, 32, dtype=dtype)
        add_lora(sd, f"{te}{layer}_mlp_fc2", 32, 37, dtype=dtype)


def kohya_locon():
    sd = {}
    u = "lora_unet_"
    for block, dim, ctx in [("down_blocks_0_attentions_1", 32, 32), ("up_blocks_1_attentions_0", 32, 32),
                            ("mid_block_attentions_0", 64, 32)]:
        t = f"{u}{block}_transformer_blocks_0_"
        for attn in ("attn1", "attn2"):
            kv_in = dim if attn == "attn1" else ctx
            add_lora(sd, f"{t}{attn}_to_q", dim, dim)
            add_lora(sd, f"{t}{attn}_to_k", dim, kv_in)
            add_lora(sd, f"{t}{attn}_to_v", dim, kv_in)
            add_lora(sd, f"{t}{attn}_to_out_0", dim, dim)
        add_lora(sd, f"{t}ff_net_0_proj", dim * 8, dim)
        add_lora(sd, f"{t}ff_net_2", dim, dim * 4)
        add_lora(sd, f"{u}{block}_proj_in", dim, dim, kernel=1)
        add_lora(sd, f"{u}{block}_proj_out", dim, dim, kernel=1)
    add_lora(sd, f"{u}down_blocks_0_resnets_1_conv1", 32, 32, kernel=3)
    add_lora(sd, f"{u}down_blocks_1_resnets_0_conv2", 64, 64, kernel=3, alpha=1)
    add_lora(sd, f"{u}down_blocks_1_resnets_0_conv_shortcut", 64, 32, kernel=1)
    add_lora(sd, f"{u}down_blocks_1_resnets_0_time_emb_proj", 64, 128)
    add_lora(sd, f"{u}down_blocks_0_downsamplers_0_conv", 32, 32, kernel=3)
    add_lora(sd, f"{u}up_blocks_0_upsamplers_0_conv", 64, 64, kernel=3)
    add_lora(sd, f"{u}up_blocks_1_resnets_2_conv1", 32, 64, kernel=3)
    add_text_encoder(sd, torch.float16)
    return sd


def kohya_ldm():
    sd = {}
    u = "lora_unet_"
    # input_blocks.2.1 is down_blocks.0.attentions.1; output_blocks.4.1 is up_blocks.1.attentions.1
    for block, dim in [("input_blocks_2_1", 32), ("output_blocks_4_1", 32), ("middle_block_1", 64)]:
        t = f"{u}{block}_transformer_blocks_0_"
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v"):
                add_lora(sd, f"{t}{attn}_{proj}", dim, dim if proj == "to_q" or attn == "attn1" else 32)
            add_lora(sd, f"{t}{attn}_to_out_0", dim, dim)
        add_lora(sd, f"{t}ff_net_0_proj", dim * 8, dim)
        add_lora(sd, f"{t}ff_net_2", dim, dim * 4)
        add_lora(sd, f"{u}{block}_proj_in", dim, dim, kernel=1, dtype=torch.float32)
    add_text_encoder(sd, torch.bfloat16)
    return sd


def load_pipeline():
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, requires_safety_checker=False)
    return pipe.to(torch.float32)


def diffusers_format():
    """A LoRA saved by diffusers itself: random adapters made with peft."""
    from peft import LoraConfig
    pipe = load_pipeline()
    unet_cfg = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False,
                          target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"])
    te_cfg = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    torch.manual_seed(7)
    pipe.unet.add_adapter(unet_cfg)
    pipe.text_encoder.add_adapter(te_cfg)
    from peft.utils import get_peft_model_state_dict
    from diffusers.utils import convert_state_dict_to_diffusers
    unet_sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    te_sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder))
    StableDiffusionPipeline.save_lora_weights(OUT, unet_lora_layers=unet_sd, text_encoder_lora_layers=te_sd,
                                              weight_name="diffusers.safetensors", safe_serialization=True)


def reference(name):
    """Runs the tiny model with the LoRA merged, on the tiny goldens' inputs."""
    pipe = load_pipeline()
    before = {k: v.clone() for k, v in list(pipe.unet.state_dict().items()) + list(pipe.text_encoder.state_dict().items())}
    # unet_config lets diffusers renumber original (input_blocks) block names
    pipe.load_lora_weights(OUT, weight_name=name + ".safetensors", adapter_name="test", unet_config=pipe.unet.config)
    pipe.fuse_lora(lora_scale=STRENGTH)
    pipe.unload_lora_weights()
    after = dict(list(pipe.unet.state_dict().items()) + list(pipe.text_encoder.state_dict().items()))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    with safe_open(f"{OUT}/{name}.safetensors", "pt") as f:
        modules = len({k.rsplit(".lora", 1)[0].rsplit(".alpha", 1)[0] for k in f.keys()})
    # every module of the file must have reached a weight, or the golden would not test its mapping
    assert len(changed) == modules, f"{name}: {len(changed)} weights changed for {modules} modules"

    golden = {}
    clip_in = load_file("tests/data/tiny/clip_text.safetensors")
    ids = torch.from_numpy(clip_in["input_ids"]).long()
    with torch.no_grad():
        out = pipe.text_encoder(ids, output_hidden_states=True)
        golden["input_ids"] = ids.to(torch.int64)
        golden["last_hidden_state"] = out.last_hidden_state
        golden["clip_skip2"] = pipe.text_encoder.text_model.final_layer_norm(out.hidden_states[-2])

    unet_in = load_file("tests/data/tiny/unet.safetensors")
    unet = pipe.unet
    blocks = {"conv_in": unet.conv_in, "time_proj": unet.time_proj, "time_embedding": unet.time_embedding,
              "mid_block": unet.mid_block, "conv_norm_out": unet.conv_norm_out, "conv_out": unet.conv_out}
    for i, b in enumerate(unet.down_blocks):
        blocks[f"down_blocks.{i}"] = b
    for i, b in enumerate(unet.up_blocks):
        blocks[f"up_blocks.{i}"] = b
    hooks = []
    for block, module in blocks.items():
        def hook(_m, _inputs, output, block=block):
            golden["x." + block] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        hooks.append(module.register_forward_hook(hook))
    sample = torch.from_numpy(unet_in["sample"])
    timesteps = torch.from_numpy(unet_in["timesteps"])
    context = torch.from_numpy(unet_in["encoder_hidden_states"])
    with torch.no_grad():
        golden["noise_pred"] = unet(sample, timesteps, encoder_hidden_states=context).sample
    for h in hooks:
        h.remove()
    golden["sample"], golden["timesteps"], golden["encoder_hidden_states"] = sample, timesteps, context
    save_file({k: v.contiguous() for k, v in golden.items()}, f"{OUT}/{name}.golden.safetensors")
    print(f"{name}: {modules} modules, {len(changed)} weights changed")


def main():
    os.makedirs(OUT, exist_ok=True)
    save_file(kohya_locon(), f"{OUT}/kohya_locon.safetensors")
    save_file(kohya_ldm(), f"{OUT}/kohya_ldm.safetensors")
    diffusers_format()
    for name in ("kohya_locon", "kohya_ldm", "diffusers"):
        reference(name)


if __name__ == "__main__":
    main()
