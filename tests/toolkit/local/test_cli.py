"""`lambdalite serve` and `lambdalite invoke` as users run them: real processes, one-line errors."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from helpers import CAT_CLASSES
from helpers.cli import one_line_error
from helpers.lambda_servers import HANDLERS, LAMBDALITE, ServeProcess, wait_until_gone


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env_json = tmp_path_factory.mktemp("env") / "env.json"
    env_json.write_text(json.dumps({"PyTorchFunction": {"MODEL_BUCKET": "bucket", "MODEL_KEY": "model.tar.gz"}}))
    args = ("--handler", "faults.echo", "--code-dir", str(HANDLERS), "--env-vars", str(env_json), "--env", "STAGE=cli")
    with ServeProcess(tmp_path_factory.mktemp("echo"), *args) as serve:
        yield serve
    assert wait_until_gone(serve.mark) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a MODEL to serve, or --handler"),
        (("--handler", "nodots"), "--handler expects module.function"),
        (("--handler", "a.b", "--env", "AWS_REGION=eu-west-1"), "reserved environment variable: AWS_REGION"),
        (("--handler", "a.b", "--env", "BIG=" + "x" * 5000), "Lambda allows 4096 (4 KB)"),
        (("--handler", "a.b", "--function-name", "bad name"), "function name 'bad name'"),
        (("no-such-model",), "unknown model 'no-such-model'"),
    ],
)
def test_serve_refuses_bad_arguments_in_one_line(args, message):
    one_line_error(run("serve", *args), message)


def test_serve_refuses_a_bad_env_json(tmp_path):
    bad = tmp_path / "env.json"
    bad.write_text("{nope")
    one_line_error(run("serve", "--handler", "a.b", "--env-vars", str(bad)), "is not valid JSON")


def test_serve_on_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("serve", "--handler", "faults.echo", "--code-dir", str(HANDLERS), "--port", str(port))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert lines[-1] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_invoke_prints_like_the_aws_cli(echo, tmp_path):
    proc = run("invoke", "--endpoint", echo.url, "--payload", '{"from": "cli"}')
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["event"] == {"from": "cli"}
    assert json.loads(proc.stderr) == {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    # env.json in SAM's format (seed 004's) and --env both reach the function.
    assert body["env"]["MODEL_BUCKET"] == "bucket" and body["env"]["MODEL_KEY"] == "model.tar.gz"
    assert body["env"]["STAGE"] == "cli"

    event = tmp_path / "event.json"
    event.write_text('{"print": "logged line"}')
    tailed = run("invoke", "--endpoint", echo.url, "--payload", f"@{event}", "--log-tail")
    assert tailed.returncode == 0
    assert json.loads(tailed.stdout)["event"] == {"print": "logged line"}
    log = tailed.stderr.split("}\n", 1)[1]
    assert log.startswith("START RequestId: ") and "logged line\n" in log and "REPORT RequestId: " in log

    image = tmp_path / "pic.bin"
    image.write_bytes(b"\x00\x01binary")
    sent = json.loads(run("invoke", "--endpoint", echo.url, "--image", str(image)).stdout)
    assert base64.b64decode(sent["event"]["image"]) == b"\x00\x01binary"

    failed = run("invoke", "--endpoint", echo.url, "--payload", '{"fail": "x"}')
    assert failed.returncode == 0  # like `aws lambda invoke`: a function error is an answer
    assert json.loads(failed.stdout)["errorType"] == "ValueError"
    assert json.loads(failed.stderr)["FunctionError"] == "Unhandled"

    assert run("invoke", "--endpoint", echo.url, "--invocation-type", "DryRun").stderr.count('"StatusCode": 204') == 1


def test_invoke_errors_are_one_line(echo, tmp_path):
    one_line_error(
        run("invoke", "--endpoint", echo.url, "--function", "nope"),
        "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:123456789012:function:nope",
    )
    one_line_error(
        run("invoke", "--endpoint", echo.url, "--payload", "{bad"), "InvalidRequestContentException: Could not parse"
    )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    one_line_error(run("invoke", "--endpoint", f"http://127.0.0.1:{port}"), "cannot reach")
    one_line_error(run("invoke", "--payload", "{}", "--image", str(HANDLERS / "faults.py")), "not both")
    one_line_error(run("invoke", "--endpoint", "ftp://x"), "--endpoint must be")
    one_line_error(run("invoke", "--payload", f"@{tmp_path / 'missing.json'}"), "cannot read")


def test_sigint_stops_serve_cleanly(tmp_path):
    with ServeProcess(tmp_path, "--handler", "faults.echo", "--code-dir", str(HANDLERS)) as serve:
        assert run("invoke", "--endpoint", serve.url).returncode == 0
        assert serve.stop(signal.SIGINT) == 0
    assert "lambdalite: stopped." in serve.stderr() and "cost estimate: $" in serve.stderr()
    assert wait_until_gone(serve.mark) == []


def test_serve_the_demo_model_and_invoke_an_image(tmp_path, demo_bundle, chelsea_path):
    with ServeProcess(tmp_path, "efficientnet-lite0", "--memory", "1024") as serve:
        proc = run("invoke", "--endpoint", serve.url, "--function", "efficientnet-lite0", "--image", str(chelsea_path))
        assert proc.returncode == 0, proc.stderr
        top = json.loads(proc.stdout)
        assert top[0]["className"] in CAT_CLASSES
    report = [line for line in serve.stdout().splitlines() if line.startswith("REPORT")]
    assert len(report) == 1 and "\tMemory Size: 1024 MB\t" in report[0] and "Init Duration" in report[0]


def test_sigterm_during_an_invocation_stops_everything(tmp_path):
    import http.client
    import threading
    import time

    with ServeProcess(tmp_path, "--handler", "faults.echo", "--code-dir", str(HANDLERS)) as serve:
        outcome: list[object] = []

        def slow_call() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
            try:
                conn.request("POST", "/2015-03-31/functions/function/invocations", body=b'{"sleep": 60}')
                outcome.append(conn.getresponse().status)
            except (OSError, http.client.HTTPException) as exc:
                outcome.append(exc)
            finally:
                conn.close()

        caller = threading.Thread(target=slow_call)
        caller.start()
        deadline = time.monotonic() + 30
        while "START RequestId: " not in serve.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        assert serve.stop() == 0
        assert time.monotonic() - started < 10
        caller.join(30)
    assert outcome and not isinstance(outcome[0], int)  # the caller's connection was closed, not answered
    assert wait_until_gone(serve.mark) == []
