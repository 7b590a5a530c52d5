"""Parity goldens for kiln: three (prompt, seed) pairs sampled from the committed f16 checkpoint.

float32 compute on the f16 weights, ComfyUI semantics (sample.py): euler / normal, 20 steps, cfg 7,
64x64 image (8x8 latent), empty negative prompt. Writes tests/data/kiln_shapes/parity.safetensors.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

import analyze
import export
import sample

STEPS = 20
CFG = 7.0
CASES = [0, 13, 24]  # indices into analyze.eval_cases(): two full captions and the README's short prompt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(export.REPO, "models", "kiln-shapes.safetensors"))
    ap.add_argument("--out", default=os.path.join(export.REPO, "tests", "data", "kiln_shapes", "parity.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    unet, vae, text_encoder, tokenizer, scaling = export.load_checkpoint(args.model)
    cases = [analyze.eval_cases()[i] for i in CASES]
    uncond_ids, uncond = sample.encode_prompts(text_encoder, tokenizer, [""])
    tensors = {"sigmas": sample.normal_sigmas(STEPS), "uncond_ids": uncond_ids[0], "uncond": uncond}
    for p, case in enumerate(cases):
        ids, cond = sample.encode_prompts(text_encoder, tokenizer, [case["prompt"]])
        noise = sample.noise_for(case["seed"])
        record = {}
        x = sample.euler_cfg(unet, cond, uncond, noise, steps=STEPS, cfg=CFG, record=record)
        latent, image, image_uint8 = sample.decode(vae, x, scaling)
        tensors.update({
            f"p{p}.cond_ids": ids[0], f"p{p}.cond": cond, f"p{p}.noise": noise, f"p{p}.x_init": record["x_init"],
            f"p{p}.steps.t": torch.stack(record["t"]), f"p{p}.steps.eps": torch.stack(record["eps"]).flatten(0, 1),  # (steps x [uncond, cond], 4, h, w)
            f"p{p}.x_final": x, f"p{p}.latent_out": latent, f"p{p}.image_uint8": image_uint8,
        })
        print(f"p{p}: seed {case['seed']} '{case['prompt']}' -> {analyze.analyze(image_uint8[0].numpy())}")
    meta = {"prompts": json.dumps([c["prompt"] for c in cases]), "seeds": json.dumps([c["seed"] for c in cases]),
            "negative_prompt": "", "sampler": "euler", "scheduler": "normal", "steps": str(STEPS), "cfg": str(CFG),
            "width": "64", "height": "64", "vae_scaling_factor": f"{scaling:.6f}",
            "model": "models/kiln-shapes.safetensors (f16 weights, float32 compute)"}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.out, metadata=meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
