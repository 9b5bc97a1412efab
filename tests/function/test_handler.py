"""The real entry point, `lambdalite.handler.handler`, as Lambda imports it: in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import base64, json, sys
from lambdalite.handler import handler
event = {"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}
print("RESULT " + json.dumps(handler(event, None)))
print("MODULES " + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
print("OURS " + json.dumps(sorted(name for name in sys.modules if name.startswith("lambdalite"))))
"""


def run(env_extra: dict[str, str], image) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(image)], capture_output=True, text=True, env=env, timeout=120
    )


def test_handler_loads_at_init_and_answers(tiny_bundle, tmp_path):
    from PIL import Image

    img = tmp_path / "red.png"
    Image.new("RGB", (12, 12), (250, 0, 0)).save(img)
    proc = run({"LAMBDALITE_MODEL": str(tiny_bundle.root)}, img)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    cold = json.loads(lines[0])
    assert cold["event"] == "cold_start"
    for phase in ("importsMs", "modelFetchMs", "sessionMs", "firstRunMs", "initMs"):
        assert cold[phase] >= 0
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result[0]["className"] == "red"
    modules = set(json.loads(next(line for line in lines if line.startswith("MODULES "))[8:]))
    assert "onnxruntime" in modules
    assert modules.isdisjoint({"torch", "onnx", "click", "boto3", "botocore", "skimage"}), modules
    ours = set(json.loads(next(line for line in lines if line.startswith("OURS "))[5:]))
    # Only what this bundle needs: no bundle code support, no fetchers, no emulator, no deployer.
    assert ours.isdisjoint(
        {
            "lambdalite.tasks.pipeline",
            "lambdalite.function.urls",
            "lambdalite.sources.remote",
            "lambdalite.sources.s3",
            "lambdalite.core.archive",
            "lambdalite.toolkit.cli",
            "lambdalite.toolkit.local",
            "lambdalite.toolkit.deploy",
        }
    ), ours


def test_bundle_shipped_next_to_the_code(tiny_bundle, tmp_path):
    import shutil

    from PIL import Image

    task_root = tmp_path / "task"
    shutil.copytree(tiny_bundle.root, task_root / "model")
    img = tmp_path / "blue.png"
    Image.new("RGB", (12, 12), (0, 0, 250)).save(img)
    proc = run({"LAMBDA_TASK_ROOT": str(task_root)}, img)
    assert proc.returncode == 0, proc.stderr
    assert '"className": "blue"' in proc.stdout


def test_init_failure_is_one_clear_error(tmp_path):
    proc = run({"LAMBDA_TASK_ROOT": str(tmp_path)}, tmp_path / "x.png")
    assert proc.returncode != 0
    assert "ModelNotFoundError: no model configured" in proc.stderr
