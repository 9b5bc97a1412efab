"""Bundles with their own code: refused unless trusted, checked before they run, then wired in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lambdalite.core.bundle import open_bundle
from lambdalite.errors import BundleError, ChecksumError, ConfigError, InputError, PipelineError, TrustError
from lambdalite.model import load_model
from lambdalite.tasks import load_task

from helpers.images import encode
from helpers.models import TINY_LABELS, TINY_VOCAB
from helpers.pipelines import TOP1, ran, with_code

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
RED = encode(Image.new("RGB", (20, 12), (250, 5, 5)), "PNG")

SWAP_RED_AND_BLUE = """
import numpy as np

def preprocess(image, spec):
    h, w = spec.size
    x = np.asarray(image.resize((w, h)), np.float32) / 255
    return np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1))
"""

WHOLE = """
from lambdalite.engines import load_engine

class Pipeline:
    def setup(self, bundle, *, threads):
        self.engine = load_engine(bundle.manifest.engine, bundle.read("model"), threads=threads)
        self.threads = threads
        self.warm = False

    def warmup(self):
        self.warm = True

    def predict(self, images, **options):
        return [{"size": list(im.size), "mode": im.mode, "options": options, "threads": self.threads,
                 "warm": self.warm, "inputs": [i.name for i in self.engine.inputs]} for im in images]
