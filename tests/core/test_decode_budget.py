"""What an image may cost to decode: JPEG scans, and bytes for its mode and decode path (issue 14, rows 1-2).

The hostile files are generated here: a progressive JPEG whose last refinement scan repeats
thousands of times (each scan is one pass over every block), and PNGs of one colour that
compress 64 MP into a few hundred KB.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
from PIL import Image

from lambdalite.core.images import DecodeLimits, decode, jpeg_scans
from lambdalite.errors import ImageDecodeError, ImageTooLargeError
from lambdalite.model import decode_budget, load_model
from lambdalite.settings import Settings

from helpers.hostile import flat_png, scan_bomb
from helpers.images import encode

MB = 2**20
# A function of 1024 MB whose model uses 137 MB (efficientnet-lite0 after warm-up, measured).
BUDGET_1024, WHY_1024 = decode_budget(1024, 137 * MB)


@pytest.mark.parametrize("repeats", [1_000, 5_000])
def test_a_jpeg_scan_bomb_is_refused_before_decoding(repeats):
    bomb = scan_bomb(1000, repeats)
    start = time.monotonic()
    with pytest.raises(ImageDecodeError, match=r"more than 32 scans.*LAMBDALITE_MAX_JPEG_SCANS") as info:
        decode(bomb, min_size=(256, 256))
    assert time.monotonic() - start < 1.0, "counting scans is one pass over the bytes, not a decode"
    assert "re-encode" in str(info.value)


@pytest.mark.parametrize(
    ("mode", "options", "scans"),
    [
        ("RGB", {"progressive": True}, 10),  # libjpeg's progressive script for colour
        ("L", {"progressive": True}, 6),
        ("RGB", {"progressive": True, "optimize": True, "subsampling": 0}, 10),
        ("RGB", {}, 1),  # baseline
    ],
)
def test_normal_jpegs_still_decode(mode, options, scans):
    img = Image.new(mode, (640, 480), (20, 120, 220) if mode == "RGB" else 90)
    data = encode(img, "JPEG", **options)
    assert jpeg_scans(data) == scans
    assert decode(data, min_size=(224, 224)).mode == "RGB"


def test_the_scan_limit_is_a_setting_and_inclusive():
    data = scan_bomb(64, 4)  # 6 scans of a grey progressive JPEG, the last 4 more times: 10
    assert jpeg_scans(data) == 10
    assert decode(data, limits=DecodeLimits(max_scans=10)).size == (64, 64)
    with pytest.raises(ImageDecodeError, match="more than 9 scans"):
        decode(data, limits=DecodeLimits(max_scans=9))
    assert Settings.from_env({"LAMBDALITE_MAX_JPEG_SCANS": "9"}).max_jpeg_scans == 9


def test_scan_markers_inside_segments_are_not_scans():
    data = encode(Image.new("RGB", (64, 48), (1, 2, 3)), "JPEG", progressive=True)
    comment = b"\xff\xda" * 500  # SOS bytes inside a comment (COM) segment
    doctored = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
    assert jpeg_scans(doctored) == jpeg_scans(data) == 10
    assert decode(doctored).size == (64, 48)


@pytest.mark.parametrize(
    ("name", "make", "refused"),
    [
        ("RGBA 8000x8000", lambda: flat_png(8000, 8000, "RGBA"), True),
        ("1x63,000,000 grey", lambda: flat_png(1, 63_000_000, "L"), True),
        ("palette with transparency 8000x8000", lambda: flat_png(8000, 8000, "P", transparency=True), False),
    ],
)
def test_pngs_under_the_pixel_limit_are_held_to_the_byte_budget(name, make, refused):
    """At 1024 MB these decoded to about 1.4 GB and killed the instance. Now the budget says no
    up front, naming it, or the image decodes within it (a palette is composited through its
    palette, without a full-size RGBA copy)."""
    data = make()
    assert len(data) < 300_000
    limits = DecodeLimits(max_bytes=BUDGET_1024, budget=WHY_1024)
    if refused:
        start = time.monotonic()
        with pytest.raises(ImageTooLargeError) as info:
            decode(data, min_size=(256, 256), limits=limits)
        assert time.monotonic() - start < 1.0
        message = str(info.value)
        assert f"{BUDGET_1024 / MB:,.0f} MB budget" in message and "1024 MB" in message, message
        assert "LAMBDALITE_MAX_DECODE_BYTES" in message
    else:
        assert decode(data, min_size=(256, 256), limits=limits).mode == "RGB"


def test_the_budget_comes_from_the_memory_size_once_the_model_is_loaded(tiny_bundle):
    model = load_model(str(tiny_bundle.root), settings=Settings(memory_mb=512), threads=1)
    limits = model.task.capabilities.tensors.preprocess.limits  # type: ignore[union-attr]
    assert 16 * MB <= limits.max_bytes < 256 * MB  # half of what 512 MB leave after the process
    assert "512 MB" in limits.budget
    explicit = load_model(str(tiny_bundle.root), settings=Settings(memory_mb=512, max_decode_bytes=5 * MB), threads=1)
    assert explicit.task.capabilities.tensors.preprocess.limits.max_bytes == 5 * MB  # type: ignore[union-attr]
    with pytest.raises(ImageTooLargeError, match="5 MB budget"):
        explicit.predict([flat_png(2000, 2000, "RGBA")])
    without = load_model(str(tiny_bundle.root), settings=Settings(), threads=1)
    assert without.task.capabilities.tensors.preprocess.limits.max_bytes is None  # type: ignore[union-attr]


# The decode's peak, measured in a fresh process (VmHWM after resetting it), against the estimate.
MEASURE = r"""
import json, sys
from lambdalite.core.images import decode, decode_bytes, jpeg_scans, _open, _orientation, _TRANSPOSE
data = open(sys.argv[1], "rb").read()
img = _open(data)
full = img.size
scans = jpeg_scans(data) if img.format == "JPEG" else 0
if img.format == "JPEG":
    img.draft(None, (256, 256))
