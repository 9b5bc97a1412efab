from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import OutputSpec, open_bundle
from lambdalite.errors import BundleError, InputError
from lambdalite.tasks import load_task
from lambdalite.tasks.classification import softmax, top_k

from helpers.images import encode
from helpers.models import TINY_LABELS, tiny_classifier_onnx, write_tiny_bundle


def solid(rgb: tuple[int, int, int]) -> bytes:
    return encode(Image.new("RGB", (20, 12), rgb), "PNG")


def test_softmax_is_stable_and_normalised():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]])
    assert np.isfinite(p).all()


def test_top_k_is_sorted_plain_floats():
    out = top_k(np.array([0.1, 0.6, 0.05, 0.25]), ["a", "b", "c", "d"], 3)
    assert out == [
        {"className": "b", "probability": 0.6},
        {"className": "d", "probability": 0.25},
        {"className": "a", "probability": 0.1},
    ]
    assert all(type(r["probability"]) is float for r in out)
    assert [r["className"] for r in top_k(np.array([0.1, 0.6]), ["a", "b"], 10)] == ["b", "a"]


def test_tiny_classifier_end_to_end(tiny_bundle):
    task = load_task(open_bundle(tiny_bundle.root), threads=1)
    red, green, blue = task.predict([solid((250, 5, 5)), solid((5, 250, 5)), solid((5, 5, 250))])
    assert [r[0]["className"] for r in (red, green, blue)] == ["red", "green", "blue"]
    assert len(red) == 3  # the manifest's top_k
    assert sum(r["probability"] for r in task.predict([solid((9, 9, 9))], top_k=4)[0]) == pytest.approx(1.0)


def test_probabilities_match_the_reference_math(tiny_bundle):
    from helpers.models import tiny_reference

    task = load_task(open_bundle(tiny_bundle.root), threads=1)
    rgb = (200, 100, 50)
    [result] = task.predict([solid(rgb)], top_k=4)
    logits = tiny_reference(np.array(rgb, np.float32).reshape(1, 3, 1, 1) / 255)
    expected = dict(zip(TINY_LABELS, softmax(logits)[0], strict=True))
    for r in result:
        assert r["probability"] == pytest.approx(expected[r["className"]], abs=1e-6)


def test_probability_models_are_not_softmaxed_twice(tmp_path):
    bundle = write_tiny_bundle(tmp_path / "p", output=OutputSpec(kind="probabilities", top_k=4))
    task = load_task(open_bundle(bundle.root), threads=1)
    [result] = task.predict([solid((250, 5, 5))])
    # The raw "logits" pass through untouched: they do not sum to one.
    assert sum(r["probability"] for r in result) != pytest.approx(1.0)


def test_fixed_batch_models_are_run_in_pieces(tmp_path):
    bundle = write_tiny_bundle(
        tmp_path / "fixed",
        files={"model": tiny_classifier_onnx(batch=1), "labels": ("\n".join(TINY_LABELS) + "\n").encode()},
    )
    task = load_task(open_bundle(bundle.root), threads=1)
    results = task.predict([solid((250, 5, 5)), solid((5, 5, 250))])
    assert [r[0]["className"] for r in results] == ["red", "blue"]


def test_label_count_must_match_the_model(tmp_path):
    bundle = write_tiny_bundle(tmp_path / "l", files={"model": tiny_classifier_onnx(), "labels": b"a\nb\n"})
    with pytest.raises(BundleError, match="4 classes but labels.txt lists 2"):
        load_task(open_bundle(bundle.root), threads=1)


@pytest.mark.parametrize("k", [0, -1, "3", 2.5])
def test_bad_top_k(tiny_bundle, k):
    task = load_task(open_bundle(tiny_bundle.root), threads=1)
    with pytest.raises(InputError, match="top_k"):
        task.predict([solid((1, 2, 3))], top_k=k)
