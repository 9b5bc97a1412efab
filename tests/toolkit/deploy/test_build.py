"""`lambdalite build`: the real artifact for the demo model, complete and within Lambda's limits."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lambdalite.toolkit.deploy.artifact import MAX_UNZIPPED, MAX_ZIPPED_UPLOAD, write_zip
from lambdalite.toolkit.deploy.build import BUILD_RECORD, read_build

from helpers import CAT_CLASSES, FIXTURES

LAMBDALITE = Path(sys.executable).parent / "lambdalite"

# Run the unzipped artifact as Lambda's python runtime does: a fresh interpreter whose sys.path
# holds the task root and the standard library only (no site-packages, so nothing from this venv).
RUN_ARTIFACT = """
import base64, json, os, sys
sys.path[:] = [os.environ["LAMBDA_TASK_ROOT"]] + [p for p in sys.path if "-packages" not in p and p]
from lambdalite.handler import handler
event = {"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}
print("RESULT " + json.dumps(handler(event, None)))
if len(sys.argv) > 2:
    print("GATEWAY " + json.dumps(handler(json.loads(sys.argv[2]), None)))
files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
print("FILES " + json.dumps(sorted(f for f in files if f)))
print("MODULES " + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def lint(path: Path) -> list[str]:
    """cfn-lint's errors (not warnings or informational matches) for a template file."""
    from cfnlint.api import lint_file

    return [str(m) for m in lint_file(path) if m.rule.id.startswith("E")]


def test_build_writes_zip_template_and_size_report(lite0_build):
    out, printed = lite0_build
    assert (out / "function.zip").is_file()
    assert (out / "template.yaml").is_file()
    record = json.loads((out / BUILD_RECORD).read_text())
    assert record["target"] == {"python": "3.12", "arch": "x86_64"}
    # The report names every package with its size, and the limits.
    for package in ("numpy", "onnxruntime", "pillow", "lambdalite", "model (efficientnet-lite0)"):
        assert package in printed
    assert "of Lambda's 250 MB" in printed
    assert "50 MB direct upload limit" in printed
    total = next(line for line in printed.splitlines() if line.strip().startswith("total"))
    assert "MB" in total


def test_zip_is_within_lambdas_limits(lite0_build):
    out, _ = lite0_build
    path = out / "function.zip"
    with zipfile.ZipFile(path) as zf:
        unzipped = sum(info.file_size for info in zf.infolist())
        names = zf.namelist()
    assert path.stat().st_size <= MAX_ZIPPED_UPLOAD, f"{path.stat().st_size / 2**20:.1f} MB zipped"
    assert unzipped <= MAX_UNZIPPED, f"{unzipped / 2**20:.1f} MB unzipped"
    # What was slimmed is really gone, and what the function needs is there.
    assert not any("/tests/" in n or n.startswith("onnxruntime/transformers/") for n in names)
    assert not any(n.startswith(("onnxruntime/quantization/", "onnxruntime/tools/")) for n in names)
    assert "lambdalite/handler.py" in names and "model/lambdalite.json" in names
    assert not any(n.startswith("lambdalite/toolkit/") for n in names)
    assert "lambdalite/function/page/index.html" in names  # package data ships too
    assert not any(n.startswith(("boto3/", "click/", "torch/")) for n in names)
    assert any(n.endswith(".cpython-312.pyc") for n in names)  # precompiled for the runtime


def test_unzipped_artifact_answers_the_cat_photo(lite0_build, artifact_python, chelsea_path, tmp_path):
    out, _ = lite0_build
    task_root = tmp_path / "task"
    with zipfile.ZipFile(out / "function.zip") as zf:
        zf.extractall(task_root)
    gateway = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "image/jpeg"},
        "requestContext": {"http": {"method": "POST", "path": "/", "sourceIp": "1.2.3.4"}, "requestId": "r1"},
        "body": base64.b64encode(chelsea_path.read_bytes()).decode(),
        "isBase64Encoded": True,
    }
    env = {"LAMBDA_TASK_ROOT": str(task_root), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [artifact_python, "-I", "-S", "-c", RUN_ARTIFACT, str(chelsea_path), json.dumps(gateway)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert result[0]["className"] in CAT_CLASSES
    answer = json.loads(next(line for line in lines if line.startswith("GATEWAY "))[8:])
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])[0]["className"] in CAT_CLASSES
    files = json.loads(next(line for line in lines if line.startswith("FILES "))[6:])
    outside = [f for f in files if not f.startswith(str(task_root)) and "site-packages" in f]
    assert outside == []  # everything third-party came from the artifact
    modules = set(json.loads(next(line for line in lines if line.startswith("MODULES "))[8:]))
    assert {"numpy", "onnxruntime", "PIL"} <= modules
    assert modules.isdisjoint({"click", "boto3", "botocore", "torch", "onnx"})


