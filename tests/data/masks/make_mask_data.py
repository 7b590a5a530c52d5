"""Goldens for ComfyUI's mask nodes: LoadImageMask and LoadImage's MASK,
SolidMask, ImageToMask, MaskToImage (with SaveImage's bytes), InvertMask,
ThresholdMask, CropMask, MaskComposite, FeatherMask and GrowMask.

The rules are ComfyUI's comfy_extras/nodes_mask.py and nodes.py (LoadImage,
LoadImageMask), read at ComfyUI v0.3.64 (commit a125cd84, the version of the
project's shared goldens), restated here with numpy in float32 as torch
computes them: a float32 tensor times, plus or against a Python float works
in float32 with the scalar rounded to float32 first, so each step is one
float32 rounding. Python's indexing is kept where it matters:
  - MaskComposite's "and", "or" and "xor" take torch.round(v).bool() of each
    side (round half to even: weights from -0.5 to 0.5 are False, the float
    just above 0.5 True), then 0/1 floats: not "nonzero";
  - FeatherMask's right and bottom fades index the mask at -x / -y with x, y
    from 0, so their first step (-0) scales the FIRST column / row and the
    last column / row gets rate 2 / fade. (ComfyUI's master later changed
    this to -(x + 1), PR #12881 of 2026; these goldens keep v0.3.64's rule.)
  - GrowMask is scipy.ndimage.grey_dilation / grey_erosion itself, as the
    node calls it, over the 3x3 cross (tapered corners) or square.
The pictures' masks are what Pillow gives LoadImageMask and LoadImage
(ImageOps.exif_transpose, convert("RGBA") unless already RGBA, a channel over
255 in float32, alpha as 1 - alpha).

Writes tests/data/masks/ (read by tests/test_mask_ops.c):
  rgba.png         6x5 RGBA, alpha 0, 1, 254, 255 and between
  palette_trns.png 6x5 palette of 8 colours with a tRNS chunk
  la.png           6x5 grey + alpha
  rgb.png          6x5 RGB, no alpha
  rgba_exif6.png   6x5 RGBA with EXIF orientation 6 (upright 5x6)
  rgb_trns.png     6x5 RGB with a tRNS chunk (one colour transparent)
  gray_trns.png    6x5 grey with a tRNS chunk (one level transparent)
and masks.safetensors:
  mask [11, 13], small [5, 6]  the masks the nodes below work on (random,
              with exact 0, 1, 0.5, float32(0.3) and values just over 0.5)
  blobs [11, 13]   a mostly-0 mask with a few 1s and fractions (GrowMask)
  binary [11, 13], binary_small [5, 6]  ThresholdMask(mask / small, 0.5)
  solid.<value>_<w>_<h>       SolidMask
  picture [11, 13, 3] U8      a picture holding every byte value;
  from_image.<channel>        ImageToMask(picture / 255, channel)
  levels [17, 16]             k / 255 in float32 for k = 0..255, then
              0.99999, 1.0, 0.5, 0, -0.1, 1.5, +-inf, the float below 1,
              1/510, float32(0.99999994) and other corners;
  to_image.levels [17, 16, 3] U8  MaskToImage then SaveImage's bytes
  invert                      InvertMask(mask)
  threshold.<value>           ThresholdMask(mask, value)
  crop.<x>_<y>_<w>_<h>        CropMask(mask, ...)
  composite.<op>.<x>_<y>      MaskComposite(mask, small, x, y, op)
  composite_big.<op>.<x>_<y>  MaskComposite(small, mask, x, y, op)
  composite_binary.<op>.3_2   MaskComposite(binary, binary_small, 3, 2, op)
  feather.<l>_<t>_<r>_<b>     FeatherMask(mask, left, top, right, bottom)
  grow.<expand>_<tapered>     GrowMask(blobs, expand, tapered 1/0);
  grow_mask.<expand>_<tapered>  GrowMask(mask, ...)
  load.<stem>.<channel>       LoadImageMask(file, channel)
  image.<stem>.rgb U8         LoadImage's IMAGE bytes (before / 255);
  image.<stem>.mask           its MASK where it finds alpha (where not, the
              node's 64x64 zeros, not stored)
and metadata: "files" (stem=path under tests/data, comma-separated; the
JPEG is tests/data/image/exif6.jpg, reused) and "has_alpha.<stem>" ("1" or
"0": LoadImage's test, 'A' in the bands or mode P with a transparency).

Run from the repository root (numpy, scipy, Pillow, safetensors):
  python3 tests/data/masks/make_mask_data.py
"""
import os
import warnings

