"""Image bytes to model input: decode safely with Pillow, then resize, crop and normalise.

`decode` accepts JPEG, PNG, WebP, GIF (first frame) and BMP; applies the EXIF orientation; makes
grayscale, CMYK, palette and alpha images RGB (alpha composited on white); lets large JPEGs
decode at a reduced scale (`Image.draft`) when much larger than needed; and refuses images over
the limits (`DecodeLimits`) before decoding them: more pixels than allowed, a JPEG with more
scans than allowed (a progressive "scan bomb" costs one pass over every block per scan), or more
bytes of decoded data (for its mode and decode path: `decode_bytes`) than the byte budget.
Every failure is an `InputError` with a one-line message.

`to_tensor` turns an RGB image into a `(1, C, H, W)` or `(1, H, W, C)` array per `InputSpec`.
"""

from __future__ import annotations

import importlib
import io
import re
import threading
import time
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image

from lambdalite.core.bundle import InputSpec
from lambdalite.errors import ImageDecodeError, ImageTooLargeError

__all__ = [
    "CLOCK",
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "FORMATS",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "PhaseClock",
    "Preprocessor",
    "decode",
    "decode_bytes",
    "jpeg_scans",
    "sniff",
]

FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
MAX_PIXELS = 64_000_000  # 8000 x 8000; a 30000 x 30000 PNG (900 MP) is refused unread.
# libjpeg writes 10 scans for a progressive colour JPEG (6 for grey); mozjpeg and jpegli a few more.
MAX_JPEG_SCANS = 32
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


class DecodeLimits:
    """What an image may cost to decode: pixels, JPEG scans, bytes of decoded data.

    From the settings (`LAMBDALITE_MAX_PIXELS`, `LAMBDALITE_MAX_JPEG_SCANS`,
    `LAMBDALITE_MAX_DECODE_BYTES`). `max_bytes` None means no byte budget; a function derives
    one from its memory size once its model is loaded (`model.load_model`), which is why this
    record may be completed after the task that holds it was built. `budget` says where the
    byte budget came from, for the refusal's message."""

    __slots__ = ("budget", "max_bytes", "max_pixels", "max_scans")

    def __init__(
        self,
        max_pixels: int = MAX_PIXELS,
        *,
        max_scans: int = MAX_JPEG_SCANS,
        max_bytes: int | None = None,
        budget: str = "LAMBDALITE_MAX_DECODE_BYTES",
    ) -> None:
        self.max_pixels = max_pixels
        self.max_scans = max_scans
        self.max_bytes = max_bytes
        self.budget = budget

    def __repr__(self) -> str:
        return f"DecodeLimits(max_pixels={self.max_pixels}, max_scans={self.max_scans}, max_bytes={self.max_bytes})"


DEFAULT_LIMITS = DecodeLimits()


class PhaseClock(threading.local):
    """Milliseconds spent decoding and preprocessing images on this thread since the last `take`
    (what a request's log record and metrics report as decodeMs and preprocessMs)."""

    def __init__(self) -> None:
        self.decode_ms = 0.0
        self.preprocess_ms = 0.0

    def take(self) -> tuple[float, float]:
        """(decode ms, preprocess ms) so far, and start again from zero."""
        taken = (self.decode_ms, self.preprocess_ms)
        self.decode_ms = self.preprocess_ms = 0.0
        return taken


CLOCK = PhaseClock()


