"""Writes tests/data/sd3/lora: LoRAs for the tiny SD3.5 Medium shaped model of
tests/data/sd3/tiny in the two layouts SD3 LoRAs come in, and what the model
computes with each merged.

  peft.safetensors: diffusers' / PEFT's layout, as
       StableDiffusion3Pipeline.save_lora_weights writes it (its writer, so
       metadata {"format": "pt"}): transformer.<diffusers module>.lora_A.weight
       (r, in) and .lora_B.weight (out, r), no alpha (scale 1), rank 4, on
       every linear of every joint block (attn.to_q/to_k/to_v/to_out.0,
       attn.add_q_proj/add_k_proj/add_v_proj/to_add_out, block 0's second
       attention attn2.to_q/to_k/to_v/to_out.0, ff.net.0.proj, ff.net.2,
       ff_context.net.0.proj, ff_context.net.2, norm1.linear,
       norm1_context.linear: the last block, context_pre_only, has no
       to_add_out / ff_context, and its norm1_context.linear is the (2D, D)
       AdaLayerNormContinuous one, rows (scale, shift)) and on proj_out,
       norm_out.linear (rows (scale, shift)) and context_embedder.
  kohya.safetensors: sd-scripts' layout (networks/lora_sd3.py, which ComfyUI
       reads as lora_unet_ + the MMDiT weight's name with dots as
       underscores): modules named after Stability's MMDiT weights
       (make_sd3_single_data.py's names) under lora_unet_, lora_down.weight
       (r, in) / lora_up.weight (out, r) / alpha (rank 4, alpha 2: scale
       0.5), on every linear of every joint block (x_block.attn.qkv, the
       fused (3D, D) q/k/v, as one LoRA; x_block.attn.proj; block 0's
       x_block.attn2.qkv / attn2.proj; x_block.mlp.fc1/fc2;
       x_block.adaLN_modulation.1; context_block.attn.qkv / attn.proj /
       mlp.fc1 / mlp.fc2 / adaLN_modulation.1, the last block's being the
       pre-only (2D, D) one, rows (shift, scale)) and on
       final_layer.linear, final_layer.adaLN_modulation.1 (rows (shift,
       scale)) and context_embedder. Not on the t / y / x embedders.
  golden.safetensors (float32, each (2,16,8,6): the transformer on
       tests/data/sd3/golden's sd35.sample / context / pooled / timestep,
       its merged weights rounded to float16 as the folder's file stores
       them, as kiln narrows a merged weight to its stored dtype):
       peft.out: peft.safetensors as diffusers 0.32.2 / PEFT 0.13.2 load it
         (StableDiffusion3Pipeline.load_lora_weights, a pipeline holding
         only the transformer), fused at lora_scale 1.0
         (pipeline.fuse_lora, which scales and merges PEFT's layers);
       peft.out_half: the same fused at lora_scale 0.5;
       kohya.out: kohya.safetensors merged at strength 1.0 in the MMDiT
         names, W += strength * alpha / rank * up @ down (ComfyUI's and
         sd-scripts' merge), the weights taken back to diffusers' names by
         diffusers 0.32.2's convert_sd3_transformer_checkpoint_to_diffusers.

The LoRA files store float16 (alpha too); the factors are rounded to float16
before any golden is computed, so the goldens are what the stored factors
give.

Origin: torch; the kohya merge restated here in the MMDiT names (the
tiny transformer renamed by make_sd3_single_data.py's to_mmdit, whose inverse
is diffusers' converter), the PEFT one by diffusers and PEFT themselves.
Checked here: the folder's transformer gives sd35.out; PEFT wrapped exactly
the LoRA's modules, and its fused weights are W + scale * B @ A, the rest
untouched; to_mmdit takes the kohya-merged weights back to the MMDiT merge
exactly; kohya.safetensors restated in diffusers' names (each fused q/k/v
LoRA as three sharing its down factor, the (shift, scale) halves of the
pre-only context modulation and the final modulation swapped, alpha / rank
folded into the down factor) and loaded and fused by diffusers gives
kohya.out; each LoRA changes the output by 5-30 %.

Run from the repository root with diffusers 0.32.2, peft 0.13.2,
transformers and torch installed (after tests/data/sd3/make_sd3_data.py):
  python3 tests/data/sd3/make_sd3_lora_data.py
"""
import os
import sys

import torch
from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
from make_sd3_single_data import swap_halves, to_mmdit  # noqa: E402
from sd_common import PT, save_goldens  # noqa: E402

RANK, ALPHA = 4, 2.0
KOHYA_STRENGTH = 1.0
PEFT_SCALES = {"peft.out": 1.0, "peft.out_half": 0.5}
UP_STD = 0.05  # a LoRA's product is about 2 * UP_STD of its weight's size
TRANSFORMER = f"{HERE}/tiny/transformer"

