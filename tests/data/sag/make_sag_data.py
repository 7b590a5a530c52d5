"""Goldens for ComfyUI's SelfAttentionGuidance (SAG) with its KSampler.

Origin: upstream diffusers 0.42.1 and PyTorch (CPU, float32) running kiln's
tiny SD 1.x UNet, with ComfyUI v0.3.64 (commit a125cd84)
comfy_extras/nodes_sag.py, comfy/samplers.py (calc_cond_batch, cfg_function,
sampling_function), comfy/k_diffusion/sampling.py (sample_euler) and
comfy/ldm/modules/attention.py (BasicTransformerBlock's attn1 replace)
restated here, not copied.

What ComfyUI does, as restated:
- The node patches the attn1 of ("middle", 0, 0), which on this UNet is
  unet.mid_block.attentions[0].transformer_blocks[0].attn1 (the middle block
  has one transformer block; 8 heads of 8 channels on 64). ComfyUI calls the
  patch with q, k, v = to_q/to_k/to_v of norm1's output and applies to_out to
  what it returns. When the UNet call's batch holds the uncond (index 1 in
  transformer_options["cond_or_uncond"]), the patch computes attention the
  basic way (q, k split into heads, sim = q k^T * dim_head^-0.5 in float32,
  softmax over the keys) and keeps the uncond row's probabilities, shape
  (heads, T, T); otherwise it runs ordinary attention and keeps nothing.
  Here a diffusers attention processor on that one module does the same
  (its output checked against diffusers' AttnProcessor2_0 on every call).
- calc_cond_batch on [cond, uncond] batches them in reverse, so the main call
  runs the pair [uncond, cond] with cond_or_uncond = [1, 0]; the uncond row
  is row 0. The node sets disable_cfg1_optimization, so at cfg 1 the uncond
  is computed too. Each row's x0 = x - sigma * eps, the UNet called on
  x / sqrt(sigma^2 + 1) at the timestep nearest sigma (sd_common), and
  cfg_result = uncond_x0 + (cond_x0 - uncond_x0) * cfg.
- The post-CFG function (latent 12x16: min > 4, so SAG is not skipped):
  create_blur_map(uncond_x0, attn, blur_sigma, threshold 1.0): per key, the
  mean over heads of the sum over queries of the probabilities, > 1.0 (the
  average key gets exactly 1.0); the token grid (x, y) from ComfyUI's factor
  search (x = round(sqrt(h / w * T)), then the nearest divisor of T trying
  x + i before max(1, x - i)); here T = 48 on a 12x16 latent gives (6, 8);
  the 0/1 mask reshaped (x, y), nearest-upsampled to (12, 16); uncond_x0
  blurred by a 9-tap separable gaussian (sigma blur_sigma, reflect padding);
  degraded = blurred * mask + uncond_x0 * (1 - mask).
  degraded_noised = degraded + x - uncond_x0; one more UNet call on it with
  the uncond conditioning alone (calc_cond_batch([uncond]) -- its
  cond_or_uncond is [0], so the patch does not record there and the
  attention used is always the main call's uncond row); sag_x0 its x0;
  result = cfg_result + (degraded - sag_x0) * scale.
- KSampler: euler, "normal" scheduler (SD1's discrete sigmas, sd_common's
  comfy_normal_sigmas), 3 steps, denoise 1, empty latent, x starting at
  noise * sqrt(1 + sigma0^2), returning final x / 0.18215 (sd_common.ksampler).

Inputs: tests/data/tiny/sd15_tiny_diffusers (subfolder unet, float32);
tests/data/tiny/unet.safetensors' encoder_hidden_states (2, 77, 32): row 0 the
positive, row 1 the negative. scale 0.5, blur_sigma 2.0, seed 42.

Writes tests/data/sag/sag.safetensors, every tensor float32:
  positive (1, 77, 32), negative (1, 77, 32): the conditioning rows.
  For each run P in "cfg5." (cfg 5) and "cfg1." (cfg 1):
    P settings (3,): [cfg, scale 0.5, blur_sigma 2.0]
    P sigmas (4,): the normal scheduler's 3 sigmas then 0
    P noise (1, 4, 12, 16): torch.randn(generator=torch.manual_seed(42))
    P step0.attn_key_weight (48,): step 0's per-key value, mean over heads of
        the sum over queries of the uncond row's attention probabilities
    P step0.mask (12, 16): step 0's 0/1 mask (> 1.0), upsampled
    P step0.uncond_x0, P step0.degraded, P step0.sag_x0, P step0.denoised
        (each (1, 4, 12, 16)): step 0's uncond x0, degraded x0, the x0 of the
        SAG call, and the guided x0 (the post-CFG result; = P denoised.0)
    P denoised.N (1, 4, 12, 16), N = 0, 1, 2: step N's guided x0
    P latent_out (1, 4, 12, 16): the LATENT KSampler returns, final x / 0.18215

Run from the repository root with a python that has torch and diffusers:
  python3 tests/data/sag/make_sag_data.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import comfy_normal_sigmas, eps_x0, cfg_denoiser, ksampler, rel_l2  # noqa: E402

OUT = "tests/data/sag"
MODEL = "tests/data/tiny/sd15_tiny_diffusers"
INPUTS = "tests/data/tiny/unet.safetensors"
SCALING = 0.18215
STEPS = 3
SCALE = 0.5
BLUR_SIGMA = 2.0
THRESHOLD = 1.0
H, W = 12, 16


class RecordingSelfAttn:
    """attn1 of the middle block's first transformer block, computed as
    ComfyUI's attention_basic_with_sim does; when `record` is set, row
    `uncond_row`'s probabilities (heads, T, T) are kept in `self.attn`."""

    def __init__(self):
        self.ref = AttnProcessor2_0()
        self.record = False
        self.uncond_row = 0
        self.attn = None
        self.calls = 0
        self.max_diff = 0.0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        assert encoder_hidden_states is None and attention_mask is None
        assert hidden_states.ndim == 3
        b, t, _ = hidden_states.shape
        heads = attn.heads
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        dim_head = q.shape[-1] // heads

        def split(z):
            return z.reshape(b, t, heads, dim_head).permute(0, 2, 1, 3)   # (b, heads, t, d)

        q, k, v = split(q), split(k), split(v)
        sim = torch.einsum("bhid,bhjd->bhij", q.float(), k.float()) * dim_head ** -0.5
        sim = sim.softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", sim.to(v.dtype), v)
        out = out.permute(0, 2, 1, 3).reshape(b, t, heads * dim_head)
        out = attn.to_out[1](attn.to_out[0](out))

        ref = self.ref(attn, hidden_states)
        d = (out - ref).abs().max().item()
        self.max_diff = max(self.max_diff, d)
        assert d < 1e-6, d
        self.calls += 1
        if self.record:
            self.attn = sim[self.uncond_row].detach().clone()
        return out


