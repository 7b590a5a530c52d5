"""Reads a 64x64 shape scene back from its pixels, and scores a model by whether its images match the prompt.

The analysis (kiln's C functional test mirrors it exactly; keep them in step):
1. background colour = per-channel median of the pixels in the 2-pixel frame around the border;
2. shape mask = pixels whose RGB distance (0-255 units) from that colour exceeds MASK_DISTANCE, then
   only its largest 4-connected component (stray specks elsewhere do not count; ties go to the
   component met first in row-major order); fewer than MIN_PIXELS pixels means no shape was drawn;
3. colours are named by hue: HSV hue (degrees) of the mean RGB of the mask (shape) and of the
   background colour, each given the palette colour whose hue is nearest on the circle;
4. position from the mask's centroid (cx, cy) in pixel units (pixel centres at +0.5): "center" when
   |cx - 32| < CENTER_RADIUS and |cy - 32| < CENTER_RADIUS, otherwise top/bottom by cy < 32 and
   left/right by cx < 32;
5. bounding box of the mask (inclusive pixel rows y0..y1, columns x0..x1; w, h its extents);
   fill = mask pixels / (w * h); drop = (cy - (y0 + y1 + 1) / 2) / h, how far the centroid sits below
   the box's middle (an upright triangle's is 1/6, a circle's or square's 0). Triangle when
   drop > TRIANGLE_DROP or fill < TRIANGLE_FILL (ideal 0.5); else circle when fill < CIRCLE_BELOW
   (ideal pi/4 = 0.785); else square (ideal 1.0). The drop tells blurred small triangles, whose fill
   creeps up towards a circle's, from circles;
6. size: "large" when max(w, h) >= LARGE_FROM pixels (ideal extents ~26 large, ~14 small).
A generated image agrees with its prompt when shape, colour and background all match, and so do the
position and size when the prompt names them.
"""
import argparse
import colorsys
import json
import os

import numpy as np

import dataset

MASK_DISTANCE = 80.0
MIN_PIXELS = 20
CENTER_RADIUS = 8.0
TRIANGLE_DROP = 0.05
TRIANGLE_FILL = 0.66
CIRCLE_BELOW = 0.875
LARGE_FROM = 19


def hue_degrees(rgb):
    r, g, b = (float(c) / 255.0 for c in rgb)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360.0


PALETTE_HUES = {name: hue_degrees(rgb) for name, rgb in dataset.PALETTE.items()}


def hue_name(rgb):
    h = hue_degrees(rgb)
    return min(PALETTE_HUES, key=lambda n: min(abs(h - PALETTE_HUES[n]), 360.0 - abs(h - PALETTE_HUES[n])))


def largest_component(mask):
    """The largest 4-connected component of a boolean mask (first found in row-major order on ties)."""
    n_rows, n_cols = mask.shape
    label = np.zeros(mask.shape, np.int32)
    best, best_size, current = 0, 0, 0
    for y0 in range(n_rows):
        for x0 in range(n_cols):
            if not mask[y0, x0] or label[y0, x0]:
                continue
            current += 1
            label[y0, x0] = current
            stack, size = [(y0, x0)], 0
            while stack:
                y, x = stack.pop()
                size += 1
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < n_rows and 0 <= nx < n_cols and mask[ny, nx] and not label[ny, nx]:
                        label[ny, nx] = current
                        stack.append((ny, nx))
            if size > best_size:
                best, best_size = current, size
    return label == best if best else mask


def analyze(image):
    """image uint8 [64, 64, 3] -> dict of what it shows (shape None when nothing stands out)."""
    f = image.astype(np.float64)
    n = f.shape[0]
    frame = np.ones((n, n), bool)
    frame[2:n - 2, 2:n - 2] = False
    background = np.median(f[frame], axis=0)
    mask = largest_component(np.sqrt(((f - background) ** 2).sum(axis=2)) > MASK_DISTANCE)
    result = {"background": hue_name(background), "background_rgb": background.round(1).tolist(),
              "pixels": int(mask.sum())}
    if mask.sum() < MIN_PIXELS:
        result["shape"] = None
        return result
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    fill = mask.sum() / float(w * h)
    drop = (cy - (ys.min() + ys.max() + 1) / 2.0) / h
    colour_rgb = f[mask].mean(axis=0)
    if abs(cx - n / 2) < CENTER_RADIUS and abs(cy - n / 2) < CENTER_RADIUS:
        position = "center"
    else:
        position = ("top" if cy < n / 2 else "bottom") + " " + ("left" if cx < n / 2 else "right")
    result.update({
        "shape": ("triangle" if drop > TRIANGLE_DROP or fill < TRIANGLE_FILL
                  else "circle" if fill < CIRCLE_BELOW else "square"),
        "colour": hue_name(colour_rgb), "colour_rgb": colour_rgb.round(1).tolist(),
        "position": position, "size": "large" if max(w, h) >= LARGE_FROM else "small",
        "centroid": [round(cx, 2), round(cy, 2)], "bbox_wh": [int(w), int(h)], "fill": round(fill, 3),
        "drop": round(drop, 3),
    })
    return result


