"""The cold path is an allow-list: exactly these modules, and nothing heavy, on a function's init.

Each test runs the real entry point in a fresh interpreter, as Lambda does, and compares what it
imported with the exact set a function of that kind may import. A new import on the cold path
fails here until it is added on purpose (and its cost measured: BENCHMARKS.md, cold start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.cold_path import THIRD_PARTY, serving_imports
from helpers.models import write_tiny_captioner
from helpers.pipelines import TOP1, with_code

# What any function imports of lambdalite, whatever it serves.
BASE = {
    "lambdalite",
    "lambdalite.handler",
    "lambdalite.errors",
    "lambdalite.settings",
    "lambdalite.model",
    "lambdalite.core",
    "lambdalite.core.bundle",
    "lambdalite.core.cache",
    "lambdalite.core.images",
    "lambdalite.core.progress",
    "lambdalite.engines",
    "lambdalite.engines.onnx",
    "lambdalite.function",
    "lambdalite.function.app",
    "lambdalite.function.events",
    "lambdalite.function.inputs",
    "lambdalite.function.logs",
    "lambdalite.function.oip",
    "lambdalite.function.routes",
    "lambdalite.function.types",
    "lambdalite.function.web",
    "lambdalite.sources",
    "lambdalite.sources.references",
    "lambdalite.sources.zoo",
    "lambdalite.tasks",
    "lambdalite.tasks.base",
}
CLASSIFIER = BASE | {"lambdalite.tasks.classification"}
# generation: generate's search rules, which every captioner's decoding loop runs (0.8 ms to import).
CAPTIONER = BASE | {"lambdalite.tasks.captioning", "lambdalite.tasks.generation"}
TRUSTED_CODE = CLASSIFIER | {"lambdalite.tasks.pipeline"}
# A SnapStart init (it runs once per published version, not per instance) registers the hooks.
SNAPSTART = CLASSIFIER | {"lambdalite.function.snapstart"}

SCRIPT = """
import base64, io, json, sys
before = set(sys.modules)
from lambdalite.handler import handler
from PIL import Image
buf = io.BytesIO()
Image.new("RGB", (20, 20), (250, 0, 0)).save(buf, "PNG")
image = base64.b64encode(buf.getvalue()).decode()
handler({"image": image}, None)  # a direct invoke
handler({"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "POST", "path": "/"}},
         "headers": {"content-type": "image/png"}, "body": image, "isBase64Encoded": True}, None)  # HTTP API
new = set(sys.modules) - before
print("OURS " + json.dumps(sorted(m for m in new if m.startswith("lambdalite"))))
tops = {m.split(".")[0] for m in new if not m.startswith("lambdalite")}
print("TOP " + json.dumps(sorted(tops - set(sys.stdlib_module_names))))
"""


def cold_start(model: str, **env: str) -> tuple[set[str], set[str]]:
    """(lambdalite modules, third-party top-level packages) that a cold start and two requests import."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "LAMBDALITE_MODEL": model, **env},
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("OURS ", "TOP ")))
    return set(json.loads(lines["OURS"])), set(json.loads(lines["TOP"]))


def test_a_classifier_imports_exactly_the_allowed_modules(tiny_bundle):
    ours, third_party = cold_start(str(tiny_bundle.root))
    assert ours == CLASSIFIER, {"unexpected": ours - CLASSIFIER, "missing": CLASSIFIER - ours}
    assert third_party <= THIRD_PARTY, third_party - THIRD_PARTY
    assert "onnxruntime" in third_party  # the engine really ran


def test_a_captioner_imports_exactly_the_allowed_modules(tmp_path):
    ours, third_party = cold_start(str(write_tiny_captioner(tmp_path / "cap").root))
    assert ours == CAPTIONER, {"unexpected": ours - CAPTIONER, "missing": CAPTIONER - ours}
    assert third_party <= THIRD_PARTY, third_party - THIRD_PARTY


def test_trusted_bundle_code_adds_only_the_pipeline_module(tmp_path):
    bundle = with_code(tmp_path / "code", TOP1)
    ours, third_party = cold_start(str(bundle.root), LAMBDALITE_TRUST_CODE="1")
    code = {m for m in ours if m.startswith("lambdalite_pipeline_")}  # the bundle's own pipeline.py
    assert len(code) == 1
    ours -= code
    assert ours == TRUSTED_CODE, {"unexpected": ours - TRUSTED_CODE, "missing": TRUSTED_CODE - ours}
    assert third_party <= THIRD_PARTY, third_party - THIRD_PARTY


@pytest.mark.parametrize("beam_size", [1, 3])
def test_captioning_search_imports_nothing_more(tmp_path, beam_size):
    bundle = write_tiny_captioner(tmp_path / "cap")
    assert serving_imports(bundle.root, tmp_path, {"beam_size": beam_size}) <= THIRD_PARTY


def test_a_snapstart_init_adds_only_its_hooks_and_the_runtimes_hook_registry(tiny_bundle):
    ours, third_party = cold_start(str(tiny_bundle.root), AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    assert ours == SNAPSTART, {"unexpected": ours - SNAPSTART, "missing": SNAPSTART - ours}
    assert third_party <= THIRD_PARTY | {"snapshot_restore_py"}, third_party - THIRD_PARTY
    assert "snapshot_restore_py" in third_party  # the hooks went to the runtime's own registry


BATCH_PATH = """
import base64, io, json, sys
from lambdalite.handler import handler
from PIL import Image
buf = io.BytesIO()
Image.new("RGB", (20, 20), (250, 0, 0)).save(buf, "PNG")
image = base64.b64encode(buf.getvalue()).decode()
handler({"image": image}, None)
before = set(sys.modules)
print("DIRECT " + json.dumps(sorted(m for m in before if m.startswith(("lambdalite.function.batch", "boto3")))))
sqs = {"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": image}]}
print("ANSWER " + json.dumps(handler(sqs, None)))
new = set(sys.modules) - before
print("BATCH " + json.dumps(sorted(m for m in new if m.startswith("lambdalite"))))
print("TOP " + json.dumps(sorted({m.split(".")[0] for m in new} - set(sys.stdlib_module_names) - {"lambdalite"})))
"""
# What the first batch event adds, and only then: reading the event, and S3 through boto3.
BATCH_SOURCES = {"lambdalite.function.batch", "lambdalite.function.storage"}


def test_batch_sources_and_boto3_load_only_when_a_batch_event_arrives(tiny_bundle):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    proc = subprocess.run(
        [sys.executable, "-c", BATCH_PATH],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "LAMBDALITE_MODEL": str(tiny_bundle.root)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ")[0].isupper())
    assert json.loads(lines["DIRECT"]) == []  # a direct invoke and the init never import them
    assert json.loads(lines["ANSWER"]) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}  # no LAMBDALITE_OUTPUT
    assert set(json.loads(lines["BATCH"])) == BATCH_SOURCES
    assert {"boto3", "botocore"} <= set(json.loads(lines["TOP"]))
