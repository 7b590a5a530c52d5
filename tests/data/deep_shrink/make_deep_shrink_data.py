"""Goldens for ComfyUI's PatchModelAddDownscale ("Kohya Deep Shrink") with its
KSampler.

Origin: upstream diffusers 0.42.1 and PyTorch 2.15 (CPU, float32) running
kiln's tiny SD 1.x UNet, with ComfyUI v0.3.64 (commit a125cd84)
comfy_extras/nodes_model_downscale.py, comfy/ldm/modules/diffusionmodules/
openaimodel.py (UNetModel._forward's input_block_patch,
input_block_patch_after_skip and output_block_patch; Upsample's output_shape),
comfy/utils.py (common_upscale), comfy/model_sampling.py (percent_to_sigma),
comfy/samplers.py (normal_scheduler, calc_cond_batch's
transformer_options["sigmas"]), comfy/k_diffusion/sampling.py
(sample_euler) and, for the freeu_v2 run, comfy_extras/nodes_freelunch.py
(FreeU_V2) restated here, not copied.

What ComfyUI does, as restated:
- The node turns start_percent and end_percent into sigmas with the model's
  percent_to_sigma: 0 -> 999999999.9, 1 -> 0.0, otherwise the float32
  interpolation of the log of the 1000 training sigmas at timestep
  (1 - percent) * 999 (as a Python float). A model call is "shrunk" when
  its first sigma (transformer_options["sigmas"][0].item()) is <= the start
  bound and >= the end bound.
- The UNet's input blocks are numbered as ComfyUI's ldm UNet numbers them; on
  this tiny model (2 levels, 2 layers per level) 0 = conv_in, 1 and 2 =
  down_blocks[0]'s (resnet, transformer) pairs, 3 = down_blocks[0]'s
  downsampler, 4 and 5 = down_blocks[1]'s resnets; each pushes one skip.
  With downscale_after_skip the resize of input block `block_number`'s output
  runs after its skip is pushed (the skip keeps the full size), otherwise
  before (the skip is the small one). The new size is
  (round(H * (1 / factor)), round(W * (1 / factor))) with Python's round,
  by F.interpolate(size=..., mode=downscale_method) (align_corners left at
  its default; common_upscale's crop "disabled").
- At every output block (on every call, shrunk or not) the skip is popped and,
  when h's height differs from the skip's, h is resized to the skip's (H, W)
  with upscale_method before the concatenation. An upsampler's output takes
  the size of the next skip still on the stack (nearest, as diffusers'
  upsample_size gives it), so a small h is also brought back up there.
  Consequences: with the resize before the skip at block 3 the small skip
  travels with h, the heights always match, and the upsampler alone (nearest)
  restores the size, so upscale_method never acts (the script checks that
  bicubic gives the same run); and only heights are compared, so a factor
  that keeps the height but not the width (1.07 on the 6 x 8 of block 3 after
  the skip: 6 x 7) reaches the concatenation with mismatched widths, which
  fails in ComfyUI.
- freeu_v2 chains Checkpoint -> PatchModelAddDownscale -> FreeU_V2, so the
  model's output_block_patch list is [the downscale's, FreeU_V2's] and at
  each output block they run in that order on (h, skip) before the
  concatenation: h is first resized to the skip's size, then FreeU_V2 acts on
  the resized h and the skip. FreeU_V2 (as tests/data/freeu/
  make_freeu_data.py restates it; not imported, since that script patches
  diffusers when loaded) keys on h's channel count, model_channels * 4 ->
  (b1, s1), model_channels * 2 -> (b2, s2) (model_channels 32 here: the 64
  wide h of output blocks 0-3 takes (b2, s2), 128 never occurs), scales h's
  first half of channels by (b - 1) * m + 1, m the channel mean min-max
  rescaled per image, and scales the centre 2 x 2 of the skip's shifted 2-D
  FFT by s. The script checks the restated forward with FreeU_V2 alone
  against tests/data/freeu/tiny.safetensors' freeu_v2.noise_pred, and prints
  (stores nothing of) the run's distance from the same Deep Shrink without
  FreeU_V2 and from the two patches the other way round.
- Here that forward is written out on diffusers' blocks (check_forward first
  shows it equals unet(...) without the patch to 1e-6), the sizes h takes
  logged per call.
- KSampler: euler, "normal" scheduler (sd_common.comfy_normal_sigmas), 3 steps,
  denoise 1, cfg 5, seed 42 noise (torch.randn of the latent's shape with
  torch.manual_seed(42)), x starting at noise * sqrt(1 + sigma0^2); each step
  one UNet call on the [negative, positive] pair (x / sqrt(sigma^2 + 1) at the
  timestep nearest sigma), eps model sampling, x0 = x - sigma * eps,
  uncond + (cond - uncond) * cfg; the returned LATENT is final x / 0.18215
  (sd_common.ksampler, as tests/data/sag/make_sag_data.py uses it).

Inputs: tests/data/tiny/sd15_tiny_diffusers (subfolder unet, float32);
tests/data/tiny/unet.safetensors' encoder_hidden_states (2, 77, 32): row 0 the
positive, row 1 the negative. Latent 12 x 16 (height x width).

Runs (each euler, normal, 3 steps, cfg 5, seed 42, denoise 1):
  after_skip:  block 3, factor 2.0, start 0.0, end 0.35, after skip,
               bicubic down, bicubic up
  before_skip: block 3, factor 1.5, start 0.0, end 1.0, before skip,
               bilinear down, nearest-exact up
  block1:      block 1, factor 2.0, start 0.0, end 0.6, after skip,
               bicubic down, bicubic up
  bislerp:     block 3, factor 1.5 (6 x 8 to 4 x 5), start 0.0, end 1.0, after
               skip, bislerp down and up (ComfyUI's comfy/utils.py bislerp,
               as tests/data/resample/make_resample_data.py restates it)
  freeu_v2:    block 3, factor 2.0, start 0.0, end 1.0, after skip,
               bicubic down, bicubic up, then FreeU_V2 b1 1.3, b2 1.4,
               s1 0.9, s2 0.2 (the node's defaults)
  controlnet:  block 3, factor 2.0, start 0.0, end 0.5, before skip,
               bilinear down, bicubic up, with tests/data/controlnet's tiny
               ControlNet (diffusers' ControlNetModel, at the latent's full
               size: ComfyUI's ControlNet model gets no patch) at strength
               0.8 on both prompts: in the shrunk calls the residuals of
               skips 3-5 and the middle's meet a 3 x 4 path and are left out
               (ComfyUI's apply_control catches the failed add and logs it)
  t2i:         the same patch with tests/data/t2i_adapter's full
               T2I-Adapter (its ComfyUI pooling) at strength 0.7 on both
               prompts: its features join after input blocks 2 and 5
               (apply_control's 'input', before the patch), the second
               left out in the shrunk calls
  plain:       no patch

Writes tests/data/deep_shrink/deep_shrink.safetensors, every tensor float32:
  positive (1, 77, 32), negative (1, 77, 32): the conditioning rows.
  sigmas (4,): the normal scheduler's 3 sigmas then 0.
  noise (1, 4, 12, 16): the seed-42 noise.
  plain.latent_out (1, 4, 12, 16): the run without the patch.
  For each run R in after_skip, before_skip, block1, bislerp (freeu_v2: all but
  sigma_bounds):
    R.settings (7,): [block_number, downscale_factor, start_percent,
        end_percent, downscale_after_skip (0/1), downscale_method,
        upscale_method], a method as 0 nearest-exact, 1 bilinear, 2 bicubic,
        5 bislerp
    R.sigma_bounds (2,): [sigma_start, sigma_end] (float32 of the Python
        floats the node compares with; 999999999.9 becomes 1e9)
    R.shrunk_steps (3,): 1 where that step's model call was shrunk
    R.latent_out (1, 4, 12, 16): the LATENT KSampler returns
  freeu_v2.freeu (4,): FreeU_V2's [b1, b2, s1, s2]
  hint (1, 3, 96, 128): the controlnet and t2i runs' picture (seeded uniform)
  controlnet.*, t2i.*: settings, shrunk_steps, latent_out as above, and
      strength (1,), unshrunk_latent_out (1, 4, 12, 16): the run with the
      control but not the patch
  after_skip.eps_x (1, 4, 12, 16): the x of the first step (noise * sqrt(1 +
      sigma0^2), before the model's input scaling)
  after_skip.eps_sigma (2,): [sigma0, its timestep]
  after_skip.eps_first (1, 4, 12, 16): the UNet's eps for the positive row
      alone (no CFG) at that x and sigma with after_skip's patch on (the UNet
      called on eps_x / sqrt(sigma0^2 + 1) at that timestep)
Metadata "source": the versions and the ComfyUI commit.

Run from the repository root:
  /tmp/tv/bin/python tests/data/deep_shrink/make_deep_shrink_data.py
(Python 3.11, torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0.)
"""
import collections
import os
import sys

