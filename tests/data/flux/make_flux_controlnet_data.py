"""Writes kiln's test data for Flux ControlNets: a small random transformer
with more blocks than its ControlNets, a ControlNet of InstantX's kind (a
diffusers FluxControlNetModel: the control picture's latent in, a union
model's mode embedding) and one of XLabs' kind (the picture itself through a
hint encoder of eight convolutions, in Black Forest Labs' names as XLabs
ship theirs), and what upstream computes with them.

Origin: diffusers 0.32.2 on PyTorch (CPU, float32), the architecture and
seeds of make_flux_data.py's tiny model otherwise. The ControlNets are
diffusers' FluxControlNetModel (XLabs' kind: conditioning_embedding_channels
16 and patch_size 2, its hint encoder's output packed into 2x2 patches as
ComfyUI's ControlNetFlux packs it). Each one's block outputs are diffusers';
the transformer takes them as ComfyUI's Flux does (each block's image
tokens plus the residual mapped to it: InstantX's each to ceil(blocks /
residuals) blocks in turn, XLabs' cycling), restated with hooks on diffusers'
blocks and checked against diffusers' own controlnet_block_samples (with
controlnet_blocks_repeat for XLabs' kind) where one ControlNet is applied.
The run restates ComfyUI's ControlNetApplyAdvanced on both prompts with two
ControlNets chained (their residuals added), sampled as make_flux_data.py's
run (ModelSamplingFlux shift 1.15, CONST, simple, 4 steps of euler, cfg 2,
seed 42, an 8x6 empty latent, FluxGuidance 3.5): InstantX's kind (union mode
2, strength 0.8, the whole run) on the picture fitted to the latent (16x12
for the tiny VAE, which halves a side) and encoded by the model's VAE (its
mean, then process_in); XLabs' kind (strength 0.6, start 0, end 0.4) on a
picture 8x the latent, times 2 minus 1.

  controlnet/  a FluxPipeline folder: transformer/ (3 double and 4 single
       blocks, f16), the tiny folder's text encoders, tokenizer, VAE and
       model_index.json linked
  controlnet/instantx/  FluxControlNetModel (2 double, 2 single blocks,
       3 union modes): config.json, diffusion_pytorch_model.safetensors (f16)
  controlnet/xlabs.safetensors  (2 double blocks, no single ones) in BFL's
       names: double_blocks.N.*, controlnet_blocks.N, pos_embed_input,
       input_hint_block.{0,2,..,14}, as XLabs' flux-*-controlnet files (f16)
  controlnet/latent_hint_16x12.png, controlnet/pixel_hint_64x48.png
  controlnet/golden.safetensors
       packed (2,12,64), context (2,5,64), pooled (2,32), timestep (2),
         guidance (2): the transformer's inputs;
       instantx.hint (2,12,64): a packed latent; instantx.mode (2);
         instantx.double.N, instantx.single.N (2,12,32): its residuals at
         scale 0.7; instantx.out (2,12,64): the transformer with them;
       xlabs.hint (2,3,64,48) in [0,1]; xlabs.double.N at scale 0.6;
         xlabs.out;
       run.hint_latent (1,16,8,6): the VAE's latent of latent_hint_16x12.png
         after process_in; run.denoised.N, run.latent_out

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_data.py):
  python3 tests/data/flux/make_flux_controlnet_data.py
"""
import math
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, FluxControlNetModel, FluxTransformer2DModel
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_canny_data import image_ids, pack, unpack  # noqa: E402
from make_flux_data import CONFIG, RUN_PROMPT  # noqa: E402
from make_flux_single_data import to_bfl  # noqa: E402
from sd_common import PT, randomize, save_goldens, save_half, write_json  # noqa: E402

OUT = f"{HERE}/controlnet"
MAIN = dict(CONFIG, num_layers=3, num_single_layers=4)
TRUNK = {k: v for k, v in CONFIG.items() if k not in ("num_layers", "num_single_layers")}
INSTANTX = dict(TRUNK, num_layers=2, num_single_layers=2, num_mode=3)
XLABS = dict(TRUNK, patch_size=2, num_layers=2, num_single_layers=0, conditioning_embedding_channels=16)


