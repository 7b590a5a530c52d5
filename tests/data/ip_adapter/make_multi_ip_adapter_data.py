"""Writes kiln's data for two IP-Adapters at once (chained IPAdapterAdvanced
nodes: each cross-attention adds, after the text's, each adapter's attention
to its own image tokens times its weight, in the order applied).

Origin: diffusers 0.27.2 on PyTorch (CPU, float32): the tiny UNet with the
plain and the Plus adapter of this folder loaded together by diffusers' own
loader (UNet2DConditionModel._load_ip_adapter_weights with both, as
load_ip_adapter does for a list), at weights 0.7 and 0.4, attending to the
image tokens golden.safetensors has for each (ip_tokens, plus.ip_tokens:
row 0 the zero embedding's / the black picture's, row 1 the picture's), on
the tiny UNet golden's sample, timesteps and encoder_hidden_states.

  multi.safetensors  scales (2): the two weights; noise_pred: the UNet's

Run from the repository root with torch and diffusers installed and the
project's shared goldens at ../shared/goldens (after make_ip_adapter_data.py):
  python3 tests/data/ip_adapter/make_multi_ip_adapter_data.py
"""
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/ip_adapter"
SCALES = [0.7, 0.4]


def h94_state_dict(path):
    """A .safetensors adapter file as the dict diffusers' loader takes."""
    flat = load_file(path)
    sd = {"image_proj": {}, "ip_adapter": {}}
    for k, v in flat.items():
        part, name = k.split(".", 1)
        sd[part][name] = v
    return sd


def main():
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    adapters = [h94_state_dict(os.path.join(OUT, f)) for f in ("ip_adapter_tiny.safetensors",
                                                                "ip_adapter_plus_tiny.safetensors")]
    unet._load_ip_adapter_weights(adapters)
    for proc in unet.attn_processors.values():
        if hasattr(proc, "scale"):
            proc.scale = list(SCALES)
    g = load_file(os.path.join(OUT, "golden.safetensors"))
    with torch.no_grad():
        # the image projections run inside the UNet: give each adapter what makes its golden tokens
        embeds = torch.cat([torch.zeros_like(g["image_embeds"]), g["image_embeds"]])[:, None]
        hidden = g["plus.penultimate"][:, None]
        tokens = unet.encoder_hid_proj([embeds, hidden])
        assert torch.allclose(tokens[0][:, 0], g["ip_tokens"], atol=1e-6)
        assert torch.allclose(tokens[1][:, 0], g["plus.ip_tokens"], atol=1e-5)
        noise_pred = unet(g["sample"], g["timesteps"], g["encoder_hidden_states"],
                          added_cond_kwargs={"image_embeds": [embeds, hidden]}).sample
    save_file({"scales": torch.tensor(SCALES), "noise_pred": noise_pred.contiguous()},
              os.path.join(OUT, "multi.safetensors"))
    print("noise_pred", tuple(noise_pred.shape), float((noise_pred - g["noise_pred"]).norm() / g["noise_pred"].norm()))


if __name__ == "__main__":
    main()
