"""Writes tests/data/chroma/lora: LoRAs for the tiny Chroma model of
tests/data/chroma in the layouts Chroma LoRAs come in, and what the model
computes with each merged.

  kohya.safetensors: sd-scripts' / ai-toolkit's kohya layout, modules named
       after the original single file's weights with dots as underscores
       (lora_unet_double_blocks_0_img_attn_qkv, ..._single_blocks_0_linear1,
       ..._distilled_guidance_layer_layers_0_in_layer, txt_in,
       final_layer_linear), lora_down / lora_up / alpha (rank 4, alpha 2).
  peft.safetensors: diffusers' / PEFT's layout, in diffusers' names under
       transformer. (lora_A / lora_B, no alpha: scale 1).
  golden.safetensors:
       kohya.out (2,12,64): the transformer on tests/data/chroma/golden's
         inputs with kohya.safetensors merged at strength 0.8, the merged
         weights rounded to float16 as the file stores them;
       peft.out: the transformer with peft.safetensors loaded by diffusers
         0.42.1 / PEFT 0.21.2 (load_lora_adapter, fused, then the weights rounded to
         float16 likewise).

Origin: torch; the kohya merge restated in the original names (W +=
strength * alpha / rank * up @ down), taken to diffusers' names row by row
through make_chroma_data.py's to_bfl (checked against diffusers'
converter); the PEFT one by PEFT itself. The transformer is run as
make_chroma_data.py runs it (ComfyUI's Chroma restated on diffusers').

Run from the repository root with diffusers 0.42.1, peft 0.21.2 and torch installed:
  python3 tests/data/chroma/make_chroma_lora_data.py
"""
import os
import sys

import torch
from diffusers import ChromaTransformer2DModel
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, os.path.join(DATA, "flux"))
from make_chroma_data import as_comfyui, to_bfl  # noqa: E402
from make_flux_lora_data import kohya_merge, low_rank  # noqa: E402
from sd_common import save_goldens  # noqa: E402

KOHYA_BFL = ["double_blocks.0.img_attn.qkv", "double_blocks.0.txt_mlp.0", "single_blocks.0.linear1",
             "single_blocks.1.linear2", "distilled_guidance_layer.layers.0.in_layer", "txt_in", "final_layer.linear"]
PEFT = ["transformer_blocks.0.attn.to_k", "single_transformer_blocks.1.proj_mlp",
        "distilled_guidance_layer.layers.1.linear_2", "context_embedder"]


def load_model():
    return ChromaTransformer2DModel.from_pretrained(f"{HERE}/transformer", torch_dtype=torch.float32).eval()


def transformer_out(model):
    g = load_file(f"{HERE}/golden.safetensors")
    as_comfyui(model, g["guidance"].tolist())
    with torch.no_grad():
        return model(hidden_states=g["packed"], encoder_hidden_states=g["context"], timestep=g["timestep"],
                     img_ids=g["img_ids"], txt_ids=g["txt_ids"], return_dict=False)[0]


def kohya(goldens):
    torch.manual_seed(43)
    sd = {k: v.float() for k, v in load_file(f"{HERE}/transformer/diffusion_pytorch_model.safetensors").items()}
    lora, merged = kohya_merge(sd, KOHYA_BFL, to_bfl)
    model = load_model()
    model.load_state_dict(merged)
    goldens["kohya.out"] = transformer_out(model)
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/kohya.safetensors")


def peft(goldens):
    torch.manual_seed(47)
    model = load_model()
    lora = {}
    for module in PEFT:
        w = model.get_submodule(module).weight
        up, down = low_rank(*w.shape)
        lora.update({f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": up})
    model.load_lora_adapter(dict(lora), prefix="transformer", adapter_name="test")
    model.fuse_lora(lora_scale=1.0, adapter_names=["test"])
    model.unload_lora()
    fused = {k: v.half().float() for k, v in model.state_dict().items()}
    model = load_model()
    model.load_state_dict(fused)
    goldens["peft.out"] = transformer_out(model)
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/peft.safetensors")


def main():
    os.makedirs(f"{HERE}/lora", exist_ok=True)
    want = load_file(f"{HERE}/golden.safetensors")["out"]
    plain = transformer_out(load_model())
    assert ((plain - want).norm() / want.norm()) < 1e-6, "the plain model runs as make_chroma_data.py's"
    goldens = {}
    kohya(goldens)
    peft(goldens)
    for k in ("kohya.out", "peft.out"):  # each LoRA changes the output
        assert ((goldens[k] - want).norm() / want.norm()) > 0.05, k
    save_goldens(goldens, f"{HERE}/lora/golden.safetensors")


if __name__ == "__main__":
    main()
