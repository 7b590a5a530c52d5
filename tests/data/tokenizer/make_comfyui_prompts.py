#!/usr/bin/env python3
"""Extracts the prompt goldens kiln's prompt tests need into comfyui_prompts.json.

Source: the shared ComfyUI goldens (ComfyUI 0.3.64, commit a125cd84, stock:
no ftfy installed), read-only at ../shared/goldens/comfyui:
  - clip_cases.json + clip_cases.safetensors: caseNN.token_ids (int64) and
    caseNN.token_weights (float32), flattened windows of 77;
  - runs/*.json + .safetensors: positive.* / negative.* of the same kind,
    for every distinct prompt of the runs (the long and weighted ones among them).

    python3 tests/data/tokenizer/make_comfyui_prompts.py /path/to/shared/goldens/comfyui
"""
import json
import os
import sys

from safetensors.numpy import load_file


def main():
    root = sys.argv[1]
    cases = []
    seen = set()

    def add(source, prompt, ids, weights):
        if prompt in seen:
            return
        seen.add(prompt)
        cases.append({
            "source": source,
            "prompt": prompt,
            "ids": [int(x) for x in ids],
            "weights": [float(x) for x in weights],
        })

    meta = json.load(open(os.path.join(root, "clip_cases.json")))
    tensors = load_file(os.path.join(root, "clip_cases.safetensors"))
    for case in meta["cases"]:
        key = case["key"]
        add("clip_cases " + key, case["prompt"], tensors[key + ".token_ids"], tensors[key + ".token_weights"])

    runs = os.path.join(root, "runs")
    for name in sorted(os.listdir(runs)):
        if not name.endswith(".json"):
            continue
        run = json.load(open(os.path.join(runs, name)))
        tensors = load_file(os.path.join(runs, name[:-5] + ".safetensors"))
        for side in ("positive", "negative"):
            add("runs/%s %s" % (name[:-5], side), run[side + "_prompt"],
                tensors[side + ".token_ids"], tensors[side + ".token_weights"])

    json.dump({"origin": "ComfyUI 0.3.64 (a125cd84) CLIPTextEncode token ids and weights, "
                         "extracted by make_comfyui_prompts.py",
               "cases": cases}, open(os.path.join(os.path.dirname(__file__) or ".", "comfyui_prompts.json"), "w"),
              indent=0)


if __name__ == "__main__":
    main()
