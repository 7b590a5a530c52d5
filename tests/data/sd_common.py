"""What several of kiln's data scripts share, so that it is written once: the
renames from diffusers' and transformers' names to the original single-file
names (the "ldm" UNet and ControlNet, OpenCLIP's text tower), ComfyUI's
discrete sigmas and its "normal" scheduler, its KSampler (euler steps with CFG
in x0 space, the LATENT it returns, VAEDecode), and the helpers that make,
round, check and probe the small random models.

Used by sd2/make_sd2_data.py, sdxl/make_sdxl_data.py,
sdxl/make_sdxl_lora_data.py, sdxl/make_sdxl_controlnet_data.py,
sdxl_refiner/make_refiner_data.py, sdxl_refiner/make_handoff_data.py,
layouts/make_layout_manifests.py and controlnet/make_controlnet_data.py; each
says what it takes from here. Not a script: they import it by putting
tests/data on sys.path, as pix2pix/make_pix2pix_data.py imports
inpaint/make_inpaint_data.py. Every file they write is byte for byte what it
was when each script carried its own copy of this code.

Origin: the name mappings follow the layouts that diffusers 0.27.2's own
converters read (convert_from_ckpt.convert_ldm_unet_checkpoint, with and
without controlnet=True, and convert_open_clip_checkpoint); the scripts check
each against them. The sigmas restate ComfyUI's ModelSamplingDiscrete and
normal_scheduler; the sampler its model_sampling EPS and V_PREDICTION, CFG
guider, sample_euler and KSampler.
"""
import os

import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.numpy import load_file


# ---------------------------------------------------------------- random tiny models

def lookup_table(name):
    """A text tower's token or position embedding table."""
    return name.endswith(("token_embedding.weight", "position_embedding.weight"))


def randomize(module, table=lookup_table):
    """Every parameter random (norm scales around 1), from torch's global
    generator in named_parameters() order, rounded to float16. Tables (the
    names `table` picks) get std 0.5; every other weight std 1/sqrt(fan_in),
    so that activations stay of order 1."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "norm" in name or name.endswith("bias"):
                p.copy_(0.15 * torch.randn_like(p))
            elif table(name):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
            p.copy_(p.half().float())


def round_half(module):
    """Every parameter rounded to float16 in place (kept float32), so that a
    float16 file of it gives exactly the float32 goldens computed with it."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def tiny_vae_ldm(models):
    """The tiny SD 1.x model's VAE (`models` is the shared goldens' models/
    folder) in its single-file names, `first_stage_model.*`, rounded to
    float16."""
    ldm = load_file(os.path.join(models, "sd15_tiny_ldm_fp32.safetensors"))
    return {k: torch.from_numpy(v).half().float() for k, v in ldm.items() if k.startswith("first_stage_model.")}


def tiny_vae(models):
    """The same VAE as diffusers' AutoencoderKL, rounded to float16."""
    vae = AutoencoderKL.from_pretrained(os.path.join(models, "sd15_tiny_diffusers"), subfolder="vae").eval()
    return round_half(vae)


def check_equal(a, b, what):
    """Two state dicts with the same names and equal values (what a converter
    gives back must be exactly what went in)."""
    assert a.keys() == b.keys(), (what, sorted(set(a) ^ set(b))[:8])
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), (what, k)


def record_outputs(model, names, store, prefix="x."):
    """Forward hooks that keep each named submodule's output (the first item
    of a tuple) as store[prefix + name]: the per-block goldens. Returns the
    handles, to remove after the call."""
    def hook(name):
        def save(_module, _args, result):
            store[prefix + name] = (result[0] if isinstance(result, tuple) else result).detach().clone()
        return save

    return [model.get_submodule(name).register_forward_hook(hook(name)) for name in names]


def record_input(module, store, key):
    """A forward hook that keeps the module's first input as store[key] (SDXL's
    y, as the added embedding receives it). Returns the handle."""
    def save(_module, args, _result):
        store[key] = args[0].detach().clone()

    return module.register_forward_hook(save)


# ---------------------------------------------------------------- tokens

def pad_after_eos(ids):
    """Token rows padded with 0 after the first EOS (49407), as ComfyUI's SD2
    tokenizer and SDXL's clip_g tokenizer pad them (SD 1.x's pads with EOS)."""
    out = ids.copy()
    for row in out:
        end = int(np.argmax(row == 49407))
        row[end + 1:] = 0
    return out


# ---------------------------------------------------------------- ComfyUI's sigmas

