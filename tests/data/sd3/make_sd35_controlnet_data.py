"""Writes kiln's test data for SD 3.5 ControlNets of Stability's kind
(stabilityai/stable-diffusion-3.5-controlnets: sd3.5_large_controlnet_blur,
_canny and _depth): a small random one in Stability's names, shaped for
tests/data/sd3/tiny's transformer, and what ComfyUI computes with it.

The model: image tokens only. The noisy latent's patches, made by the MAIN
transformer's patch conv (ComfyUI's ControlNetSD35.pre_run copies the
transformer's x_embedder into the ControlNet's), plus a sin-cos table the
ControlNet computes afresh (not the transformer's stored one), plus the
control latent's patches (pos_embed_input, a 2x2 stride-2 conv); the
conditioning c = the ControlNet's own timestep MLP of sigma * 1000 plus its
own MLP of the prompt's pooled output (the real one, not zeros); N blocks
of adaLN-zero self-attention and MLP (diffusers' SD3SingleTransformerBlock,
no q/k norm), each followed by one Linear (controlnet_blocks.i) on its
output, times the strength.

Origin: diffusers 0.32.2 (SD3ControlNetModel with joint_attention_dim None,
use_pos_embed False, pos_embed_type None, pos_embed_max_size None,
force_zeros_for_pooled_projection False, as
scripts/convert_sd3_controlnet_to_diffusers.py builds it; and
SD3Transformer2DModel) on PyTorch (CPU, float32); ComfyUI's code restated
(comfy/controlnet.py's load_controlnet_sd35, ControlNetSD35 and ControlNet,
comfy/cldm/dit_embedder.py's ControlNetEmbedder with double_y_emb False,
i.e. y_embedder.mlp.0.weight not square, get_2d_sincos_pos_embed_torch of
comfy/ldm/modules/diffusionmodules/mmdit.py, MMDiT's control handling,
ControlNetApplyAdvanced). The blocks are diffusers' own (the independent
reference): SD3ControlNetModel's forward with pos_embed None takes 3-D
hidden_states, here ComfyUI's tokens (the transformer's patch conv plus
ComfyUI's table, comfy_tokens below), adds pos_embed_input(controlnet_cond)
itself, and returns controlnet_blocks.i of each block's output times
conditioning_scale.

ComfyUI's sin-cos table for an h x w patch grid, D the width, all float32:
small = min(h, w), val_h = h / small * 7.5, val_w = w / small * 7.5,
positions linspace(7.5 - val_h, 7.5 + val_h, h) down and
linspace(7.5 - val_w, 7.5 + val_w, w) across (meshgrid "ij"); each axis
embedded at width D/2 with omega_k = 1 / 10000 ** (k / (D/4)),
k < D/4, as [sin(p omega), cos(p omega)]; the token's row is
[width's embedding, height's embedding]. (diffusers' pipeline instead lends
the ControlNet the transformer's own pos_embed with its cropped stored
table: printed, not used.)

How the transformer takes the outputs (ComfyUI): the ControlNet appends
block i's output ceil(D' / N) times (N its blocks; D' is ComfyUI's depth,
hidden size / 64, which for every released model is the transformer's
block count, and which here, where the width is 32, is taken to be the tiny
transformer's 3 blocks): with N = 2, [r0, r0, r1, r1]; strength applied
once per shared tensor (control_merge). Joint block k adds list[k] to its
image tokens after the block, for every k < len(list), the last
(context_pre_only) block included: blocks 0 and 1 get r0, block 2 gets r1,
the 4th entry is unused. (diffusers' SD3Transformer2DModel would give
blocks 0 and 1 r[int(k / 1.5)] = r0 and skip the last block: printed, not
used.)

ComfyUI itself could not load this tiny model (load_controlnet_sd35 takes
the head count and D' from hidden size / 64 and hard-codes a pooled width
of 2048); the goldens restate its computation at this size.

The hint: ControlNet.get_control fits the picture to the latent's size
times the VAE's factor (common_upscale, nearest-exact, center: the picture
here is that size already), then preprocess_image by control_type
(0 blur: itself; 1 canny: a * 255 * 0.5 + 0.5, values up to 128, unclamped;
2 depth: 1 - a), VAEEncode's mean of pixels * 2 - 1, then process_in of
SD3's latent format WITH its shift (unlike InstantX's kind):
(mean - 0.0609) * 1.5305.

  controlnet_sd35/sd3.5-tiny-controlnet-depth.safetensors  the ControlNet
       in Stability's names, float16 (every weight random, seeded, non-zero,
       drawn as sd_common.randomize draws them; controlnet_blocks' then
       scaled by 0.15, so that the outputs (rms about 8 and 14 on the
       goldens' inputs) are of the order of the transformer's image tokens
       (rms 28 to 48 after its blocks) and of InstantX's residuals, not
       several times them: unscaled, the adaLN weights around 1 that
       randomize draws for every "norm" name make the blocks' outputs large):
       controlnet_blocks.{0,1}.{weight,bias} (32,32),(32);
       pos_embed_input.proj.{weight,bias} (32,16,2,2),(32);
       time_text_embed.timestep_embedder.linear_{1,2}.* (32,256),(32,32);
       time_text_embed.text_embedder.linear_{1,2}.* (32,64),(32,32);
       transformer_blocks.{0,1}.adaLN_modulation.1.* (192,32),
         .attn.qkv.* (96,32) (q, k, v rows in that order), .attn.proj.*,
         .mlp.fc1.* (128,32), .mlp.fc2.* (32,128);
       control_type: a 0-d float32 2.0 (depth). Checked: the converter's
       mapping gives back exactly the model the goldens use.
  controlnet_sd35/golden.safetensors (float32):
       hint (2,16,8,6): a control latent (already processed), seeded 23;
       strength (1): 0.7;
       pos (12,32): ComfyUI's table for the 8x6 latent's 4x3 patches;
       residual.N (2,12,32), N = 0, 1: the ControlNet's outputs at strength
         0.7 on golden.safetensors' sd35.sample, sd35.pooled, sd35.timestep
         and hint;
       out (2,16,8,6): tiny/'s transformer on sd35.sample, sd35.context,
         sd35.pooled, sd35.timestep with residual 0 added after blocks 0
         and 1 and residual 1 after block 2;
       run.hint_mean (1,16,8,6): the tiny VAE's mean of
         controlnet/hint_12x16.png after depth preprocessing (1 - a);
       run.hint_latent (1,16,8,6): it after process_in
         ((mean - 0.0609) * 1.5305);
       canny.hint_latent (1,16,8,6): the same picture with canny's
         preprocessing (a * 127.5 + 0.5), encoded and processed alike;
       run.sigmas (5); run.denoised.N (1,16,8,6), N = 0..3; run.latent_out
         (1,16,8,6) and run.image (1,16,12,3): make_sd3_data.py's run
         (tiny/, RUN_PROMPT against "", ModelSamplingDiscreteFlow shift 3,
         CONST, simple, 4 steps of euler, cfg 2, seed 42, an 8x6 empty
         latent) with ControlNetApplyAdvanced on both prompts (strength
         0.8, start 0.0, end 0.6: active at sigmas 1, 0.9 and 0.75, not
         0.5); each prompt's ControlNet call gets that prompt's real pooled
         output, no context, the noisy latent as the transformer gets it,
         timestep sigma * 1000 and run.hint_latent;
       slg.denoised.N, slg.latent_out (1,16,8,6): the run with
         SkipLayerGuidanceSD3 as well (block 1, scale 3, start 0, end 0.5,
         no rescaling: at sigmas 1, 0.9 and 0.75), its post-CFG function's
         pass of the positive prompt with the ControlNet as the other
         passes have it (ComfyUI's calc_cond_batch on the conditioning that
         carries it) and block 1 passing its inputs on, the residual still
         added after it (ComfyUI's MMDiT adds the control after a replaced
         block too).

Run from the repository root with diffusers 0.32.2, transformers and torch
installed (after make_sd3_data.py and make_sd3_controlnet_data.py, whose
tiny/ folder, goldens and hint picture it reads):
  python3 tests/data/sd3/make_sd35_controlnet_data.py
"""
import math
import os
import sys
import tempfile