import diffusers
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, T2IAdapter, UNet2DConditionModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import comfy_normal_sigmas, eps_x0, cfg_denoiser, ksampler, rel_l2, save_float_goldens  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "t2i_adapter"))
from make_t2i_adapter_data import with_comfy_pooling  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resample"))
from make_resample_data import common_upscale  # noqa: E402

OUT = "tests/data/deep_shrink"
MODEL = "tests/data/tiny/sd15_tiny_diffusers"
INPUTS = "tests/data/tiny/unet.safetensors"
COMFY_COMMIT = "a125cd84b054a57729b5eecab930ca9408719832"
SCALING = 0.18215
STEPS = 3
CFG = 5.0
H, W = 12, 16
METHODS = ["nearest-exact", "bilinear", "bicubic", "nearest", "area", "bislerp"]  # kiln_resample_method's order

RUNS = {
    "after_skip": dict(block=3, factor=2.0, start=0.0, end=0.35, after_skip=True,
                       down="bicubic", up="bicubic"),
    "before_skip": dict(block=3, factor=1.5, start=0.0, end=1.0, after_skip=False,
                        down="bilinear", up="nearest-exact"),
    "block1": dict(block=1, factor=2.0, start=0.0, end=0.6, after_skip=True,
                   down="bicubic", up="bicubic"),
    "bislerp": dict(block=3, factor=1.5, start=0.0, end=1.0, after_skip=True,
                    down="bislerp", up="bislerp"),
}
# the freeu_v2 run: PatchModelAddDownscale with these settings, then FreeU_V2
FREEU_V2_RUN = dict(block=3, factor=2.0, start=0.0, end=1.0, after_skip=True,
                    down="bicubic", up="bicubic")
