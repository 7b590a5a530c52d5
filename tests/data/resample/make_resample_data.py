"""Writes tests/data/resample/golden.safetensors: ComfyUI's LatentUpscaleBy
on a random latent, as torch computes it.

Origin: PyTorch (CPU, float32) torch.nn.functional.interpolate with each
method and no align_corners, at the sizes LatentUpscaleBy asks for
(round(side * scale), Python's round), as ComfyUI's common_upscale calls it
with crop "disabled".

  latent                      (2,4,7,9) random normal
  <method>.<scale>            the latent resized, for nearest-exact, bilinear
                              and bicubic at scales 1.5 (7x9 -> 10x14: both
                              halves round to even), 2 and 0.75

Run from the repository root: python3 tests/data/resample/make_resample_data.py
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def main():
    torch.manual_seed(1127)
    latent = torch.randn(2, 4, 7, 9)
    out = {"latent": latent}
    for method in ["nearest-exact", "bilinear", "bicubic"]:
        for scale in [1.5, 2.0, 0.75]:
            size = (round(latent.shape[2] * scale), round(latent.shape[3] * scale))
            out[f"{method}.{scale}"] = F.interpolate(latent, size=size, mode=method)
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/resample/golden.safetensors")
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