def test_template_passes_cfn_lint(lite0_build):
    out, _ = lite0_build
    template = yaml.safe_load((out / "template.yaml").read_text())
    function = template["Resources"]["Function"]["Properties"]
    assert function["Handler"] == "lambdalite.handler.handler"
    assert function["Runtime"] == "python3.12"
    assert function["CodeUri"] == "function.zip"
    assert function["Environment"]["Variables"]["LAMBDALITE_MODEL"] == "/var/task/model"
    assert lint(out / "template.yaml") == []


def test_read_build_notices_a_changed_artifact(lite0_build, tmp_path):
    out, _ = lite0_build
    build = read_build(out)
    assert build.artifact("function") is not None
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("function.zip", "template.yaml", BUILD_RECORD):
        (copy / name).write_bytes((out / name).read_bytes())
    with (copy / "function.zip").open("ab") as f:
        f.write(b"junk")
    from lambdalite.errors import BuildError

    with pytest.raises(BuildError, match="changed since it was built"):
        read_build(copy)


def test_image_recipe(tmp_path, demo_bundle):
    out = tmp_path / "img"
    proc = subprocess.run(
        [str(LAMBDALITE), "build", "efficientnet-lite0", "--format", "image", "--arch", "arm64", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    context = out / "image"
    dockerfile = (context / "Dockerfile").read_text()
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms == ["FROM public.ecr.aws/lambda/python:3.12-arm64"]
    cmd = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert cmd == ['CMD ["lambdalite.handler.handler"]']
    module, func = json.loads(cmd[0][4:])[0].rsplit(".", 1)
    assert (context / Path(*module.split("."))).with_suffix(".py").is_file() and func == "handler"
    assert "COPY model/ ${LAMBDA_TASK_ROOT}/model/" in dockerfile
    assert (context / "model" / "lambdalite.json").is_file() and (context / "model" / "model.onnx").is_file()
    requirements = (context / "requirements.txt").read_text().splitlines()
    assert [r.split(" ")[0] for r in requirements] == ["numpy==2.4.6", "pillow==13.0.0", "onnxruntime==1.31.1"]
    assert all("--hash=sha256:" in r for r in requirements)
    assert not (context / "lambdalite" / "cli.py").exists()
    template = yaml.safe_load((out / "template.yaml").read_text())
    function = template["Resources"]["Function"]
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Properties"]["Architectures"] == ["arm64"]
    assert function["Metadata"]["DockerContext"] == "image"
    assert "docker build --platform linux/arm64 --provenance=false" in proc.stdout


def test_python311_is_refused_with_the_reason(tmp_path, tiny_bundle):
    proc = subprocess.run(
        [str(LAMBDALITE), "build", str(tiny_bundle.root), "--python", "3.11", "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert "publishes no wheel for python3.11" in error and "Amazon Linux 2" in error and "--python 3.12" in error


def test_write_zip_is_reproducible(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "b.py").write_text("b = 2\n")
    (tree / "pkg" / "a.py").write_text("a = 1\n")
    (tree / "tool").write_text("#!/bin/sh\n")
    (tree / "tool").chmod(0o755)
    first = write_zip(tmp_path / "one.zip", [(tree, "")])
    import os
    import time

    os.utime(tree / "pkg" / "a.py", (time.time() - 3600, time.time() - 3600))
    second = write_zip(tmp_path / "two.zip", [(tree, "")])
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["pkg/a.py", "pkg/b.py", "tool"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [(i.external_attr >> 16) & 0o777 for i in infos] == [0o644, 0o644, 0o755]


def test_layer_build_splits_dependencies_and_still_answers(tmp_path, tiny_bundle, artifact_python):
    from PIL import Image

    out = tmp_path / "out"
    proc = subprocess.run(
        [str(LAMBDALITE), "build", str(tiny_bundle.root), "--layer", "--no-compile", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer.zip" in proc.stdout and "(--no-compile)" in proc.stdout
    with zipfile.ZipFile(out / "function.zip") as zf:
        function_names = zf.namelist()
    with zipfile.ZipFile(out / "layer.zip") as zf:
        layer_names = zf.namelist()
    assert {n.split("/")[0] for n in function_names} == {"lambdalite", "model"}
    assert {n.split("/")[0] for n in layer_names} == {"python"}
    assert "python/numpy/__init__.py" in layer_names and "python/onnxruntime/__init__.py" in layer_names
    template = yaml.safe_load((out / "template.yaml").read_text())
    assert template["Resources"]["Function"]["Properties"]["Layers"] == [{"Ref": "DependenciesLayer"}]
    assert template["Resources"]["DependenciesLayer"]["Properties"]["ContentUri"] == "layer.zip"
    assert lint(out / "template.yaml") == []

    # Lambda unzips the code to /var/task and the layer to /opt; /opt/python is on sys.path.
    task, opt = tmp_path / "task", tmp_path / "opt"
    zipfile.ZipFile(out / "function.zip").extractall(task)
    zipfile.ZipFile(out / "layer.zip").extractall(opt)
    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (250, 5, 5)).save(image)
    script = RUN_ARTIFACT.replace(
        '[os.environ["LAMBDA_TASK_ROOT"]]', f'[os.environ["LAMBDA_TASK_ROOT"], {str(opt / "python")!r}]'
    )
    run = subprocess.run(
        [artifact_python, "-I", "-S", "-c", script, str(image)],
        capture_output=True,
        text=True,
        env={"LAMBDA_TASK_ROOT": str(task), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result[0]["className"] == "red"


def test_over_the_limit_names_the_biggest_packages(tmp_path):
    from lambdalite.errors import BuildError
    from lambdalite.toolkit.deploy.artifact import Artifact, PackageSize
    from lambdalite.toolkit.deploy.build import Build, BuildOptions, check_limits

    packages = (
        PackageSize("model (big)", "1", 3, 200 * 2**20, 190 * 2**20),
        PackageSize("onnxruntime", "1.31.1", 26, 30 * 2**20, 11 * 2**20),
        PackageSize("numpy", "2.4.6", 300, 48 * 2**20, 15 * 2**20),
    )
    size = sum(p.size for p in packages)
    build = Build(
        out=tmp_path,
        options=BuildOptions(),
        model_reference="big",
        model_name="big",
        model_version="1",
        model_env="/var/task/model",
        model_s3=None,
        template=tmp_path / "template.yaml",
        artifacts=(Artifact("function", tmp_path / "function.zip", "0" * 64, size, 216 * 2**20, packages),),
    )
    with pytest.raises(BuildError) as caught:
        check_limits(build)
    message = str(caught.value)
    assert "278.0 MB, over Lambda's 250 MB" in message
    assert message.index("model (big) 200.0 MB") < message.index("numpy 48.0 MB") < message.index("onnxruntime 30.0 MB")
    assert "int8" in message and "s3://" in message and "--format image" in message
    check_limits(replace(build, artifacts=(replace(build.artifacts[0], size=250 * 2**20),)))  # exactly at the limit


def test_litert_bundle_artifact_answers_like_the_local_engine(tmp_path, artifact_python):
    """A TFLite bundle ships ai-edge-litert (slimmed: no converter, GPU or NPU) and gives the same answer."""
    from PIL import Image

    from lambdalite.core.bundle import InputSpec, OutputSpec, write_bundle
    from lambdalite.model import load_model

    fixtures = FIXTURES
    bundle = write_bundle(
        tmp_path / "clothing",
        name="clothing",
        version="1",
        task="image-classification",
        engine="litert",
        files={"model": fixtures / "clothing-float.tflite", "labels": fixtures / "clothing-labels.txt"},
        filenames={"model": "model.tflite", "labels": "labels.txt"},
        input=InputSpec(size=(64, 64), layout="NHWC", resize=None, crop="none", mean=(0.5,) * 3, std=(0.5,) * 3),
        output=OutputSpec(kind="logits", top_k=3),
    )
    image = tmp_path / "stripes.png"
    Image.new("RGB", (64, 64), (30, 160, 220)).save(image)
    expected = load_model(str(bundle.root)).predict([image.read_bytes()])[0]

    out = tmp_path / "out"
    proc = subprocess.run(
        [str(LAMBDALITE), "build", str(bundle.root), "--no-compile", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ai-edge-litert" in proc.stdout
    with zipfile.ZipFile(out / "function.zip") as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "task")
    assert "lambdalite/engines/litert.py" in names and "lambdalite/engines/onnx.py" not in names
    assert not any(n.startswith(("onnxruntime/", "ai_edge_litert/tools/", "ai_edge_litert/vendors/")) for n in names)
    run = subprocess.run(
        [artifact_python, "-I", "-S", "-c", RUN_ARTIFACT, str(image)],
        capture_output=True,
        text=True,
        env={"LAMBDA_TASK_ROOT": str(tmp_path / "task"), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert [r["className"] for r in result] == [r["className"] for r in expected]
    for got, want in zip(result, expected, strict=True):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