FREEU_V2 = dict(b1=1.3, b2=1.4, s1=0.9, s2=0.2)
FREEU_GOLDEN = "tests/data/freeu/tiny.safetensors"
# the controlnet run: Deep Shrink before block 3's skip over the first steps, with the tiny ControlNet
# (tests/data/controlnet) at strength 0.8 on both prompts
CONTROLNET_RUN = dict(block=3, factor=2.0, start=0.0, end=0.5, after_skip=False, down="bilinear", up="bicubic")
CONTROLNET = "tests/data/controlnet/tiny_diffusers.safetensors"
CONTROLNET_STRENGTH = 0.8
# the t2i run: the same patch with the tiny full T2I-Adapter (tests/data/t2i_adapter) at strength 0.7
ADAPTER = "tests/data/t2i_adapter/full_diffusers.safetensors"
ADAPTER_STRENGTH = 0.7


def percent_to_sigma(percent):
    """ModelSamplingDiscrete.percent_to_sigma on SD 1.x's table, as a Python float."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    # ComfyUI's log_sigmas: the log taken of the float64 sigmas, then kept float32
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log().float()
    t = torch.clamp(torch.tensor((1.0 - percent) * 999.0), min=0, max=999)
    lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp().item()


def resize(h, size, method):
    """common_upscale with crop "disabled" (bislerp as tests/data/resample restates ComfyUI's)."""
    return common_upscale(h, size[1], size[0], method, "disabled")


class DeepShrink:
    """The node's two patches for one setting: `active(sigma)` says whether
    a call at that sigma shrinks; `inp(h, block_id, sigma)` the input-block
    patch; `out(h, skip)` the output-block patch."""

    def __init__(self, block, factor, start, end, after_skip, down, up):
        self.block, self.factor, self.after_skip = block, factor, after_skip
        self.down, self.up = down, up
        self.sigma_start = percent_to_sigma(start)
        self.sigma_end = percent_to_sigma(end)

    def active(self, sigma):
        s = sigma.reshape(-1)[0].item()
        return s <= self.sigma_start and s >= self.sigma_end

    def inp(self, h, block_id, sigma):
        if block_id != self.block or not self.active(sigma):
            return h
        size = (round(h.shape[-2] * (1.0 / self.factor)), round(h.shape[-1] * (1.0 / self.factor)))
        return resize(h, size, self.down)

    def out(self, h, skip):
        if h.shape[2] != skip.shape[2]:
            h = resize(h, skip.shape[-2:], self.up)
        return h

    def output_block_patch(self, h, hsp):
        return self.out(h, hsp), hsp


# --- ComfyUI v0.3.64 comfy_extras/nodes_freelunch.py's FreeU_V2, restated as
# tests/data/freeu/make_freeu_data.py restates it (that script patches
# diffusers on import, so it is not imported) ---

def fourier_filter(x, threshold, scale):
    x_freq = torch.fft.fftn(x.float(), dim=(-2, -1))
    x_freq = torch.fft.fftshift(x_freq, dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W), device=x.device)
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    x_freq = x_freq * mask
    x_freq = torch.fft.ifftshift(x_freq, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real.to(x.dtype)


class FreeUV2:
    """FreeU_V2's output_block_patch for one setting on a UNet of
    `model_channels`; `fired` counts the calls by h's channel count where a
    scale matched."""

    def __init__(self, model_channels, b1, b2, s1, s2):
        self.scale_dict = {model_channels * 4: (b1, s1), model_channels * 2: (b2, s2)}
        self.fired = collections.Counter()

    def __call__(self, h, hsp):
        scale = self.scale_dict.get(int(h.shape[1]))
        if scale is not None:
            self.fired[int(h.shape[1])] += 1
            hidden_mean = h.mean(1).unsqueeze(1)
            B = hidden_mean.shape[0]
            hidden_max, _ = torch.max(hidden_mean.view(B, -1), dim=-1, keepdim=True)
            hidden_min, _ = torch.min(hidden_mean.view(B, -1), dim=-1, keepdim=True)
            hidden_mean = (hidden_mean - hidden_min.unsqueeze(2).unsqueeze(3)) / \
                (hidden_max - hidden_min).unsqueeze(2).unsqueeze(3)
            h[:, :h.shape[1] // 2] = h[:, :h.shape[1] // 2] * ((scale[0] - 1) * hidden_mean + 1)
            hsp = fourier_filter(hsp, threshold=1, scale=scale[1])
        return h, hsp


def forward(unet, sample, timestep, context, patch=None, sigma=None, log=None, out_patches=None, control=None,
            features=None):
    """ComfyUI's UNetModel._forward on diffusers' blocks of the tiny SD 1.x
    UNet, with the Deep Shrink patches when `patch` is given (`sigma` the
    call's sigmas). `out_patches`, when given, is the output_block_patch list
    (each (h, hsp) -> (h, hsp), run in order before the concatenation) in
    place of [patch.output_block_patch]. `log` (a list) gets (place, shape)
    of h. `control`, when given, is a ControlNet's (down residuals in push
    order, mid residual): apply_control adds each to the skip it belongs to
    as the skip is popped, and mid to the middle block's output, where the
    shapes agree; where they do not (a skip or middle kept small) ComfyUI's
    in-place add raises, it logs a warning, and the residual is left out;
    `log` gets ("dropped", index) for each ("mid" for the middle's).
    `features`, when given, maps input block ids to a T2I-Adapter's
    features: apply_control's 'input' adds each to h after its block, before
    the input block patch, where the shapes agree (else ("dropped", "inN"))."""
    ctrl_out = list(control[0]) if control is not None else []

    def note(place, h):
        if log is not None:
            log.append((place, tuple(h.shape[-2:])))

    if out_patches is None:
        out_patches = [patch.output_block_patch] if patch is not None else []

    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep))
    skips = []

    def push(h, block_id):
        # input block `block_id` has produced h
        if features is not None and block_id in features:
            if features[block_id].shape == h.shape:
                h = h + features[block_id]
            elif log is not None:
                log.append(("dropped", f"in{block_id}"))
        note(f"in{block_id}", h)
        if patch is not None and not patch.after_skip:
            h = patch.inp(h, block_id, sigma)
            note(f"in{block_id}.patched", h)
        skips.append(h)
        if patch is not None and patch.after_skip:
            h = patch.inp(h, block_id, sigma)
            note(f"in{block_id}.after_skip", h)
        return h

    d0, d1 = unet.down_blocks
    h = push(unet.conv_in(sample), 0)
    bid = 1
    for resnet, attn in zip(d0.resnets, d0.attentions):
        h = resnet(h, emb)
        h = attn(h, encoder_hidden_states=context, return_dict=False)[0]
        h = push(h, bid)
        bid += 1
    h = push(d0.downsamplers[0](h), bid)
    bid += 1
    assert d1.downsamplers is None and not hasattr(d1, "attentions")
    for resnet in d1.resnets:
        h = push(resnet(h, emb), bid)
        bid += 1
    assert bid == 6 and len(skips) == 6

    h = unet.mid_block(h, emb, encoder_hidden_states=context)
    if control is not None:
        if control[1].shape == h.shape:
            h = h + control[1]
        elif log is not None:
            log.append(("dropped", "mid"))
    note("middle", h)

    u0, u1 = unet.up_blocks
    oid = 0

    def pop(h):
        nonlocal oid
        skip = skips.pop()
        if ctrl_out:
            ctrl = ctrl_out.pop()
            if ctrl.shape == skip.shape:
                skip = skip + ctrl
            elif log is not None:
                log.append(("dropped", len(ctrl_out)))
        if out_patches:
            h2 = h
            for p in out_patches:
                h2, skip = p(h2, skip)
            if h2.shape != h.shape:
                note(f"out{oid}.resized", h2)
            h = h2
        oid += 1
        return torch.cat([h, skip], dim=1)

    assert not hasattr(u0, "attentions")
    for resnet in u0.resnets:
        h = resnet(pop(h), emb)
        note(f"out{oid - 1}", h)
    h = u0.upsamplers[0](h, skips[-1].shape[-2:])
    note(f"out{oid - 1}.upsampled", h)
    for resnet, attn in zip(u1.resnets, u1.attentions):
        h = resnet(pop(h), emb)
        h = attn(h, encoder_hidden_states=context, return_dict=False)[0]
        note(f"out{oid - 1}", h)
    assert u1.upsamplers is None and not skips

    h = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
    return h