import numpy as np
import torch
from diffusers import SD3ControlNetModel, SD3Transformer2DModel
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_sd3_controlnet_data import draw_hint, rel, run_conditioning, with_controls  # noqa: E402  (puts tests/data etc. on the path)
from make_flow_data import ModelSamplingDiscreteFlow, simple  # noqa: E402
from make_sd3_data import SCALE, SHIFT  # noqa: E402
from sd_common import comfy_fit, decode_image, randomize, save_goldens  # noqa: E402

OUT = f"{HERE}/controlnet_sd35"
TINY = f"{HERE}/tiny"
PICTURE = f"{HERE}/controlnet/hint_12x16.png"
MODEL_FILE = f"{OUT}/sd3.5-tiny-controlnet-depth.safetensors"
# the converter's SD3ControlNetModel at tiny/'s transformer's width (2 heads of 16), pooled 64, 2 blocks
CONTROLNET = dict(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=16,
                  num_attention_heads=2, joint_attention_dim=None, caption_projection_dim=32,
                  pooled_projection_dim=64, out_channels=16, pos_embed_max_size=None, pos_embed_type=None,
                  use_pos_embed=False, force_zeros_for_pooled_projection=False, extra_conditioning_channels=0)
CONTROL_TYPE = 2  # depth
OUTPUT_SCALE = 0.15  # controlnet_blocks' random weights and biases scaled by this
PREPROCESS = {0: lambda a: a, 1: lambda a: a * 255 * 0.5 + 0.5, 2: lambda a: 1.0 - a}  # load_controlnet_sd35
# Stability's block part -> diffusers' (attn.qkv is split in three)
BLOCK_NAMES = {"adaLN_modulation.1": "norm1.linear", "attn.proj": "attn.to_out.0", "mlp.fc1": "ff.net.0.proj",
               "mlp.fc2": "ff.net.2"}
