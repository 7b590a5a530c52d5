"""Writes LyCORIS' LoKr, DoRA and Tucker-decomposed files for the tiny SD 1.x
model (tests/data/tiny) and the weights ComfyUI makes of it with each merged.

  lokr.safetensors: LyCORIS LoKr modules in kohya's names: a linear with a
       whole w1 and w2 = w2_a @ w2_b (alpha / w2's rank), a 3x3 convolution
       with a whole w1 and a whole 4-D w2 (no rank: scale 1, the file's
       alpha unused), a feed-forward linear with both sides decomposed (alpha
       / w2's rank), and a text-encoder linear of a prime width (37) with
       whole w1 and w2.
  dora.safetensors: DoRA on LoRA and LoCon modules (and one LoKr): a
       linear and a 3x3 convolution with LyCORIS' magnitude per output row
       (dora_scale (O, 1[, 1, 1])), a 1x1 convolution and a text-encoder
       linear with sd-scripts' per input column (dora_scale (1, I[, 1, 1])),
       and the LoKr feed-forward with a magnitude per output row.
  tucker.safetensors: Tucker (CP) decompositions on 3x3 convolutions: a
       LoCon with lora_mid, a LoHa with hada_t1 and hada_t2 (its a factors
       (rank, out), as LyCORIS stores them there), a LoKr whose w2 is
       lokr_t2 with lokr_w2_a and lokr_w2_b.
  golden.lycoris.safetensors: `<file>.<weight name>`: each weight the
       file changes, merged at the strengths below.

Origin: the factors are random (seeded) and stored in float16; the merges
restate ComfyUI v0.3.64's comfy/weight_adapter (lokr.py's
calculate_weight: w1 and w2 made whole, torch.kron, alpha / dim where a
side is decomposed; lora.py's lora_mid and loha.py's and lokr.py's
einsum('i j k l, j r, i p -> p r k l') of the Tucker cores (made contiguous
before LoKr's kron: ComfyUI's own kron of the einsum's view raises, and its
merge leaves such a weight as it was); base.py's weight_decompose: the weight plus alpha times
the difference, its norm per output row taken of the weight before the
update, per input column of the one after, plus float32's epsilon, times
dora_scale, then blended by the strength) in float32 on the model's float32
weights, as ComfyUI patches a weight.

Run from the repository root with torch installed:
  python3 tests/data/lora/make_lycoris_data.py
"""
import os

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(os.path.dirname(HERE), "tiny", "sd15_tiny_ldm_fp32.safetensors")
UNET, CLIP = 0.8, -0.5  # lokr.safetensors' and tucker.safetensors' strengths
DORA_UNET, DORA_CLIP = 0.7, 1.0  # dora.safetensors': 1 takes weight_decompose's other branch

Q = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
CONV = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
CONV2 = "model.diffusion_model.input_blocks.1.0.out_layers.3.weight"
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
FF = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight"
PROJ_IN = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
FC2 = "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight"
TE_Q = "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"
MODULES = {Q: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
           CONV: "lora_unet_down_blocks_0_resnets_0_conv1",
           CONV2: "lora_unet_down_blocks_0_resnets_0_conv2",
           CONV_IN: "lora_unet_conv_in",
           FF: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj",
           PROJ_IN: "lora_unet_down_blocks_0_attentions_0_proj_in",
           FC2: "lora_te_text_model_encoder_layers_1_mlp_fc2",
           TE_Q: "lora_te_text_model_encoder_layers_0_self_attn_q_proj"}


def half(*shape, scale=0.3):
    """Random values as the file stores them (float16), in float32."""
    return (torch.randn(*shape) * scale).half().float()


def magnitude(*shape):
    """DoRA magnitudes near 1, as the file stores them (float16)."""
    return (1 + half(*shape, scale=0.1)).half().float()


