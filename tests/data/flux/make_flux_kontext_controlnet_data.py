"""Writes kiln's test data for a Flux ControlNet beside FLUX.1 Kontext's
reference latents: the ControlNet reads the latent alone (ComfyUI calls it
on x, not on the references), and its residuals join the first tokens of
the transformer's image tokens, the latent's (ComfyUI's Flux adds a
control input to img[:, :n] and a control output after the caption's).

Origin: diffusers 0.32.2 on PyTorch (CPU, float32): flux/controlnet's
transformer and its InstantX-kind ControlNet (make_flux_controlnet_data.py)
on that script's call inputs, with one reference latent joined as
make_flux_kontext_data.py joins it; ComfyUI's additions restated with hooks
on diffusers' blocks.

  flux/controlnet/kontext.golden.safetensors
       ref (2,16,4,6): the reference; out (2,12,64): the transformer's
       output for the latent with the ControlNet (union mode 2, strength
       0.7, on flux/controlnet/golden's instantx.hint) and the reference

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_controlnet_data.py):
  python3 tests/data/flux/make_flux_kontext_controlnet_data.py
"""
import os
import sys

import torch
from diffusers import FluxControlNetModel, FluxTransformer2DModel
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from make_flux_canny_data import image_ids, unpack  # noqa: E402
from make_flux_controlnet_data import mapped, residuals, with_controls  # noqa: E402
from make_flux_kontext_data import joined  # noqa: E402
from sd_common import save_goldens  # noqa: E402

OUT = f"{HERE}/controlnet"


def main():
    flux = FluxTransformer2DModel.from_pretrained(f"{OUT}/transformer").eval()
    instantx = FluxControlNetModel.from_pretrained(f"{OUT}/instantx").eval()
    g = load_file(f"{OUT}/golden.safetensors")
    torch.manual_seed(61)
    ref = torch.randn(2, 16, 4, 6)
    x = unpack(g["packed"], 8, 6)
    plain = dict(hidden_states=g["packed"], encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                 timestep=g["timestep"], img_ids=image_ids(8, 6), txt_ids=torch.zeros(g["context"].shape[1], 3),
                 guidance=g["guidance"])
    d, s = residuals(instantx, 0.7, g["instantx.hint"], torch.tensor([[2], [2]]), **plain)
    tokens, ids = joined(x, [ref])
    inputs = dict(plain, hidden_states=tokens, img_ids=ids)
    out = with_controls(flux, mapped(d, 3, False), mapped(s, 4, False), **inputs)[:, :12]
    save_goldens({"ref": ref, "out": out}, f"{OUT}/kontext.golden.safetensors")


if __name__ == "__main__":
    main()
