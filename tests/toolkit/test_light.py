"""The toolkit stays light where it is on a path users wait on: each emulator instance's bootstrap,
`lambdalite --help`, and naming a remote model."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {"torch", "onnx", "boto3", "botocore", "skimage", "scipy", "samtranslator", "cfnlint"}

SANDBOX_PATH = """
import json, sys
import lambdalite.toolkit.local.sandbox
print(json.dumps(sorted(sys.modules)))
"""


def run(script: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_instance_bootstrap_imports_only_the_sandbox():
    """Every emulator instance runs lambdalite.toolkit.local.sandbox before awslambdaric: it must stay tiny."""
    loaded = run(SANDBOX_PATH)
    assert {m for m in loaded if m.startswith("lambdalite")} == {
        "lambdalite",
        "lambdalite.toolkit",
        "lambdalite.toolkit.local",
        "lambdalite.toolkit.local.sandbox",
    }
    assert loaded.isdisjoint([*HEAVY, "click", "asyncio", "subprocess", "numpy", "PIL"]), loaded


TOOLKIT_PATH = """
import json, sys
from lambdalite.toolkit.cli import cli
from lambdalite.toolkit.deploy import commands
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_deploy_commands_load_aws_libraries_only_when_run():
    """`lambdalite --help` and the build/deploy commands' definitions import no boto3 or SAM translator."""
    loaded = run(TOOLKIT_PATH)
    assert "click" in loaded
    assert loaded.isdisjoint(HEAVY | {"numpy", "onnxruntime"}), loaded & (HEAVY | {"numpy", "onnxruntime"})


REMOTE_MODULES = """
import json, sys
import lambdalite.sources.references, lambdalite.sources.remote, lambdalite.sources.https, lambdalite.sources.plain
import lambdalite.function.app
from lambdalite.settings import Settings
from lambdalite.sources.references import configured_reference
configured_reference(Settings.from_env({"MODEL_BUCKET": "b", "MODEL_KEY": "k"}))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_remote_sources_load_boto3_only_for_an_s3_download():
    """Naming an s3:// model costs nothing until it is downloaded (tests/sources/test_s3.py covers that)."""
    loaded = run(REMOTE_MODULES)
    assert loaded.isdisjoint(HEAVY | {"click", "ai_edge_litert", "onnxruntime"})