"""


def test_code_is_refused_unless_trusted(tmp_path):
    bundle = with_code(tmp_path / "b", TOP1)
    with pytest.raises(TrustError) as info:
        load_task(open_bundle(bundle.root), threads=1)
    message = str(info.value)
    assert "carries its own code (pipeline.py)" in message
    assert "--trust-code" in message and "trust_code=True" in message and "LAMBDALITE_TRUST_CODE=1" in message
    assert "\n" not in message
    assert not ran(bundle)


@pytest.mark.parametrize(("value", "trusted"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_load_model_reads_the_environment(tmp_path, monkeypatch, value, trusted):
    bundle = with_code(tmp_path / "b", TOP1)
    monkeypatch.setenv("LAMBDALITE_TRUST_CODE", value)
    if trusted:
        [result] = load_model(str(bundle.root), threads=1).predict([RED])
        assert result["label"] == "red"
    else:
        with pytest.raises(TrustError):
            load_model(str(bundle.root), threads=1)
        assert not ran(bundle)


def test_explicit_trust_wins_over_the_environment(tmp_path, monkeypatch):
    bundle = with_code(tmp_path / "b", TOP1)
    monkeypatch.setenv("LAMBDALITE_TRUST_CODE", "1")
    with pytest.raises(TrustError):
        load_model(str(bundle.root), threads=1, trust_code=False)
    monkeypatch.setenv("LAMBDALITE_TRUST_CODE", "0")
    assert load_model(str(bundle.root), threads=1, trust_code=True).predict([RED])[0]["label"] == "red"


def test_a_bad_trust_setting_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDALITE_TRUST_CODE", "maybe")
    with pytest.raises(ConfigError, match="LAMBDALITE_TRUST_CODE='maybe' is not allowed: .* must be 1 or 0"):
        load_model(str(with_code(tmp_path / "b", TOP1).root), threads=1)


def test_tampered_code_never_runs(tmp_path):
    bundle = with_code(tmp_path / "b", TOP1)
    path = bundle.path("pipeline")
    path.write_text(path.read_text() + "\nprint('extra')\n")
    with pytest.raises(ChecksumError, match="pipeline.py is corrupt: sha256"):
        load_task(open_bundle(bundle.root), threads=1, trust_code=True)
    assert not ran(bundle)


def test_preprocess_replaces_the_built_in_one(tmp_path, tiny_bundle):
    assert load_task(open_bundle(tiny_bundle.root), threads=1).predict([RED])[0][0]["className"] == "red"
    bundle = with_code(tmp_path / "b", SWAP_RED_AND_BLUE)
    [result] = load_task(open_bundle(bundle.root), threads=1, trust_code=True).predict([RED])
    assert result[0]["className"] == "blue"
    assert ran(bundle)


def test_postprocess_shapes_the_result(tmp_path):
    bundle = with_code(tmp_path / "b", TOP1)
    task = load_task(open_bundle(bundle.root), threads=1, trust_code=True)
    [result] = task.predict([RED], top_k=2)
    assert result == {
        "label": "red",
        "confidence": pytest.approx(result["confidence"]),
        "bundle": "tiny",
        "options": {"top_k": 2},
    }
    assert 0.5 < result["confidence"] <= 1
    task.warmup()
    assert task.capabilities.labels == tuple(TINY_LABELS)  # the built-in task's capabilities show through


def test_postprocess_works_for_captioners_too(tmp_path):
    source = """
    def postprocess(result, context):
        return {"text": result["caption"].upper(), "beams": len(result.get("alternatives", [result]))}
    """
    bundle = with_code(tmp_path / "c", source, captioner=True)
    task = load_task(open_bundle(bundle.root), threads=1, trust_code=True)
    gray = encode(Image.new("RGB", (8, 8), (128, 128, 128)), "PNG")
    assert task.predict([gray], beam_size=2) == [{"text": "Y", "beams": 2}]
    assert set(TINY_VOCAB) >= {"y"}


def test_a_pipeline_class_does_the_whole_predict_step(tmp_path):
    bundle = with_code(tmp_path / "b", WHOLE)
    task = load_task(open_bundle(bundle.root), threads=3, trust_code=True)
    task.warmup()
    big = encode(Image.new("RGBA", (30, 10), (1, 2, 3, 0)), "PNG")
    results = task.predict([RED, big], threshold=0.5, tags=["a"])
    assert results == [
        {"size": [20, 12], "mode": "RGB", "options": {"threshold": 0.5, "tags": ["a"]}, "threads": 3, "warm": True,
         "inputs": ["pixels"]},
        {"size": [30, 10], "mode": "RGB", "options": {"threshold": 0.5, "tags": ["a"]}, "threads": 3, "warm": True,
         "inputs": ["pixels"]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("x = 1 / 0", PipelineError, "pipeline.py failed on import: ZeroDivisionError: division by zero"),
        ("def postprocess(r, c):\n    raise ValueError('boom')", PipelineError, "postprocess raised ValueError: boom"),
        (
            "import numpy as np\ndef postprocess(r, c):\n    return np.float32(1)",
            PipelineError,
            "postprocess returned something that is not JSON",
        ),
        (
            "def preprocess(image, spec):\n    return [1, 2]",
            PipelineError,
            "preprocess must return a numpy array, got list",
        ),
        (
            "class Pipeline:\n    def setup(self, b, *, threads): pass\n    def predict(self, images): return []",
            PipelineError,
            "predict must return a list of one result per image (1), got a list of 0",
        ),
        (
            "from lambdalite.errors import InputError\ndef postprocess(r, c):\n    raise InputError('no cats here')",
            InputError,
            "no cats here",
        ),
    ],
)
def test_errors_in_bundle_code(tmp_path, source, error, message):
    bundle = with_code(tmp_path / "b", source)
    with pytest.raises(error) as info:
        load_task(open_bundle(bundle.root), threads=1, trust_code=True).predict([RED])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("VALUE = 1", "pipeline.py defines none of preprocess, postprocess, Pipeline"),
        (WHOLE + TOP1, "pipeline.py defines Pipeline and postprocess: a Pipeline replaces the whole predict step"),
        ("class Pipeline:\n    def setup(self, b, *, threads): pass", "Pipeline has no predict method"),
    ],
)
def test_malformed_pipelines(tmp_path, source, message):
    with pytest.raises(BundleError) as info:
        load_task(open_bundle(with_code(tmp_path / "b", source).root), threads=1, trust_code=True)
    assert message in str(info.value)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=120, env=env)


def test_cli_refuses_then_trusts(tmp_path):
    bundle = with_code(tmp_path / "b", WHOLE)
    img = tmp_path / "red.png"
    img.write_bytes(RED)
    env = {k: v for k, v in os.environ.items() if k != "LAMBDALITE_TRUST_CODE"}
    env["LAMBDALITE_HOME"] = str(tmp_path / "home")
    refused = run("predict", str(bundle.root), str(img), env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "carries its own code" in refused.stderr and "--trust-code" in refused.stderr
    assert not ran(bundle)
    inspected = run("bundle", "inspect", str(bundle.root), env=env)
    assert "carries code: pipeline.py" in inspected.stdout and not ran(bundle)
    trusted = run("predict", str(bundle.root), str(img), "--trust-code", "--json", "-o", "threshold=0.5", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["options"] == {"threshold": 0.5}
    by_env = run(
        "predict", str(bundle.root), str(img), "--json", "-o", "note=hi", env={**env, "LAMBDALITE_TRUST_CODE": "1"}
    )
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["options"] == {"note": "hi"}
