"""The local Lambda with real instances: faults and limits reported as Lambda reports them.

Each test starts a LambdaServer (in process, on 127.0.0.1) whose instances are real
`awslambdaric` processes running the handlers in tests/handlers; every test checks that the next
request succeeds after the fault and, on exit, that no process it started is left.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request

import pytest

from lambdalite.errors import RequestTooLargeError, TooManyRequestsError
from lambdalite.toolkit.local.messages import SandboxCaps
from lambdalite.toolkit.local.server import probe_sandbox

from helpers.lambda_servers import HANDLERS, MARK, ServerThread, config, wait_until_gone
from helpers.models import heavy_classifier_onnx, write_tiny_bundle


@pytest.fixture(scope="session")
def caps():
    return probe_sandbox()


def report_of(log: str, request_id: str) -> str:
    [line] = [line for line in log.splitlines() if line.startswith(f"REPORT RequestId: {request_id}")]
    return line


def test_success_logs_and_context(caps):
    with ServerThread(config("faults.echo", memory_mb=256, timeout_s=7), caps) as s:
        first = s.invoke({"print": "hello from the function"})
        assert first.function_error is None and first.status == 200
        body = json.loads(first.payload)
        assert body["event"] == {"print": "hello from the function"}
        assert body["request_id"] == first.request_id
        assert body["function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:probe"
        assert body["memory_limit_in_mb"] == "256"
        assert 5000 < body["remaining_ms"] <= 7000
        assert body["trace_id"].startswith("Root=1-")
        lines = first.log.splitlines()
        assert lines[0] == f"START RequestId: {first.request_id} Version: $LATEST"
        assert lines[1:3] == ["hello from the function", "to stderr"]
        assert lines[3] == f"END RequestId: {first.request_id}"
        assert re.fullmatch(
            rf"REPORT RequestId: {first.request_id}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
            r"Memory Size: 256 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t",
            lines[4],
        )
        assert first.init_ms is not None and first.init_ms > 0
        second = s.invoke({})
        assert json.loads(second.payload)["pid"] == body["pid"]  # warm: the same process
        assert second.init_ms is None and "Init Duration" not in second.log
        assert 0 < second.max_memory_mb < 256
        assert "INIT_START" in s.log_text()


def test_handler_exception_is_an_unhandled_function_error(caps):
    with ServerThread(config("faults.fail"), caps) as s:
        failed = s.invoke({"fail": "no cat"})
        assert failed.status == 200 and failed.function_error == "Unhandled"
        error = json.loads(failed.payload)
        assert error["errorType"] == "ValueError"
        assert error["errorMessage"] == "bad input: no cat"
        assert error["requestId"] == failed.request_id
        assert any("raise ValueError" in frame for frame in error["stackTrace"])
        assert "[ERROR] ValueError: bad input: no cat" in failed.log
        assert "Status:" not in report_of(failed.log, failed.request_id)  # a handled error, not a crash
        assert json.loads(s.invoke({}).payload) == {"ok": True}
        assert s.server.cold_starts == 1  # the instance survives a handler exception


def test_timeout_kills_the_instance_and_reports_sandbox_timedout(caps):
    with ServerThread(config("faults.sleep", timeout_s=1), caps) as s:
        started = time.monotonic()
        timed_out = s.invoke({"sleep": 30})
        assert time.monotonic() - started < 10
        assert timed_out.function_error == "Unhandled"
        assert json.loads(timed_out.payload) == {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {timed_out.request_id} Error: Task timed out after 1.00 seconds",
        }
        report = report_of(timed_out.log, timed_out.request_id)
        assert "\tDuration: 1000.00 ms\t" in report and report.endswith("\tStatus: timeout\t")
        after = s.invoke({"sleep": 0})
        assert after.function_error is None and after.init_ms is not None  # a fresh instance


def test_a_timeout_kills_the_functions_children_too(caps):
    cfg = config("faults.spawn", timeout_s=1)
    with ServerThread(cfg, caps) as s:
        background = json.loads(s.invoke({}).payload)["child"]
        assert os.path.exists(f"/proc/{background}")  # a child outliving its invocation keeps running, as on Lambda
        assert json.loads(s.invoke({"sleep": 5}).payload)["errorType"] == "Sandbox.Timedout"
        assert wait_until_gone(cfg.environment[MARK]) == []  # the instance and every child it started


def test_memory_cap_kills_the_instance_as_out_of_memory(caps):
    with ServerThread(config("faults.allocate", memory_mb=128), caps) as s:
        oom = s.invoke({"mb": 1024})
        assert oom.function_error == "Unhandled"
        assert json.loads(oom.payload) == {
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": f"RequestId: {oom.request_id} Error: Runtime exited with error: signal: killed",
        }
        report = report_of(oom.log, oom.request_id)
        assert "\tMax Memory Used: 128 MB\t" in report
        assert report.endswith("\tStatus: error\tError Type: Runtime.OutOfMemory\t")
        fine = s.invoke({"mb": 16})
        assert json.loads(fine.payload)["allocated_mb"] == 16 and fine.function_error is None
        assert 16 < fine.max_memory_mb < 128


def test_a_peak_over_the_memory_size_is_out_of_memory_even_when_freed_before_answering(caps):
    # Lambda kills the process the moment it passes its memory size; that the memory was freed again
    # and the answer came before the next sample must not turn it into a success.
    with ServerThread(config("faults.spike", memory_mb=128), caps) as s:
        assert json.loads(s.invoke({"mb": 8}).payload) == {"peak_mb": 8}
        spiked = s.invoke({"mb": 256})
        assert json.loads(spiked.payload)["errorType"] == "Runtime.OutOfMemory"
        assert report_of(spiked.log, spiked.request_id).endswith(
            "\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory\t"
        )
        assert json.loads(s.invoke({"mb": 8}).payload) == {"peak_mb": 8}  # a fresh instance


def test_a_model_too_big_for_the_memory_size_fails_init_out_of_memory(caps, tmp_path):
    # A 192 MB model file: over 128 MB however the allocator and the threads behave (EfficientNet-Lite0
    # peaks at 121-137 MB in init, on both sides of the cap, so it cannot decide this test).
    bundle = write_tiny_bundle(
        tmp_path / "heavy", files={"model": heavy_classifier_onnx(192), "labels": b"a\nb\nc\nd\n"}
    )
    cfg = config("lambdalite.handler.handler", code_dir=str(bundle.root), model_dir=str(bundle.root), memory_mb=128)
    with ServerThread(cfg, caps) as s:
        result = s.invoke({})
        assert result.function_error == "Unhandled"
        assert json.loads(result.payload)["errorType"] == "Runtime.OutOfMemory"
        assert re.search(
            r"INIT_REPORT Init Duration: [\d.]+ ms\tPhase: init\tStatus: error\tError Type: Runtime.OutOfMemory",
            s.log_text(),
        )
        assert report_of(result.log, result.request_id).endswith(
            "\tMax Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory\t"
        )
    roomy = config("lambdalite.handler.handler", code_dir=str(bundle.root), model_dir=str(bundle.root), memory_mb=1024)
    with ServerThread(roomy, caps) as s:  # the same model fits in 1 GB
        result = s.invoke({})
        assert json.loads(result.payload)["errorType"] == "EventError"  # initialized; the event has no image


def test_process_exit_is_a_runtime_exit_error(caps):
    with ServerThread(config("faults.exit_process"), caps) as s:
        pid = json.loads(s.invoke({}).payload)["pid"]
        crashed = s.invoke({"exit": 3})
        assert crashed.function_error == "Unhandled"
        assert json.loads(crashed.payload) == {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {crashed.request_id} Error: Runtime exited with error: exit status 3",
        }
        assert "exiting now" in crashed.log
        assert report_of(crashed.log, crashed.request_id).endswith("\tStatus: error\tError Type: Runtime.ExitError\t")
        again = json.loads(s.invoke({}).payload)
        assert again["ok"] is True and again["pid"] != pid


def test_import_failure_is_reported_like_lambda_and_a_fixed_module_loads_fresh(caps, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "flaky.py").write_text(
        "import os\n"
        "if os.path.exists(os.path.join(os.path.dirname(__file__), 'BROKEN')):\n"
        "    import lambdalite_no_such_dependency\n"
        "def handler(event, context):\n"
        "    return {'ok': True}\n"
    )
    (code / "BROKEN").write_text("")
    with ServerThread(config("flaky.handler", code_dir=str(code)), caps) as s:
        broken = s.invoke({})
        assert broken.function_error == "Unhandled"
        assert json.loads(broken.payload) == {
            "errorMessage": "Unable to import module 'flaky': No module named 'lambdalite_no_such_dependency'",
            "errorType": "Runtime.ImportModuleError",
            "requestId": "",
            "stackTrace": [],
        }
        assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'flaky'" in broken.log
        assert re.search(
            r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: error\t"
            r"Error Type: Runtime.ImportModuleError",
            broken.log,
        )
        assert report_of(broken.log, broken.request_id).endswith("\tError Type: Runtime.ImportModuleError\t")
        (code / "BROKEN").unlink()
        assert json.loads(s.invoke({}).payload) == {"ok": True}
        assert s.server.cold_starts == 2  # the failed instance was not reused


def test_missing_handler_function_and_module(caps):
    with ServerThread(config("faults.no_such_function"), caps) as s:
        error = json.loads(s.invoke({}).payload)
        assert error["errorType"] == "Runtime.HandlerNotFound"
    with ServerThread(config("broken_import.handler"), caps) as s:
        assert json.loads(s.invoke({}).payload)["errorType"] == "Runtime.ImportModuleError"


def test_init_past_the_budget_is_retried_inside_the_invoke(caps):
    slow = config("slow_init.handler", init_budget_s=0.5, timeout_s=10, environment={"SLOW_INIT_S": "1"})
    with ServerThread(slow, caps) as s:
        result = s.invoke({})
        assert result.function_error is None and json.loads(result.payload) == {"ok": True}
        assert "INIT_REPORT Init Duration: 500.00 ms\tPhase: init\tStatus: timeout" in s.log_text()
        report = report_of(result.log, result.request_id)
        assert "Init Duration" not in report  # a suppressed init is part of the invocation
        assert float(re.search(r"Duration: ([\d.]+) ms", report).group(1)) >= 1000
    too_slow = config("slow_init.handler", init_budget_s=0.5, timeout_s=1, environment={"SLOW_INIT_S": "5"})
    with ServerThread(too_slow, caps) as s:
        result = s.invoke({})
        assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout"


def test_response_over_6_mb(caps):
    with ServerThread(config("faults.big_response"), caps) as s:
        big = s.invoke({"size": 7 * 2**20})
        assert big.function_error == "Unhandled"
        assert json.loads(big.payload) == {
            "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "Function.ResponseSizeTooLarge",
        }
        assert json.loads(s.invoke({"size": 5}).payload) == "xxxxx"
        just_under = s.invoke({"size": 6 * 2**20})  # 6 MB of "x" plus the JSON quotes still fits
        assert just_under.function_error is None and len(just_under.payload) == 6 * 2**20 + 2


def test_payload_limits_and_bad_json_are_refused_before_any_instance(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        with pytest.raises(RequestTooLargeError):
            s.invoke(b'"' + b"x" * (6 * 2**20) + b'"')
        with pytest.raises(RequestTooLargeError):
            s.invoke(b'"' + b"x" * 2**20 + b'"', invocation_type="Event")
        assert s.server.cold_starts == 0
        assert json.loads(s.invoke(b"").payload)["event"] == {}  # empty payload -> {}


def test_code_and_filesystem_are_read_only_and_tmp_is_private_with_a_quota(caps, tmp_path):
    if not caps.mount:
        pytest.fail(f"this machine should allow a private mount namespace as root: {caps.note}")
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(HANDLERS / "faults.py", code / "app.py")
    model = tmp_path / "model"
    model.mkdir()
    with ServerThread(config("app.write", code_dir=str(code), model_dir=str(model), max_concurrency=2), caps) as s:
        for path in (str(code / "new.py"), "relative.txt", str(model / "weights.bin"), "/root/x", "/var/tmp/x"):
            answer = json.loads(s.invoke({"path": path}).payload)
            assert answer == {"error": "Read-only file system", "errno": 30}, path
        assert not (code / "new.py").exists() and not (model / "weights.bin").exists()
        assert json.loads(s.invoke({"path": "/tmp/scratch.bin", "bytes": 100 * 2**20}).payload) == {
            "written": 100 * 2**20
        }
        assert not os.path.exists("/tmp/scratch.bin")  # the function's /tmp is not the host's
        full = json.loads(s.invoke({"path": "/tmp/fill.bin", "bytes": 600 * 2**20}).payload)
        assert full == {"error": "No space left on device", "errno": 28}  # 512 MB by default
        after = s.invoke({"path": "/tmp/small", "bytes": 10})  # /tmp stays full: it lives as long as the instance
        assert json.loads(after.payload)["errno"] == 28 and after.function_error is None


def test_without_a_mount_namespace_landlock_keeps_the_code_read_only(caps, tmp_path):
    # The fallback for machines where we are not root: a private TMPDIR with a per-file quota,
    # and Landlock refusing writes anywhere else.
    if not caps.landlock:
        pytest.fail("this kernel should have Landlock")
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(HANDLERS / "faults.py", code / "app.py")
    fallback = SandboxCaps(mount=False, landlock=caps.landlock, note="testing the fallback")
    with ServerThread(config("app.write", code_dir=str(code)), fallback) as s:
        assert json.loads(s.invoke({"path": str(code / "new.py")}).payload) == {
            "error": "Permission denied",
            "errno": 13,
        }
        assert json.loads(s.invoke({"path": "/tmp/outside.txt"}).payload)["errno"] == 13
        assert json.loads(s.invoke({"path": "$TMPDIR/ok.bin", "bytes": 2**20}).payload) == {"written": 2**20}
        too_big = json.loads(s.invoke({"path": "$TMPDIR/big.bin", "bytes": 600 * 2**20}).payload)
        assert too_big == {"error": "File too large", "errno": 27}
        scratch = s.server._scratch
        assert scratch is not None and os.listdir(scratch) == ["instance-1"]
    assert not os.path.exists(scratch) and not (code / "new.py").exists()


def test_a_larger_ephemeral_storage_holds_more(caps):
    with ServerThread(config("faults.write", ephemeral_mb=700), caps) as s:
        assert json.loads(s.invoke({"path": "/tmp/big", "bytes": 600 * 2**20}).payload) == {"written": 600 * 2**20}


def test_throttling_and_the_opt_in_queue(caps):
    with ServerThread(config("faults.sleep", max_concurrency=1), caps) as s:
        s.invoke({"sleep": 0})  # warm
        slow = threading.Thread(target=s.invoke, args=({"sleep": 1.0},))
        slow.start()
        deadline = time.monotonic() + 10
        while not any(i.busy for i in s.server.instances) and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(TooManyRequestsError):
            s.invoke({"sleep": 0})
        slow.join()
        assert s.server.throttles == 1
    with ServerThread(config("faults.sleep", max_concurrency=1, queue=True), caps) as s:
        results: list[object] = []
        threads = [threading.Thread(target=lambda: results.append(s.invoke({"sleep": 0.3}))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 3 and all(r.function_error is None for r in results)
        assert s.server.cold_starts == 1 and s.server.throttles == 0


def test_event_invocations_are_queued_and_retried_twice_with_the_same_request_id(caps):
    with ServerThread(config("faults.fail", event_retry_delays_s=(0.05, 0.05)), caps) as s:
        accepted = s.invoke({"fail": "always"}, invocation_type="Event")
        assert (accepted.status, accepted.payload) == (202, b"")
        deadline = time.monotonic() + 20
        while s.server.invocations < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        starts = [line for line in s.logs if line.startswith("START RequestId: ")]
        assert starts == [f"START RequestId: {accepted.request_id} Version: $LATEST"] * 3
        assert any("failed 3 times" in line for line in s.logs)
        ok = s.invoke({}, invocation_type="Event")
        while s.server.invocations < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.server.invocations == 4 and s.server.errors == 3 and ok.status == 202


def test_dry_run_checks_without_running(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        assert s.invoke({}, invocation_type="DryRun").status == 204
        assert s.server.cold_starts == 0


def test_idle_instances_are_reaped(caps):
    with ServerThread(config("faults.echo", idle_timeout_s=0.3), caps) as s:
        pid = json.loads(s.invoke({}).payload)["pid"]
        deadline = time.monotonic() + 10
        while (s.server.instances or os.path.exists(f"/proc/{pid}")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not s.server.instances and not os.path.exists(f"/proc/{pid}")
        assert json.loads(s.invoke({}).payload)["pid"] != pid  # a cold start again


def test_environment_the_function_sees(caps):
    cfg = config("faults.echo", memory_mb=300, environment={"STAGE": "test"}, model_dir="/nonexistent/model")
    with ServerThread(cfg, caps) as s:
        env = json.loads(s.invoke({}).payload)["env"]
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == "probe"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "300"
        assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
        assert env["STAGE"] == "test"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
        assert env["LAMBDA_TASK_ROOT"] == ("/var/task" if caps.mount else cfg.code_dir)  # Lambda's path
        assert not any(k.startswith("_LAMBDA") for k in env)


def test_fallback_seam_for_a_front_door(caps):
    seen = []

    async def front_door(method, path, query, headers, body):
        seen.append((method, path, query, headers.get("x-test"), body))
        if path == "/hello":
            result = await server.invoke(b'{"from": "front door"}')
            return 200, [("Content-Type", "application/json"), ("X-Request", result.request_id)], result.payload
        return 404, [("Content-Type", "application/json")], b'{"message": "Not Found"}'

    thread = ServerThread(config("faults.echo"), caps, fallback=front_door)
    server = thread.server
    with thread as s:
        request = urllib.request.Request(f"{s.url}/hello?a=1", data=b"raw", headers={"X-Test": "yes"}, method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
            assert answer["event"] == {"from": "front door"}
            assert answer["request_id"] == response.headers["X-Request"]
        assert seen == [("PUT", "/hello", "a=1", "yes", b"raw")]


def test_default_fallback_is_a_json_404(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{s.url}/anything", timeout=10)
        assert info.value.code == 404 and json.loads(info.value.read()) == {"message": "Not Found"}


def test_log_tail_over_http_is_the_last_4_kb(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        request = urllib.request.Request(
            f"{s.url}/2015-03-31/functions/probe/invocations",
            data=json.dumps({"print": "y" * 6000}).encode(),
            headers={"X-Amz-Log-Type": "Tail"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            tail = base64.b64decode(response.headers["X-Amz-Log-Result"]).decode()
        assert len(tail.encode()) == 4096
        assert tail.rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: ")


def test_instances_carry_nothing_of_the_emulator(caps):
    with ServerThread(config("faults.modules"), caps) as s:
        loaded = set(json.loads(s.invoke({}).payload))
        assert "awslambdaric" in loaded
        # sandbox.py ran as __main__ (python -m); nothing else of lambdalite came along.
        assert {m for m in loaded if m.startswith("lambdalite")} == {
            "lambdalite",
            "lambdalite.toolkit",
            "lambdalite.toolkit.local",
        }
        assert loaded.isdisjoint(["asyncio", "click", "boto3", "botocore", "torch", "onnx"]), loaded


def test_the_gateway_front_door_plugs_into_the_seam(caps):
    from lambdalite.toolkit.local.gateway import FrontDoor, GatewayConfig

    thread = ServerThread(config("faults.echo"), caps)
    thread.server.fallback = FrontDoor(GatewayConfig(), thread.server.invoke)
    with thread as s:
        request = urllib.request.Request(
            f"{s.url}/predict?top=3", data=b'{"x": 1}', headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        event = answer["event"]  # an HTTP API (2.0) event, as the function sees it behind API Gateway
        assert (event["version"], event["rawPath"], event["rawQueryString"]) == ("2.0", "/predict", "top=3")
        assert event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False


def test_runtime_api_refuses_out_of_order_calls(caps):
    import http.client

    with ServerThread(config("faults.sleep"), caps) as s:
        s.invoke({})
        slow = threading.Thread(target=s.invoke, args=({"sleep": 1.0},))
        slow.start()
        time.sleep(0.3)
        [instance] = s.server.instances
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=10)

        def call(method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, json.loads(response.read())

        assert call("POST", "/2018-06-01/runtime/invocation/not-the-id/response", b"{}") == (
            400,
            {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"},
        )
        assert call("POST", "/2018-06-01/runtime/init/error", b"{}")[0] == 403
        assert call("GET", "/2020-01-01/extension/event/next")[0] == 404
        conn.close()
        slow.join()
        assert json.loads(s.invoke({}).payload)["slept"] == 0  # the instance was not disturbed