def comfy_sigmas():
    """ComfyUI's ModelSamplingDiscrete: the 1000 training sigmas of SD's
    scaled-linear betas (0.00085 .. 0.012), computed in float64, kept float32."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def comfy_normal_sigmas(steps):
    """ComfyUI's "normal" scheduler on those sigmas: `steps` sigmas evenly
    spaced in timestep from sigma_max to sigma_min, then 0; and its timestep
    function (a sigma -> the nearest training step, by log sigma)."""
    sigmas = comfy_sigmas()
    log_sigmas = sigmas.log()

    def timestep(sigma):
        return (sigma.log() - log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)

    def sigma(t):
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    start, end = timestep(sigmas[-1:]), timestep(sigmas[:1])  # sigma_max -> 999, sigma_min -> 0
    ts = torch.linspace(start.item(), end.item(), steps)
    return torch.cat([torch.stack([sigma(t) for t in ts]), torch.zeros(1)]), timestep


# ---------------------------------------------------------------- ComfyUI's KSampler

def eps_x0(x, eps, sigma):
    """ComfyUI's model_sampling EPS: the x0 an eps-prediction model's output
    gives, x - eps * sigma (x: the unscaled input)."""
    return x - eps * sigma


def v_x0(x, v, sigma):
    """ComfyUI's model_sampling V_PREDICTION (sigma_data 1): the x0 a
    v-prediction model's output gives, x / (sigma^2 + 1) - v * sigma /
    sqrt(sigma^2 + 1)."""
    return x / (sigma ** 2 + 1) - v * sigma / (sigma ** 2 + 1) ** 0.5


def cfg_denoiser(model, x0, cfg, timestep):
    """The guided x0 for (x, sigma), as ComfyUI's CFG guider gets it: `model`
    (xin, t) -> the UNet's output on the [negative, positive] pair, called on
    cat([x, x]) / sqrt(sigma^2 + 1) at the timestep of sigma (`timestep`, from
    comfy_normal_sigmas) for both rows; `x0` (eps_x0 or v_x0) turns that into
    each row's x0; then uncond + (cond - uncond) * cfg. The scripts differ only
    in `model` (their conditioning) and `x0`, so this is written once."""
    def denoised(x, sigma):
        xc = torch.cat([x, x])
        with torch.no_grad():
            out = model(xc / (sigma ** 2 + 1) ** 0.5, timestep(sigma.view(1)).float().repeat(2))
        x0s = x0(xc, out, sigma)
        return x0s[0:1] + (x0s[1:2] - x0s[0:1]) * cfg

    return denoised


def euler(denoised, x, sigmas, store=None, prefix=""):
    """ComfyUI's sample_euler (no churn) from x over `sigmas`: each step's
    guided x0, denoised(x, sigma), kept as store[prefix + "denoised.N"] (the
    per-step goldens; not kept without a store), then x += (x - x0) / sigma *
    (sigma_next - sigma). Returns the final x."""
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        d = denoised(x, s)
        if store is not None:
            store[f"{prefix}denoised.{i}"] = d
        x = x + (x - d) / s * (sigmas[i + 1] - s)
    return x


def ksampler(denoised, noise, sigmas, scaling, store, prefix="run."):
    """ComfyUI's KSampler with euler on an empty latent at full denoise: x
    starts at noise * sqrt(1 + sigma0^2) (max denoise: the empty latent is
    zero), the euler steps (each guided x0 as store[prefix + "denoised.N"]),
    and the LATENT it returns: the final x / `scaling` (process_latent_out)."""
    x = noise * (1.0 + sigmas[0] ** 2) ** 0.5
    return euler(denoised, x, sigmas, store, prefix) / scaling


def decode_image(vae, latent_out):
    """ComfyUI's VAEDecode of a LATENT with a diffusers AutoencoderKL: the
    (1, H, W, 3) image in [0, 1], clamp((decode + 1) / 2)."""
    with torch.no_grad():
        image = vae.decode(latent_out).sample
    return torch.clamp((image + 1.0) / 2.0, 0.0, 1.0).permute(0, 2, 3, 1)


# ---------------------------------------------------------------- UNet and ControlNet names

RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
          ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]


def resnet_part(rest):
    """A name inside diffusers' ResnetBlock2D -> the original ResBlock's."""
    for a, b in RESNET:
        if rest.startswith(a):
            return b + rest[len(a):]
    raise ValueError(rest)


def unet_name(k, layers_per_block, up_attention=None):
    """A diffusers UNet2DConditionModel name (or one of the UNet parts of a
    ControlNetModel) -> the original (ldm/sgm openaimodel) name without its
    prefix, for any block layout: time_embed.{0,2}, label_emb.0.{0,2} (the
    added embedding of SDXL's "text_time"), input_blocks.0 is conv_in, then
    each down level's layers_per_block (resnet, transformer) blocks and its
    downsampler (op); middle_block.0/1/2; each up level's layers_per_block + 1
    blocks, the last with the upsampler after the resnet and the transformer,
    if the level has one (up_attention[level]; only the up blocks need it);
    out.0/out.2."""
    L = layers_per_block
    p = k.split(".")
    if p[0] == "time_embedding":
        return f"time_embed.{0 if p[1] == 'linear_1' else 2}.{p[2]}"
    if p[0] == "add_embedding":
        return f"label_emb.0.{0 if p[1] == 'linear_1' else 2}.{p[2]}"
    if p[0] == "conv_in":
        return f"input_blocks.0.0.{p[1]}"
    if p[0] == "conv_norm_out":
        return f"out.0.{p[1]}"
    if p[0] == "conv_out":
        return f"out.2.{p[1]}"
    if p[0] == "down_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "downsamplers":
            return f"input_blocks.{(i + 1) * (L + 1)}.0.op.{'.'.join(p[5:])}"
        idx, rest = 1 + i * (L + 1) + int(p[3]), ".".join(p[4:])
        return f"input_blocks.{idx}.0.{resnet_part(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    if p[0] == "mid_block":
        kind, j, rest = p[1], int(p[2]), ".".join(p[3:])
        return f"middle_block.{2 * j}.{resnet_part(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    if p[0] == "up_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "upsamplers":
            return f"output_blocks.{i * (L + 1) + L}.{2 if up_attention[i] else 1}.conv.{'.'.join(p[5:])}"
        idx, rest = i * (L + 1) + int(p[3]), ".".join(p[4:])
        return f"output_blocks.{idx}.0.{resnet_part(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    raise ValueError(k)


def ldm_unet_name(k, config):
    """A diffusers UNet name -> its `model.diffusion_model.*` name; the block
    layout is read off the UNet's config (layers_per_block, and which
    up_block_types have attention)."""
    up_attention = ["CrossAttn" in t for t in config["up_block_types"]]
    return "model.diffusion_model." + unet_name(k, config["layers_per_block"], up_attention)


def ldm_unet(sd, config):
    """A diffusers UNet state dict in the original `model.diffusion_model.*` names."""
    return {ldm_unet_name(k, config): v for k, v in sd.items()}


def ldm_controlnet(sd, layers_per_block):
    """A diffusers ControlNetModel state dict in the original `control_model.*`
    names: the hint encoder as input_hint_block.{0,2,...,14}, the zero
    convolutions as zero_convs.N.0 and middle_block_out.0, and the UNet's
    encoder half (time_embed, label_emb.0 if it has SDXL's added embedding,
    input_blocks, middle_block) named as in the UNet."""
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "controlnet_cond_embedding":
            if p[1] == "conv_in":
                n = f"input_hint_block.0.{p[2]}"
            elif p[1] == "conv_out":
                n = f"input_hint_block.14.{p[2]}"
            else:
                n = f"input_hint_block.{2 + 2 * int(p[2])}.{p[3]}"
        elif p[0] == "controlnet_down_blocks":
            n = f"zero_convs.{p[1]}.0.{p[2]}"
        elif p[0] == "controlnet_mid_block":
            n = f"middle_block_out.0.{p[1]}"
        elif p[0] in ("time_embedding", "add_embedding", "conv_in", "down_blocks", "mid_block"):
            n = unet_name(k, layers_per_block)
        else:
            raise ValueError(k)
        out["control_model." + n] = v
    return out


# ---------------------------------------------------------------- OpenCLIP text towers

OPEN_CLIP_LAYER = [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                   ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")]


def open_clip_sources(layers):
    """OpenCLIP text-tower name (without prefix) -> the transformers
    CLIPTextModel names it is made of, for a tower of `layers` resblocks: one
    name, or for attn.in_proj_weight/bias the q, k and v projections that
    OpenCLIP fuses into it, in that order. text_projection and logit_scale are
    left to the scripts, whose files carry them differently."""
    src = {"token_embedding.weight": ("text_model.embeddings.token_embedding.weight",),
           "positional_embedding": ("text_model.embeddings.position_embedding.weight",),
           "ln_final.weight": ("text_model.final_layer_norm.weight",),
           "ln_final.bias": ("text_model.final_layer_norm.bias",)}
    for i in range(layers):
        a, b = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for o, t in OPEN_CLIP_LAYER:
            for part in ["weight", "bias"]:
                src[f"{a}{o}.{part}"] = (f"{b}{t}.{part}",)
        for part in ["weight", "bias"]:
            src[f"{a}attn.in_proj_{part}"] = tuple(f"{b}self_attn.{x}_proj.{part}" for x in "qkv")
    return src


def open_clip(sd, layers, prefix):
    """transformers CLIPTextModel tensors -> OpenCLIP's names under `prefix`
    (`cond_stage_model.model.` in SD 2.x files, `conditioner.embedders.1.model.`
    for SDXL's clip_g), q, k and v fused into in_proj as those files store
    them; without text_projection and logit_scale."""
    return {prefix + o: sd[t[0]] if len(t) == 1 else torch.cat([sd[x] for x in t])
            for o, t in open_clip_sources(layers).items()}
