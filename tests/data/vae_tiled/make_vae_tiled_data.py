"""Writes kiln's VAEDecodeTiled and VAEEncodeTiled test data: a latent and
a picture for the tiny SD 1.x model's VAE and what ComfyUI's tiled decode
and encode make of them.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32): the tiny model's
AutoencoderKL decoder (the shared goldens' sd15_tiny_diffusers/vae) run
over tiles as ComfyUI's VAE.decode_tiled_ runs its decoder (comfy/sd.py),
restated here: comfy.utils.tiled_scale_multidim over three tilings (tile_x
// 2 by tile_y * 2, tile_x * 2 by tile_y // 2, tile_x by tile_y, in
latent pixels, overlapping by `overlap`), the three averaged, then
process_output ((x + 1) / 2 clamped to [0, 1]); and as its encode_tiled_
runs the encoder (process_input 2x - 1, the latent's mean as ComfyUI's
regularizer gives it): tiled_scale with upscale_amount 1/2 over tile_x by
tile_y, tile_x * 2 by tile_y // 2 and tile_x // 2 by tile_y * 2 pixels, summed
in that order and divided by 3. The tiny VAE halves a side.

  golden.safetensors
      latent (1,4,20,13): random, unscaled (what the decoder takes)
      tile (2): tile_x, tile_y = 8, 8; overlap (1): 2
      image (1,3,40,26): the tiled decode in [0, 1]
      whole (1,3,40,26): the plain decode in [0, 1], for scale
      pixels (1,3,40,26): a random picture in [0, 1]; encode.tile (1), 16, and
      encode.overlap (1), 4, in pixels; encoded (1,4,20,13): the tiled encode;
      encoded.whole: the plain encode, for scale

Run from the repository root with torch and diffusers installed and the
project's shared goldens at ../shared/goldens:
  python3 tests/data/vae_tiled/make_vae_tiled_data.py
"""
import itertools
import os

import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/vae_tiled"
TILE_X, TILE_Y, OVERLAP, UPSCALE = 8, 8, 2, 2


def tiled_scale(samples, function, tile_x, tile_y, overlap, upscale, out_channels=3):
    """ComfyUI's tiled_scale: tiles at 0, step, ... below the side minus the
    overlap (cut at the edge), each output weighted by a ramp of
    round(overlap * upscale) pixels at its edges, sums over weights; a
    latent that fits in one tile goes through whole."""
    tile = (tile_y, tile_x)
    out_shape = [samples.shape[0], out_channels] + [round(s * upscale) for s in samples.shape[2:]]
    output = torch.empty(out_shape)
    for b in range(samples.shape[0]):
        s = samples[b:b + 1]
        if all(s.shape[d + 2] <= tile[d] for d in range(2)):
            output[b:b + 1] = function(s)
            continue
        out = torch.zeros([1] + out_shape[1:])
        out_div = torch.zeros([1] + out_shape[1:])
        positions = [range(0, s.shape[d + 2] - overlap, tile[d] - overlap) if s.shape[d + 2] > tile[d] else [0]
                     for d in range(2)]
        for it in itertools.product(*positions):
            s_in, at = s, []
            for d in range(2):
                pos = max(0, min(s.shape[d + 2] - overlap, it[d]))
                length = min(tile[d], s.shape[d + 2] - pos)
                s_in = s_in.narrow(d + 2, pos, length)
                at.append(round(pos * upscale))
            ps = function(s_in)
            mask = torch.ones_like(ps)
            feather = round(overlap * upscale)
            for d in range(2, 4):
                if feather >= mask.shape[d]:
                    continue
                for t in range(feather):
                    a = (t + 1) / feather
                    mask.narrow(d, t, 1).mul_(a)
                    mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(a)
            o = out.narrow(2, at[0], mask.shape[2]).narrow(3, at[1], mask.shape[3])
            od = out_div.narrow(2, at[0], mask.shape[2]).narrow(3, at[1], mask.shape[3])
            o.add_(ps * mask)
            od.add_(mask)
        output[b:b + 1] = out / out_div
    return output


def main():
    os.makedirs(OUT, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(MODEL, subfolder="vae").eval()
    latent = torch.from_numpy(np.random.default_rng(11).standard_normal((1, 4, 20, 13)).astype(np.float32))

    def decode(a):
        return vae.decode(a).sample

    with torch.no_grad():
        raw = (tiled_scale(latent, decode, TILE_X // 2, TILE_Y * 2, OVERLAP, UPSCALE)
               + tiled_scale(latent, decode, TILE_X * 2, TILE_Y // 2, OVERLAP, UPSCALE)
               + tiled_scale(latent, decode, TILE_X, TILE_Y, OVERLAP, UPSCALE)) / 3.0
        image = torch.clamp((raw + 1.0) / 2.0, 0.0, 1.0)
        whole = torch.clamp((decode(latent) + 1.0) / 2.0, 0.0, 1.0)
    pixels = torch.from_numpy(np.random.default_rng(12).random((1, 3, 40, 26), dtype=np.float32))

    def encode(a):
        return vae.encode(2.0 * a - 1.0).latent_dist.mean

    tile, overlap = 16, 4
    with torch.no_grad():
        encoded = tiled_scale(pixels, encode, tile, tile, overlap, 1 / UPSCALE, 4)
        encoded += tiled_scale(pixels, encode, tile * 2, tile // 2, overlap, 1 / UPSCALE, 4)
        encoded += tiled_scale(pixels, encode, tile // 2, tile * 2, overlap, 1 / UPSCALE, 4)
        encoded /= 3.0
        encoded_whole = encode(pixels)
    save_file({"latent": latent, "tile": torch.tensor([float(TILE_X), float(TILE_Y)]),
               "overlap": torch.tensor([float(OVERLAP)]), "image": image.contiguous(), "whole": whole.contiguous(),
               "pixels": pixels, "encode.tile": torch.tensor([float(tile)]),
               "encode.overlap": torch.tensor([float(overlap)]), "encoded": encoded.contiguous(),
               "encoded.whole": encoded_whole.contiguous()},
              f"{OUT}/golden.safetensors")
    print("encode tiled vs whole:", float((encoded - encoded_whole).norm() / encoded_whole.norm()))
    print("tiled vs whole:", float((image - whole).norm() / whole.norm()))


if __name__ == "__main__":
    main()