def check_forward(unet, ctx):
    """The restated forward without a patch against diffusers' own call."""
    worst = 0.0
    for seed, (hh, ww) in ((1, (12, 16)), (2, (8, 8))):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, 4, hh, ww, generator=g)
        t = torch.tensor([917.0, 917.0]) if seed == 1 else torch.tensor([3.0, 500.0])
        with torch.no_grad():
            a = forward(unet, x, t, ctx)
            b = unet(x, t, encoder_hidden_states=ctx).sample
        d = (a - b).abs().max().item()
        worst = max(worst, d)
        assert d < 1e-6, d
    return worst


def check_control_forward(unet, net, ctx, hint):
    """The restated forward with a ControlNet's residuals and no patch
    against diffusers' own call given them."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, H, W, generator=g)
    t = torch.tensor([700.0, 700.0])
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=ctx, controlnet_cond=hint.repeat(2, 1, 1, 1),
                        conditioning_scale=CONTROLNET_STRENGTH, return_dict=False)
        a = forward(unet, x, t, ctx, control=(down, mid))
        b = unet(x, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                 mid_block_additional_residual=mid).sample
    d = (a - b).abs().max().item()
    assert d < 1e-5, d
    return d


def check_freeu(unet, model_channels):
    """The restated forward with FreeU_V2 alone against
    tests/data/freeu/tiny.safetensors' freeu_v2.noise_pred (diffusers' own
    up blocks with the FreeU_V2 restatement hooked in)."""
    g = load_file(FREEU_GOLDEN)
    fu = FreeUV2(model_channels, **FREEU_V2)
    with torch.no_grad():
        out = forward(unet, g["freeu_v2.sample"], g["freeu_v2.timesteps"], g["freeu_v2.encoder_hidden_states"],
                      out_patches=[fu])
    d = (out - g["freeu_v2.noise_pred"]).abs().max().item()
    assert d < 1e-5, d
    assert dict(fu.fired) == {model_channels * 2: 4}, fu.fired
    return d


def patched_denoiser(unet, pair, timestep, patch, shrunk, logs, out_patches=None, controlnet=None, features=None):
    """The guided x0 (CFG on the [negative, positive] pair) with the patch on
    (and `out_patches` as forward takes them); each call's shrunk flag and h
    sizes are recorded. `controlnet`: (ControlNetModel, hint (1, 3, 8h, 8w),
    strength) applied on both prompts, run at the latent's own size (the
    patch is the UNet's alone: ComfyUI's ControlNet model gets none).
    `features`: a T2I-Adapter's, as forward takes them (the same rows for
    both prompts)."""
    def denoised(x, sigma):
        xc = torch.cat([x, x])
        sig = sigma.view(1).repeat(2)          # transformer_options["sigmas"]
        t = timestep(sigma.view(1)).float().repeat(2)
        xin = xc / (sigma ** 2 + 1) ** 0.5
        log = []
        with torch.no_grad():
            control = None
            if controlnet is not None:
                net, hint, strength = controlnet
                control = net(xin, t, encoder_hidden_states=pair, controlnet_cond=hint.repeat(2, 1, 1, 1),
                              conditioning_scale=strength, return_dict=False)
            feats = None if features is None else {k: f.repeat(2, 1, 1, 1) for k, f in features.items()}
            eps = forward(unet, xin, t, pair, patch, sig, log, out_patches, control, feats)
        shrunk.append(1.0 if patch.active(sig) else 0.0)
        logs.append(log)
        x0s = eps_x0(xc, eps, sigma)
        return x0s[0:1] + (x0s[1:2] - x0s[0:1]) * CFG

    return denoised


def describe(log):
    """The places where h's size changes, as text."""
    parts, last = [], None
    for place, shape in log:
        if place == "dropped":
            parts.append(f"control residual {shape} dropped")
        elif shape != last:
            parts.append(f"{place} {shape[0]}x{shape[1]}")
            last = shape
    return ", ".join(parts)


