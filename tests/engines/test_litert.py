"""The LiteRT engine on the committed TFLite fixtures (tests/fixtures/make_tflite.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import InputSpec, OutputSpec, write_bundle
from lambdalite.engines import load_engine
from lambdalite.errors import EngineError
from lambdalite.tasks import load_task

from helpers import FIXTURES, TESTS
from helpers.images import encode

sys.path.insert(0, str(FIXTURES))

import make_tflite


def test_fixtures_are_what_the_script_writes():
    for name, make in make_tflite.FIXTURES.items():
        assert (FIXTURES / name).read_bytes() == make(), f"{name} is stale: run tests/fixtures/make_tflite.py"
    assert (FIXTURES / "clothing-labels.txt").read_text().split() == make_tflite.CLOTHING_LABELS


def test_float_fixture_matches_the_numpy_reference():
    engine = load_engine("litert", (FIXTURES / "clothing-float.tflite").read_bytes(), threads=1)
    assert engine.inputs[0].shape == (1, 64, 64, 3) and engine.inputs[0].dtype == "float32"
    x = np.random.default_rng(1).uniform(-1, 1, (5, 64, 64, 3)).astype(np.float32)
    got = np.concatenate([engine.run({"input": x[i : i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, make_tflite.reference(x), rtol=1e-4, atol=1e-4)


def test_int8_fixture_is_quantized_in_and_out_and_close_to_the_reference():
    data = (FIXTURES / "clothing-int8.tflite").read_bytes()
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=data).get_input_details()[0]
    assert details["dtype"] == np.int8 and details["quantization"][0] > 0  # really an int8 model
    engine = load_engine("litert", data, threads=1)
    assert engine.inputs[0].dtype == "float32"  # the engine quantizes float input itself
    x = np.random.default_rng(2).uniform(-1, 1, (8, 64, 64, 3)).astype(np.float32)
    got = np.concatenate([engine.run({"input": x[i : i + 1]})[0] for i in range(len(x))])
    want = make_tflite.reference(x)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # within int8 error
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.75
    # Already-quantized input passes through untouched.
    scale, zero_point = details["quantization"]
    q = np.clip(np.round(x[:1] / scale) + zero_point, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(engine.run({"input": q})[0], engine.run({"input": x[:1]})[0])


def test_batches_are_resized_on_the_fly():
    engine = load_engine("litert", (FIXTURES / "tiny.tflite").read_bytes(), threads=1)
    x = np.random.default_rng(3).random((3, 8, 8, 3), dtype=np.float32)
    [out] = engine.run({"pixels": x})
    np.testing.assert_allclose(out, x.mean(axis=(1, 2)) @ make_tflite.TINY_WEIGHTS + make_tflite.TINY_BIAS, atol=1e-5)


def test_bad_models_and_inputs_fail_cleanly():
    with pytest.raises(EngineError, match="LiteRT cannot load the model"):
        load_engine("litert", b"not a flatbuffer at all", threads=1)
    engine = load_engine("litert", (FIXTURES / "tiny.tflite").read_bytes(), threads=1)
    with pytest.raises(EngineError, match="takes float32, not"):
        engine.run({"pixels": np.zeros((1, 8, 8, 3), np.bool_)})
    with pytest.raises(EngineError, match="LiteRT failed to run"):
        engine.run({"pixels": np.zeros((1, 8, 8, 5), np.float32)})


def clothing_bundle(root: Path, model: str):
    return write_bundle(
        root,
        name="clothing",
        version="1",
        task="image-classification",
        engine="litert",
        files={"model": FIXTURES / model, "labels": FIXTURES / "clothing-labels.txt"},
        filenames={"model": "model.tflite", "labels": "labels.txt"},
        # Seed 001's keras-image-helper 'xception' preprocessing: resize to 299 (here 64), x/127.5 - 1.
        input=InputSpec(size=(64, 64), layout="NHWC", resize=None, crop="none", mean=(0.5,) * 3, std=(0.5,) * 3),
        output=OutputSpec(kind="logits", top_k=10),
    )


@pytest.mark.parametrize("model", ["clothing-float.tflite", "clothing-int8.tflite"])
def test_classification_task_answers_with_every_clothing_class(tmp_path, model):
    task = load_task(clothing_bundle(tmp_path / "b", model), threads=1)
    img = Image.new("RGB", (120, 90), (200, 40, 90))
    [result] = task.predict([encode(img, "JPEG")], top_k=10)
    scores = {r["className"]: r["probability"] for r in result}  # seed 001's {label: score} shape
    assert set(scores) == set(make_tflite.CLOTHING_LABELS)
    assert abs(sum(scores.values()) - 1) < 1e-5
    # The same image through the numpy reference ranks the classes the same way.
    x = (np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), np.float32) / 127.5 - 1)[None]
    ref = make_tflite.reference(x)[0]
    assert result[0]["className"] == make_tflite.CLOTHING_LABELS[int(ref.argmax())]


SEED001 = """
import json, sys
sys.path.insert(0, sys.argv[2])
from helpers.eventlib import load_event
from lambdalite.handler import handler
print("RESULT " + json.dumps(handler(load_event("direct-seed001-url.json", url=sys.argv[1]), None)))
print("MODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_seed001_function_answers_label_to_score_with_the_tflite_fixture(tmp_path, image_server):
    """Seed 001's request ({"url": ...}) to a function serving the .tflite fixture: {label: score}."""
    import json
    import os
    import subprocess

    bundle = clothing_bundle(tmp_path / "clothing", "clothing-float.tflite")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    env.update(LAMBDALITE_MODEL=str(bundle.root), LAMBDALITE_RESPONSE="scores", LAMBDALITE_ALLOW_PRIVATE_URLS="1")
    proc = subprocess.run(
        [sys.executable, "-c", SEED001, image_server.url("/red.jpg"), str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    scores = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert set(scores) == set(make_tflite.CLOTHING_LABELS)  # every class, as seed 001 returns
    assert all(isinstance(v, float) for v in scores.values())
    modules = set(json.loads(next(line for line in lines if line.startswith("MODULES "))[8:]))
    assert "ai_edge_litert" in modules
    assert modules.isdisjoint({"torch", "onnx", "onnxruntime", "boto3", "click"}), modules


def test_seed001_curl_recipe_against_lambdalite_serve_with_the_tflite_fixture(tmp_path, image_server):
    """Seed 001, as written: `curl -XPOST localhost:8080/2015-03-31/functions/function/invocations
    -d '{"url": ...}'`, against `lambdalite serve` running the .tflite fixture: {label: score}."""
    import json
    import subprocess

    from helpers.lambda_servers import ServeProcess, wait_until_gone

    bundle = clothing_bundle(tmp_path / "clothing", "clothing-float.tflite")
    with ServeProcess(
        tmp_path,
        str(bundle.root),
        "--env",
        "LAMBDALITE_RESPONSE=scores",
        "--env",
        "LAMBDALITE_ALLOW_PRIVATE_URLS=1",
        "--max-concurrency",
        "1",
    ) as server:
        body = json.dumps({"url": image_server.url("/red.jpg")})
        proc = subprocess.run(
            ["curl", "-sS", "-XPOST", f"localhost:{server.port}/2015-03-31/functions/function/invocations", "-d", body],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        scores = json.loads(proc.stdout)
        assert set(scores) == set(make_tflite.CLOTHING_LABELS)
        assert all(isinstance(v, float) for v in scores.values()) and abs(sum(scores.values()) - 1) < 1e-5
        assert "REPORT RequestId:" in server.stdout()
    assert wait_until_gone(server.mark) == []