def check_plain(attn):
    """What AttnProcessor2_0 does beyond q/k/v, attention and to_out is a no-op here."""
    assert attn.spatial_norm is None and attn.group_norm is None and attn.norm_q is None and attn.norm_k is None
    assert not attn.residual_connection and attn.rescale_output_factor == 1.0
    assert not attn.is_cross_attention
    assert len(attn.to_out) == 2 and isinstance(attn.to_out[1], torch.nn.Dropout)
    assert not attn.training


def grid_search(lh, lw, total):
    """ComfyUI create_blur_map's token grid: x = round(sqrt(h / w * total)),
    then for i = 0, 1, ... below floor(sqrt(total) / 2) the first divisor of
    total among x + i, max(1, x - i)."""
    x = round(math.sqrt((lh / lw) * total))
    found = None
    for i in range(math.floor(math.sqrt(total) / 2)):
        for j in (x + i, max(1, x - i)):
            if total % j == 0:
                found = j
                break
        if found is not None:
            break
    return found, total // found


def gaussian_blur(img, kernel_size, sigma):
    """A separable gaussian (the outer product of a normalized 1-D kernel on
    linspace(-(k-1)/2, (k-1)/2, k)) per channel, reflect padding k // 2."""
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, kernel_size)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).to(img.dtype)
    kernel = (g[:, None] * g[None, :]).expand(img.shape[1], 1, kernel_size, kernel_size)
    p = kernel_size // 2
    return F.conv2d(F.pad(img, (p, p, p, p), mode="reflect"), kernel, groups=img.shape[1])


def blur_map(x0, attn, sigma, threshold):
    """(degraded, upsampled 0/1 mask, per-key weight, grid) as create_blur_map."""
    heads, t1, t2 = attn.shape
    b, _, lh, lw = x0.shape
    key_weight = attn.reshape(b, -1, t1, t2).mean(1).sum(1)        # (b, T) per key
    mask = key_weight > threshold
    gx, gy = grid_search(lh, lw, mask.shape[-1])
    mask = mask.reshape(b, gx, gy)[:, None].to(attn.dtype)
    mask = F.interpolate(mask, (lh, lw))                           # nearest
    blurred = gaussian_blur(x0, 9, sigma)
    return blurred * mask + x0 * (1 - mask), mask, key_weight, (gx, gy)


