#!/usr/bin/env python3
"""Writes the fixtures of tests/test_image.c into this folder.

    python3 tests/data/image/make_fixtures.py [--goldens /work/shared/goldens]

Needs numpy, Pillow and torch; the ComfyUI tensors also need `safetensors` and
the shared goldens. Every `<name>.png` / `<name>.jpg` comes with
`<name>.png.rgb` / `<name>.jpg.rgb`, the pixels kiln must decode from it
(uint8, height x width x 3, no header):
what ComfyUI's LoadImage gets from Pillow, i.e. `ImageOps.exif_transpose`
then `.convert("RGB")` (alpha dropped, not composited). The one exception is
gray16.png, where kiln keeps the high byte of each sample (see README.md).

The other files pin ComfyUI's float <-> uint8 rules, computed with torch and
numpy exactly as ComfyUI's nodes do (all raw little-endian, no header):
  comfy_image_float.f32  VAEDecode IMAGE of golden run txt2img_euler_normal_s8, f32 [2,16,16,3]
  comfy_image_uint8.u8   SaveImage's uint8 of the same, [2,16,16,3]
  save_rule.f32 / .u8    decoder outputs x (f32, N) -> SaveImage uint8 (N): near every
                         uint8 boundary, the ends of [-1, 1], and beyond them
  load_rule.f32          LoadImage + VAE.process_input for uint8 0..255 -> f32 [256]
"""
import argparse
import io
import os
import struct
import zlib

import numpy as np
import torch
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))


def pattern(w, h):
    """An asymmetric RGB pattern, so a flip or rotation shows (uint8 [h, w, 3])."""
    y, x = np.mgrid[0:h, 0:w]
    r = (37 * x + 11 * y) % 256
    g = (200 - 23 * y + 5 * x) % 256
    b = (13 * x * y + 60) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def smooth(w, h):
    """Gradients with a soft disc: JPEG-friendly content (uint8 [h, w, 3])."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.hypot(x - w * 0.4, y - h * 0.6)
    r = 40 + 180 * x / (w - 1)
    g = 220 - 150 * y / (h - 1)
    b = 128 + 100 * np.cos(d / 3.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def expected_rgb(data):
    """What ComfyUI's LoadImage sees: exif_transpose, then convert('RGB')."""
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"))


def write(name, data, expect):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    with open(os.path.join(HERE, name + ".rgb"), "wb") as f:
        f.write(np.ascontiguousarray(expect, dtype=np.uint8).tobytes())
    print(f"{name:22s} {expect.shape[1]}x{expect.shape[0]}")


def pillow_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def png_chunk(kind, payload):
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def raw_png(samples, bit_depth, color_type, interlace=False):
    """A PNG written by hand (Pillow cannot write 16-bit RGB or Adam7).
    samples: [h, w, c] array of uint8 or big-endian-able uint16; filter 0 on every row."""
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"

    def scanlines(img):
        return b"".join(b"\x00" + img[r].astype(dtype).tobytes() for r in range(img.shape[0]))

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b"".join(scanlines(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                       if samples[y0::dy, x0::dx].size)
    else:
        raw = scanlines(samples)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b""))


def png_fixtures():
    rgb = pattern(7, 5)
    write("rgb.png", pillow_bytes(Image.fromarray(rgb, "RGB"), "PNG"), rgb)

    alpha = ((np.arange(35).reshape(5, 7) * 7) % 256).astype(np.uint8)  # includes 0: fully transparent
    rgba = np.dstack([rgb, alpha])
    data = pillow_bytes(Image.fromarray(rgba, "RGBA"), "PNG")
    write("rgba.png", data, expected_rgb(data))

    index = ((np.arange(7)[None, :] + 2 * np.arange(5)[:, None]) % 12).astype(np.uint8)
    palette = [(i * 20, 255 - i * 17, (i * 91) % 256) for i in range(12)]
    pal = Image.fromarray(index, "P")
    pal.putpalette([c for rgb_ in palette for c in rgb_])
    data = pillow_bytes(pal, "PNG", transparency=3)  # a tRNS chunk, which LoadImage ignores for RGB
    write("palette.png", data, expected_rgb(data))
    index8 = ((5 * np.arange(7)[None, :] + 7 * np.arange(5)[:, None]) % 35).astype(np.uint8)
    pal8 = Image.fromarray(index8, "P")  # 35 colours: an 8-bit palette
    pal8.putpalette([c for i in range(35) for c in ((i * 7) % 256, 250 - i * 5, (i * 53) % 256)])
    data = pillow_bytes(pal8, "PNG")
    write("palette8.png", data, expected_rgb(data))

    gray = rgb[..., 1].copy()
    data = pillow_bytes(Image.fromarray(gray, "L"), "PNG")
    write("gray.png", data, expected_rgb(data))
    data = pillow_bytes(Image.fromarray(gray, "L").convert("1", dither=Image.Dither.NONE), "PNG")
    write("gray1.png", data, expected_rgb(data))
    data = pillow_bytes(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG")
    write("gray_alpha.png", data, expected_rgb(data))

    # 16-bit RGB: Pillow keeps the high byte of each sample.
    rgb16 = (pattern(5, 4).astype(np.uint16) * 257 + np.arange(60).reshape(4, 5, 3).astype(np.uint16) * 3)
    data = raw_png(rgb16, 16, 2)
    expect = expected_rgb(data)
    assert (expect == (rgb16 >> 8)).all(), "Pillow no longer takes the high byte of 16-bit RGB"
    write("rgb16.png", data, expect)

    # 16-bit gray: Pillow opens it as mode I;16 and clips to 255 on convert('RGB'), so ComfyUI
    # loads a white image; kiln keeps the high byte instead (README.md says why).
    gray16 = (np.arange(20).reshape(4, 5) * 3300).astype(np.uint16)
    write("gray16.png", raw_png(gray16[..., None], 16, 0), np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, -1))

    big = pattern(11, 9)
    data = raw_png(big, 8, 2, interlace=True)
    expect = expected_rgb(data)
    assert (expect == big).all()
    write("interlaced.png", data, expect)

    # EXIF orientations 2..8 in a PNG eXIf chunk; LoadImage applies ImageOps.exif_transpose.
    small = pattern(5, 3)
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = pillow_bytes(Image.fromarray(small, "RGB"), "PNG", exif=exif)
        write(f"exif{orientation}.png", data, expected_rgb(data))


