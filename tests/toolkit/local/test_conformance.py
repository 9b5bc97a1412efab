"""Real clients, unchanged, against `lambdalite serve`: boto3, the AWS CLI, curl; awslambdaric inside.

One `lambdalite serve` process (the real CLI, on 127.0.0.1 and an ephemeral port) serves the echo
handler for the whole module; it is stopped with SIGTERM at the end and must leave no process.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from helpers.lambda_servers import HANDLERS, ServeProcess, lambda_client, wait_until_gone

ACCOUNT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:probe"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("conformance")
    process = ServeProcess(
        tmp,
        "--handler",
        "faults.echo",
        "--code-dir",
        str(HANDLERS),
        "--function-name",
        "probe",
        "--max-concurrency",
        "1",
        "--memory",
        "256",
    )
    with process:
        yield process
    assert process.proc is not None and process.proc.returncode == 0, process.stderr()
    assert wait_until_gone(process.mark) == []
    assert "lambdalite: stopped." in process.stderr()


@pytest.fixture(scope="module")
def client(serve: ServeProcess):
    return lambda_client(serve.url)


def payload_of(response: dict) -> object:
    return json.loads(response["Payload"].read())


def test_boto3_success(client):
    response = client.invoke(FunctionName="probe", Payload=json.dumps({"hello": "world"}))
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response and "LogResult" not in response
    body = payload_of(response)
    assert body["event"] == {"hello": "world"}
    assert body["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert body["runtime"] == [body["runtime"][0], True] and body["runtime"][0].endswith("awslambdaric/__main__.py")


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [
        ("function", None),  # the Runtime Interface Emulator's fixed name
        (ACCOUNT_ARN, None),
        ("123456789012:function:probe", None),
        ("probe:$LATEST", None),
        ("probe", "$LATEST"),
    ],
)
def test_boto3_names_arns_and_qualifiers(client, name, qualifier):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    response = client.invoke(FunctionName=name, Payload=b"{}", **kwargs)
    assert response["StatusCode"] == 200 and payload_of(response)["function_arn"] == ACCOUNT_ARN


def test_boto3_function_error(client):
    response = client.invoke(FunctionName="probe", Payload=json.dumps({"fail": "on purpose"}))
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = payload_of(response)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad input: on purpose"
    assert error["requestId"] == response["ResponseMetadata"]["RequestId"]


def test_boto3_log_tail(client):
    response = client.invoke(FunctionName="probe", Payload=json.dumps({"print": "a log line"}), LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = base64.b64decode(response["LogResult"]).decode().splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert lines[1:3] == ["a log line", "to stderr"]
    assert lines[3] == f"END RequestId: {request_id}"
    assert lines[4].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert lines[4].endswith("\t") and "\tMemory Size: 256 MB\t" in lines[4]


def test_boto3_resource_not_found_is_the_modeled_exception(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.invoke(FunctionName="nope", Payload=b"{}")
    assert (
        info.value.response["Error"]["Message"]
        == "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope"
    )
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="probe", Qualifier="7", Payload=b"{}")


def test_boto3_too_many_requests_is_the_modeled_exception(client, serve):
    client.invoke(FunctionName="probe", Payload=b"{}")  # one warm instance, the maximum here
    started = serve.stdout().count("START RequestId: ")
    slow = threading.Thread(target=client.invoke, kwargs={"FunctionName": "probe", "Payload": b'{"sleep": 1.5}'})
    slow.start()
    try:
        deadline = time.monotonic() + 10
        while serve.stdout().count("START RequestId: ") == started and time.monotonic() < deadline:
            time.sleep(0.02)  # until the slow invocation holds the instance
        with pytest.raises(client.exceptions.TooManyRequestsException) as info:
            client.invoke(FunctionName="probe", Payload=b"{}")
        assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    finally:
        slow.join()


def test_boto3_7_mb_payload_is_refused_with_413(client):
    payload = json.dumps({"blob": "x" * (7 * 2**20)})
    with pytest.raises(ClientError) as info:
        client.invoke(FunctionName="probe", Payload=payload)
    error = info.value.response
    # The wire name is RequestEntityTooLargeException, which boto3 has no class for (reference §2.6).
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456 bytes" in error["Error"]["Message"]
    assert payload_of(client.invoke(FunctionName="probe", Payload=b"{}"))["event"] == {}


def test_boto3_invalid_json_is_the_modeled_exception(client):
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="probe", Payload=b"{not json")


def test_boto3_event_and_dry_run(client, serve):
    event = client.invoke(FunctionName="probe", InvocationType="Event", Payload=b'{"async": true}')
    assert event["StatusCode"] == 202 and event["Payload"].read() == b""
    report = f"REPORT RequestId: {event['ResponseMetadata']['RequestId']}\t"
    deadline = time.monotonic() + 30
    while report not in serve.stdout() and time.monotonic() < deadline:  # it runs after the 202
        time.sleep(0.05)
    assert report in serve.stdout()
    dry = client.invoke(FunctionName="probe", InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nope", InvocationType="DryRun", Payload=b"{}")


def test_boto3_client_context_reaches_the_handler(client):
    context = base64.b64encode(json.dumps({"custom": {"tenant": "acme"}}).encode()).decode()
    response = client.invoke(FunctionName="probe", Payload=b"{}", ClientContext=context)
    assert payload_of(response)["client_context"] == {"tenant": "acme"}


def aws_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        AWS_CONFIG_FILE=str(cwd / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-credentials"),
    )
    aws = Path(sys.executable).parent / "aws"
    return subprocess.run([str(aws), *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_aws_cli_invoke(serve, tmp_path):
    # AWS CLI v1 sends --payload as given (v2 would need --cli-binary-format raw-in-base64-out).
    proc = aws_cli(
        "lambda",
        "invoke",
        "--endpoint-url",
        serve.url,
        "--function-name",
        "probe",
        "--payload",
        '{"from": "aws cli"}',
        "--log-type",
        "Tail",
        "out.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["StatusCode"] == 200 and printed["ExecutedVersion"] == "$LATEST"
    assert base64.b64decode(printed["LogResult"]).decode().startswith("START RequestId: ")
    assert json.loads((tmp_path / "out.json").read_text())["event"] == {"from": "aws cli"}

    failed = aws_cli(
        "lambda",
        "invoke",
        "--endpoint-url",
        serve.url,
        "--function-name",
        "probe",
        "--payload",
        '{"fail": 1}',
        "o.json",
        cwd=tmp_path,
    )
    assert failed.returncode == 0 and json.loads(failed.stdout)["FunctionError"] == "Unhandled"

    missing = aws_cli(
        "lambda", "invoke", "--endpoint-url", serve.url, "--function-name", "nope", "o.json", cwd=tmp_path
    )
    assert missing.returncode != 0
    assert "(ResourceNotFoundException) when calling the Invoke operation: Function not found" in missing.stderr


def test_seed_001_curl_recipe_with_the_real_handler(tmp_path, tiny_bundle, image_server):
    # The recipe as seed 001 writes it, against the real handler serving a real (tiny) model.
    with ServeProcess(tmp_path, str(tiny_bundle.root), "--env", "LAMBDALITE_ALLOW_PRIVATE_URLS=1") as serve:
        recipe = [
            "curl",
            "-s",
            "-XPOST",
            f"localhost:{serve.port}/2015-03-31/functions/function/invocations",
            "-d",
            json.dumps({"url": image_server.url("/red.jpg")}),
        ]
        proc = subprocess.run(recipe, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer[0]["className"] == "red", answer
        # The function's own log lines land in serve's output, framed by START/END/REPORT.
        stop_code = serve.stop()
    out = serve.stdout()
    assert stop_code == 0
    assert "INIT_START" in out and "Init Duration:" in out and '"event":"cold_start"' in out
    assert wait_until_gone(serve.mark) == []