def cp(t, b, a):
    """The Tucker core t with its factors, as ComfyUI's einsum."""
    return torch.einsum("i j k l, j r, i p -> p r k l", t, b, a)


def lokr_diff(v):
    """lokr.py's calculate_weight up to its diff: (kron(w1, w2), alpha)."""
    dim = None
    w1 = v.get("lokr_w1")
    if w1 is None:
        dim = v["lokr_w1_b"].shape[0]
        w1 = torch.mm(v["lokr_w1_a"], v["lokr_w1_b"])
    w2 = v.get("lokr_w2")
    if w2 is None:
        dim = v["lokr_w2_b"].shape[0]
        if "lokr_t2" in v:  # contiguous: torch.kron views it, and ComfyUI's call fails on the einsum's layout
            w2 = cp(v["lokr_t2"], v["lokr_w2_b"], v["lokr_w2_a"]).contiguous()
        else:
            w2 = torch.mm(v["lokr_w2_a"], v["lokr_w2_b"])
    if len(w2.shape) == 4:
        w1 = w1.unsqueeze(2).unsqueeze(2)
    alpha = v["alpha"].item() / dim if "alpha" in v and dim is not None else 1.0
    return torch.kron(w1, w2), alpha


def lora_diff(v):
    """lora.py's: up @ down (flattened; down through lora_mid's core first),
    alpha / rank."""
    up, down = v["lora_up.weight"], v["lora_down.weight"]
    alpha = v["alpha"].item() / down.shape[0] if "alpha" in v else 1.0
    if "lora_mid.weight" in v:
        mid = v["lora_mid.weight"]
        final_shape = [down.shape[1], down.shape[0], mid.shape[2], mid.shape[3]]
        down = torch.mm(down.transpose(0, 1).flatten(start_dim=1),
                        mid.transpose(0, 1).flatten(start_dim=1)).reshape(final_shape).transpose(0, 1)
    return torch.mm(up.flatten(start_dim=1), down.flatten(start_dim=1)), alpha


def loha_diff(v):
    """loha.py's: (w1a @ w1b) * (w2a @ w2b), or of the Tucker cores, alpha /
    w1b's rank."""
    if "hada_t1" in v:
        m1 = cp(v["hada_t1"], v["hada_w1_b"], v["hada_w1_a"])
        m2 = cp(v["hada_t2"], v["hada_w2_b"], v["hada_w2_a"])
    else:
        m1 = torch.mm(v["hada_w1_a"], v["hada_w1_b"])
        m2 = torch.mm(v["hada_w2_a"], v["hada_w2_b"])
    return m1 * m2, v["alpha"].item() / v["hada_w1_b"].shape[0] if "alpha" in v else 1.0


def weight_decompose(dora_scale, weight, lora_diff, alpha, strength):
    """base.py's, with the identity as its function."""
    lora_diff = lora_diff * alpha
    weight_calc = weight + lora_diff
    if dora_scale.shape[0] == weight_calc.shape[0]:
        weight_norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True)
        weight_norm = weight_norm.reshape(weight.shape[0], *[1] * (weight.dim() - 1))
    else:
        weight_norm = (weight_calc.transpose(0, 1).reshape(weight_calc.shape[1], -1).norm(dim=1, keepdim=True)
                       .reshape(weight_calc.shape[1], *[1] * (weight_calc.dim() - 1)).transpose(0, 1))
    weight_norm = weight_norm + torch.finfo(weight.dtype).eps
    weight_calc *= dora_scale / weight_norm
    if strength != 1.0:
        weight_calc -= weight
        return weight + strength * weight_calc
    return weight_calc


