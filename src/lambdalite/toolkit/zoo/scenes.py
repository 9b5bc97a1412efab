"""Synthetic scenes for the demo captioner: 1 to 3 coloured shapes and the one caption they have.

    s = scene(1_000_123)
    s.caption          # "a blue square and two red circles"
    s.encode()         # the picture as JPEG or PNG bytes, as a client would send it

A scene is a function of its seed alone (Python's `random.Random`, whose stream is stable
across versions), so held-out sets are just seed ranges: training uses `TRAIN_SEEDS`, the
builder's own held-out report `HELD_OUT_SEEDS`, and tests `TEST_SEEDS`; they never overlap.

Pictures are 64 to 512 pixels a side (aspect 0.6 to 1.6), a plain light background of varied
tone, and filled circles, squares and triangles in red, green, blue or yellow, of varied size
(16-32 % of the shorter side), position and slight rotation, never overlapping. Every later
shape repeats the colour and kind of an earlier one 30 % of the time, so counted groups ("two
green circles") are common. Half the pictures are JPEG (quality 70-95), half PNG.

**The caption is canonical**, so an exact match is meaningful: shapes of the same colour and
kind are counted together ("two green circles"), and the groups are named left to right by
the centre of each group's leftmost shape (centres are kept at least 6 % of the width apart,
so the order is never ambiguous). Counts are "a", "two", "three"; two groups are joined by
"and", three as "A, B and C".
"""

from __future__ import annotations

import io
import math
import random
from typing import NamedTuple

from PIL import Image, ImageDraw

from lambdalite.core.bundle import InputSpec

__all__ = [
    "COLOURS",
    "END",
    "INPUT",
    "MAX_TOKENS",
    "PAD",
    "START",
    "HELD_OUT_SEEDS",
    "KINDS",
    "SPECIAL_TOKENS",
    "TEST_SEEDS",
    "TRAIN_SEEDS",
    "VOCAB",
    "Scene",
    "Shape",
    "caption_for",
    "detokenize",
    "scene",
    "tokenize",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 200, 30),
}
KINDS = ("circle", "square", "triangle")
COUNTS = ("a", "two", "three")
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
VOCAB: tuple[str, ...] = (
    *SPECIAL_TOKENS,
    *COUNTS,
    *COLOURS,
    *KINDS,
    *(f"{k}s" for k in KINDS),
    "and",
    ",",
)
TRAIN_SEEDS = range(1_000_000)
HELD_OUT_SEEDS = range(1_000_000, 2_000_000)
TEST_SEEDS = range(2_000_000, 3_000_000)

_MIN_GAP = 0.06  # of the width, between any two shape centres
_JITTER = 22  # per channel, on the base colour
_REPEAT = 0.3  # the chance that a later shape repeats an earlier one's colour and kind


class Shape(NamedTuple):
    kind: str
    colour: str
    x: float  # centre, pixels
    y: float
    size: float  # diameter or side, pixels
    angle: float  # degrees


class Scene(NamedTuple):
    seed: int
    image: Image.Image
    format: str  # "JPEG" or "PNG"
    quality: int
    shapes: tuple[Shape, ...]
    caption: str

    def encode(self) -> bytes:
        buf = io.BytesIO()
        if self.format == "JPEG":
            self.image.save(buf, format="JPEG", quality=self.quality)
        else:
            self.image.save(buf, format="PNG")
        return buf.getvalue()

    @property
    def suffix(self) -> str:
        return ".jpg" if self.format == "JPEG" else ".png"


def caption_for(shapes: tuple[Shape, ...] | list[Shape]) -> str:
    """The canonical caption: same colour and kind counted together, groups left to right."""
    groups: dict[tuple[str, str], list[float]] = {}
    for s in shapes:
        groups.setdefault((s.colour, s.kind), []).append(s.x)
    ordered = sorted(groups.items(), key=lambda item: min(item[1]))
    phrases = []
    for (colour, kind), xs in ordered:
        n = len(xs)
        phrases.append(f"{COUNTS[n - 1]} {colour} {kind}{'s' if n > 1 else ''}")
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def tokenize(caption: str) -> list[str]:
    """Words and commas: "a, b" -> ["a", ",", "b"]."""
    return caption.replace(",", " , ").split()


def detokenize(tokens: list[str]) -> str:
    return " ".join(tokens).replace(" ,", ",")


def scene(seed: int) -> Scene:
    rng = random.Random(seed)
    width = rng.randint(64, 512)
    height = max(64, min(512, round(width * rng.uniform(0.6, 1.6))))
    tone = rng.randint(200, 250)
    background = tuple(max(0, min(255, tone + rng.randint(-8, 8))) for _ in range(3))
    shapes = _layout(rng, width, height, rng.randint(1, 3))
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    for s in shapes:
        base = COLOURS[s.colour]
        fill = tuple(max(0, min(255, c + rng.randint(-_JITTER, _JITTER))) for c in base)
        _draw(draw, s, fill)  # type: ignore[arg-type]
    fmt = "JPEG" if rng.random() < 0.5 else "PNG"
    return Scene(seed, img, fmt, rng.randint(70, 95), tuple(shapes), caption_for(shapes))


def _layout(rng: random.Random, width: int, height: int, n: int) -> list[Shape]:
    short = min(width, height)
    for _ in range(200):
        shapes: list[Shape] = []
        for _ in range(n):
            size = short * rng.uniform(0.16, 0.32)
            r = size * 0.72  # covers a square rotated by up to 45 degrees
            x = rng.uniform(r, width - r)
            y = rng.uniform(r, height - r)
            kind, colour = rng.choice(KINDS), rng.choice(tuple(COLOURS))
            if shapes and rng.random() < _REPEAT:
                kind, colour = rng.choice(shapes)[:2]
            shape = Shape(kind, colour, x, y, size, rng.uniform(-20, 20))
            if all(_apart(shape, other, width) for other in shapes):
                shapes.append(shape)
            else:
                break
        if len(shapes) == n:
            return shapes
    return shapes[:1] or [Shape("circle", "red", width / 2, height / 2, short * 0.3, 0.0)]


def _apart(a: Shape, b: Shape, width: int) -> bool:
    distance = math.hypot(a.x - b.x, a.y - b.y)
    return distance > 0.72 * (a.size + b.size) + 2 and abs(a.x - b.x) > _MIN_GAP * width


def _draw(draw: ImageDraw.ImageDraw, s: Shape, fill: tuple[int, int, int]) -> None:
    h = s.size / 2
    if s.kind == "circle":
        draw.ellipse((s.x - h, s.y - h, s.x + h, s.y + h), fill=fill)
        return
    if s.kind == "square":
        corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
    else:  # an equilateral triangle with the given side, centred on its centroid
        r = s.size / math.sqrt(3)
        corners = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    t = math.radians(s.angle)
    c, si = math.cos(t), math.sin(t)
    draw.polygon([(s.x + px * c - py * si, s.y + px * si + py * c) for px, py in corners], fill=fill)


# The captioner's contract with these scenes (the builder and the network share it).
INPUT = InputSpec(
    size=(64, 64),
    layout="NCHW",
    resize=None,  # the whole picture, stretched: a crop could cut shapes off
    crop="none",
    scale=1 / 255,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    channel_order="RGB",
    dtype="float32",
    resample="bilinear",
    name="image",
)
MAX_TOKENS = 12  # the longest caption ("a red circle, two blue squares and ...") is 11 words, plus <end>
PAD, START, END = (VOCAB.index(t) for t in ("<pad>", "<start>", "<end>"))
