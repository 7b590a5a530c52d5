"""Writes kiln's test data for FLUX.1 Redux: a small random SigLIP vision
tower and a small random Redux image encoder for the tiny Flux model
(tests/data/flux/tiny), in the layouts people download (ComfyUI's
sigclip_vision_patch14_384.safetensors: transformers' SiglipVisionModel
names; flux1-redux-dev.safetensors), and what upstream code computes with
them.

Origin: transformers 4.44 (SiglipVisionModel, layer norms at eps 1e-5 as
ComfyUI's CLIP vision layers have them) and diffusers 0.32.2
(ReduxImageEncoder) on PyTorch (CPU, float32); the picture preprocessing
restates ComfyUI's clip_preprocess with SigLIP's mean and std (0.5) for
both of CLIPVisionEncode's crops: "center" (the shorter side scaled by
torch's antialiased bicubic interpolate, centre cut) and "none" (scaled to
the square), rounded to 1/255; the conditioning restates StyleModelApply
with strength_type "multiply": the Redux tokens times the strength after
the prompt's T5 rows.

  siglip_tiny.safetensors  a SigLIP ViT: 32 wide, 2 layers, 4 heads, MLP
      64 (tanh GELU), 14-pixel patches of 56x56 pictures (16 tokens), its
      attention-pooling head too (vision_model.head.*, which ComfyUI and
      kiln do not read)
  redux_tiny.safetensors  redux_up (192,32), redux_down (64,192): the
      tiny Flux model's 64-wide T5 rows from the tower's 32
  golden.safetensors
      pixels.center, pixels.none: clip_preprocess of
          ip_adapter/picture_251x233.png, (1,3,56,56)
      hidden.center: the tower's last hidden state (post-layernorm) on
          pixels.center (1,16,32); tokens.center: Redux on it (1,16,64);
          tokens.none: the same from pixels.none
      prompt: the tiny Flux model's T5 rows of "a red fox" (1,256,64);
          styled: StyleModelApply at strength 0.8 after them (1,272,64)

Run from the repository root with torch, transformers and diffusers 0.32.2:
  python3 tests/data/redux/make_redux_data.py
"""
import os
import sys

import numpy as np
import torch
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from PIL import Image
from safetensors.torch import save_file
from transformers import SiglipVisionConfig, SiglipVisionModel, T5EncoderModel, T5Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)
sys.path.insert(0, DATA)
from sd_common import randomize, save_goldens  # noqa: E402

SIZE = 56


def clip_preprocess(image, crop):
    """ComfyUI's clip_preprocess on (1,H,W,3) in [0,1] with SigLIP's mean and std."""
    image = image.movedim(-1, 1)
    if not (image.shape[2] == SIZE and image.shape[3] == SIZE):
        if crop:
            scale = SIZE / min(image.shape[2], image.shape[3])
            scale_size = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        else:
            scale_size = (SIZE, SIZE)
        image = torch.nn.functional.interpolate(image, size=scale_size, mode="bicubic", antialias=True)
        h = (image.shape[2] - SIZE) // 2
        w = (image.shape[3] - SIZE) // 2
        image = image[:, :, h:h + SIZE, w:w + SIZE]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    return (image - 0.5) / 0.5


def main():
    torch.manual_seed(43)
    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=SIZE, patch_size=14, layer_norm_eps=1e-5)
    tower = SiglipVisionModel(config).eval()
    randomize(tower, table=lambda name: name.endswith("position_embedding.weight"))
    save_file({k: v.half().contiguous() for k, v in tower.state_dict().items()}, f"{HERE}/siglip_tiny.safetensors")
    tower.load_state_dict({k: v.half().float() for k, v in tower.state_dict().items()})
    redux = ReduxImageEncoder(redux_dim=32, txt_in_features=64).eval()
    randomize(redux, table=lambda name: False)
    save_file({k: v.half().contiguous() for k, v in redux.state_dict().items()}, f"{HERE}/redux_tiny.safetensors")
    redux.load_state_dict({k: v.half().float() for k, v in redux.state_dict().items()})

    picture = np.asarray(Image.open(f"{DATA}/ip_adapter/picture_251x233.png").convert("RGB"))
    image = torch.from_numpy(picture.astype(np.float32) / 255.0)[None]
    g = {}
    with torch.no_grad():
        for crop in ("center", "none"):
            pixels = clip_preprocess(image, crop == "center")
            hidden = tower(pixel_values=pixels).last_hidden_state
            g[f"pixels.{crop}"] = pixels
            g[f"tokens.{crop}"] = redux(hidden).image_embeds
            if crop == "center":
                g["hidden.center"] = hidden
        t5 = T5EncoderModel.from_pretrained(f"{DATA}/flux/tiny/text_encoder_2").eval()
        tok = T5Tokenizer(vocab_file=f"{DATA}/flux/tiny/tokenizer_2/spiece.model", legacy=True)
        ids = tok("a red fox").input_ids
        prompt = t5(input_ids=torch.tensor([ids + [0] * (256 - len(ids))])).last_hidden_state
    g["prompt"] = prompt
    g["styled"] = torch.cat([prompt, g["tokens.center"] * 0.8], dim=1)
    save_goldens(g, f"{HERE}/golden.safetensors")


if __name__ == "__main__":
    main()
