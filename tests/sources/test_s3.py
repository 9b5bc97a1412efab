"""s3:// sources against moto in server mode on 127.0.0.1, through boto3 over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from PIL import Image

from lambdalite.core.bundle import open_bundle, pack_bundle
from lambdalite.errors import ChecksumError, ModelNotFoundError, SourceError
from lambdalite.model import load_model
from lambdalite.settings import Settings
from lambdalite.sources.references import configured_reference, resolve

from helpers import TESTS
from helpers.images import encode
from helpers.models import TINY_LABELS, seed004_archive, tiny_torchscript
from helpers.servers import start_moto

COLD_START = """
import json, os, sys
from lambdalite.model import load_model
from lambdalite.settings import Settings
from lambdalite.sources.references import configured_reference
model = load_model(configured_reference(Settings.from_env()))
[result] = model.predict([open(sys.argv[1], "rb").read()], top_k=2)
print(json.dumps({"result": result, "engine": model.bundle.manifest.engine, "root": str(model.bundle.root),
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def s3_client():
    return boto3.session.Session().client("s3")  # a fresh session reads the test's environment


def make_bucket(name: str):
    client = s3_client()
    client.create_bucket(Bucket=name)
    return client


@pytest.fixture()
def red_png(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    path.write_bytes(encode(Image.new("RGB", (40, 30), (230, 20, 10)), "PNG"))
    return path


def cold_start(red_png: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", COLD_START, str(red_png)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_boto3_honours_aws_endpoint_url_s3(aws_env):
    from lambdalite.sources.s3 import _client

    assert _client(5.0).meta.endpoint_url == aws_env


def test_seed004_archive_from_model_bucket_and_key_serves_then_comes_from_the_cache(
    aws_env, tmp_path, lambdalite_home, red_png
):
    pytest.importorskip("torch")
    client = make_bucket("seed004-models")
    archive = seed004_archive(tmp_path / "model.tar.gz", tiny_torchscript())
    client.upload_file(str(archive), "seed004-models", "pytorch/model.tar.gz")
    env = {"MODEL_BUCKET": "seed004-models", "MODEL_KEY": "pytorch/model.tar.gz"}

    first = cold_start(red_png, env)
    assert first["result"][0]["className"] == "red"
    assert first["engine"] == "torchscript"  # served as it is: torch is installed here
    assert Path(first["root"]).is_relative_to(lambdalite_home)
    assert "boto3" in first["modules"]

    # The object is gone: a second cold start (a fresh process) can only answer from the cache.
    client.delete_object(Bucket="seed004-models", Key="pytorch/model.tar.gz")
    second = cold_start(red_png, env)
    assert second["result"] == first["result"]
    assert second["root"] == first["root"]
    assert "boto3" not in second["modules"]  # not even a client was made

    # Only the unpacked model is kept, not the archive as well.
    entry = Path(first["root"]).parent
    assert sorted(p.name for p in entry.iterdir()) == ["bundle", "source.json"]


def test_onnx_bundle_from_s3_imports_no_torch(aws_env, tiny_bundle, tmp_path, lambdalite_home, red_png):
    client = make_bucket("bundles")
    packed = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")
    client.upload_file(str(packed), "bundles", "tiny.tar.gz")
    result = cold_start(red_png, {"LAMBDALITE_MODEL": "s3://bundles/tiny.tar.gz"})
    assert result["result"][0]["className"] == "red"
    assert result["engine"] == "onnxruntime"
    assert "boto3" in result["modules"]
    assert {"torch", "onnx", "click"}.isdisjoint(result["modules"])


def test_corrupted_object_fails_with_a_checksum_error(aws_env, tiny_bundle, tmp_path, lambdalite_home):
    client = make_bucket("corrupt-models")
    good = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz").read_bytes()
    pin = hashlib.sha256(good).hexdigest()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    client.put_object(Bucket="corrupt-models", Key="tiny.tar.gz", Body=bytes(bad))
    with pytest.raises(ChecksumError, match=r"s3://corrupt-models/tiny.tar.gz: sha256 .* does not match the pinned"):
        resolve(f"s3://corrupt-models/tiny.tar.gz#sha256={pin}")
    assert not list((lambdalite_home / "remote").glob("[!.]*"))  # nothing cached
    # The right bytes under the same pin are accepted.
    client.put_object(Bucket="corrupt-models", Key="tiny.tar.gz", Body=good)
    root = resolve(f"s3://corrupt-models/tiny.tar.gz#sha256={pin}")
    assert open_bundle(root).manifest == tiny_bundle.manifest


def test_a_corrupt_file_inside_a_bundle_fails_its_manifest_checksum(aws_env, tiny_bundle, tmp_path, lambdalite_home):
    import io
    import tarfile

    model = tiny_bundle.path("model")
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")  # bit rot after the manifest was written
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tiny_bundle.root, arcname=".")
    make_bucket("rotten").put_object(Bucket="rotten", Key="tiny.tar.gz", Body=buf.getvalue())
    with pytest.raises(ChecksumError, match="model.onnx is corrupt"):
        load_model("s3://rotten/tiny.tar.gz")


def test_missing_object_and_bucket(aws_env, lambdalite_home):
    make_bucket("empty-models")
    with pytest.raises(SourceError, match=r"^s3://empty-models/nope.tar.gz does not exist \(404 NoSuchKey\)"):
        resolve("s3://empty-models/nope.tar.gz")
    with pytest.raises(SourceError, match="the bucket no-such-bucket-here does not exist"):
        resolve("s3://no-such-bucket-here/model.tar.gz")


def test_access_denied_is_a_clear_403(tmp_path, monkeypatch, lambdalite_home):
    # A second moto with IAM enforced: the first 4 requests (the setup below) are let through.
    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    try:
        admin = {"aws_access_key_id": "a", "aws_secret_access_key": "b", "region_name": "us-east-1"}
        iam = boto3.client("iam", endpoint_url=endpoint, **admin)
        iam.create_user(UserName="deployer")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="deployer", PolicyName="put-only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="deployer")["AccessKey"]
        boto3.client("s3", endpoint_url=endpoint, **admin).create_bucket(Bucket="private-models")
        for name, value in {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        }.items():
            monkeypatch.setenv(name, value)
        deployer = boto3.session.Session(key["AccessKeyId"], key["SecretAccessKey"], region_name="us-east-1")
        deployer.client("s3", endpoint_url=endpoint).put_object(Bucket="private-models", Key="m.tar.gz", Body=b"x")
        with pytest.raises(SourceError, match=r"access denied \(403 AccessDenied\).*s3:GetObject"):
            resolve("s3://private-models/m.tar.gz")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_refused_connection(aws_env, monkeypatch, lambdalite_home):
    from helpers.servers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceError, match="cannot connect to http://127.0.0.1:"):
        resolve("s3://models/model.tar.gz")


def test_raw_seed004_archive_is_served_by_import(aws_env, tmp_path, lambdalite_home, red_png):
    """The archive named by MODEL_BUCKET/MODEL_KEY can also be converted once and pointed at."""
    pytest.importorskip("torch")
    from lambdalite.toolkit.convert.importer import ImportOptions, import_model

    archive = seed004_archive(tmp_path / "model.tar.gz", tiny_torchscript())
    bundle = import_model(archive, tmp_path / "converted", ImportOptions())
    assert bundle.manifest.engine == "onnxruntime"
    assert bundle.read_lines("labels") == TINY_LABELS
    packed = pack_bundle(bundle, tmp_path / "converted.tar.gz")
    make_bucket("converted").upload_file(str(packed), "converted", "model.tar.gz")
    result = cold_start(red_png, {"MODEL_BUCKET": "converted", "MODEL_KEY": "model.tar.gz"})
    assert result["engine"] == "onnxruntime"
    assert result["result"][0]["className"] == "red"
    assert "torch" not in result["modules"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"MODEL_BUCKET": "b", "MODEL_KEY": "k/model.tar.gz"}, "s3://b/k/model.tar.gz"),
        ({"MODEL_BUCKET": "s3://b/", "MODEL_KEY": "/a b.tar.gz"}, "s3://b/a%20b.tar.gz"),
        ({"MODEL_BUCKET": "b", "MODEL_KEY": "k", "MODEL_SHA256": "ab" * 32}, "s3://b/k#sha256=" + "ab" * 32),
        ({"LAMBDALITE_MODEL": "efficientnet-lite0", "MODEL_BUCKET": "b", "MODEL_KEY": "k"}, "efficientnet-lite0"),
    ],
)
def test_reference_from_env(env, expected):
    assert configured_reference(Settings.from_env(env)) == expected


