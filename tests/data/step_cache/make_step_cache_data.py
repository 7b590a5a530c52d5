"""Goldens for ComfyUI's EasyCache and LazyCache nodes with its KSampler.

Origin: upstream diffusers 0.42.1 and PyTorch (CPU, float32) running kiln's
tiny SD 1.x UNet and tests/data/chroma's tiny Chroma (as make_chroma_data.py
runs it), with ComfyUI v0.3.64's comfy_extras/nodes_easycache.py
(easycache_forward_wrapper, lazycache_predict_noise_wrapper, their holders)
and comfy/samplers.py (calc_cond_batch's batching) restated here, not
copied:
- EasyCache wraps each diffusion-model call: its input is the model's own
  (the latent scaled by c_in for SD; as it is for flow models), its uuids
  the call's prompts in batch order. calc_cond_batch runs the negative and
  positive prompts in one call, the negative first, where their
  conditionings concatenate (CONDCrossAttn: the lengths' least common
  multiple at most 4 of the shorter), else the positive alone first, then
  the negative; each step's first calc_cond_batch clears the skip mark. The
  first call's first uuid inside the range is the "first cond": its chunk
  (every 8th pixel each way) is what input and output changes are measured
  on, the whole call's output's mean magnitude the norm.
- LazyCache wraps the guider's predict_noise: the sampler's latent in, the
  guided x0 out, the whole batch measured.
- percent_to_sigma as ModelSamplingDiscrete's (SD) and ModelSamplingFlux's
  (Chroma, shift 1.15); a step takes part while sigma > end's and is decided
  at sigma <= start's (both compared in float32).

Runs (KSampler: euler, "normal" (SD) or "simple" (Chroma) scheduler, seed
42; the tiny SD model on a 16 x 24 latent (every 8th pixel: 2 x 3 of each
channel), 12 steps, cfg 5, its tests/data/tiny/unet.safetensors contexts as
the prompts; Chroma on an 8 x 6 latent, 10 steps, cfg 2, make_chroma_data's
prompts (17 and 1 T5 ids: not batched)):
  sd.plain, sd.easy (EasyCache 0.6, 0.1, 0.95), sd.lazy (LazyCache 0.6, 0.1,
  0.95), chroma.plain, chroma.easy (EasyCache 1, 0, 1):
  R.latent_out, R.skipped (steps, 1 where the step's model calls were
  skipped), R.settings (threshold, start, end).
  sd.positive, sd.negative (1, 77, 32), sd.noise, chroma.noise.

Run from the repository root:
  /tmp/tv/bin/python tests/data/step_cache/make_step_cache_data.py
(diffusers 0.42.1, sentencepiece, torch.)
"""
import math
import os
import sys

import torch
from diffusers import ChromaTransformer2DModel, FluxPipeline, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
sys.path.insert(0, os.path.join(DATA, "chroma"))
sys.path.insert(0, os.path.join(DATA, "flow"))
from make_chroma_data import as_comfyui  # noqa: E402
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from sd_common import comfy_normal_sigmas, comfy_sigmas, rel_l2, save_goldens  # noqa: E402

SEED = 42
SD_RUNS = {"easy": ("easy", 0.6, 0.1, 0.95), "lazy": ("lazy", 0.6, 0.1, 0.95)}
CHROMA_RUN = ("easy", 1.0, 0.0, 1.0)


def discrete_percent_to_sigma(percent):
    """ModelSamplingDiscrete.percent_to_sigma on SD's sigmas."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    log_sigmas = comfy_sigmas().log()
    t = torch.tensor((1.0 - percent) * 999.0)
    low, high = t.floor().long(), t.ceil().long()
    w = t.frac()
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp().item()


class Holder:
    """EasyCacheHolder / LazyCacheHolder's state for one run."""

    def __init__(self, threshold, start_t, end_t):
        self.threshold, self.start_t, self.end_t = threshold, start_t, end_t
        self.rate = self.x_prev = self.out_prev = self.norm = self.first = None
        self.cumulative, self.initial, self.skip = 0.0, True, False
        self.diffs, self.skipped = {}, []

    def active(self, sigma):
        return bool(sigma > torch.tensor(self.end_t, dtype=torch.float32))

    def inside(self, sigma):
        return bool(sigma <= torch.tensor(self.start_t, dtype=torch.float32))


