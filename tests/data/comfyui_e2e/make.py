"""Extracts, from ComfyUI's recorded runs in ../shared/goldens/comfyui/runs
(ComfyUI v0.3.64 on the tiny SD 1.x model, PyTorch CPU float32), what kiln's
end-to-end KSampler test needs: the prompts and the two conditionings, the initial noise, the
img2img input latent, the unscaled LATENT out and the saved uint8 image, with
the run's settings as metadata. Every run is kept, the SDE samplers too:
kiln reproduces torchsde's Brownian tree.

Run from the repository root: python3 tests/data/comfyui_e2e/make.py
"""
import glob
import json
import os

from safetensors.numpy import load_file, save_file

SHARED = os.environ.get("KILN_SHARED_GOLDENS", "../shared/goldens")
OUT = "tests/data/comfyui_e2e"


def main():
    for path in sorted(glob.glob(os.path.join(SHARED, "comfyui/runs/*.json"))):
        meta = json.load(open(path))
        t = load_file(path[:-5] + ".safetensors")
        keep = {k: t[k] for k in ["positive.cond", "negative.cond", "noise", "latent_out", "image_uint8"]}
        if meta["mode"] == "img2img":
            keep["latent_in"] = t["latent_in"]
        info = {k: str(meta[k]) for k in ["sampler_name", "scheduler", "steps", "cfg", "seed", "denoise", "batch_size",
                                          "positive_prompt", "negative_prompt"]}
        info["clip_skip"] = str(-meta["clip_set_last_layer"] if meta["clip_set_last_layer"] else 1)
        save_file(keep, os.path.join(OUT, meta["run_id"] + ".safetensors"), metadata=info)


if __name__ == "__main__":
    main()
