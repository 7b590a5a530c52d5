"""Stages 2+3: encode the scene set with the trained VAE, then train the text encoder and UNet jointly.

SD 1.x objective: eps-prediction under the scaled-linear schedule (1000 steps), uniform timesteps
(min-SNR-5 loss weights, for faster convergence), 10% of captions replaced by the empty prompt so
classifier-free guidance works. The exported weights are an exponential moving average. Resumable: rerun
the same command.
Fine-tuning: --stage NAME --init FILE starts from a trained checkpoint's (EMA) weights with a fresh
optimizer (and resumes from its own checkpoints once it has some).
--snr-floor F weights the noisiest timesteps (where the layout is decided) as at least F in x0 terms;
eps-MSE alone weighs an x0 error there by the SNR, about 0.005 at t=999.
Output: work/<stage>_final.pt {"unet", "text_encoder" (EMA state dicts), "seconds", "steps"}; the stage
is "unet" unless --stage names another (a fine-tune), whose checkpoints then do not mix with the base run's.
"""
import argparse
import copy
import os

import numpy as np
import torch

import dataset
import models
from common import Timer, latest_checkpoint, save_checkpoint, setup_cpu

SEED = 2000
CAPTION_DROPOUT = 0.1


@torch.no_grad()
def encode_scene_set(count):
    """work/latents.pt: posterior mean/std of `count` scenes (made once, reused on resume)."""
    path = os.path.join(models.WORK, "latents.pt")
    if os.path.exists(path):
        return torch.load(path)
    vae_state = torch.load(os.path.join(models.WORK, "vae_final.pt"))
    vae = models.build_vae()
    vae.load_state_dict(vae_state["state_dict"])
    vae.eval()
    images, scenes = dataset.make_examples(SEED, count)
    means, stds = [], []
    for i in range(0, count, 256):
        post = vae.encode(torch.from_numpy(dataset.to_tensor_range(images[i:i + 256]))).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    data = {"mean": torch.cat(means), "std": torch.cat(stds), "scenes": scenes,
            "scaling_factor": vae_state["scaling_factor"]}
    torch.save(data, path)
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2900)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--min-snr", type=float, default=5.0, help="min-SNR loss weighting gamma (0: off)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--scenes", type=int, default=16000)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--size-drop", type=float, default=0.3, help="fraction of captions without the size")
    ap.add_argument("--position-drop", type=float, default=0.2, help="fraction of captions without the position")
    ap.add_argument("--snr-floor", type=float, default=0.0,
                    help="lower bound of the x0-space loss weight min(snr, gamma) (0: off)")
    ap.add_argument("--init", default=None, help="fine-tune from this unet_final.pt / unet_step*.pt (its EMA)")
    ap.add_argument("--stage", default="unet", help="checkpoint name: work/<stage>_step*.pt, work/<stage>_final.pt")
    args = ap.parse_args()
    setup_cpu()

    timer = Timer()
    data = encode_scene_set(args.scenes)
    scaling = data["scaling_factor"]
    tokenizer = models.load_tokenizer()
    empty_ids = models.tokenize(tokenizer, [""])[0]

    torch.manual_seed(SEED)
    unet = models.build_unet()
    text_encoder = models.build_text_encoder()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    if args.init:
        state = torch.load(args.init)
        unet.load_state_dict(state.get("ema_unet", state["unet"]))
        text_encoder.load_state_dict(state.get("ema_text", state["text_encoder"]))
        print(f"initialised from {args.init}")
    ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    step = 0
    ckpt = latest_checkpoint(args.stage)
    if ckpt:
        state = torch.load(ckpt)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        timer = Timer(state["seconds"])
        print(f"resuming from {ckpt}")
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    acp = models.alphas_cumprod().float()

    def checkpoint():
        save_checkpoint(args.stage, step, {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
                                       "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                                       "optimizer": opt.state_dict(), "step": step, "seconds": timer.total()})

    unet.train()
    text_encoder.train()
    running = 0.0
    while step < args.steps:
        rng = np.random.default_rng(SEED * 1_000_003 + step)  # batch depends only on the step: resumable
        idx = rng.integers(0, len(data["scenes"]), args.batch)
        captions = [dataset.training_caption(data["scenes"][i], rng, args.size_drop, args.position_drop) for i in idx]
        ids = models.tokenize(tokenizer, captions)
        drop = torch.from_numpy(rng.random(args.batch) < CAPTION_DROPOUT)
        ids[drop] = empty_ids
        g = torch.Generator().manual_seed(SEED + step)
        idx_t = torch.from_numpy(idx)
        z = (data["mean"][idx_t] + data["std"][idx_t] * torch.randn(data["mean"][idx_t].shape, generator=g)) * scaling
        t = torch.randint(0, models.NUM_TRAIN_TIMESTEPS, (args.batch,), generator=g)
        eps = torch.randn(z.shape, generator=g)
        a = acp[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1.0 - a).sqrt() * eps

        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for group in opt.param_groups:
            group["lr"] = lr
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        per_sample = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
        if args.min_snr > 0 or args.snr_floor > 0:  # weights in x0 terms; plain eps-MSE weighs x0 by the SNR
            snr = acp[t] / (1.0 - acp[t])
            x0_weight = torch.clamp(snr, max=args.min_snr) if args.min_snr > 0 else snr  # min-SNR-gamma
            per_sample = per_sample * torch.clamp(x0_weight, min=args.snr_floor) / snr
        loss = per_sample.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, params, alpha=1.0 - decay)
        running += loss.item()
        if step % 25 == 0:
            print(f"unet step {step} loss {running / 25:.4f} lr {lr:.1e} {timer.total():.0f}s", flush=True)
            running = 0.0
        if step % args.save_every == 0 or step == args.steps:
            checkpoint()

    torch.save({"unet": ema_unet.state_dict(), "text_encoder": ema_text.state_dict(),
                "seconds": timer.total(), "steps": step, "scaling_factor": scaling},
               os.path.join(models.WORK, f"{args.stage}_final.pt"))
    print(f"done: {step} steps, {timer.total():.0f}s")


if __name__ == "__main__":
    main()
