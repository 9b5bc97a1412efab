from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import InputSpec
from lambdalite.core.images import Preprocessor, decode
from lambdalite.errors import ImageDecodeError, ImageTooLargeError

from helpers.images import encode, jpeg_bytes, png_header_only


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_formats_decode_to_rgb(fmt):
    img = decode(encode(gradient(), fmt))
    assert img.mode == "RGB"
    assert img.size == (64, 48)


def test_gif_uses_the_first_frame():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    buf = io.BytesIO()
    red.save(buf, format="GIF", save_all=True, append_images=[blue])
    out = np.asarray(decode(buf.getvalue()))
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "1", "I;16"])
def test_modes_become_rgb(mode):
    src = (
        gradient().convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.asarray(gradient().convert("L"), np.uint16) * 257)
    )
    fmt = {"CMYK": "JPEG", "I;16": "PNG"}.get(mode, "PNG")
    assert decode(encode(src, fmt)).mode == "RGB"


def test_alpha_is_composited_on_white():
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = np.asarray(decode(encode(transparent, "PNG")))
    assert (out == 255).all()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = decode(jpeg_bytes(img, exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    arr = np.asarray(out).astype(int)
    assert arr[5, 10, 2] > 200 and arr[35, 10, 0] > 200  # blue on top after rotation


def test_large_jpeg_decodes_at_reduced_scale():
    big = gradient(2400, 1600)
    img = decode(jpeg_bytes(big), min_size=(256, 256))
    assert img.size[0] < 2400 and min(img.size) >= 256  # draft picked 1/2, 1/4 or 1/8
    assert decode(jpeg_bytes(big)).size == (2400, 1600)


def test_decompression_bomb_is_refused():
    with pytest.raises(ImageTooLargeError, match="30000x30000"):
        decode(png_header_only(30000, 30000))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text pretending to be a JPEG", "looks like text"),
        (bytes(range(256)) * 4, "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "corrupt or truncated JPEG"),
    ],
)
def test_junk_is_a_clear_error(payload, message):
    with pytest.raises(ImageDecodeError, match=message) as err:
        decode(payload)
    assert "\n" not in str(err.value)


def test_truncated_jpeg():
    data = jpeg_bytes(gradient(320, 240), quality=95)
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode(data[: len(data) // 2])


def test_preprocess_matches_a_straightforward_reference():
    spec = InputSpec(size=(32, 32), resize=40, crop="center", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    pre = Preprocessor.from_spec(spec)
    img = gradient(80, 60)
    out = pre.to_array(pre.resize(img))
    # Reference: resize the shorter side, then crop the centre, then normalise.
    scale = 40 / 60
    resized = img.resize((round(80 * scale), 40), Image.Resampling.BILINEAR)
    left, top = (resized.width - 32) // 2, (resized.height - 32) // 2
    ref = np.asarray(resized.crop((left, top, left + 32, top + 32)), np.float32) / 255
    ref = ((ref - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)).transpose(2, 0, 1)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.abs(out - ref).mean() < 0.05  # one resampling pass vs two: close, not identical


def test_layouts_channel_order_and_dtype():
    img = Image.new("RGB", (10, 10), (10, 20, 30))
    nhwc = Preprocessor.from_spec(InputSpec(size=(10, 10), resize=None, layout="NHWC", dtype="uint8"))
    assert nhwc.to_array(nhwc.resize(img)).shape == (10, 10, 3)
    assert nhwc.to_array(img)[0, 0].tolist() == [10, 20, 30]
    bgr = Preprocessor.from_spec(InputSpec(size=(10, 10), resize=None, channel_order="BGR", dtype="uint8"))
    assert bgr.to_array(img)[:, 0, 0].tolist() == [30, 20, 10]
    scaled = Preprocessor.from_spec(InputSpec(size=(10, 10), resize=None, scale=1.0, mean=(0, 0, 0), std=(1, 1, 1)))
    assert scaled.to_array(img)[:, 0, 0].tolist() == [10.0, 20.0, 30.0]