estimate = decode_bytes(img, full, scans, _orientation(img) in _TRANSPOSE)
del img
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
img = decode(data, min_size=(256, 256))
side = min(img.size)
img.resize((224, 224), box=(0, 0, side, side))  # as the preprocessing crops and resizes
print(json.dumps({"estimate": estimate, "peak": status("VmHWM") - before}))
"""


def _noise(mode: str, size: int = 2000) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).convert(mode)


@pytest.mark.parametrize(
    "case",
    [
        "png-rgb",
        "png-rgba",
        "png-palette-transparent",
        "png-grey16",
        "png-tall",
        "jpeg-progressive",
        "jpeg-baseline",
        "webp",
        "bmp",
    ],
)
def test_the_estimate_bounds_the_measured_peak(tmp_path, case):
    if case == "png-grey16":
        import numpy as np

        img = Image.fromarray((np.arange(2000 * 2000, dtype=np.uint32).reshape(2000, 2000) % 65536).astype(np.uint16))
        data = encode(img, "PNG")
    elif case == "png-tall":
        data = flat_png(1, 4_000_000, "L")  # what costs here is a pointer per row
    elif case == "png-palette-transparent":
        data = encode(_noise("P"), "PNG", transparency=0)
    else:
        fmt, mode, options = {
            "png-rgb": ("PNG", "RGB", {}),
            "png-rgba": ("PNG", "RGBA", {}),
            "jpeg-progressive": ("JPEG", "RGB", {"progressive": True}),
            "jpeg-baseline": ("JPEG", "RGB", {}),
            "webp": ("WEBP", "RGB", {"quality": 50}),
            "bmp": ("BMP", "RGB", {}),
        }[case]
        buf = io.BytesIO()
        _noise(mode).save(buf, fmt, **options)
        data = buf.getvalue()
    path = tmp_path / case
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    estimate, peak = result["estimate"], result["peak"]
    assert estimate >= peak, f"{case}: estimated {estimate / MB:.1f} MB, measured {peak / MB:.1f} MB"
    assert estimate <= 2 * peak + 20 * MB, f"{case}: estimated {estimate / MB:.1f} MB for {peak / MB:.1f} MB"
