"""Writes kiln's test data for prompts in parts over the sampling (ComfyUI's
ConditioningSetTimestepRange and ConditioningCombine) on tests/data/sd3/tiny:
KSampler runs restated from ComfyUI with the negative prompt as SD3's
example workflows give it.

Origin: diffusers 0.32.2's SD3Transformer2DModel on PyTorch (CPU, float32),
ComfyUI's code restated: ConditioningSetTimestepRange sets a conditioning's
start_percent and end_percent, ConditioningCombine lists two conditionings'
entries as one, ConditioningZeroOut zeroes the rows and the pooled output;
at sampling each entry's percents become sigmas (ModelSamplingDiscreteFlow's
percent_to_sigma: 1 at 0, 0 at 1, else the shifted 1 - percent), and
calc_cond_batch (get_area_and_mult) leaves an entry out of a step whose
sigma is above its start's or below its end's; a side's entries that take
part are each predicted and averaged (no areas: each counts once), then CFG.

make_sd3_data.py's run otherwise (RUN_PROMPT against "", shift 3, CONST,
simple, 4 steps of euler, cfg 2, seed 42, an 8x6 empty latent; sigmas 1,
0.9, 0.75, 0.5):

  sd3/prompt_parts.golden.safetensors
       example.latent_out (1,16,8,6): the negative as SD3's example
         workflows give it: "" from 0 to 0.1 combined with "" zeroed from
         0.1 to 1 (percent_to_sigma(0.1) = 0.964: the first step reads "",
         the others the zeros);
       boundary.latent_out: "" from 0 to 0.5 and "" zeroed from 0.5 to 1
         (percent_to_sigma(0.5) = 0.75, a sigma of the schedule: that step
         reads both and averages them), the positive RUN_PROMPT over all of
         it combined with itself zeroed from 0.6 to 1 (steps at 0.5 average
         the two);
       example.image, boundary.image (1,16,12,3): their pictures
         (tiny/'s VAE, as make_sd3_data.py's run.image)

Run from the repository root with diffusers 0.32.2, transformers and torch
installed (after make_sd3_data.py):
  python3 tests/data/sd3/make_sd3_prompt_parts_data.py
"""
import os
import sys

import torch
from diffusers import SD3Transformer2DModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_sd3_controlnet_data import TINY, rel, run_conditioning  # noqa: E402  (puts tests/data etc. on the path)
from make_flow_data import ModelSamplingDiscreteFlow, simple  # noqa: E402
from make_sd3_data import SCALE, SHIFT  # noqa: E402
from sd_common import decode_image, save_goldens  # noqa: E402


def main():
    transformer = SD3Transformer2DModel.from_pretrained(f"{TINY}/transformer").eval()
    ctx, pooled, vae, stored = run_conditioning()
    prompts = {"positive": (ctx["positive"], pooled["positive"]), "negative": (ctx["negative"], pooled["negative"])}
    prompts["positive zeroed"] = tuple(torch.zeros_like(t) for t in prompts["positive"])
    prompts["negative zeroed"] = tuple(torch.zeros_like(t) for t in prompts["negative"])
    h, w, steps, cfg = 8, 6, 4, 2.0
    ms = ModelSamplingDiscreteFlow(shift=3.0, timesteps=1000, multiplier=1000)
    sigmas = simple(ms, steps)

    def x0(x, s, name):
        c, p = prompts[name]
        with torch.no_grad():
            out = transformer(hidden_states=x, encoder_hidden_states=c, pooled_projections=p,
                              timestep=ms.timestep(s).view(1)).sample
        return x - out * s  # CONST

    def side(x, s, parts, used):
        """The average of the parts' predictions whose range holds s (ComfyUI compares the float32 sigma with
        each percent_to_sigma as a float32)."""
        preds = []
        for name, start, end in parts:
            hi = torch.tensor(ms.percent_to_sigma(start), dtype=torch.float32)
            lo = torch.tensor(ms.percent_to_sigma(end), dtype=torch.float32)
            if not (s > hi or s < lo):
                preds.append(x0(x, s, name))
                used.append((s.item(), name))
        assert preds, "a step no part holds"
        return sum(preds) / len(preds)

    def sample(positive, negative):
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        image = (torch.zeros(1, 16, h, w) - SHIFT) * SCALE  # the empty latent, process_in
        x = sigmas[0] * noise + (1.0 - sigmas[0]) * image
        used = []
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            cond, uncond = side(x, s, positive, used), side(x, s, negative, used)
            d = uncond + (cond - uncond) * cfg
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        print("parts read:", used)
        return x / SCALE + SHIFT

    whole = [("positive", 0.0, 1.0)]
    plain = sample(whole, [("negative", 0.0, 1.0)])
    assert torch.allclose(plain, stored["run.latent_out"], atol=1e-5), rel(plain, stored["run.latent_out"])
    g = {"example.latent_out": sample(whole, [("negative", 0.0, 0.1), ("negative zeroed", 0.1, 1.0)]),
         "boundary.latent_out": sample([("positive", 0.0, 1.0), ("positive zeroed", 0.6, 1.0)],
                                       [("negative", 0.0, 0.5), ("negative zeroed", 0.5, 1.0)])}
    for k, v in list(g.items()):
        print(k, "against the plain run: relative difference", rel(v, plain))
        g[k.replace("latent_out", "image")] = decode_image(vae, v)
    save_goldens(g, f"{HERE}/prompt_parts.golden.safetensors")
    os.chmod(f"{HERE}/prompt_parts.golden.safetensors", 0o644)


if __name__ == "__main__":
    main()
