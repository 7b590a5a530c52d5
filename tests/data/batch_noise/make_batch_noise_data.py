"""ComfyUI's noise for a LATENT with a batch_index (LatentFromBatch's,
RepeatLatentBatch's after it): comfy/sample.py's prepare_noise restated with
torch (CPU generator): one randn of one image's shape per index up to the
largest, each image taking its index's draw. Not the batch's one randn: for
an image size that 16 does not divide, torch's block path differs.

Writes tests/data/batch_noise/batch_noise.safetensors (read by tests/test_rng.c):
  <case>.noise   the noise, (batch * per_image) floats
  <case>.index   I32 (batch) the batch_index
  <case>.shape   I32 [batch, channels, height, width]
  <case>.seed    I64 [1]
Cases: odd (4x3x5 images: 60 values, not a multiple of 16; index 2, 0, 2),
even (4x4x4: 64 values; index 1, 3), small (1x2x3: 6 values, the scalar
path; index 0, 4).

Run from the repository root: python3 tests/data/batch_noise/make_batch_noise_data.py
"""
import numpy as np
import torch
from safetensors.torch import save_file

OUT = "tests/data/batch_noise/batch_noise.safetensors"


def prepare_noise(shape, seed, noise_inds):
    generator = torch.manual_seed(seed)
    unique_inds, inverse = np.unique(noise_inds, return_inverse=True)
    noises = []
    for i in range(unique_inds[-1] + 1):
        noise = torch.randn([1] + list(shape)[1:], dtype=torch.float32, layout=torch.strided, generator=generator,
                            device="cpu")
        if i in unique_inds:
            noises.append(noise)
    noises = [noises[i] for i in inverse]
    return torch.cat(noises, axis=0)


def main():
    cases = {"odd": ([3, 4, 3, 5], 42, [2, 0, 2]), "even": ([2, 4, 4, 4], 7, [1, 3]),
             "small": ([2, 1, 2, 3], 5, [0, 4])}
    out = {}
    for name, (shape, seed, index) in cases.items():
        out[f"{name}.noise"] = prepare_noise(shape, seed, index).reshape(-1)
        out[f"{name}.index"] = torch.tensor(index, dtype=torch.int32)
        out[f"{name}.shape"] = torch.tensor(shape, dtype=torch.int32)
        out[f"{name}.seed"] = torch.tensor([seed], dtype=torch.int64)
    save_file(out, OUT)


if __name__ == "__main__":
    main()
