"""The local Lambda as strict as Lambda (issue 14, rows 5 and 8-10): real instances, real clients.

Each test starts a LambdaServer (in process, on 127.0.0.1) or `lambdalite serve`, whose
instances run the handlers in tests/handlers, and checks that nothing it started outlives it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from lambdalite.errors import InvalidParameterValueError, InvalidRequestContentError, TooManyRequestsError
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local import server as server_module
from lambdalite.toolkit.local.server import probe_sandbox

from helpers.cli import one_line_error
from helpers.lambda_servers import HANDLERS, LAMBDALITE, ServeProcess, ServerThread, config, lambda_client

INVOKE = "/2015-03-31/functions/function/invocations"


@pytest.fixture(scope="session")
def caps():
    return probe_sandbox()


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url + INVOKE, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def report_of(log: str, request_id: str) -> str:
    [line] = [line for line in log.splitlines() if line.startswith(f"REPORT RequestId: {request_id}")]
    return line


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


# -- row 5: the Invoke API answers deep JSON with a service error, not a 500 ------------------------


def test_json_nested_100000_deep_is_invalid_request_content(caps):
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidRequestContentError, match="nested too deeply"):
        protocol.check_payload(deep, len(deep), "RequestResponse")
    with ServerThread(config("faults.echo"), caps) as s:
        status, headers, body = post(s.url, deep)
        assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestContentException", body
        assert s.server.cold_starts == 0  # refused before any instance
        assert post(s.url, b"{}")[0] == 200


# -- row 8: memory is the whole process tree's -----------------------------------------------------


@pytest.mark.parametrize("setsid", [False, True])
def test_a_child_over_the_memory_size_kills_the_instance(caps, setsid):
    with ServerThread(config("hostile.child_allocates", memory_mb=256, timeout_s=30), caps) as s:
        start = time.monotonic()
        oom = s.invoke({"mb": 1536, "hold": 20, "setsid": setsid})
        assert oom.function_error == "Unhandled" and oom.error_type == "Runtime.OutOfMemory", oom.payload
        assert time.monotonic() - start < 15  # killed while allocating, not at the 30 s timeout
        report = report_of(s.log_text(), oom.request_id)
        assert "Max Memory Used: 256 MB" in report and "Error Type: Runtime.OutOfMemory" in report
        ok = s.invoke({"mb": 0, "hold": 0})  # a fresh instance answers the next one
        assert ok.function_error is None


def test_max_memory_used_counts_the_child(caps):
    with ServerThread(config("hostile.child_allocates", memory_mb=1024, timeout_s=30), caps) as s:
        result = s.invoke({"mb": 200, "hold": 1.0})
        assert result.function_error is None, result.payload
        assert result.max_memory_mb >= 200, report_of(s.log_text(), result.request_id)
        assert f"Max Memory Used: {result.max_memory_mb} MB" in report_of(s.log_text(), result.request_id)


# -- row 9: the Event queue ------------------------------------------------------------------------


def test_300_events_of_900_kb_hold_no_memory_and_do_not_starve_a_sync_invoke(tmp_path):
    """300 Event invokes of 900 KB were all held in memory (RSS 25 -> 299 MB) and a synchronous
    invoke behind them waited 152 s. Now they are spooled to disk and the synchronous invoke gets
    the first instance that frees up."""
    args = ("--handler", "hostile.sleep", "--code-dir", str(HANDLERS), "--max-concurrency", "2", "--memory", "256")
    with ServeProcess(tmp_path, *args) as serve:
        assert post(serve.url, json.dumps({"sleep": 0}).encode())[0] == 200  # warm: imports, one instance
        before = rss_kb(serve.proc.pid)  # type: ignore[union-attr]
        event = json.dumps({"sleep": 0.5, "pad": "x" * 900_000}).encode()

        def send(_: int) -> int:
            return post(serve.url, event, {"X-Amz-Invocation-Type": "Event"})[0]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(300)))
        assert statuses == [202] * 300
        grown_mb = (rss_kb(serve.proc.pid) - before) / 1024  # type: ignore[union-attr]
        start = time.monotonic()
        status, headers, body = post(serve.url, json.dumps({"sleep": 0.5}).encode())
        waited = time.monotonic() - start
        assert status == 200 and json.loads(body)["slept"] == 0.5, body
        # Behind 298 queued events: one handler duration (0.5 s) for an instance to free up, then its own 0.5 s.
        assert waited < 3.0, f"the synchronous invoke waited {waited:.1f} s behind the event backlog"
        assert grown_mb < 64, f"the emulator grew by {grown_mb:.0f} MB holding 300 x 900 KB events"


def test_a_full_event_queue_refuses_with_too_many_requests(caps, monkeypatch):
    monkeypatch.setattr(server_module, "MAX_QUEUED_EVENTS", 3)
    with ServerThread(config("hostile.sleep", max_concurrency=1), caps) as s:
        results = [s.invoke({"sleep": 1}, invocation_type="Event") for _ in range(4)]  # 1 in flight, 3 queued
        assert [r.status for r in results] == [202] * 4
        with pytest.raises(TooManyRequestsError, match="Event queue is full"):
            s.invoke({"sleep": 0}, invocation_type="Event")
        status, headers, _ = post(s.url, b"{}", {"X-Amz-Invocation-Type": "Event"})
        assert status == 429 and headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        spool = s.server._spool
        assert spool is not None and len(os.listdir(spool)) == 3  # the queued payloads, on disk
    assert not os.path.exists(spool)  # removed when the server closes


# -- row 10: what AWS SAM CLI's start_lambda tests found -------------------------------------------


def test_a_tenant_id_is_refused_without_tenant_isolation(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        client = lambda_client(s.url)
        with pytest.raises(ClientError) as info:
            client.invoke(FunctionName="probe", Payload=b"{}", TenantId="blue")
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "tenant isolation" in info.value.response["Error"]["Message"]
        with pytest.raises(InvalidParameterValueError):
            s.invoke({}, tenant_id="blue")
        assert client.invoke(FunctionName="probe", Payload=b"{}")["StatusCode"] == 200
        assert s.server.cold_starts == 1


def test_output_without_a_trailing_newline_belongs_to_its_invocation(caps):
    with ServerThread(config("hostile.partial_line"), caps) as s:
        client = lambda_client(s.url)
        first = client.invoke(FunctionName="probe", Payload=json.dumps({"text": "first-no-newline"}), LogType="Tail")
        tail = base64.b64decode(first["LogResult"]).decode()
        lines = tail.splitlines()
        assert "first-no-newline" in lines, tail
        assert lines.index("first-no-newline") < next(i for i, line in enumerate(lines) if line.startswith("END "))
        second = s.invoke({"text": "second-no-newline"})
        assert "first-no-newline" not in second.log and "second-no-newline" in second.log
        log = s.log_text()
        first_report = log.index("REPORT RequestId: " + first["ResponseMetadata"]["RequestId"])
        assert log.index("first-no-newline") < first_report  # not after a later REPORT


def test_the_code_is_at_var_task_read_only(caps):
    with ServerThread(config("hostile.where"), caps) as s:
        seen = json.loads(s.invoke({}).payload)
    with ServerThread(config("hostile.fail"), caps) as s:
        failed = json.loads(s.invoke({}).payload)
    if caps.mount:
        assert seen["task_root"] == seen["cwd"] == "/var/task"
        assert seen["file"] == "/var/task/hostile.py"
        assert "hostile.py" in seen["listing"] and "faults.py" in seen["listing"]
        assert seen["writable"] == "Read-only file system"
        assert any("/var/task/hostile.py" in frame for frame in failed["stackTrace"]), failed
        assert not any(str(HANDLERS) in frame for frame in failed["stackTrace"])
    else:  # without a mount namespace the host's path is all an instance can see (the banner says so)
        assert seen["task_root"] == str(HANDLERS) and seen["writable"] is not True
    assert not (HANDLERS / "written.txt").exists()


def test_env_vars_sections_for_several_functions_can_be_picked(tmp_path):
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"Parameters": {"STAGE": "all"}, "A": {"STAGE_A": "a"}, "B": {"STAGE_B": "b"}}))
    base = ("--handler", "hostile.where", "--code-dir", str(HANDLERS), "--env-vars", str(env_file))
    with ServeProcess(tmp_path, *base, "--env-vars-section", "B") as serve:
        seen = json.loads(post(serve.url, b"{}")[2])
        assert seen["env"] == {"STAGE": "all", "STAGE_B": "b"}

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LAMBDALITE), "serve", *args, "--port", "0"], capture_output=True, text=True, timeout=60
        )

    one_line_error(serve(*base), "pick one with --env-vars-section")
    one_line_error(serve(*base, "--env-vars-section", "C"), "has no section 'C' (its function sections: A, B)")


def test_layers_are_merged_read_only_at_opt(caps, tmp_path):
    first, second = tmp_path / "layer1", tmp_path / "layer2"
    for layer, value in ((first, "one"), (second, "two")):
        (layer / "python").mkdir(parents=True)
        (layer / "python" / "layermod.py").write_text(f"VALUE = {value!r}\n")
    (first / "python" / "only_in_one.py").write_text("VALUE = 'first'\n")
    cfg = config("hostile.layered", layers=(str(first), str(second)))
    with ServerThread(cfg, caps) as s:
        seen = json.loads(s.invoke({"modules": ["layermod", "only_in_one"]}).payload)
    assert seen["modules"]["layermod"][1] == "two"  # a later layer's file over an earlier one's
    assert seen["modules"]["only_in_one"][1] == "first"
    if caps.mount:
        assert seen["modules"]["layermod"][0] == "/opt/python/layermod.py"
        assert seen["writable"] == "Read-only file system"
    else:
        assert seen["modules"]["layermod"][0] == str(second / "python" / "layermod.py")
