"""Writes tests/data/flux/single/t5_fp8_scaled.safetensors and its golden:
the tiny T5 of tests/data/pixart/tiny/text_encoder as ComfyUI's
"scaled fp8" text encoder files store T5-XXL (t5xxl_fp8_e4m3fn_scaled):
every linear weight in float8_e4m3fn divided by a per-tensor float32
`<layer>.scale_weight` (here its largest magnitude / 448), a `scaled_fp8`
marker tensor, everything else as it was (float16).

  t5_fp8_scaled.golden.safetensors: t5.ids (1,256): the run prompt's T5 ids
       of tests/data/flux/run.golden; t5.out (1,256,64): T5EncoderModel's
       last hidden state with every weight dequantized as ComfyUI does
       (weight.float() * scale_weight), then rounded to float16 (kiln keeps
       the dequantized weights in float16).

Origin: torch, transformers. Run from the repository root:
  python3 tests/data/flux/make_flux_fp8_data.py
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
T5 = os.path.join(os.path.dirname(HERE), "pixart", "tiny", "text_encoder")


def main():
    sd = load_file(f"{T5}/model.safetensors")
    stored, dequantized = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, {}
    for k, v in sd.items():
        if v.ndim == 2 and k != "shared.weight":  # the linears; the token table stays
            scale = (v.float().abs().max() / 448.0).reshape(())
            q = (v.float() / scale).to(torch.float8_e4m3fn)
            stored[k], stored[k[: -len("weight")] + "scale_weight"] = q, scale
            dequantized[k] = (q.float() * scale).half()
        else:
            stored[k] = v
            dequantized[k] = v
    save_file(stored, f"{HERE}/single/t5_fp8_scaled.safetensors")
    t5 = T5EncoderModel.from_pretrained(T5).eval()
    missing, unexpected = t5.load_state_dict({k: v.float() for k, v in dequantized.items()}, strict=False)
    assert not unexpected and all("embed_tokens" in k for k in missing), (missing, unexpected)
    ids = load_file(f"{HERE}/run.golden.safetensors")["run.t5_ids.positive"].long()
    with torch.no_grad():
        out = t5(input_ids=ids).last_hidden_state
    save_file({"t5.ids": ids.int().contiguous(), "t5.out": out.contiguous()},
              f"{HERE}/single/t5_fp8_scaled.golden.safetensors")


if __name__ == "__main__":
    main()
