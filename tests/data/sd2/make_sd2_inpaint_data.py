"""Writes kiln's test data for SD 2.x inpainting models (9 input channels:
the latent, the mask and the masked picture's latent, as
512-inpainting-ema and stable-diffusion-2-inpainting take them): the tiny
SD 2.x UNet of this folder with a random 9-channel conv_in, and what
upstream diffusers computes with it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32): the diffusers folder's
UNet with its conv_in replaced by a random one of 9 inputs (seeded, rounded
to float16 as the folder's weights are; the bias kept), on the SD 2.x
golden's timesteps and encoder_hidden_states and a 9-channel sample: the
golden's latent with 5 random channels after it.

  inpaint.golden.safetensors  conv_in.weight (32,9,3,3) float16; sample
      (2,9,8,8), timesteps, encoder_hidden_states; noise_pred

Run from the repository root with torch and diffusers installed:
  python3 tests/data/sd2/make_sd2_inpaint_data.py
"""
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

FOLDER = "tests/data/sd2/tiny_sd2_diffusers"


def main():
    torch.manual_seed(20261129)
    unet = UNet2DConditionModel.from_pretrained(FOLDER, subfolder="unet").to(torch.float32).eval()
    old = unet.conv_in
    unet.conv_in = torch.nn.Conv2d(9, old.out_channels, 3, padding=1)
    with torch.no_grad():
        unet.conv_in.weight.copy_((torch.randn(old.out_channels, 9, 3, 3) * 0.2).half().float())
        unet.conv_in.bias.copy_(old.bias)
    g = load_file("tests/data/sd2/golden.safetensors")
    sample = torch.cat([g["sample"], torch.randn(2, 5, 8, 8)], dim=1)
    with torch.no_grad():
        noise_pred = unet(sample, g["timesteps"], encoder_hidden_states=g["encoder_hidden_states"]).sample
    save_file({"conv_in.weight": unet.conv_in.weight.detach().half().contiguous(), "sample": sample,
               "timesteps": g["timesteps"], "encoder_hidden_states": g["encoder_hidden_states"],
               "noise_pred": noise_pred.contiguous()}, "tests/data/sd2/inpaint.golden.safetensors")
    plain = g["noise_pred"]
    print("noise_pred", tuple(noise_pred.shape), float((noise_pred - plain).norm() / plain.norm()))


if __name__ == "__main__":
    main()
