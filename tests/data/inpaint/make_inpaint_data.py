"""Writes kiln's inpainting test data for the tiny SD 1.x model (tests/data/tiny).

Origin: the models are diffusers 0.27.2's (PyTorch CPU, float32): the tiny
UNet as it is, and the same UNet with a random 9-channel conv_in (what an
inpainting checkpoint changes), and the tiny VAE's encoder. The steps around
them are ComfyUI's (v0.3.x nodes.py VAEEncodeForInpaint and SetLatentNoiseMask,
comfy/utils.reshape_mask, comfy/samplers.KSamplerX0Inpaint and
BaseModel.concat_cond), written out here with torch's own conv2d and
interpolate, as those nodes call them.

  image_20x17.png, mask_20x17.png  a random picture and a soft-edged mask
      (white repaints: the red channel, as LoadImageMask's "red")
  golden.safetensors
    conv_in.weight          the 9-channel conv_in (32,9,3,3) the inpainting UNet gets
    unet9.sample/.timesteps/.encoder_hidden_states/.noise_pred
                            the 9-channel UNet on random inputs
    inpaint.*               VAEEncodeForInpaint (grow 6) of the pair with the
                            9-channel UNet: .noise_mask (pixels), .latent
                            (unscaled), then one guided call of the sampler:
                            .x, .noise, .sigma (t = 500), .cfg, .out
    noise_mask.*            VAEEncode + SetLatentNoiseMask with the plain UNet:
                            the same entries
    outpaint.*              ImagePadForOutpaint (v0.3.x nodes.py; its rule
                            vectorised here) of image_20x17 with left 6, top 0,
                            right 3, bottom 5, feathering 4: .pixels (3,22,29),
                            .mask (22,29); then VAEEncodeForInpaint of that with
                            the 9-channel UNet (outpaint.inpaint.latent and
                            .noise_mask) and VAEEncode + SetLatentNoiseMask with
                            the plain one (outpaint.noise_mask.*)
    outpaint_even.mask      all sides 2, feathering 9 (too wide to fade: 2 * 9
                            is not below 17)
    outpaint_top.mask       top 4 only, feathering 5
  The call's contexts are rows 0 (negative) and 1 (positive) of
  tests/data/tiny/unet.safetensors' encoder_hidden_states.

Run from the repository root with torch, diffusers and pillow installed and
the project's shared goldens at ../shared/goldens:
  python3 tests/data/inpaint/make_inpaint_data.py
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from safetensors.numpy import load_file
from safetensors.torch import save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/inpaint"
SCALING = 0.18215
FACTOR = 2  # the tiny VAE's downscale


def widened_unet(channels):
    """The tiny UNet with a random conv_in of `channels` inputs (what an
    inpainting or InstructPix2Pix checkpoint changes), drawn from torch's
    global generator."""
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    old = unet.conv_in
    unet.conv_in = torch.nn.Conv2d(channels, old.out_channels, 3, padding=1)
    with torch.no_grad():
        unet.conv_in.weight.copy_(torch.randn(old.out_channels, channels, 3, 3) * 0.2)
        unet.conv_in.bias.copy_(old.bias)
    return unet


def make_pictures(rng):
    image = rng.integers(0, 256, (17, 20, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:17, 0:20]
    # a disc with a soft rim: values between 0 and 255 exercise the rounding
    d = np.sqrt((yy - 7.5) ** 2 + (xx - 10.0) ** 2)
    red = np.clip((6.0 - d) * 80.0, 0, 255).astype(np.uint8)
    mask = np.stack([red, rng.integers(0, 256, (17, 20), dtype=np.uint8), np.zeros((17, 20), np.uint8)], -1)
    Image.fromarray(image).save(f"{OUT}/image_20x17.png")
    Image.fromarray(mask).save(f"{OUT}/mask_20x17.png")
    pixels = torch.from_numpy(image.astype(np.float32) / 255.0)[None]     # (1,H,W,3) as LoadImage
    mask_t = torch.from_numpy(red.astype(np.float32) / 255.0)[None]       # (1,H,W) as LoadImageMask
    return pixels, mask_t


def crop(pixels, mask):
    """VAEEncode's crop to the VAE's multiple, on the pixels and the mask."""
    x = (pixels.shape[1] // FACTOR) * FACTOR
    y = (pixels.shape[2] // FACTOR) * FACTOR
    mask = F.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])), size=(pixels.shape[1], pixels.shape[2]),
                         mode="bilinear")
    xo, yo = (pixels.shape[1] % FACTOR) // 2, (pixels.shape[2] % FACTOR) // 2
    return pixels[:, xo:x + xo, yo:y + yo, :], mask[:, :, xo:x + xo, yo:y + yo]


def encode_for_inpaint(vae, pixels, mask, grow=6):
    """VAEEncodeForInpaint: masked pixels to grey, the mask grown."""
    pixels, mask = crop(pixels.clone(), mask)
    x, y = pixels.shape[1], pixels.shape[2]
    kernel = torch.ones((1, 1, grow, grow))
    padding = math.ceil((grow - 1) / 2)
    grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)
    m = (1.0 - mask.round()).squeeze(1)
    for i in range(3):
        pixels[:, :, :, i] -= 0.5
        pixels[:, :, :, i] *= m
        pixels[:, :, :, i] += 0.5
    return encode(vae, pixels), grown[:, :, :x, :y].round()


def encode_with_noise_mask(vae, pixels, mask):
    """VAEEncode, then SetLatentNoiseMask with the mask as it is (not cropped:
    the sampler stretches it over the latent)."""
    pixels, _ = crop(pixels, mask)
    return encode(vae, pixels), mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))


def pad_for_outpaint(image, left, top, right, bottom, feathering):
    """ImagePadForOutpaint's two outputs by its rule: the picture on a 0.5
    canvas; the mask 1 outside the picture and, inside, ((F - d) / F)^2 (in
    double, stored as float32) where d, the distance to the nearest padded
    side (an unpadded side counts as the picture's full height or width), is
    below F, provided 2F is below both the picture's height and width."""
    _, h, w, c = image.shape
    canvas = torch.full((1, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
    canvas[:, top:top + h, left:left + w, :] = image
    mask = np.ones((h + top + bottom, w + left + right), np.float32)
    rows, cols = np.mgrid[0:h, 0:w]
    d = np.minimum.reduce([rows if top else np.full_like(rows, h), h - rows if bottom else np.full_like(rows, h),
                           cols if left else np.full_like(cols, w), w - cols if right else np.full_like(cols, w)])
    inside = np.zeros((h, w), np.float32)
    if 0 < feathering and 2 * feathering < h and 2 * feathering < w:
        fade = d < feathering
        inside[fade] = (((feathering - d[fade]) / feathering) ** 2).astype(np.float32)
    mask[top:top + h, left:left + w] = inside
    return canvas, torch.from_numpy(mask)[None]


def encode(vae, pixels):
    with torch.no_grad():
        return vae.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mean


def sampler_call(unet, latent, noise_mask, x, noise, sigma, cfg, context, concat):
    """One KSamplerX0Inpaint call around CFG, as ComfyUI makes it."""
    latent_image = latent * SCALING
    mask = F.interpolate(noise_mask, size=x.shape[2:], mode="bilinear").repeat(1, x.shape[1], 1, 1)
    xin = x * mask + (latent_image + noise * sigma) * (1 - mask)
    c_in = 1 / (sigma ** 2 + 1) ** 0.5
    unet_in = xin * c_in
    if concat:
        unet_in = torch.cat([unet_in, mask[:, :1].round(), latent_image], 1)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        eps = unet(unet_in.repeat(2, 1, 1, 1), t, encoder_hidden_states=context).sample
    uncond, cond = xin - eps[0:1] * sigma, xin - eps[1:2] * sigma
    out = uncond + (cond - uncond) * cfg
    return out * mask + latent_image * (1 - mask)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20261127)
    rng = np.random.default_rng(11)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(MODEL, subfolder="vae").eval()
    unet9 = widened_unet(9)

    golden = {"conv_in.weight": unet9.conv_in.weight.detach().clone()}
    inputs = load_file("tests/data/tiny/unet.safetensors")
    context = torch.from_numpy(inputs["encoder_hidden_states"])
    sample = torch.randn(2, 9, 8, 8)
    t = torch.from_numpy(inputs["timesteps"])
    with torch.no_grad():
        golden["unet9.noise_pred"] = unet9(sample, t, encoder_hidden_states=context).sample
    golden["unet9.sample"], golden["unet9.timesteps"], golden["unet9.encoder_hidden_states"] = sample, t, context

    pixels, mask = make_pictures(rng)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    sigma = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()[500]
    for name, model, concat in [("inpaint", unet9, True), ("noise_mask", unet, False)]:
        if concat:
            latent, noise_mask = encode_for_inpaint(vae, pixels, mask)
        else:
            latent, noise_mask = encode_with_noise_mask(vae, pixels, mask)
        x = torch.randn(latent.shape) * sigma
        noise = torch.randn(latent.shape)
        golden[f"{name}.noise_mask"] = noise_mask
        golden[f"{name}.latent"] = latent
        golden[f"{name}.x"], golden[f"{name}.noise"] = x, noise
        golden[f"{name}.sigma"], golden[f"{name}.cfg"] = sigma.reshape(1), torch.tensor([7.5])
        golden[f"{name}.out"] = sampler_call(model, latent, noise_mask, x, noise, sigma, 7.5, context, concat)
    padded, pad_mask = pad_for_outpaint(pixels, 6, 0, 3, 5, 4)
    golden["outpaint.pixels"], golden["outpaint.mask"] = padded[0].movedim(-1, 0), pad_mask[0]
    golden["outpaint.inpaint.latent"], golden["outpaint.inpaint.noise_mask"] = encode_for_inpaint(vae, padded, pad_mask)
    golden["outpaint.noise_mask.latent"], golden["outpaint.noise_mask.noise_mask"] = \
        encode_with_noise_mask(vae, padded, pad_mask)
    golden["outpaint_even.mask"] = pad_for_outpaint(pixels, 2, 2, 2, 2, 9)[1][0]
    golden["outpaint_top.mask"] = pad_for_outpaint(pixels, 0, 4, 0, 0, 5)[1][0]
    save_file({k: v.detach().clone().contiguous() for k, v in golden.items()}, f"{OUT}/golden.safetensors")
    print("latent", tuple(golden["inpaint.latent"].shape), "mask", tuple(golden["inpaint.noise_mask"].shape))


if __name__ == "__main__":
    main()
