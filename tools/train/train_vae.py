"""Stage 1: the VAE (AutoencoderKL, SD geometry) on synthetic scenes; then its latent scaling factor.

Resumable: rerun the same command and it continues from the last checkpoint in work/.
Output: work/vae_final.pt {"state_dict", "scaling_factor", "seconds"}.
"""
import argparse
import os

import numpy as np
import torch

import dataset
import models
from common import Timer, latest_checkpoint, save_checkpoint, setup_cpu

SEED = 1000


def batch(step, size):
    images, _ = dataset.make_examples(SEED * 1_000_003 + step, size)
    return torch.from_numpy(dataset.to_tensor_range(images))


@torch.no_grad()
def latent_std(vae, count=512):
    """Std of posterior samples over fresh scenes; SD's 0.18215 is 1/std measured the same way."""
    torch.manual_seed(SEED)
    images, _ = dataset.make_examples(SEED + 77, count)
    x = torch.from_numpy(dataset.to_tensor_range(images))
    z = torch.cat([vae.encode(x[i:i + 64]).latent_dist.sample() for i in range(0, count, 64)])
    return z.std().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--save-every", type=int, default=100)
    args = ap.parse_args()
    setup_cpu()

    torch.manual_seed(SEED)
    vae = models.build_vae()
    opt = torch.optim.Adam(vae.parameters(), lr=args.lr)
    step, seconds = 0, 0.0
    ckpt = latest_checkpoint("vae")
    if ckpt:
        state = torch.load(ckpt)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, seconds = state["step"], state["seconds"]
        print(f"resuming from {ckpt}")
    timer = Timer(seconds)

    def checkpoint():
        save_checkpoint("vae", step, {"model": vae.state_dict(), "optimizer": opt.state_dict(),
                                      "step": step, "seconds": timer.total()})

    vae.train()
    while step < args.steps:
        x = batch(step, args.batch)
        torch.manual_seed(SEED + step)  # posterior sampling noise, reproducible across resumes
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 if step >= 0.8 * args.steps else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        rec = (y - x).abs().mean() + ((y - x) ** 2).mean()
        kl = posterior.kl().mean() / (x[0].numel())
        loss = rec + args.kl * kl * x[0].numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            print(f"vae step {step} rec {rec.item():.4f} kl {kl.item():.4f} lr {lr:.1e} {timer.total():.0f}s", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            checkpoint()

    vae.eval()
    std = latent_std(vae)
    scaling = 1.0 / std
    print(f"latent std {std:.5f} -> scaling factor {scaling:.5f}; vae seconds {timer.total():.0f}")
    torch.save({"state_dict": vae.state_dict(), "scaling_factor": scaling, "seconds": timer.total()},
               os.path.join(models.WORK, "vae_final.pt"))


if __name__ == "__main__":
    main()
