"""`lambdalite tune` against a real deployed function: the same code path as against serve.

Opt-in only (marker `aws`, deselected unless LAMBDALITE_AWS_TESTS=1): it needs credentials, a
region (AWS_REGION) and a deployed lambdalite function named by LAMBDALITE_TUNE_FUNCTION (e.g.
`lambdalite deploy efficientnet-lite0 --stack tune-test --create-bucket`). It changes the
function's memory for a minute and restores it; a few dozen invocations are billed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdalite.toolkit.tune.sweep import NONCE

pytestmark = pytest.mark.aws

LAMBDALITE = Path(sys.executable).parent / "lambdalite"


def test_tune_a_deployed_function(tmp_path, chelsea_path):
    function = os.environ.get("LAMBDALITE_TUNE_FUNCTION")
    if not function:
        pytest.fail("set LAMBDALITE_TUNE_FUNCTION to a deployed lambdalite function's name")
    import boto3

    client = boto3.client("lambda")
    before = client.get_function_configuration(FunctionName=function)
    proc = subprocess.run(
        [str(LAMBDALITE), "tune", function, "--memory", "1024,2048", "--image", str(chelsea_path),
         "--cold", "1", "--warm", "3", "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "tune.json").read_text())
    assert [r["memory_mb"] for r in data["rows"]] == [1024, 2048]
    for sample in data["samples"]:
        assert sample["error"] is None
        assert (sample["init_ms"] is not None) == sample["cold"]
        assert sample["billed_ms"] >= sample["duration_ms"]
    assert sum(s["cold"] for s in data["samples"]) == 2
    after = client.get_function_configuration(FunctionName=function)
    assert after["MemorySize"] == before["MemorySize"]
    assert NONCE not in after.get("Environment", {}).get("Variables", {})
    assert (tmp_path / "tune.png").stat().st_size > 10_000