STABILITY_NAMES = {d: s for s, d in BLOCK_NAMES.items()}


# ---------------------------------------------------------------- the model and its file

def to_stability(sd):
    """diffusers' SD3ControlNetModel names -> Stability's file's: the
    converter's mapping undone (to_q, to_k, to_v concatenated into qkv)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] != "transformer_blocks":
            out[k] = v
            continue
        prefix, rest = ".".join(parts[:2]), ".".join(parts[2:-1])
        kind = parts[-1]
        if rest in ("attn.to_q", "attn.to_k", "attn.to_v"):
            if rest == "attn.to_q":
                out[f"{prefix}.attn.qkv.{kind}"] = torch.cat(
                    [sd[f"{prefix}.attn.to_{x}.{kind}"] for x in "qkv"], dim=0)
            continue
        out[f"{prefix}.{STABILITY_NAMES[rest]}.{kind}"] = v
    return out


def from_stability(sd):
    """Stability's names -> diffusers': the mapping of diffusers'
    scripts/convert_sd3_controlnet_to_diffusers.py (control_type dropped)."""
    out = {}
    for k, v in sd.items():
        if k == "control_type":
            continue
        parts = k.split(".")
        if parts[0] != "transformer_blocks":
            out[k] = v
            continue
        prefix, rest, kind = ".".join(parts[:2]), ".".join(parts[2:-1]), parts[-1]
        if rest == "attn.qkv":
            for x, part in zip("qkv", torch.chunk(v, 3, dim=0)):
                out[f"{prefix}.attn.to_{x}.{kind}"] = part
        else:
            out[f"{prefix}.{BLOCK_NAMES[rest]}.{kind}"] = v
    return out


def make_controlnet():
    """A random SD3ControlNetModel (seeded, every parameter non-zero, rounded
    to float16) written in Stability's names as float16 with control_type,
    then read back through the converter's mapping: the model the goldens
    are computed with."""
    torch.manual_seed(31)
    net = SD3ControlNetModel(**CONTROLNET).eval()
    randomize(net, table=lambda name: False)  # zero_module's zeros replaced too
    with torch.no_grad():  # outputs of the order of the transformer's stream, as InstantX's are (see above)
        for p in net.controlnet_blocks.parameters():
            p.copy_((p * OUTPUT_SCALE).half().float())
    assert net.pos_embed is None and net.context_embedder is None and net.pos_embed_input.pos_embed is None
    ours = {k: v.clone() for k, v in net.state_dict().items()}
    for k, v in ours.items():
        assert v.abs().min() > 0, k  # nothing zero: controlnet_blocks and pos_embed_input matter
    stability = {k: v.half().contiguous() for k, v in to_stability(ours).items()}
    stability["control_type"] = torch.tensor(float(CONTROL_TYPE), dtype=torch.float32)
    os.makedirs(OUT, exist_ok=True)
    save_file(stability, MODEL_FILE)

    stored = load_file(MODEL_FILE)
    assert stored["control_type"].shape == () and stored["control_type"].item() == CONTROL_TYPE
    assert stored["transformer_blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert stored["transformer_blocks.0.adaLN_modulation.1.weight"].shape == (192, 32)
    assert stored["pos_embed_input.proj.weight"].shape == (32, 16, 2, 2)
    back_sd = {k: v.float() for k, v in from_stability(stored).items()}
    assert back_sd.keys() == ours.keys(), sorted(set(back_sd) ^ set(ours))
    for k, v in ours.items():
        assert torch.equal(back_sd[k], v), k  # f16-rounded already: exact
    back = SD3ControlNetModel(**CONTROLNET).eval()
    back.load_state_dict(back_sd, strict=True)
    return back


# ---------------------------------------------------------------- ComfyUI's inputs and outputs

def sincos_1d(dim, positions):
    """One axis at width dim: [sin(p omega), cos(p omega)], omega_k =
    1 / 10000 ** (k / (dim/2)), float32."""
    omega = torch.arange(dim // 2, dtype=torch.float32) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    angles = torch.outer(positions.reshape(-1), omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def comfy_pos(dim, w, h, center=7.5, magnitude=7.5):
    """ComfyUI's get_2d_sincos_pos_embed_torch(dim, w, h): (h*w, dim), the
    width's half first."""
    small = min(h, w)
    val_h, val_w = (h / small) * magnitude, (w / small) * magnitude
    rows = torch.linspace(-val_h + center, val_h + center, h, dtype=torch.float32)
    cols = torch.linspace(-val_w + center, val_w + center, w, dtype=torch.float32)
    grid_h, grid_w = torch.meshgrid(rows, cols, indexing="ij")
    return torch.cat([sincos_1d(dim // 2, grid_w), sincos_1d(dim // 2, grid_h)], dim=1)


def comfy_tokens(transformer, x):
    """The ControlNet's input tokens as ComfyUI makes them: the main
    transformer's patch conv on x, flattened (B, h*w, D), plus ComfyUI's
    sin-cos table for h = (H+1)//2, w = (W+1)//2."""
    proj = transformer.pos_embed.proj
    p = proj.kernel_size[0]
    with torch.no_grad():
        tokens = proj(x).flatten(2).transpose(1, 2)
    h, w = (x.shape[-2] + 1) // p, (x.shape[-1] + 1) // p
    return tokens + comfy_pos(tokens.shape[-1], w, h)


def residuals(net, transformer, strength, hint, x, pooled, timestep):
    """The ControlNet's outputs (controlnet_blocks.i of block i's output,
    times the strength) as diffusers computes them from ComfyUI's tokens."""
    with torch.no_grad():
        return list(net(hidden_states=comfy_tokens(transformer, x), controlnet_cond=hint,
                        conditioning_scale=strength, encoder_hidden_states=None, pooled_projections=pooled,
                        timestep=timestep, return_dict=False)[0])


def comfy_outputs(samples, depth):
    """ControlNetEmbedder's list: each block's output ceil(depth / N) times."""
    repeat = math.ceil(depth / len(samples))
    out = []
    for s in samples:
        out += [s] * repeat
    return out


def load_picture(path):
    """An 8-bit RGB PNG as (1,3,H,W) in [0,1], as LoadImage gives it."""
    pixels = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255.0


def hint_latent(vae, picture, control_type, width, height):
    """ControlNet.get_control's hint: fitted, preprocessed, VAE mean, SD3's
    process_in with its shift. Returns (mean, latent)."""
    fitted = comfy_fit(picture, width, height)
    with torch.no_grad():
        mean = vae.encode(PREPROCESS[control_type](fitted) * 2 - 1).latent_dist.mean
    return mean, (mean - SHIFT) * SCALE


# ---------------------------------------------------------------- goldens

def main():
    transformer = SD3Transformer2DModel.from_pretrained(f"{TINY}/transformer").eval()
    controlnet = make_controlnet()
    depth = len(transformer.transformer_blocks)
    g = {}

    src = load_file(f"{HERE}/golden.safetensors")
    sample, context, pooled, timestep = (src[f"sd35.{k}"].clone() for k in ("sample", "context", "pooled", "timestep"))
    h, w = sample.shape[-2] // 2, sample.shape[-1] // 2
    pos = comfy_pos(32, w, h)
    assert pos.shape == (12, 32)
    with torch.no_grad():
        theirs_pos = transformer.pos_embed(sample) - transformer.pos_embed.proj(sample).flatten(2).transpose(1, 2)
    print("ComfyUI's sin-cos table against diffusers' route (transformer.pos_embed's cropped stored table):"
          " relative difference", rel(pos, theirs_pos[0]),
          "max abs", (pos - theirs_pos[0]).abs().max().item())

    torch.manual_seed(23)
    hint = torch.randn(2, 16, 8, 6)
    res = residuals(controlnet, transformer, 0.7, hint, sample, pooled, timestep)
    adds = comfy_outputs(res, depth)
    assert len(res) == 2 and len(adds) == 4
    assert adds[0] is res[0] and adds[1] is res[0] and adds[2] is res[1] and adds[3] is res[1]
    inputs = dict(hidden_states=sample, encoder_hidden_states=context, pooled_projections=pooled, timestep=timestep)
    out = with_controls(transformer, adds, **inputs)
    with torch.no_grad():
        plain = transformer(**inputs).sample
        theirs = transformer(**inputs, block_controlnet_hidden_states=res).sample
    assert torch.allclose(plain, src["sd35.out"], atol=1e-5), "tiny/'s transformer differs from its goldens"
    # the same without the last block's residual, to show what diffusers' mapping leaves out
    no_last = with_controls(transformer, adds[:2], **inputs)
    assert torch.allclose(no_last, theirs, atol=1e-5)
    print("residual magnitudes:", [r.norm().item() / r.numel() ** 0.5 for r in res],
          "tokens' rms", comfy_tokens(transformer, sample).pow(2).mean().sqrt().item())
    print("residuals' effect on the transformer's output: relative difference", rel(out, plain))
    print("diffusers' own mapping (blocks 0, 1 get r0, the last none) against ComfyUI's: relative difference",
          rel(theirs, out))
    g.update({"hint": hint, "strength": torch.tensor([0.7]), "pos": pos, "out": out})
    g.update({f"residual.{i}": r for i, r in enumerate(res)})

    run(transformer, controlnet, depth, g)
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/golden.safetensors")
    readable()


def run(transformer, controlnet, depth, g):
    ctx, pooled, vae, stored = run_conditioning()
    h, w, steps, cfg, strength = 8, 6, 4, 2.0, 0.8
    picture = load_picture(PICTURE)
    assert picture.shape == (1, 3, 2 * h, 2 * w)
    with tempfile.TemporaryDirectory() as tmp:  # the stored picture is the sibling's drawing
        assert torch.equal(draw_hint(2 * w, 2 * h, f"{tmp}/hint.png"), picture)
    mean, latent_hint = hint_latent(vae, picture, CONTROL_TYPE, 2 * w, 2 * h)
    _, canny = hint_latent(vae, picture, 1, 2 * w, 2 * h)
    g.update({"run.hint_mean": mean, "run.hint_latent": latent_hint, "canny.hint_latent": canny})

    ms = ModelSamplingDiscreteFlow(shift=3.0, timesteps=1000, multiplier=1000)
    sigmas = simple(ms, steps)
    hi, lo = ms.percent_to_sigma(0.0), ms.percent_to_sigma(0.6)
    active = []

    def model(x, sigma, which, control, skip=()):
        t = ms.timestep(sigma).view(1)
        adds = []
        if control and not (sigma.item() > hi or sigma.item() < lo):  # ControlNet.get_control's timestep_range
            active.append(sigma.item())
            adds = comfy_outputs(residuals(controlnet, transformer, strength, latent_hint, x, pooled[which], t),
                                 depth)
        # SkipLayerGuidance's blocks pass their inputs on (ComfyUI's patch_replace), the control still added
        # after them: hooks on those blocks, before with_controls' own
        hooks = [transformer.transformer_blocks[k].register_forward_hook(
            lambda module, args, kwargs, out: (kwargs["encoder_hidden_states"], kwargs["hidden_states"]),
            with_kwargs=True) for k in skip]
        try:
            return with_controls(transformer, adds, hidden_states=x, encoder_hidden_states=ctx[which],
                                 pooled_projections=pooled[which], timestep=t)
        finally:
            for hook in hooks:
                hook.remove()

    def sample(control, store, prefix, slg=None):
        """The run; with slg (layers, scale, start, end) SkipLayerGuidanceSD3's
        post-CFG function (rescaling 0): within its sigmas the positive
        prompt again, ControlNet and all, with those blocks skipped, scale
        times the difference added."""
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        image = (torch.zeros(1, 16, h, w) - SHIFT) * SCALE  # the empty latent, process_in
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x0 = {k: x - model(x, s, k, control) * s for k in ("negative", "positive")}
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            if slg and ms.percent_to_sigma(slg[3]) <= s.item() <= ms.percent_to_sigma(slg[2]):
                d = d + (x0["positive"] - (x - model(x, s, "positive", control, slg[0]) * s)) * slg[1]
            store[f"{prefix}denoised.{i}"] = d
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        return x / SCALE + SHIFT

    # without the control, the restatement gives make_sd3_data's run
    plain = sample(False, {}, "")
    assert torch.allclose(plain, stored["run.latent_out"], atol=1e-5), rel(plain, stored["run.latent_out"])
    latent = sample(True, g, "run.")
    g.update({"run.sigmas": sigmas, "run.latent_out": latent, "run.image": decode_image(vae, latent)})
    # with SkipLayerGuidanceSD3 (block 1, scale 3, over the first half: sigmas 1, 0.9 and 0.75); check first
    # that skipping no block adds nothing, and that the skip hooks skip as diffusers' skip_layers does
    assert torch.equal(sample(True, {}, "", ([], 3.0, 0.0, 0.5)), latent)
    with torch.no_grad():
        t = ms.timestep(sigmas[1]).view(1)
        theirs = transformer(hidden_states=latent_hint, encoder_hidden_states=ctx["positive"],
                             pooled_projections=pooled["positive"], timestep=t, skip_layers=[1]).sample
    assert torch.equal(model(latent_hint, sigmas[1], "positive", False, [1]), theirs)
    slg = sample(True, g, "slg.", ([1], 3.0, 0.0, 0.5))
    g["slg.latent_out"] = slg
    print("slg.latent_out against run.latent_out: relative difference", rel(slg, latent))
    print("sigmas", sigmas.tolist(), "control window: sigma in [%r, %r]" % (lo, hi),
          "active at", sorted(set(active), reverse=True), "(calls: %d)" % len(active))
    print("run.latent_out against run.golden's: relative difference", rel(latent, stored["run.latent_out"]),
          "max abs", (latent - stored["run.latent_out"]).abs().max().item())
    print("hint_latent with shift 0.0609 against with shift 0: relative difference",
          rel(latent_hint, mean * SCALE))
    print("canny hint_latent's range", canny.min().item(), canny.max().item(),
          "depth's", latent_hint.min().item(), latent_hint.max().item())


def readable():
    """The files written readable by all (safetensors writes them 0600), and
    their sizes."""
    total = 0
    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name)
        os.chmod(path, 0o644)
        total += os.path.getsize(path)
        print(os.path.relpath(path, HERE), os.path.getsize(path))
    print("total", total)


if __name__ == "__main__":
    main()