def merge(sd, modules, strengths, name, goldens):
    """Writes `name`.safetensors of modules {weight: parts}; each weight
    merged into goldens["name.<weight>"] as ComfyUI merges it."""
    tensors = {}
    for target, v in modules.items():
        stem = MODULES[target]
        tensors.update({f"{stem}.{part}": t for part, t in v.items()})
        weight = sd[target].clone()
        kind = lokr_diff if any(p.startswith("lokr") for p in v) else loha_diff if "hada_w1_a" in v else lora_diff
        diff, alpha = kind(v)
        diff = diff.reshape(weight.shape)
        strength = strengths[target.startswith("cond_stage_model.")]
        if "dora_scale" in v:
            weight = weight_decompose(v["dora_scale"], weight, diff, alpha, strength)
        else:
            weight += (strength * alpha) * diff
        goldens[f"{name}.{target}"] = weight
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, f"{HERE}/{name}.safetensors")


def main():
    torch.manual_seed(53)
    sd = load_file(MODEL)
    goldens = {}
    lokr = {
        Q: {"lokr_w1": half(4, 4), "lokr_w2_a": half(8, 2), "lokr_w2_b": half(2, 8), "alpha": torch.tensor(1.0)},
        CONV: {"lokr_w1": half(2, 4), "lokr_w2": half(16, 8, 3, 3, scale=0.1), "alpha": torch.tensor(4.0)},
        FF: {"lokr_w1_a": half(16, 2), "lokr_w1_b": half(2, 4), "lokr_w2_a": half(16, 3), "lokr_w2_b": half(3, 8),
             "alpha": torch.tensor(3.0)},
        FC2: {"lokr_w1": half(4, 1), "lokr_w2": half(8, 37)},
    }
    merge(sd, lokr, (UNET, CLIP), "lokr", goldens)
    dora = {
        Q: {"lora_down.weight": half(4, 32), "lora_up.weight": half(32, 4), "alpha": torch.tensor(2.0),
            "dora_scale": magnitude(32, 1)},
        CONV: {"lora_down.weight": half(4, 32, 3, 3, scale=0.1), "lora_up.weight": half(32, 4, 1, 1),
               "alpha": torch.tensor(4.0), "dora_scale": magnitude(32, 1, 1, 1)},
        PROJ_IN: {"lora_down.weight": half(4, 32, 1, 1), "lora_up.weight": half(32, 4, 1, 1),
                  "dora_scale": magnitude(1, 32, 1, 1)},
        TE_Q: {"lora_down.weight": half(2, 32), "lora_up.weight": half(32, 2), "alpha": torch.tensor(1.0),
               "dora_scale": magnitude(1, 32)},
        FF: {"lokr_w1": half(16, 4), "lokr_w2_a": half(16, 2), "lokr_w2_b": half(2, 8), "alpha": torch.tensor(2.0),
             "dora_scale": magnitude(256, 1)},
    }
    merge(sd, dora, (DORA_UNET, DORA_CLIP), "dora", goldens)
    tucker = {
        CONV: {"lora_down.weight": half(4, 32, 1, 1), "lora_mid.weight": half(4, 4, 3, 3),
               "lora_up.weight": half(32, 4, 1, 1), "alpha": torch.tensor(2.0)},
        CONV2: {"hada_w1_a": half(3, 32), "hada_w1_b": half(3, 32), "hada_t1": half(3, 3, 3, 3),
                "hada_w2_a": half(3, 32), "hada_w2_b": half(3, 32), "hada_t2": half(3, 3, 3, 3),
                "alpha": torch.tensor(1.5)},
        CONV_IN: {"lokr_w1": half(2, 2), "lokr_w2_a": half(2, 16), "lokr_w2_b": half(2, 2),
                  "lokr_t2": half(2, 2, 3, 3), "alpha": torch.tensor(1.0)},
    }
    merge(sd, tucker, (UNET, CLIP), "tucker", goldens)
    for k, v in goldens.items():  # every module changes its weight
        target = k.split(".", 1)[1]
        assert (v - sd[target]).norm() / sd[target].norm() > 1e-3, k
    save_file({k: v.contiguous() for k, v in goldens.items()}, f"{HERE}/golden.lycoris.safetensors")


if __name__ == "__main__":
    main()
