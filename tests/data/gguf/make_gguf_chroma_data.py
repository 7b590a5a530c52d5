"""Writes tests/data/gguf/chroma-tiny-Q8_0.gguf: the transformer of
tests/data/chroma/single/chroma-tiny (the original names, bare, as
ComfyUI-GGUF's convert.py writes a Chroma file; architecture "chroma") with
make_gguf_data.py's types for Flux (one-dimensional tensors and those of at
most 1024 values F32, the input, embedding and final layers BF16, the rest
Q8_0, but BF16 where a row is no whole Q8_0 blocks), and golden.safetensors' chroma.out: diffusers' ChromaTransformer2DModel
(as make_chroma_data.py runs it) on tests/data/chroma/golden's inputs with
the weights as gguf-py dequantizes them, in float32 as kiln widens the Q8_0
blocks it keeps, taken back to diffusers' names row by row.

Origin: gguf-py 0.19.0, diffusers 0.42.1, torch.

Run from the repository root (after make_gguf_data.py, whose golden file
this adds to):
  python3 tests/data/gguf/make_gguf_chroma_data.py
"""
import os
import sys

import gguf
import torch
from diffusers import ChromaTransformer2DModel
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
CHROMA = os.path.join(DATA, "chroma")
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, CHROMA)
sys.path.insert(0, os.path.join(DATA, "flux"))
from make_chroma_data import as_comfyui, to_bfl  # noqa: E402
from make_gguf_data import Q, add_quantized, flux_type, read_back_as_diffusers, write  # noqa: E402
from sd_common import save_goldens  # noqa: E402


def chroma_type(name, t):
    """flux_type, but BF16 where a row is no whole Q8_0 blocks (the tiny
    approximator's 48-wide rows)."""
    kind = flux_type(name, t)
    return Q.BF16 if kind == Q.Q8_0 and t.shape[-1] % 32 else kind


def main():
    bfl = load_file(f"{CHROMA}/single/chroma-tiny.safetensors")
    w = gguf.GGUFWriter(f"{HERE}/chroma-tiny-Q8_0.gguf", "chroma")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    read_back = {k: add_quantized(w, k, v, chroma_type(k, v)) for k, v in bfl.items()}
    write(w)
    diffusers_sd = load_file(f"{CHROMA}/transformer/diffusion_pytorch_model.safetensors")
    state = read_back_as_diffusers(diffusers_sd, read_back, to_bfl)
    for k in state:  # biases and norms: F32, as stored
        if not k.endswith(".weight") or state[k].ndim == 1:
            assert torch.equal(state[k], diffusers_sd[k].float()), k
    model = ChromaTransformer2DModel.from_pretrained(f"{CHROMA}/transformer", torch_dtype=torch.float32).eval()
    model.load_state_dict(state)
    g = load_file(f"{CHROMA}/golden.safetensors")
    as_comfyui(model, g["guidance"].tolist())
    with torch.no_grad():
        out = model(hidden_states=g["packed"], encoder_hidden_states=g["context"], timestep=g["timestep"],
                    img_ids=g["img_ids"], txt_ids=g["txt_ids"], return_dict=False)[0]
    assert (out - g["out"]).norm() / g["out"].norm() > 1e-4, "Q8_0 changes the output"
    goldens = dict(load_file(f"{HERE}/golden.safetensors"))
    goldens["chroma.out"] = out
    save_goldens(goldens, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