def sub(x):
    return x[..., ::8, ::8]


def easy_call(h, x, sigma, uuids, run):
    """easycache_forward_wrapper on one diffusion-model call of batch chunks
    (one per uuid); run(x) -> output."""
    if not h.active(sigma):
        return run(x)
    n = x.shape[0] // len(uuids)
    chunk = lambda t: t[uuids.index(h.first) * n:(uuids.index(h.first) + 1) * n]  # noqa: E731
    has_first, input_change = h.first in uuids, None

    def reuse(x):
        if h.first in uuids:
            h.skipped[-1] = 1
        out_c = h.diffs[uuids[0]].shape[1]
        return torch.cat([x[i * n:(i + 1) * n, -out_c:] + h.diffs[u] for i, u in enumerate(uuids)])

    if h.inside(sigma):
        if h.skip:
            return reuse(x)
        if h.initial:
            h.first, h.initial = uuids[0], False
            has_first = True
        if has_first:
            if h.x_prev is not None:
                input_change = (sub(chunk(x)) - h.x_prev).flatten().abs().mean()
            if h.norm is not None and h.rate is not None:
                h.cumulative += h.rate * input_change / h.norm
                if h.cumulative < h.threshold:
                    h.skip = True
                    return reuse(x)
                h.cumulative = 0.0
    out = run(x)
    if has_first and h.norm is not None and input_change is not None:
        h.rate = (sub(chunk(out)) - h.out_prev).flatten().abs().mean() / input_change
    out_c = out.shape[1]
    for i, u in enumerate(uuids):
        h.diffs[u] = out[i * n:(i + 1) * n] - x[i * n:(i + 1) * n, -out_c:]
    if has_first:
        h.x_prev, h.out_prev, h.norm = sub(chunk(x)).clone(), sub(chunk(out)).clone(), out.flatten().abs().mean()
    return out


def lazy_call(h, x, sigma, run):
    """lazycache_predict_noise_wrapper on the guider's prediction."""
    if not h.active(sigma):
        return run(x)
    input_change = None
    if h.inside(sigma) and h.x_prev is not None:
        input_change = (sub(x) - h.x_prev).flatten().abs().mean()
        if h.norm is not None and h.rate is not None:
            h.cumulative += h.rate * input_change / h.norm
            if h.cumulative < h.threshold:
                h.skipped[-1] = 1
                return x + h.diffs["x"]
            h.cumulative = 0.0
    out = run(x)
    if h.norm is not None and input_change is not None:
        h.rate = (sub(out) - h.out_prev).flatten().abs().mean() / input_change
    h.diffs["x"] = out - x
    h.x_prev, h.out_prev, h.norm = sub(x).clone(), sub(out).clone(), out.flatten().abs().mean()
    return out


def euler(guided, x, sigmas, holder):
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        if holder is not None:
            holder.skip = False  # each step's first calc_cond_batch
            holder.skipped.append(0)
        d = guided(x, s)
        x = x + (x - d) / s * (sigmas[i + 1] - s)
    return x


def sd_runs(g):
    unet = UNet2DConditionModel.from_pretrained(f"{DATA}/tiny/sd15_tiny_diffusers", subfolder="unet",
                                                torch_dtype=torch.float32).eval()
    ctx = load_file(f"{DATA}/tiny/unet.safetensors")["encoder_hidden_states"].float()
    positive, negative = ctx[0:1].clone(), ctx[1:2].clone()
    pair = torch.cat([negative, positive])  # batched: the negative first
    g.update({"sd.positive": positive, "sd.negative": negative})
    sigmas, timestep = comfy_normal_sigmas(12)
    H, W, cfg = 16, 24, 5.0
    noise = torch.randn(1, 4, H, W, generator=torch.manual_seed(SEED))
    g["sd.noise"] = noise

    def run(kind, threshold, start, end):
        h = None if kind is None else Holder(threshold, discrete_percent_to_sigma(start),
                                             discrete_percent_to_sigma(end))

        def guided(x, sigma):
            def predict(x):
                xc = torch.cat([x, x]) / (sigma ** 2 + 1) ** 0.5

                def model(xin):
                    with torch.no_grad():
                        return unet(xin, timestep(sigma.view(1)).float().repeat(2), encoder_hidden_states=pair).sample

                out = easy_call(h, xc, sigma, ["neg", "pos"], model) if kind == "easy" else model(xc)
                x0 = torch.cat([x, x]) - out * sigma
                return x0[0:1] + (x0[1:2] - x0[0:1]) * cfg
            return lazy_call(h, x, sigma, predict) if kind == "lazy" else predict(x)

        x = euler(guided, noise * (1.0 + sigmas[0] ** 2) ** 0.5, sigmas, h)
        return x / 0.18215, h

    plain, _ = run(None, 0, 0, 0)
    g["sd.plain.latent_out"] = plain
    for name, (kind, threshold, start, end) in SD_RUNS.items():
        out, h = run(kind, threshold, start, end)
        g[f"sd.{name}.latent_out"] = out
        g[f"sd.{name}.skipped"] = torch.tensor(h.skipped, dtype=torch.float32)
        g[f"sd.{name}.settings"] = torch.tensor([threshold, start, end])
        print(f"sd.{name}: skipped {h.skipped}, rel L2 from plain {rel_l2(out, plain):.3g}")
        assert 0 < sum(h.skipped) < len(h.skipped) - 1, "some steps skipped, not all"


