"""Writes kiln's test data for Flux inpainting ControlNets of Alimama's kind
(alimama-creative/FLUX.1-dev-Controlnet-Inpainting: a FluxControlNetModel
whose controlnet_x_embedder reads the picture's latent and a mask, 17
channels in 2x2 patches, 68 wide) for the tiny transformer of
tests/data/flux/controlnet, and what upstream computes with it.

Origin: diffusers 0.32.2's FluxControlNetModel on PyTorch (CPU, float32)
with its controlnet_x_embedder made 68 wide (its forward adds that linear's
output of the packed hint whatever its width), the ControlNet's residuals
taken by the transformer as make_flux_controlnet_data.py's with_controls
does; ComfyUI's ControlNetInpaintingAliMamaApply restated for the hint: the
mask inverted (1 repaints -> 0), the picture times that mask stretched to it
(bilinear, centre crop) and rounded, the picture's latent (the VAE's mean,
process_in) and the inverted mask resized to the latent (nearest-exact,
centre crop) as the 17th channel.

  flux/controlnet/alimama/  FluxControlNetModel (2 double, 2 single
       blocks, no union modes; controlnet_x_embedder 68 wide):
       config.json, diffusion_pytorch_model.safetensors (f16)
  flux/controlnet/mask_16x12.png  a mask for latent_hint_16x12.png (its red
       channel: white repaints), with values around one half;
       mask_20x10.png one of another size and shape
  flux/controlnet/alimama.golden.safetensors
       alimama.hint (2,12,68): a packed hint of 17 channels;
         alimama.double.N, alimama.single.N (2,12,32): its residuals at
         scale 0.7 on golden.safetensors' inputs; alimama.out (2,12,64): the
         transformer with them;
       hint_latent (1,17,8,6): ControlNetInpaintingAliMamaApply's hint of
         latent_hint_16x12.png and mask_16x12.png for an 8x6 latent;
         hint_latent.wide_mask: the same with mask_20x10.png (ComfyUI's
         common_upscale: bilinear to the picture, rounded, for the picture;
         nearest-exact to the latent for the channel; both cut centred)

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_controlnet_data.py):
  python3 tests/data/flux/make_flux_alimama_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, FluxControlNetModel, FluxTransformer2DModel
from PIL import Image
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from make_flux_canny_data import image_ids, pack  # noqa: E402
from make_flux_controlnet_data import INSTANTX, OUT, mapped, residuals, with_controls  # noqa: E402
from sd_common import PT, comfy_fit, randomize, save_goldens, save_half, write_json  # noqa: E402

ALIMAMA = {k: v for k, v in INSTANTX.items() if k != "num_mode"}


def make_model():
    torch.manual_seed(61)
    net = FluxControlNetModel(**ALIMAMA).eval()
    net.controlnet_x_embedder = torch.nn.Linear(4 * 17, net.controlnet_x_embedder.out_features)
    randomize(net, table=lambda name: False)
    os.makedirs(f"{OUT}/alimama", exist_ok=True)
    save_half(net.state_dict(), f"{OUT}/alimama/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxControlNetModel", **ALIMAMA, "extra_condition_channels": 4},
               f"{OUT}/alimama/config.json")
    # the f16-rounded weights, in f32
    state = load_file(f"{OUT}/alimama/diffusion_pytorch_model.safetensors")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def hint_latent(picture, mask, h, w):
    """ControlNetInpaintingAliMamaApply's hint for an h x w latent of the tiny VAE (which halves a side)."""
    vae = AutoencoderKL.from_pretrained(f"{HERE}/tiny/vae").eval()
    inverted = 1.0 - mask  # (1,1,H,W): 1 keeps
    kept = picture * torch.round(comfy_fit(inverted, picture.shape[-1], picture.shape[-2], "bilinear"))
    kept = comfy_fit(kept, 2 * w, 2 * h)
    with torch.no_grad():
        latent = (vae.encode(kept * 2 - 1).latent_dist.mean - 0.1159) * 0.3611  # process_in
    return torch.cat([latent, comfy_fit(inverted, w, h)], dim=1)


def main():
    net = make_model()
    flux = FluxTransformer2DModel.from_pretrained(f"{OUT}/transformer").eval()
    g = load_file(f"{OUT}/golden.safetensors")
    B, H, W = 2, 8, 6
    inputs = dict(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                  timestep=g["timestep"], img_ids=image_ids(H, W), txt_ids=torch.zeros(g["context"].shape[1], 3),
                  guidance=g["guidance"])
    torch.manual_seed(67)
    hint = pack(torch.randn(B, 17, H, W))
    d, s = residuals(net, 0.7, hint, **inputs)
    out = with_controls(flux, mapped(d, 3, False), mapped(s, 4, False), **inputs)
    with torch.no_grad():
        theirs = flux(**inputs, controlnet_block_samples=d, controlnet_single_block_samples=s, return_dict=False)[0]
    assert torch.allclose(out, theirs, atol=1e-6), "the hooks differ from diffusers' controlnet samples"
    k = {"alimama.hint": hint, "alimama.out": out}
    k.update({f"alimama.double.{i}": x for i, x in enumerate(d)})
    k.update({f"alimama.single.{i}": x for i, x in enumerate(s)})

    rng = np.random.default_rng(71)
    red = rng.choice(np.array([0, 0, 255, 255, 127, 128, 200, 40], dtype=np.uint8), size=(2 * H, 2 * W))
    Image.fromarray(np.stack([red, rng.integers(0, 256, red.shape, dtype=np.uint8), red], -1), "RGB").save(
        f"{OUT}/mask_16x12.png")
    picture = torch.from_numpy(np.asarray(Image.open(f"{OUT}/latent_hint_16x12.png").convert("RGB")).copy())
    picture = picture.permute(2, 0, 1)[None].float() / 255.0
    mask = torch.from_numpy(red.astype(np.float32) / 255.0)[None, None]
    k["hint_latent"] = hint_latent(picture, mask, H, W)
    # a mask of another size and shape than the picture: stretched to it (bilinear, rounded) and cut to the latent's
    wide = rng.integers(0, 256, size=(10, 20), dtype=np.uint8)
    Image.fromarray(np.stack([wide, wide, wide], -1), "RGB").save(f"{OUT}/mask_20x10.png")
    k["hint_latent.wide_mask"] = hint_latent(picture, torch.from_numpy(wide.astype(np.float32) / 255.0)[None, None],
                                             H, W)
    save_goldens({a: v.detach() for a, v in k.items()}, f"{OUT}/alimama.golden.safetensors")


if __name__ == "__main__":
    main()