import numpy as np
import scipy.ndimage
from PIL import Image, ImageOps
from safetensors.numpy import save_file

DIR = "tests/data/masks"
OUT = os.path.join(DIR, "masks.safetensors")
f32 = np.float32
OPS = ("multiply", "add", "subtract", "and", "or", "xor")


# ---- the nodes -------------------------------------------------------------

def solid(value, w, h):
    return np.full((h, w), value, dtype=f32)


def image_to_mask(picture, channel):
    image = picture.astype(f32) / f32(255.0)
    return np.ascontiguousarray(image[..., ("red", "green", "blue").index(channel)])


def mask_to_saved_bytes(m):
    grey = np.clip(f32(255.0) * m, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


def invert(m):
    return (f32(1.0) - m).astype(f32)


def threshold(m, value):
    return (m > f32(value)).astype(f32)


def crop(m, x, y, w, h):
    return np.ascontiguousarray(m[y:y + h, x:x + w])


def truthy(v):
    return np.round(v) != 0  # torch.round(v).bool(): half to even


def composite(dest, src, x, y, op):
    out = dest.copy()
    right = min(x + src.shape[1], dest.shape[1])
    bottom = min(y + src.shape[0], dest.shape[0])
    d = out[y:bottom, x:right]
    s = src[:bottom - y, :right - x]
    if op == "multiply":
        r = d * s
    elif op == "add":
        r = d + s
    elif op == "subtract":
        r = d - s
    elif op == "and":
        r = (truthy(d) & truthy(s)).astype(f32)
    elif op == "or":
        r = (truthy(d) | truthy(s)).astype(f32)
    else:
        r = (truthy(d) ^ truthy(s)).astype(f32)
    out[y:bottom, x:right] = r
    return np.clip(out, f32(0.0), f32(1.0)).astype(f32)


def feather(m, left, top, right, bottom):
    out = m.copy()
    h, w = out.shape
    left, right = min(left, w), min(right, w)
    top, bottom = min(top, h), min(bottom, h)
    for x in range(left):
        out[:, x] *= f32((x + 1.0) / left)
    for x in range(right):
        out[:, -x] *= f32((x + 1) / right)  # -0: the first column
    for y in range(top):
        out[y, :] *= f32((y + 1) / top)
    for y in range(bottom):
        out[-y, :] *= f32((y + 1) / bottom)
    return out


def grow(m, expand, tapered):
    c = 0 if tapered else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    out = m.copy()
    for _ in range(abs(expand)):
        if expand < 0:
            out = scipy.ndimage.grey_erosion(out, footprint=kernel)
        else:
            out = scipy.ndimage.grey_dilation(out, footprint=kernel)
    return out.astype(f32)


def load_image_mask(path, channel):
    i = ImageOps.exif_transpose(Image.open(path))
    if i.getbands() != ("R", "G", "B", "A"):
        i = i.convert("RGBA")
    c = channel[0].upper()
    mask = np.array(i.getchannel(c)).astype(f32) / f32(255.0)
    return (f32(1.0) - mask).astype(f32) if c == "A" else mask


def load_image(path):
    """LoadImage's IMAGE bytes (before / 255), MASK, and whether it found alpha."""
    i = ImageOps.exif_transpose(Image.open(path))
    rgb = np.array(i.convert("RGB"), dtype=np.uint8)
    if "A" in i.getbands():
        a = np.array(i.getchannel("A")).astype(f32) / f32(255.0)
        return rgb, (f32(1.0) - a).astype(f32), True
    if i.mode == "P" and "transparency" in i.info:
        a = np.array(i.convert("RGBA").getchannel("A")).astype(f32) / f32(255.0)
        return rgb, (f32(1.0) - a).astype(f32), True
    return rgb, None, False  # the node's MASK: torch.zeros((64, 64)), not stored


# ---- the pictures ----------------------------------------------------------

def write_pictures(rng):
    """The test PNGs (6 wide, 5 high); {stem: path under tests/data}."""
    w, h = 6, 5
    files = {}

    def save(stem, img, **kw):
        path = os.path.join(DIR, stem + ".png")
        img.save(path, **kw)
        files[stem] = "masks/" + stem + ".png"

    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha.flat[:6] = [0, 1, 254, 255, 128, 127]
    save("rgba", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))

    pal = Image.new("P", (w, h))
    pal.putpalette(rng.integers(0, 256, 8 * 3, dtype=np.uint8).tobytes())
    idx = rng.integers(0, 8, (h, w), dtype=np.uint8)
    idx.flat[:8] = np.arange(8)
    pal.putdata(idx.flatten().tolist())
    save("palette_trns", pal, transparency=bytes([0, 255, 128, 37, 200, 1, 254, 90]))

    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    la_alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    la_alpha.flat[:3] = [0, 255, 99]
    save("la", Image.fromarray(np.dstack([grey, la_alpha]), "LA"))

    save("rgb", Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"))

    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored picture turned 90 degrees clockwise to show it
    turned = np.dstack([rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)])
    turned[0, 0, 3], turned[0, 1, 3] = 0, 255
    save("rgba_exif6", Image.fromarray(turned, "RGBA"), exif=exif)

    keyed = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    keyed[1, 2] = keyed[3, 4] = keyed[0, 0] = (10, 200, 30)
    save("rgb_trns", Image.fromarray(keyed, "RGB"), transparency=(10, 200, 30))

    levels = rng.integers(0, 256, (h, w), dtype=np.uint8)
    levels[2, 1] = levels[4, 5] = 77
    save("gray_trns", Image.fromarray(levels, "L"), transparency=77)

    files["exif6_jpg"] = "image/exif6.jpg"
    return files


