"""Goldens for ComfyUI's HyperTile node with its KSampler.

Origin: upstream diffusers 0.42.1 and PyTorch 2.15 (CPU, float32) running
kiln's tiny SD 1.x UNet, with ComfyUI v0.3.64 (commit a125cd84)
comfy_extras/nodes_hypertile.py (random_divisor, hypertile_in,
hypertile_out), comfy/ldm/modules/attention.py (BasicTransformerBlock's
attn1_patch / attn1_output_patch, CrossAttention, attention_pytorch's
reshape) and comfy/sample.py (prepare_noise) restated here, not copied.

What ComfyUI does, as restated:
- The node patches every transformer block's self-attention (attn1). The
  patch gets n = norm1(x) (B, T, C) as the query input and n again as the
  key and value input; the UNet's input shape (B, C, H, W) is
  original_shape. It acts where T is one of (H / 2^i) * (W / 2^i) for i in
  0..max_depth (Python floats compared with the integer T; the first such i
  is the level). Then with aspect = W / H it takes h = round(sqrt(T *
  aspect)) and w = round(sqrt(T / aspect)) (Python's round; on a level of
  H' x W' that is h = W', w = H': for a picture that is not square the
  tokens are read as rows of H' tokens, not W'), a minimum tile side
  latent_tile = max(32, tile_size) // 8, times 2^level with scale_depth, and
  nh = random_divisor(h, latent_tile, swap_size), nw the same on w:
  random_divisor(value, min, k) lists value // d for the divisors d of value
  from min(min, value) up, keeps the first k, and where it kept more than
  one draws idx = torch.randint(0, len - 1) (the high end excluded, so the
  last kept is never taken; the draw is made even where only index 0 can
  come out) from torch's global generator; otherwise idx 0.
- Where nh * nw > 1 only the query input is rearranged, "b (nh h nw w) c ->
  (b nh nw) (h w) c" (h = h // nh, w = w // nw): each tile of the h x w grid
  becomes a batch row. The key and value inputs stay (B, T, C); the
  attention reshapes every operand to (rows of q, -1, heads, dim_head), so
  the keys of query tile j (j = (b * nh + a) * nw + c) are the j-th run of
  T / (nh * nw) tokens of the flat sequence, not the tile's own. The output
  after to_out is rearranged back.
- The global generator: prepare_noise seeds it (torch.manual_seed(seed))
  and draws the latent's noise from it; the draws above continue from there,
  in the order the UNet runs its blocks, one UNet call per step (the
  [negative, positive] pair in one batch).

The restated attention is diffusers' Attention with a processor doing the
above (check_processor first shows that without tiling it equals
diffusers' own processor to 1e-6).

KSampler: euler, "normal" scheduler, 3 steps, cfg 5, seed 42, denoise 1
(sd_common.ksampler, as tests/data/deep_shrink uses it). Latent 12 x 16
(height x width): level 0 is 12 x 16 (T 192: h 16, w 12), level 1 (the
middle block) 6 x 8 (T 48: h 8, w 6).

Runs:
  defaults: tile_size 32, swap_size 2, max_depth 0, scale_depth off (the
            node's defaults but a tile of 32 pixels: 4 latent pixels)
  random:   tile_size 32, swap_size 3, max_depth 1, scale_depth off (two of
            three choices drawn on level 0; the middle block tiled 2 x 1)
  scaled:   tile_size 16, swap_size 4, max_depth 1, scale_depth on (the
            middle block's minimum 8: untiled there)
  pag:      tile_size 32, swap_size 3, max_depth 0, scale_depth off, with
            PerturbedAttentionGuidance scale 3 after it (its pass a second
            UNet call each step on the positive row alone, drawing after the
            first). Not on the middle block: there the pass's values, one
            row, meet hypertile_out's rearrange of nh * nw rows, which fails
            in ComfyUI.

And one call of the tiny SDXL UNet (tests/data/sdxl/tiny_sdxl_diffusers:
no transformers on level 0, two blocks deep on level 1 and in the middle)
on a 24 x 32 latent (level 1 is 12 x 16), with tile_size 32, swap_size 3,
max_depth 1, torch's generator seeded with 11 just before: every block of
a transformer draws its own tiles.

Writes tests/data/hypertile/hypertile.safetensors, every tensor float32:
  positive (1, 77, 32), negative (1, 77, 32), noise (1, 4, 12, 16)
  plain.latent_out (1, 4, 12, 16): the run without the patch
  For each run R:
    R.settings (4,): [tile_size, swap_size, max_depth, scale_depth (0/1)]
    R.tiles (calls, 6, 2): for each UNet call (one a step; pag two: the
        step's, then its pass) and each of its six transformers in run order
        (input blocks 1, 2, the middle block, output blocks 9, 10, 11), the
        (nh, nw) taken (1, 1: untouched)
  pag.pag_scale (1,)
  sdxl.sample (2, 4, 24, 32) (seeded normal), sdxl.timesteps (2,) [999,
    500], sdxl.encoder_hidden_states (2, 77, 64) and sdxl.y (2, 80): kiln's
    label_emb input, from tests/data/sdxl/golden.safetensors (its
    text_embeds and time_ids go to diffusers as added_cond_kwargs),
    sdxl.settings (4,), sdxl.seed (1,) [11], sdxl.tiles (1, 12, 2): the
    (nh, nw) of each self-attention in run order (the 12 transformer
    blocks), sdxl.noise_pred (2, 4, 24, 32)
    R.latent_out (1, 4, 12, 16): the LATENT KSampler returns
Metadata "source": the versions and the ComfyUI commit.

Run from the repository root:
  /tmp/tv/bin/python tests/data/hypertile/make_hypertile_data.py
(Python 3.11, torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0.)
"""
import math
import os
import sys

