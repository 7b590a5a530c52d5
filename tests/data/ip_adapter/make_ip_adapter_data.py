"""Writes kiln's IP-Adapter test data: a small random CLIP vision tower and a
small random IP-Adapter for the tiny SD 1.x model (tests/data/tiny), in the
layouts people download (h94/IP-Adapter's image_encoder/model.safetensors
and ip-adapter_sd15.safetensors), and what upstream code computes with them.

Origin: transformers 4.40 (CLIPVisionModelWithProjection) and diffusers
0.27.2 (UNet2DConditionModel._load_ip_adapter_weights, the same call
load_ip_adapter makes) on PyTorch (CPU, float32); the picture preprocessing
restates ComfyUI's clip_preprocess (comfy/clip_vision.py: the shorter side
scaled to 224 by torch's antialiased bicubic interpolate, centre crop,
rounded to 1/255, CLIP's mean and std), which CLIPVisionEncode and the
IPAdapter nodes run.

  clip_vision_tiny.safetensors  a ViT with 32-wide, 3-layer, 4-head
      transformer (GELU), 14-pixel patches of 224x224 pictures and a 24-wide
      projection: transformers' names (vision_model.*, visual_projection)
  ip_adapter_sdxl_tiny.safetensors  a plain IP-Adapter for the tiny SDXL
      model (tests/data/sdxl)
  ip_adapter_plus_tiny.safetensors  an IP-Adapter Plus: image_proj.* its
      Resampler (latents, proj_in/out, norm_out, layers.N.0.{norm1,norm2,
      to_q,to_kv,to_out}, layers.N.1.{0,1,3}: 4 layers, 8 queries 32 wide,
      one 64-wide head) and ip_adapter.* as below
  ip_adapter_tiny.safetensors  image_proj.{proj,norm}.* (4 tokens of the
      tiny UNet's 32-wide context from the 24-wide image embedding) and
      ip_adapter.N.to_{k,v}_ip.weight for the UNet's 6 cross-attentions,
      numbered 1, 3, 5, ... in diffusers' processor order (down, up, mid)
  picture_251x233.png  a random picture (smooth, so the PNG is small)
  golden.safetensors
      pixels.big, pixels.small: clip_preprocess of the picture (a downscale)
          and of controlnet/hint_37x23.png (an upscale), (1,3,224,224)
      resize.down, resize.up: torch's antialiased bicubic interpolate of
          hint_37x23.png to 17x11 and 80x50, (1,3,h,w)
      image_embeds, penultimate: the tower on pixels.big: the projected
          pooled output (1,24) and the second-to-last layer's hidden states
          (1,257,32)
      ip_tokens: image_proj of [zeros, image_embeds] (2,4,32), the
          unconditional row first as the IPAdapter nodes make it
      sample, timesteps, encoder_hidden_states: the tiny UNet golden's
          inputs; scale; noise_pred: the UNet with the adapter at that scale,
          row 0 given the zero embedding and row 1 the picture's
      sdxl.*: the same for ip_adapter_sdxl_tiny.safetensors, a plain
          IP-Adapter for tests/data/sdxl's tiny SDXL UNet (64-wide context,
          transformers two deep), on that UNet golden's sample, timesteps,
          encoder_hidden_states and y (its added text_embeds and time_ids)
      plus.penultimate: the tower's penultimate hidden states of a black
          224x224 picture and of the picture (2,257,32); plus.ip_tokens: the
          Resampler on them (2,8,32); plus.noise_pred: the UNet with the Plus
          adapter at the scale, row 0 given the black picture's tokens

Run from the repository root with torch, transformers and diffusers
installed and the project's shared goldens at ../shared/goldens:
  python3 tests/data/ip_adapter/make_ip_adapter_data.py
"""
import os

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.numpy import load_file
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
MODEL = os.path.join(SHARED, "models", "sd15_tiny_diffusers")
OUT = "tests/data/ip_adapter"
SCALE = 0.7
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def clip_preprocess(image, size=224):
    """ComfyUI's clip_preprocess with crop=True on (1,H,W,3) in [0,1]."""
    mean = torch.tensor(MEAN, dtype=image.dtype)
    std = torch.tensor(STD, dtype=image.dtype)
    image = image.movedim(-1, 1)
    if not (image.shape[2] == size and image.shape[3] == size):
        scale = size / min(image.shape[2], image.shape[3])
        scale_size = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        image = torch.nn.functional.interpolate(image, size=scale_size, mode="bicubic", antialias=True)
        h = (image.shape[2] - size) // 2
        w = (image.shape[3] - size) // 2
        image = image[:, :, h:h + size, w:w + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    return (image - mean.view([3, 1, 1])) / std.view([3, 1, 1])


def load_picture(path):
    """ComfyUI's LoadImage: uint8 RGB / 255 as (1,H,W,3)."""
    a = np.array(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    return torch.from_numpy(a)[None]


def make_picture(path):
    rng = np.random.default_rng(20261127)
    y, x = np.mgrid[0:233, 0:251].astype(np.float64)
    planes = []
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.09, 3)
        planes.append(127.5 + 100 * np.sin(fx * x + ph * 7) * np.cos(fy * y) + rng.integers(-12, 13, x.shape))
    a = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path, optimize=True)


