"""Writes kiln's test data for FLUX.1 Canny and Depth: a small random
transformer of their shape (the latent's channels and a picture's latent
channels in, the latent's out) and what upstream computes with it.

Origin: diffusers 0.32.2 (FluxTransformer2DModel with in_channels 128 and
out_channels 64, as FLUX.1 Canny/Depth [dev] configure it, in small) on
PyTorch (CPU, float32), the architecture and seeds of make_flux_data.py's
tiny model otherwise. The run restates ComfyUI's code: the control picture's
latent goes in as InstructPixToPixConditioning gives it (concat_latent_image)
and Flux's concat_cond takes it (process_latent_in, then beside the noisy
latent in every call, packed together into 2x2 patches), sampled as
make_flux_data.py's run (ModelSamplingFlux shift 1.15, CONST, simple, 4
steps of euler, cfg 2, seed 42, an 8x6 empty latent, FluxGuidance 3.5) with
the tiny folder's text encoders on the same prompts.

  canny/  a FluxPipeline folder: transformer/ (config.json,
       diffusion_pytorch_model.safetensors in f16), the tiny folder's text
       encoders, tokenizer, VAE and model_index.json linked
  canny/golden.safetensors
       packed (2,12,128): make_flux_data's packed latents with a second
         packed latent beside them; context, pooled, timestep, guidance as
         there; out (2,12,64): the transformer's output;
       run.picture (1,16,8,6): the control picture's latent (random, as
         VAEEncode gives one); run.noise, run.sigmas, run.denoised.N,
         run.latent_out

Run from the repository root with diffusers 0.32.2 and torch installed
(after make_flux_data.py):
  python3 tests/data/flux/make_flux_canny_data.py
"""
import os
import sys

import torch
from diffusers import FluxTransformer2DModel
from transformers import CLIPTextModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "flow"))
from make_flow_data import ModelSamplingFlux, simple  # noqa: E402
from make_flux_data import CONFIG, RUN_PROMPT  # noqa: E402
from sd_common import PT, randomize, save_goldens, save_half, write_json  # noqa: E402

CANNY = dict(CONFIG, in_channels=128, out_channels=64)
OUT = f"{HERE}/canny"


def pack(x):
    """(B,C,H,W) -> (B, H/2 * W/2, C*4): 2x2 patches, channel outermost (FluxPipeline's _pack_latents)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)


def unpack(x, h, w):
    b, _, d = x.shape
    return x.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def image_ids(h, w):
    """(h/2 * w/2, 3): (0, row, column) of each patch (FluxPipeline's _prepare_latent_image_ids)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def main():
    torch.manual_seed(29)
    flux = FluxTransformer2DModel(**CANNY).eval()
    randomize(flux, table=lambda name: False)
    folder = f"{OUT}/transformer"
    os.makedirs(folder, exist_ok=True)
    save_half(flux.state_dict(), f"{folder}/diffusion_pytorch_model.safetensors", metadata=PT)
    write_json({"_class_name": "FluxTransformer2DModel", **CANNY}, f"{folder}/config.json")
    flux = FluxTransformer2DModel.from_pretrained(folder).eval()  # the f16-rounded weights, in f32
    for part in ("text_encoder", "text_encoder_2", "tokenizer_2", "vae", "model_index.json"):
        if not os.path.islink(f"{OUT}/{part}"):
            os.symlink(f"../tiny/{part}", f"{OUT}/{part}")

    g = {}
    torch.manual_seed(19)
    B, C, H, W, T = 2, 16, 8, 6, 5
    x = pack(torch.randn(B, C, H, W))
    picture = pack(torch.randn(B, C, H, W))
    packed = torch.cat([x, picture], dim=2)
    context, pooled = torch.randn(B, T, 64), torch.randn(B, 32)
    timestep, guidance = torch.tensor([1.0, 0.37]), torch.tensor([3.5, 3.5])
    img_ids = image_ids(H, W)
    txt_ids = torch.zeros(T, 3)
    with torch.no_grad():
        out = flux(hidden_states=packed, encoder_hidden_states=context, pooled_projections=pooled,
                   timestep=timestep, img_ids=img_ids, txt_ids=txt_ids, guidance=guidance, return_dict=False)[0]
    g.update({"packed": packed, "context": context, "pooled": pooled, "timestep": timestep, "guidance": guidance,
              "out": out})

    tiny = f"{HERE}/tiny"
    clip = CLIPTextModel.from_pretrained(f"{tiny}/text_encoder").eval()
    t5 = T5EncoderModel.from_pretrained(f"{tiny}/text_encoder_2").eval()
    tok = T5Tokenizer(vocab_file=f"{tiny}/tokenizer_2/spiece.model", legacy=True)
    run = {}
    for k in ("clip_ids.positive", "clip_ids.negative"):
        from safetensors.torch import load_file
        run[k] = load_file(f"{HERE}/run.golden.safetensors")[f"run.{k}"].long()
    ctx, pooled_out = {}, {}
    with torch.no_grad():
        for which, text in (("positive", RUN_PROMPT), ("negative", "")):
            pooled_out[which] = clip(input_ids=run[f"clip_ids.{which}"]).pooler_output
            ids = tok(text).input_ids
            ctx[which] = t5(input_ids=torch.tensor([ids + [0] * (256 - len(ids))])).last_hidden_state

    h, w, steps, cfg = 8, 6, 4, 2.0
    sigmas = simple(ModelSamplingFlux(1.15), steps)
    ids1 = image_ids(h, w)
    picture_latent = torch.randn(1, 16, h, w, generator=torch.Generator().manual_seed(31))
    concat = (picture_latent - 0.1159) * 0.3611  # process_latent_in

    def model(xt, sigma, which):
        joined = torch.cat([xt, concat], dim=1)
        with torch.no_grad():
            out = flux(hidden_states=pack(joined),
                       encoder_hidden_states=ctx[which], pooled_projections=pooled_out[which],
                       timestep=sigma.view(1), img_ids=ids1, txt_ids=torch.zeros(256, 3),
                       guidance=torch.tensor([3.5]), return_dict=False)[0]
        return unpack(out, h, w)

    torch.manual_seed(42)
    noise = torch.randn(1, 16, h, w)
    xt = sigmas[0] * noise  # the empty latent's image is 0
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        x0 = {k: xt - model(xt, s, k) * s for k in ("negative", "positive")}
        d = x0["negative"] + (x0["positive"] - x0["negative"]) * cfg
        g[f"run.denoised.{i}"] = d
        xt = xt + (xt - d) / s * (sigmas[i + 1] - s)
    g.update({"run.picture": picture_latent, "run.noise": noise, "run.sigmas": sigmas,
              "run.latent_out": xt / 0.3611 + 0.1159})
    save_goldens({k: v.detach() for k, v in g.items()}, f"{OUT}/golden.safetensors")
    print("out", tuple(out.shape), "latent_out", float(g["run.latent_out"].abs().mean()))


if __name__ == "__main__":
    main()
