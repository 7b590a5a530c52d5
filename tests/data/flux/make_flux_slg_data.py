"""Writes kiln's test data for ComfyUI's SkipLayerGuidanceDiT on Flux: the
txt2img run of make_flux_data.py (the tiny model of tests/data/flux/tiny,
ModelSamplingFlux shift 1.15, CONST, simple, 4 steps of euler, cfg 2, seed
42, an 8x6 empty latent, FluxGuidance 3.5 on both prompts) with the node's
post-CFG function (comfy_extras/nodes_slg.py): at each step whose sigma s
(a python float) has percent_to_sigma(end_percent) <= s <=
percent_to_sigma(start_percent), with scale > 0, the positive prompt once
more through the transformer with the listed double and single blocks
skipped, its x0 (slg), and the guided x0 + (cond x0 - slg) * scale; then, with
rescaling_scale r != 0, that times r * std(cond x0) / std(it) + (1 - r).

Origin: diffusers 0.32.2's FluxTransformer2DModel on PyTorch (CPU, float32).
ComfyUI skips a block with a patch that hands its inputs back (the image and
text streams go on as they came in); here a skipped block's forward is, for
the run's SLG call only, an identity in the form diffusers' loop takes:
FluxTransformerBlock's (encoder_hidden_states, hidden_states),
FluxSingleTransformerBlock's hidden_states (the joined text and image
tokens). Without skipped blocks the loop gives run.golden's run.latent_out
and run.image exactly (checked).

  flux/slg.golden.safetensors
       single.latent_out (1,16,8,6), single.image: single block 1 skipped,
         scale 3, from 0 % to 50 %, no rescaling;
       both.latent_out, both.image: double block 0 and single block 0
         skipped, scale 2, from 10 % to 70 %, rescaling 0.5
       (run.golden's run.noise and run.sigmas are the runs' noise and sigmas;
       image: VAEDecode of the latent)

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_data.py):
  python3 tests/data/flux/make_flux_slg_data.py
"""
import contextlib
import os
import sys

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_canny_data import image_ids, pack, unpack  # noqa: E402
from make_flux_data import RUN_PROMPT  # noqa: E402
from sd_common import decode_image, save_goldens  # noqa: E402

CASES = {  # double_layers, single_layers, scale, start_percent, end_percent, rescaling_scale
    "single": ([], [1], 3.0, 0.0, 0.5, 0.0),
    "both": ([0], [0], 2.0, 0.1, 0.7, 0.5),
}


@contextlib.contextmanager
def skipped(flux, double, single):
    """The listed blocks as identities (ComfyUI's `skip` patch: the inputs handed back) while inside."""
    blocks = [flux.transformer_blocks[i] for i in double] + [flux.single_transformer_blocks[i] for i in single]
    for i in double:
        flux.transformer_blocks[i].forward = lambda hidden_states, encoder_hidden_states, **_: (
            encoder_hidden_states, hidden_states)
    for i in single:
        flux.single_transformer_blocks[i].forward = lambda hidden_states, **_: hidden_states
    try:
        yield
    finally:
        for b in blocks:
            del b.forward  # the class's forward again


def setup():
    """The tiny folder's transformer, both prompts' T5 states and pooled CLIP
    output, and run.golden."""
    tiny = f"{HERE}/tiny"
    flux = FluxTransformer2DModel.from_pretrained(f"{tiny}/transformer").eval()
    clip = CLIPTextModel.from_pretrained(f"{tiny}/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{tiny}/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{tiny}/tokenizer_2/spiece.model", legacy=True)
    run = load_file(f"{HERE}/run.golden.safetensors")
    ctx, pooled = {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            pooled[which] = clip(input_ids=run[f"run.clip_ids.{which}"].long()).pooler_output
            i = tok(text).input_ids
            ctx[which] = t5(input_ids=torch.tensor([i + [0] * (256 - len(i))])).last_hidden_state
    return flux, ctx, pooled, run


def transformer_call(flux, ctx, pooled, h, w):
    """The prompt's (negative or positive) prediction on an h x w latent at sigma, the skip's
    (double, single) blocks left out."""
    def model(x, sigma, which, skip=((), ())):
        with torch.no_grad(), skipped(flux, *skip):
            out = flux(hidden_states=pack(x), encoder_hidden_states=ctx[which], pooled_projections=pooled[which],
                       timestep=sigma.view(1), img_ids=image_ids(h, w), txt_ids=torch.zeros(256, 3),
                       guidance=torch.tensor([3.5]), return_dict=False)[0]
        return unpack(out, h, w)
    return model


def main():
    flux, ctx, pooled, run = setup()
    vae = AutoencoderKL.from_pretrained(f"{HERE}/tiny/vae").eval()
    h, w, steps, cfg = 8, 6, 4, 2.0
    ms = ModelSamplingFlux(1.15)
    sigmas = simple(ms, steps)
    assert torch.equal(sigmas, run["run.sigmas"])
    model = transformer_call(flux, ctx, pooled, h, w)

    def sample(slg=None):
        """make_flux_data's txt2img KSampler (euler, CFG, CONST), with SkipLayerGuidanceDiT's post-CFG
        function when slg is given; returns latent_out and the sigmas the SLG was applied at."""
        torch.manual_seed(42)
        noise = torch.randn(1, 16, h, w)
        assert torch.equal(noise, run["run.noise"])
        x = sigmas[0] * noise  # the empty latent
        active = []
        for i in range(len(sigmas) - 1):
            s = sigmas[i]
            x0 = {k: x - model(x, s, k) * s for k in ("negative", "positive")}  # CONST: x - out sigma
            d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
            if slg:
                double, single, scale, start, end, rescale = slg
                if scale > 0 and ms.percent_to_sigma(end) <= s.item() <= ms.percent_to_sigma(start):
                    active.append(s.item())
                    d = d + (x0["positive"] - (x - model(x, s, "positive", (double, single)) * s)) * scale
                    if rescale != 0:
                        factor = x0["positive"].std() / d.std()
                        d = d * (rescale * factor + (1 - rescale))
            x = x + (x - d) / s * (sigmas[i + 1] - s)
        return x / 0.3611 + 0.1159, active  # process_out

    plain, _ = sample()
    diff = (plain - run["run.latent_out"]).abs().max().item()
    print(f"without SLG: max |latent_out - run.latent_out| = {diff}")
    assert diff == 0.0
    assert torch.equal(decode_image(vae, plain), run["run.image"])

    g = {}
    ref = run["run.latent_out"]
    for case, slg in CASES.items():
        latent, active = sample(slg)
        rel = ((latent - ref).norm() / ref.norm()).item()
        print(f"{case}: SLG at sigmas {active} (window [{ms.percent_to_sigma(slg[4])!r}, "
              f"{ms.percent_to_sigma(slg[3])!r}]); |latent_out - run.latent_out| / |run.latent_out| = {rel:.4g}")
        g[f"{case}.latent_out"] = latent
        g[f"{case}.image"] = decode_image(vae, latent)
    assert torch.equal(sample()[0], plain)  # the blocks' own forward back
    path = f"{HERE}/slg.golden.safetensors"
    save_goldens({k: v.detach() for k, v in g.items()}, path)
    os.chmod(path, 0o644)


if __name__ == "__main__":
    main()
