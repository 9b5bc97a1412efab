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


def post_image(url: str, data: bytes, key: str | None = None) -> list[dict[str, object]]:
    headers = {"Content-Type": "image/jpeg", **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
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
        deployed = lambdalite("deploy", str(out), "--stack", stack, "--create-bucket")  # the default: api-key
        assert deployed.returncode == 0, deployed.stderr
        import boto3

        [described] = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        assert outputs["Endpoint"] in deployed.stdout  # deploy printed it
        key = lambdalite("api-key", "--stack", stack)
        assert key.returncode == 0, key.stderr
        value = key.stdout.strip()
        assert f"API key       {value}" in deployed.stdout  # printed once by deploy, the same key
        result = post_image(outputs["Endpoint"], chelsea_jpeg, key=value)
        assert result[0]["className"] in CAT_CLASSES, result
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(outputs["Endpoint"], data=b"x", method="POST"), timeout=60)
        assert refused.value.code == 403 and json.loads(refused.value.read()) == {"message": "Forbidden"}
        time.sleep(10)  # CloudWatch Logs delivery lags the invoke
        logs = lambdalite("logs", "--stack", stack, "--since", "30m", "--filter", "cold_start")
        assert logs.returncode == 0, logs.stderr
        assert '"event":"cold_start"' in logs.stdout
    finally:
        destroyed = lambdalite("destroy", "--stack", stack, "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
    assert os.environ.get("LAMBDALITE_AWS_TESTS") == "1"