def agrees(case, found):
    """Whether the analysis matches what the case's prompt asked for; returns (ok, list of mismatches)."""
    wrong = [k for k in ("shape", "colour", "background", "position", "size")
             if case.get(k) is not None and found.get(k) != case[k]]
    return not wrong, wrong


def eval_cases():
    """The fixed (prompt, seed) set: 24 full captions cycling shapes, colours, backgrounds, positions
    and sizes, plus the README's short prompt."""
    positions = list(dataset.POSITIONS)
    sizes = list(dataset.SIZES)
    cases = []
    for i in range(24):
        colour = dataset.COLOURS[i % 4]
        others = [c for c in dataset.COLOURS if c != colour]
        scene = {"shape": dataset.SHAPES[i % 3], "colour": colour, "background": others[(i // 4) % 3],
                 "position": positions[i % 5], "size": sizes[(i // 3) % 2]}
        cases.append(dict(scene, prompt=dataset.caption(scene), seed=1000 + i))
    cases.append({"shape": "circle", "colour": "red", "background": "blue", "position": None, "size": None,
                  "prompt": "a red circle on a blue background", "seed": 42})
    return cases


def check_dataset(count=600):
    """The analysis must read the training scenes themselves correctly."""
    images, scenes = dataset.make_examples(12345, count)
    bad = 0
    for image, scene in zip(images, scenes):
        ok, wrong = agrees(scene, analyze(image))
        if not ok:
            bad += 1
            if bad <= 5:
                print("dataset mismatch:", dataset.caption(scene), wrong, analyze(image))
    print(f"analysis on {count} dataset images: {count - bad}/{count} agree")
    return bad


def grid(images, labels, path, columns=5):
    """Saves a captioned grid of the images (each scaled 2x)."""
    from PIL import Image, ImageDraw

    tile_w, tile_h = 200, 128 + 54
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * tile_w, (i // columns) * tile_h
        canvas.paste(Image.fromarray(img).resize((128, 128), Image.NEAREST), (x + 36, y + 2))
        for j, line in enumerate(label):
            draw.text((x + 4, y + 132 + 12 * j), line, fill=(0, 0, 0))
    canvas.save(path)


def wrap(text, width=32):
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def main():
    import torch

    import export
    import sample

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(export.REPO, "models", "kiln-shapes.safetensors"))
    ap.add_argument("--png", default=None, help="write the captioned grid here")
    ap.add_argument("--json", default=None, help="write per-case results here")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if check_dataset():
        raise SystemExit("the analysis misreads training images")

    unet, vae, text_encoder, tokenizer, scaling = export.load_checkpoint(args.model)
    cases = eval_cases()
    _, uncond = sample.encode_prompts(text_encoder, tokenizer, [""])
    images, labels, results, agreed = [], [], [], 0
    for case in cases:
        _, cond = sample.encode_prompts(text_encoder, tokenizer, [case["prompt"]])
        x = sample.euler_cfg(unet, cond, uncond, sample.noise_for(case["seed"]), steps=args.steps, cfg=args.cfg)
        image = sample.decode(vae, x, scaling)[2][0].numpy()
        found = analyze(image)
        ok, wrong = agrees(case, found)
        agreed += ok
        print(f"{'ok  ' if ok else 'MISS'} seed {case['seed']} '{case['prompt']}' wrong={wrong} "
              f"found={ {k: found.get(k) for k in ('shape', 'colour', 'background', 'position', 'size', 'fill', 'drop')} }")
        images.append(image)
        labels.append(wrap(case["prompt"]) + [f"seed {case['seed']}: " + ("ok" if ok else "MISS " + ",".join(wrong))])
        results.append(dict(case, found=found, agrees=ok))
    print(f"agreement: {agreed}/{len(cases)} = {agreed / len(cases):.0%}")
    if args.png:
        grid(images, labels, args.png)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"agreement": agreed / len(cases), "steps": args.steps, "cfg": args.cfg,
                       "sampler": "euler", "scheduler": "normal", "cases": results}, fh, indent=1)


if __name__ == "__main__":
    main()
