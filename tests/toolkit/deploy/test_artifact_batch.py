"""The built function.zip, unzipped and run on its own, answers an SQS batch: it reads the images
from S3 (moto over HTTP) with the boto3 that Lambda's runtime provides, writes a result per
image and reports the one message whose image is not one."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from PIL import Image

from helpers.models import write_tiny_bundle

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")

RUN = """
import json, os, sys
sys.path[:] = [os.environ["LAMBDA_TASK_ROOT"], os.environ["RUNTIME_DIR"]] + [
    p for p in sys.path if p and "-packages" not in p
]
from lambdalite.handler import handler
print("RESULT " + json.dumps(handler(json.loads(sys.argv[1]), None)))
"""


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, artifact_python: str) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("artifact")
    bundle = write_tiny_bundle(tmp / "tiny")
    env = {**os.environ, "PATH": f"{Path(artifact_python).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [str(LAMBDALITE), "build", str(bundle.root), "--no-compile", "-o", str(tmp / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    task_root = tmp / "task"
    with zipfile.ZipFile(tmp / "out" / "function.zip") as zf:
        zf.extractall(task_root)
    runtime = tmp / "runtime"  # what Lambda's runtime has on its path besides the function's code
    runtime.mkdir()
    site = Path(boto3.__file__).resolve().parent.parent
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site / name)
    return task_root, runtime


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, "PNG")
    return buf.getvalue()


def test_the_unzipped_function_answers_an_sqs_batch_from_s3(artifact, artifact_python, aws_env, tmp_path):
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket="artifact-batch")
    s3.put_object(Bucket="artifact-batch", Key="in/blue.png", Body=png((0, 0, 250)))
    event = {
        "Records": [
            {"messageId": "m-blue", "eventSource": "aws:sqs", "body": "s3://artifact-batch/in/blue.png"},
            {"messageId": "m-green", "eventSource": "aws:sqs", "body": base64.b64encode(png((0, 250, 0))).decode()},
            {"messageId": "m-text", "eventSource": "aws:sqs", "body": base64.b64encode(b"plain text").decode()},
        ]
    }
    task_root, runtime = artifact
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env.update(
        LAMBDA_TASK_ROOT=str(task_root),
        RUNTIME_DIR=str(runtime),
        PATH="/usr/bin:/bin",
        HOME=str(tmp_path),
        LAMBDALITE_HOME=str(tmp_path / "cache"),
        LAMBDALITE_OUTPUT="s3://artifact-batch/out",
    )
    proc = subprocess.run(
        [artifact_python, "-I", "-S", "-c", RUN, json.dumps(event)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert json.loads(line.removeprefix("RESULT ")) == {"batchItemFailures": [{"itemIdentifier": "m-text"}]}
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifact-batch", Prefix="out/")["Contents"])
    assert len(keys) == 2 and "out/in/blue.png.json" in keys
    tops = {
        json.loads(s3.get_object(Bucket="artifact-batch", Key=k)["Body"].read())["result"][0]["className"] for k in keys
    }
    assert tops == {"blue", "green"}
