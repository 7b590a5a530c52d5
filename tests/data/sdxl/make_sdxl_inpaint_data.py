"""Writes kiln's test data for SDXL inpainting models (9 input channels:
the latent, the mask and the masked picture's latent, as
sd_xl_base_1.0_inpainting_0.1 and diffusers' stable-diffusion-xl-1.0-
inpainting-0.1 take them): the tiny SDXL UNet of this folder with a random
9-channel conv_in, and what upstream diffusers computes with it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32): the diffusers folder's
UNet with its conv_in replaced by a random one of 9 inputs (seeded, rounded
to float16 as the folder's weights are; the bias kept), on the SDXL golden's
timesteps, encoder_hidden_states and added embedding (text_embeds,
time_ids; y, as kiln's UNet takes it, copied) and a 9-channel sample: the
golden's latent with 5 random channels after it.

  inpaint.golden.safetensors  conv_in.weight (32,9,3,3) float16; sample
      (2,9,8,8), timesteps, encoder_hidden_states, y; noise_pred

Run from the repository root with torch and diffusers installed:
  python3 tests/data/sdxl/make_sdxl_inpaint_data.py
"""
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

FOLDER = "tests/data/sdxl/tiny_sdxl_diffusers"


def main():
    torch.manual_seed(20261128)
    unet = UNet2DConditionModel.from_pretrained(FOLDER, subfolder="unet").to(torch.float32).eval()
    old = unet.conv_in
    unet.conv_in = torch.nn.Conv2d(9, old.out_channels, 3, padding=1)
    with torch.no_grad():
        unet.conv_in.weight.copy_((torch.randn(old.out_channels, 9, 3, 3) * 0.2).half().float())
        unet.conv_in.bias.copy_(old.bias)
    g = load_file("tests/data/sdxl/golden.safetensors")
    sample = torch.cat([g["sample"], torch.randn(2, 5, 8, 8)], dim=1)
    with torch.no_grad():
        noise_pred = unet(sample, g["timesteps"], encoder_hidden_states=g["encoder_hidden_states"],
                          added_cond_kwargs={"text_embeds": g["text_embeds"], "time_ids": g["time_ids"]}).sample
    save_file({"conv_in.weight": unet.conv_in.weight.detach().half().contiguous(), "sample": sample,
               "timesteps": g["timesteps"], "encoder_hidden_states": g["encoder_hidden_states"], "y": g["y"],
               "noise_pred": noise_pred.contiguous()}, "tests/data/sdxl/inpaint.golden.safetensors")
    plain = g["noise_pred"]
    print("noise_pred", tuple(noise_pred.shape), float((noise_pred - plain).norm() / plain.norm()))


if __name__ == "__main__":
    main()
