#!/usr/bin/env python3
"""The PyTorch/diffusers side of bench/device.sh: UNet steps per second for SD 1.5 at full size.

Same workload as `bench --backend cuda`: the SD 1.5 UNet, a 512x512 image (64x64 latent), batch 2 (the
uncond/cond pair of classifier-free guidance) against a 77-token context, fp16 weights and activations, eager
mode with PyTorch's scaled_dot_product_attention (diffusers' default attention processor). One step is one
UNet call plus the CFG combine; it/s is steps per second after warm-up, timed with the GPU synchronised.

Weights come from the hash-initialised checkpoint (tools/make_sd15_hashinit) converted to diffusers' layout
when this diffusers version has the converter; otherwise the UNet keeps diffusers' own random init, which
costs the same time per step (the architecture and dtype are what matter), and the JSON says which.

Usage: diffusers_bench.py --checkpoint sd15_hashinit.safetensors [--width 512] [--height 512] [--steps 20]
Prints one JSON object on stdout.
"""
import argparse
import json
import sys
import time

import torch

# diffusers' UNet2DConditionModel config for SD 1.5 (runwayml/stable-diffusion-v1-5, unet/config.json),
# written out so that nothing is fetched from a hub.
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
    freq_shift=0, down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                    "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)


def load_unet(checkpoint):
    """The SD 1.5 UNet in fp16 on the GPU, and where its weights came from."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**SD15_UNET)
    source = "diffusers default init (no LDM converter in this diffusers)"
    try:
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
        from safetensors.torch import load_file

        ldm = load_file(checkpoint)
        state = convert_ldm_unet_checkpoint(ldm, dict(SD15_UNET))
        missing, unexpected = unet.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{len(missing)} missing, {len(unexpected)} unexpected keys")
        source = f"hashinit checkpoint {checkpoint}"
    except Exception as e:  # the timing does not depend on the weights' values
        print(f"diffusers_bench: keeping random init: {type(e).__name__}: {e}", file=sys.stderr)
    return unet.to("cuda", torch.float16).eval(), source


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--cfg", type=float, default=7.5)
    args = ap.parse_args()

    import diffusers
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet, source = load_unet(args.checkpoint)
    unet.set_attn_processor(AttnProcessor2_0())  # SDPA
    gen = torch.Generator(device="cuda").manual_seed(0)
    latent = torch.randn(1, 4, args.height // 8, args.width // 8, generator=gen, device="cuda",
                         dtype=torch.float16)
    context = torch.randn(2, 77, 768, generator=gen, device="cuda", dtype=torch.float16)
    t = torch.tensor([999.0, 999.0], device="cuda")

    def step(x):
        eps = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample
        uncond, cond = eps.chunk(2)
        return x - 0.01 * (uncond + args.cfg * (cond - uncond))  # any update: keeps steps dependent

    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        x = latent
        for _ in range(args.warmup):
            x = step(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            x = step(x)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / args.steps

    print(json.dumps({
        "peer": "diffusers", "diffusers": diffusers.__version__, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(), "weights": source, "precision": "fp16, SDPA, eager",
        "width": args.width, "height": args.height, "batch": 2, "steps": args.steps,
        "unet_s_per_step": seconds, "it_per_s": 1.0 / seconds,
        "peak_device_bytes": torch.cuda.max_memory_allocated(),
        "finite": bool(torch.isfinite(x).all()),
    }))


if __name__ == "__main__":
    main()
