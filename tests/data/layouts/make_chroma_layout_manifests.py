"""Writes kiln's layout manifests for Chroma (lodestones/Chroma1-HD): the
name, dtype and shape of every tensor of its transformer, so that a test can
write a sparse file with exactly those tensors and check kiln's binding
against the real layout without shipping gigabytes of weights.

Origin: diffusers 0.42.1 on PyTorch, the module built on the meta device
(nothing is allocated) with ChromaTransformer2DModel's defaults, which are
Chroma1-HD's published transformer/config.json: 19 double and 38 single
blocks of 24 heads of 128, joint_attention_dim 4096, axes 16, 56, 56, an
approximator of 64 in, 5120 wide, 5 layers.

  chroma1_hd_transformer.json: transformer/ in diffusers' names
  chroma1_hd.json: the same tensors as the original single file names them
       (Chroma1-HD.safetensors, ComfyUI's UNETLoader file), renamed by
       tests/data/chroma/make_chroma_data.py's to_bfl, which that script
       checks against diffusers' converter
  The text encoder is T5 v1.1 XXL (t5_v1_1_xxl.json) and the VAE FLUX.1's
  (flux_vae.json), both from make_dit_layout_manifests.py.

Run from the repository root with diffusers 0.42.1 and torch installed:
  python3 tests/data/layouts/make_chroma_layout_manifests.py
"""
import os
import sys

import torch
from diffusers import ChromaTransformer2DModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chroma"))
from make_chroma_data import to_bfl  # noqa: E402
from make_dit_layout_manifests import write  # noqa: E402


def main():
    with torch.device("meta"):
        chroma = ChromaTransformer2DModel()
    state = chroma.state_dict()
    write("chroma1_hd_transformer", state, "BF16", "lodestones/Chroma1-HD transformer/")
    write("chroma1_hd", to_bfl(state), "BF16", "lodestones/Chroma1-HD Chroma1-HD.safetensors")
    print("parameters", sum(v.numel() for v in state.values()))


if __name__ == "__main__":
    main()
