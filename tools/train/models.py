"""The kiln-shapes architecture: SD 1.x components (diffusers/transformers classes), narrowed.

Every group norm keeps SD's 32 groups, so every channel count is a multiple of 32. The UNet keeps
SD 1.x's 8 attention heads per spatial transformer (diffusers calls that attention_head_dim=8).
"""
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("KILN_TRAIN_WORK", os.path.join(HERE, "work"))  # where stages keep their state
TOKENIZER_DIR = os.path.join(HERE, "tokenizer")

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[32, 32, 64, 64],
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
)

CLIP_CONFIG = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    projection_dim=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    dropout=0.0,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[64, 64, 96],
    layers_per_block=2,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
    mid_block_scale_factor=1,
)

# SD 1.x training schedule (ldm's "scaled_linear").
NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def build_vae():
    return AutoencoderKL(**VAE_CONFIG)


def build_text_encoder():
    return CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG))


def build_unet():
    return UNet2DConditionModel(**UNET_CONFIG)


def load_tokenizer():
    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR)


def tokenize(tokenizer, prompts):
    """int64 [B, 77]: BOS, tokens, EOS, padded with EOS (SD 1.x's tokenizer settings)."""
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                     return_tensors="pt").input_ids


def alphas_cumprod():
    """float64 [1000] cumulative alphas of the SD 1.x schedule."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def param_count(module):
    return sum(p.numel() for p in module.parameters())
