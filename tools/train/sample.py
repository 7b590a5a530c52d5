"""Text-to-image with ComfyUI's semantics (KSampler euler/normal, CFG), on diffusers/transformers modules.

This is what kiln's `gen` computes, so goldens made here are what kiln must reproduce:
- sigma table: ldm's scaled-linear betas in float64, stored float32; normal schedule = sigmas at
  linspace(999, 0, steps) by log-linear interpolation, then 0;
- start x = noise * sqrt(1 + sigma0^2); UNet input x / sqrt(sigma^2 + 1) at the integer timestep whose
  log sigma is nearest; denoised = x - eps * sigma; CFG in denoised space, one UNet batch [uncond, cond];
- Euler: x += (x - denoised) / sigma * (sigma_next - sigma); the decoder input is x / scaling_factor.
"""
import torch

import models


def sigma_table():
    acp = models.alphas_cumprod()
    return (((1.0 - acp) / acp) ** 0.5).float()  # [1000], float32 like ComfyUI's buffer


def timestep_of(sigma, log_sigmas):
    """Index of the training sigma nearest in log space."""
    return (torch.log(sigma) - log_sigmas).abs().argmin()


def sigma_at(t, log_sigmas):
    low, high = int(torch.floor(t)), int(torch.ceil(t))
    w = t - low
    return torch.exp((1.0 - w) * log_sigmas[low] + w * log_sigmas[high])


def normal_sigmas(steps):
    """ComfyUI's 'normal' scheduler: steps + 1 sigmas ending in 0."""
    sigmas = sigma_table()
    log_sigmas = sigmas.log()
    start = timestep_of(sigmas[-1], log_sigmas).float()
    end = timestep_of(sigmas[0], log_sigmas).float()
    ts = torch.linspace(start, end, steps)
    return torch.stack([sigma_at(t, log_sigmas) for t in ts] + [torch.tensor(0.0)])


def noise_for(seed, batch=1, h=8, w=8):
    torch.manual_seed(seed)
    return torch.randn([batch, 4, h, w])


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts):
    ids = models.tokenize(tokenizer, prompts)
    return ids, text_encoder(ids)[0]


@torch.no_grad()
def euler_cfg(unet, cond, uncond, noise, steps=20, cfg=7.0, record=None):
    """Samples a batch; cond/uncond [B, 77, D], noise [B, 4, h, w]. Returns the final x (scaled latent).

    record, when a dict, receives the sigmas and each step's UNet input, timestep and eps.
    """
    sigmas = normal_sigmas(steps)
    log_sigmas = sigma_table().log()
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)
    if record is not None:
        record["sigmas"] = sigmas
        record["x_init"] = x.clone()
    context = torch.cat([uncond, cond])
    for i in range(steps):
        sigma = sigmas[i]
        t = timestep_of(sigma, log_sigmas).float()
        xc = torch.cat([x, x]) / torch.sqrt(sigma ** 2 + 1.0)
        eps = unet(xc, t.expand(xc.shape[0]), context).sample
        denoised = torch.cat([x, x]) - eps * sigma
        d_uncond, d_cond = denoised.chunk(2)
        denoised = d_uncond + (d_cond - d_uncond) * cfg
        x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
        if record is not None:
            record.setdefault("xc", []).append(xc)
            record.setdefault("t", []).append(t)
            record.setdefault("eps", []).append(eps)
    return x


@torch.no_grad()
def decode(vae, x, scaling_factor):
    """Scaled latent -> (decoder input, float image [B, 64, 64, 3] in [0, 1], uint8 image) like SaveImage."""
    latent = x / scaling_factor
    image = vae.decode(latent).sample
    image = torch.clamp((image + 1.0) / 2.0, 0.0, 1.0).permute(0, 2, 3, 1)
    image_uint8 = torch.clamp(255.0 * image, 0, 255).to(torch.uint8)  # truncation, as SaveImage does
    return latent, image, image_uint8


def check_against_comfyui(goldens="/work/shared/goldens"):
    """Replays the goldens' ComfyUI euler/normal run on their tiny UNet and compares x_final."""
    import os

    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    run = load_file(os.path.join(goldens, "comfyui/runs/txt2img_euler_normal_s8.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(goldens, "models/sd15_tiny_diffusers/unet")).eval()
    b = run["noise"].shape[0]
    record = {}
    x = euler_cfg(unet, run["positive.cond"].expand(b, -1, -1), run["negative.cond"].expand(b, -1, -1),
                  run["noise"], steps=8, cfg=5.0, record=record)
    rel = lambda a, r: ((a - r).norm() / r.norm()).item()
    print(f"sigmas rel {rel(record['sigmas'], run['sigmas']):.2e}  x_init rel {rel(record['x_init'], run['x_init']):.2e}"
          f"  x_final rel {rel(x, run['x_final']):.2e}")
    return rel(x, run["x_final"]) < 1e-5


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(0 if check_against_comfyui() else 1)
