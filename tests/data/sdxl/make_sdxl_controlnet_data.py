"""Writes kiln's SDXL ControlNet test data: a small random ControlNet for the
tiny SDXL model (tests/data/sdxl/tiny_sdxl_diffusers, written by
make_sdxl_data.py) in both layouts people have, and what upstream diffusers
computes with it.

Origin: diffusers 0.27.2 on PyTorch (CPU, float32). The ControlNet is
diffusers' ControlNetModel.from_unet(tiny SDXL UNet), its hint encoder
8-16-16-32 wide, so it has SDXL's shape in small: the added embedding
(addition_embed_type "text_time", 8-wide size embeddings, 80 inputs), level 0
without attention, level 1 with transformers of depth 2, a mid block with
transformers of depth 2. Every weight is random (seeded; the zero convolutions
too, so that residuals are not zero and the encoder is not the UNet's own) and
rounded to float16; both layouts store float16, so the float32 goldens below
are exactly what the stored weights give. The original-layout file is checked
against upstream's own converter (convert_from_ckpt.convert_ldm_unet_checkpoint
with controlnet=True, which also maps label_emb.0 to add_embedding for
"text_time"), which must give back the diffusers weights exactly.

  controlnet_diffusers.safetensors  diffusers' names (the state_dict), float16
  controlnet_ldm.safetensors        the original names under `control_model.`
      (as SDXL ControlNet files people use have them), float16:
      input_hint_block.{0,2,...,14} (the hint encoder), zero_convs.N.0,
      middle_block_out.0, time_embed.{0,2}, label_emb.0.{0,2} (the added
      embedding), input_blocks.0.0 (conv_in), input_blocks.{1,2}.0 (level 0
      resnets), input_blocks.3.0.op (downsample), input_blocks.{4,5}.{0,1}
      (level 1 resnets and transformers, transformer_blocks.{0,1}),
      middle_block.{0,1,2}
  controlnet.golden.safetensors (float32)
      sample (2,4,8,8), timesteps, encoder_hidden_states (2,77,64), y (2,80):
        copied from the SDXL golden (tests/data/sdxl/golden.safetensors);
      hint (2,3,64,64): random in [0,1], 8 x the latent (seeded numpy);
      scale [0.8];
      residual.0 .. residual.5: the ControlNet's down block residuals, already
        times the scale; residual.mid: the mid block residual, times the scale
        (controlnet(sample, timesteps, encoder_hidden_states, controlnet_cond=
        hint, conditioning_scale=0.8, added_cond_kwargs={text_embeds, time_ids}
        of the SDXL golden); the y the ControlNet's add_embedding receives is
        checked to equal the golden y);
      noise_pred (2,4,8,8): the tiny SDXL UNet with those residuals added
        (down_block_additional_residuals, mid_block_additional_residual) and
        the same added_cond_kwargs.

The name mapping is tests/data/sd_common.py's ldm_controlnet, the SD 1.x
ControlNet script's too.

Run from the repository root with torch and diffusers installed, after
make_sdxl_data.py (it reads tiny_sdxl_diffusers/ and golden.safetensors):
  python3 tests/data/sdxl/make_sdxl_controlnet_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import convert_ldm_unet_checkpoint
from safetensors.numpy import load_file
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sd_common import ldm_controlnet, record_input  # noqa: E402

OUT = "tests/data/sdxl"
MODEL = os.path.join(OUT, "tiny_sdxl_diffusers")
SCALE = 0.8


def check_structure(controlnet, unet):
    """from_unet carried SDXL's config over: the shared parts have the UNet's
    names and shapes, and the attention has the UNet's heads."""
    for key in ["addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim",
                "transformer_layers_per_block", "attention_head_dim", "use_linear_projection", "cross_attention_dim",
                "block_out_channels", "down_block_types", "layers_per_block", "flip_sin_to_cos", "freq_shift"]:
        a, b = controlnet.config[key], unet.config[key]
        assert (list(a) if isinstance(a, (list, tuple)) else a) == (list(b) if isinstance(b, (list, tuple)) else b), key
    assert controlnet.config.addition_embed_type == "text_time"
    shared = ("conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block.")
    c = {k: tuple(v.shape) for k, v in controlnet.state_dict().items() if k.startswith(shared)}
    u = {k: tuple(v.shape) for k, v in unet.state_dict().items() if k.startswith(shared)}
    assert c == u, sorted(set(c.items()) ^ set(u.items()))[:8]
    for name, m in unet.named_modules():
        if hasattr(m, "heads") and name.startswith(shared):
            assert controlnet.get_submodule(name).heads == m.heads, name
    assert "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight" in c
    assert "mid_block.attentions.0.transformer_blocks.1.attn2.to_k.weight" in c
    assert not any(k.startswith("down_blocks.0.attentions") for k in c)


