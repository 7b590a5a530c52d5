"""Writes tests/data/flux/lora: LoRAs for the tiny Flux model of
tests/data/flux in the two layouts Flux LoRAs come in, and what the model
computes with each merged.

  kohya.safetensors: sd-scripts' layout (what ComfyUI, Forge and most shared
       Flux LoRAs use): modules named after BFL's weights with dots as
       underscores (lora_unet_double_blocks_0_img_attn_qkv, ..._linear1, the
       final layer's (shift, scale) modulation, txt_in), lora_down / lora_up
       / alpha (rank 4, alpha 2), and CLIP-L's (lora_te1_text_model_...).
  peft.safetensors: diffusers' / PEFT's layout, in diffusers' names under
       transformer. (lora_A / lora_B, no alpha: scale 1).
  onetrainer.safetensors: peft.safetensors in the kohya-style layout
       OneTrainer and SimpleTuner write for Flux: diffusers' module names with
       dots as underscores under lora_transformer_ (lora_down / lora_up, alpha
       = rank: scale 1), so peft.out is its golden too.
  xlabs.safetensors: XLabs' layout (double_blocks.N.processor.qkv_lora1 /
       qkv_lora2 / proj_lora1 / proj_lora2, single_blocks.N.processor.qkv_lora
       (q, k and v only) / proj_lora; down / up, no alpha), under ComfyUI's
       diffusion_model. prefix for the single blocks.
  golden.safetensors:
       kohya.out (2,12,64): the transformer on tests/data/flux/golden's inputs
         with kohya.safetensors merged at strength 0.8, the merged weights
         rounded to float16 as the file stores them (ComfyUI's merge into an
         fp16 model);
       kohya.pooled (1,32): CLIP-L's pooled output of the run prompt's ids
         (run.golden's run.clip_ids.positive) with its modules merged at 0.6;
       peft.out: the transformer with peft.safetensors loaded by diffusers
         0.32.2 / PEFT 0.13.2 (load_lora_adapter, fused, then the weights
         rounded to float16 likewise);
       xlabs.out: xlabs.safetensors through diffusers 0.32.2's own XLabs
         converter (_convert_xlabs_flux_lora_to_diffusers), then likewise.

Origin: torch; the kohya merge restated here in BFL's names (W += strength *
alpha / rank * up @ down), taken to diffusers' names row by row through
make_flux_single_data.py's to_bfl (checked against diffusers' converter);
the PEFT one by PEFT itself.

Run from the repository root with diffusers 0.32.2, peft 0.13.2,
transformers and torch installed:
  python3 tests/data/flux/make_flux_lora_data.py
"""
import os
import sys

import torch
from diffusers import FluxTransformer2DModel
from diffusers.loaders.lora_conversion_utils import _convert_xlabs_flux_lora_to_diffusers
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
from make_flux_single_data import to_bfl  # noqa: E402
from sd_common import save_goldens  # noqa: E402

RANK, ALPHA = 4, 2.0
UNET_STRENGTH, CLIP_STRENGTH = 0.8, 0.6
KOHYA_BFL = ["double_blocks.0.img_attn.qkv", "double_blocks.0.txt_mlp.0", "double_blocks.0.img_mod.lin",
             "single_blocks.0.linear1", "single_blocks.1.linear2", "final_layer.adaLN_modulation.1", "txt_in"]
KOHYA_CLIP = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc1"]
PEFT = ["transformer_blocks.0.attn.to_k", "single_transformer_blocks.1.proj_mlp", "norm_out.linear",
        "context_embedder"]


def low_rank(rows, cols):
    """A random rank-RANK pair (up, down) whose product is of order 0.1, in
    float16's values (the files store float16)."""
    return (torch.randn(rows, RANK) * 0.3).half().float(), (torch.randn(RANK, cols) / cols ** 0.5).half().float()


def bfl_rows_to_diffusers(diffusers_sd, rename=to_bfl):
    """For each BFL weight, the (diffusers name, row) each of its rows came
    from: rename (to_bfl) run on tensors holding their own row labels."""
    names = sorted(k for k in diffusers_sd if k.endswith(".weight"))
    labels = {k: torch.stack([torch.full((v.shape[0],), float(i)), torch.arange(v.shape[0], dtype=torch.float32)], 1)
              for i, (k, v) in enumerate((k, diffusers_sd[k]) for k in names)}
    for k in diffusers_sd:  # biases ride along unlabelled
        labels.setdefault(k, torch.zeros(diffusers_sd[k].shape[0], 2) - 1)
    return {k: [(names[int(a)], int(b)) for a, b in v.tolist()] for k, v in rename(labels).items()
            if k.endswith(".weight")}


def merged_half(w, delta):
    return (w.float() + delta).half().float()


def transformer_out(state):
    flux = FluxTransformer2DModel.from_pretrained(f"{HERE}/transformer").eval()
    flux.load_state_dict(state)
    g = load_file(f"{HERE}/golden.safetensors")
    B = g["packed"].shape[0]
    with torch.no_grad():
        return flux(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                    timestep=g["timestep"], img_ids=g["img_ids"].expand(B, -1, -1),
                    txt_ids=g["txt_ids"].expand(B, -1, -1), guidance=g["guidance"], return_dict=False)[0]


