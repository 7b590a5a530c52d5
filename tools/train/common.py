"""Checkpointing and run settings shared by the training stages."""
import glob
import os
import time

import torch

from models import WORK


def setup_cpu():
    """One core: this machine is shared, and one thread keeps runs reproducible."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


def latest_checkpoint(stage):
    paths = sorted(glob.glob(os.path.join(WORK, f"{stage}_step*.pt")))
    return paths[-1] if paths else None


def save_checkpoint(stage, step, state):
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, f"{stage}_step{step:06d}.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # a killed run never leaves a half-written checkpoint behind
    for old in sorted(glob.glob(os.path.join(WORK, f"{stage}_step*.pt")))[:-2]:
        os.remove(old)
    return path


class Timer:
    """Wall time of a stage, accumulated across resumed runs (stored in the checkpoint)."""

    def __init__(self, previous=0.0):
        self.previous = previous
        self.start = time.time()

    def total(self):
        return self.previous + time.time() - self.start