# ---- the cases -------------------------------------------------------------

def main():
    # Pillow's note on converting a palette picture whose tRNS it keeps as bytes
    warnings.filterwarnings("ignore", "Palette images with Transparency")
    rng = np.random.default_rng(20261129)
    out = {}
    meta = {}

    mask = rng.uniform(0.0, 1.0, (11, 13)).astype(f32)
    mask.flat[[0, 14, 30, 45, 60, 77, 90, 101, 120, 131]] = [
        f32(0.3), 0.0, 1.0, 0.5, np.nextafter(f32(0.5), f32(1)), 0.0, 1.0, 0.5, 0.25, np.nextafter(f32(0.5), f32(0))]
    small = rng.uniform(0.0, 1.0, (5, 6)).astype(f32)
    small.flat[[0, 3, 7, 11, 16, 22, 29]] = [0.0, 1.0, 0.5, f32(0.3), 0.0, np.nextafter(f32(0.5), f32(1)), 0.9]
    blobs = np.zeros((11, 13), dtype=f32)
    blobs[2, 3] = 1.0
    blobs[7, 9] = 0.75
    blobs[5:7, 5:7] = f32(0.4)
    blobs[0, 12] = f32(0.6)
    blobs[10, 0] = 1.0
    blobs[8, 2] = f32(0.2)
    out.update(mask=mask, small=small, blobs=blobs)
    binary, binary_small = threshold(mask, 0.5), threshold(small, 0.5)
    out.update(binary=binary, binary_small=binary_small)

    for value, w, h in ((0.35, 13, 11), (1.0, 6, 5), (0.0, 1, 1)):
        out[f"solid.{value:g}_{w}_{h}"] = solid(value, w, h)

    picture = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    picture.flat[:256] = rng.permutation(256)
    out["picture"] = picture
    for channel in ("red", "green", "blue"):
        out[f"from_image.{channel}"] = image_to_mask(picture, channel)

    levels = np.zeros(17 * 16, dtype=f32)
    levels[:256] = np.arange(256, dtype=f32) / f32(255.0)
    levels[256:] = [0.99999, 1.0, 0.5, 0.0, -0.1, 1.5, np.inf, -np.inf, np.nextafter(f32(1), f32(0)),
                    f32(1.0 / 510.0), f32(0.99999994), f32(254.5 / 255.0), f32(1.0 / 255.0) * f32(0.999),
                    -0.0, 1e-30, f32(128.0 / 255.0)]
    levels = levels.reshape(17, 16)
    out["levels"] = levels
    out["to_image.levels"] = mask_to_saved_bytes(levels)

    out["invert"] = invert(mask)
    for value in (0.5, 0.3, 0.0, 1.0, 0.7):
        out[f"threshold.{value:g}"] = threshold(mask, value)

    for x, y, w, h in ((0, 0, 13, 11), (2, 3, 4, 5), (10, 8, 5, 5), (12, 10, 1, 1), (0, 0, 100, 100), (5, 0, 1, 11)):
        out[f"crop.{x}_{y}_{w}_{h}"] = crop(mask, x, y, w, h)

    for op in OPS:
        for x, y in ((3, 2), (9, 8)):
            out[f"composite.{op}.{x}_{y}"] = composite(mask, small, x, y, op)
        out[f"composite_binary.{op}.3_2"] = composite(binary, binary_small, 3, 2, op)
    for op in ("multiply", "add", "subtract"):
        for x, y in ((0, 0), (12, 10), (13, 0)):
            out[f"composite.{op}.{x}_{y}"] = composite(mask, small, x, y, op)
    for op in ("add", "xor"):
        for x, y in ((0, 0), (2, 1)):
            out[f"composite_big.{op}.{x}_{y}"] = composite(small, mask, x, y, op)

    for fades in ((0, 0, 0, 0), (1, 1, 1, 1), (3, 0, 0, 0), (0, 0, 3, 0), (0, 3, 0, 3), (3, 2, 4, 1),
                  (20, 0, 0, 0), (0, 0, 20, 20), (13, 11, 13, 11)):
        out["feather.%d_%d_%d_%d" % fades] = feather(mask, *fades)

    for expand in (1, 3, -2, 30):
        for tapered in (True, False):
            out[f"grow.{expand}_{int(tapered)}"] = grow(blobs, expand, tapered)
    for expand in (1, -2):
        for tapered in (True, False):
            out[f"grow_mask.{expand}_{int(tapered)}"] = grow(mask, expand, tapered)

    files = write_pictures(rng)
    meta["files"] = ",".join(f"{stem}={path}" for stem, path in files.items())
    for stem, path in files.items():
        full = os.path.join("tests/data", path)
        for channel in ("red", "green", "blue", "alpha"):
            out[f"load.{stem}.{channel}"] = load_image_mask(full, channel)
        rgb, m, has_alpha = load_image(full)
        out[f"image.{stem}.rgb"] = rgb
        if has_alpha:
            out[f"image.{stem}.mask"] = m
        meta[f"has_alpha.{stem}"] = "1" if has_alpha else "0"

    for k, v in out.items():
        assert v.dtype in (f32, np.uint8), k
        out[k] = np.ascontiguousarray(v)
    save_file(out, OUT, metadata=meta)
    for name in sorted(os.listdir(DIR)):
        if not name.endswith(".py"):
            os.chmod(os.path.join(DIR, name), 0o644)


if __name__ == "__main__":
    main()