def sag_denoiser(unet, proc, pair, timestep, cfg, store, prefix, info):
    """The guided x0 of ComfyUI's sampling_function with the SAG post-CFG
    function; the pair is [negative, positive] (uncond row 0)."""
    step = [0]

    def eps(xin, sigma, context):
        t = timestep(sigma.view(1)).float().repeat(xin.shape[0])
        with torch.no_grad():
            return unet(xin / (sigma ** 2 + 1) ** 0.5, t, encoder_hidden_states=context).sample

    def denoised(x, sigma):
        xc = torch.cat([x, x])
        proc.record, proc.uncond_row, proc.attn = True, 0, None
        x0s = eps_x0(xc, eps(xc, sigma, pair), sigma)
        proc.record = False
        attn = proc.attn
        assert attn is not None and attn.shape == (8, 48, 48), None if attn is None else attn.shape
        uncond_x0, cond_x0 = x0s[0:1], x0s[1:2]
        cfg_result = uncond_x0 + (cond_x0 - uncond_x0) * cfg
        assert min(cfg_result.shape[2:]) > 4
        degraded, mask, key_weight, grid = blur_map(uncond_x0, attn, BLUR_SIGMA, THRESHOLD)
        degraded_noised = degraded + x - uncond_x0
        sag_x0 = eps_x0(degraded_noised, eps(degraded_noised, sigma, pair[0:1]), sigma)
        result = cfg_result + (degraded - sag_x0) * SCALE
        i = step[0]
        info.setdefault("grid", grid)
        info.setdefault("masks", []).append(int(mask.sum().item()) // 4)   # keys passing (each is 2x2)
        if i == 0:
            store[prefix + "step0.attn_key_weight"] = key_weight[0]
            store[prefix + "step0.mask"] = mask[0, 0]
            store[prefix + "step0.uncond_x0"] = uncond_x0
            store[prefix + "step0.degraded"] = degraded
            store[prefix + "step0.sag_x0"] = sag_x0
            store[prefix + "step0.denoised"] = result
        step[0] += 1
        return result

    return denoised


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(OUT, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    target = unet.mid_block.attentions[0].transformer_blocks[0].attn1
    assert len(unet.mid_block.attentions) == 1 and len(unet.mid_block.attentions[0].transformer_blocks) == 1
    check_plain(target)
    assert target.heads == 8 and abs(target.scale - 8 ** -0.5) < 1e-12
    proc = RecordingSelfAttn()
    target.set_processor(proc)

    ctx = load_file(INPUTS)["encoder_hidden_states"].float()
    assert ctx.shape == (2, 77, 32)
    positive, negative = ctx[0:1].clone(), ctx[1:2].clone()
    pair = torch.cat([negative, positive])   # calc_cond_batch's order: uncond row first
    sigmas, timestep = comfy_normal_sigmas(STEPS)
    assert sigmas.shape == (STEPS + 1,)

    g = {"positive": positive, "negative": negative}
    for cfg, prefix in ((5.0, "cfg5."), (1.0, "cfg1.")):
        noise = torch.randn(1, 4, H, W, generator=torch.manual_seed(42))
        g[prefix + "settings"] = torch.tensor([cfg, SCALE, BLUR_SIGMA])
        g[prefix + "sigmas"] = sigmas.clone()
        g[prefix + "noise"] = noise
        info = {}
        calls0 = proc.calls
        g[prefix + "latent_out"] = ksampler(sag_denoiser(unet, proc, pair, timestep, cfg, g, prefix, info),
                                            noise, sigmas, SCALING, g, prefix)
        assert proc.calls - calls0 == 2 * STEPS, proc.calls - calls0
        assert torch.equal(g[prefix + "step0.denoised"], g[prefix + "denoised.0"])

        def model(xin, t):
            return unet(xin, t, encoder_hidden_states=pair).sample

        plain = ksampler(cfg_denoiser(model, eps_x0, cfg, timestep), noise, sigmas, SCALING, None, prefix)
        d = rel_l2(g[prefix + "latent_out"], plain)
        kw = g[prefix + "step0.attn_key_weight"]
        print(f"{prefix} grid (x, y) = {info['grid']}; keys > {THRESHOLD} per step: {info['masks']} of 48 "
              f"(step 0 key weights min {kw.min():.4f} max {kw.max():.4f} mean {kw.mean():.6f})")
        print(f"{prefix} latent_out vs the same run without SAG: rel L2 {d:.6e}")
        assert d > 1e-4, d
        for k in list(g):
            if k.startswith(prefix):
                assert torch.isfinite(g[k]).all(), k
    print(f"attention processor: {proc.calls} calls, max |diff| vs AttnProcessor2_0 {proc.max_diff:.3e}")

    steps0 = [int(g[p + "step0.mask"].sum().item()) // 4 for p in ("cfg5.", "cfg1.")]
    assert any(0 < n < 48 for n in steps0), steps0

    g = {k: v.float().clone().contiguous() for k, v in g.items()}
    path = os.path.join(OUT, "sag.safetensors")
    save_file(g, path)
    os.chmod(path, 0o644)
    for k in sorted(g):
        print(f"  {k} {tuple(g[k].shape)}")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
