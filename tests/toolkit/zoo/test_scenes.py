"""The synthetic scenes behind the demo captioner: deterministic, varied, canonically captioned."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lambdalite.toolkit.zoo import scenes
from lambdalite.toolkit.zoo.scenes import Shape, caption_for, detokenize, scene, tokenize


def test_a_scene_is_a_function_of_its_seed():
    a, b = scene(2_000_017), scene(2_000_017)
    assert a.caption == b.caption and a.encode() == b.encode()
    assert scene(2_000_018).encode() != a.encode()


def test_seed_ranges_do_not_overlap():
    ranges = [scenes.TRAIN_SEEDS, scenes.HELD_OUT_SEEDS, scenes.TEST_SEEDS]
    for i, r in enumerate(ranges):
        for other in ranges[i + 1 :]:
            assert r.stop <= other.start


@pytest.mark.parametrize(
    ("shapes", "caption"),
    [
        ([("circle", "red", 50)], "a red circle"),
        ([("square", "yellow", 80), ("triangle", "blue", 20)], "a blue triangle and a yellow square"),
        ([("circle", "green", 10), ("circle", "green", 90)], "two green circles"),
        # Groups are placed by their leftmost member: the red circles come first.
        (
            [("circle", "red", 10), ("square", "blue", 50), ("circle", "red", 90)],
            "two red circles and a blue square",
        ),
        (
            [("triangle", "red", 70), ("circle", "red", 10), ("circle", "blue", 40)],
            "a red circle, a blue circle and a red triangle",
        ),
        ([("square", "blue", 30), ("square", "blue", 20), ("square", "blue", 10)], "three blue squares"),
    ],
)
def test_captions_are_canonical(shapes, caption):
    assert caption_for([Shape(kind, colour, x, 50.0, 20.0, 0.0) for kind, colour, x in shapes]) == caption


def test_tokens_round_trip():
    caption = "a red circle, two blue squares and a yellow triangle"
    tokens = tokenize(caption)
    assert tokens[3] == "," and len(tokens) == 11
    assert detokenize(tokens) == caption
    assert set(tokens) <= set(scenes.VOCAB)


def test_scenes_vary_as_promised():
    made = [scene(seed) for seed in scenes.TEST_SEEDS[:300]]
    sizes = [s.image.size for s in made]
    assert all(64 <= w <= 512 and 64 <= h <= 512 for w, h in sizes)
    assert min(w for w, _ in sizes) < 120 and max(w for w, _ in sizes) > 450
    assert {len(s.shapes) for s in made} == {1, 2, 3}
    assert {s.format for s in made} == {"JPEG", "PNG"}
    assert {s.image.getpixel((0, 0)) for s in made[:20]}.__len__() > 10  # the background tone varies
    words = {t for s in made for t in tokenize(s.caption)}
    assert words == set(scenes.VOCAB) - set(scenes.SPECIAL_TOKENS)
    for s in made[:40]:
        decoded = Image.open(io.BytesIO(s.encode()))
        assert decoded.format == s.format and decoded.size == s.image.size
        assert s.caption == caption_for(s.shapes)


def test_shapes_do_not_overlap_and_stay_inside():
    for seed in scenes.TEST_SEEDS[:300]:
        s = scene(seed)
        width, height = s.image.size
        for i, a in enumerate(s.shapes):
            assert 0 <= a.x - a.size / 2 and a.x + a.size / 2 <= width
            assert 0 <= a.y - a.size / 2 and a.y + a.size / 2 <= height
            for b in s.shapes[i + 1 :]:
                assert ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5 > 0.72 * (a.size + b.size)
                assert abs(a.x - b.x) > 0.06 * width  # so left-to-right order is never a coin toss
