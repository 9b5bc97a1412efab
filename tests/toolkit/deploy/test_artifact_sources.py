"""The built function.zip, unzipped and run on its own, loads every model source the README lists.

Each case runs the artifact as Lambda's Python runtime does: a fresh, isolated interpreter
(python3.12, the runtime the zip is built for) whose path holds the task root, what Lambda's
runtime provides (boto3 and its dependencies, taken from this machine as /var/runtime would
hold them) and the standard library; lambdalite and every other package come from the zip.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from lambdalite.core.bundle import open_bundle, pack_bundle

from helpers.models import TINY_LABELS, tiny_classifier_onnx, write_tiny_bundle
from helpers.servers import https_site

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")

RUN = """
import base64, json, os, sys
sys.path[:] = [os.environ["LAMBDA_TASK_ROOT"], os.environ["RUNTIME_DIR"]] + [
    p for p in sys.path if p and "-packages" not in p
]
from lambdalite.handler import handler
print("RESULT " + json.dumps(handler({"image": sys.argv[1]}, None)))
outside = sorted(
    m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and "-packages" in m.__file__
)
print("OUTSIDE " + json.dumps(outside))
"""


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, artifact_python: str) -> tuple[Path, Path]:
    """(task root, runtime dir): `lambdalite build` of the tiny bundle, unzipped as Lambda unzips it."""
    tmp = tmp_path_factory.mktemp("artifact")
    bundle = write_tiny_bundle(tmp / "tiny")
    env = {**os.environ, "PATH": f"{Path(artifact_python).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(LAMBDALITE), "build", str(bundle.root), "--no-compile", "-o", str(tmp / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
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


def invoke(artifact: tuple[Path, Path], python: str, home: Path, **env: str) -> Any:
    """One cold start of the unzipped function with `env`, and one request: the result."""
    task_root, runtime = artifact
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 0, 250)).save(buf, "PNG")
    base = {
        "LAMBDA_TASK_ROOT": str(task_root),
        "RUNTIME_DIR": str(runtime),
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LAMBDALITE_HOME": str(home / "cache"),
    }
    proc = subprocess.run(
        [python, "-I", "-S", "-c", RUN, base64.b64encode(buf.getvalue()).decode()],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=home,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("RESULT ", "OUTSIDE ")))
    outside = [f for f in json.loads(lines["OUTSIDE"]) if not f.startswith((str(task_root), str(runtime)))]
    assert outside == [], outside  # nothing from this machine's site-packages
    return json.loads(lines["RESULT"])


def plain_onnx_archive(path: Path) -> Path:
    """An ONNX model and classes.txt, no lambdalite.json: made a bundle at run time."""
    return tar_gz(path, {"model.onnx": tiny_classifier_onnx(), "classes.txt": ("\n".join(TINY_LABELS)).encode()})


def sagemaker_archive(path: Path) -> Path:
    """SageMaker's layout: the model, TorchServe's index_to_name.json and the inference code."""
    names = json.dumps({str(i): [f"n{i:08d}", label] for i, label in enumerate(TINY_LABELS)}).encode()
    return tar_gz(
        path,
        {
            "model.onnx": tiny_classifier_onnx(),
            "index_to_name.json": names,
            "code/inference.py": b"def model_fn(model_dir):\n    raise NotImplementedError\n",
            "code/requirements.txt": b"onnxruntime\n",
        },
    )


def packed_bundle(path: Path, tmp: Path) -> Path:
    bundle = write_tiny_bundle(tmp / "packed")
    pack_bundle(open_bundle(bundle.root), path)
    return path


def archive_of(kind: str, tmp: Path) -> Path:
    path = tmp / "model.tar.gz"
    return {"bundle": lambda: packed_bundle(path, tmp), "plain-onnx": lambda: plain_onnx_archive(path)}.get(
        kind, lambda: sagemaker_archive(path)
    )()


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory):
    with https_site(tmp_path_factory.mktemp("tls")) as served:
        yield served


def test_a_bundle_in_the_zip(artifact, artifact_python, tmp_path):
    assert invoke(artifact, artifact_python, tmp_path)[0]["className"] == "blue"


@pytest.mark.parametrize("kind", ["bundle", "plain-onnx", "sagemaker"])
def test_an_archive_over_https(artifact, artifact_python, tmp_path, https, kind):
    site, base, cert = https
    make = {
        "bundle": lambda p: packed_bundle(p, tmp_path),
        "plain-onnx": plain_onnx_archive,
        "sagemaker": sagemaker_archive,
    }
    archive = make[kind](tmp_path / "model.tar.gz")
    site.routes[f"/{kind}/model.tar.gz"] = (200, archive.read_bytes(), {})
    result = invoke(
        artifact, artifact_python, tmp_path, LAMBDALITE_MODEL=f"{base}/{kind}/model.tar.gz", SSL_CERT_FILE=str(cert)
    )
    assert result[0]["className"] == "blue"


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


@pytest.mark.parametrize("kind", ["bundle", "plain-onnx", "sagemaker"])
def test_an_archive_in_s3(artifact, artifact_python, tmp_path, aws_env, kind):
    make = {
        "bundle": lambda p: packed_bundle(p, tmp_path),
        "plain-onnx": plain_onnx_archive,
        "sagemaker": sagemaker_archive,
    }
    archive = make[kind](tmp_path / "model.tar.gz")
    client = boto3.session.Session().client("s3")
    client.create_bucket(Bucket=f"artifact-{kind}")
    client.upload_file(str(archive), f"artifact-{kind}", "models/model.tar.gz")
    env = s3_env(aws_env)
    result = invoke(
        artifact, artifact_python, tmp_path, LAMBDALITE_MODEL=f"s3://artifact-{kind}/models/model.tar.gz", **env
    )
    assert result[0]["className"] == "blue"


def test_seed004_model_bucket_and_key(artifact, artifact_python, tmp_path, aws_env):
    archive = sagemaker_archive(tmp_path / "model.tar.gz")
    client = boto3.session.Session().client("s3")
    client.create_bucket(Bucket="artifact-seed004")
    client.upload_file(str(archive), "artifact-seed004", "model.tar.gz")
    result = invoke(
        artifact,
        artifact_python,
        tmp_path,
        MODEL_BUCKET="artifact-seed004",
        MODEL_KEY="model.tar.gz",
        LAMBDALITE_RESPONSE="top1",
        **s3_env(aws_env),
    )
    assert result["statusCode"] == 200 and result["body"]["class"] == "blue"  # seed 004's envelope
