"""Copies the parity goldens kiln's tests use out of ../shared/goldens (not
shipped with kiln) into tests/data, keeping only the tensors the tests read.

Origin: every tensor was computed by upstream diffusers 0.27.2 / transformers
4.40 on PyTorch (CPU, float32); see ../shared/goldens/README.md.
Run from the repository root: python3 tests/data/make_parity_data.py
"""
import os
import shutil
import sys

from safetensors.numpy import load_file, save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
OUT = "tests/data"


def keep(src, dst, names=None):
    tensors = load_file(os.path.join(SHARED, src))
    if names is not None:
        tensors = {k: v for k, v in tensors.items() if k in names}
    os.makedirs(os.path.dirname(os.path.join(OUT, dst)), exist_ok=True)
    save_file(tensors, os.path.join(OUT, dst))


def main():
    # the tiny random SD 1.x checkpoint in both layouts, and its fp16 copy
    for name in ["sd15_tiny_ldm_fp32.safetensors", "sd15_tiny_ldm_fp16.safetensors", "tiny_info.json"]:
        shutil.copy(os.path.join(SHARED, "models", name), os.path.join(OUT, "tiny", name))
    dst = os.path.join(OUT, "tiny", "sd15_tiny_diffusers")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(os.path.join(SHARED, "models", "sd15_tiny_diffusers"), dst,
                    ignore=shutil.ignore_patterns("tokenizer", "scheduler"))
    # component goldens for the tiny model
    keep("diffusers/clip_text.safetensors", "tiny/clip_text.safetensors",
         {"input_ids", "last_hidden_state", "clip_skip2"})
    keep("diffusers/unet.safetensors", "tiny/unet.safetensors")
    keep("diffusers/vae.safetensors", "tiny/vae.safetensors",
         {"dec8.z", "dec8.image", "dec32.z", "dec32.image", "enc.image", "enc.mean", "enc.logvar"})
    # full-size SD 1.5 (hash-init weights) goldens, trimmed to what the slow tests compare
    keep("full/clip_text.safetensors", "full/clip_text.safetensors",
         {"input_ids", "last_hidden_state", "clip_skip2"})
    keep("full/unet.safetensors", "full/unet.safetensors",
         {"sample", "timesteps", "encoder_hidden_states", "noise_pred", "x.conv_in", "x.down_blocks.0",
          "x.down_blocks.1", "x.down_blocks.2", "x.down_blocks.3", "x.mid_block", "x.up_blocks.0",
          "x.up_blocks.1", "x.up_blocks.2", "x.up_blocks.3"})
    keep("full/vae.safetensors", "full/vae.safetensors", {"dec.z", "dec.image", "enc.image", "enc.mean", "enc.logvar"})


if __name__ == "__main__":
    sys.exit(main())
