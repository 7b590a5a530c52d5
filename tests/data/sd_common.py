"""What several of kiln's data scripts share, so that it is written once: the
renames from diffusers' and transformers' names to the original single-file
names (the "ldm" UNet and ControlNet, OpenCLIP's text tower, bigG's as SDXL
and refiner files store it), ComfyUI's discrete sigmas and its "normal"
scheduler, its KSampler (euler steps with CFG in x0 space, the LATENT it
returns, VAEDecode), the helpers that make, round, check and probe the small
random models, those that write them (float16 safetensors, json configs,
diffusers folders, goldens), and the goldens that SDXL's base and refiner
scripts both take of their text tower bigG and of their UNet with the added
"text_time" embedding (its size embedding, the UNet call, a KSampler run).

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
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (convert_ldm_unet_checkpoint,
                                                                   convert_ldm_vae_checkpoint,
                                                                   convert_open_clip_checkpoint)
from safetensors.numpy import load_file
from safetensors.torch import save_file
from transformers import T5EncoderModel
from transformers import CLIPTextConfig


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


def tiny_vae_config(models, scaling):
    """That VAE's diffusers config with `scaling` as its latent scaling factor
    (SDXL's 0.13025 where the tiny model has SD 1.x's), for a folder of it."""
    with open(os.path.join(models, "sd15_tiny_diffusers", "vae", "config.json")) as f:
        vae_config = json.load(f)
    return dict(vae_config, scaling_factor=scaling)


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


# ---------------------------------------------------------------- writing models and goldens

# what transformers and diffusers write in their safetensors headers (transformers requires it)
PT = {"format": "pt"}


def state(module):
    """A module's weights, cloned, without transformers' text_model.embeddings.
    position_ids (a buffer no file carries)."""
    return {k: v.clone() for k, v in module.state_dict().items() if k != "text_model.embeddings.position_ids"}


def save_half(sd, path, metadata=None):
    """A state dict stored as float16 (its values are float16 already, so the
    file gives back exactly what the goldens were computed with)."""
    save_file({k: v.half().contiguous() for k, v in sd.items()}, path, metadata=metadata)


def write_json(obj, path):
    """A config as the scripts write them: json with indent 1."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def save_t5_folder(t5, config, folder):
    """A T5EncoderModel as transformers saves one (config.json,
    model.safetensors in float16), with one embedding table: its
    encoder.embed_tokens is shared.weight (tied), as T5 files store it;
    checked to load back as it is."""
    os.makedirs(folder, exist_ok=True)
    sd = {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_half(sd, f"{folder}/model.safetensors", metadata=PT)
    write_json({"architectures": ["T5EncoderModel"], "model_type": "t5", **config}, f"{folder}/config.json")
    back = T5EncoderModel.from_pretrained(folder).eval()
    for k, v in t5.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def euler_scheduler_config(prediction_type):
    """The scheduler_config.json of a folder: diffusers' EulerDiscreteScheduler
    on SD's scaled-linear betas (those of comfy_sigmas), for `prediction_type`
    ("epsilon" or "v_prediction")."""
    return {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": prediction_type,
            "steps_offset": 1, "timestep_spacing": "leading"}


def write_diffusers_folder(folder, unet_sd, unet_config, vae_sd, vae_config, encoders, scheduler_config,
                           model_index, load_back):
    """A diffusers folder, made afresh, as diffusers ships the SDXL pipelines:
    unet/ (`unet_config`, the constructor's arguments), vae/, one subfolder per
    text encoder (`encoders`: (subfolder, transformers class, state dict,
    config) each), scheduler/ and model_index.json; the weights float16, with
    {"format": "pt"} in their headers as transformers and diffusers write them
    (transformers' from_pretrained requires it). The UNet and the encoders
    named in `load_back` are then loaded back and must give the same weights."""
    shutil.rmtree(folder, ignore_errors=True)
    for part in ["unet", "vae", *[name for name, _, _, _ in encoders], "scheduler"]:
        os.makedirs(f"{folder}/{part}")
    save_half(unet_sd, f"{folder}/unet/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "UNet2DConditionModel", **unet_config}, f"{folder}/unet/config.json")
    save_half(vae_sd, f"{folder}/vae/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json(vae_config, f"{folder}/vae/config.json")
    for name, cls, sd, config in encoders:
        save_half(sd, f"{folder}/{name}/model.safetensors", metadata=PT)
        write_json({"architectures": [cls.__name__], "model_type": "clip_text_model", **config},
                   f"{folder}/{name}/config.json")
    write_json(scheduler_config, f"{folder}/scheduler/scheduler_config.json")
    write_json(model_index, f"{folder}/model_index.json")
    # the folder loads back to the same weights
    check_equal(state(UNet2DConditionModel.from_pretrained(f"{folder}/unet")), unet_sd, "unet folder")
    for name, cls, sd, _ in encoders:
        if name in load_back:
            check_equal(state(cls.from_pretrained(f"{folder}/{name}")), sd, f"{name} folder")


def check_ldm_unet_vae(single, unet, unet_sd, vae, vae_sd):
    """Upstream's own converters (convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint) must give back from the single file exactly
    the UNet's and the VAE's diffusers weights. Each gets a copy: they pop
    what they read."""
    back = convert_ldm_unet_checkpoint(dict(single), dict(unet.config), extract_ema=False)
    check_equal(back, unet_sd, "unet")
    back = convert_ldm_vae_checkpoint(dict(single), dict(vae.config))
    check_equal(back, vae_sd, "vae")


def center_margins(old_width, old_height, width, height):
    """common_upscale's crop "center": the (x, y) margins cut from each side
    of an old_width x old_height picture for the aspect ratio of width x
    height (rounded half to even, as Python's round)."""
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return x, y


def comfy_fit(image, width, height, mode="nearest-exact"):
    """ComfyUI's common_upscale(image, width, height, mode, "center") on
    (N,C,H,W): cut to the target's aspect ratio, then torch's interpolate."""
    old_width, old_height = image.shape[-1], image.shape[-2]
    x, y = center_margins(old_width, old_height, width, height)
    s = image.narrow(-2, y, old_height - y * 2).narrow(-1, x, old_width - x * 2)
    return torch.nn.functional.interpolate(s, size=(height, width), mode=mode)


def save_goldens(g, path):
    """The goldens as one safetensors file, each tensor cloned contiguous (a
    view is stored on its own, not with what it views), and their shapes
    printed."""
    save_file({k: v.clone().contiguous() for k, v in g.items()}, path)
    print({k: tuple(v.shape) for k, v in g.items()})


def save_float_goldens(g, path, source):
    """The goldens, every one finite, as float32 in one safetensors file
    with {"source": source} in its header, readable by all; their names
    and shapes printed."""
    for k in g:
        assert torch.isfinite(g[k]).all(), k
    g = {k: v.float().clone().contiguous() for k, v in g.items()}
    save_file(g, path, metadata={"source": source})
    os.chmod(path, 0o644)
    for k in sorted(g):
        print(f"  {k} {tuple(g[k].shape)}")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def rel_l2(a, b):
    """|a - b| / |b| over all elements, a Python float."""
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


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

def comfy_sigmas(betas=None):
    """ComfyUI's ModelSamplingDiscrete: the 1000 training sigmas of SD's
    scaled-linear betas (0.00085 .. 0.012), or of the float64 `betas` given,
    computed in float64, kept float32."""
    if betas is None:
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def comfy_normal_sigmas(steps, betas=None):
    """ComfyUI's "normal" scheduler on those sigmas (comfy_sigmas(betas)):
    `steps` sigmas evenly spaced in timestep from sigma_max to sigma_min,
    then 0; and its timestep function (a sigma -> the nearest training step,
    by log sigma)."""
    sigmas = comfy_sigmas(betas)
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


def open_clip_g(sd, layers, prefix):
    """transformers CLIPTextModelWithProjection names -> OpenCLIP bigG's under
    `prefix`, as SDXL files store clip_g (`conditioner.embedders.1.model.`) and
    refiner files their one text tower (`conditioner.embedders.0.model.`): q,
    k, v fused into in_proj (open_clip), text_projection transposed (OpenCLIP
    computes x @ it), and the logit scale the files carry."""
    out = open_clip(sd, layers, prefix)
    out[prefix + "text_projection"] = sd["text_projection.weight"].t().contiguous()
    # the logit scale the files carry (log 100); the text tower does not use it
    out[prefix + "logit_scale"] = torch.tensor(4.6052).half().float()
    return out


def check_open_clip_g(single, prefix, config, g_sd):
    """Upstream's convert_open_clip_checkpoint (with projection, from a config
    folder of `config`) must give back from the single file exactly bigG's
    transformers weights `g_sd`."""
    with tempfile.TemporaryDirectory() as d:
        CLIPTextConfig(**config).save_pretrained(d)
        back = state(convert_open_clip_checkpoint(dict(single), d, prefix=prefix, has_projection=True,
                                                  local_files_only=True))
    check_equal(back, g_sd, "clip_g")


# ---------------------------------------------------------------- SDXL's goldens (base and refiner)

def clip_g_goldens(te_g, g):
    """bigG's goldens from g["g.input_ids"]: g.hidden, the penultimate hidden
    state, hidden_states[-2], without the final layer norm (what ComfyUI's SDXL
    and refiner clip models and diffusers' pipelines read), and g.pooled, its
    text_embeds; checked to be the last layer through the final layer norm at
    the first EOS, times the projection."""
    with torch.no_grad():
        out_g = te_g(g["g.input_ids"], output_hidden_states=True)
    g["g.hidden"] = out_g.hidden_states[-2]
    g["g.pooled"] = out_g.text_embeds
    # pooled: the last layer through the final layer norm at the first EOS, projected
    eos = (g["g.input_ids"] == 49407).int().argmax(dim=-1)
    with torch.no_grad():
        pooled = te_g.text_model.final_layer_norm(out_g.hidden_states[-1])[torch.arange(len(eos)), eos]
    assert torch.allclose(pooled @ te_g.text_projection.weight.t(), g["g.pooled"], atol=1e-6)


def size_embedding(time_ids, dim):
    """The added numbers as ComfyUI's SDXL and SDXLRefiner encode_adm embed
    them: timestep_embedding of each (`dim` wide, cos half then sin half),
    flattened per row."""
    freqs = torch.exp(-np.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    args = time_ids.reshape(-1, 1) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).reshape(time_ids.shape[0], -1)


def sdxl_unet_goldens(unet, blocks, g, context, time_ids, time_dim):
    """The UNet's goldens on two rows, for a UNet with SDXL's added "text_time"
    embedding: sample (torch's global generator), timesteps [999, 500],
    encoder_hidden_states (`context`), text_embeds (g.pooled), time_ids (the
    rows of added numbers), noise_pred, x.<block> for `blocks`, and y, what
    add_embedding receives; y checked against ComfyUI's encode_adm restated,
    text_embeds then size_embedding(time_ids) (`time_dim` wide)."""
    g["sample"] = torch.randn(2, 4, 8, 8)
    g["timesteps"] = torch.tensor([999.0, 500.0])
    g["encoder_hidden_states"] = context
    g["text_embeds"] = g["g.pooled"]
    g["time_ids"] = torch.tensor(time_ids)

    handles = record_outputs(unet, blocks, g)
    handles.append(record_input(unet.add_embedding, g, "y"))
    with torch.no_grad():
        g["noise_pred"] = unet(g["sample"], g["timesteps"], encoder_hidden_states=g["encoder_hidden_states"],
                               added_cond_kwargs={"text_embeds": g["text_embeds"], "time_ids": g["time_ids"]}).sample
    for h in handles:
        h.remove()
    assert g["y"].shape == (2, g["text_embeds"].shape[1] + g["time_ids"].shape[1] * time_dim)
    assert torch.allclose(g["y"], torch.cat([g["text_embeds"], size_embedding(g["time_ids"], time_dim)], dim=1),
                          atol=1e-6)


def sdxl_run(unet, vae, g, context, time_ids, scaling, steps, cfg):
    """run.*: ComfyUI's KSampler (euler, normal scheduler, eps-prediction, CFG
    in x0 space, seed 42, one 8x8 latent) with a UNet with SDXL's added
    embedding, then VAEDecode: rows 0 and 1 of `context` and of g.pooled are
    the positive and the negative (run.positive, run.negative,
    run.positive_pooled, run.negative_pooled); `time_ids` are the added
    numbers of the pair the UNet is called on, [negative, positive] (the
    uncond row first). Also run.noise (torch.manual_seed(42) randn),
    run.sigmas, run.denoised.N, run.latent_out and run.image."""
    sigmas, timestep = comfy_normal_sigmas(steps)
    positive, negative = context[0:1], context[1:2]
    positive_pooled, negative_pooled = g["g.pooled"][0:1], g["g.pooled"][1:2]
    noise = torch.randn(1, 4, 8, 8, generator=torch.manual_seed(42))
    g.update({"run.positive": positive, "run.negative": negative, "run.positive_pooled": positive_pooled,
              "run.negative_pooled": negative_pooled, "run.noise": noise, "run.sigmas": sigmas})
    # the uncond row first
    pair, pooled = torch.cat([negative, positive]), torch.cat([negative_pooled, positive_pooled])

    def model(xin, t):
        """The UNet's eps on the [negative, positive] pair, with the added conditioning."""
        return unet(xin, t, encoder_hidden_states=pair,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample

    g["run.latent_out"] = ksampler(cfg_denoiser(model, eps_x0, cfg, timestep), noise, sigmas, scaling, g)
    g["run.image"] = decode_image(vae, g["run.latent_out"])