def chroma_runs(g):
    model = ChromaTransformer2DModel.from_pretrained(f"{DATA}/chroma/transformer", torch_dtype=torch.float32).eval()
    as_comfyui(model, [0.0])
    t5 = T5EncoderModel.from_pretrained(f"{DATA}/chroma/tiny/text_encoder", torch_dtype=torch.float32).eval()
    ids = load_file(f"{DATA}/chroma/run.golden.safetensors")
    ctx = {}
    with torch.no_grad():
        for which in ("positive", "negative"):
            ctx[which] = t5(input_ids=ids[f"run.t5_ids.{which}"].long()).last_hidden_state
    t_pos, t_neg = ctx["positive"].shape[1], ctx["negative"].shape[1]
    assert math.lcm(t_pos, t_neg) // min(t_pos, t_neg) > 4, "calc_cond_batch runs the two apart"
    h_, w_, steps, cfg = 8, 6, 10, 2.0
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, h_ // 2, w_ // 2, "cpu", torch.float32)
    noise = torch.randn(1, 16, h_, w_, generator=torch.manual_seed(SEED))
    g["chroma.noise"] = noise

    def model_call(x, sigma, which):
        packed = FluxPipeline._pack_latents(x, 1, 16, h_, w_)
        with torch.no_grad():
            out = model(hidden_states=packed, encoder_hidden_states=ctx[which], timestep=sigma.view(1),
                        img_ids=img_ids, txt_ids=torch.zeros(ctx[which].shape[1], 3), return_dict=False)[0]
        return FluxPipeline._unpack_latents(out, h_, w_, 1)

    def run(kind, threshold, start, end):
        h = None if kind is None else Holder(threshold, float(ms.percent_to_sigma(start)),
                                             float(ms.percent_to_sigma(end)))

        def guided(x, sigma):
            out = {}
            for which, uuid in (("positive", "pos"), ("negative", "neg")):  # not batched: the positive first
                run_one = lambda xin, which=which: model_call(xin, sigma, which)  # noqa: E731
                out[which] = easy_call(h, x, sigma, [uuid], run_one) if kind == "easy" else run_one(x)
            x0 = {k: x - v * sigma for k, v in out.items()}
            return x0["negative"] + (x0["positive"] - x0["negative"]) * cfg

        x = euler(guided, sigmas[0] * noise, sigmas, h)
        return x / 0.3611 + 0.1159, h

    plain, _ = run(None, 0, 0, 0)
    g["chroma.plain.latent_out"] = plain
    kind, threshold, start, end = CHROMA_RUN
    out, h = run(kind, threshold, start, end)
    g["chroma.easy.latent_out"] = out
    g["chroma.easy.skipped"] = torch.tensor(h.skipped, dtype=torch.float32)
    g["chroma.easy.settings"] = torch.tensor([threshold, start, end])
    print(f"chroma.easy: skipped {h.skipped}, rel L2 from plain {rel_l2(out, plain):.3g}")
    assert 0 < sum(h.skipped) < len(h.skipped) - 1, "some steps skipped, not all"


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    g = {}
    sd_runs(g)
    chroma_runs(g)
    save_goldens({k: v.detach() for k, v in g.items()}, f"{HERE}/step_cache.safetensors")


if __name__ == "__main__":
    main()
