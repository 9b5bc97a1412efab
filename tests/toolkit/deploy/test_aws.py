"""The whole round trip on real AWS: deploy the demo model, POST the cat, read the logs, destroy.

Opt-in only (marker `aws`, deselected unless LAMBDALITE_AWS_TESTS=1): it needs credentials, a
region (AWS_REGION) and creates billable resources for a few minutes. Everything it creates is
destroyed at the end, also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from helpers import CAT_CLASSES

pytestmark = pytest.mark.aws

LAMBDALITE = Path(sys.executable).parent / "lambdalite"


def lambdalite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=1800)


def post_image(url: str, data: bytes) -> list[dict[str, object]]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
    deadline = time.monotonic() + 120  # a new API or URL can take a little while to answer
    while True:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                result: list[dict[str, object]] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as exc:
            if exc.code not in (403, 404, 503) or time.monotonic() > deadline:
                raise
            time.sleep(5)


def test_deploy_answer_and_destroy(lite0_build, chelsea_jpeg):
    out, _ = lite0_build
    stack = f"lambdalite-test-{uuid.uuid4().hex[:8]}"
    try:
        deployed = lambdalite("deploy", str(out), "--stack", stack, "--create-bucket", "--function-url")
        assert deployed.returncode == 0, deployed.stderr
        import boto3

        [described] = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        for key in ("Endpoint", "FunctionUrl"):
            assert outputs[key] in deployed.stdout  # deploy printed it
            result = post_image(outputs[key], chelsea_jpeg)
            assert result[0]["className"] in CAT_CLASSES, (key, result)
        time.sleep(10)  # CloudWatch Logs delivery lags the invoke
        logs = lambdalite("logs", "--stack", stack, "--since", "30m", "--filter", "cold_start")
        assert logs.returncode == 0, logs.stderr
        assert '"event":"cold_start"' in logs.stdout
    finally:
        destroyed = lambdalite("destroy", "--stack", stack, "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
    assert os.environ.get("LAMBDALITE_AWS_TESTS") == "1"