def decode(
    data: bytes, *, min_size: tuple[int, int] | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> Image.Image:
    """Decode image bytes into an RGB image.

    `min_size` (width, height) lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long as the
    result still covers that size. Every limit is checked from the headers, before decoding.
    """
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)")
    limit = limits.max_pixels
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
    scans = 0
    if img.format in ("JPEG", "MPO"):
        scans = jpeg_scans(data, stop_after=limits.max_scans)
        if scans > limits.max_scans:
            raise ImageDecodeError(
                f"the JPEG has more than {limits.max_scans} scans (a progressive image cut this finely takes "
                "a pass over the whole image per scan: a decompression-time bomb); re-encode it "
                "(LAMBDALITE_MAX_JPEG_SCANS sets the limit)"
            )
    try:
        orientation = _orientation(img)
        if min_size is not None and img.format in ("JPEG", "MPO"):
            want = min_size
            if orientation in (5, 6, 7, 8):  # rotated 90 degrees: the sides swap
                want = (min_size[1], min_size[0])
            img.draft(None, want)
    except Exception as exc:
        raise ImageDecodeError(f"corrupt or truncated {img.format} image: {_reason(exc)}") from exc
    if limits.max_bytes is not None:
        cost = decode_bytes(img, (width, height), scans, orientation in _TRANSPOSE)
        if cost > limits.max_bytes:
            raise ImageTooLargeError(
                f"decoding this {width}x{height} {img.format} image ({_MODE_NAMES.get(img.mode, img.mode)}) "
                f"takes about {_mb(cost)}, over the {_mb(limits.max_bytes)} budget for an image "
                f"({limits.budget}); send a smaller image"
            )
    try:
        img.load()
        if img.format == "PNG" and orientation == 1:  # an eXIf chunk after the pixels is only seen now
            orientation = _orientation(img)
            if orientation in _TRANSPOSE and limits.max_bytes is not None:
                cost = decode_bytes(img, (width, height), scans, True)
                if cost > limits.max_bytes:
                    raise ImageTooLargeError(
                        f"turning this {width}x{height} PNG upright takes about {_mb(cost)}, over the "
                        f"{_mb(limits.max_bytes)} budget for an image ({limits.budget}); send a smaller image"
                    )
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        return _to_rgb(img)
    except (ImageDecodeError, ImageTooLargeError):
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
        raise ImageDecodeError(f"corrupt or truncated {img.format} image: {_reason(exc)}") from exc


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


# Bytes per pixel Pillow keeps for each mode (RGB is stored as 4 bytes, like RGBA).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Peak bytes per pixel of the conversion to RGB (`_to_rgb`), on top of the decoded image.
_TO_RGB = {"RGB": 0, "L": 4, "1": 4, "P": 4, "CMYK": 4, "YCbCr": 4, "LAB": 4, "HSV": 4, "I": 9, "F": 9}
_TO_RGB.update({m: 8 for m in ("I;16", "I;16B", "I;16L", "I;16N")})
_TO_RGB.update({m: 4 for m in ("RGBA", "RGBa", "LA", "La")})
_TO_RGB["PA"] = 8
_MODE_NAMES = {"RGBA": "RGB with alpha", "P": "palette", "PA": "palette with alpha", "L": "grey"}
# Formats Pillow decodes row by row keep the previous and the current raw row (PNG filters need both).
_ROW_FORMATS = {"PNG": 2, "BMP": 1, "GIF": 1}
# Copies some decoders make: libwebp's canvas and the bytes Pillow copies it through; BMP's raw data.
_COPIES = {"WEBP": 13, "BMP": 4}
_FIXED = 16 * 2**20  # decoder state, a strip of the alpha composite, a JPEG's scaled rows


