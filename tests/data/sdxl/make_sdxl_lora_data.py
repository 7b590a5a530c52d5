"""Writes kiln's SDXL LoRA test data: a kohya sd-scripts LoRA for the tiny
random SDXL model (tests/data/sdxl/tiny_sdxl_diffusers), laid out as
`sdxl_train_network` writes them, and what upstream diffusers computes with
it merged.

Origin: the LoRA factors are random (numpy, seeded); every golden output was
computed by diffusers 0.27.2 / transformers 4.40 / peft 0.10 on PyTorch (CPU,
float32): StableDiffusionXLPipeline built from the components of
tests/data/sdxl/tiny_sdxl_diffusers (no tokenizers), the file loaded with
`load_lora_weights` (diffusers renames the kohya/sgm names itself), merged
with `fuse_lora(lora_scale=0.75)`, then the UNet and both text encoders run
on the inputs of tests/data/sdxl/golden.safetensors. The script checks that
every module of the file changed exactly its own weight, by
W + 0.75 * alpha / rank * up @ down (kohya's rule), and nothing else.

  lora_kohya.safetensors  kohya names with the original (ldm/sgm) UNet block
      names: `lora_unet_{input_blocks_4_1,input_blocks_5_1,middle_block_1,
      output_blocks_0_1,output_blocks_1_1,output_blocks_2_1}_*` (every
      transformer of the tiny UNet: proj_in, proj_out and, in both transformer
      blocks, attn1/attn2 to_q/to_k/to_v/to_out_0, ff_net_0_proj, ff_net_2),
      `lora_te1_text_model_encoder_layers_N_*` (clip_l, both layers) and
      `lora_te2_text_model_encoder_layers_N_*` (clip_g, all three layers):
      self_attn_{q,k,v,out}_proj, mlp_fc1, mlp_fc2. Each module has
      `lora_down.weight` (4, in) and `lora_up.weight` (out, 4) in float16 and
      a 0-d float16 `alpha` (sd-scripts saves every tensor, alpha included,
      in its save precision). UNet alphas are 2, 1, 4, 3 by turns; the text
      encoders' are one per encoder (2 for te1, 4 for te2) but for two MLP
      linears each: diffusers 0.27.2 collapses a text encoder's self-attention
      alpha names to `...self_attn` (get_peft_kwargs, is_unet=False), which
      matches no layer, so q/k/v/out_proj alphas that differ from the
      encoder's most common alpha would be silently replaced by it.
  lora_kohya.golden.safetensors (float32, ids int64), with the LoRA merged at 0.75:
      l.input_ids, g.input_ids (2,77): copied from golden.safetensors;
      l.hidden (2,77,32): clip_l's hidden_states[-2], no final layer norm;
      g.hidden (2,77,32): clip_g's hidden_states[-2]; g.pooled (2,32): clip_g's
        text_embeds (these read the merged text encoders on the ids above);
      sample (2,4,8,8), timesteps (2), encoder_hidden_states (2,77,64), y (2,80):
        copied from golden.safetensors (the unmerged context, so that the UNet
        goldens test the UNet's LoRA alone); the UNet is called with
        added_cond_kwargs text_embeds/time_ids of golden.safetensors, and the y
        that reaches add_embedding is checked equal to the copied y;
      noise_pred (2,4,8,8) and x.<block> for conv_in, down_blocks.0,
        down_blocks.1, mid_block, up_blocks.0, up_blocks.1: the merged UNet's
        eps and block outputs.

Run from the repository root with torch, diffusers, transformers and peft
installed (the versions above); it reads only tests/data/sdxl, and imports
its block hooks from tests/data/sd_common.py:
  python3 tests/data/sdxl/make_sdxl_lora_data.py
Running it twice writes byte-identical files.
"""
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import record_input, record_outputs  # noqa: E402

OUT = "tests/data/sdxl"
MODEL = os.path.join(OUT, "tiny_sdxl_diffusers")
STRENGTH = 0.75
RANK = 4
UNET_ALPHAS = (2.0, 1.0, 4.0, 3.0)  # by turns, module after module
# one alpha per text encoder (diffusers 0.27.2 applies per-module alphas only to
# the MLP linears there), but for these
TEXT_ALPHA = {"text_encoder": 2.0, "text_encoder_2": 4.0}
TEXT_ALPHAS = {"lora_te1_text_model_encoder_layers_0_mlp_fc2": 1.0, "lora_te1_text_model_encoder_layers_1_mlp_fc1": 4.0,
               "lora_te2_text_model_encoder_layers_0_mlp_fc1": 1.0, "lora_te2_text_model_encoder_layers_2_mlp_fc2": 3.0}

