"""Writes tests/data/tiny/unet_odd.safetensors: the tiny SD 1.x UNet on a
latent of odd size (7x5, so the level below is 4x3 and comes back up to
7x5, not 8x6), with its per-block outputs, as tiny/unet.safetensors has them
for 8x8.

Origin: upstream diffusers 0.27.2 (PyTorch CPU, float32) on the tiny model's
diffusers folder; diffusers passes the skip's size to each upsampler when the
latent is not a multiple of 2^levels, as ComfyUI does. The timesteps and text
context are those of tiny/unet.safetensors.
Run from the repository root: python3 tests/data/tiny/make_unet_odd.py
"""
import torch
from diffusers import UNet2DConditionModel
from safetensors.numpy import load_file
from safetensors.torch import save_file

MODEL = "tests/data/tiny/sd15_tiny_diffusers"
BLOCKS = ["conv_in", "time_proj", "time_embedding", "down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0",
          "up_blocks.1", "conv_norm_out", "conv_out"]


def main():
    torch.manual_seed(75)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    inputs = load_file("tests/data/tiny/unet.safetensors")
    out = {"timesteps": torch.from_numpy(inputs["timesteps"]),
           "encoder_hidden_states": torch.from_numpy(inputs["encoder_hidden_states"]),
           "sample": torch.randn(2, 4, 7, 5)}

    def hook(name):
        def save(module, args, result):
            out["x." + name] = (result[0] if isinstance(result, tuple) else result).detach().clone()
        return save

    for name in BLOCKS:
        unet.get_submodule(name).register_forward_hook(hook(name))
    with torch.no_grad():
        out["noise_pred"] = unet(out["sample"], out["timesteps"], encoder_hidden_states=out["encoder_hidden_states"]).sample
    save_file({k: v.contiguous() for k, v in out.items()}, "tests/data/tiny/unet_odd.safetensors")
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
