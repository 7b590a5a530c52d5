"""Writes a Flux transformer of FLUX.1's width (3072, 24 heads of 128) but
1 double and 2 single blocks, random weights, three ways: f16 safetensors
(BFL's names, as flux1-dev.safetensors), and GGUF Q8_0 and Q4_0 as
ComfyUI-GGUF's convert.py lays them out (vectors F32, the input, embedding
and final layers F16, the rest quantized by gguf-py), with a config folder
(tests/data/flux/tiny's, the transformer's shape changed) for the tiny
CLIP, T5 and VAE. For bench: what kiln holds and how fast it steps with
each, side by side (bench/RESULTS.md, session 28).

Usage: python3 bench/gguf_flux_model.py OUT_DIR   (gguf-py, numpy, safetensors)
"""
import json
import shutil
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file, save_file

DATA = f"{sys.path[0]}/../tests/data"
D, HEAD = 3072, 128
# tiny (32-wide) dims that do not scale with the width: inputs of the
# embedders (256 timestep frequencies, 64 latent channels, the tiny T5's 64
# and CLIP's 32) and the output's channels
FIXED = {"time_in.in_layer": 1, "guidance_in.in_layer": 1, "img_in": 1, "txt_in": 1, "vector_in.in_layer": 1,
         "final_layer.linear": 0}
KEPT = ("img_in", "txt_in", "time_in", "vector_in", "guidance_in", "final_layer")


def full_shape(name, tiny_shape):
    if name.endswith("norm.scale"):
        return (HEAD,)
    fixed = next((axis for part, axis in FIXED.items() if name.startswith(part + ".")), None)
    return tuple(n if i == fixed else n // 32 * D for i, n in enumerate(tiny_shape))


def main(out):
    tiny = load_file(f"{DATA}/flux/single/flux1-tiny.safetensors")
    rng = np.random.default_rng(0)
    weights = {}
    for name, t in tiny.items():
        if name.startswith("single_blocks.") and int(name.split(".")[1]) >= 2:
            continue
        shape = full_shape(name, t.shape)
        if name.endswith("norm.scale"):
            weights[name] = np.ones(shape, np.float16)
        else:
            scale = 1.0 / np.sqrt(shape[-1]) if len(shape) == 2 else 0.02
            weights[name] = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float16)
    save_file(weights, f"{out}/flux-f16.safetensors")
    for qtype in (Q.Q8_0, Q.Q4_0):
        w = gguf.GGUFWriter(f"{out}/flux-{qtype.name}.gguf", "flux")
        for name, t in weights.items():
            if t.ndim == 1:
                w.add_tensor(name, t.astype(np.float32), raw_dtype=Q.F32)
            elif name.split(".")[0] in KEPT:
                w.add_tensor(name, t, raw_dtype=Q.F16)
            else:
                w.add_tensor(name, gguf.quants.quantize(t.astype(np.float32), qtype), raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    shutil.copytree(f"{DATA}/flux/tiny", f"{out}/cfg", dirs_exist_ok=True)
    with open(f"{out}/cfg/transformer/config.json") as f:
        config = json.load(f)
    config.update(attention_head_dim=HEAD, num_attention_heads=D // HEAD, axes_dims_rope=[16, 56, 56])
    with open(f"{out}/cfg/transformer/config.json", "w") as f:
        json.dump(config, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