def main():
    torch.manual_seed(20261128)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32).eval()
    # a narrower hint encoder than SD's (16, 32, 96, 256) keeps the files small;
    # kiln reads the widths off the shapes
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32),
                                           load_weights_from_unet=False).eval()
    check_structure(controlnet, unet)
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            # every weight random: the zero convolutions would give zero residuals;
            # rounded to float16, as the files store them
            p.copy_((torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05)).half().float())
    sd = {k: v.clone().contiguous() for k, v in controlnet.state_dict().items()}
    save_file({k: v.half().contiguous() for k, v in sd.items()}, f"{OUT}/controlnet_diffusers.safetensors")

    cfg = dict(controlnet.config)
    original = ldm_controlnet(sd, cfg["layers_per_block"])  # label_emb.0 for the added embedding
    back = convert_ldm_unet_checkpoint(dict(original), cfg, controlnet=True)  # it pops what it reads
    assert set(back) == set(sd), sorted(set(back) ^ set(sd))
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    save_file({k: v.half().contiguous() for k, v in original.items()}, f"{OUT}/controlnet_ldm.safetensors")

    inputs = load_file(f"{OUT}/golden.safetensors")
    t = {k: torch.from_numpy(inputs[k].copy()) for k in
         ["sample", "timesteps", "encoder_hidden_states", "text_embeds", "time_ids", "y", "noise_pred"]}
    added = {"text_embeds": t["text_embeds"], "time_ids": t["time_ids"]}
    b, _, h, w = t["sample"].shape
    rng = np.random.default_rng(11)
    hint = torch.from_numpy(rng.random((b, 3, 8 * h, 8 * w), dtype=np.float32))
    golden = {"sample": t["sample"], "timesteps": t["timesteps"], "encoder_hidden_states": t["encoder_hidden_states"],
              "y": t["y"], "hint": hint, "scale": torch.tensor([SCALE])}

    seen = {}
    handle = record_input(controlnet.add_embedding, seen, "y")
    with torch.no_grad():
        # the folder's UNet gives the SDXL golden back
        plain = unet(t["sample"], t["timesteps"], encoder_hidden_states=t["encoder_hidden_states"],
                     added_cond_kwargs=added).sample
        assert torch.allclose(plain, t["noise_pred"], rtol=1e-4, atol=1e-5), (plain - t["noise_pred"]).abs().max()
        down, mid = controlnet(t["sample"], t["timesteps"], encoder_hidden_states=t["encoder_hidden_states"],
                               controlnet_cond=hint, conditioning_scale=SCALE, added_cond_kwargs=added,
                               return_dict=False)
        noise_pred = unet(t["sample"], t["timesteps"], encoder_hidden_states=t["encoder_hidden_states"],
                          added_cond_kwargs=added, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
    handle.remove()
    assert torch.allclose(seen["y"], t["y"], rtol=0, atol=1e-6), (seen["y"] - t["y"]).abs().max()
    for i, r in enumerate(down):
        golden[f"residual.{i}"] = r
    golden["residual.mid"] = mid
    golden["noise_pred"] = noise_pred
    for v in golden.values():
        assert torch.isfinite(v).all()
    save_file({k: v.detach().clone().contiguous() for k, v in golden.items()},
              f"{OUT}/controlnet.golden.safetensors")

    ref = t["noise_pred"].numpy()
    change = np.linalg.norm(noise_pred.numpy() - ref) / np.linalg.norm(ref)
    assert change > 0.01, change
    print({k: tuple(v.shape) for k, v in golden.items()})
    print(f"{len(down)} residuals; the noise prediction moves by {change:.4f} (relative L2); "
          f"y max diff {(seen['y'] - t['y']).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
