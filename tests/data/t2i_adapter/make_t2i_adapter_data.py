"""Writes kiln's T2I-Adapter test data: small random adapters for the tiny
SD 1.x model (tests/data/tiny) and the tiny SDXL model (tests/data/sdxl), in
the layouts people have, and what upstream diffusers computes with them.

Origin: diffusers 0.42.1 on PyTorch 2.x (CPU, float32). Every weight is
random (seeded) and rounded to float16, as the files store them; the goldens
are float32.

  full_diffusers.safetensors  T2IAdapter(full_adapter, 3 channels in, widths
      32/64, 2 res blocks, unshuffle 8): diffusers' names (adapter.*)
  full_original.safetensors   the same weights under TencentARC's names
      (conv_in, body.{level * 2 + block}.{in_conv,block1,block2}), as
      ComfyUI's load_t2i_adapter renames diffusers' files
  light_original.safetensors  T2IAdapter(light_adapter, 1 channel in, widths
      32/64: three levels, 4 res blocks each) under TencentARC's names
      (body.{level}.{in_conv,out_conv}, body.{level}.body.{block}.block1/2)
  xl_diffusers.safetensors    T2IAdapter(full_adapter_xl, 3 channels in,
      widths 32/64/64/64, unshuffle 16) for the tiny SDXL UNet
  golden.safetensors
      hint (1,3,64,64) in [0,1] (seeded numpy), scale [0.8];
      full.feature.N, light.feature.N, xl.feature.N: each adapter's features
        (the light one given the hint's mean over its channels, as ComfyUI
        gives a 1-channel adapter);
      full.noise_pred: the tiny UNet's golden inputs (tests/data/tiny/
        unet.safetensors) with the full adapter's features times the scale
        as down_intrablock_additional_residuals (both rows the hint);
      light.noise_pred: the same with the light adapter's;
      xl.noise_pred: the tiny SDXL UNet's golden inputs (tests/data/sdxl/
        golden.safetensors, with its added_cond_kwargs) with the XL
        adapter's (diffusers adds the third and fourth features nowhere on
        this two-level UNet: its middle block is at half their size);
      odd.hint (1,3,56,40), odd.feature.N, odd.noise_pred: the full adapter
        on a 7x5 latent's hint with the tiny UNet's 7x5 inputs
        (tests/data/tiny/unet_odd.safetensors): there the downsampling is
        ComfyUI's (the original T2I-Adapter code's avg_pool2d padded by one
        on an odd side, zeros counted), not diffusers' ceil_mode pooling, so
        diffusers' blocks run with that pooling put in their place;
      denoise.*: one guided denoiser call as ComfyUI makes it with the full
        adapter applied on both prompts (x, sigma = the training sigma of
        t = 500, cfg 7.5, rows 0 and 1 of the context as negative and
        positive): c_in = 1/sqrt(sigma^2+1), x0 = x - sigma * eps per half,
        uncond + (cond - uncond) * cfg; denoise.positive_out: the adapter on
        the positive row alone (ControlNetApply's).

Run from the repository root with torch and diffusers installed:
  python3 tests/data/t2i_adapter/make_t2i_adapter_data.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import T2IAdapter, UNet2DConditionModel
from safetensors.numpy import load_file
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import comfy_sigmas, save_goldens  # noqa: E402

OUT = "tests/data/t2i_adapter"
SCALE = 0.8


def randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05)).half().float())
    return model.eval()


def tencentarc_full(sd, blocks):
    """diffusers' full adapter names to TencentARC's, as ComfyUI maps them."""
    out = {}
    for k, v in sd.items():
        name = k[len("adapter."):]
        parts = name.split(".")
        if parts[0] == "body":
            level = int(parts[1])
            if parts[2] == "resnets":
                name = ".".join(["body", str(level * blocks + int(parts[3]))] + parts[4:])
            else:
                name = ".".join(["body", str(level * blocks)] + parts[2:])
        out[name] = v
    return out


def tencentarc_light(sd):
    """diffusers' light adapter names to TencentARC's."""
    return {k[len("adapter."):].replace(".resnets.", ".body."): v for k, v in sd.items()}


def save_half(sd, path):
    save_file({k: v.half().contiguous() for k, v in sd.items()}, path)


class ComfyPool(torch.nn.Module):
    """The original T2I-Adapter Downsample: avg_pool2d padded by one on an odd side, zeros counted."""

    def forward(self, x):
        return F.avg_pool2d(x, 2, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))


def with_comfy_pooling(adapter):
    for block in adapter.adapter.body:
        if block.downsample is not None:
            block.downsample = ComfyPool()
    return adapter


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20261129)
    full = randomize(T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=2, downscale_factor=8,
                                adapter_type="full_adapter"))
    light = randomize(T2IAdapter(in_channels=1, channels=[32, 64], num_res_blocks=4, downscale_factor=8,
                                 adapter_type="light_adapter"))
    xl = randomize(T2IAdapter(in_channels=3, channels=[32, 64, 64, 64], num_res_blocks=2, downscale_factor=16,
                              adapter_type="full_adapter_xl"))
    save_half(full.state_dict(), f"{OUT}/full_diffusers.safetensors")
    save_half(tencentarc_full(full.state_dict(), 2), f"{OUT}/full_original.safetensors")
    save_half(tencentarc_light(light.state_dict()), f"{OUT}/light_original.safetensors")
    save_half(xl.state_dict(), f"{OUT}/xl_diffusers.safetensors")

    rng = np.random.default_rng(29)
    hint = torch.from_numpy(rng.random((1, 3, 64, 64), dtype=np.float32))
    golden = {"hint": hint, "scale": torch.tensor([SCALE])}
    tiny = load_file("tests/data/tiny/unet.safetensors")
    sample, timesteps, context = (torch.from_numpy(tiny[k]) for k in ["sample", "timesteps", "encoder_hidden_states"])
    unet = UNet2DConditionModel.from_pretrained("tests/data/tiny/sd15_tiny_diffusers", subfolder="unet").eval()
    with torch.no_grad():
        plain = unet(sample, timesteps, encoder_hidden_states=context).sample
        assert torch.allclose(plain, torch.from_numpy(tiny["noise_pred"]), rtol=1e-4, atol=1e-5)
        for name, adapter, x in [("full", full, hint), ("light", light, hint.mean(1, keepdim=True))]:
            features = adapter(x)
            for i, f in enumerate(features):
                golden[f"{name}.feature.{i}"] = f
            residuals = [f.repeat(2, 1, 1, 1) * SCALE for f in features]
            golden[f"{name}.noise_pred"] = unet(sample, timesteps, encoder_hidden_states=context,
                                                down_intrablock_additional_residuals=residuals).sample

        odd = load_file("tests/data/tiny/unet_odd.safetensors")
        osample, otimesteps, ocontext = (torch.from_numpy(odd[k]) for k in
                                         ["sample", "timesteps", "encoder_hidden_states"])
        _, _, h, w = osample.shape
        golden["odd.hint"] = torch.from_numpy(rng.random((1, 3, 8 * h, 8 * w), dtype=np.float32))
        comfy_full = with_comfy_pooling(full)
        features = comfy_full(golden["odd.hint"])
        for i, f in enumerate(features):
            golden[f"odd.feature.{i}"] = f
        residuals = [f.repeat(osample.shape[0], 1, 1, 1) * SCALE for f in features]
        golden["odd.noise_pred"] = unet(osample, otimesteps, encoder_hidden_states=ocontext,
                                        down_intrablock_additional_residuals=residuals).sample

        # one denoiser call with the (even-sized) full adapter: the same features either pooling
        sigma = comfy_sigmas()[500]
        x = torch.from_numpy(rng.standard_normal((1, 4, 8, 8)).astype(np.float32)) * sigma
        xin = (x / (sigma ** 2 + 1).sqrt()).repeat(2, 1, 1, 1)
        t = torch.tensor([500.0, 500.0])
        features = comfy_full(hint)
        for both in [True, False]:
            residuals = [f.repeat(2, 1, 1, 1) * SCALE for f in features]
            if not both:
                for r in residuals:
                    r[0] = 0
            eps = unet(xin, t, encoder_hidden_states=context, down_intrablock_additional_residuals=residuals).sample
            uncond, cond = x - eps[0:1] * sigma, x - eps[1:2] * sigma
            golden["denoise.out" if both else "denoise.positive_out"] = uncond + (cond - uncond) * 7.5
        golden["denoise.x"] = x
        golden["denoise.sigma"] = sigma.reshape(1)
        golden["denoise.cfg"] = torch.tensor([7.5])

        sdxl = load_file("tests/data/sdxl/golden.safetensors")
        s = {k: torch.from_numpy(sdxl[k].copy()) for k in
             ["sample", "timesteps", "encoder_hidden_states", "text_embeds", "time_ids", "noise_pred"]}
        xl_unet = UNet2DConditionModel.from_pretrained("tests/data/sdxl/tiny_sdxl_diffusers", subfolder="unet").eval()
        added = {"text_embeds": s["text_embeds"], "time_ids": s["time_ids"]}
        features = xl(hint)
        for i, f in enumerate(features):
            golden[f"xl.feature.{i}"] = f
        residuals = [f.repeat(2, 1, 1, 1) * SCALE for f in features]
        golden["xl.noise_pred"] = xl_unet(s["sample"], s["timesteps"], encoder_hidden_states=s["encoder_hidden_states"],
                                          added_cond_kwargs=added,
                                          down_intrablock_additional_residuals=residuals).sample
        xl_plain = xl_unet(s["sample"], s["timesteps"], encoder_hidden_states=s["encoder_hidden_states"],
                           added_cond_kwargs=added).sample
        assert torch.allclose(xl_plain, s["noise_pred"], rtol=1e-4, atol=1e-5)
    save_goldens(golden, f"{OUT}/golden.safetensors")
    for name, ref in [("full", plain), ("light", plain), ("xl", xl_plain)]:
        change = (golden[f"{name}.noise_pred"] - ref).norm() / ref.norm()
        print(f"{name}: the noise prediction moves by {change:.3f} (relative L2)")


if __name__ == "__main__":
    main()
