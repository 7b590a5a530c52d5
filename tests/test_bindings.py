"""The Python bindings (bindings/python/kiln) against independent references:
ComfyUI's recorded runs (tests/data/comfyui_e2e) rebuilt node by node from
their prompts and seeds, the inpainting encodes diffusers computed
(tests/data/inpaint), an ESRGAN's output as spandrel computes it
(tests/data/upscale), PNG files read back with a decoder written here; then
errors, the progress callback, ControlNet and IP-Adapter wiring and the
embedded default model. Standard library only.

ctest runs it with KILN_LIBRARY (libkiln.so), PYTHONPATH (bindings/python)
and KILN_TEST_DATA (tests/data) set; without KILN_TEST_DATA the data next to
this file is used.
"""
import array
import gc
import json
import math
import os
import struct
import sys
import tempfile
import unittest
import unittest.mock
import zlib

import kiln

DATA = os.environ.get("KILN_TEST_DATA") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
RUN_TOL = 1e-4  # the goldens' bound on latents in f32 on the CPU, as test_api.c


def data(relative: str) -> str:
    return os.path.join(DATA, relative)


def read_safetensors(path: str):
    """A .safetensors file's metadata (str -> str) and tensors (name ->
    (shape, values)): F32 and I32 as lists of numbers, U8 as bytes."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + header_len])
    metadata = header.pop("__metadata__", {})
    body = memoryview(blob)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        if info["dtype"] in ("F32", "I32"):
            values = array.array("f" if info["dtype"] == "F32" else "i")
            values.frombytes(raw)
            if sys.byteorder != "little":
                values.byteswap()
            values = values.tolist()
        elif info["dtype"] == "U8":
            values = bytes(raw)
        else:
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}; this reader takes F32, I32 and U8")
        tensors[name] = (tuple(info["shape"]), values)
    return metadata, tensors


def rel_l2(got, want) -> float:
    """||got - want|| / ||want|| in float64."""
    assert len(got) == len(want), (len(got), len(want))
    diff = math.fsum((float(a) - float(b)) ** 2 for a, b in zip(got, want))
    norm = math.fsum(float(b) ** 2 for b in want)
    return math.sqrt(diff / norm)


def max_level_diff(a: bytes, b: bytes) -> int:
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) for x, y in zip(a, b))


def f32(v: float) -> float:
    """v rounded to float32, as the library stores it."""
    return struct.unpack("f", struct.pack("f", v))[0]


def read_png(path: str):
    """An 8-bit RGB, non-interlaced PNG file's (width, height, pixels, texts),
    decoded here with zlib (PNG's five row filters undone by hand)."""
    with open(path, "rb") as f:
        blob = f.read()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, texts = 8, b"", {}
    while pos < len(blob):
        (length,) = struct.unpack_from(">I", blob, pos)
        kind, body = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) == (8, 2, 0), "not 8-bit RGB, non-interlaced"
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, value = body.split(b"\0", 1)
            texts[key.decode("latin-1")] = value.decode("latin-1")
    raw, stride, bpp = zlib.decompress(idat), width * 3, 3
    pixels, prior = bytearray(), bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += row
        prior = row
    return width, height, bytes(pixels), texts


backend = model = None


def setUpModule():
    global backend, model
    backend = kiln.Backend("cpu")
    model = kiln.load_checkpoint(backend, data("tiny/sd15_tiny_ldm_fp32.safetensors"))


def tearDownModule():
    backend.close()  # closes the model first


def images_of(shape, pixels: bytes) -> list:
    """A (B, H, W, 3) uint8 tensor as B Images."""
    batch, height, width, _ = shape
    size = height * width * 3
    return [kiln.Image.from_rgb(width, height, pixels[b * size:(b + 1) * size]) for b in range(batch)]


