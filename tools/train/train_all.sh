#!/usr/bin/env bash
# Retrains models/kiln-shapes.safetensors from nothing, on one CPU core (about two hours here).
# Each stage resumes from its last checkpoint in tools/train/work/; delete that folder to start over.
# Then exports the checkpoint, writes kiln's parity goldens and measures prompt agreement (models/kiln-shapes.png).
set -euo pipefail
cd "$(dirname "$0")"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nice -n 10 python3 train_vae.py      # stage 1: VAE and its latent scaling factor
nice -n 10 python3 train_unet.py --steps 4400   # stages 2-3: CLIP text encoder + UNet, trained jointly
# stage 4: fine-tune weighted toward the noisiest timesteps, where the layout (position) is decided
nice -n 10 python3 train_unet.py --stage unet_position --init work/unet_final.pt --steps 1700 \
    --lr 3e-4 --warmup 50 --position-drop 0.05 --snr-floor 0.25
nice -n 10 python3 export.py --unet work/unet_position_final.pt   # single-file original layout, f16, reload check
nice -n 10 python3 make_goldens.py   # tests/data/kiln_shapes/parity.safetensors
nice -n 10 python3 analyze.py --png ../../models/kiln-shapes.png --json ../../tests/data/kiln_shapes/eval_cases.json