def randomize(module, std=0.2):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (std if p.ndim > 1 else 0.05))


def random_ip_layers(unet, ctx):
    """ip_adapter.N.to_{k,v}_ip for every cross-attention of the UNet, N odd
    in diffusers' processor order, as its loader numbers them."""
    layers, key_id = {}, 1
    for name in unet.attn_processors.keys():
        if name.endswith("attn2.processor"):
            hidden_size = unet.get_submodule(name[:-len(".processor")]).to_q.out_features
            layers[f"{key_id}.to_k_ip.weight"] = torch.randn(hidden_size, ctx) * 0.3
            layers[f"{key_id}.to_v_ip.weight"] = torch.randn(hidden_size, ctx) * 0.3
            key_id += 2
    return layers


def load_with_adapter(unet, image_proj, ip_layers, path):
    """diffusers' loader on the UNet, every adapter at SCALE; the file as h94 writes it."""
    unet._load_ip_adapter_weights({"image_proj": image_proj, "ip_adapter": ip_layers})
    for proc in unet.attn_processors.values():
        if hasattr(proc, "scale"):
            proc.scale = [SCALE]
    flat = {f"image_proj.{k}": v for k, v in image_proj.items()}
    flat.update({f"ip_adapter.{k}": v for k, v in ip_layers.items()})
    save_file({k: v.contiguous() for k, v in flat.items()}, path)


def sdxl_goldens(embeds, g):
    """A plain IP-Adapter for the tiny SDXL UNet (transformers two deep, so
    the numbering walks blocks within a transformer), on the SDXL UNet
    golden's inputs (its y from the pooled text and sizes)."""
    unet = UNet2DConditionModel.from_pretrained("tests/data/sdxl/tiny_sdxl_diffusers", subfolder="unet").eval()
    ctx = unet.config.cross_attention_dim
    image_proj = {"proj.weight": torch.randn(4 * ctx, embeds.shape[-1]) * 0.3, "proj.bias": torch.randn(4 * ctx) * 0.05,
                  "norm.weight": 1 + 0.1 * torch.randn(ctx), "norm.bias": torch.randn(ctx) * 0.05}
    load_with_adapter(unet, image_proj, random_ip_layers(unet, ctx), os.path.join(OUT, "ip_adapter_sdxl_tiny.safetensors"))
    x = load_file("tests/data/sdxl/golden.safetensors")
    for k in ("sample", "timesteps", "encoder_hidden_states", "y"):
        g["sdxl." + k] = torch.from_numpy(x[k])
    with torch.no_grad():
        g["sdxl.ip_tokens"] = unet.encoder_hid_proj([embeds])[0][:, 0]
        g["sdxl.noise_pred"] = unet(g["sdxl.sample"], g["sdxl.timesteps"], g["sdxl.encoder_hidden_states"],
                                    added_cond_kwargs={"text_embeds": torch.from_numpy(x["text_embeds"]),
                                                       "time_ids": torch.from_numpy(x["time_ids"]),
                                                       "image_embeds": [embeds]}).sample


