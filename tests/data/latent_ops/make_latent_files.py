"""Writes two .latent files as ComfyUI writes and reads them, for kiln's
SaveLatent/LoadLatent tests.

  comfyui.latent  SaveLatent's layout: latent_tensor (2,4,3,5) float32 and
                  an empty latent_format_version_0, saved by safetensors'
                  torch save_file as comfy.utils.save_torch_file saves it
  old.latent      a file from before the version key: latent_tensor alone,
                  float16
  latent_files.safetensors
                  comfyui / old: what ComfyUI's LoadLatent returns for each
                  (samples.float() * multiplier, 1 / 0.18215 for the old one)

Run from the repository root with torch and safetensors installed:
  python3 tests/data/latent_ops/make_latent_files.py
"""
import torch
from safetensors.torch import load_file, save_file

OUT = "tests/data/latent_ops"


def load_latent(path):
    """ComfyUI's LoadLatent.load, restated."""
    latent = load_file(path, device="cpu")
    multiplier = 1.0
    if "latent_format_version_0" not in latent:
        multiplier = 1.0 / 0.18215
    return latent["latent_tensor"].float() * multiplier


def main():
    g = torch.Generator().manual_seed(25)
    samples = torch.randn(2, 4, 3, 5, generator=g)
    save_file({"latent_tensor": samples.contiguous(), "latent_format_version_0": torch.tensor([])},
              f"{OUT}/comfyui.latent", metadata={"prompt": "{}"})
    save_file({"latent_tensor": (samples * 0.18215).half().contiguous()}, f"{OUT}/old.latent")
    save_file({"comfyui": load_latent(f"{OUT}/comfyui.latent"), "old": load_latent(f"{OUT}/old.latent")},
              f"{OUT}/latent_files.safetensors")


if __name__ == "__main__":
    main()