def as_float32(x: float) -> float:
    """x rounded to float32, as kiln's sigmas hold it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def small_run(steps: int = 4, **kwargs) -> kiln.Latent:
    """A 16x16 txt2img run on the tiny model."""
    positive, negative = model.encode("a red circle"), model.encode("")
    empty = model.empty_latent(16, 16)
    return model.ksampler(positive, negative, empty, seed=7, steps=steps, cfg=5.0, sampler_name="euler",
                          scheduler="normal", **kwargs)


class ComfyUIParity(unittest.TestCase):
    """ComfyUI's recorded runs, from the prompt text and seed alone (and
    img2img from the recorded input pictures)."""

    def check_run(self, name: str):
        meta, tensors = read_safetensors(data(f"comfyui_e2e/{name}.safetensors"))
        want_shape, want = tensors["latent_out"]
        pixel_shape, want_pixels = tensors["image_uint8"]
        batch, clip_skip = int(meta["batch_size"]), int(meta["clip_skip"])
        positive = model.encode(meta["positive_prompt"], clip_skip)
        negative = model.encode(meta["negative_prompt"], clip_skip)
        self.assertEqual((positive.tokens, positive.dim), (77, 32))
        if "latent_in" in tensors:  # img2img: VAEEncode of the recorded input pictures
            _, inputs = read_safetensors(data("comfyui_e2e/img2img_input.st"))
            picture_shape, picture = inputs["image_uint8"]
            self.assertEqual(picture_shape[0], batch)
            latent = model.vae_encode(images_of(picture_shape, picture))
            self.assertEqual(latent.shape, inputs["latent"][0])
            self.assertLessEqual(rel_l2(latent.to_list(), inputs["latent"][1]), RUN_TOL)
        else:
            latent = model.empty_latent(pixel_shape[2], pixel_shape[1], batch)
        self.assertEqual(latent.shape, want_shape)
        out = model.ksampler(positive, negative, latent, seed=int(meta["seed"]), steps=int(meta["steps"]),
                             cfg=float(meta["cfg"]), sampler_name=meta["sampler_name"],
                             scheduler=meta["scheduler"], denoise=float(meta["denoise"]))
        self.assertEqual(out.shape, want_shape)
        self.assertLessEqual(rel_l2(out.to_list(), want), RUN_TOL)

        images = model.vae_decode(out)
        self.assertEqual(len(images), batch)
        height, width = pixel_shape[1], pixel_shape[2]
        for b, image in enumerate(images):
            self.assertEqual((image.width, image.height), (width, height))
            want_image = want_pixels[b * height * width * 3:(b + 1) * height * width * 3]
            self.assertLessEqual(max_level_diff(image.pixels, want_image), 1)

    def test_vae_decode_tiled(self):
        """VAEDecodeTiled (and VAEEncodeTiled): a picture larger than the
        tiles comes out near the whole decode (encode), not equal to it (the tiling is test_vae_tiled's; the
        tiny VAE sees far beyond a 32-pixel tile, so not very near)."""
        latent = model.empty_latent(96, 80)
        whole = model.vae_decode(latent)[0]
        tiled = model.vae_decode(latent, tile_size=64, overlap=16)[0]
        self.assertEqual((tiled.width, tiled.height), (96, 80))
        change = rel_l2(list(tiled.pixels), list(whole.pixels))
        self.assertTrue(0 < change < 0.5, change)
        with self.assertRaises(kiln.KilnError):
            model.vae_decode(latent, tile_size=32)
        picture = kiln.Image.load(data("ip_adapter/picture_251x233.png"))
        encoded, tiled_latent = model.vae_encode(picture), model.vae_encode(picture, tile_size=64, overlap=16)
        self.assertEqual(tiled_latent.shape, encoded.shape)
        change = rel_l2(tiled_latent.to_list(), encoded.to_list())
        self.assertTrue(0 < change < 0.5, change)

    def test_txt2img_euler_normal(self):
        self.check_run("txt2img_euler_normal_s8")

    def test_txt2img_dpmpp_2m_karras(self):
        self.check_run("txt2img_dpmpp_2m_karras_s8")

    def test_img2img_euler_normal(self):
        self.check_run("img2img_d0.6_euler_normal_s8")


class Errors(unittest.TestCase):
    """Failures come back as KilnError naming what is wrong; the progress
    callback sees every step and can stop the sampling."""

    def test_missing_checkpoint(self):
        path = "/nonexistent/model.safetensors"
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.load_checkpoint(backend, path)
        self.assertEqual(caught.exception.status, "KILN_ERR_IO")
        self.assertIn(path, caught.exception.message)
        self.assertIn(path, str(caught.exception))

    def test_unknown_sampler(self):
        with self.assertRaises(kiln.KilnError) as caught:
            model.ksampler(model.encode("x"), model.encode(""), model.empty_latent(16, 16), steps=2,
                           sampler_name="eulr")
        self.assertEqual(caught.exception.status, "KILN_ERR_INVALID_ARG")
        self.assertIn("eulr", caught.exception.message)

    def test_edit_latent_needs_pix2pix_model(self):
        with self.assertRaises(kiln.KilnError) as caught:
            small_run(steps=1, edit_latent=model.empty_latent(16, 16))
        self.assertEqual(caught.exception.status, "KILN_ERR_INVALID_ARG")
        self.assertIn("InstructPix2Pix", caught.exception.message)

    def test_progress_sees_every_step(self):
        calls = []
        small_run(steps=5, progress=lambda step, total: calls.append((step, total)))
        self.assertEqual(calls, [(step, 5) for step in range(5)])

    def test_progress_false_stops(self):
        calls = []

        def progress(step, total):
            calls.append(step)
            return step != 2

        with self.assertRaises(kiln.KilnError) as caught:
            small_run(steps=5, progress=progress)
        self.assertEqual(calls, [0, 1, 2])
        self.assertEqual(caught.exception.status, "KILN_ERR_CANCELLED")
        self.assertIn("stopped by the progress callback at step 3 of 5", caught.exception.message)

    def test_progress_exception_is_raised(self):
        calls = []

        def progress(step, total):
            calls.append(step)
            if step == 1:
                raise ValueError("enough")

        with self.assertRaisesRegex(ValueError, "enough"):
            small_run(steps=5, progress=progress)
        self.assertEqual(calls, [0, 1])


class ImageFiles(unittest.TestCase):
    """SaveImage and LoadImage: PNG with its text chunks, read back by kiln
    and by the decoder here; a format kiln does not write leaves no file."""

    def test_png_round_trip(self):
        width, height = 7, 5
        pixels = bytes(v for y in range(height) for x in range(width)
                       for v in (30 * x, 50 * y, (9 * x * y + 17) % 256))
        image = kiln.Image.from_rgb(width, height, pixels)
        self.assertEqual((image.width, image.height, image.pixels), (width, height, pixels))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gradient.png")
            image.save(path, text={"parameters": "x"})
            self.assertEqual(os.listdir(tmp), ["gradient.png"])
            self.assertEqual(read_png(path), (width, height, pixels, {"parameters": "x"}))
            loaded = kiln.Image.load(path)
            self.assertEqual((loaded.width, loaded.height, loaded.pixels), (width, height, pixels))

    def test_unsupported_format_leaves_no_file(self):
        image = kiln.Image.from_rgb(2, 2, bytes(12))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "out.gif")
            with self.assertRaises(kiln.KilnError) as caught:
                image.save(path)
            self.assertEqual(caught.exception.status, "KILN_ERR_UNSUPPORTED")
            self.assertIn("out.gif", caught.exception.message)
            self.assertEqual(os.listdir(tmp), [])

    def test_image_filters(self):
        """EmptyImage's colour; ImageBlur at radius 0, ImageSharpen at alpha 0
        and ImageBlend "normal" at factor 1 give their picture back to the
        byte (k / 255 * 255 truncates back to k); a blend mode ComfyUI lacks
        is refused."""
        self.assertEqual(kiln.Image.empty(3, 2, 0xFF8000).pixels, bytes([255, 128, 0] * 6))
        picture = kiln.Image.load(data("inpaint/image_20x17.png"))
        self.assertEqual(picture.blur(0).pixels, picture.pixels)
        self.assertEqual(picture.sharpen(2, 1.0, 0.0).pixels, picture.pixels)
        other = picture.invert()
        self.assertEqual(other.pixels, bytes(int(f32(255.0 * f32(1.0 - f32(v / 255.0)))) for v in picture.pixels))
        self.assertEqual(picture.blend(other, 1.0, "normal").pixels, other.pixels)
        self.assertNotEqual(picture.blur(2, 1.5).pixels, picture.pixels)
        # ImageRotate 90 degrees clockwise: the first row of the result is the first column read upwards
        w, h, turned = picture.width, picture.height, picture.rotate(90)
        self.assertEqual((turned.width, turned.height), (h, w))
        first_column_upwards = b"".join(picture.pixels[3 * w * y:3 * w * y + 3] for y in reversed(range(h)))
        self.assertEqual(turned.pixels[:3 * h], first_column_upwards)
        self.assertEqual(picture.flip(True).flip(True).pixels, picture.pixels)
        self.assertEqual(picture.flip(False).pixels[:3], picture.pixels[3 * (w - 1):3 * w])
        with self.assertRaises(kiln.KilnError) as caught:
            picture.blend(other, 0.5, "hue")
        self.assertIn("blend_mode 'hue'", caught.exception.message)

    def test_image_layout(self):
        """ImageStitch of a picture and its inverse side by side with 4 red
        columns between: each in its place; ResizeAndPadImage onto a wider
        frame pads white; ImageScaleToMaxDimension keeps the aspect ratio."""
        picture = kiln.Image.load(data("inpaint/image_20x17.png"))
        w, h, other = picture.width, picture.height, picture.invert()
        stitched = picture.stitch(other, "right", True, 3, "red")
        self.assertEqual((stitched.width, stitched.height), (2 * w + 4, h))
        row = 3 * stitched.width
        for y in range(h):
            line = stitched.pixels[row * y:row * (y + 1)]
            self.assertEqual(line[:3 * w], picture.pixels[3 * w * y:3 * w * (y + 1)])
            self.assertEqual(line[3 * w:3 * w + 12], bytes([255, 0, 0] * 4))
            self.assertEqual(line[3 * w + 12:], other.pixels[3 * w * y:3 * w * (y + 1)])
        padded = picture.resize_and_pad(2 * w + 2, h, "white", "nearest-exact")
        self.assertEqual(padded.pixels[:3], bytes([255, 255, 255]))
        largest = picture.scale_to_max_dimension(40, "bilinear")
        self.assertGreater(w, h)
        self.assertEqual((largest.width, largest.height), (40, round(h / w * 40)))
        # ImageAddNoise: strength 0 gives the picture back; ImageColorToMask finds its first pixel's colour
        # Canny: kornia's edges of the picture, to the byte (each pixel's grey three times)
        _, canny = read_safetensors(data("image_ops/canny.safetensors"))
        edges = kiln.Image.load(data("image_ops/canny_61x47.png")).canny(0.1, 0.3).pixels
        self.assertEqual(edges[::3], canny["shapes.0.1_0.3"][1])
        # ImageMorphology: kornia's closing with a 4x4 kernel, to the byte
        _, morph = read_safetensors(data("image_ops/morphology.safetensors"))
        closed = kiln.Image.load(data("image_ops/canny_61x47.png")).morphology("close", 4).pixels
        self.assertEqual(closed, morph["close.4"][1])
        self.assertEqual(picture.add_noise(5, 0.0).pixels, picture.pixels)
        self.assertNotEqual(picture.add_noise(5, 0.5).pixels, picture.pixels)
        r, g, b = picture.pixels[:3]
        self.assertEqual(kiln.Mask.from_color(picture, r << 16 | g << 8 | b).weights[0], 1.0)
        with self.assertRaises(kiln.KilnError) as caught:
            picture.stitch(other, "sideways")
        self.assertIn("direction 'sideways'", caught.exception.message)

    def test_from_rgb_checks_size(self):
        with self.assertRaises(ValueError):
            kiln.Image.from_rgb(4, 4, bytes(47))


class Guidance(unittest.TestCase):
    """ControlNetApplyAdvanced and IPAdapterAdvanced through ksampler: at
    strength (weight) 0 the run is the plain one to the bit, at 1 it moves."""

    def test_controlnet(self):
        with model.load_controlnet(data("controlnet/tiny_ldm.safetensors")) as controlnet:
            hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
            plain = small_run().to_list()
            off = small_run(control=kiln.ControlApply(controlnet, hint, strength=0.0)).to_list()
            on = small_run(control=kiln.ControlApply(controlnet, hint, strength=1.0)).to_list()
        self.assertEqual(off, plain)
        self.assertGreater(rel_l2(on, plain), 0.01)

    def test_vae_and_model_save(self):
        # VAESave / ModelSave: the single file's own VAE (its prefix off) and UNet tensors
        with tempfile.TemporaryDirectory() as tmp:
            vae, unet = os.path.join(tmp, "vae.safetensors"), os.path.join(tmp, "unet.safetensors")
            model.save_vae(vae)
            model.save_diffusion_model(unet)
            _, whole = read_safetensors(data("tiny/sd15_tiny_ldm_fp32.safetensors"))
            _, saved_vae = read_safetensors(vae)
            _, saved_unet = read_safetensors(unet)
        self.assertEqual(saved_vae, {k[len("first_stage_model."):]: v for k, v in whole.items()
                                     if k.startswith("first_stage_model.")})
        self.assertEqual(saved_unet, {k: v for k, v in whole.items() if k.startswith("model.diffusion_model.")})

    def test_latent_file(self):
        # SaveLatent / LoadLatent: ComfyUI's .latent file round trip, to the bit
        latent = small_run()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "run.latent")
            latent.save(path, prompt="{}")
            again = kiln.Latent.load(path)
        self.assertEqual(again.shape, latent.shape)
        self.assertEqual(again.to_list(), latent.to_list())

    def test_t2i_adapter(self):
        # ControlNetLoader reads T2I-Adapters: diffusers' names give TencentARC's run, strength 0 the plain one
        hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
        plain = small_run().to_list()
        runs = []
        for path in ("t2i_adapter/full_original.safetensors", "t2i_adapter/full_diffusers.safetensors"):
            with model.load_controlnet(data(path)) as adapter:
                runs.append(small_run(control=kiln.ControlApply(adapter, hint, strength=0.8)).to_list())
                off = small_run(control=kiln.ControlApply(adapter, hint, strength=0.0)).to_list()
                self.assertEqual(off, plain)
        self.assertEqual(runs[0], runs[1])
        self.assertGreater(rel_l2(runs[0], plain), 0.01)

    def test_save_checkpoint(self):
        # saved with a LoRA merged in, loaded again without it: the run of the model with it
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "merged.safetensors")
            lora = kiln.Lora(data("lora/kohya_ldm.safetensors"), 0.8, 0.8)
            with kiln.load_checkpoint(backend, data("tiny/sd15_tiny_ldm_fp32.safetensors"), loras=[lora]) as merged:
                merged.save_checkpoint(path)
                want = merged.ksampler(merged.encode("a red circle"), merged.encode(""), merged.empty_latent(16, 16),
                                       seed=7, steps=2, cfg=5.0).to_list()
            with kiln.load_checkpoint(backend, path) as saved:
                got = saved.ksampler(saved.encode("a red circle"), saved.encode(""), saved.empty_latent(16, 16),
                                     seed=7, steps=2, cfg=5.0).to_list()
        self.assertEqual(got, want)

    def test_controlnet_pth(self):
        # a ControlNet 1.1-style .pth: the run of its .safetensors form
        hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
        runs = []
        for path in ("torch_files/control_tiny.pth", "controlnet/tiny_ldm.safetensors"):
            with model.load_controlnet(data(path)) as controlnet:
                runs.append(small_run(control=kiln.ControlApply(controlnet, hint, strength=1.0)).to_list())
        self.assertEqual(runs[0], runs[1])

    def test_conditioning_mask(self):
        """ConditioningSetMask's parts: a mask all white at strength 1 is
        the prompt everywhere, the plain run to the bit; another moves it."""
        white = kiln.Image.from_rgb(4, 3, bytes([255] * 36))
        grey = kiln.Image.from_rgb(4, 3, bytes(range(0, 252, 7)))
        positive, negative = model.encode("a red circle"), model.encode("")
        plain = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0).to_list()
        runs = [model.ksampler([(positive, 0.0, 1.0, mask, 1.0), (model.encode("a blue square"), 0.0, 1.0)], negative,
                               model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0).to_list() for mask in (white, grey)]
        whole = model.ksampler([(positive, 0.0, 1.0, white, 1.0)], negative, model.empty_latent(16, 16), seed=7,
                               steps=3, cfg=5.0).to_list()
        self.assertEqual(whole, plain)
        self.assertGreater(rel_l2(runs[1], runs[0]), 1e-4)

    def test_conditioning_area(self):
        """ConditioningSetArea's parts: a box over all of the latent at
        strength 2 is the prompt everywhere (the plain run to float
        rounding); a box in the node's pixels (8 a latent pixel; the tiny
        model's latent is 32 x 24) and the same in fractions are one run,
        and it moves the plain one."""
        positive, negative = model.encode("a red circle"), model.encode("")
        blue = model.encode("a blue square")

        def run(parts):
            return model.ksampler(parts, negative, model.empty_latent(64, 48), seed=7, steps=3, cfg=5.0).to_list()

        plain = run([(positive, 0.0, 1.0)])
        whole = run([(positive, 0.0, 1.0, kiln.Area(0, 0, 256, 192, strength=2.0))])
        self.assertLess(rel_l2(whole, plain), 1e-6)
        pixels = run([(positive, 0.0, 1.0), (blue, 0.0, 1.0, kiln.Area(64, 32, 128, 128, strength=1.5))])
        fractions = run([(positive, 0.0, 1.0),
                         (blue, 0.0, 1.0, kiln.Area(0.25, 1 / 6, 0.5, 2 / 3, strength=1.5, percentage=True))])
        self.assertEqual(pixels, fractions)
        self.assertGreater(rel_l2(pixels, plain), 1e-3)
        with self.assertRaises(ValueError):
            run([(positive, 0.0, 1.0, kiln.Area(0, 0, 64, 48, strength=0.0))])

    def test_three_prompt_guiders(self):
        """DualCFGGuider at cfg_cond2_negative 1 is the positive guided from
        cond2, PerpNegGuider at neg_scale 0 the positive guided from the
        empty prompt, to the bit (ComfyUI leaves the negative out there);
        at other scales each moves, nested apart from regular; a style other
        than those two is refused."""
        red, blue, blurry = model.encode("a red circle"), model.encode("a blue square"), model.encode("blurry")

        def run(negative, **guider):
            return model.ksampler(red, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                  **guider).to_list()

        from_blue = run(blue)
        self.assertEqual(run(blurry, dual_cfg=kiln.DualCFG(blue, 1.0)), from_blue)
        self.assertEqual(run(blurry, perp_neg=kiln.PerpNeg(blue, 0.0)), from_blue)
        regular, nested = (run(blurry, dual_cfg=kiln.DualCFG(blue, 2.5, style)) for style in ("regular", "nested"))
        self.assertGreater(rel_l2(regular, from_blue), 1e-4)
        self.assertGreater(rel_l2(nested, regular), 1e-4)
        self.assertGreater(rel_l2(run(blurry, perp_neg=kiln.PerpNeg(blue, 1.0)), from_blue), 1e-4)
        with self.assertRaises(ValueError):
            run(blurry, dual_cfg=kiln.DualCFG(blue, 2.5, "sideways"))

    def test_guidance_patches(self):
        """RescaleCFG's multiplier: 0 is the plain run to the bit, 0.7 moves
        it, and CFGZeroStar moves it too; APG at eta 1 without a cut or
        momentum is the plain run at cfg + 1 (to float rounding), at eta 0
        it moves;
        a multiplier out of 0 to 1 is refused."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(multiplier, zero_star=False):
            return model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                  rescale_cfg=multiplier, cfg_zero_star=zero_star).to_list()

        plain = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0).to_list()
        self.assertEqual(run(0.0), plain)
        self.assertGreater(rel_l2(run(0.7), plain), 1e-5)
        self.assertGreater(rel_l2(run(0.0, True), plain), 1e-5)
        # TCFG, Mahiro, CFGNorm and Epsilon Scaling each move it; Epsilon Scaling at cfg 1 too
        for patch in (dict(tcfg=True), dict(mahiro=True), dict(cfg_norm=0.9), dict(epsilon_scaling=1.02)):
            moved = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                   **patch).to_list()
            self.assertGreater(rel_l2(moved, plain), 1e-5, patch)
        at_one = [model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=1.0,
                                 epsilon_scaling=factor).to_list() for factor in (0.0, 1.02)]
        self.assertGreater(rel_l2(at_one[1], at_one[0]), 1e-5)
        with self.assertRaises(kiln.KilnError) as caught:
            model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                           epsilon_scaling=2.0)
        self.assertIn("Epsilon Scaling factor 2", caught.exception.message)
        # APG at eta 1 without a norm cut or momentum: ComfyUI's formula gives cond + cfg (cond - uncond), the
        # plain guidance at cfg + 1
        plain_apg = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                   apg=kiln.APG(eta=1.0, norm_threshold=0.0)).to_list()
        cfg6 = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=6.0).to_list()
        self.assertLess(rel_l2(plain_apg, cfg6), 1e-5)
        moved = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                               apg=kiln.APG(eta=0.0, momentum=-0.5)).to_list()
        self.assertGreater(rel_l2(moved, plain), 1e-4)
        with self.assertRaises(kiln.KilnError) as caught:
            run(1.5)
        self.assertIn("rescale_cfg 1.5", caught.exception.message)

    def test_freeu(self):
        """FreeU of ones is the plain run to the bit; FreeU and FreeU_V2 move
        it (the tiny UNet's decoder has blocks of twice its width at a 32x24
        picture), each differently; a value past 10 is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(freeu=None):
            return model.ksampler(positive, negative, model.empty_latent(32, 24), seed=7, steps=3, cfg=5.0,
                                  freeu=freeu).to_list()

        plain = run()
        self.assertEqual(run(kiln.FreeU(1.0, 1.0, 1.0, 1.0)), plain)
        v1, v2 = run(kiln.FreeU()), run(kiln.FreeU(1.3, 1.4, 0.9, 0.2, v2=True))
        self.assertGreater(rel_l2(v1, plain), 1e-3)
        self.assertGreater(rel_l2(v2, v1), 1e-3)
        with self.assertRaises(kiln.KilnError) as caught:
            run(kiln.FreeU(b2=12.0))
        self.assertIn("b2 12", caught.exception.message)

    def test_model_sampling(self):
        """ModelSamplingDiscrete's zsnr and lcm, and ModelSamplingContinuousEDM
        (and Playground v2.5's latent format), change the run; reset or set
        back to eps without zsnr, the plain run comes back to the bit."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run():
            return model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                  sampler_name="lcm", scheduler="sgm_uniform").to_list()

        plain = run()
        try:
            model.set_prediction("eps", zsnr=True)
            self.assertGreater(rel_l2(run(), plain), 1e-3)
            model.set_prediction("lcm")
            self.assertEqual(model.prediction, "lcm")
            self.assertGreater(rel_l2(run(), plain), 1e-4)
            model.set_continuous_edm("edm", 80.0, 0.01)
            self.assertEqual(model.prediction, "edm")
            edm = run()
            self.assertGreater(rel_l2(edm, plain), 1e-3)
            # the same sampling with Playground v2.5's latent format
            model.set_continuous_edm("edm_playground_v2.5", 80.0, 0.01)
            self.assertEqual(model.prediction, "edm")
            self.assertGreater(rel_l2(run(), edm), 1e-3)
            model.reset_sampling()
            self.assertEqual(model.prediction, "eps")
            self.assertEqual(run(), plain)
            with self.assertRaises(kiln.KilnError) as caught:
                model.set_continuous_edm("edm_mystery")
            self.assertIn("edm_mystery", caught.exception.message)
        finally:
            model.set_prediction("eps")
        self.assertEqual(run(), plain)

    def test_pag(self):
        """PerturbedAttentionGuidance at scale 0 is the plain run to the bit,
        at 3 it moves it; a scale past 100 is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(scale):
            return model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0,
                                  pag_scale=scale).to_list()

        plain = model.ksampler(positive, negative, model.empty_latent(16, 16), seed=7, steps=3, cfg=5.0).to_list()
        self.assertEqual(run(0.0), plain)
        self.assertGreater(rel_l2(run(3.0), plain), 1e-3)
        with self.assertRaises(kiln.KilnError) as caught:
            run(101.0)
        self.assertIn("pag_scale 101", caught.exception.message)

    def test_merges(self):
        """A model merged with itself half and half is itself to the bit
        (x 0.5 + x 0.5 rounds nowhere); added to itself it samples otherwise;
        a missing file is refused by name, an unknown kind by ValueError."""
        path = data("tiny/sd15_tiny_ldm_fp32.safetensors")
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(m):
            return m.ksampler(positive, negative, m.empty_latent(16, 16), seed=7, steps=2, cfg=5.0).to_list()

        plain = run(model)
        half = kiln.load_checkpoint(backend, path, merges=[kiln.Merge(path, 0.5), kiln.Merge(path, 0.5, "simple", True)])
        self.assertEqual(run(half), plain)
        self.assertEqual(half.encode("a red circle").to_list(), positive.to_list())
        doubled = kiln.load_checkpoint(backend, path, merges=[kiln.Merge(path, kind="add")])
        self.assertGreater(rel_l2(run(doubled), plain), 1e-2)
        # by blocks: half and half everywhere (the first block's ratio for the rest) is itself again
        halves = kiln.load_checkpoint(backend, path, merges=[kiln.Merge(path, blocks=[("input", 0.5), ("out", 0.5)])])
        self.assertEqual(run(halves), plain)
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.load_checkpoint(backend, path, merges=[kiln.Merge(path, blocks=[("input", 1.5)])])
        self.assertIn("'input') ratio 1.5", caught.exception.message)
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.load_checkpoint(backend, path, merges=[kiln.Merge("/nonexistent/other.safetensors")])
        self.assertIn("/nonexistent/other.safetensors", caught.exception.message)
        with self.assertRaises(ValueError):
            kiln.load_checkpoint(backend, path, merges=[kiln.Merge(path, kind="blend")])
        # UNet attention multiplies: all 1 is the model itself, a scaled query is not
        ones = kiln.load_checkpoint(backend, path, self_attention=(1, 1, 1, 1), cross_attention=(1, 1, 1, 1))
        self.assertEqual(run(ones), plain)
        sharper = kiln.load_checkpoint(backend, path, self_attention=(1.5, 1, 1, 1))
        self.assertGreater(rel_l2(run(sharper), plain), 1e-4)
        # CLIPAttentionMultiply: the text encoder's projections, seen in the conditioning
        clip_ones = kiln.load_checkpoint(backend, path, clip_attention=(1, 1, 1, 1))
        self.assertEqual(clip_ones.encode("a red circle").to_list(), positive.to_list())
        clip_scaled = kiln.load_checkpoint(backend, path, clip_attention=(1.1, 0.6, 1, 1.4))
        self.assertGreater(rel_l2(clip_scaled.encode("a red circle").to_list(), positive.to_list()), 1e-3)

    def test_embeddings(self):
        """embedding:NAME through the embeddings folder gives ComfyUI's
        conditioning (tests/data/embeddings, restated); without a folder the
        name is left out with a KilnWarning."""
        _, golden = read_safetensors(data("embeddings/embeddings.golden.safetensors"))
        prompt = "a photo of embedding:style cat"
        with_folder = kiln.load_checkpoint(backend, data("tiny/sd15_tiny_ldm_fp32.safetensors"),
                                           embeddings=data("embeddings"))
        self.assertLessEqual(rel_l2(with_folder.encode(prompt).to_list(), golden["sd15.0.z"][1]), 1e-6)
        with self.assertWarns(kiln.KilnWarning) as caught:
            plain = model.encode(prompt)
        self.assertIn("embedding:style", str(caught.warning))
        self.assertGreater(rel_l2(plain.to_list(), golden["sd15.0.z"][1]), 1e-2)
        with self.assertRaises(kiln.KilnError) as refused:
            model.set_embeddings("/nonexistent/embeddings")
        self.assertIn("/nonexistent/embeddings", refused.exception.message)

    def test_latent_operations(self):
        """LatentApplyOperation changes a latent and keeps its shape;
        LatentApplyOperationCFG moves a run; a sharpen radius past the latent
        is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")
        empty = model.empty_latent(48, 40)  # 24 x 20 latent pixels

        def run(op=None):
            return model.ksampler(positive, negative, empty, seed=7, steps=2, cfg=5.0, cfg_operation=op)

        plain = run()
        toned = plain.apply_operation(kiln.LatentOperation("tonemap_reinhard", 0.5))
        self.assertEqual(len(toned.to_list()), len(plain.to_list()))
        self.assertGreater(rel_l2(toned.to_list(), plain.to_list()), 1e-3)
        sharpened = run(kiln.LatentOperation("sharpen", sharpen_radius=3, sigma=0.5, alpha=1.0))
        self.assertGreater(rel_l2(sharpened.to_list(), plain.to_list()), 1e-3)
        with self.assertRaises(kiln.KilnError) as caught:
            plain.apply_operation(kiln.LatentOperation("sharpen", sharpen_radius=20))
        self.assertIn("sharpen_radius 20", caught.exception.message)

    def test_sag(self):
        """SelfAttentionGuidance moves the run (a 48 x 40 picture: a 24 x 20
        latent for the tiny VAE, above the node's 4-pixel floor); a blur of 0
        is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(sag=None):
            return model.ksampler(positive, negative, model.empty_latent(48, 40), seed=7, steps=3, cfg=5.0,
                                  sag=sag).to_list()

        plain = run()
        self.assertGreater(rel_l2(run(kiln.SAG()), plain), 1e-4)
        with self.assertRaises(kiln.KilnError) as caught:
            run(kiln.SAG(0.5, 0.0))
        self.assertIn("blur_sigma 0", caught.exception.message)

    def test_deep_shrink(self):
        """PatchModelAddDownscale moves the run (shrunk for the whole
        schedule), bislerp otherwise than bicubic; a method the node lacks
        is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(shrink=None):
            return model.ksampler(positive, negative, model.empty_latent(48, 40), seed=7, steps=3, cfg=5.0,
                                  deep_shrink=shrink).to_list()

        bicubic = run(kiln.DeepShrink(end_percent=1.0))
        self.assertGreater(rel_l2(bicubic, run()), 1e-3)
        self.assertGreater(rel_l2(run(kiln.DeepShrink(end_percent=1.0, downscale_method="bislerp",
                                                      upscale_method="bislerp")), bicubic), 1e-4)
        with self.assertRaises(kiln.KilnError) as caught:
            run(kiln.DeepShrink(upscale_method="lanczos"))
        self.assertIn("upscale_method 'lanczos'", caught.exception.message)

    def test_hypertile(self):
        """HyperTile moves the run where its tiles cut the latent, is the
        plain run where one tile holds it all; bad settings are refused by
        name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(tiles=None):
            return model.ksampler(positive, negative, model.empty_latent(96, 64), seed=7, steps=3, cfg=5.0,
                                  hypertile=tiles).to_list()

        plain = run()
        self.assertGreater(rel_l2(run(kiln.HyperTile(32, 3, 1)), plain), 1e-3)
        self.assertEqual(run(kiln.HyperTile(2048)), plain)
        with self.assertRaises(kiln.KilnError) as caught:
            run(kiln.HyperTile(256, 0))
        self.assertIn("swap_size 0", caught.exception.message)

    def test_hypernetwork(self):
        """HypernetworkLoader moves the run, at strength 0 is the plain run
        to the bit, chains in the order given; a file with an activation
        ComfyUI lacks is refused by name."""
        positive, negative = model.encode("a red circle"), model.encode("")

        def run(hypernetworks=None):
            return model.ksampler(positive, negative, model.empty_latent(32, 32), seed=7, steps=2, cfg=5.0,
                                  hypernetworks=hypernetworks).to_list()

        relu_ln = model.load_hypernetwork(data("hypernetwork/relu_ln.pt"))
        swish = model.load_hypernetwork(data("hypernetwork/swish.pt"), -0.7)
        plain = run()
        self.assertEqual(run(model.load_hypernetwork(data("hypernetwork/relu_ln.pt"), 0.0)), plain)
        self.assertGreater(rel_l2(run(relu_ln), plain), 1e-3)
        self.assertGreater(rel_l2(run([relu_ln, swish]), run([swish, relu_ln])), 1e-4)
        with self.assertRaises(kiln.KilnError) as caught:
            model.load_hypernetwork(data("hypernetwork/gelu.pt"))
        self.assertIn("activation_func 'gelu'", caught.exception.message)

    def test_latent_nodes(self):
        """The latent nodes as Latent methods, on two runs' latents:
        element-wise ones against the lists, flips and turns against each
        other (two flips, four quarter turns, a half turn as both flips),
        a crop and the paste of it back by their shapes and values, the
        masked paste under white and black masks."""
        a, b = (model.ksampler(model.encode(text), model.encode(""), model.empty_latent(32, 32), seed=seed, steps=2,
                               cfg=5.0) for text, seed in (("a red circle", 7), ("a blue square", 9)))
        x, y = a.to_list(), b.to_list()
        self.assertEqual(a.multiply(2.0).to_list(), [v * 2 for v in x])
        self.assertEqual(a.add(b).to_list(), [f32(u + v) for u, v in zip(x, y)])
        self.assertEqual(a.subtract(b).to_list(), [f32(u - v) for u, v in zip(x, y)])
        self.assertLess(rel_l2(a.blend(b, 0.25).to_list(), [u * 0.25 + v * 0.75 for u, v in zip(x, y)]), 1e-6)
        self.assertEqual(a.flip(True).flip(True).to_list(), x)
        self.assertNotEqual(a.flip(False).to_list(), x)
        self.assertEqual(a.rotate(90).rotate(90).rotate(180).to_list(), x)
        self.assertEqual(a.rotate(180).to_list(), a.flip(True).flip(False).to_list())
        self.assertEqual(a.batch_with(b).batch_index, [0, 0])
        batch, channels, height, width = a.shape
        cut = b.crop(0, 8, 8 * width, 8 * height)  # b without its first row
        self.assertEqual(cut.shape, (batch, channels, height - 1, width))
        self.assertEqual(cut.to_list(), [v for i, v in enumerate(y) if i // width % height >= 1])
        self.assertEqual(a.composite(cut, 0, 8).to_list(), [u if i // width % height == 0 else v
                                                           for i, (u, v) in enumerate(zip(x, y))])
        # LatentCompositeMasked: under a white mask the paste, under a black one nothing
        white, black = (kiln.Image.from_rgb(4, 3, bytes([v] * 36)) for v in (255, 0))
        self.assertEqual(a.composite_masked(cut, 0, 8, mask=white).to_list(), a.composite(cut, 0, 8).to_list())
        self.assertEqual(a.composite_masked(cut, 0, 8, mask=black).to_list(), x)
        # LatentBatchSeedBehavior "fixed": two images of one noise make one picture twice
        two = model.empty_latent(32, 32, batch=2).seed_behavior("fixed")
        self.assertEqual(two.batch_index, [0, 0])
        pair = model.ksampler(model.encode("a red circle"), model.encode(""), two, seed=7, steps=2, cfg=5.0).to_list()
        self.assertEqual(pair[:len(pair) // 2], pair[len(pair) // 2:])
        # LatentConcat along y and LatentCut back: each half again
        joined = a.concat(b, "y")
        self.assertEqual(joined.shape, (batch, channels, 2 * height, width))
        self.assertEqual(joined.cut("y", 0, height).to_list(), x)
        self.assertEqual(joined.cut("y", -height, height).to_list(), y)
        with self.assertRaises(ValueError):
            a.rotate(45)

    def test_controlnet_positive_only(self):
        """ControlNetApply's: at cfg 1 (only the positive prompt runs) the
        run of the ControlNet on both prompts to the bit; at cfg 5 another."""
        with model.load_controlnet(data("controlnet/tiny_ldm.safetensors")) as controlnet:
            hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
            positive, negative = model.encode("a red circle"), model.encode("")
            runs = {}
            for cfg in (1.0, 5.0):
                for only in (False, True):
                    runs[cfg, only] = model.ksampler(
                        positive, negative, model.empty_latent(16, 16), seed=7, steps=4, cfg=cfg,
                        sampler_name="euler", scheduler="normal",
                        control=kiln.ControlApply(controlnet, hint, positive_only=only)).to_list()
        self.assertEqual(runs[1.0, True], runs[1.0, False])
        self.assertGreater(rel_l2(runs[5.0, True], runs[5.0, False]), 0.01)

    def test_two_controlnets(self):
        """Chained: a second ControlNet at strength 0 leaves the first's run
        to the bit; at 0.5 it moves it; nine are refused."""
        with model.load_controlnet(data("controlnet/tiny_ldm.safetensors")) as first, \
                model.load_controlnet(data("controlnet/second_ldm.safetensors")) as second:
            hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
            one = small_run(control=kiln.ControlApply(first, hint)).to_list()
            off = small_run(control=[kiln.ControlApply(first, hint), kiln.ControlApply(second, hint, 0.0)]).to_list()
            on = small_run(control=(kiln.ControlApply(first, hint), kiln.ControlApply(second, hint, 0.5))).to_list()
            with self.assertRaises(kiln.KilnError) as caught:
                small_run(control=[kiln.ControlApply(first, hint)] * 9)
        self.assertEqual(off, one)
        self.assertGreater(rel_l2(on, one), 0.01)
        self.assertIn("control_count 9", str(caught.exception))

    def test_ip_adapter(self):
        clip_vision = kiln.load_clip_vision(backend, data("ip_adapter/clip_vision_tiny.safetensors"))
        adapter = model.load_ip_adapter(data("ip_adapter/ip_adapter_tiny.safetensors"))
        picture = kiln.Image.load(data("ip_adapter/picture_251x233.png"))
        plain = small_run().to_list()
        off = small_run(ip_adapter=kiln.IPAdapterApply(adapter, clip_vision, picture, weight=0.0)).to_list()
        on = small_run(ip_adapter=kiln.IPAdapterApply(adapter, clip_vision, picture, weight=1.0)).to_list()
        # an ImageBatch: a picture twice is attended to as once (its tokens and the negative's each twice over),
        # another picture beside it moves the run
        twice = small_run(ip_adapter=kiln.IPAdapterApply(adapter, clip_vision, [picture, picture])).to_list()
        hint = kiln.Image.load(data("controlnet/hint_37x23.png"))
        both = small_run(ip_adapter=kiln.IPAdapterApply(adapter, clip_vision, [picture, hint])).to_list()
        self.assertLess(rel_l2(twice, on), 1e-5)
        self.assertGreater(rel_l2(both, on), 1e-3)
        adapter.close()
        clip_vision.close()
        self.assertEqual(off, plain)
        self.assertGreater(rel_l2(on, plain), 0.01)

    def test_two_ip_adapters(self):
        """Chained: a second adapter at weight 0 leaves the first's run to
        the bit; at 0.5 it moves it."""
        clip_vision = kiln.load_clip_vision(backend, data("ip_adapter/clip_vision_tiny.safetensors"))
        plain_adapter = model.load_ip_adapter(data("ip_adapter/ip_adapter_tiny.safetensors"))
        plus_adapter = model.load_ip_adapter(data("ip_adapter/ip_adapter_plus_tiny.safetensors"))
        picture = kiln.Image.load(data("ip_adapter/picture_251x233.png"))
        first = kiln.IPAdapterApply(plain_adapter, clip_vision, picture)
        one = small_run(ip_adapter=first).to_list()
        off = small_run(ip_adapter=[first, kiln.IPAdapterApply(plus_adapter, clip_vision, picture, 0.0)]).to_list()
        on = small_run(ip_adapter=(first, kiln.IPAdapterApply(plus_adapter, clip_vision, picture, 0.5))).to_list()
        for handle in (plus_adapter, plain_adapter, clip_vision):
            handle.close()
        self.assertEqual(off, one)
        self.assertGreater(rel_l2(on, one), 0.01)


class Advanced(unittest.TestCase):
    """KSamplerAdvanced, SDXL's numbers and LatentUpscaleBy."""

    def test_split_run_is_the_whole_run(self):
        # steps 0-3 keeping the leftover noise, then 3-6 on that latent as it is: the 6-step run
        whole = small_run(steps=6).to_list()
        first = small_run(steps=6, end_at_step=3, leftover_noise=True)
        positive, negative = model.encode("a red circle"), model.encode("")
        second = model.ksampler(positive, negative, first, seed=7, steps=6, cfg=5.0, sampler_name="euler",
                                scheduler="normal", start_at_step=3, disable_noise=True).to_list()
        self.assertLess(rel_l2(second, whole), 1e-6)

    def test_sigmas_of_ones_own(self):
        # the scheduler functions give ComfyUI's nodes' sigmas (tests/data/sigmas, restated on torch) ...
        _, goldens = read_safetensors(data("sigmas/sigmas.safetensors"))
        self.assertEqual(kiln.karras_scheduler(10, 120.0, 0.002, 3.0), goldens["karras.s10_rho3"][1])
        self.assertEqual(kiln.align_your_steps_scheduler("SDXL", 7, 0.6), goldens["ays.sdxl_s7_d06"][1])
        self.assertEqual(kiln.optimal_steps_scheduler("Chroma", 25, 0.8), goldens["optimal.chroma_s25_d08"][1])
        self.assertEqual(model.basic_scheduler("karras", 10, 0.55), goldens["basic.sd15_karras_s10_d055"][1])
        self.assertEqual(model.sd_turbo_scheduler(2, 0.5), goldens["sd_turbo.sd15_s2_d05"][1])
        # ... the list nodes cut and turn them as Python slices do ...
        sigmas = model.basic_scheduler("normal", 6)
        high, low = kiln.split_sigmas(sigmas, 3)
        self.assertEqual((high, low), (sigmas[:4], sigmas[3:]))
        self.assertEqual(kiln.split_sigmas_denoise(sigmas, 0.5), (sigmas[:-3], sigmas[-4:]))
        self.assertEqual(kiln.flip_sigmas([2.0, 0.0]), [as_float32(0.0001), 2.0])
        self.assertEqual(kiln.extend_intermediate_sigmas([14.6, 7.3, 2.2, 0.6, 0.0], 3, -1.0, 12.0, "linear"),
                         goldens["extend.linear_s3"][1])
        self.assertEqual(kiln.set_first_sigma(sigmas, 20.0)[0], 20.0)
        self.assertEqual(kiln.manual_sigmas("1., 0.5, 1e-3"), [1.0, 0.5, 1.0, -3.0])  # as re.findall finds them
        # SamplingPercentToSigma: the table's ends with actual=True, the interval checks' values without
        self.assertEqual(model.sampling_percent_to_sigma(0.0, actual=True), as_float32(14.614641))  # SD's sigma_max
        self.assertEqual(model.sampling_percent_to_sigma(1.0, actual=True), as_float32(0.029167158))
        self.assertEqual(model.sampling_percent_to_sigma(0.0), 999999999.9)
        self.assertEqual(model.sampling_percent_to_sigma(1.0), 0.0)
        # AddNoise: seeded noise times the sigma (tests/data/sigmas/add_noise against ComfyUI's in test_schedule)
        blank = model.empty_latent(16, 16)
        once, twice = model.add_noise(blank, [1.0], seed=7), model.add_noise(blank, [3.0, 1.0], seed=7)
        self.assertLess(rel_l2(twice.to_list(), [2.0 * v for v in once.to_list()]), 1e-6)
        self.assertGreater(max(abs(v) for v in once.to_list()), 1.0)
        self.assertEqual(model.add_noise(blank, [1.0], seed=7, noise=False).to_list(), blank.to_list())
        self.assertEqual(model.add_noise(once, []).to_list(), once.to_list())
        # ... and sampling on them is KSampler's run, split in two KSamplerAdvanced's
        positive, negative = model.encode("a red circle"), model.encode("")
        empty = model.empty_latent(16, 16)
        whole = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas)
        self.assertEqual(whole.to_list(), small_run(steps=6).to_list())
        first = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=high)
        self.assertEqual(first.to_list(), small_run(steps=6, end_at_step=3, leftover_noise=True).to_list())
        second = model.ksampler(positive, negative, first, seed=7, cfg=5.0, sigmas=low, disable_noise=True)
        self.assertLess(rel_l2(second.to_list(), whole.to_list()), 1e-6)
        # SamplerCustom's denoised_output: the x0 prediction at the last step, where euler to 0 lands instead
        same, x0 = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=high, denoised_output=True)
        self.assertEqual(same.to_list(), first.to_list())
        to_zero = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=high[:3] + [0.0])
        self.assertLess(rel_l2(x0.to_list(), to_zero.to_list()), 1e-6)
        # the custom sampler nodes' settings: SamplerER_SDE's ODE is its reverse-time SDE at eta 0; SamplerSASolver's
        # defaults are KSampler's sa_solver, and other orders change it
        ode = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="er_sde",
                             solver_type="ODE", max_stage=2)
        reverse = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="er_sde",
                                 solver_type="Reverse-time SDE", max_stage=2, eta=0.0)
        self.assertEqual(ode.to_list(), reverse.to_list())
        plain_sa = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="sa_solver")
        same_sa = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="sa_solver",
                                 sa_solver=kiln.SASolver())
        other_sa = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="sa_solver",
                                  sa_solver=kiln.SASolver(predictor_order=2, corrector_order=1))
        self.assertEqual(same_sa.to_list(), plain_sa.to_list())
        self.assertGreater(rel_l2(other_sa.to_list(), plain_sa.to_list()), 1e-4)
        # SamplerDPMAdaptative's defaults at eta 0 are KSampler's dpm_adaptive; order 2 and eta change it
        plain_dpm = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas,
                                   sampler_name="dpm_adaptive")
        runs = [model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="dpm_adaptive",
                               dpm_adaptive=settings, eta=eta).to_list()
                for settings, eta in ((kiln.DPMAdaptive(), 0.0), (kiln.DPMAdaptive(order=2), 0.0),
                                      (kiln.DPMAdaptive(), 0.5))]
        self.assertEqual(runs[0], plain_dpm.to_list())
        self.assertGreater(rel_l2(runs[1], runs[0]), 1e-5)
        self.assertGreater(rel_l2(runs[2], runs[0]), 1e-5)
        # SamplerEulerCFGpp's alternative version steps otherwise than euler_cfg_pp, and is euler_cfg_pp's alone
        regular = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, sampler_name="euler_cfg_pp")
        alternative = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas,
                                     sampler_name="euler_cfg_pp", euler_cfg_pp_alternative=True)
        self.assertGreater(rel_l2(alternative.to_list(), regular.to_list()), 1e-4)
        with self.assertRaises(kiln.KilnError) as caught:
            model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas, euler_cfg_pp_alternative=True)
        self.assertIn("not euler's", caught.exception.message)
        # SamplerEulerAncestral's eta 0: euler's run
        ancestral = model.ksampler(positive, negative, empty, seed=7, cfg=5.0, sigmas=sigmas,
                                   sampler_name="euler_ancestral", eta=0.0)
        self.assertEqual(ancestral.to_list(), whole.to_list())
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.karras_scheduler(10, rho=0.0)
        self.assertIn("KarrasScheduler: rho 0", caught.exception.message)

    def test_sdxl_numbers(self):
        xl = kiln.load_checkpoint(backend, data("sdxl/tiny_sdxl.safetensors"))
        positive, negative = xl.encode("a red circle"), xl.encode("")
        empty = xl.empty_latent(16, 16)

        def run(sdxl):
            return xl.ksampler(positive, negative, empty, seed=2, steps=3, cfg=4.0, sdxl=sdxl).to_list()

        plain = run(None)
        w, h = 8 * empty.width, 8 * empty.height  # ComfyUI's sizes without CLIPTextEncodeSDXL
        self.assertEqual(run(kiln.SdxlCond(w, h, 0, 0, w, h)), plain)
        self.assertGreater(rel_l2(run(kiln.SdxlCond(40, 56, 3, 5, 48, 72)), plain), 1e-3)
        # the negative prompt's own numbers: the same as sdxl's is sdxl's run, others another run
        other = kiln.SdxlCond(40, 56, 3, 5, 48, 72)
        self.assertEqual(xl.ksampler(positive, negative, empty, seed=2, steps=3, cfg=4.0, sdxl=other,
                                     negative_sdxl=other).to_list(), run(other))
        low = xl.ksampler(positive, negative, empty, seed=2, steps=3, cfg=4.0, negative_sdxl=kiln.SdxlCond(8, 8, 0, 0, 8, 8))
        self.assertGreater(rel_l2(low.to_list(), plain), 1e-3)

    def test_sdxl_text_l(self):
        """encode_sdxl: one text in both towers is encode's; CLIP-L's own
        text changes CLIP-L's channels alone (the first 32 of the tiny
        model's 64); a model without SDXL's towers refuses it."""
        xl = kiln.load_checkpoint(backend, data("sdxl/tiny_sdxl.safetensors"))
        same, apart = xl.encode_sdxl("a red circle", "a red circle"), xl.encode_sdxl("a red circle", "a green square")
        plain = xl.encode("a red circle")
        self.assertEqual(same.to_list(), plain.to_list())
        a, p, d = apart.to_list(), plain.to_list(), plain.dim
        self.assertEqual((apart.tokens, apart.dim), (plain.tokens, 64))
        rows = range(plain.tokens)
        self.assertEqual([a[t * d + 32:(t + 1) * d] for t in rows], [p[t * d + 32:(t + 1) * d] for t in rows])
        self.assertNotEqual([a[t * d:t * d + 32] for t in rows], [p[t * d:t * d + 32] for t in rows])
        with self.assertRaises(kiln.KilnError) as caught:
            model.encode_sdxl("a", "b")
        self.assertIn("text_g and text_l are for SDXL's two text towers", str(caught.exception))

    def test_step_cache(self):
        """EasyCache through the bindings on the tiny Chroma (its prompts
        apart) against make_step_cache_data.py's restated ComfyUI run, with
        the steps it skipped."""
        chroma = kiln.load_checkpoint(backend, data("chroma/tiny"))
        _, tensors = read_safetensors(data("step_cache/step_cache.safetensors"))
        out = chroma.ksampler(chroma.encode("a photograph of an astronaut riding a horse"), chroma.encode(""),
                              chroma.empty_latent(12, 16), seed=42, steps=10, cfg=2.0, scheduler="simple",
                              step_cache=kiln.EasyCache(1.0, 0.0, 1.0))
        self.assertLessEqual(rel_l2(out.to_list(), tensors["chroma.easy.latent_out"][1]), 1e-4)
        self.assertEqual(out.steps_skipped, int(sum(tensors["chroma.easy.skipped"][1])))
        self.assertGreater(out.steps_skipped, 0)
        with self.assertRaises(kiln.KilnError) as caught:
            chroma.ksampler(chroma.encode("a"), chroma.encode(""), chroma.empty_latent(12, 16), steps=2,
                            step_cache=kiln.LazyCache(5.0))
        self.assertIn("reuse_threshold 5", str(caught.exception))
        # FreSca: a filter other than the identity changes the run; low = high = 1 leaves it within rounding
        plain = chroma.ksampler(chroma.encode("a"), chroma.encode(""), chroma.empty_latent(12, 16), seed=3, steps=3,
                                cfg=2.0)
        same = chroma.ksampler(chroma.encode("a"), chroma.encode(""), chroma.empty_latent(12, 16), seed=3, steps=3,
                               cfg=2.0, fresca=kiln.FreSca(1.0, 1.0, 2))
        other = chroma.ksampler(chroma.encode("a"), chroma.encode(""), chroma.empty_latent(12, 16), seed=3, steps=3,
                                cfg=2.0, fresca=kiln.FreSca(0.5, 1.5, 2))
        self.assertLessEqual(rel_l2(same.to_list(), plain.to_list()), 1e-6)
        self.assertGreater(rel_l2(other.to_list(), plain.to_list()), 1e-3)

    def test_chroma(self):
        """A Chroma folder through the bindings: T5 alone (no pooled
        output), ksampler's run and its FluxGuidance against
        make_chroma_data.py's restated ComfyUI runs."""
        chroma = kiln.load_checkpoint(backend, data("chroma/tiny"))
        self.assertEqual(chroma.family, "chroma")
        positive = chroma.encode("a photograph of an astronaut riding a horse")
        negative = chroma.encode("")
        _, tensors = read_safetensors(data("chroma/run.golden.safetensors"))
        for key, guidance in (("run.latent_out", 0.0), ("guided.latent_out", 4.0)):
            out = chroma.ksampler(positive, negative, chroma.empty_latent(12, 16), seed=42, steps=4, cfg=2.0,
                                  scheduler="simple", flux_guidance=guidance)
            self.assertLessEqual(rel_l2(out.to_list(), tensors[key][1]), 1e-4)
        chroma.set_t5_tokenizer_options(min_padding=1, min_length=0)  # T5TokenizerOptions: a pad after EOS
        padded = chroma.encode("")
        self.assertEqual(padded.tokens, negative.tokens + 1)
        out = chroma.ksampler(chroma.encode("a photograph of an astronaut riding a horse"), padded,
                              chroma.empty_latent(12, 16), seed=42, steps=4, cfg=2.0, scheduler="simple")
        self.assertLessEqual(rel_l2(out.to_list(), tensors["padded.latent_out"][1]), 1e-4)
        chroma.set_t5_tokenizer_options(-1, -1)
        self.assertEqual(chroma.encode("").tokens, negative.tokens)
        with self.assertRaises(kiln.KilnError) as caught:
            chroma.encode_flux("a", "b")
        self.assertIn("no Flux model", str(caught.exception))

    def test_flux_fill(self):
        """FLUX.1 Fill's shape through the bindings: vae_encode_for_inpaint's
        latent carries the grey picture's latent to ksampler, whose run is
        make_flux_fill_data.py's restated ComfyUI run, with and without
        DifferentialDiffusion."""
        fill = kiln.load_checkpoint(backend, data("flux/fill"))
        latent = fill.vae_encode_for_inpaint(kiln.Image.load(data("flux/fill/picture_16x16.png")),
                                             kiln.Image.load(data("flux/fill/mask_16x16.png")))
        positive = fill.encode("a photograph of an astronaut riding a horse")
        negative = fill.encode("")
        _, tensors = read_safetensors(data("flux/fill/golden.safetensors"))
        for key, strength in (("run.latent_out", 0.0), ("differential.latent_out", 1.0)):
            out = fill.ksampler(positive, negative, latent, seed=42, steps=4, cfg=2.0, scheduler="simple",
                                flux_guidance=3.5, differential_diffusion=strength)
            self.assertLessEqual(rel_l2(out.to_list(), tensors[key][1]), 1e-4)

    def test_flux_controlnets(self):
        """Two Flux ControlNets chained through the bindings (InstantX's kind
        with a union type by its ComfyUI name, XLabs' for the first 40 %):
        make_flux_controlnet_data.py's restated ComfyUI run; an inpainting
        one's mask reaches the sampler."""
        flux = kiln.load_checkpoint(backend, data("flux/controlnet"))
        positive = flux.encode("a photograph of an astronaut riding a horse")
        negative = flux.encode("")
        _, tensors = read_safetensors(data("flux/controlnet/golden.safetensors"))
        with flux.load_controlnet(data("flux/controlnet/instantx")) as instantx, \
                flux.load_controlnet(data("flux/controlnet/xlabs.safetensors")) as xlabs:
            chain = [kiln.ControlApply(instantx, kiln.Image.load(data("flux/controlnet/latent_hint_16x12.png")), 0.8,
                                       union_type="hed/pidi/scribble/ted"),
                     kiln.ControlApply(xlabs, kiln.Image.load(data("flux/controlnet/pixel_hint_64x48.png")), 0.6,
                                       end_percent=0.4)]
            out = flux.ksampler(positive, negative, flux.empty_latent(12, 16), seed=42, steps=4, cfg=2.0,
                                scheduler="simple", flux_guidance=3.5, control=chain)
            self.assertLessEqual(rel_l2(out.to_list(), tensors["run.latent_out"][1]), 1e-4)
            chain[0] = chain[0]._replace(union_type=2)
            self.assertEqual(flux.ksampler(positive, negative, flux.empty_latent(12, 16), seed=42, steps=4, cfg=2.0,
                                           scheduler="simple", flux_guidance=3.5, control=chain).to_list(),
                             out.to_list())
        # an inpainting ControlNet of Alimama's kind with and without its mask (test_flux_controlnet checks the
        # hint and residuals against upstream); a mask on another kind is refused
        picture = kiln.Image.load(data("flux/controlnet/latent_hint_16x12.png"))
        mask = kiln.Image.load(data("flux/controlnet/mask_16x12.png"))
        with flux.load_controlnet(data("flux/controlnet/alimama")) as alimama, \
                flux.load_controlnet(data("flux/controlnet/instantx")) as instantx:
            def run(control):
                return flux.ksampler(positive, negative, flux.empty_latent(12, 16), seed=42, steps=2, cfg=2.0,
                                     scheduler="simple", control=control).to_list()
            masked = run(kiln.ControlApply(alimama, picture, mask=mask))
            self.assertGreater(rel_l2(masked, run(kiln.ControlApply(alimama, picture))), 1e-4)
            with self.assertRaises(kiln.KilnError):
                run(kiln.ControlApply(instantx, picture, mask=mask))

    def test_flux_redux(self):
        """FLUX.1 Redux through the bindings: StyleModelApply at 0.8 on the
        tiny Flux model's prompt, make_redux_data.py's conditioning."""
        flux = kiln.load_checkpoint(backend, data("flux/tiny"))
        _, tensors = read_safetensors(data("redux/golden.safetensors"))
        with flux.load_style_model(data("redux/redux_tiny.safetensors")) as redux, \
                kiln.load_clip_vision(backend, data("redux/siglip_tiny.safetensors")) as siglip:
            styled = redux.apply(flux.encode("a red fox"), siglip, kiln.Image.load(data("ip_adapter/picture_251x233.png")),
                                 0.8)
            self.assertEqual((styled.tokens, styled.dim), (272, 64))
            self.assertLessEqual(rel_l2(styled.to_list(), tensors["styled"][1]), 1e-4)
            with self.assertRaises(ValueError):
                redux.apply(styled, siglip, kiln.Image.load(data("ip_adapter/picture_251x233.png")), crop="middle")

    def test_flux_kontext(self):
        """Reference latents (ReferenceLatent, FLUX.1 Kontext) reach the
        sampler from the bindings: on the positive prompt they change the
        run, a one-item list is the latent itself, and on the negative
        prompt too they change it again, and their placement method is
        passed (test_flux checks the numbers against upstream)."""
        flux = kiln.load_checkpoint(backend, data("flux/tiny"))
        reference = flux.vae_encode(kiln.Image.load(data("flux/fill/picture_16x16.png")))
        positive, negative = flux.encode("a red fox"), flux.encode("")

        def run(**kw):
            return flux.ksampler(positive, negative, flux.empty_latent(16, 16), seed=3, steps=2, cfg=2.0,
                                 scheduler="simple", **kw).to_list()
        plain, referenced = run(), run(reference=reference)
        self.assertGreater(rel_l2(referenced, plain), 1e-4)
        self.assertEqual(run(reference=[reference]), referenced)
        self.assertGreater(rel_l2(run(reference=reference, negative_reference=reference), referenced), 1e-4)
        # one reference sits where "offset" puts it under "index" too; "uxo/uno" moves it past the latent
        self.assertEqual(run(reference=reference, reference_method="index"), referenced)
        self.assertGreater(rel_l2(run(reference=reference, reference_method="uxo/uno"), referenced), 1e-4)
        with self.assertRaises(kiln.KilnError):
            run(reference=reference, reference_method="diagonal")
        scaled = kiln.Image.load(data("controlnet/hint_37x23.png")).flux_kontext_scale()
        self.assertEqual((scaled.width, scaled.height), (1328, 800))  # the preferred size nearest 37:23
        # ImageScale with Pillow's LANCZOS: ComfyUI's picture to the byte (tests/data/resample, made with Pillow)
        lanczos = kiln.Image.load(data("controlnet/hint_37x23.png")).scale(20, 12, "lanczos")
        _, golden = read_safetensors(data("resample/image_scale.golden.safetensors"))
        shape, want = golden["lanczos.20x12.disabled"]
        self.assertEqual((lanczos.height, lanczos.width, 3), tuple(shape))
        self.assertEqual(lanczos.pixels, bytes(want))

    def test_pixart(self):
        """A PixArt folder through the same calls: T5 prompts, the DiT's
        KSampler run of tests/data/pixart (made with diffusers)."""
        pixart = kiln.load_checkpoint(backend, data("pixart/tiny"))
        self.assertEqual(pixart.family, "pixart")
        positive, negative = pixart.encode("a red fox in the snow, 1024 pixels"), pixart.encode("")
        self.assertEqual((negative.tokens, negative.dim), (1, 64))
        _, tensors = read_safetensors(data("pixart/golden.safetensors"))
        want_shape, want = tensors["run.latent_out"]
        empty = pixart.empty_latent(20, 24)  # the tiny VAE halves a side
        self.assertEqual(empty.shape, want_shape)
        out = pixart.ksampler(positive, negative, empty, seed=42, steps=5, cfg=4.5, sampler_name="euler",
                              scheduler="normal")
        self.assertLessEqual(rel_l2(out.to_list(), want), RUN_TOL)
        # CLIPTextEncodePixArtAlpha's size: the picture's own is the plain run to the bit, another another run
        def sized(**kwargs):
            return pixart.ksampler(positive, negative, empty, seed=42, steps=5, cfg=4.5, sampler_name="euler",
                                   scheduler="normal", **kwargs).to_list()
        self.assertEqual(sized(pixart_size=(20, 24), negative_pixart_size=(20, 24)), out.to_list())
        self.assertGreater(rel_l2(sized(pixart_size=(1024, 768)), out.to_list()), 1e-4)
        with self.assertRaises(kiln.KilnError):
            pixart.encode("x", 2)

    def test_flux_guidance(self):
        """A Flux folder's run: FluxGuidance's default spelled out is the
        plain run to the bit, another guidance another run."""
        flux = kiln.load_checkpoint(backend, data("flux/tiny"))
        self.assertEqual((flux.family, flux.prediction), ("flux", "flow"))
        positive, negative = flux.encode("a red fox"), flux.encode("")
        empty = flux.empty_latent(16, 16)

        def run(**kwargs):
            return flux.ksampler(positive, negative, empty, seed=3, steps=3, cfg=1.0, scheduler="simple",
                                 **kwargs).to_list()

        plain = run()
        self.assertEqual(run(flux_guidance=3.5), plain)
        # ModelSamplingFlux: the dev model's own shift is the plain run, another shift another
        flux.set_flux_shift(1.15)
        self.assertEqual(run(), plain)
        flux.set_flux_shift(3.0)
        self.assertGreater(rel_l2(run(), plain), 1e-3)
        flux.set_flux_shift(0)
        self.assertEqual(run(), plain)
        # CLIPTextEncodeFlux with one text twice is CLIPTextEncode
        encoded = flux.encode_flux("a red fox", "a red fox")
        self.assertEqual(flux.ksampler(encoded, negative, empty, seed=3, steps=3, cfg=1.0,
                                       scheduler="simple").to_list(), plain)
        self.assertGreater(rel_l2(run(flux_guidance=1.5), plain), 1e-3)

    def test_sd3(self):
        """Stability's SD3 file with its text encoders (T5's tokenizer beside
        it): the KSampler run of tests/data/sd3 (ComfyUI's code restated);
        CLIPTextEncodeSD3 with one text thrice is CLIPTextEncode; a prompt
        in parts;
        ModelSamplingSD3's own shift is the plain run."""
        sd3 = kiln.load_checkpoint(backend, data("sd3/single/sd3.5-tiny.safetensors"),
                                   tokenizer=data("spm_tokenizer/spiece.model"))
        self.assertEqual((sd3.family, sd3.prediction), ("sd3", "flow"))
        prompt = "a photograph of an astronaut riding a horse"
        positive, negative = sd3.encode(prompt), sd3.encode("")
        self.assertEqual((positive.tokens, positive.dim), (154, 96))
        _, tensors = read_safetensors(data("sd3/run.golden.safetensors"))
        want_shape, want = tensors["run.latent_out"]
        empty = sd3.empty_latent(12, 16)  # the tiny VAE halves a side
        self.assertEqual(empty.shape, want_shape)

        def run(pos=positive):
            return sd3.ksampler(pos, negative, empty, seed=42, steps=4, cfg=2.0, sampler_name="euler",
                                scheduler="simple").to_list()

        plain = run()
        self.assertLessEqual(rel_l2(plain, want), RUN_TOL)
        self.assertEqual(run(sd3.encode_sd3(prompt, prompt, prompt)), plain)
        sd3.set_flux_shift(3.0)
        self.assertEqual(run(), plain)
        sd3.set_flux_shift(6.0)
        self.assertGreater(rel_l2(run(), plain), 1e-3)
        sd3.set_flux_shift(0)
        with self.assertRaises(kiln.KilnError):
            sd3.encode_flux("x", "x")
        # the negative prompt in two parts meeting at a step's sigma (0.75), both itself: the plain run to the bit
        # (that step averages two equal predictions); parts with a step none holds are refused
        halves = [(negative, 0.0, 0.5), (negative, 0.5, 1.0)]
        self.assertEqual(sd3.ksampler(positive, halves, empty, seed=42, steps=4, cfg=2.0, sampler_name="euler",
                                      scheduler="simple").to_list(), plain)
        with self.assertRaises(kiln.KilnError):
            sd3.ksampler([(positive, 0.2, 1.0)], negative, empty, seed=42, steps=4, cfg=2.0, scheduler="simple")
        # SD3's example workflows' negative prompt: "" for the first 10 %, then zeroed: the restated run's latent
        zeroed = negative.zero_out()
        self.assertEqual((zeroed.tokens, zeroed.dim, zeroed.pooled_dim),
                         (negative.tokens, negative.dim, negative.pooled_dim))
        self.assertFalse(any(zeroed.to_list()))
        _, parts = read_safetensors(data("sd3/prompt_parts.golden.safetensors"))
        example = sd3.ksampler(positive, [(negative, 0.0, 0.1), (zeroed, 0.1, 1.0)], empty, seed=42, steps=4,
                               cfg=2.0, sampler_name="euler", scheduler="simple")
        self.assertLessEqual(rel_l2(example.to_list(), parts["example.latent_out"][1]), RUN_TOL)
        # SkipLayerGuidanceSD3 on block 1 over the first half: the restated run's latent
        _, slg = read_safetensors(data("sd3/slg.golden.safetensors"))
        guided = sd3.ksampler(positive, negative, empty, seed=42, steps=4, cfg=2.0, sampler_name="euler",
                              scheduler="simple",
                              skip_layer_guidance=kiln.SkipLayerGuidance([1], start_percent=0.0, end_percent=0.5))
        self.assertLessEqual(rel_l2(guided.to_list(), slg["slg.latent_out"][1]), RUN_TOL)
        # SkipLayerGuidanceDiTSimple: the negative pass without the block moves the run, at cfg 1 (no negative
        # pass) it is the plain run to the bit
        runs = [sd3.ksampler(positive, negative, empty, seed=42, steps=4, cfg=cfg, sampler_name="euler",
                             scheduler="simple",
                             skip_layer_guidance=kiln.SkipLayerGuidance([1], start_percent=0.0, end_percent=0.5,
                                                                        uncond_only=True) if simple else None)
                for cfg, simple in ((2.0, True), (2.0, False), (1.0, True), (1.0, False))]
        self.assertGreater(rel_l2(runs[0].to_list(), runs[1].to_list()), 0.01)
        self.assertGreater(rel_l2(runs[0].to_list(), guided.to_list()), 0.01)
        self.assertEqual(runs[2].to_list(), runs[3].to_list())

    def test_flux_single_files(self):
        """BFL's transformer file with separate CLIP-L, T5 and VAE files (and
        the folder's config and tokenizer) is the folder's model: the same
        latent to the bit."""
        def latent(model):
            positive, negative = model.encode("a red fox"), model.encode("")
            return model.ksampler(positive, negative, model.empty_latent(16, 16), seed=3, steps=2, cfg=1.5,
                                  scheduler="simple").to_list()

        single = kiln.load_checkpoint(
            backend, data("flux/single/flux1-tiny.safetensors"), vae=data("flux/tiny/vae/diffusion_pytorch_model.safetensors"),
            text_encoders=(data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"),
                           data("pixart/tiny/text_encoder/model.safetensors")),
            config=data("flux/tiny"))
        self.assertEqual(latent(single), latent(kiln.load_checkpoint(backend, data("flux/tiny"))))
        with self.assertRaises(kiln.KilnError) as e:
            kiln.load_checkpoint(backend, data("flux/single/flux1-tiny.safetensors"))
        self.assertIn("--text-encoder", str(e.exception))
        # GGUF files the same way (test_gguf checks them against upstream): ComfyUI-GGUF's Flux with llama.cpp's
        # T5, whose tokenizer it carries, and its SD UNet alone with CLIP and VAE files
        flux = kiln.load_checkpoint(
            backend, data("gguf/flux1-tiny-Q8_0.gguf"), vae=data("flux/tiny/vae/diffusion_pytorch_model.safetensors"),
            text_encoders=(data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"),
                           data("gguf/t5-tiny-Q8_0.gguf")),
            config=data("flux"))
        self.assertEqual(flux.family, "flux")
        self.assertEqual(len(latent(flux)), len(latent(single)))
        sd = kiln.load_checkpoint(
            backend, data("gguf/sd15-tiny-unet-F16.gguf"),
            vae=data("tiny/sd15_tiny_diffusers/vae/diffusion_pytorch_model.safetensors"),
            text_encoders=(data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"),))
        self.assertEqual(sd.family, "sd1")
        # UNETLoader's weight_dtype: the linear weights converted at load (test_gguf checks them against
        # diffusers) give another latent of the same size; a dtype kiln does not make is refused by name
        q8 = kiln.load_checkpoint(
            backend, data("flux/single/flux1-tiny.safetensors"), vae=data("flux/tiny/vae/diffusion_pytorch_model.safetensors"),
            text_encoders=(data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"),
                           data("pixart/tiny/text_encoder/model.safetensors")),
            config=data("flux/tiny"), weight_dtype="q8_0")
        converted = latent(q8)
        self.assertEqual(len(converted), len(latent(single)))
        self.assertNotEqual(converted, latent(single))
        with self.assertRaises(kiln.KilnError) as e:
            kiln.load_checkpoint(backend, data("gguf/sd15-tiny-unet-F16.gguf"),
                                 text_encoders=(data("tiny/sd15_tiny_diffusers/text_encoder/model.safetensors"),),
                                 weight_dtype="int4")
        self.assertIn("weight_dtype 'int4'", str(e.exception))

    def test_latent_upscale_by(self):
        latent = small_run(steps=1)
        doubled = latent.upscale_by(2.0)
        self.assertEqual(doubled.shape, (1, latent.channels, 2 * latent.height, 2 * latent.width))
        values, up = latent.to_list(), doubled.to_list()
        h, w = latent.height, latent.width
        for c in range(latent.channels):
            for y in range(2 * h):
                for x in range(2 * w):
                    self.assertEqual(up[(c * 2 * h + y) * 2 * w + x], values[(c * h + y // 2) * w + x // 2])
        with self.assertRaises(kiln.KilnError) as caught:
            latent.upscale_by(2.0, "lanczos")
        self.assertIn("lanczos", caught.exception.message)
        # LatentUpscale to twice the sides in pixels as ComfyUI counts them (8 a latent pixel) is the same
        self.assertGreaterEqual(min(16 * w, 16 * h), 64)
        self.assertEqual(latent.upscale(16 * w, 16 * h).to_list(), up)


class Workflows(unittest.TestCase):
    """run_workflow: a recorded ComfyUI run's graph gives ComfyUI's pixels."""

    def test_comfyui_graph(self):
        meta, tensors = read_safetensors(data("comfyui_e2e/txt2img_euler_normal_s8.safetensors"))
        (batch, height, width, _), pixels = tensors["image_uint8"]
        graph = {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_tiny_ldm_fp32.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": meta["positive_prompt"], "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": meta["negative_prompt"], "clip": ["4", 1]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": int(meta["seed"]), "steps": int(meta["steps"]), "cfg": float(meta["cfg"]),
                "sampler_name": meta["sampler_name"], "scheduler": meta["scheduler"],
                "denoise": float(meta["denoise"]), "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        }
        steps = []
        images = kiln.run_workflow(backend, graph, model_dirs=[data("tiny")],
                                   progress=lambda step, total: steps.append(step))
        self.assertEqual(steps, list(range(int(meta["steps"]))))
        self.assertEqual(len(images), batch)
        got = b"".join(image.pixels for image in images)
        self.assertEqual(len(got), len(pixels))
        self.assertLessEqual(max(abs(a - b) for a, b in zip(got, pixels)), 1)

    def test_checkpoint_save(self):
        # CheckpointSave alone: no pictures, the file named to `files`; without output_dir refused
        graph = {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_tiny_ldm_fp32.safetensors"}},
            "50": {"class_type": "CheckpointSave", "inputs": {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2],
                                                              "filename_prefix": "checkpoints/saved"}},
        }
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            images = kiln.run_workflow(backend, graph, model_dirs=[data("tiny")], output_dir=tmp, files=files)
            self.assertEqual(images, [])
            self.assertEqual(files, [os.path.join(tmp, "checkpoints", "saved_00001_.safetensors")])
            self.assertTrue(os.path.exists(files[0]))
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.run_workflow(backend, graph, model_dirs=[data("tiny")])
        self.assertIn("no folder to write the checkpoint in", caught.exception.message)

    def test_unknown_node(self):
        graph = {"9": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}},
                 "5": {"class_type": "UltimateSDUpscale", "inputs": {}}}
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.run_workflow(backend, json.dumps(graph))
        self.assertEqual(caught.exception.status, "KILN_ERR_UNSUPPORTED")
        self.assertIn("node 5 (UltimateSDUpscale)", caught.exception.message)


class Inpainting(unittest.TestCase):
    """VAEEncode + SetLatentNoiseMask (the tiny model is no inpainting
    model) and ImagePadForOutpaint against what diffusers computes in
    ComfyUI's steps; RepeatLatentBatch."""

    @classmethod
    def setUpClass(cls):
        _, cls.golden = read_safetensors(data("inpaint/golden.safetensors"))
        cls.image = kiln.Image.load(data("inpaint/image_20x17.png"))

    def check(self, latent: kiln.Latent, key: str):
        want_shape, want = self.golden[f"{key}.latent"]
        mask_shape, want_mask = self.golden[f"{key}.noise_mask"]
        self.assertEqual(latent.shape, want_shape)
        self.assertLessEqual(rel_l2(latent.to_list(), want), RUN_TOL)
        self.assertEqual(latent.mask_shape, mask_shape[2:])
        self.assertEqual(latent.noise_mask_to_list(), want_mask)

    def test_inpaint(self):
        mask = kiln.Image.load(data("inpaint/mask_20x17.png"))
        latent = model.vae_encode_for_inpaint(self.image, mask)
        self.check(latent, "noise_mask")
        repeated = latent.repeat(3)
        self.assertEqual(repeated.shape, (3,) + latent.shape[1:])
        self.assertEqual(repeated.to_list(), latent.to_list() * 3)
        self.assertEqual(repeated.noise_mask_to_list(), latent.noise_mask_to_list())
        out = model.ksampler(model.encode("a red circle"), model.encode(""), repeated, seed=3, steps=2)
        self.assertEqual((out.shape, out.mask_shape), (repeated.shape, None))
        # LatentFromBatch: the last two, with their places in the batch, and the noise they had there
        picked = repeated.from_batch(1, 5)
        self.assertEqual((picked.shape[0], picked.batch_index, repeated.batch_index), (2, [1, 2], None))
        again = model.ksampler(model.encode("a red circle"), model.encode(""), picked, seed=3, steps=2)
        image = len(out.to_list()) // 3
        self.assertEqual(again.to_list(), out.to_list()[image:])

    def test_outpaint(self):
        self.check(model.vae_encode_for_outpaint(self.image, left=6, top=0, right=3, bottom=5, feathering=4),
                   "outpaint.noise_mask")


class Masks(unittest.TestCase):
    """The mask nodes through Mask against the same steps here in float32
    (test_mask_ops checks the library against ComfyUI's code); a Mask where
    a mask Image was taken gives the same run."""

    def test_mask_nodes(self):
        picture = kiln.Image.load(data("inpaint/mask_20x17.png"))
        w, h = picture.width, picture.height
        green = [f32(v / 255.0) for v in picture.pixels[1::3]]
        mask = kiln.Mask.load(data("inpaint/mask_20x17.png"), "green")
        self.assertEqual((mask.width, mask.height, mask.weights), (w, h, green))
        self.assertEqual(kiln.Mask.from_image(picture, "green").weights, green)
        self.assertEqual(mask.invert().weights, [f32(1.0 - v) for v in green])
        self.assertEqual(mask.threshold(0.5).weights, [float(v > 0.5) for v in green])
        self.assertEqual(mask.crop(3, 2, 100, 4).weights, [green[y * w + x] for y in range(2, 6) for x in range(3, w)])
        solid = kiln.Mask.solid(0.75, 6, 5)
        added = solid.composite(mask, 2, 1, "add").weights
        self.assertEqual(added, [min(1.0, f32(0.75 + green[(y - 1) * w + x - 2])) if y >= 1 and x >= 2 else 0.75
                                 for y in range(5) for x in range(6)])
        grown = [max(green[yy * w + xx] for yy, xx in ((y, x), (y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))
                     if 0 <= yy < h and 0 <= xx < w) for y in range(h) for x in range(w)]
        self.assertEqual(mask.grow(1).weights, grown)
        feathered = list(green)
        for x in range(w):  # left 2: the first two columns by 1/2 and 2/2
            for y in range(h):
                if x < 2:
                    feathered[y * w + x] = f32(feathered[y * w + x] * f32((x + 1.0) / 2))
        self.assertEqual(mask.feather(left=2).weights, feathered)
        gray = mask.to_image()
        self.assertEqual(gray.pixels, bytes(int(min(max(255.0 * v, 0), 255)) for v in green for _ in range(3)))
        # ImageCompositeMasked with a solid 1 (the source pasted as it is) and 0 (the destination kept)
        small = kiln.Image.load(data("masks/rgba.png"))
        pasted = picture.composite_masked(small, 2, 3, mask=kiln.Mask.solid(1.0, small.width, small.height)).pixels
        row = lambda image, y, x, n: image.pixels[3 * (y * image.width + x):3 * (y * image.width + x + n)]
        self.assertEqual(pasted[3 * (4 * w + 2):3 * (4 * w + 2 + small.width)], row(small, 1, 0, small.width))
        self.assertEqual(picture.composite_masked(small, 2, 3, mask=kiln.Mask.solid(0.0, 6, 5)).pixels, picture.pixels)
        image, alpha = kiln.Image.load_with_mask(data("inpaint/mask_20x17.png"))
        self.assertEqual((image.pixels, alpha.width, alpha.height, alpha.weights), (picture.pixels, 64, 64, [0.0] * 4096))
        with self.assertRaises(kiln.KilnError) as caught:
            kiln.Mask.load(data("inpaint/mask_20x17.png"), "cyan")
        self.assertIn("channel 'cyan'", caught.exception.message)

    def test_mask_in_place_of_image(self):
        picture = kiln.Image.load(data("inpaint/mask_20x17.png"))
        mask = kiln.Mask.load(data("inpaint/mask_20x17.png"))
        image = kiln.Image.load(data("inpaint/image_20x17.png"))
        self.assertEqual(model.vae_encode_for_inpaint(image, mask).noise_mask_to_list(),
                         model.vae_encode_for_inpaint(image, picture).noise_mask_to_list())
        with self.assertRaises(kiln.KilnError) as caught:
            model.vae_encode_for_inpaint(image, mask, grow_mask_by=65)
        self.assertIn("grow_mask_by 65", caught.exception.message)
        red, blue, empty = model.encode("a red circle"), model.encode("a blue square"), model.encode("")
        latent = model.empty_latent(16, 16)
        runs = [model.ksampler([(red, 0.0, 1.0, m, 0.8), (blue, 0.0, 1.0)], empty, latent, seed=3, steps=2).to_list()
                for m in (picture, mask)]
        self.assertEqual(runs[0], runs[1])


class Upscale(unittest.TestCase):
    """ImageUpscaleWithModel on a tiny random ESRGAN x4, against spandrel's
    output for the same picture (the golden's pixels are floats in [0, 1];
    rounding them to kiln's 8 bits moves the output by a level, rarely 2)."""

    @staticmethod
    def to_rgb_bytes(shape, unit):
        """A (1, 3, H, W) float picture in [0, 1] as RGB bytes, row by row."""
        _, _, height, width = shape
        plane = height * width
        return bytes(round(unit[c * plane + i] * 255) for i in range(plane) for c in range(3))

    def test_upscale(self):
        _, golden = read_safetensors(data("upscale/golden.safetensors"))
        (_, _, height, width), (_, _, up_h, up_w) = golden["image"][0], golden["whole"][0]
        picture = kiln.Image.from_rgb(width, height, self.to_rgb_bytes(*golden["image"]))
        with kiln.load_upscale_model(backend, data("upscale/rrdb_esrgan.safetensors")) as upscaler:
            image = upscaler.upscale(picture)
        self.assertEqual((image.width, image.height), (up_w, up_h))
        self.assertLessEqual(max_level_diff(image.pixels, self.to_rgb_bytes(*golden["whole"])), 2)


class Basics(unittest.TestCase):
    def test_version_backend_model(self):
        self.assertRegex(kiln.version(), r"^\d+\.\d+\.\d+$")
        self.assertIn("CPU", backend.device_name)
        self.assertEqual(model.family, "sd1")
        self.assertEqual(model.native_size, (512, 512))
        self.assertEqual(model.variant, "txt2img")
        self.assertEqual(model.prediction, "eps")

    def test_set_prediction(self):
        # ModelSamplingDiscrete: v_prediction changes the run, eps brings it back to the bit
        plain = small_run(steps=2).to_list()
        model.set_prediction("v_prediction")
        try:
            self.assertEqual(model.prediction, "v")
            self.assertGreater(rel_l2(small_run(steps=2).to_list(), plain), 1e-3)
        finally:
            model.set_prediction("eps")
        self.assertEqual(small_run(steps=2).to_list(), plain)
        with self.assertRaises(kiln.KilnError) as caught:
            model.set_prediction("x1")
        self.assertIn("'x1'", caught.exception.message)

    def test_embedded_model(self):
        try:
            embedded = kiln.load_checkpoint(backend, None)
        except kiln.KilnError as e:
            if e.status == "KILN_ERR_UNSUPPORTED":
                self.skipTest(f"this libkiln has no embedded default model ({e.message})")
            raise
        with embedded:
            self.assertEqual(embedded.family, "sd1")
            latent = embedded.ksampler(embedded.encode("a red circle"), embedded.encode(""),
                                       embedded.empty_latent(64, 64), seed=1, steps=2)
            images = embedded.vae_decode(latent)
        self.assertEqual([(image.width, image.height) for image in images], [(64, 64)])
        self.assertEqual(len(images[0].pixels), 64 * 64 * 3)

    def test_closing_order(self):
        """Closing a backend closes what was loaded on it first; a closed
        handle is refused in Python, before C sees it."""
        with kiln.Backend("cpu", threads=1) as own:
            own_model = kiln.load_checkpoint(own, data("tiny/sd15_tiny_ldm_fp32.safetensors"))
            controlnet = own_model.load_controlnet(data("controlnet/tiny_ldm.safetensors"))
        self.assertTrue(own_model.closed and controlnet.closed)
        with self.assertRaises(ValueError):
            own_model.encode("x")

    def test_collected_in_any_order(self):
        """Handles left in a reference cycle are freed by the garbage
        collector, which finalizes them in any order: still what was loaded
        on a backend goes before it."""
        freed = []

        def recording(cls):
            free = cls._free

            def record(handle):
                freed.append(cls.__name__)
                free(handle)
            return unittest.mock.patch.object(cls, "_free", record)

        with recording(kiln.Backend), recording(kiln.Model), recording(kiln.ControlNet):
            cycle = {"backend": kiln.Backend("cpu", threads=1)}
            cycle["model"] = kiln.load_checkpoint(cycle["backend"], data("tiny/sd15_tiny_ldm_fp32.safetensors"))
            cycle["controlnet"] = cycle["model"].load_controlnet(data("controlnet/tiny_ldm.safetensors"))
            cycle["cycle"] = cycle
            del cycle
            gc.collect()
        self.assertEqual(freed, ["ControlNet", "Model", "Backend"])


if __name__ == "__main__":
    unittest.main()
