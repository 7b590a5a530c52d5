"""Writes kiln's test data for FLUX.1 Kontext's reference latents (ComfyUI's
ReferenceLatent): the tiny Flux model of tests/data/flux/tiny (Kontext is
FLUX.1's architecture) run with pictures' latents beside the latent, as
ComfyUI's Flux model takes them: each reference packed into 2x2 patches after
the latent's tokens, its positions (index, row, column) placed by the prompt's
reference_latents_method (the default "offset": index 1, beside or below the
ones before), only the latent's tokens read back.

Origin: diffusers 0.32.2's FluxTransformer2DModel on PyTorch (CPU, float32),
given the joined tokens and position ids (diffusers' own Kontext pipeline
joins them the same way); ComfyUI's placement and its KSampler restated as
make_flux_canny_data.py's run (ModelSamplingFlux shift 1.15, CONST, simple,
4 steps of euler, cfg 2, seed 42, an 8x6 empty latent, FluxGuidance 3.5)
with the reference on the positive prompt only.

  flux/kontext.golden.safetensors
       packed (2,12,64), context, pooled, timestep, guidance: the call's
         inputs (8x6 latents); ref.0 (2,16,4,6), ref.1 (2,16,7,4): two
         references (the second of odd height: ComfyUI pads it circularly
         to 8x4); out (2,12,64): the transformer's output for the latent;
         out.index, out.uxo: the same with the references placed by the
         "index" and "uxo" methods (FluxKontextMultiReferenceLatentMethod)
       run.reference (1,16,8,6): the reference latent of the run (as
         VAEEncode gives one); run.noise, run.latent_out; run.uxo.latent_out:
         the run with the reference placed by "uxo"

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_data.py):
  python3 tests/data/flux/make_flux_kontext_data.py
"""
import os
import sys

import torch
from diffusers import FluxTransformer2DModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_canny_data import pack, unpack  # noqa: E402
from make_flux_data import RUN_PROMPT  # noqa: E402
from sd_common import save_goldens  # noqa: E402


def ids(h, w, index=0, h_offset=0, w_offset=0):
    """(h/2 * w/2, 3) positions of a latent's 2x2 patches (ComfyUI's process_img)."""
    hl, wl = (h + 1) // 2, (w + 1) // 2
    out = torch.zeros(hl, wl, 3)
    out[..., 0] = index
    out[..., 1] = torch.arange(hl)[:, None] + (h_offset + 1) // 2
    out[..., 2] = torch.arange(wl)[None, :] + (w_offset + 1) // 2
    return out.reshape(-1, 3)


def pad2(x):
    """ComfyUI's pad_to_patch_size: circular padding to even sides."""
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="circular") if ph or pw else x


def joined(x, refs, method="offset"):
    """The latent's tokens and ids, then each reference's, placed as ComfyUI's Flux places them by
    reference_latents_method: "offset" each at index 1 beside or below the ones before, "index" each at
    the next index, "uxo" at index 0 past the latent and the ones before on both axes."""
    tokens, all_ids = [pack(x)], [ids(x.shape[-2], x.shape[-1])]
    h = w = index = 0
    h_len, w_len = (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2
    for ref in refs:
        h_offset = w_offset = 0
        if method == "index":
            index += 1
        elif method == "uxo":
            index = 0
            h_offset, w_offset = h_len * 2 + h, w_len * 2 + w
            h += ref.shape[-2]
            w += ref.shape[-1]
        else:
            index = 1
            if ref.shape[-2] + h > ref.shape[-1] + w:
                w_offset = w
            else:
                h_offset = h
            h = max(h, ref.shape[-2] + h_offset)
            w = max(w, ref.shape[-1] + w_offset)
        tokens.append(pack(pad2(ref)))
        all_ids.append(ids(ref.shape[-2], ref.shape[-1], index, h_offset, w_offset))
    return torch.cat(tokens, dim=1), torch.cat(all_ids)


def main():
    flux = FluxTransformer2DModel.from_pretrained(f"{HERE}/transformer").eval()
    g = load_file(f"{HERE}/golden.safetensors")
    torch.manual_seed(53)
    B, T = 2, g["context"].shape[1]
    x = unpack(g["packed"], 8, 6)
    refs = [torch.randn(B, 16, 4, 6), torch.randn(B, 16, 7, 4)]
    k = {"packed": g["packed"], "context": g["context"], "pooled": g["pooled"], "timestep": g["timestep"],
         "guidance": g["guidance"], "ref.0": refs[0], "ref.1": refs[1]}
    for method, key in (("offset", "out"), ("index", "out.index"), ("uxo", "out.uxo")):
        tokens, img_ids = joined(x, refs, method)
        with torch.no_grad():
            k[key] = flux(hidden_states=tokens, encoder_hidden_states=g["context"], pooled_projections=g["pooled"],
                          timestep=g["timestep"], img_ids=img_ids, txt_ids=torch.zeros(T, 3),
                          guidance=g["guidance"], return_dict=False)[0][:, :12]
    run(flux, k)
    run(flux, k, "uxo")
    save_goldens({a: v.detach() for a, v in k.items()}, f"{HERE}/kontext.golden.safetensors")


def run(flux, k, method="offset"):
    tiny = f"{HERE}/tiny"
    clip = CLIPTextModel.from_pretrained(f"{tiny}/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{tiny}/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{tiny}/tokenizer_2/spiece.model", legacy=True)
    clip_ids = load_file(f"{HERE}/run.golden.safetensors")
    ctx, pooled = {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            pooled[which] = clip(input_ids=clip_ids[f"run.clip_ids.{which}"].long()).pooler_output
            i = tok(text).input_ids
            ctx[which] = t5(input_ids=torch.tensor([i + [0] * (256 - len(i))])).last_hidden_state
    h, w, steps, cfg = 8, 6, 4, 2.0
    sigmas = simple(ModelSamplingFlux(1.15), steps)
    reference = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(59))
    ref_in = (reference - 0.1159) * 0.3611  # process_latent_in

    def model(xt, sigma, which):
        refs = [ref_in] if which == "positive" else []
        tokens, img_ids = joined(xt, refs, method)
        with torch.no_grad():
            out = flux(hidden_states=tokens, encoder_hidden_states=ctx[which], pooled_projections=pooled[which],
                       timestep=sigma.view(1), img_ids=img_ids, txt_ids=torch.zeros(256, 3),
                       guidance=torch.tensor([3.5]), return_dict=False)[0][:, :h * w // 4]
        return unpack(out, h, w)

    torch.manual_seed(42)
    noise = torch.randn(1, 16, h, w)
    xt = sigmas[0] * noise
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        x0 = {c: xt - model(xt, s, c) * s for c in ("negative", "positive")}
        d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
        xt = xt + (xt - d) / s * (sigmas[i + 1] - s)
    if method != "offset":
        k[f"run.{method}.latent_out"] = xt / 0.3611 + 0.1159
        return
    k.update({"run.reference": reference, "run.noise": noise, "run.latent_out": xt / 0.3611 + 0.1159})


if __name__ == "__main__":
    main()
