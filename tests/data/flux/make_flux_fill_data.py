"""Writes kiln's test data for FLUX.1 Fill: a small random transformer of its
shape (the latent's channels, a picture's latent channels and 8x8 mask
channels in; the latent's out), a picture and a mask, and what upstream
computes with them.

Origin: diffusers 0.32.2 (FluxTransformer2DModel with in_channels 384 and
out_channels 64, as FLUX.1 Fill [dev] configures it, in small; the tiny VAE's
AutoencoderKL) on PyTorch (CPU, float32), the architecture of
make_flux_data.py's tiny model otherwise. The run restates ComfyUI's code:
InpaintModelConditioning (the mask bilinear to the picture; the picture
encoded as it is for the LATENT, and with its pixels where the rounded mask
is 1 set to grey for concat_latent_image; the latent's noise mask the
mask), Flux's concat_cond (the grey picture's latent through
process_latent_in, then the mask bilinear to 8x the latent and cut into
8x8 blocks, 64 channels, all beside the noisy latent in every call, packed
together into 2x2 patches) and KSamplerX0Inpaint (the kept part renoised
the CONST way before each call, restored after it; its mask bilinear to the
latent), sampled as make_flux_data.py's run (ModelSamplingFlux shift 1.15,
simple, 4 steps of euler, cfg 2, seed 42, FluxGuidance 3.5).

  fill/  a FluxPipeline folder: transformer/ (f16), the tiny folder's other
       parts linked
  fill/picture_16x16.png, fill/mask_16x16.png (white repaints; a soft edge)
  fill/golden.safetensors
       packed (2,12,384), context, pooled, timestep, guidance; out (2,12,64);
       run.latent (1,16,8,8): the picture's latent; run.concat: the grey
       picture's; run.noise, run.sigmas, run.latent_out; differential.latent_out
       and differential_half.latent_out: the same run with ComfyUI's
       DifferentialDiffusion at strength 1 and 0.5 (each step's noise mask
       thresholded at the part of the schedule still ahead)

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_data.py):
  python3 tests/data/flux/make_flux_fill_data.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxTransformer2DModel
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_canny_data import image_ids, pack, unpack  # noqa: E402
from make_flux_data import CONFIG, RUN_PROMPT  # noqa: E402
from sd_common import PT, randomize, save_goldens, save_half, write_json  # noqa: E402

FILL = dict(CONFIG, in_channels=384, out_channels=64)
OUT = f"{HERE}/fill"


def main():
    torch.manual_seed(37)
    flux = FluxTransformer2DModel(**FILL).eval()
    randomize(flux, table=lambda name: False)
    folder = f"{OUT}/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(flux.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxTransformer2DModel", **FILL}, f"{folder}/config.json")
    flux = FluxTransformer2DModel.from_pretrained(folder).eval()
    for part in ("text_encoder", "text_encoder_2", "tokenizer_2", "vae", "model_index.json"):
        if not os.path.islink(f"{OUT}/{part}"):
            os.symlink(f"../tiny/{part}", f"{OUT}/{part}")

    g = {}
    torch.manual_seed(19)
    B, C, H, W, T = 2, 16, 8, 6, 5
    packed = torch.cat([pack(torch.randn(B, C, H, W)), pack(torch.randn(B, C, H, W)), pack(torch.rand(B, 64, H, W))],
                       dim=2)
    context, pooled = torch.randn(B, T, 64), torch.randn(B, 32)
    timestep, guidance = torch.tensor([1.0, 0.37]), torch.tensor([3.5, 3.5])
    with torch.no_grad():
        out = flux(hidden_states=packed, encoder_hidden_states=context, pooled_projections=pooled,
                   timestep=timestep, img_ids=image_ids(H, W), txt_ids=torch.zeros(T, 3), guidance=guidance,
                   return_dict=False)[0]
    g.update({"packed": packed, "context": context, "pooled": pooled, "timestep": timestep, "guidance": guidance,
              "out": out})

    # a picture and a mask with a soft edge, as PNGs; their 8-bit values are what both sides read
    rng = np.random.default_rng(41)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f"{OUT}/picture_16x16.png")
    m = np.zeros((16, 16), np.float32)
    m[:, :7] = 1.0
    m[:, 7] = 0.6
    m[:, 8] = 0.3
    Image.fromarray(np.repeat((m * 255).round().astype(np.uint8)[..., None], 3, axis=2)).save(f"{OUT}/mask_16x16.png")
    pixels = torch.from_numpy(np.asarray(Image.open(f"{OUT}/picture_16x16.png"), np.float32) / 255.0)
    pixels = pixels.permute(2, 0, 1)[None]
    mask = torch.from_numpy(np.asarray(Image.open(f"{OUT}/mask_16x16.png"), np.float32)[..., 0] / 255.0)[None, None]

    tiny = f"{HERE}/tiny"
    vae = AutoencoderKL.from_pretrained(f"{tiny}/vae").eval()
    mask_px = F.interpolate(mask, size=(16, 16), mode="bilinear")  # InpaintModelConditioning: to the picture
    grey = (pixels - 0.5) * (1.0 - mask_px.round()) + 0.5
    with torch.no_grad():
        latent = vae.encode(2.0 * pixels - 1.0).latent_dist.mean
        concat_latent = vae.encode(2.0 * grey - 1.0).latent_dist.mean
    h, w = latent.shape[-2:]

    clip = CLIPTextModel.from_pretrained(f"{tiny}/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{tiny}/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{tiny}/tokenizer_2/spiece.model", legacy=True)
    run_golden = load_file(f"{HERE}/run.golden.safetensors")
    ctx, pooled_out = {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            pooled_out[which] = clip(input_ids=run_golden[f"run.clip_ids.{which}"].long()).pooler_output
            ids = tok(text).input_ids
            ctx[which] = t5(input_ids=torch.tensor([ids + [0] * (256 - len(ids))])).last_hidden_state

    # concat_cond: the grey picture as the model takes a latent, the mask 8x8-blocked at 8x the latent
    big = F.interpolate(mask_px, size=(8 * h, 8 * w), mode="bilinear")
    blocks = big.view(1, h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, h, w)
    concat = torch.cat([(concat_latent - 0.1159) * 0.3611, blocks], dim=1)
    ids1 = image_ids(h, w)

    def model(xt, sigma, which):
        with torch.no_grad():
            out = flux(hidden_states=pack(torch.cat([xt, concat], dim=1)), encoder_hidden_states=ctx[which],
                       pooled_projections=pooled_out[which], timestep=sigma.view(1), img_ids=ids1,
                       txt_ids=torch.zeros(256, 3), guidance=torch.tensor([3.5]), return_dict=False)[0]
        return unpack(out, h, w)

    steps, cfg = 4, 2.0
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    noise_mask = F.interpolate(mask_px, size=(h, w), mode="bilinear")  # KSamplerX0Inpaint's
    image = (latent - 0.1159) * 0.3611
    torch.manual_seed(42)
    noise = torch.randn(1, 16, h, w)

    def sample(strength):
        """KSampler; with a strength, DifferentialDiffusion's denoise_mask_function on the noise mask."""
        xt = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        sigma_to = max(ms.sigma_min, sigmas[-1])
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            mask = noise_mask
            if strength:
                threshold = (ms.timestep(s) - ms.timestep(sigma_to)) / (ms.timestep(sigmas[0]) - ms.timestep(sigma_to))
                binary = (noise_mask >= threshold).to(noise_mask.dtype)
                mask = strength * binary + (1 - strength) * noise_mask if strength < 1 else binary
            x_in = xt * mask + (s * noise + (1.0 - s) * image) * (1.0 - mask)
            x0 = {k: x_in - model(x_in, s, k) * s for k in ("negative", "positive")}
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            d = d * mask + image * (1.0 - mask)
            xt = xt + (xt - d) / s * (sigmas[i + 1] - s)
        return xt / 0.3611 + 0.1159

    g.update({"run.latent": latent, "run.concat": concat_latent, "run.noise": noise, "run.sigmas": sigmas,
              "run.latent_out": sample(0), "differential.latent_out": sample(1.0),
              "differential_half.latent_out": sample(0.5)})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/golden.safetensors")


if __name__ == "__main__":
    main()