def xlabs_names(sd):
    """A FluxControlNetModel of XLabs' kind in XLabs' (BFL's) names."""
    out, trunk = {}, {}
    hint = {"conv_in": 0, "conv_out": 14, **{f"blocks.{k}": 2 * (k + 1) for k in range(6)}}
    for name, t in sd.items():
        module, kind = name.rsplit(".", 1)
        if module.startswith("controlnet_blocks."):
            out[name] = t
        elif module == "controlnet_x_embedder":
            out[f"pos_embed_input.{kind}"] = t
        elif module.startswith("input_hint_block."):
            out[f"input_hint_block.{hint[module[len('input_hint_block.'):]]}.{kind}"] = t
        else:
            trunk[name] = t
    out.update(to_bfl(trunk))
    return out


def with_controls(flux, double_adds, single_adds, **inputs):
    """The transformer with ComfyUI's additions: after double block i its
    first image tokens (the latent's, where reference latents follow) plus
    double_adds[i], after single block i those of the joined sequence plus
    single_adds[i] (None: nothing)."""
    hooks = []
    t = inputs["encoder_hidden_states"].shape[1]
    for i, block in enumerate(flux.transformer_blocks):
        def after_double(module, args, out, i=i):
            if double_adds[i] is None:
                return out
            img = out[1].clone()
            img[:, :double_adds[i].shape[1]] += double_adds[i]
            return out[0], img
        hooks.append(block.register_forward_hook(after_double))
    for i, block in enumerate(flux.single_transformer_blocks):
        def after_single(module, args, out, i=i):
            if single_adds[i] is None:
                return out
            out = out.clone()
            out[:, t:t + single_adds[i].shape[1]] += single_adds[i]
            return out
        hooks.append(block.register_forward_hook(after_single))
    try:
        with torch.no_grad():
            return flux(**inputs, return_dict=False)[0]
    finally:
        for h in hooks:
            h.remove()


def mapped(samples, blocks, cycle):
    """The residual each of `blocks` blocks gets: in turn, each to
    ceil(blocks / n) blocks, or cycling."""
    if not samples:
        return [None] * blocks
    n = len(samples)
    return [samples[i % n] if cycle else samples[i // math.ceil(blocks / n)] for i in range(blocks)]


def summed(a, b):
    return [x if y is None else y if x is None else x + y for x, y in zip(a, b)]


def save_png(pixels, path):
    """(H,W,3) uint8 as an 8-bit RGB PNG."""
    Image.fromarray(pixels, "RGB").save(path)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0


def make_models():
    torch.manual_seed(37)
    flux = FluxTransformer2DModel(**MAIN).eval()
    randomize(flux, table=lambda name: False)
    folder = f"{OUT}/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(flux.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxTransformer2DModel", **MAIN}, f"{folder}/config.json")
    for part in ("text_encoder", "text_encoder_2", "tokenizer_2", "vae", "model_index.json"):
        if not os.path.islink(f"{OUT}/{part}"):
            os.symlink(f"../tiny/{part}", f"{OUT}/{part}")

    instantx = FluxControlNetModel(**INSTANTX).eval()
    randomize(instantx, table=lambda name: name.startswith("controlnet_mode_embedder"))
    os.makedirs(f"{OUT}/instantx", exist_ok=True)
    save_half(instantx.state_dict(), f"{OUT}/instantx/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxControlNetModel", **INSTANTX}, f"{OUT}/instantx/config.json")

    xlabs = FluxControlNetModel(**XLABS).eval()
    randomize(xlabs, table=lambda name: False)
    save_file({k: v.half().contiguous() for k, v in xlabs_names(xlabs.state_dict()).items()},
              f"{OUT}/xlabs.safetensors")
    # the f16-rounded weights, in f32
    return (FluxTransformer2DModel.from_pretrained(folder).eval(),
            FluxControlNetModel.from_pretrained(f"{OUT}/instantx").eval(), xlabs)


def residuals(net, scale, hint, mode=None, **inputs):
    with torch.no_grad():
        d, s = net(controlnet_cond=hint, controlnet_mode=mode, conditioning_scale=scale, **inputs, return_dict=False)
    return list(d), list(s or [])


