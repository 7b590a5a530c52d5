"""Writes analysis_fixtures.safetensors: 40 training-style scenes rendered by
tools/train/dataset.py (uint8 [40, 64, 64, 3]) with, as metadata, what
tools/train/analyze.py reads from each. kiln's C port of the analysis
(tests/support/shape_analysis.c) must read the same.

Run from the repository root: python3 tests/data/kiln_shapes/make_analysis_fixtures.py
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.join("tools", "train"))
import analyze  # noqa: E402
import dataset  # noqa: E402

images, scenes = dataset.make_examples(777, 40)
images = np.stack(images).astype(np.uint8)
found = [analyze.analyze(image) for image in images]
keys = ("shape", "colour", "background", "position", "size")
meta = {"expected": json.dumps([{k: f.get(k) for k in keys} for f in found])}
save_file({"images": images}, os.path.join("tests", "data", "kiln_shapes", "analysis_fixtures.safetensors"),
          metadata=meta)
agree = sum(analyze.agrees(s, f)[0] for s, f in zip(scenes, found))
print(f"{agree}/{len(scenes)} scenes read back as drawn")
