"""Image bytes to model input: decode safely with Pillow, then resize, crop and normalise.

`decode` accepts JPEG, PNG, WebP, GIF (first frame) and BMP; applies the EXIF orientation; makes
grayscale, CMYK, palette and alpha images RGB (alpha composited on white); lets large JPEGs
decode at a reduced scale (`Image.draft`) when much larger than needed; and refuses images over
`max_pixels` before decoding them. Every failure is an `InputError` with a one-line message.

`to_tensor` turns an RGB image into a `(1, C, H, W)` or `(1, H, W, C)` array per `InputSpec`.
"""

from __future__ import annotations

import importlib
import io
import os
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image

from .bundle import InputSpec
from .errors import ImageDecodeError, ImageTooLargeError

__all__ = ["FORMATS", "MAX_PIXELS", "Preprocessor", "decode", "max_pixels", "sniff"]

FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
MAX_PIXELS = 64_000_000  # 8000 x 8000; a 30000 x 30000 PNG (900 MP) is refused unread.
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# EXIF orientation tag -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Pillow's own bomb check raises only at 2x its limit; we check ours first and explicitly.
Image.MAX_IMAGE_PIXELS = None


def max_pixels() -> int:
    value = os.environ.get("LAMBDALITE_MAX_PIXELS", "")
    return int(value) if value.isdigit() else MAX_PIXELS


def decode(data: bytes, *, min_size: tuple[int, int] | None = None, limit: int | None = None) -> Image.Image:
    """Decode image bytes into an RGB image.

    `min_size` (width, height) lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long as the
    result still covers that size.
    """
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)")
    limit = limit or max_pixels()
    img = _open(data)
    if img.format not in FORMATS:
        raise ImageDecodeError(f"unsupported image format {img.format}; send JPEG, PNG, WebP, GIF or BMP")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"{limit / 1e6:.0f} megapixel limit; send a smaller image"
        )
    try:
        orientation = _orientation(img)
        if min_size is not None and img.format in ("JPEG", "MPO"):
            want = min_size
            if orientation in (5, 6, 7, 8):  # rotated 90 degrees: the sides swap
                want = (min_size[1], min_size[0])
            img.draft(None, want)
        img.load()
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        return _to_rgb(img)
    except (ImageDecodeError, ImageTooLargeError):
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
        raise ImageDecodeError(f"corrupt or truncated {img.format} image: {_reason(exc)}") from exc


def sniff(head: bytes) -> tuple[str, str] | None:
    """(Pillow format, plugin module) from the first bytes, so only that plugin is imported."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", "JpegImagePlugin"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "PngImagePlugin"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF", "GifImagePlugin"
    if head.startswith(b"BM"):
        return "BMP", "BmpImagePlugin"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP", "WebPImagePlugin"
    return None


def _open(data: bytes) -> Image.Image:
    sniffed = sniff(data[:16])
    if sniffed is None:
        raise ImageDecodeError(
            f"not an image: {len(data)} bytes that are not JPEG, PNG, WebP, GIF or BMP"
            + (" (looks like text)" if _looks_like_text(data[:512]) else "")
        )
    fmt, plugin = sniffed
    try:
        importlib.import_module(f"PIL.{plugin}")
        factory, _accept = Image.OPEN[fmt]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = factory(io.BytesIO(data), "")
        return img
    except Exception as exc:  # Pillow raises SyntaxError, OSError, struct.error... for bad headers
        raise ImageDecodeError(f"corrupt or truncated {fmt} image: {_reason(exc)}") from exc


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = max(float(arr.max()), 1.0)
        img = Image.fromarray((arr * (255.0 / (65535.0 if peak > 255 else 255.0))).clip(0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class Preprocessor:
    """`InputSpec` compiled once: per-channel multiply-add constants and the crop geometry."""

    __slots__ = ("add", "mul", "spec")

    def __init__(self, spec: InputSpec, mul: npt.NDArray[np.float32], add: npt.NDArray[np.float32]) -> None:
        self.spec = spec
        self.mul = mul
        self.add = add

    @classmethod
    def from_spec(cls, spec: InputSpec) -> Preprocessor:
        mean = np.asarray(spec.mean, np.float32)
        std = np.asarray(spec.std, np.float32)
        # (x * scale - mean) / std  ==  x * (scale / std) + (-mean / std)
        # mean and std are given in the model's channel order, so they apply after any BGR flip.
        mul, add = np.float32(spec.scale) / std, -mean / std
        return cls(spec, mul.astype(np.float32), add.astype(np.float32))

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """The smallest (width, height) a decoded image may have without losing detail.

        None when the spec wants every image decoded at full size (`jpeg_draft` off).
        """
        if not self.spec.jpeg_draft:
            return None
        h, w = self.spec.size
        if self.spec.resize is not None:
            return (self.spec.resize, self.spec.resize)
        return (w, h)

    def resize(self, img: Image.Image) -> Image.Image:
        """Resize the shorter side and crop the centre in one resampling pass."""
        out_h, out_w = self.spec.size
        width, height = img.size
        resample = _RESAMPLE[self.spec.resample]
        if self.spec.resize is None:
            return img.resize((out_w, out_h), resample)
        if self.spec.geometry == "whole-pixel":
            return self._resize_whole_pixels(img, resample)
        scale = self.spec.resize / min(width, height)
        if self.spec.crop == "none":
            return img.resize((max(1, round(width * scale)), max(1, round(height * scale))), resample)
        # The centre (out_w x out_h) window of the resized image, expressed in source pixels.
        new_w, new_h = width * scale, height * scale
        left, top = (new_w - out_w) / 2, (new_h - out_h) / 2
        box = (left / scale, top / scale, (left + out_w) / scale, (top + out_h) / scale)
        return img.resize((out_w, out_h), resample, box=box)

    def _resize_whole_pixels(self, img: Image.Image, resample: Image.Resampling) -> Image.Image:
        """Hugging Face's arithmetic: whole-pixel sides (long side rounded down), crop at whole pixels.

        The whole image is resized, then the crop sliced out: the same pixels, bit for bit, as
        the Hugging Face PIL image processors give. (A box resize of the window alone is about a
        third faster but rounds a few pixels per image one level apart.)
        """
        assert self.spec.resize is not None
        out_h, out_w = self.spec.size
        width, height = img.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.spec.resize * long / short)
        new_w, new_h = (self.spec.resize, new_long) if width <= height else (new_long, self.spec.resize)
        resized = img.resize((new_w, new_h), resample)
        if self.spec.crop == "none":
            return resized
        left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
        return resized.crop((left, top, left + out_w, top + out_h))

    def to_array(self, img: Image.Image) -> npt.NDArray[np.generic]:
        """An RGB image of the input size as one (H, W, C) or (C, H, W) sample."""
        arr = np.asarray(img)
        if self.spec.channel_order == "BGR":
            arr = arr[..., ::-1]
        if self.spec.dtype == "uint8":
            out: npt.NDArray[np.generic] = np.ascontiguousarray(arr)
        elif self.spec.dtype == "int8":
            out = (arr.astype(np.int16) - 128).astype(np.int8)
        else:
            f32 = arr.astype(np.float32)
            f32 *= self.mul
            f32 += self.add
            out = f32
        if self.spec.layout == "NCHW":
            out = out.transpose(2, 0, 1)
        return np.ascontiguousarray(out)

    def __call__(self, data: bytes) -> npt.NDArray[np.generic]:
        """Bytes to one sample (no batch axis)."""
        return self.to_array(self.resize(decode(data, min_size=self.decode_size)))
