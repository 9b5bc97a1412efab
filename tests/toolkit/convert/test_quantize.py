"""Static int8: `lambdalite export --quantize int8` and the zoo's efficientnet-lite0-int8."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import open_bundle
from lambdalite.model import load_model

from helpers import CAT_CLASSES
from helpers.images import encode

LAMBDALITE = Path(sys.executable).parent / "lambdalite"

FACTORY = """
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4),
    )
"""


def test_export_factory_with_static_int8_and_an_accuracy_report(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "tinynet.py").write_text(FACTORY)
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        pixels = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        (photos / f"{i:02d}.png").write_bytes(encode(Image.fromarray(pixels), "PNG"))
    out = tmp_path / "tinynet-int8.tar.gz"
    proc = subprocess.run(
        [str(LAMBDALITE), "export", "tinynet:build", "--labels", "labels.txt", "--input-size", "32"]
        + ["--quantize", "int8", "--calibration", "photos", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "accuracy against the float model on 2 held-out images" in proc.stdout  # every 5th image
    assert "top-1 agreement" in proc.stdout and "largest probability diff" in proc.stdout
    assert "Calibrating on 8 images" in proc.stderr  # progress was shown
    model = load_model(str(out))
    m = model.bundle.manifest
    assert m.name == "build-int8" and m.metadata["calibration_images"] == 8
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(model.bundle.read("model")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic quantization
    assert "DynamicQuantizeLinear" not in ops
    graph = onnx.load_from_string(model.bundle.read("model")).graph
    producer = {o: n for n in graph.node for o in n.output}
    fc = producer[graph.output[0].name]
    # The classifier keeps float logits (no 256-level rounding of the scores) but int8 weights.
    assert fc.op_type == "Gemm" and producer[fc.input[1]].op_type == "DequantizeLinear", fc
    assert "float logits" in m.metadata["quantization"]
    assert m.metadata["float_nodes"] == ["/0/Conv"]  # the first Conv; the classifier is int8
    assert len(model.predict([(photos / "00.png").read_bytes()])[0]) == 4


def test_quantize_needs_calibration(tmp_path):
    proc = subprocess.run(
        [str(LAMBDALITE), "export", "x:y", "--quantize", "int8", "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--quantize int8 needs --calibration DIR" in proc.stderr


@pytest.fixture(scope="session")
def int8_bundle(demo_bundle) -> Path:
    pytest.importorskip("onnx")
    from lambdalite.toolkit.zoo import ensure_built

    return ensure_built("efficientnet-lite0-int8")


def test_int8_zoo_model_keeps_the_float_top1_on_the_test_photos(int8_bundle, demo_bundle, chelsea_jpeg):
    from lambdalite.tasks.classification import softmax  # noqa: F401  (the task applies it)
    from lambdalite.toolkit.zoo.calibration import photo

    bundle = open_bundle(int8_bundle)
    m = bundle.manifest
    assert m.name == "efficientnet-lite0-int8" and m.engine == "onnxruntime"
    assert m.metadata["top1_agreement"] >= 0.8
    fp32 = load_model(str(demo_bundle), threads=1)
    int8 = load_model(str(int8_bundle), threads=1)
    photos = {
        f"{name}-q{q}.jpg": encode(photo(name), "JPEG", quality=q)
        for name in ("chelsea", "coffee", "rocket", "astronaut")
        for q in (90, 92, 95)
    }
    photos["chelsea.jpg (fixture)"] = chelsea_jpeg
    for name, data in photos.items():
        [f] = fp32.predict([data], top_k=3)
        [q] = int8.predict([data], top_k=3)
        # The cat is a near tie in float (Egyptian cat vs tiger cat, 2-3 points): int8 must keep it.
        assert q[0]["className"] == f[0]["className"], (name, f, q)
        assert abs(q[0]["probability"] - f[0]["probability"]) < 0.05, (name, f, q)
    [cat] = int8.predict([chelsea_jpeg])
    assert cat[0]["className"] in CAT_CLASSES