def kohya_merge(sd, modules, rename=to_bfl):
    """A random kohya-layout LoRA of the original-named `modules` (BFL's,
    rename's) of the diffusers state dict sd, and sd with it merged at
    UNET_STRENGTH in those names and taken to diffusers' row by row, each
    merged weight rounded to float16."""
    bfl = rename(sd)
    rows_of = bfl_rows_to_diffusers(sd, rename)
    lora, deltas = {}, {}
    for module in modules:
        w = bfl[f"{module}.weight"]
        up, down = low_rank(*w.shape)
        name = "lora_unet_" + module.replace(".", "_")
        lora.update({f"{name}.lora_up.weight": up, f"{name}.lora_down.weight": down,
                     f"{name}.alpha": torch.tensor(ALPHA)})
        delta = UNET_STRENGTH * ALPHA / RANK * (up @ down)
        for row, (target, target_row) in enumerate(rows_of[f"{module}.weight"]):
            deltas.setdefault(target, torch.zeros_like(sd[target]))[target_row] += delta[row]
    return lora, {k: merged_half(v, deltas[k]) if k in deltas else v for k, v in sd.items()}


def kohya(goldens):
    torch.manual_seed(29)
    sd = {k: v.float() for k, v in load_file(f"{HERE}/transformer/diffusion_pytorch_model.safetensors").items()}
    lora, merged = kohya_merge(sd, KOHYA_BFL)
    goldens["kohya.out"] = transformer_out(merged)

    clip = CLIPTextModel.from_pretrained(f"{DATA}/tiny/sd15_tiny_diffusers/text_encoder").eval()
    state = clip.state_dict()
    for module in KOHYA_CLIP:
        w = state[f"{module}.weight"]
        up, down = low_rank(*w.shape)
        name = "lora_te1_" + module.replace(".", "_")
        lora.update({f"{name}.lora_up.weight": up, f"{name}.lora_down.weight": down,
                     f"{name}.alpha": torch.tensor(ALPHA)})
        state[f"{module}.weight"] = (w + CLIP_STRENGTH * ALPHA / RANK * (up @ down)).to(w.dtype)
    clip.load_state_dict(state)
    ids = load_file(f"{HERE}/run.golden.safetensors")["run.clip_ids.positive"].long().reshape(1, -1)
    with torch.no_grad():
        goldens["kohya.pooled"] = clip(input_ids=ids).pooler_output
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/kohya.safetensors")


def fused_out(lora):
    """The transformer with a diffusers-named LoRA loaded by PEFT, fused, and
    its weights rounded to float16."""
    flux = FluxTransformer2DModel.from_pretrained(f"{HERE}/transformer").eval()
    flux.load_lora_adapter(dict(lora), prefix="transformer", adapter_name="test")
    flux.fuse_lora(lora_scale=1.0, adapter_names=["test"])
    flux.unload_lora()
    return transformer_out({k: v.half().float() for k, v in flux.state_dict().items()})


def xlabs(goldens):
    torch.manual_seed(41)
    sd = load_file(f"{HERE}/transformer/diffusion_pytorch_model.safetensors")
    D = sd["x_embedder.weight"].shape[0]
    modules = {"double_blocks.0.processor.qkv_lora1": 3 * D, "double_blocks.0.processor.qkv_lora2": 3 * D,
               "double_blocks.0.processor.proj_lora1": D, "double_blocks.0.processor.proj_lora2": D,
               "diffusion_model.single_blocks.1.processor.qkv_lora": 3 * D,
               "diffusion_model.single_blocks.0.processor.proj_lora": D}
    lora = {}
    for module, rows in modules.items():
        cols = 5 * D if module.endswith("single_blocks.0.processor.proj_lora") else D
        up, down = low_rank(rows, cols)
        lora.update({f"{module}.down.weight": down, f"{module}.up.weight": up})
    goldens["xlabs.out"] = fused_out(_convert_xlabs_flux_lora_to_diffusers(dict(lora)))
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/xlabs.safetensors")


def peft(goldens):
    torch.manual_seed(31)
    flux = FluxTransformer2DModel.from_pretrained(f"{HERE}/transformer").eval()
    lora = {}
    for module in PEFT:
        w = flux.get_submodule(module).weight
        up, down = low_rank(*w.shape)
        lora.update({f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": up})
    goldens["peft.out"] = fused_out(lora)
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/peft.safetensors")
    underscored = {}
    for module in PEFT:
        name = "lora_transformer_" + module.replace(".", "_")
        underscored[f"{name}.lora_down.weight"] = lora[f"transformer.{module}.lora_A.weight"]
        underscored[f"{name}.lora_up.weight"] = lora[f"transformer.{module}.lora_B.weight"]
        underscored[f"{name}.alpha"] = torch.tensor(float(RANK))
    save_file({k: v.half().contiguous() for k, v in underscored.items()}, f"{HERE}/lora/onetrainer.safetensors")


def main():
    sd = {k: v.float() for k, v in load_file(f"{HERE}/transformer/diffusion_pytorch_model.safetensors").items()}
    plain = transformer_out(sd)
    want = load_file(f"{HERE}/golden.safetensors")["out"]
    assert ((plain - want).norm() / want.norm()) < 1e-6, "diffusers 0.32 runs the tiny model as 0.30 did"
    goldens = {}
    kohya(goldens)
    peft(goldens)
    xlabs(goldens)
    for k in ("kohya.out", "peft.out", "xlabs.out"):  # each LoRA changes the output
        assert ((goldens[k] - want).norm() / want.norm()) > 0.05, k
    save_goldens(goldens, f"{HERE}/lora/golden.safetensors")


if __name__ == "__main__":
    main()
