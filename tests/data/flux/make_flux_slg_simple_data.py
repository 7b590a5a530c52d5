"""Writes kiln's test data for ComfyUI's SkipLayerGuidanceDiTSimple on Flux:
the txt2img run of make_flux_slg_data.py (the tiny model of tests/data/flux/
tiny, ModelSamplingFlux shift 1.15, simple, 4 steps of euler, cfg 2, seed 42,
an 8x6 empty latent, FluxGuidance 3.5 on both prompts) with the node's
calc_cond_batch function (comfy_extras/nodes_slg.py): at each step whose
sigma s has percent_to_sigma(end_percent) <= s <= percent_to_sigma(
start_percent), the negative prompt's prediction is the transformer's with
the listed blocks skipped (ComfyUI's `skip` patch hands a block's inputs
back), the positive one's as it is; then the plain guidance.

Origin: diffusers 0.32.2's FluxTransformer2DModel (transformers 4.44.2's
text encoders) on PyTorch (CPU, float32), the blocks skipped as
make_flux_slg_data.py skips them; without skipped blocks the loop gives
run.golden's run.latent_out (checked, to 1e-6 relative).

  flux/slg_simple.golden.safetensors
       simple.latent_out (1,16,8,6): double block 0 and single block 1
         skipped, from 0 % to 60 %

Run from the repository root with diffusers and torch installed (after
make_flux_data.py):
  python3 tests/data/flux/make_flux_slg_simple_data.py
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_slg_data import setup, transformer_call  # noqa: E402
from sd_common import save_goldens  # noqa: E402

DOUBLE, SINGLE, START, END = [0], [1], 0.0, 0.6


def main():
    flux, ctx, pooled, run = setup()
    h, w, steps, cfg = 8, 6, 4, 2.0
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    assert torch.equal(sigmas, run["run.sigmas"])
    model = transformer_call(flux, ctx, pooled, h, w)

    def sample(slg):
        noise = run["run.noise"]
        x = sigmas[0] * noise
        active = []
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            skip = ((), ())
            if slg and ms.percent_to_sigma(END) <= s.item() <= ms.percent_to_sigma(START):
                active.append(s.item())
                skip = (DOUBLE, SINGLE)
            uncond = x - model(x, s, "negative", skip) * s  # CONST: x - out sigma
            cond = x - model(x, s, "positive") * s
            d = uncond + (cond - uncond) * cfg
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        return x / 0.3611 + 0.1159, active  # process_out

    plain, _ = sample(False)
    ref = run["run.latent_out"]
    rel = ((plain - ref).norm() / ref.norm()).item()
    print(f"without SLG: |latent_out - run.latent_out| / |run.latent_out| = {rel:.3g}")
    assert rel < 1e-6
    latent, active = sample(True)
    print(f"SLG at sigmas {active}; moves the latent by {((latent - ref).norm() / ref.norm()).item():.4g}")
    path = f"{HERE}/slg_simple.golden.safetensors"
    save_goldens({"simple.latent_out": latent.detach()}, path)
    os.chmod(path, 0o644)


if __name__ == "__main__":
    main()