# the tiny UNet's transformers: sgm name -> diffusers name, width (depth 2 each)
TRANSFORMERS = [("input_blocks_4_1", "down_blocks.1.attentions.0"), ("input_blocks_5_1", "down_blocks.1.attentions.1"),
                ("middle_block_1", "mid_block.attentions.0"), ("output_blocks_0_1", "up_blocks.0.attentions.0"),
                ("output_blocks_1_1", "up_blocks.0.attentions.1"), ("output_blocks_2_1", "up_blocks.0.attentions.2")]
DEPTH, WIDTH, CONTEXT = 2, 64, 64
# text encoders: kohya prefix, pipeline attribute, layers, hidden, MLP width
TEXT_ENCODERS = [("lora_te1_", "text_encoder", 2, 32, 37), ("lora_te2_", "text_encoder_2", 3, 32, 64)]
BLOCKS = ["conv_in", "down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"]

rng = np.random.default_rng(20261128)


def factor(*shape):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * 0.2)


def modules():
    """(kohya name, pipeline part, diffusers module name, out, in) of every module."""
    out = []
    for sgm, diffusers in TRANSFORMERS:
        out.append((f"lora_unet_{sgm}_proj_in", "unet", f"{diffusers}.proj_in", WIDTH, WIDTH))
        for j in range(DEPTH):
            for attn in ("attn1", "attn2"):
                kv_in = WIDTH if attn == "attn1" else CONTEXT
                for proj, o, i in [("to_q", WIDTH, WIDTH), ("to_k", WIDTH, kv_in), ("to_v", WIDTH, kv_in),
                                   ("to_out_0", WIDTH, WIDTH)]:
                    out.append((f"lora_unet_{sgm}_transformer_blocks_{j}_{attn}_{proj}", "unet",
                                f"{diffusers}.transformer_blocks.{j}.{attn}.{proj.replace('_0', '.0')}", o, i))
            out.append((f"lora_unet_{sgm}_transformer_blocks_{j}_ff_net_0_proj", "unet",
                        f"{diffusers}.transformer_blocks.{j}.ff.net.0.proj", WIDTH * 8, WIDTH))
            out.append((f"lora_unet_{sgm}_transformer_blocks_{j}_ff_net_2", "unet",
                        f"{diffusers}.transformer_blocks.{j}.ff.net.2", WIDTH, WIDTH * 4))
        out.append((f"lora_unet_{sgm}_proj_out", "unet", f"{diffusers}.proj_out", WIDTH, WIDTH))
    for prefix, part, layers, hidden, mlp in TEXT_ENCODERS:
        for n in range(layers):
            kohya, name = f"{prefix}text_model_encoder_layers_{n}_", f"text_model.encoder.layers.{n}."
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out.append((f"{kohya}self_attn_{proj}", part, f"{name}self_attn.{proj}", hidden, hidden))
            out.append((f"{kohya}mlp_fc1", part, f"{name}mlp.fc1", mlp, hidden))
            out.append((f"{kohya}mlp_fc2", part, f"{name}mlp.fc2", hidden, mlp))
    return out


def lora_file(mods):
    sd = {}
    for n, (kohya, part, _name, o, i) in enumerate(mods):
        sd[kohya + ".lora_down.weight"] = factor(RANK, i).half()
        sd[kohya + ".lora_up.weight"] = factor(o, RANK).half()
        alpha = UNET_ALPHAS[n % len(UNET_ALPHAS)] if part == "unet" else TEXT_ALPHAS.get(kohya, TEXT_ALPHA[part])
        sd[kohya + ".alpha"] = torch.tensor(alpha).half()
    return sd


def load_pipeline():
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(MODEL, subfolder="vae")
    te_l = CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder")
    te_g = CLIPTextModelWithProjection.from_pretrained(MODEL, subfolder="text_encoder_2")
    scheduler = EulerDiscreteScheduler.from_pretrained(MODEL, subfolder="scheduler")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te_l, text_encoder_2=te_g, tokenizer=None,
                                     tokenizer_2=None, unet=unet, scheduler=scheduler, add_watermarker=False)
    pipe = pipe.to(torch.float32)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        m.eval()
    return pipe


