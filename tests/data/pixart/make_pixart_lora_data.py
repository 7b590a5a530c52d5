"""Writes tests/data/pixart/lora: a LoRA for the tiny PixArt model of
tests/data/pixart in diffusers' / PEFT's layout (what PixArt LoRAs are
shared in) and what the model computes with it merged.

  peft.safetensors: lora_A / lora_B under transformer. in diffusers' names
       (rank 4, no alpha: scale 1) on self- and cross-attention projections,
       a feed-forward output, the caption projection and the timestep
       embedding's adaLN-single linear.
  golden.safetensors: tests/data/pixart/golden's T5 rows and DiT inputs as
       they are, and dit.out: the DiT with the LoRA injected and merged by
       PEFT 0.13.2 (diffusers 0.32.2 has no LoRA loader for PixArt's model),
       the weights then rounded to float16 as the tiny model's file stores
       them.

Run from the repository root with diffusers 0.32.2, peft 0.13.2 and torch:
  python3 tests/data/pixart/make_pixart_lora_data.py
"""
import os

import torch
from diffusers import PixArtTransformer2DModel
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ["transformer_blocks.0.attn1.to_q", "transformer_blocks.1.attn2.to_v", "transformer_blocks.0.ff.net.2",
           "caption_projection.linear_1", "adaln_single.linear"]
KEPT = ["t5.ids.0", "t5.ids.1", "t5.ids.2", "t5.out.0", "t5.out.1", "t5.out.2", "dit.sample", "dit.timestep",
        "dit.context.0", "dit.context.1", "dit.resolution", "dit.aspect_ratio"]


def dit_out(dit, g):
    contexts = [g["dit.context.0"], g["dit.context.1"]]
    T = max(c.shape[1] for c in contexts)
    context, mask = torch.zeros(2, T, contexts[0].shape[2]), torch.zeros(2, T)
    for i, c in enumerate(contexts):
        context[i, :c.shape[1]] = c[0]
        mask[i, :c.shape[1]] = 1
    with torch.no_grad():
        return dit(g["dit.sample"], encoder_hidden_states=context, timestep=g["dit.timestep"],
                   encoder_attention_mask=mask,
                   added_cond_kwargs={"resolution": g["dit.resolution"], "aspect_ratio": g["dit.aspect_ratio"]},
                   return_dict=False)[0]


def main():
    g = load_file(f"{HERE}/golden.safetensors")
    dit = PixArtTransformer2DModel.from_pretrained(f"{HERE}/tiny/transformer").eval()
    plain = dit_out(dit, g)
    assert (plain - g["dit.out"]).norm() / g["dit.out"].norm() < 1e-6, "diffusers 0.32 runs it as 0.27 did"
    torch.manual_seed(37)
    lora = {}
    for module in MODULES:
        rows, cols = dit.get_submodule(module).weight.shape
        up = (torch.randn(rows, 4) * 0.3).half().float()
        down = (torch.randn(4, cols) / cols ** 0.5).half().float()
        lora.update({f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": up})
    # diffusers 0.32 has no LoRA loader for PixArt's model: PEFT's own injection, then its merge
    config = LoraConfig(r=4, lora_alpha=4, target_modules=MODULES)
    tuned = inject_adapter_in_model(config, PixArtTransformer2DModel.from_pretrained(f"{HERE}/tiny/transformer"))
    set_peft_model_state_dict(tuned, {k[len("transformer."):]: v for k, v in lora.items()})
    for m in tuned.modules():
        if isinstance(m, BaseTunerLayer):
            m.merge()
    merged = {k.replace(".base_layer.", "."): v for k, v in tuned.state_dict().items() if "lora_" not in k}
    dit.load_state_dict({k: v.half().float() for k, v in merged.items()})
    out = dit_out(dit, g)
    assert (out - plain).norm() / plain.norm() > 0.05, "the LoRA changes the output"
    os.makedirs(f"{HERE}/lora", exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in lora.items()}, f"{HERE}/lora/peft.safetensors")
    kept = {k: g[k].contiguous() for k in KEPT}
    kept["dit.out"] = out.contiguous()
    save_file(kept, f"{HERE}/lora/golden.safetensors")


if __name__ == "__main__":
    main()
