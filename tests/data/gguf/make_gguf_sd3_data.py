"""Writes tests/data/gguf/sd3*: the tiny SD3 transformer as a ComfyUI-GGUF
(city96) file, and what it computes.

  sd3-tiny-Q8_0.gguf: tests/data/sd3/single/sd3-tiny-transformer.safetensors
       (tiny_sd3/'s SD 3.0 Medium shaped MMDiT in Stability's names, bare) as
       ComfyUI-GGUF's tools/convert.py and its patched llama-quantize write
       an "sd3" file: the names as they are, architecture "sd3",
       general.quantization_version and general.file_type (MOSTLY_Q8_0), from
       float32 (the file's float16 values widened, losslessly), with the
       choices make_gguf_data.py made for flux1-tiny-Q8_0.gguf:
         one-dimensional tensors and those of at most 1024 values in F32
           (convert.py's QUANTIZATION_THRESHOLD; here the biases, the
           (32, 32) attn.proj and t/y_embedder.mlp.2 weights);
         the layers llama-quantize's sd3 rules keep out of quantization
           (names with x_embedder., t_embedder., y_embedder.,
           context_embedder., final_layer., and pos_embed) in F16, convert.py's
           type for a float16 or float32 source (BF16 is a bfloat16 source's);
           pos_embed keeps its three dims (1, 64, 32), as the patched
           llama-quantize restores them, and the x_embedder.proj convolution
           its four (32, 16, 2, 2): an "sd3" file is never reshaped
           (no comfy.gguf.orig_shape) and 3-D/4-D tensors are never quantized;
         the other two-dimensional weights (adaLN_modulation.1, attn.qkv,
           mlp.fc1, mlp.fc2 of the joint blocks; rows of 32 or 128 values,
           whole Q8_0 blocks) in Q8_0.
  sd3.golden.safetensors:
       sd3.out (2,16,8,6): diffusers' SD3Transformer2DModel (the config of
         tests/data/sd3/tiny_sd3/transformer) with the weights of
         sd3-tiny-Q8_0.gguf as gguf-py reads and dequantizes them (GGUFReader,
         gguf.quants.dequantize; float32, as kiln widens the Q8_0 blocks it
         keeps), taken to diffusers' names by diffusers' own
         convert_sd3_transformer_checkpoint_to_diffusers, on
         tests/data/sd3/golden.safetensors' sd3.sample, sd3.context,
         sd3.pooled, sd3.timestep. The script prints its largest difference
         from that file's sd3.out (the float16 weights unquantized): 4.33,
         of outputs up to 37.7 (std 9.8); each Q8_0 weight is off by about
         0.5% (root mean square, relative), and this tiny random model
         amplifies that, up to 2.7 at the output from one weight alone.

Origin: numpy, gguf-py 0.19.0 (GGUFWriter, GGUFReader, quants), torch,
diffusers 0.32.2; the rules restate ComfyUI-GGUF's tools/convert.py and
tools/lcpp.patch (its img_tensor_get_type and LLM_ARCH_SD3 rules) as
make_gguf_data.py does. Uses make_gguf_data.py's add_quantized and write.
Run from the repository root (after tests/data/sd3/make_sd3_single_data.py):
  python3 tests/data/gguf/make_gguf_sd3_data.py
"""
import json
import os
import sys

import gguf
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
SD3 = os.path.join(DATA, "sd3")
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
from make_gguf_data import add_quantized, write  # noqa: E402
from sd_common import save_goldens  # noqa: E402

# llama-quantize's LLM_ARCH_SD3 rules (ComfyUI-GGUF's tools/lcpp.patch): names never quantized
SD3_KEEP = ("final_layer.", "time_text_embed.", "context_embedder.", "t_embedder.", "y_embedder.", "x_embedder.")
SD3_KEEP_EXACT = ("proj_out.weight", "pos_embed")


def sd3_type(name, t):
    if t.ndim == 1 or t.numel() <= 1024:
        return Q.F32
    if any(part in name for part in SD3_KEEP) or name in SD3_KEEP_EXACT:
        return Q.F16
    if t.ndim == 2 and t.shape[-1] % 32 == 0:
        return Q.Q8_0
    return Q.F16


def read_gguf(path):
    """Each tensor of a GGUF file as gguf-py reads it, in float32, in its
    own (numpy-order) shape; and the file's metadata keys."""
    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = (t.tensor_type, torch.from_numpy(x.reshape(shape).copy()).float())
    return out, [f.name for f in reader.fields.values()]


def main():
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
    mmdit = load_file(f"{SD3}/single/sd3-tiny-transformer.safetensors")
    assert all(v.dtype == torch.float16 for v in mmdit.values())
    path = f"{HERE}/sd3-tiny-Q8_0.gguf"
    w = gguf.GGUFWriter(path, "sd3")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    written = {k: add_quantized(w, k, v.float(), sd3_type(k, v)) for k, v in mmdit.items()}
    write(w)

    read_back, keys = read_gguf(path)
    assert set(read_back) == set(mmdit)
    for k, (qtype, x) in read_back.items():
        assert qtype == sd3_type(k, mmdit[k]) and x.shape == mmdit[k].shape, k
        assert torch.equal(x, written[k]), k
        if qtype != Q.Q8_0:
            assert torch.equal(x, mmdit[k].float()), k  # F32 / F16 of float16 values: exact
        print(f"{k:55s} {qtype.name:5s} {tuple(x.shape)}")
    print("metadata:", keys)

    with open(f"{SD3}/tiny_sd3/transformer/config.json") as f:
        config = json.load(f)
    model = SD3Transformer2DModel.from_config(config).eval()
    left = {k: x for k, (_, x) in read_back.items()}
    state = convert_sd3_transformer_checkpoint_to_diffusers(left)
    assert not left, sorted(left)
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    g = load_file(f"{SD3}/golden.safetensors")
    with torch.no_grad():
        out = model(hidden_states=g["sd3.sample"].clone(), encoder_hidden_states=g["sd3.context"].clone(),
                    pooled_projections=g["sd3.pooled"].clone(), timestep=g["sd3.timestep"].clone()).sample
    print("max |sd3.out - golden sd3.out| (Q8_0 vs float16 weights):", (out - g["sd3.out"]).abs().max().item())
    save_goldens({"sd3.out": out}, f"{HERE}/sd3.golden.safetensors")


if __name__ == "__main__":
    main()
