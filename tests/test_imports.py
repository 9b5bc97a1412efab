"""The serving path must stay light: no torch, onnx, click or boto3 on a cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models import write_tiny_captioner

FORBIDDEN = ["torch", "onnx", "click", "boto3", "botocore", "skimage", "scipy", "transformers", "tokenizers"]

SERVING_PATH = """
import json, sys
from lambdalite.model import load_model
model = load_model(sys.argv[1])
model.predict([open(sys.argv[2], "rb").read()], **json.loads(sys.argv[3]))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def serving_modules(bundle_root, tmp_path, options=None, env=None) -> set[str]:
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (9, 9)).save(img)
    proc = subprocess.run(
        [sys.executable, "-c", SERVING_PATH, str(bundle_root), str(img), json.dumps(options or {})],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_serving_path_imports_nothing_heavy(tiny_bundle, tmp_path):
    loaded = serving_modules(tiny_bundle.root, tmp_path)
    assert "onnxruntime" in loaded  # the test really ran the engine
    assert loaded.isdisjoint(FORBIDDEN), loaded & set(FORBIDDEN)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_captioning_path_imports_nothing_heavy(tmp_path, beam_size):
    bundle = write_tiny_captioner(tmp_path / "cap")
    loaded = serving_modules(bundle.root, tmp_path, {"beam_size": beam_size})
    assert "onnxruntime" in loaded
    assert loaded.isdisjoint(FORBIDDEN), loaded & set(FORBIDDEN)


def test_trusted_pipeline_path_imports_nothing_heavy(tmp_path):
    from test_pipeline import TOP1, with_code

    bundle = with_code(tmp_path / "code", TOP1)
    loaded = serving_modules(bundle.root, tmp_path, env={"LAMBDALITE_TRUST_CODE": "1"})
    assert "onnxruntime" in loaded and any(name.startswith("lambdalite_pipeline_") for name in loaded)
    assert loaded.isdisjoint(FORBIDDEN), loaded & set(FORBIDDEN)


TOOLKIT_PATH = """
import json, sys
from lambdalite.cli import cli
from lambdalite.deploy import commands
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


SANDBOX_PATH = """
import json, sys
import lambdalite.runtime.sandbox
print(json.dumps(sorted(sys.modules)))
"""


def test_instance_bootstrap_imports_only_the_sandbox():
    """Every emulator instance runs lambdalite.runtime.sandbox before awslambdaric: it must stay tiny."""
    proc = subprocess.run([sys.executable, "-c", SANDBOX_PATH], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert {m for m in loaded if m.startswith("lambdalite")} == {
        "lambdalite",
        "lambdalite.runtime",
        "lambdalite.runtime.sandbox",
    }
    assert loaded.isdisjoint([*FORBIDDEN, "asyncio", "subprocess", "numpy", "PIL"]), loaded


REMOTE_MODULES = """
import json, sys
import lambdalite.sources, lambdalite.remote, lambdalite.https, lambdalite.importer, lambdalite.function
from lambdalite.sources import reference_from_env
reference_from_env({"MODEL_BUCKET": "b", "MODEL_KEY": "k"})
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_deploy_commands_load_aws_libraries_only_when_run():
    """`lambdalite --help` and the build/deploy commands' definitions import no boto3 or SAM translator."""
    proc = subprocess.run([sys.executable, "-c", TOOLKIT_PATH], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert "click" in loaded
    heavy = {"boto3", "botocore", "samtranslator", "cfnlint", "numpy", "onnxruntime", "torch"}
    assert loaded.isdisjoint(heavy), loaded & heavy


def test_remote_sources_load_boto3_only_for_an_s3_download():
    """Naming an s3:// model costs nothing until it is downloaded (tests/test_s3.py covers that)."""
    proc = subprocess.run([sys.executable, "-c", REMOTE_MODULES], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert loaded.isdisjoint([*FORBIDDEN, "ai_edge_litert", "onnxruntime"]), loaded & {*FORBIDDEN, "onnxruntime"}