import diffusers
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import comfy_normal_sigmas, eps_x0, cfg_denoiser, ksampler, rel_l2, save_float_goldens  # noqa: E402

OUT = "tests/data/hypertile"
MODEL = "tests/data/tiny/sd15_tiny_diffusers"
INPUTS = "tests/data/tiny/unet.safetensors"
COMFY_COMMIT = "a125cd84b054a57729b5eecab930ca9408719832"
SCALING = 0.18215
STEPS = 3
CFG = 5.0
SEED = 42
H, W = 12, 16

RUNS = {
    "defaults": dict(tile_size=32, swap_size=2, max_depth=0, scale_depth=False),
    "random": dict(tile_size=32, swap_size=3, max_depth=1, scale_depth=False),
    "scaled": dict(tile_size=16, swap_size=4, max_depth=1, scale_depth=True),
    "pag": dict(tile_size=32, swap_size=3, max_depth=0, scale_depth=False),
}
PAG_SCALE = 3.0
SDXL = "tests/data/sdxl/tiny_sdxl_diffusers"
SDXL_GOLDEN = "tests/data/sdxl/golden.safetensors"
SDXL_RUN = dict(tile_size=32, swap_size=3, max_depth=1, scale_depth=False)
SDXL_SEED = 11


def random_divisor(value, min_value, max_options):
    min_value = min(min_value, value)
    divisors = [i for i in range(min_value, value + 1) if value % i == 0]
    ns = [value // i for i in divisors[:max_options]]
    idx = torch.randint(low=0, high=len(ns) - 1, size=(1,)).item() if len(ns) > 1 else 0
    return ns[idx]


class HyperTile:
    """The node's two patches for one setting; `shape` is the UNet call's
    input shape (set before each call), `taken` the (nh, nw) of each
    patched attention in call order."""

    def __init__(self, tile_size, swap_size, max_depth, scale_depth):
        self.latent_tile = max(32, tile_size) // 8
        self.swap, self.depth, self.scale_depth = swap_size, max_depth, scale_depth
        self.shape, self.temp, self.taken = None, None, []

    def tile_in(self, q):
        levels = [(self.shape[-2] / 2 ** i) * (self.shape[-1] / 2 ** i) for i in range(self.depth + 1)]
        tokens = q.shape[-2]
        if tokens not in levels:
            self.taken.append((1, 1))
            return q
        aspect = self.shape[-1] / self.shape[-2]
        h, w = round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))
        factor = 2 ** levels.index(tokens) if self.scale_depth else 1
        nh = random_divisor(h, self.latent_tile * factor, self.swap)
        nw = random_divisor(w, self.latent_tile * factor, self.swap)
        self.taken.append((nh, nw))
        if nh * nw > 1:
            b, _, c = q.shape
            q = q.reshape(b, nh, h // nh, nw, w // nw, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, -1, c)
            self.temp = (nh, nw, h, w)
        return q

    def tile_out(self, out):
        if self.temp is None:
            return out
        nh, nw, h, w = self.temp
        self.temp = None
        rows, _, c = out.shape
        b = rows // (nh * nw)
        return out.reshape(b, nh, nw, h // nh, w // nw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * w, c)


class SelfAttention:
    """attn1 as ComfyUI runs it with the patch (or without, patch None).
    With `perturbed` set (a one-item list: True during the
    PerturbedAttentionGuidance pass) it is the middle block's: its attention
    then replaced by the values (PAG's attn1 replace patch, which returns
    to_v of the key input)."""

    def __init__(self, patch, perturbed=None):
        self.patch, self.perturbed = patch, perturbed

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        assert encoder_hidden_states is None and attention_mask is None and hidden_states.ndim == 3
        n = hidden_states
        q_in = self.patch.tile_in(n) if self.patch else n
        if self.perturbed and self.perturbed[0]:
            out = attn.to_v(n)
        else:
            q, k, v = attn.to_q(q_in), attn.to_k(n), attn.to_v(n)
            rows, heads = q.shape[0], attn.heads
            dim_head = q.shape[-1] // heads
            q, k, v = (t.reshape(rows, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v)
            out = out.transpose(1, 2).reshape(rows, -1, heads * dim_head)
        out = attn.to_out[1](attn.to_out[0](out))
        return self.patch.tile_out(out) if self.patch else out


def set_self_attention(unet, processor, middle=None, count=6):
    """processor on each of the UNet's `count` attn1s (middle: another on the middle block's)."""
    seen = 0
    for name, module in unet.named_modules():
        if name.endswith("attn1"):
            module.set_processor(middle if middle and name.startswith("mid_block.") else processor)
            seen += 1
    assert seen == count, seen


def check_processor(unet, ctx):
    """The restated attention without the patch against diffusers' own."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, H, W, generator=g)
    t = torch.tensor([917.0, 3.0])
    with torch.no_grad():
        set_self_attention(unet, AttnProcessor2_0())
        a = unet(x, t, encoder_hidden_states=ctx).sample
        set_self_attention(unet, SelfAttention(None))
        b = unet(x, t, encoder_hidden_states=ctx).sample
    d = (a - b).abs().max().item()
    assert d < 1e-6, d
    return d


def pag_denoiser(model, perturbed, timestep):
    """The CFG guider's x0 (cfg_denoiser's, written out to keep the positive
    row's x0) then PerturbedAttentionGuidance's post-CFG function: the
    positive row alone again with the middle block perturbed, and cfg_result
    + (cond_pred - that) * scale."""
    def denoised(x, sigma):
        xc = torch.cat([x, x])
        t = timestep(sigma.view(1)).float()
        scale_in = (sigma ** 2 + 1) ** 0.5
        with torch.no_grad():
            x0s = eps_x0(xc, model(xc / scale_in, t.repeat(2)), sigma)
            perturbed[0] = True
            pag = eps_x0(x, model(x / scale_in, t, positive_only=True), sigma)
            perturbed[0] = False
        return x0s[0:1] + (x0s[1:2] - x0s[0:1]) * CFG + (x0s[1:2] - pag) * PAG_SCALE

    return denoised


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(OUT, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    ctx = load_file(INPUTS)["encoder_hidden_states"].float()
    positive, negative = ctx[0:1].clone(), ctx[1:2].clone()
    pair = torch.cat([negative, positive])   # calc_cond_batch's order: uncond row first
    print(f"restated attention vs diffusers' without the patch: max |diff| {check_processor(unet, pair):.3e}")

    sigmas, timestep = comfy_normal_sigmas(STEPS)
    g = {"positive": positive, "negative": negative}

    set_self_attention(unet, SelfAttention(None))
    noise = torch.randn(1, 4, H, W, generator=torch.manual_seed(SEED))
    g["noise"] = noise
    plain = ksampler(cfg_denoiser(lambda xin, t: unet(xin, t, encoder_hidden_states=pair).sample, eps_x0, CFG,
                                  timestep), noise, sigmas, SCALING, None)
    g["plain.latent_out"] = plain

    for name, r in RUNS.items():
        patch = HyperTile(**r)
        set_self_attention(unet, SelfAttention(patch))

        def model(xin, t, positive_only=False):
            patch.shape = tuple(xin.shape)
            return unet(xin, t, encoder_hidden_states=pair[1:] if positive_only else pair).sample

        guided = cfg_denoiser(model, eps_x0, CFG, timestep)
        if name == "pag":
            perturbed = [False]
            set_self_attention(unet, SelfAttention(patch), SelfAttention(patch, perturbed))
            guided = pag_denoiser(model, perturbed, timestep)
        # prepare_noise: the global generator seeded, the noise drawn from it
        again = torch.randn(1, 4, H, W, generator=torch.manual_seed(SEED))
        assert torch.equal(again, noise)
        out = ksampler(guided, noise, sigmas, SCALING, None)
        tiles = torch.tensor(patch.taken, dtype=torch.float32).reshape(-1, 6, 2)
        g[f"{name}.settings"] = torch.tensor([r["tile_size"], r["swap_size"], r["max_depth"],
                                              1.0 if r["scale_depth"] else 0.0])
        g[f"{name}.tiles"] = tiles
        g[f"{name}.latent_out"] = out
        dist = rel_l2(out, plain)
        if name == "pag":
            g["pag.pag_scale"] = torch.tensor([PAG_SCALE])
        print(f"{name}: rel L2 vs plain {dist:.6e}; tiles per call (nh, nw):")
        for i in range(tiles.shape[0]):
            print("    ", [tuple(int(v) for v in tiles[i, j]) for j in range(6)])
        assert dist > 1e-3, dist

    # the tiny SDXL UNet, one call: every block of its two-deep transformers draws its own tiles
    xl = UNet2DConditionModel.from_pretrained(SDXL, subfolder="unet", torch_dtype=torch.float32).eval()
    xg = load_file(SDXL_GOLDEN)
    patch = HyperTile(**SDXL_RUN)
    set_self_attention(xl, SelfAttention(patch), count=12)
    sample = torch.randn(2, 4, 24, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([999.0, 500.0])
    kw = dict(encoder_hidden_states=xg["encoder_hidden_states"],
              added_cond_kwargs={"text_embeds": xg["text_embeds"], "time_ids": xg["time_ids"]})
    patch.shape = tuple(sample.shape)
    torch.manual_seed(SDXL_SEED)
    with torch.no_grad():
        eps = xl(sample, t, **kw).sample
        set_self_attention(xl, SelfAttention(None), count=12)
        plain = xl(sample, t, **kw).sample
    g.update({"sdxl.sample": sample, "sdxl.timesteps": t, "sdxl.encoder_hidden_states": xg["encoder_hidden_states"],
              "sdxl.y": xg["y"], "sdxl.seed": torch.tensor([float(SDXL_SEED)]),
              "sdxl.settings": torch.tensor([SDXL_RUN["tile_size"], SDXL_RUN["swap_size"], SDXL_RUN["max_depth"],
                                             1.0 if SDXL_RUN["scale_depth"] else 0.0]),
              "sdxl.tiles": torch.tensor(patch.taken, dtype=torch.float32).reshape(1, 12, 2),
              "sdxl.noise_pred": eps})
    print(f"sdxl: rel L2 vs the call without the patch {rel_l2(eps, plain):.6e}; tiles {patch.taken}")
    assert rel_l2(eps, plain) > 1e-3

    source = (f"tests/data/hypertile/make_hypertile_data.py: ComfyUI {COMFY_COMMIT} HyperTile restated on "
              f"diffusers {diffusers.__version__}, torch {torch.__version__.split('+')[0]}, CPU float32")
    save_float_goldens(g, os.path.join(OUT, "hypertile.safetensors"), source)


if __name__ == "__main__":
    sys.exit(main())