# every linear of a joint block, in diffusers' names and in the MMDiT's;
# each block has those of them its model has
PEFT_BLOCK = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
              "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
              "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
              "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
              "norm1.linear", "norm1_context.linear"]
PEFT_TOP = ["proj_out", "norm_out.linear", "context_embedder"]
KOHYA_BLOCK = ["x_block.attn.qkv", "x_block.attn.proj", "x_block.attn2.qkv", "x_block.attn2.proj",
               "x_block.mlp.fc1", "x_block.mlp.fc2", "x_block.adaLN_modulation.1",
               "context_block.attn.qkv", "context_block.attn.proj", "context_block.mlp.fc1",
               "context_block.mlp.fc2", "context_block.adaLN_modulation.1"]
KOHYA_TOP = ["final_layer.linear", "final_layer.adaLN_modulation.1", "context_embedder"]
# the MMDiT weights each fused q/k/v splits into, for the restatement in diffusers' names
QKV_SPLIT = {"x_block.attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
             "context_block.attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
             "x_block.attn2.qkv": ["attn2.to_q", "attn2.to_k", "attn2.to_v"]}
RENAMED = {"x_block.attn.proj": "attn.to_out.0", "x_block.attn2.proj": "attn2.to_out.0",
           "x_block.mlp.fc1": "ff.net.0.proj", "x_block.mlp.fc2": "ff.net.2",
           "x_block.adaLN_modulation.1": "norm1.linear", "context_block.attn.proj": "attn.to_add_out",
           "context_block.mlp.fc1": "ff_context.net.0.proj", "context_block.mlp.fc2": "ff_context.net.2",
           "context_block.adaLN_modulation.1": "norm1_context.linear",
           "final_layer.linear": "proj_out", "final_layer.adaLN_modulation.1": "norm_out.linear",
           "context_embedder": "context_embedder"}


def low_rank(rows, cols):
    """A random rank-RANK pair (up, down) in float16's values (the files
    store float16), up @ down about 2 * UP_STD / sqrt(cols) an entry, against
    the tiny model's 1 / sqrt(cols)."""
    return (torch.randn(rows, RANK) * UP_STD).half().float(), (torch.randn(RANK, cols) / cols ** 0.5).half().float()


def folder_state():
    return {k: v.float() for k, v in load_file(f"{TRANSFORMER}/diffusion_pytorch_model.safetensors").items()}


def transformer_out(state):
    """The tiny transformer with `state` (diffusers' names) on golden's sd35
    inputs."""
    model = SD3Transformer2DModel.from_pretrained(TRANSFORMER).eval()
    model.load_state_dict(state)
    g = load_file(f"{HERE}/golden.safetensors")
    with torch.no_grad():
        return model(hidden_states=g["sd35.sample"], encoder_hidden_states=g["sd35.context"],
                     pooled_projections=g["sd35.pooled"], timestep=g["sd35.timestep"]).sample


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def diffusers_fused(lora, scale, expect):
    """The folder's transformer with a diffusers-named LoRA (a file or a
    state dict) loaded and fused as StableDiffusion3Pipeline does it, its
    weights rounded to float16. `expect`: the modules PEFT must wrap."""
    model = SD3Transformer2DModel.from_pretrained(TRANSFORMER).eval()
    pipe = StableDiffusion3Pipeline(transformer=model, scheduler=None, vae=None, text_encoder=None, tokenizer=None,
                                    text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    pipe.load_lora_weights(lora, adapter_name="test")
    wrapped = sorted(n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer))
    assert wrapped == sorted(expect), sorted(set(wrapped) ^ set(expect))
    pipe.fuse_lora(components=["transformer"], lora_scale=scale, adapter_names=["test"])
    pipe.unload_lora_weights()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def peft(goldens, plain_sd):
    torch.manual_seed(47)
    model = SD3Transformer2DModel.from_pretrained(TRANSFORMER)
    names = {n for n, _ in model.named_modules()}
    blocks = len(model.transformer_blocks)
    modules = [f"transformer_blocks.{i}.{m}" for i in range(blocks) for m in PEFT_BLOCK
               if f"transformer_blocks.{i}.{m}" in names] + PEFT_TOP
    layers = {}
    for module in modules:
        up, down = low_rank(*model.get_submodule(module).weight.shape)
        layers.update({f"{module}.lora_A.weight": down.half(), f"{module}.lora_B.weight": up.half()})
    os.makedirs(f"{HERE}/lora", exist_ok=True)
    path = f"{HERE}/lora/peft.safetensors"
    StableDiffusion3Pipeline.save_lora_weights(f"{HERE}/lora", transformer_lora_layers=layers,
                                               weight_name="peft.safetensors")
    stored = load_file(path)
    assert sorted(stored) == sorted(f"transformer.{k}" for k in layers)
    assert all(v.dtype == torch.float16 for v in stored.values())
    for key, scale in PEFT_SCALES.items():
        fused = diffusers_fused(path, scale, modules)
        # PEFT's fused weights are W + scale * B @ A, the rest untouched
        assert fused.keys() == plain_sd.keys(), sorted(set(fused) ^ set(plain_sd))
        for k, v in plain_sd.items():
            module = k.rsplit(".", 1)[0]
            want = v
            if module in modules and k.endswith(".weight"):
                want = v + scale * (stored[f"transformer.{module}.lora_B.weight"].float()
                                    @ stored[f"transformer.{module}.lora_A.weight"].float())
            assert torch.allclose(fused[k], want, rtol=0, atol=1e-6), (key, k)
        goldens[key] = transformer_out({k: v.half().float() for k, v in fused.items()})
    return modules