def print_logs(logs):
    """Each distinct size log of a run's calls, with the steps that had it."""
    seen = {}
    for i, log in enumerate(logs):
        seen.setdefault(describe(log), []).append(i)
    for text, steps in seen.items():
        print(f"    steps {steps}: {text}")


def settings(r):
    """A run's settings as stored: block, factor, start, end, after_skip, and the methods' numbers."""
    return torch.tensor([r["block"], r["factor"], r["start"], r["end"], 1.0 if r["after_skip"] else 0.0,
                         METHODS.index(r["down"]), METHODS.index(r["up"])])


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(OUT, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    assert unet.config.block_out_channels == [32, 64] and unet.config.layers_per_block == 2

    ctx = load_file(INPUTS)["encoder_hidden_states"].float()
    assert ctx.shape == (2, 77, 32)
    positive, negative = ctx[0:1].clone(), ctx[1:2].clone()
    pair = torch.cat([negative, positive])   # calc_cond_batch's order: uncond row first
    print(f"restated forward vs unet(...) without the patch: max |diff| {check_forward(unet, pair):.3e}")

    sigmas, timestep = comfy_normal_sigmas(STEPS)
    assert sigmas.shape == (STEPS + 1,)
    print("sigmas:", [f"{s:.6f}" for s in sigmas.tolist()],
          "timesteps:", [int(timestep(s.view(1)).item()) for s in sigmas[:-1]])
    noise = torch.randn(1, 4, H, W, generator=torch.manual_seed(42))

    g = {"positive": positive, "negative": negative, "sigmas": sigmas.clone(), "noise": noise}

    def model(xin, t):
        return unet(xin, t, encoder_hidden_states=pair).sample

    plain = ksampler(cfg_denoiser(model, eps_x0, CFG, timestep), noise, sigmas, SCALING, None)
    # the restated forward without a patch gives the same run
    plain2 = ksampler(cfg_denoiser(lambda xin, t: forward(unet, xin, t, pair), eps_x0, CFG, timestep),
                      noise, sigmas, SCALING, None)
    d = (plain - plain2).abs().max().item()
    print(f"plain run, diffusers' call vs restated forward: max |diff| {d:.3e}")
    assert d < 1e-5, d
    g["plain.latent_out"] = plain

    for name, r in RUNS.items():
        patch = DeepShrink(r["block"], r["factor"], r["start"], r["end"], r["after_skip"], r["down"], r["up"])
        shrunk, logs = [], []
        out = ksampler(patched_denoiser(unet, pair, timestep, patch, shrunk, logs), noise, sigmas, SCALING, None)
        assert len(shrunk) == STEPS
        g[f"{name}.settings"] = settings(r)
        g[f"{name}.sigma_bounds"] = torch.tensor([patch.sigma_start, patch.sigma_end])
        g[f"{name}.shrunk_steps"] = torch.tensor(shrunk)
        g[f"{name}.latent_out"] = out
        dist = rel_l2(out, plain)
        print(f"{name}: sigma_start {patch.sigma_start!r} sigma_end {patch.sigma_end!r}; "
              f"shrunk per step {shrunk}; rel L2 vs plain {dist:.6e}")
        print_logs(logs)
        assert dist > 1e-3, dist
        assert 0 < sum(shrunk) or name == "plain"

        if name == "before_skip":
            # the small skip travels with h: the upsampler alone brings h back,
            # so upscale_method never acts in this run
            alt = DeepShrink(r["block"], r["factor"], r["start"], r["end"], r["after_skip"], r["down"], "bicubic")
            out2 = ksampler(patched_denoiser(unet, pair, timestep, alt, [], []), noise, sigmas, SCALING, None)
            print(f"    before_skip with upscale bicubic instead: max |diff| {(out2 - out).abs().max().item():.3e}")
            assert torch.equal(out2, out)

        if name == "after_skip":
            s0 = sigmas[0]
            x = noise * (1.0 + s0 ** 2) ** 0.5
            t0 = timestep(s0.view(1)).float()
            with torch.no_grad():
                eps = forward(unet, x / (s0 ** 2 + 1) ** 0.5, t0, positive, patch, s0.view(1))
                eps_plain = unet(x / (s0 ** 2 + 1) ** 0.5, t0, encoder_hidden_states=positive).sample
            assert patch.active(s0.view(1))
            g["after_skip.eps_x"] = x
            g["after_skip.eps_sigma"] = torch.tensor([s0.item(), t0.item()])
            g["after_skip.eps_first"] = eps
            print(f"    eps_first (sigma {s0.item():.6f}, t {int(t0.item())}): rel L2 vs unpatched eps "
                  f"{rel_l2(eps, eps_plain):.6e}")

    # freeu_v2: Checkpoint -> PatchModelAddDownscale -> FreeU_V2, so the
    # output_block_patch list is [downscale's, FreeU_V2's]
    mc = unet.config.block_out_channels[0]
    print(f"restated forward with FreeU_V2 alone vs {FREEU_GOLDEN} freeu_v2.noise_pred: "
          f"max |diff| {check_freeu(unet, mc):.3e}")
    r = FREEU_V2_RUN

    def downscale():
        return DeepShrink(r["block"], r["factor"], r["start"], r["end"], r["after_skip"], r["down"], r["up"])

    patch, fu = downscale(), FreeUV2(mc, **FREEU_V2)
    shrunk, logs = [], []
    out = ksampler(patched_denoiser(unet, pair, timestep, patch, shrunk, logs, [patch.output_block_patch, fu]),
                   noise, sigmas, SCALING, None)
    assert shrunk == [1.0] * STEPS, shrunk
    # h is 64 = 2 * model_channels wide at output blocks 0-3 (128 never occurs)
    assert dict(fu.fired) == {2 * mc: 4 * STEPS}, fu.fired
    g["freeu_v2.settings"] = settings(r)
    g["freeu_v2.freeu"] = torch.tensor([FREEU_V2[k] for k in ("b1", "b2", "s1", "s2")])
    g["freeu_v2.shrunk_steps"] = torch.tensor(shrunk)
    g["freeu_v2.latent_out"] = out
    print(f"freeu_v2: shrunk per step {shrunk}; FreeU_V2 fired by width {dict(fu.fired)}; "
          f"rel L2 vs plain {rel_l2(out, plain):.6e}")
    print_logs(logs)
    # (a) the same Deep Shrink without FreeU_V2 (not stored)
    ds_only = ksampler(patched_denoiser(unet, pair, timestep, downscale(), [], []), noise, sigmas, SCALING, None)
    da = rel_l2(out, ds_only)
    # (b) the two patches the other way round: FreeU_V2 on the small h, then the resize (not stored)
    p2, fu2 = downscale(), FreeUV2(mc, **FREEU_V2)
    rev = ksampler(patched_denoiser(unet, pair, timestep, p2, [], [], [fu2, p2.output_block_patch]),
                   noise, sigmas, SCALING, None)
    db = rel_l2(out, rev)
    print(f"    rel L2 vs Deep Shrink alone (after skip, end 1.0): {da:.6e}")
    print(f"    rel L2 vs FreeU_V2 before the resize: {db:.6e}")
    assert da > 1e-3, da
    assert db > 1e-4, db

    # controlnet: the tiny ControlNet on both prompts with the patch shrinking before block 3's skip, so the
    # residuals of skips 3-5 and the middle are dropped in the shrunk calls
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32),
                                    load_weights_from_unet=False).eval()
    net.load_state_dict(load_file(CONTROLNET))
    hint = torch.rand(1, 3, 8 * H, 8 * W, generator=torch.Generator().manual_seed(5))
    g["hint"] = hint
    print(f"restated forward with ControlNet residuals vs unet(...): max |diff| "
          f"{check_control_forward(unet, net, pair, hint):.3e}")
    r = CONTROLNET_RUN
    patch = DeepShrink(r["block"], r["factor"], r["start"], r["end"], r["after_skip"], r["down"], r["up"])
    unshrunk = DeepShrink(r["block"], r["factor"], 0.0, 0.0, r["after_skip"], r["down"], r["up"])

    def control_run(name, strength, **control):
        """The run with the patch and the control (patched_denoiser's controlnet or features), and the
        control's run without the patch."""
        shrunk, logs = [], []
        out = ksampler(patched_denoiser(unet, pair, timestep, patch, shrunk, logs, **control), noise, sigmas,
                       SCALING, None)
        assert 0 < sum(shrunk) < STEPS, shrunk
        alone = ksampler(patched_denoiser(unet, pair, timestep, unshrunk, [], [], **control), noise, sigmas,
                         SCALING, None)
        g[f"{name}.settings"] = settings(r)
        g[f"{name}.strength"] = torch.tensor([strength])
        g[f"{name}.shrunk_steps"] = torch.tensor(shrunk)
        g[f"{name}.latent_out"] = out
        g[f"{name}.unshrunk_latent_out"] = alone
        print(f"{name}: shrunk per step {shrunk}; rel L2 vs the run without the patch {rel_l2(out, alone):.6e}, "
              f"vs plain {rel_l2(out, plain):.6e}")
        print_logs(logs)
        assert rel_l2(out, alone) > 1e-3 and rel_l2(alone, plain) > 1e-3

    control_run("controlnet", CONTROLNET_STRENGTH, controlnet=(net, hint, CONTROLNET_STRENGTH))
    # t2i: the tiny full T2I-Adapter (tests/data/t2i_adapter, ComfyUI's pooling) on both prompts with the same
    # patch: its features join after input blocks 2 (12 x 16) and 5 (6 x 8, dropped where shrunk to 3 x 4)
    adapter = with_comfy_pooling(T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=2, downscale_factor=8,
                                            adapter_type="full_adapter"))
    adapter.load_state_dict({k: v.float() for k, v in load_file(ADAPTER).items()})
    adapter.eval()
    with torch.no_grad():
        feats = {block: f * ADAPTER_STRENGTH for block, f in zip((2, 5), adapter(hint))}
    control_run("t2i", ADAPTER_STRENGTH, features=feats)

    source = (f"tests/data/deep_shrink/make_deep_shrink_data.py: ComfyUI {COMFY_COMMIT} "
              f"PatchModelAddDownscale restated on diffusers {diffusers.__version__}, "
              f"torch {torch.__version__.split('+')[0]}, CPU float32")
    save_float_goldens(g, os.path.join(OUT, "deep_shrink.safetensors"), source)


if __name__ == "__main__":
    sys.exit(main())
