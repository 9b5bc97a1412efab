"""Batch event sources as Lambda delivers them, through `lambdalite invoke-local`, against S3 over HTTP.

The events are the real-shaped ones in tests/events/batch/ (S3 notifications, SQS, SNS,
EventBridge, S3 Batch Operations 1.0 and 2.0); the bucket is moto in server mode, the results
are read back from it. Throttling and timeouts come from a real HTTP server that answers S3's
503 SlowDown, or nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lambdalite.errors import EventError
from lambdalite.function.batch import answer, items_from, outcome_code
from lambdalite.function.events import batch_kind, infer
from lambdalite.function.storage import S3Object

from helpers import CAT_CLASSES
from helpers.cli import one_line_error
from helpers.eventlib import load_event
from helpers.images import encode, jpeg_bytes
from helpers.models import write_tiny_bundle
from helpers.servers import start_moto

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
BUCKET = "photos"
RED = encode(Image.new("RGB", (16, 16), (250, 5, 5)), "PNG")
EVENTS = [
    "s3-put.json",
    "s3-delete.json",
    "s3-put-output.json",
    "sqs-s3.json",
    "sqs-images.json",
    "sqs-sns-s3.json",
    "sns-s3.json",
    "eventbridge-s3.json",
    "sqs-eventbridge-s3.json",
    "s3-batch-1.0.json",
    "s3-batch-2.0.json",
]


def event(name: str, image: bytes = RED, url: str = "http://example.invalid/red.jpg") -> Any:
    return load_event(f"batch/{name}", image, url)


# -- recognising and reading the events (pure) ---------------------------------------------------


def test_every_batch_event_is_recognised_and_no_front_door_claims_it():
    kinds = {name: batch_kind(event(name)) for name in EVENTS}
    assert kinds == {
        "s3-put.json": "s3",
        "s3-delete.json": "s3",
        "s3-put-output.json": "s3",
        "sqs-s3.json": "sqs",
        "sqs-images.json": "sqs",
        "sqs-sns-s3.json": "sqs",
        "sns-s3.json": "sns",
        "eventbridge-s3.json": "eventbridge",
        "sqs-eventbridge-s3.json": "sqs",
        "s3-batch-1.0.json": "s3-batch",
        "s3-batch-2.0.json": "s3-batch",
    }
    assert all(infer(event(name)) is None for name in EVENTS)
    for direct in ({"url": "s3://a/b"}, {"image": "x"}, {"Records": []}, {"Records": [{"eventSource": "aws:kinesis"}]}):
        assert batch_kind(direct) is None


def test_keys_are_decoded_the_way_each_source_encodes_them():
    cat = S3Object(BUCKET, "uploads/chelsea the cat.jpg")
    for name in ("s3-put.json", "sns-s3.json", "eventbridge-s3.json", "sqs-sns-s3.json", "sqs-eventbridge-s3.json"):
        items = items_from(event(name), batch_kind(event(name)), 2**20)  # type: ignore[arg-type]
        assert items[0].ref == cat and items[0].name == "uploads/chelsea the cat.jpg", name
    put = items_from(event("s3-put.json"), "s3", 2**20)
    assert put[1].ref == S3Object(BUCKET, "uploads/red(1).png")  # %28 %29 decoded
    [v1] = items_from(event("s3-batch-1.0.json"), "s3-batch", 2**20)
    assert (v1.group, v1.ref) == ("dGFza2lkZ29lc2hlcmUK", cat)  # bucket from s3BucketArn, %20 decoded
    [v2] = items_from(event("s3-batch-2.0.json"), "s3-batch", 2**20)
    assert (v2.group, v2.ref) == ("y5R3a2lkZ29lc2hlcmUK", S3Object(BUCKET, "uploads/broken.jpg"))


def test_messages_name_images_in_every_accepted_way():
    items = items_from(event("sqs-images.json", RED, "https://images.example/red.jpg"), "sqs", 2**20)
    assert [i.ref for i in items[:3]] == [S3Object(BUCKET, "uploads/red(1).png"), "https://images.example/red.jpg", RED]
    assert dict(items[1].options) == {"top_k": 2}
    assert items[1].name == "urls/" + hashlib.sha256(b"https://images.example/red.jpg").hexdigest()
    assert items[2].name == "inline/cat-0003"  # the message's id names the result
    sqs = items_from(event("sqs-s3.json"), "sqs", 2**20)
    assert sqs[1].skip is not None and "s3:TestEvent" in sqs[1].skip
    assert (
        items_from(event("s3-delete.json"), "s3", 2**20)[0].skip == "ObjectRemoved:Delete is not an ObjectCreated event"
    )


def test_malformed_envelopes_and_bodies():
    with pytest.raises(EventError, match="messageId"):
        items_from({"Records": [{"eventSource": "aws:sqs", "body": "s3://a/b"}]}, "sqs", 2**20)
    with pytest.raises(EventError, match="tasks"):
        items_from({"invocationSchemaVersion": "1.0", "tasks": []}, "s3-batch", 2**20)
    bad = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": "{not json"},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": json.dumps({"url": "s3://bucket-only"})},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": json.dumps({"image": "x", "id": "../escape"})},
            {"eventSource": "aws:sqs", "messageId": "m4", "body": json.dumps({"Records": [{"eventSource": "aws:s3"}]})},
        ]
    }
    items = items_from(bad, "sqs", 2**20)
    assert [type(i.error).__name__ for i in items] == ["EventError", "StorageError", "EventError", "EventError"]
    assert answer(bad, "sqs", [])["batchItemFailures"] == []


def test_what_is_worth_retrying():
    from lambdalite.errors import (
        FetchTimeoutError,
        ImageDecodeError,
        InternalError,
        StorageError,
        StorageTimeoutError,
        ThrottledError,
        URLRefusedError,
    )

    temporary = [ThrottledError("x"), StorageTimeoutError("x"), FetchTimeoutError("x")]
    permanent = [ImageDecodeError("x"), StorageError("x"), URLRefusedError("x"), InternalError("x")]
    assert {outcome_code(e) for e in temporary} == {"temporary"}
    assert {outcome_code(e) for e in permanent} == {"permanent"}


# -- through invoke-local, against S3 over HTTP ---------------------------------------------------


class S3:
    """A moto server with the `photos` bucket: a cat, a red square, a corrupt JPEG (no `gone.jpg`)."""

    def __init__(self, chelsea: bytes) -> None:
        self.proc, self.url = start_moto()
        self.s3 = self.client()
        self.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        broken = jpeg_bytes(Image.new("RGB", (64, 64), (0, 128, 0)))[:200] + b"\x00" * 100
        for key, data in {
            "uploads/chelsea the cat.jpg": chelsea,
            "uploads/red(1).png": RED,
            "uploads/broken.jpg": broken,
        }.items():
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMBDALITE_", "MODEL_"))}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="eu-west-1",
            AWS_ENDPOINT_URL_S3=endpoint or self.url,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def keys(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(chelsea_jpeg: bytes) -> Iterator[S3]:
    server = S3(chelsea_jpeg)
    yield server
    server.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny").root)


def invoke_local(
    model: str, payload: Any, env: dict[str, str], *settings: str, tmp: Path
) -> tuple[int, Any, list[dict[str, Any]]]:
    """`lambdalite invoke-local MODEL EVENT --env K=V...`: (exit code, the answer, the request records)."""
    path = tmp / f"event-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(payload))
    args = [str(LAMBDALITE), "invoke-local", model, str(path)]
    for setting in settings:
        args += ["--env", setting]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stdout
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"event":"request"')]
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, records


def test_sqs_answers_only_the_failed_messages_and_writes_one_result_per_image(s3, demo_bundle, tmp_path):
    code, out, [record] = invoke_local(
        str(demo_bundle), event("sqs-s3.json"), s3.env(), "LAMBDALITE_OUTPUT=s3://photos/sqs-results", tmp=tmp_path
    )
    assert code == 0
    assert out == {
        "batchItemFailures": [
            {"itemIdentifier": "8b7fe5a2-1a22-4b1c-9f1e-44f1fb0d5c3e"},  # the corrupt JPEG
            {"itemIdentifier": "c1a6a7f0-3d0c-4f5b-9a35-0f3b8a6f2d11"},  # the missing object
        ]
    }
    assert s3.keys("sqs-results/") == ["sqs-results/uploads/chelsea the cat.jpg.json"]
    document = s3.json("sqs-results/uploads/chelsea the cat.jpg.json")
    assert document["input"] == "s3://photos/uploads/chelsea the cat.jpg"
    assert document["model"] == {"name": "efficientnet-lite0", "version": "1.0.0"}
    assert document["source"] == "sqs" and document["requestId"]
    assert document["result"][0]["className"] in CAT_CLASSES  # a known photo, the right class
    assert (record["succeeded"], record["skipped"], record["permanentFailures"]) == (1, 1, 2)
    errors = {f["id"][:8]: f["error"] for f in record["failures"]}
    assert errors == {"8b7fe5a2": "ImageDecodeError", "c1a6a7f0": "StorageError"}


def test_sqs_messages_naming_images(s3, tiny, image_server, tmp_path):
    url = image_server.url("/red.jpg")
    payload = event("sqs-images.json", RED, url)
    output = ["LAMBDALITE_OUTPUT=s3://photos/named/", "LAMBDALITE_ALLOW_PRIVATE_URLS=1"]
    code, out, _ = invoke_local(tiny, payload, s3.env(), *output, tmp=tmp_path)
    assert code == 0
    assert out == {"batchItemFailures": [{"itemIdentifier": "a3f0b5e2-0004-4c9a-8d7e-444444444444"}]}  # not an image
    url_key = "named/urls/" + hashlib.sha256(url.encode()).hexdigest() + ".json"
    assert s3.keys("named/") == sorted(["named/inline/cat-0003.json", "named/uploads/red(1).png.json", url_key])
    assert len(s3.json(url_key)["result"]) == 2  # the message's top_k
    for key in s3.keys("named/"):
        assert s3.json(key)["result"][0]["className"] == "red"
    assert s3.json("named/inline/cat-0003.json")["input"] == "sha256:" + hashlib.sha256(RED).hexdigest()


@pytest.mark.parametrize(
    "name", ["s3-put.json", "sns-s3.json", "eventbridge-s3.json", "sqs-sns-s3.json", "sqs-eventbridge-s3.json"]
)
def test_s3_notifications_directly_or_wrapped(s3, tiny, tmp_path, name):
    prefix = name.removesuffix(".json")
    code, out, [record] = invoke_local(
        tiny, event(name), s3.env(), f"LAMBDALITE_OUTPUT=s3://photos/{prefix}", tmp=tmp_path
    )
    assert code == 0
    key = f"{prefix}/uploads/chelsea the cat.jpg.json"
    assert key in s3.keys(f"{prefix}/")
    assert s3.json(key)["source"] == batch_kind(event(name))
    if name.startswith("sqs"):
        assert out == {"batchItemFailures": []}
    else:
        assert out["failed"] == [] and out["succeeded"] == record["succeeded"] == len(s3.keys(f"{prefix}/"))


def test_batch_operations_schema_1_and_2(s3, tiny, tmp_path):
    code, v1, _ = invoke_local(
        tiny, event("s3-batch-1.0.json"), s3.env(), "LAMBDALITE_OUTPUT=s3://photos/ops", tmp=tmp_path
    )
    assert code == 0
    assert v1 == {
        "invocationSchemaVersion": "1.0",
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
        "results": [
            {
                "taskId": "dGFza2lkZ29lc2hlcmUK",
                "resultCode": "Succeeded",
                "resultString": "s3://photos/ops/uploads/chelsea the cat.jpg.json",
            }
        ],
    }
    code, v2, _ = invoke_local(tiny, event("s3-batch-2.0.json"), s3.env(), tmp=tmp_path)  # no output: the report says
    assert code == 0 and v2["invocationSchemaVersion"] == "2.0"
    [result] = v2["results"]
    assert result["taskId"] == "y5R3a2lkZ29lc2hlcmUK" and result["resultCode"] == "PermanentFailure"
    assert result["resultString"].startswith("ImageDecodeError: ")
    good = dict(
        event("s3-batch-2.0.json"), tasks=[dict(event("s3-batch-2.0.json")["tasks"][0], s3Key="uploads/red%281%29.png")]
    )
    _, v2, _ = invoke_local(tiny, good, s3.env(), tmp=tmp_path)
    [result] = v2["results"]
    assert result["resultCode"] == "Succeeded" and json.loads(result["resultString"])[0]["className"] == "red"


class UnwellS3:
    """An S3 endpoint that answers every request with 503 SlowDown, or never answers at all."""

    def __init__(self, mode: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if mode == "hang":
                    time.sleep(5)
                    return
                body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("mode", "error"), [("throttle", "ThrottledError"), ("hang", "StorageTimeoutError")])
def test_throttling_and_timeouts_are_temporary(s3, tiny, tmp_path, mode, error):
    unwell = UnwellS3(mode)
    try:
        env = s3.env(unwell.url)
        settings = (
            "LAMBDALITE_OUTPUT=s3://photos/unwell",
            "LAMBDALITE_URL_TIMEOUT=1",
            "LAMBDALITE_URL_CONNECT_TIMEOUT=1",
        )
        code, ops, _ = invoke_local(tiny, event("s3-batch-1.0.json"), env, *settings, tmp=tmp_path)
        assert code == 0
        [result] = ops["results"]
        assert result["resultCode"] == "TemporaryFailure" and result["resultString"].startswith(f"{error}: ")
        # An S3 notification (an asynchronous invoke) fails as a whole, so that Lambda retries it.
        code, direct, _ = invoke_local(tiny, event("s3-put.json"), env, *settings, tmp=tmp_path)
        assert code == 1 and direct["errorType"] == "BatchError"
        assert "2 of 2 images failed for now, Lambda will retry" in direct["errorMessage"]
    finally:
        unwell.close()


def test_permanent_failures_of_a_notification_are_reported_not_retried(s3, tiny, tmp_path):
    broken = event("s3-put.json")
    broken["Records"][1]["s3"]["object"]["key"] = "uploads/broken.jpg"
    code, out, _ = invoke_local(tiny, broken, s3.env(), "LAMBDALITE_OUTPUT=s3://photos/mixed/", tmp=tmp_path)
    assert code == 0 and out["succeeded"] == 1
    [failed] = out["failed"]
    assert failed["input"] == "s3://photos/uploads/broken.jpg" and failed["error"].startswith("ImageDecodeError")
    assert s3.keys("mixed/") == ["mixed/uploads/chelsea the cat.jpg.json"]


def test_an_object_under_the_output_is_never_run_again(s3, tiny, tmp_path):
    s3.s3.put_object(Bucket=BUCKET, Key="results/uploads/chelsea the cat.jpg.json", Body=b"{}")
    code, out, [record] = invoke_local(
        tiny, event("s3-put-output.json"), s3.env(), "LAMBDALITE_OUTPUT=s3://photos/results/", tmp=tmp_path
    )
    assert code == 0 and out == {"succeeded": 0, "skipped": 1, "failed": []}
    assert record["skipped"] == 1
    assert s3.keys("results/") == ["results/uploads/chelsea the cat.jpg.json"]  # nothing new written


def test_the_function_refuses_at_init_an_output_its_trigger_would_fire_on(s3, tiny, tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event("s3-put.json")))
    settings = ["--env", "LAMBDALITE_TRIGGER=s3://photos/uploads", "--env", "LAMBDALITE_OUTPUT=s3://photos/uploads/out"]
    proc = subprocess.run(
        [str(LAMBDALITE), "invoke-local", tiny, str(path), *settings],
        capture_output=True,
        text=True,
        env=s3.env(),
        timeout=300,
    )
    one_line_error(proc, "LAMBDALITE_OUTPUT='s3://photos/uploads/out/' would trigger the function again")
    assert proc.returncode == 2 and "ConfigError" not in proc.stdout  # refused at init: no request ran
    assert s3.keys("uploads/out/") == []


def test_a_batch_event_without_an_output_fails_every_message_and_says_why(s3, tiny, tmp_path):
    code, out, [record] = invoke_local(tiny, event("sqs-sns-s3.json"), s3.env(), tmp=tmp_path)
    assert code == 0 and out == {"batchItemFailures": [{"itemIdentifier": "79406a00-bf15-46ca-978c-22c3613fcb30"}]}
    assert record["failures"][0]["error"] == "ConfigError" and "LAMBDALITE_OUTPUT" in record["failures"][0]["message"]


def test_direct_invokes_may_name_s3_objects_http_callers_may_not(s3, tiny, tmp_path):
    code, out, _ = invoke_local(tiny, {"urls": ["s3://photos/uploads/red(1).png"]}, s3.env(), tmp=tmp_path)
    assert code == 0 and out[0][0]["className"] == "red"
    code, out, _ = invoke_local(tiny, {"url": "s3://photos/uploads/gone.jpg"}, s3.env(), tmp=tmp_path)
    assert code == 1 and out["errorType"] == "StorageError" and "does not exist" in out["errorMessage"]
    http = load_event("http-api-json-image.json", RED)
    http["body"] = json.dumps({"url": "s3://photos/uploads/red(1).png"})
    code, out, _ = invoke_local(tiny, http, s3.env(), tmp=tmp_path)
    assert out["statusCode"] == 422 and json.loads(out["body"])["error"]["type"] == "URLRefusedError"


def test_images_left_when_the_function_runs_out_of_time_are_temporary(tiny):
    from lambdalite.function.app import Function
    from lambdalite.settings import S3Prefix, Settings
    from lambdalite.toolkit.local.invoke import LocalContext

    function = Function.from_settings(Settings(model=tiny, output=S3Prefix("photos", "out/")))
    image = base64.b64encode(RED).decode()
    sqs = {"Records": [{"messageId": f"m{i}", "eventSource": "aws:sqs", "body": image} for i in range(3)]}
    # 1 s before the timeout: under the margin kept for writing results, so no image is started.
    assert function(sqs, LocalContext(timeout_s=1.0)) == {
        "batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in range(3)]
    }
    ops = {
        "invocationSchemaVersion": "1.0",
        "invocationId": "i",
        "tasks": [{"taskId": "t", "s3Key": "a.jpg", "s3BucketArn": "arn:aws:s3:::photos"}],
    }
    [result] = function(ops, LocalContext(timeout_s=1.0))["results"]
    assert result["resultCode"] == "TemporaryFailure" and "ran out of time" in result["resultString"]
