"""Writes kiln's test data for SD3 ControlNets of InstantX's kind: a small
random diffusers SD3ControlNetModel (an MMDiT without its final layer: the
noisy latent's patches with their positions plus the control latent's
patches, time and zeroed pooled embedding, the caption, joint blocks, one
Linear per block on its image tokens) shaped as tests/data/sd3/tiny's
transformer, and what upstream computes with it.

Origin: diffusers 0.32.2 (SD3ControlNetModel, SD3Transformer2DModel) on
PyTorch (CPU, float32), ComfyUI's code restated (comfy/cldm/mmdit.py's
ControlNet, comfy/ldm/modules/diffusionmodules/mmdit.py's MMDiT,
comfy/controlnet.py's ControlNet and load_controlnet_mmdit,
ControlNetApplyAdvanced). The ControlNet's block outputs are diffusers'
(controlnet_block_samples: controlnet_blocks.i of block i's image tokens,
times the scale); the ControlNet's pooled input is zeros, as ComfyUI's
ControlNet makes it (y = zeros_like(y)) and diffusers' pipeline passes it
(force_zeros_for_pooled_projection). The transformer takes them as ComfyUI's
MMDiT does, restated with hooks on diffusers' joint blocks: ComfyUI's
ControlNet appends block i's output depth // N times to its list (N its
blocks, once less for its last block; ComfyUI's depth is the ControlNet's
hidden size / 64, which for every released SD3 model is the transformer's
block count, and here, where the width is 32, is taken to be the tiny
transformer's 3 blocks), and transformer block k adds list[k] to its image
tokens after the block, for k < len(list). With a ControlNet of 3 blocks
and a transformer of 3: blocks 0 and 1 get residuals 0 and 1, block 2 (the
last, context_pre_only) nothing, and residual 2 is never used (ComfyUI
appends it 0 times). diffusers' own mapping (block_controlnet_hidden_states,
block k gets sample int(k / (3 / 3)), the context_pre_only block none)
agrees for this 3/3 case: checked.

The hint: ComfyUI's ControlNet fits the picture to the latent's size times
the VAE's factor (common_upscale, nearest-exact, center: here the picture
is that size already, so it is itself), VAEEncode's mean of pixels * 2 - 1,
then process_in of the ControlNet's latent format: SD3's with shift_factor
set to 0 (load_controlnet_mmdit: "SD3 controlnet weirdness"; diffusers'
pipeline agrees: vae_shift_factor = 0 where force_zeros_for_pooled_projection),
so hint = mean * 1.5305, NOT (mean - 0.0609) * 1.5305.

The run restates make_sd3_data.py's (tiny/, RUN_PROMPT against "",
ModelSamplingDiscreteFlow shift 3, CONST, simple, 4 steps of euler, cfg 2,
seed 42, an 8x6 empty latent) with ControlNetApplyAdvanced on both prompts
(strength 0.8, start 0.0, end 0.6): the control acts on a step whose sigma
is <= percent_to_sigma(0.0) = 1 and >= percent_to_sigma(0.6) = 2/3
(ComfyUI skips it where sigma > the first or < the second), so at sigmas
1, 0.9 and 0.75, not at 0.5; each prompt's ControlNet call gets that
prompt's context, zeros as pooled, the noisy latent as the transformer
gets it (CONST's calculate_input: itself) and timestep sigma * 1000.

  controlnet/instantx/  SD3ControlNetModel (3 joint blocks of 2 heads of 16,
       patch 2, pos_embed_max_size 8, qk_norm "rms_norm", no dual attention,
       joint_attention_dim 96, caption_projection_dim 32,
       pooled_projection_dim 64, no extra conditioning channels):
       config.json, diffusion_pytorch_model.safetensors (f16, every weight
       random and non-zero, controlnet_blocks and pos_embed_input too; the
       sin-cos table pos_embed.pos_embed (1,64,32) stored f16 as diffusers
       keeps it)
  controlnet/hint_12x16.png  an RGB picture 12 wide, 16 tall (shapes drawn
       with PIL, seeded): the run's control picture, the latent's size
       times the tiny VAE's factor 2
  controlnet/golden.safetensors
       hint (2,16,8,6): a control latent (already processed), seeded 23;
       strength (1): 0.7; residual.N (2,12,32), N = 0..2: the ControlNet's
         controlnet_block_samples at scale 0.7 on golden.safetensors'
         sd35.sample, sd35.context, sd35.timestep with zeros as pooled;
       out (2,16,8,6): tiny/'s transformer on sd35.sample, sd35.context,
         sd35.pooled, sd35.timestep with residuals 0 and 1 added after
         blocks 0 and 1;
       run.hint_mean (1,16,8,6): the tiny VAE's mean of hint_12x16.png;
       run.hint_latent (1,16,8,6): it after process_in (times 1.5305, shift
         0); run.sigmas (5); run.denoised.N (1,16,8,6), run.latent_out
         (1,16,8,6) and run.image (1,16,12,3): the run with the control

Run from the repository root with diffusers 0.32.2, transformers and torch
installed (after make_sd3_data.py and tests/data/flux/make_flux_data.py):
  python3 tests/data/sd3/make_sd3_controlnet_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, SD3ControlNetModel, SD3Transformer2DModel
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import CLIPTextModelWithProjection, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, os.path.join(DATA, "flow"))
sys.path.insert(0, os.path.join(DATA, "flux"))
from make_flow_data import ModelSamplingDiscreteFlow, simple  # noqa: E402
from make_flux_controlnet_data import save_png  # noqa: E402
from make_sd3_data import CONFIG, RUN_PROMPT, SCALE, SHIFT, encode, make_model  # noqa: E402
from sd_common import comfy_fit, decode_image, save_goldens  # noqa: E402

OUT = f"{HERE}/controlnet"
TINY = f"{HERE}/tiny"
# tiny/'s transformer's shape, 3 blocks, without the dual attention
CONTROLNET = dict(CONFIG, dual_attention_layers=(), extra_conditioning_channels=0)
HINT_SHIFT = 0.0  # load_controlnet_mmdit sets the SD3 latent format's shift_factor to 0


def make_controlnet():
    """A random SD3ControlNetModel as controlnet/instantx/, loaded back: the
    model the goldens are computed with."""
    back = make_model(SD3ControlNetModel, CONTROLNET, 29, f"{OUT}/instantx")
    for k, v in back.state_dict().items():
        assert v.abs().max() > 0, k  # nothing zero: controlnet_blocks and pos_embed_input matter
    assert back.pos_embed_input.pos_embed is None  # the hint's patches have no positions
    return back


def comfy_outputs(samples, depth):
    """ComfyUI's ControlNet's output list: block i's sample depth // N times
    (N its blocks), once less for its last."""
    out = []
    for i, s in enumerate(samples):
        out += [s] * (depth // len(samples) - (i == len(samples) - 1))
    return out


def with_controls(model, adds, **inputs):
    """The transformer as ComfyUI's MMDiT takes a control: after joint block
    k its image tokens plus adds[k], for k < len(adds)."""
    hooks = []
    for k, block in enumerate(model.transformer_blocks):
        def after(module, args, out, k=k):
            if k >= len(adds):
                return out
            return out[0], out[1] + adds[k]
        hooks.append(block.register_forward_hook(after))
    try:
        with torch.no_grad():
            return model(**inputs).sample
    finally:
        for h in hooks:
            h.remove()


def residuals(net, scale, hint, x, context, pooled, timestep):
    """The ControlNet's controlnet_block_samples, its pooled input zeroed."""
    with torch.no_grad():
        return list(net(hidden_states=x, controlnet_cond=hint, conditioning_scale=scale,
                        encoder_hidden_states=context, pooled_projections=torch.zeros_like(pooled),
                        timestep=timestep, return_dict=False)[0])


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def main():
    transformer = SD3Transformer2DModel.from_pretrained(f"{TINY}/transformer").eval()
    controlnet = make_controlnet()
    depth = len(transformer.transformer_blocks)
    g = {}

    src = load_file(f"{HERE}/golden.safetensors")
    sample, context, pooled, timestep = (src[f"sd35.{k}"].clone() for k in ("sample", "context", "pooled", "timestep"))
    torch.manual_seed(23)
    hint = torch.randn(2, 16, 8, 6)
    res = residuals(controlnet, 0.7, hint, sample, context, pooled, timestep)
    adds = comfy_outputs(res, depth)
    assert len(res) == 3 and len(adds) == 2 and adds[0] is res[0] and adds[1] is res[1]
    inputs = dict(hidden_states=sample, encoder_hidden_states=context, pooled_projections=pooled, timestep=timestep)
    out = with_controls(transformer, adds, **inputs)
    with torch.no_grad():
        plain = transformer(**inputs).sample
        theirs = transformer(**inputs, block_controlnet_hidden_states=res).sample
    assert torch.allclose(plain, src["sd35.out"], atol=1e-5), "tiny/'s transformer differs from its goldens"
    agree = torch.allclose(out, theirs, atol=1e-6)
    print("diffusers' block_controlnet_hidden_states mapping agrees with ComfyUI's:", agree,
          "max diff", (out - theirs).abs().max().item())
    assert agree
    print("residuals' effect on the transformer's output: relative difference", rel(out, plain))
    g.update({"hint": hint, "strength": torch.tensor([0.7]), "out": out})
    g.update({f"residual.{i}": r for i, r in enumerate(res)})

    run(transformer, controlnet, depth, g)
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/golden.safetensors")
    readable()


