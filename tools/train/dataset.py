"""Synthetic shape scenes for kiln-shapes: one flat shape on a flat background, with a caption.

A scene is (shape, colour, background, position, size) plus a small jitter of the centre and radius.
Everything is a function of a seed, so the same seed always gives the same images and captions.
The geometry below is what analyze.py (and kiln's C test) assume; change both together.
"""
import numpy as np

IMAGE_SIZE = 64

# Pure, well separated hues so the analysis can name them from the mean colour of a region.
PALETTE = {
    "red": (220, 30, 30),
    "yellow": (235, 210, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle"]
# Centre (x, y) in pixels of a 64x64 image; the shape's area centroid sits here.
POSITIONS = {
    "top left": (19, 19),
    "top right": (45, 19),
    "bottom left": (19, 45),
    "bottom right": (45, 45),
    "center": (32, 32),
}
SIZES = {"small": 7.0, "large": 13.0}  # radius: circle radius, square half side / 0.9, triangle half base
SUPERSAMPLE = 4  # render at 4x and box-filter down, so edges are anti-aliased like a photo


def sample_scene(rng):
    """Draws one scene (a dict) from numpy Generator rng."""
    colour = COLOURS[rng.integers(len(COLOURS))]
    others = [c for c in COLOURS if c != colour]
    return {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "colour": colour,
        "background": others[rng.integers(len(others))],
        "position": list(POSITIONS)[rng.integers(len(POSITIONS))],
        "size": list(SIZES)[rng.integers(len(SIZES))],
        "jitter": rng.uniform(-2.0, 2.0, size=2).tolist(),
        "radius_jitter": float(rng.uniform(-1.0, 1.0)),
    }


def shape_mask(shape, cx, cy, r, size=IMAGE_SIZE * SUPERSAMPLE, scale=SUPERSAMPLE):
    """Boolean [size, size] mask of the shape whose area centroid is (cx, cy) in 64-px units."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / scale
    x = coords[None, :]
    y = coords[:, None]
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        h = 0.9 * r
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    if shape == "triangle":
        # Upright isosceles, base 2r, height 2r; its centroid lies 2/3 of the height below the apex.
        top = cy - 4.0 * r / 3.0
        bottom = cy + 2.0 * r / 3.0
        half_width = (y - top) / (2.0 * r) * r  # widens linearly from 0 at the apex to r at the base
        return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def render(scene):
    """uint8 [64, 64, 3] image of the scene."""
    cx, cy = POSITIONS[scene["position"]]
    cx += scene["jitter"][0]
    cy += scene["jitter"][1]
    r = SIZES[scene["size"]] + scene["radius_jitter"]
    mask = shape_mask(scene["shape"], cx, cy, r).astype(np.float32)
    n = IMAGE_SIZE
    coverage = mask.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(1, 3))[..., None]
    fg = np.array(PALETTE[scene["colour"]], np.float32)
    bg = np.array(PALETTE[scene["background"]], np.float32)
    return np.round(coverage * fg + (1.0 - coverage) * bg).astype(np.uint8)


def caption(scene, with_size=True, with_position=True):
    """'a small red circle at the top left on a blue background' (size/position optional)."""
    words = ["a"]
    if with_size:
        words.append(scene["size"])
    words += [scene["colour"], scene["shape"]]
    if with_position:
        words.append("in the center" if scene["position"] == "center" else f"at the {scene['position']}")
    words.append(f"on a {scene['background']} background")
    return " ".join(words)


def training_caption(scene, rng, size_drop=0.3, position_drop=0.2):
    """A caption that leaves out the size / position with these probabilities, so short prompts work too."""
    return caption(scene, with_size=rng.random() < 1.0 - size_drop, with_position=rng.random() < 1.0 - position_drop)


def make_examples(seed, count):
    """(images uint8 [count, 64, 64, 3], scenes) deterministically from seed."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(count)]
    images = np.stack([render(s) for s in scenes])
    return images, scenes


def to_tensor_range(images):
    """uint8 NHWC -> float32 NCHW in [-1, 1], the VAE's pixel range."""
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()


if __name__ == "__main__":
    import sys
    from PIL import Image

    images, scenes = make_examples(int(sys.argv[1]) if len(sys.argv) > 1 else 0, 16)
    rows = [np.concatenate(list(images[i * 4:(i + 1) * 4]), axis=1) for i in range(4)]
    Image.fromarray(np.concatenate(rows, axis=0)).save("dataset_preview.png")
    for i, s in enumerate(scenes):
        print(i, caption(s))