def test_reference_from_env_needs_both():
    with pytest.raises(ModelNotFoundError, match="MODEL_KEY is not set"):
        configured_reference(Settings.from_env({"MODEL_BUCKET": "b"}))


def test_s3_key_with_a_space_round_trips(aws_env, tiny_bundle, tmp_path, lambdalite_home):
    packed = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")
    make_bucket("spaced").upload_file(str(packed), "spaced", "my models/tiny v1.tar.gz")
    ref = configured_reference(Settings.from_env({"MODEL_BUCKET": "spaced", "MODEL_KEY": "my models/tiny v1.tar.gz"}))
    assert open_bundle(resolve(ref)).manifest.name == "tiny"


HANDLER = """
import json, sys
sys.path.insert(0, sys.argv[3])
from helpers.eventlib import load_event
from lambdalite.handler import handler
for name in ("direct-seed004-url.json", "rest-json-url.json"):
    print("RESULT " + json.dumps(handler(load_event(name, url=sys.argv[1] + "/" + sys.argv[2]), None)))
"""


def test_seed004_function_answers_in_the_seed004_shape(aws_env, tmp_path, lambdalite_home, image_server):
    """The handler, configured as seed 004 (MODEL_BUCKET/MODEL_KEY), answers {"class", "confidence"}."""
    pytest.importorskip("torch")
    archive = seed004_archive(tmp_path / "model.tar.gz", tiny_torchscript())
    make_bucket("seed004-function").upload_file(str(archive), "seed004-function", "model.tar.gz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDALITE_")}
    env.update(
        MODEL_BUCKET="seed004-function",
        MODEL_KEY="model.tar.gz",
        LAMBDALITE_RESPONSE="top1",
        LAMBDALITE_HOME=str(lambdalite_home),
        LAMBDALITE_ALLOW_PRIVATE_URLS="1",  # the image server is on 127.0.0.1
    )
    proc = subprocess.run(
        [sys.executable, "-c", HANDLER, image_server.url(""), "red.jpg", str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    direct, proxy = (json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    # Seed 004's documented answer: {"statusCode": 200, "body": {"class": ..., "confidence": ...}}.
    assert direct["statusCode"] == 200
    assert direct["body"]["class"] == "red" and 0.5 < direct["body"]["confidence"] <= 1
    assert proxy["statusCode"] == 200
    assert json.loads(proxy["body"]) == direct["body"]
    cold = json.loads(proc.stdout.splitlines()[0])
    assert cold["event"] == "cold_start" and cold["engine"] == "torchscript"
    assert cold["reference"] == "s3://seed004-function/model.tar.gz"