def main():
    flux, instantx, xlabs = make_models()
    g = {}
    torch.manual_seed(19)
    B, C, H, W, T = 2, 16, 8, 6, 5
    packed = pack(torch.randn(B, C, H, W))
    context, pooled = torch.randn(B, T, 64), torch.randn(B, 32)
    timestep, guidance = torch.tensor([1.0, 0.37]), torch.tensor([3.5, 3.5])
    inputs = dict(hidden_states=packed, encoder_hidden_states=context, pooled_projections=pooled,
                  timestep=timestep, img_ids=image_ids(H, W), txt_ids=torch.zeros(T, 3), guidance=guidance)
    g.update({"packed": packed, "context": context, "pooled": pooled, "timestep": timestep, "guidance": guidance})

    hint = pack(torch.randn(B, C, H, W))
    mode = torch.tensor([[2], [2]])
    d, s = residuals(instantx, 0.7, hint, mode, **inputs)
    out = with_controls(flux, mapped(d, 3, False), mapped(s, 4, False), **inputs)
    with torch.no_grad():
        theirs = flux(**inputs, controlnet_block_samples=d, controlnet_single_block_samples=s, return_dict=False)[0]
    assert torch.allclose(out, theirs, atol=1e-6), "the hooks differ from diffusers' controlnet samples"
    g.update({"instantx.hint": hint, "instantx.mode": mode[:, 0].int(), "instantx.out": out})
    g.update({f"instantx.double.{i}": x for i, x in enumerate(d)})
    g.update({f"instantx.single.{i}": x for i, x in enumerate(s)})

    pixels = torch.rand(B, 3, 8 * H, 8 * W)
    d, s = residuals(xlabs, 0.6, pixels * 2 - 1, **inputs)
    assert not s
    out = with_controls(flux, mapped(d, 3, True), mapped(s, 4, True), **inputs)
    with torch.no_grad():
        theirs = flux(**inputs, controlnet_block_samples=d, controlnet_single_block_samples=None,
                      controlnet_blocks_repeat=True, return_dict=False)[0]
    assert torch.allclose(out, theirs, atol=1e-6), "the hooks differ from diffusers' controlnet samples"
    g.update({"xlabs.hint": pixels, "xlabs.out": out})
    g.update({f"xlabs.double.{i}": x for i, x in enumerate(d)})

    run(flux, instantx, xlabs, g)
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/golden.safetensors")


def run(flux, instantx, xlabs, g):
    tiny = f"{HERE}/tiny"
    clip = CLIPTextModel.from_pretrained(f"{tiny}/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{tiny}/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{tiny}/tokenizer_2/spiece.model", legacy=True)
    vae = AutoencoderKL.from_pretrained(f"{tiny}/vae").eval()
    clip_ids = load_file(f"{HERE}/run.golden.safetensors")
    ctx, pooled = {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            pooled[which] = clip(input_ids=clip_ids[f"run.clip_ids.{which}"].long()).pooler_output
            ids = tok(text).input_ids
            ctx[which] = t5(input_ids=torch.tensor([ids + [0] * (256 - len(ids))])).last_hidden_state

    h, w, steps, cfg = 8, 6, 4, 2.0
    rng = np.random.default_rng(41)
    latent_picture = save_png(rng.integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8), f"{OUT}/latent_hint_16x12.png")
    pixel_picture = save_png(rng.integers(0, 256, (8 * h, 8 * w, 3), dtype=np.uint8), f"{OUT}/pixel_hint_64x48.png")
    with torch.no_grad():
        hint_latent = (vae.encode(latent_picture * 2 - 1).latent_dist.mean - 0.1159) * 0.3611  # process_in
    g["run.hint_latent"] = hint_latent
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    xlabs_lo = ms.percent_to_sigma(0.4)  # its range: sigma from percent_to_sigma(0) = 1 down to this

    def model(xt, sigma, which):
        inputs = dict(hidden_states=pack(xt), encoder_hidden_states=ctx[which], pooled_projections=pooled[which],
                      timestep=sigma.view(1), img_ids=image_ids(h, w), txt_ids=torch.zeros(256, 3),
                      guidance=torch.tensor([3.5]))
        d, s = residuals(instantx, 0.8, pack(hint_latent), torch.tensor([[2]]), **inputs)
        double, single = mapped(d, 3, False), mapped(s, 4, False)
        if xlabs_lo <= sigma <= 1.0:
            d, _ = residuals(xlabs, 0.6, pixel_picture * 2 - 1, **inputs)
            double = summed(double, mapped(d, 3, True))
        return unpack(with_controls(flux, double, single, **inputs), h, w)

    torch.manual_seed(42)
    noise = torch.randn(1, 16, h, w)
    xt = sigmas[0] * noise  # the empty latent's image is 0
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        x0 = {k: xt - model(xt, s, k) * s for k in ("negative", "positive")}
        d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
        g[f"run.denoised.{i}"] = d
        xt = xt + (xt - d) / s * (sigmas[i + 1] - s)
    g["run.latent_out"] = xt / 0.3611 + 0.1159
    print("xlabs applies above sigma", xlabs_lo, "of", sigmas.tolist())


if __name__ == "__main__":
    main()