def draw_hint(width, height, path):
    """A small RGB picture with some structure (a background, a rectangle, an
    ellipse and a line, seeded), saved as an 8-bit PNG; (1,3,H,W) in [0,1]."""
    rng = np.random.default_rng(47)

    def color():
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    img = Image.new("RGB", (width, height), color())
    d = ImageDraw.Draw(img)
    d.rectangle([1, 2, 6, 8], fill=color())
    d.ellipse([4, 7, 11, 14], fill=color(), outline=color())
    d.line([0, height - 1, width - 1, 0], fill=color(), width=1)
    d.point([(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(6)], fill=color())
    return save_png(np.array(img), path)


def run_conditioning():
    """make_sd3_data.py's run's two prompts encoded by tiny/'s towers (checked
    against its goldens): (context, pooled) by "positive" and "negative",
    tiny/'s VAE and those goldens."""
    stored = load_file(f"{HERE}/run.golden.safetensors")
    te_l = CLIPTextModelWithProjection.from_pretrained(f"{TINY}/text_encoder").eval()
    te_g = CLIPTextModelWithProjection.from_pretrained(f"{TINY}/text_encoder_2").eval()
    t5 = T5EncoderModel.from_pretrained(f"{TINY}/text_encoder_3").eval()
    tok = T5Tokenizer(vocab_file=f"{TINY}/tokenizer_3/spiece.model", legacy=True)
    vae = AutoencoderKL.from_pretrained(f"{TINY}/vae").eval()
    ctx, pooled = {}, {}
    for which, text in (("positive", RUN_PROMPT), ("negative", "")):
        l_ids = stored[f"run.clip_l_ids.{which}"][0].tolist()
        ctx[which], pooled[which], _, _, _ = encode(te_l, te_g, t5, tok, l_ids, text)
        assert torch.allclose(ctx[which], stored[f"run.context.{which}"], atol=1e-6), which
        assert torch.allclose(pooled[which], stored[f"run.pooled.{which}"], atol=1e-6), which
    return ctx, pooled, vae, stored


def run(transformer, controlnet, depth, g):
    ctx, pooled, vae, stored = run_conditioning()
    h, w, steps, cfg, strength = 8, 6, 4, 2.0, 0.8
    picture = draw_hint(2 * w, 2 * h, f"{OUT}/hint_{2 * w}x{2 * h}.png")
    fitted = comfy_fit(picture, 2 * w, 2 * h)  # the latent's size times the VAE's factor 2
    assert torch.equal(fitted, picture)
    with torch.no_grad():
        mean = vae.encode(fitted * 2 - 1).latent_dist.mean
    hint_latent = (mean - HINT_SHIFT) * SCALE  # process_in of the ControlNet's latent format
    g.update({"run.hint_mean": mean, "run.hint_latent": hint_latent})

    ms = ModelSamplingDiscreteFlow(shift=3.0, timesteps=1000, multiplier=1000)
    sigmas = simple(ms, steps)
    hi, lo = ms.percent_to_sigma(0.0), ms.percent_to_sigma(0.6)
    active = []

    def model(x, sigma, which, control):
        t = ms.timestep(sigma).view(1)
        adds = []
        if control and not (sigma.item() > hi or sigma.item() < lo):  # ControlNet.get_control's timestep_range
            active.append(sigma.item())
            adds = comfy_outputs(residuals(controlnet, strength, hint_latent, x, ctx[which], pooled[which], t), depth)
        return with_controls(transformer, adds, hidden_states=x, encoder_hidden_states=ctx[which],
                             pooled_projections=pooled[which], timestep=t)

    def sample(control, store, prefix):
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        image = (torch.zeros(1, 16, h, w) - SHIFT) * SCALE  # the empty latent, process_in
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x0 = {k: x - model(x, s, k, control) * s for k in ("negative", "positive")}
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            store[f"{prefix}denoised.{i}"] = d
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        return x / SCALE + SHIFT

    # without the control, the restatement gives make_sd3_data's run
    plain = sample(False, {}, "")
    assert torch.allclose(plain, stored["run.latent_out"], atol=1e-5), rel(plain, stored["run.latent_out"])
    latent = sample(True, g, "run.")
    g.update({"run.sigmas": sigmas, "run.latent_out": latent, "run.image": decode_image(vae, latent)})
    print("sigmas", sigmas.tolist(), "control window: sigma in [%r, %r]" % (lo, hi),
          "active at", sorted(set(active), reverse=True), "(calls: %d)" % len(active))
    print("run.latent_out against run.golden's: relative difference", rel(latent, stored["run.latent_out"]),
          "max abs", (latent - stored["run.latent_out"]).abs().max().item())
    print("hint_latent with shift 0 against with shift 0.0609: relative difference",
          rel(hint_latent, (mean - SHIFT) * SCALE))


def readable():
    """The files written readable by all (safetensors writes them 0600), and
    their sizes."""
    for root, _, files in os.walk(OUT):
        for name in sorted(files):
            path = os.path.join(root, name)
            os.chmod(path, 0o644)
            print(os.path.relpath(path, HERE), os.path.getsize(path))


if __name__ == "__main__":
    main()