def decode_bytes(img: Image.Image, full_size: tuple[int, int], scans: int = 0, transposed: bool = False) -> int:
    """The peak bytes that decoding `img` (opened, and drafted if it will be) to RGB allocates.

    The decoded image in Pillow's storage for its mode, at the drafted size for a JPEG; a JPEG
    with more than one scan (progressive, or one scan per component) keeps every DCT coefficient
    of the full-size image until the last scan (2 bytes each); PNG, BMP and GIF keep raw rows;
    Pillow keeps a pointer per row of every image (which is what a 1 x 63,000,000 image costs);
    the EXIF transpose makes a copy; the conversion to RGB allocates per `_TO_RGB`; some
    decoders copy (`_COPIES`). Upper bounds of measured peaks (tests/core/test_decode_budget.py)."""
    width, height = img.size
    pixels = width * height
    stored = _STORED.get(img.mode, 4)
    total = _FIXED + pixels * (stored + _TO_RGB.get(img.mode, 8) + _COPIES.get(img.format or "", 0))
    total += 3 * height * 8  # Pillow keeps a pointer per row of each image: 63 million rows, 504 MB
    if transposed:
        total += pixels * stored
    if img.format in ("JPEG", "MPO") and scans > 1:
        layers = getattr(img, "layer", None) or [(0, 1, 1, 0)] * len(img.getbands())
        hmax = max(h for _, h, _, _ in layers)
        vmax = max(v for _, _, v, _ in layers)
        blocks = sum(-(-full_size[0] * h // (8 * hmax)) * -(-full_size[1] * v // (8 * vmax)) for _, h, v, _ in layers)
        total += blocks * 64 * 2
    total += _ROW_FORMATS.get(img.format or "", 0) * full_size[0] * stored * 2  # 16-bit samples: twice
    return total


_MARKER = re.compile(rb"\xff+([^\x00\xd0-\xd7\xff])")


def jpeg_scans(data: bytes, *, stop_after: int = MAX_JPEG_SCANS) -> int:
    """How many scans (SOS segments) a JPEG has, counting no further than `stop_after` + 1.

    Walks the marker segments by their lengths and skips each scan's entropy-coded data to the
    next marker (a 0xFF not followed by 0x00, a restart marker or fill), so bytes inside EXIF or
    a thumbnail are never mistaken for scans. A malformed tail ends the count (Pillow reports it)."""
    count = 0
    pos = 2  # after SOI
    size = len(data)
    while pos + 1 < size:
        if data[pos] != 0xFF:
            found = _MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start(1) - 1
        while pos + 1 < size and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= size:
            break
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
            continue
        if pos + 4 > size:
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xDA:
            pos = end
            continue
        count += 1
        if count > stop_after:
            return count
        found = _MARKER.search(data, end)
        if found is None:
            break
        pos = found.start(1) - 1
    return count


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
    """The EXIF orientation, without decoding: Pillow's PNG `getexif` loads the whole image to
    look for an eXIf chunk after the pixels, so a PNG's is read here only once it is in `info`."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        if "transparency" in img.info:
            return _palette_on_white(img)
        return img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _levels_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _on_white(img)
    return img.convert("RGB")


def _palette_on_white(img: Image.Image) -> Image.Image:
    """A palette image with transparency, composited on white through its palette: the pixels
    are converted once, straight to RGB (no full-size RGBA copy)."""
    rgb = img.getpalette("RGB") or []
    entries = len(rgb) // 3
    alpha = [255] * entries
    transparency = img.info["transparency"]
    if isinstance(transparency, int):
        if 0 <= transparency < entries:
            alpha[transparency] = 0
    elif isinstance(transparency, bytes | bytearray):
        for i, a in enumerate(transparency[:entries]):
            alpha[i] = a
    palette = [(c * alpha[i // 3] + 255 * (255 - alpha[i // 3]) + 127) // 255 for i, c in enumerate(rgb)]
    img.putpalette(palette, "RGB")
    img.info.pop("transparency", None)
    return img.convert("RGB")


_STRIP_PIXELS = 1 << 20


def _on_white(img: Image.Image) -> Image.Image:
    """An image with alpha composited on white, a strip of rows at a time: the peak is the
    source and the RGB result, not four full-size copies."""
    width, height = img.size
    out = Image.new("RGB", img.size, (255, 255, 255))
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        strip = img.crop((0, top, width, min(height, top + rows))).convert("RGBA")
        out.paste(strip.convert("RGB"), (0, top), strip)
    return out


def _levels_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images as 8-bit RGB (16-bit data scaled to 8 bits)."""
    arr = np.asarray(img, dtype=np.float32)
    if img.mode != "F":
        peak = max(float(arr.max()), 1.0)
        arr *= 255.0 / (65535.0 if peak > 255 else 255.0)
    np.clip(arr, 0, 255, out=arr)
    grey = Image.fromarray(arr.astype(np.uint8))
    del arr
    return grey.convert("RGB")


class Preprocessor:
    """`InputSpec` compiled once: per-channel multiply-add constants and the crop geometry."""

    __slots__ = ("add", "limits", "mul", "spec")

    def __init__(
        self,
        spec: InputSpec,
        mul: npt.NDArray[np.float32],
        add: npt.NDArray[np.float32],
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.spec = spec
        self.mul = mul
        self.add = add
        self.limits = limits

    @classmethod
    def from_spec(cls, spec: InputSpec, limits: DecodeLimits = DEFAULT_LIMITS) -> Preprocessor:
        mean = np.asarray(spec.mean, np.float32)
        std = np.asarray(spec.std, np.float32)
        # (x * scale - mean) / std  ==  x * (scale / std) + (-mean / std)
        # mean and std are given in the model's channel order, so they apply after any BGR flip.
        mul, add = np.float32(spec.scale) / std, -mean / std
        return cls(spec, mul.astype(np.float32), add.astype(np.float32), limits)

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
        """Bytes to one sample (no batch axis); the time each step took goes to `CLOCK`."""
        t0 = time.perf_counter()
        image = decode(data, min_size=self.decode_size, limits=self.limits)
        t1 = time.perf_counter()
        sample = self.to_array(self.resize(image))
        CLOCK.decode_ms += (t1 - t0) * 1e3
        CLOCK.preprocess_ms += (time.perf_counter() - t1) * 1e3
        return sample