def weights(pipe):
    return {part: {k: v.detach().clone() for k, v in getattr(pipe, part).state_dict().items()}
            for part in ("unet", "text_encoder", "text_encoder_2")}


def run_unet(unet, golden):
    """noise_pred, the block outputs and the y add_embedding received."""
    out = {}
    handles = record_outputs(unet, BLOCKS, out)
    handles.append(record_input(unet.add_embedding, out, "y"))
    with torch.no_grad():
        out["noise_pred"] = unet(golden["sample"], golden["timesteps"],
                                 encoder_hidden_states=golden["encoder_hidden_states"],
                                 added_cond_kwargs={"text_embeds": golden["text_embeds"],
                                                    "time_ids": golden["time_ids"]}).sample
    for h in handles:
        h.remove()
    return out


def run_text(pipe, golden):
    with torch.no_grad():
        out_l = pipe.text_encoder(golden["l.input_ids"], output_hidden_states=True)
        out_g = pipe.text_encoder_2(golden["g.input_ids"], output_hidden_states=True)
    return {"l.hidden": out_l.hidden_states[-2], "g.hidden": out_g.hidden_states[-2], "g.pooled": out_g.text_embeds}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def main():
    golden = load_file(os.path.join(OUT, "golden.safetensors"))
    mods = modules()
    lora = lora_file(mods)
    path = os.path.join(OUT, "lora_kohya.safetensors")
    save_file(lora, path)
    counts = {part: sum(1 for m in mods if m[1] == part) for part in ("unet", "text_encoder", "text_encoder_2")}

    pipe = load_pipeline()
    # the unmerged model gives back the shared goldens
    base_unet, base_text = run_unet(pipe.unet, golden), run_text(pipe, golden)
    for k, v in {**base_unet, **base_text}.items():
        assert torch.allclose(v, golden[k], atol=1e-5, rtol=1e-5), f"unmerged {k} differs from golden.safetensors"

    before = weights(pipe)
    pipe.load_lora_weights(path, adapter_name="test")
    pipe.fuse_lora(lora_scale=STRENGTH)
    pipe.unload_lora_weights()
    after = weights(pipe)

    # every module changed its own weight, by kohya's rule, and nothing else changed
    for part, count in counts.items():
        assert before[part].keys() == after[part].keys(), part
        changed = {k for k in before[part] if not torch.equal(before[part][k], after[part][k])}
        expected = {name + ".weight" for _k, p, name, _o, _i in mods if p == part}
        assert changed == expected, (part, sorted(changed ^ expected)[:8])
        assert len(changed) == count, (part, len(changed), count)
    for kohya, part, name, _o, _i in mods:
        up, down = lora[kohya + ".lora_up.weight"].float(), lora[kohya + ".lora_down.weight"].float()
        scale = STRENGTH * lora[kohya + ".alpha"].float().item() / RANK
        want = before[part][name + ".weight"] + scale * (up @ down)
        assert torch.allclose(after[part][name + ".weight"], want, atol=1e-5, rtol=1e-5), kohya

    out = {"l.input_ids": golden["l.input_ids"], "g.input_ids": golden["g.input_ids"]}
    out.update(run_text(pipe, golden))
    for k in ("sample", "timesteps", "encoder_hidden_states", "y"):
        out[k] = golden[k]
    unet_out = run_unet(pipe.unet, golden)
    assert torch.equal(unet_out.pop("y"), golden["y"]), "y fed to add_embedding differs from the golden's"
    out.update(unet_out)

    diffs = {k: rel(out[k], golden[k]) for k in ("noise_pred", "g.pooled", "l.hidden", "g.hidden")}
    for k in BLOCKS:
        diffs["x." + k] = rel(out["x." + k], golden["x." + k])
    for k, d in diffs.items():
        print(f"relative L2 difference of {k}: {d:.4f}")
    for k in ("noise_pred", "g.pooled", "l.hidden"):
        assert diffs[k] > 0.01, (k, diffs[k])

    save_file({k: v.clone().contiguous() for k, v in out.items()}, os.path.join(OUT, "lora_kohya.golden.safetensors"))
    print("modules:", {"unet": counts["unet"], "te1": counts["text_encoder"], "te2": counts["text_encoder_2"]})
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
