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
    from lambdalite.toolkit.zoo import ensure_built

    return ensure_built("efficientnet-lite0-int8")


@pytest.mark.slow
def test_int8_zoo_model_keeps_the_promise_on_the_test_photos(int8_bundle, demo_bundle, test_photos):
    """What efficientnet-lite0-int8 promises on any x86-64 CPU (measured in BENCHMARKS.md by
    benchmarks/bench_int8_margin.py, which derives the three numbers): int8 keeps fp32's top-1
    wherever fp32's top-1 leads its runner-up by at least M; no class probability moves by more
    than D; top-1 agreement on the held-out photos is at least N. Below the margin int8 may go
    either way (ONNX Runtime's int8 kernels differ per CPU), and nothing is asserted there.
    The photos: the JPEG test photos, the build report's 10 held-out images and 80 more views."""
    from lambdalite.core.images import Preprocessor
    from lambdalite.engines import load_engine
    from lambdalite.tasks.classification import softmax
    from lambdalite.toolkit.convert.quantize import compare
    from lambdalite.toolkit.zoo.calibration import HELD_OUT_PHOTOS, augmented, held_out_images, photo
    from lambdalite.toolkit.zoo.efficientnet import INT8_HELD_OUT_AGREEMENT, INT8_MAX_PROBABILITY_DIFF, INT8_TOP1_MARGIN

    fp32, int8 = open_bundle(demo_bundle), open_bundle(int8_bundle)
    m = int8.manifest
    assert m.name == "efficientnet-lite0-int8" and m.engine == "onnxruntime"
    assert m.metadata["top1_agreement"] >= INT8_HELD_OUT_AGREEMENT  # as measured when it was built
    pre = Preprocessor.from_spec(m.input)
    held_out = [(name, pre(data)) for name, data in held_out_images()]
    images = [(name, pre(data)) for name, data in test_photos.items()] + held_out
    for i, name in enumerate(HELD_OUT_PHOTOS):  # 80 more views the calibration never saw
        images += [(f"{name}~{k}", pre(data)) for k, data in enumerate(augmented(photo(name), 40, seed=2000 + i))]
    x = np.stack([a for _, a in images])
    p, q = (
        softmax(np.asarray(load_engine("onnxruntime", b.read("model"), threads=1).run({"input": x})[0], np.float64))
        for b in (fp32, int8)
    )
    top2 = np.sort(p, axis=1)[:, -2:]
    lead = top2[:, 1] - top2[:, 0]
    kept = q.argmax(1) == p.argmax(1)
    for i, (name, _) in enumerate(images):
        assert np.abs(q[i] - p[i]).max() <= INT8_MAX_PROBABILITY_DIFF, name
        if lead[i] >= INT8_TOP1_MARGIN:
            assert kept[i], (name, lead[i])
    assert (lead >= INT8_TOP1_MARGIN).sum() >= len(images) // 2  # most of these photos are inside the promise
    report = compare(fp32.read("model"), int8.read("model"), "input", held_out, fp32.read_lines("labels"), True)
    assert report.images == 10 and report.top1_agreement >= INT8_HELD_OUT_AGREEMENT


@pytest.mark.slow
def test_int8_zoo_model_serves_the_cat(int8_bundle, chelsea_jpeg):
    [cat] = load_model(str(int8_bundle), threads=1).predict([chelsea_jpeg])
    assert cat[0]["className"] in CAT_CLASSES
