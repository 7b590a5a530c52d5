"""Writes kiln's LoRA test data for SD 2.x: a kohya sd-scripts LoRA (with
LoCon convolutions) for the tiny random SD 2.x model of this folder, and what
upstream diffusers computes with it merged.

Origin: the LoRA weights are random (seeded); the goldens were computed by
diffusers 0.32.2 / transformers 4.44.2 / peft 0.13.2 on PyTorch (CPU, float32):
the diffusers folder's UNet and text encoder in a StableDiffusionPipeline,
the file loaded with `load_lora_weights`, merged with
`fuse_lora(lora_scale=0.75)`, then both run on the inputs of golden.safetensors.
SD 2.x's text tower is OpenCLIP's; kohya names it as transformers'
CLIPTextModel (`lora_te_text_model_encoder_layers_N_self_attn_q_proj`), and
SD 2.x single files fuse its q, k and v into one in_proj, so this is where a
merge lands in rows of a fused weight. The UNet projects in and out of its
transformers with linears (use_linear_projection), which kohya's modules
follow.

  kohya.safetensors         lora_unet_* (attention, feed-forward, linear
      proj_in/proj_out, resnet and shortcut convolutions, the downsampler) and
      lora_te_* (every linear of text layers 0 and 1), f16 factors, alphas.
  kohya.golden.safetensors  input_ids, clip_skip2 (the penultimate layer
      through the final norm, what SD 2.x conditions on), sample, timesteps,
      encoder_hidden_states and noise_pred (the UNet), with the LoRA merged.

Run from the repository root with torch, diffusers, transformers and peft
installed:
  python3 tests/data/sd2/make_sd2_lora_data.py
"""
import numpy as np
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

FOLDER = "tests/data/sd2/tiny_sd2_diffusers"
OUT = "tests/data/sd2/lora"
STRENGTH = 0.75
RANK = 4

rng = np.random.default_rng(20261128)


def add_lora(sd, name, out_dim, in_dim, kernel=None, alpha=None):
    """One kohya module: down (r, in[, k, k]), up (out, r[, 1, 1]), alpha."""
    def factor(*shape):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 0.2).half()
    if kernel is None:
        sd[name + ".lora_down.weight"] = factor(RANK, in_dim)
        sd[name + ".lora_up.weight"] = factor(out_dim, RANK)
    else:
        sd[name + ".lora_down.weight"] = factor(RANK, in_dim, kernel, kernel)
        sd[name + ".lora_up.weight"] = factor(out_dim, RANK, 1, 1)
    sd[name + ".alpha"] = torch.tensor(float(alpha if alpha is not None else RANK / 2))


def kohya():
    sd = {}
    u = "lora_unet_"
    for block, dim in [("down_blocks_0_attentions_0", 32), ("down_blocks_0_attentions_1", 32),
                       ("up_blocks_1_attentions_2", 32), ("mid_block_attentions_0", 64)]:
        t = f"{u}{block}_transformer_blocks_0_"
        for attn in ("attn1", "attn2"):
            kv_in = dim if attn == "attn1" else 32
            add_lora(sd, f"{t}{attn}_to_q", dim, dim)
            add_lora(sd, f"{t}{attn}_to_k", dim, kv_in)
            add_lora(sd, f"{t}{attn}_to_v", dim, kv_in)
            add_lora(sd, f"{t}{attn}_to_out_0", dim, dim)
        add_lora(sd, f"{t}ff_net_0_proj", dim * 8, dim)
        add_lora(sd, f"{t}ff_net_2", dim, dim * 4)
        add_lora(sd, f"{u}{block}_proj_in", dim, dim)
        add_lora(sd, f"{u}{block}_proj_out", dim, dim)
    add_lora(sd, f"{u}down_blocks_0_resnets_1_conv1", 32, 32, kernel=3)
    add_lora(sd, f"{u}down_blocks_1_resnets_0_conv_shortcut", 64, 32, kernel=1, alpha=1)
    add_lora(sd, f"{u}down_blocks_0_downsamplers_0_conv", 32, 32, kernel=3)
    te = "lora_te_text_model_encoder_layers_"
    for layer in (0, 1):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add_lora(sd, f"{te}{layer}_self_attn_{proj}", 32, 32)
        add_lora(sd, f"{te}{layer}_mlp_fc1", 64, 32)
        add_lora(sd, f"{te}{layer}_mlp_fc2", 32, 64)
    return sd


def text_encoder():
    """The folder's tower (its file has no {"format": "pt"}, which transformers' loader wants)."""
    tower = CLIPTextModel(CLIPTextConfig.from_pretrained(f"{FOLDER}/text_encoder")).eval()
    weights = {k: torch.from_numpy(v) for k, v in load_file(f"{FOLDER}/text_encoder/model.safetensors").items()}
    missing, unexpected = tower.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return tower


def main():
    import os
    os.makedirs(OUT, exist_ok=True)
    save_file(kohya(), f"{OUT}/kohya.safetensors")
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(FOLDER, subfolder="vae"),
        text_encoder=text_encoder(), tokenizer=None,
        unet=UNet2DConditionModel.from_pretrained(FOLDER, subfolder="unet"),
        scheduler=EulerDiscreteScheduler.from_pretrained(FOLDER, subfolder="scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False).to(torch.float32)
    before = {k: v.clone() for k, v in list(pipe.unet.state_dict().items()) + list(pipe.text_encoder.state_dict().items())}
    pipe.load_lora_weights(OUT, weight_name="kohya.safetensors", adapter_name="test")
    pipe.fuse_lora(lora_scale=STRENGTH)
    pipe.unload_lora_weights()
    after = dict(list(pipe.unet.state_dict().items()) + list(pipe.text_encoder.state_dict().items()))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    with safe_open(f"{OUT}/kohya.safetensors", "pt") as f:
        modules = len({k.rsplit(".lora", 1)[0].rsplit(".alpha", 1)[0] for k in f.keys()})
    # every module of the file must have reached a weight, or the golden would not test its mapping
    assert len(changed) == modules, f"{len(changed)} weights changed for {modules} modules"

    g = load_file("tests/data/sd2/golden.safetensors")
    golden = {}
    ids = torch.from_numpy(g["input_ids"]).long()
    with torch.no_grad():
        # the folder's tower ends at SD 2.x's penultimate layer: its last hidden state is clip_skip2
        golden["clip_skip2"] = pipe.text_encoder(ids).last_hidden_state
        sample, timesteps = torch.from_numpy(g["sample"]), torch.from_numpy(g["timesteps"])
        context = torch.from_numpy(g["encoder_hidden_states"])
        golden["noise_pred"] = pipe.unet(sample, timesteps, encoder_hidden_states=context).sample
    golden["input_ids"] = ids
    golden["sample"], golden["timesteps"], golden["encoder_hidden_states"] = sample, timesteps, context
    save_file({k: v.contiguous() for k, v in golden.items()}, f"{OUT}/kohya.golden.safetensors")
    plain = torch.from_numpy(g["noise_pred"])
    print(f"{modules} modules; noise_pred moves by {float((golden['noise_pred'] - plain).norm() / plain.norm()):.3f}, "
          f"clip_skip2 by {float((golden['clip_skip2'] - torch.from_numpy(g['clip_skip2'])).norm() / torch.from_numpy(g['clip_skip2']).norm()):.3f}")


if __name__ == "__main__":
    main()
