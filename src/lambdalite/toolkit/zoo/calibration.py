"""Offline calibration images for the int8 zoo models: scikit-image's sample photos, augmented.

No image is downloaded: scikit-image ships these photos in its wheel. They are few, so each is
seen through deterministic augmentations (a seeded generator): random crops of 50-100% of the
side, horizontal flips, and per-channel colour gains of 0.8-1.2, the usual ImageNet-style
variation. Grayscale photos are made RGB, the RGBA logo is composited on white.

Held out entirely from calibration: `chelsea` (the cat) and `coffee`. The accuracy report (and
the tests) use their original views plus augmented ones, so the int8 ranges never saw them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["CALIBRATION_PHOTOS", "HELD_OUT_PHOTOS", "augmented", "calibration_images", "held_out_images", "photo"]

CALIBRATION_PHOTOS = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "logo",
    "camera",
    "coins",
    "clock",
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
)
HELD_OUT_PHOTOS = ("chelsea", "coffee")


def photo(name: str) -> Image.Image:
    """A scikit-image sample photo as an RGB image."""
    from skimage import data

    array = np.asarray(getattr(data, name)())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    img = Image.fromarray(array)
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def augmented(img: Image.Image, n: int, seed: int) -> list[bytes]:
    """`n` deterministic views of `img` (crop, flip, colour gain), encoded as PNG."""
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(n):
        w, h = img.size
        s = rng.uniform(0.5, 1.0)
        cw, ch = max(1, int(w * s)), max(1, int(h * s))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        view = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gains = rng.uniform(0.8, 1.2, 3)
        pixels = np.clip(np.asarray(view, dtype=np.float32) * gains, 0, 255).astype(np.uint8)
        views.append(_png(Image.fromarray(pixels)))
    return views


def calibration_images(per_photo: int = 4) -> list[bytes]:
    """Augmented views of the calibration photos (60 images by default), then 12 of the one other
    natural colour scene scikit-image ships (the stereo motorcycle pair): most of the others are
    grayscale textures, and int8 ranges should see what photos look like."""
    views = [v for i, name in enumerate(CALIBRATION_PHOTOS) for v in augmented(photo(name), per_photo, seed=i)]
    from skimage import data

    for i, side in enumerate(data.stereo_motorcycle()[:2]):  # type: ignore[no-untyped-call]
        views += augmented(Image.fromarray(np.asarray(side)), 6, seed=100 + i)
    return views


def held_out_images(per_photo: int = 4) -> list[tuple[str, bytes]]:
    """The held-out photos, original and augmented, with names for the report."""
    out = []
    for i, name in enumerate(HELD_OUT_PHOTOS):
        img = photo(name)
        out.append((name, _png(img)))
        out += [(f"{name}#{k}", v) for k, v in enumerate(augmented(img, per_photo, seed=1000 + i), 1)]
    return out