def jpeg_fixtures():
    photo = Image.fromarray(smooth(19, 13), "RGB")  # not a multiple of the 16x16 MCU
    data = pillow_bytes(photo, "JPEG", quality=90, subsampling="4:2:0")
    write("photo420.jpg", data, expected_rgb(data))
    data = pillow_bytes(photo, "JPEG", quality=85, subsampling="4:2:2", progressive=True)
    write("progressive.jpg", data, expected_rgb(data))
    data = pillow_bytes(photo.convert("L"), "JPEG", quality=90)
    write("gray.jpg", data, expected_rgb(data))
    data = pillow_bytes(photo.convert("CMYK"), "JPEG", quality=95)  # Adobe-inverted CMYK, as Photoshop writes
    write("cmyk.jpg", data, expected_rgb(data))
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: rotate 90 degrees clockwise to view
    data = pillow_bytes(photo, "JPEG", quality=90, exif=exif)
    write("exif6.jpg", data, expected_rgb(data))


def comfy_rules(goldens):
    # VAEDecode: clamp((x + 1) / 2, 0, 1) in torch float32; SaveImage: np.clip(255. * i, 0, 255).astype(uint8).
    def save_image(x):
        image = torch.clamp((torch.from_numpy(x) + 1.0) / 2.0, min=0.0, max=1.0)
        return np.clip(255.0 * image.numpy(), 0, 255).astype(np.uint8)

    xs = [-1.0, 1.0, 0.0, 0.99999, -0.99999, 0.5, -0.5, 1e-8, -1e-8, 1.5, -1.5, 3.0e38, -3.0e38, np.inf, -np.inf]
    for k in range(256):  # the decoder output where 255 * image crosses k, and its float32 neighbours
        x = np.float32(2.0 * k / 255.0 - 1.0)
        xs += [np.nextafter(x, np.float32(-2), dtype=np.float32), x, np.nextafter(x, np.float32(2), dtype=np.float32)]
    xs = np.array(xs, dtype=np.float32)
    xs.tofile(os.path.join(HERE, "save_rule.f32"))
    save_image(xs).tofile(os.path.join(HERE, "save_rule.u8"))

    # LoadImage: np.array(image).astype(np.float32) / 255.0; VAE.encode: process_input = x * 2.0 - 1.0.
    u8 = np.arange(256, dtype=np.uint8)
    unit = torch.from_numpy(u8.astype(np.float32) / 255.0)
    (unit * 2.0 - 1.0).numpy().astype("<f4").tofile(os.path.join(HERE, "load_rule.f32"))
    print(f"save_rule             {xs.size} values; load_rule 256 values")

    from safetensors.numpy import load_file
    run = load_file(os.path.join(goldens, "comfyui/runs/txt2img_euler_normal_s8.safetensors"))
    run["image_float"].astype("<f4").tofile(os.path.join(HERE, "comfy_image_float.f32"))
    run["image_uint8"].tofile(os.path.join(HERE, "comfy_image_uint8.u8"))
    assert (save_image(run["image_float"] * 2 - 1) == run["image_uint8"]).all()
    print("comfy_image_*         [2,16,16,3] from txt2img_euler_normal_s8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goldens", default="/work/shared/goldens")
    args = parser.parse_args()
    png_fixtures()
    jpeg_fixtures()
    comfy_rules(args.goldens)


if __name__ == "__main__":
    main()