def plus_goldens(tower, unet, sample, timesteps, context, g):
    """An IP-Adapter Plus for the tiny UNet: its Resampler (4 layers, 8 queries,
    one 64-wide head, the width diffusers' loader assumes) reads the tower's
    penultimate hidden states; the negative rows get those of a black
    picture, as the IPAdapter nodes encode one for Plus models."""
    ctx, hidden = unet.config.cross_attention_dim, 32
    E = tower.config.hidden_size
    image_proj = {"latents": torch.randn(1, 8, hidden) * 0.5,
                  "proj_in.weight": torch.randn(hidden, E) * 0.2, "proj_in.bias": torch.randn(hidden) * 0.05,
                  "proj_out.weight": torch.randn(ctx, hidden) * 0.2, "proj_out.bias": torch.randn(ctx) * 0.05,
                  "norm_out.weight": 1 + 0.1 * torch.randn(ctx), "norm_out.bias": torch.randn(ctx) * 0.05}
    for i in range(4):  # the depth diffusers' loader builds
        p = f"layers.{i}."
        for norm in ("0.norm1", "0.norm2", "1.0"):
            image_proj[p + norm + ".weight"] = 1 + 0.1 * torch.randn(hidden)
            image_proj[p + norm + ".bias"] = torch.randn(hidden) * 0.05
        image_proj[p + "0.to_q.weight"] = torch.randn(64, hidden) * 0.2
        image_proj[p + "0.to_kv.weight"] = torch.randn(128, hidden) * 0.2
        image_proj[p + "0.to_out.weight"] = torch.randn(hidden, 64) * 0.2
        image_proj[p + "1.1.weight"] = torch.randn(4 * hidden, hidden) * 0.2
        image_proj[p + "1.3.weight"] = torch.randn(hidden, 4 * hidden) * 0.2
    ip_layers = random_ip_layers(unet, ctx)
    plus = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    load_with_adapter(plus, image_proj, ip_layers, os.path.join(OUT, "ip_adapter_plus_tiny.safetensors"))
    black = clip_preprocess(torch.zeros(1, 224, 224, 3))
    with torch.no_grad():
        hidden_states = tower(pixel_values=torch.cat([black, g["pixels.big"]]), output_hidden_states=True)
        embeds = hidden_states.hidden_states[-2][:, None]  # (2,1,257,E)
        g["plus.penultimate"] = embeds[:, 0]
        g["plus.ip_tokens"] = plus.encoder_hid_proj([embeds])[0][:, 0]
        g["plus.noise_pred"] = plus(sample, timesteps, context, added_cond_kwargs={"image_embeds": [embeds]}).sample


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20261127)
    g = {}

    picture = os.path.join(OUT, "picture_251x233.png")
    make_picture(picture)
    pixels = clip_preprocess(load_picture(picture))
    g["pixels.big"] = pixels
    small = load_picture("tests/data/controlnet/hint_37x23.png")
    g["pixels.small"] = clip_preprocess(small)
    for name, size in (("resize.down", (11, 17)), ("resize.up", (50, 80))):
        g[name] = torch.nn.functional.interpolate(small.movedim(-1, 1), size=size, mode="bicubic", antialias=True)

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=224, patch_size=14, projection_dim=24, hidden_act="gelu",
                              layer_norm_eps=1e-5)
    tower = CLIPVisionModelWithProjection(config).eval()
    randomize(tower, 0.1)
    with torch.no_grad():
        out = tower(pixel_values=pixels, output_hidden_states=True)
    g["image_embeds"] = out.image_embeds
    g["penultimate"] = out.hidden_states[-2]
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()
               if not k.endswith("position_ids")}, os.path.join(OUT, "clip_vision_tiny.safetensors"))

    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet").eval()
    ctx = unet.config.cross_attention_dim
    image_proj = {
        "proj.weight": torch.randn(4 * ctx, config.projection_dim) * 0.3,
        "proj.bias": torch.randn(4 * ctx) * 0.05,
        "norm.weight": 1 + 0.1 * torch.randn(ctx),
        "norm.bias": torch.randn(ctx) * 0.05,
    }
    load_with_adapter(unet, image_proj, random_ip_layers(unet, ctx), os.path.join(OUT, "ip_adapter_tiny.safetensors"))

    u = load_file(os.path.join(SHARED, "diffusers", "unet.safetensors"))
    sample = torch.from_numpy(u["sample"])
    timesteps = torch.from_numpy(u["timesteps"])
    context = torch.from_numpy(u["encoder_hidden_states"])
    embeds = torch.cat([torch.zeros_like(out.image_embeds), out.image_embeds])[:, None]  # (2,1,24)
    with torch.no_grad():
        g["ip_tokens"] = unet.encoder_hid_proj([embeds])[0][:, 0]
        g["noise_pred"] = unet(sample, timesteps, context, added_cond_kwargs={"image_embeds": [embeds]}).sample
    g["sample"], g["timesteps"], g["encoder_hidden_states"] = sample, timesteps.float(), context
    g["scale"] = torch.tensor([SCALE])
    plus_goldens(tower, unet, sample, timesteps, context, g)
    sdxl_goldens(embeds, g)
    save_file({k: v.contiguous().float() for k, v in g.items()}, os.path.join(OUT, "golden.safetensors"))
    for k, v in g.items():
        print(k, tuple(v.shape), float(v.abs().mean()))


if __name__ == "__main__":
    main()