def kohya(goldens, plain_sd):
    torch.manual_seed(43)
    mmdit = to_mmdit(plain_sd)
    blocks = 1 + max(int(k.split(".")[1]) for k in mmdit if k.startswith("joint_blocks."))
    modules = [f"joint_blocks.{i}.{m}" for i in range(blocks) for m in KOHYA_BLOCK
               if f"joint_blocks.{i}.{m}.weight" in mmdit] + KOHYA_TOP
    lora, merged = {}, dict(mmdit)
    for module in modules:
        w = mmdit[f"{module}.weight"]
        up, down = low_rank(*w.shape)
        name = "lora_unet_" + module.replace(".", "_")
        lora.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                     f"{name}.alpha": torch.tensor(ALPHA)})
        merged[f"{module}.weight"] = w + KOHYA_STRENGTH * ALPHA / RANK * (up @ down)
    path = f"{HERE}/lora/kohya.safetensors"
    save_file({k: v.half().contiguous() for k, v in lora.items()}, path, metadata=PT)
    stored = load_file(path)
    assert all(v.dtype == torch.float16 and torch.equal(v.float(), lora[k]) for k, v in stored.items())
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(merged))
    assert back.keys() == plain_sd.keys(), sorted(set(back) ^ set(plain_sd))
    again = to_mmdit(back)
    assert again.keys() == merged.keys() and all(torch.equal(again[k], merged[k]) for k in merged)
    goldens["kohya.out"] = transformer_out({k: v.half().float() for k, v in back.items()})

    # the same LoRA restated in diffusers' names, merged by diffusers / PEFT
    last = blocks - 1
    restated, wrapped = {}, []
    for module in modules:
        name = "lora_unet_" + module.replace(".", "_")
        up = stored[f"{name}.lora_up.weight"].float()
        down = stored[f"{name}.lora_down.weight"].float() * (stored[f"{name}.alpha"].item() / RANK)
        if module.startswith("joint_blocks."):
            i, rest = module.split(".", 2)[1:]
            prefix = f"transformer_blocks.{i}."
        else:
            i, rest, prefix = None, module, ""
        if rest in QKV_SPLIT:
            targets = [prefix + t for t in QKV_SPLIT[rest]]
            ups = up.chunk(3)
        else:
            targets = [prefix + RENAMED[rest]]
            swapped = rest == "final_layer.adaLN_modulation.1" or (
                rest == "context_block.adaLN_modulation.1" and int(i) == last)
            ups = [swap_halves(up) if swapped else up]
        for target, u in zip(targets, ups):
            restated.update({f"transformer.{target}.lora_A.weight": down,
                             f"transformer.{target}.lora_B.weight": u.contiguous()})
            wrapped.append(target)
    fused = diffusers_fused(restated, KOHYA_STRENGTH, wrapped)
    out = transformer_out({k: v.half().float() for k, v in fused.items()})
    assert rel(out, goldens["kohya.out"]) < 1e-5, rel(out, goldens["kohya.out"])
    return modules


def main():
    plain_sd = folder_state()
    want = load_file(f"{HERE}/golden.safetensors")["sd35.out"]
    assert rel(transformer_out(plain_sd), want) < 1e-6, "diffusers 0.32.2 runs the tiny model as the goldens did"
    goldens = {}
    peft_modules = peft(goldens, plain_sd)
    kohya_modules = kohya(goldens, plain_sd)
    print(f"peft: {len(peft_modules)} modules, kohya: {len(kohya_modules)} modules")
    for k, v in goldens.items():  # each LoRA changes the output, noticeably but not overwhelmingly
        change = rel(v, want)
        print(f"{k}: relative change {change:.4f}")
        assert 0.05 < change < 0.3, (k, change)
    assert rel(goldens["peft.out_half"], want) < rel(goldens["peft.out"], want)
    save_goldens({k: goldens[k] for k in ("peft.out", "peft.out_half", "kohya.out")},
                 f"{HERE}/lora/golden.safetensors")
    for name in ("peft", "kohya", "golden"):
        os.chmod(f"{HERE}/lora/{name}.safetensors", 0o644)


if __name__ == "__main__":
    main()
