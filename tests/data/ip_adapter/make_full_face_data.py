"""Writes kiln's test data for IP-Adapter full-face (ip-adapter-full-face_sd15:
an MLP image projection, per token of the CLIP tower's penultimate hidden
states): a small random one for the tiny SD 1.x model, and what diffusers
computes with it.

Origin: diffusers 0.27.2 (UNet2DConditionModel._load_ip_adapter_weights,
which reads proj.0/proj.2/proj.3 as IPAdapterFullImageProjection: Linear,
GELU, Linear, LayerNorm) on PyTorch (CPU, float32), on make_ip_adapter_data.py's
goldens: the penultimate hidden states of a black picture and of the
picture (plus.penultimate, as the IPAdapter nodes encode the negative for
full-face models as for Plus ones) and the tiny UNet golden's inputs.

  ip_adapter_full_face_tiny.safetensors  image_proj.proj.{0,2,3}.* and
      ip_adapter.N.to_{k,v}_ip.weight, h94's layout
  golden.safetensors gets full.ip_tokens (2,257,32): the projection of
      both rows; full.noise_pred: the UNet with the adapter at
      make_ip_adapter_data.py's scale on its sample, timesteps,
      encoder_hidden_states

Run from the repository root with torch and diffusers 0.27.2 (after
make_ip_adapter_data.py):
  python3 tests/data/ip_adapter/make_full_face_data.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_ip_adapter_data import MODEL, OUT, load_with_adapter, random_ip_layers  # noqa: E402


def main():
    torch.manual_seed(20261128)
    g = load_file(os.path.join(OUT, "golden.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    ctx = unet.config.cross_attention_dim
    E = g["plus.penultimate"].shape[-1]
    image_proj = {"proj.0.weight": torch.randn(E, E) * 0.2, "proj.0.bias": torch.randn(E) * 0.05,
                  "proj.2.weight": torch.randn(ctx, E) * 0.2, "proj.2.bias": torch.randn(ctx) * 0.05,
                  "proj.3.weight": 1 + 0.1 * torch.randn(ctx), "proj.3.bias": torch.randn(ctx) * 0.05}
    load_with_adapter(unet, image_proj, random_ip_layers(unet, ctx),
                      os.path.join(OUT, "ip_adapter_full_face_tiny.safetensors"))
    embeds = g["plus.penultimate"][:, None]  # (2,1,257,E): the black picture's, the picture's
    with torch.no_grad():
        g["full.ip_tokens"] = unet.encoder_hid_proj([embeds])[0][:, 0]
        g["full.noise_pred"] = unet(g["sample"], g["timesteps"], g["encoder_hidden_states"],
                                    added_cond_kwargs={"image_embeds": [embeds]}).sample
    save_file({k: v.contiguous() for k, v in g.items()}, os.path.join(OUT, "golden.safetensors"))
    print({k: tuple(v.shape) for k, v in g.items() if k.startswith("full.")})


if __name__ == "__main__":
    main()
