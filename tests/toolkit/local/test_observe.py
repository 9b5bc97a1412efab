"""The local Lambda seen from outside: JSON platform logs, Prometheus metrics, the control plane
(boto3's GetFunctionConfiguration / UpdateFunctionConfiguration) and CPU time by memory size.

Real instances (awslambdaric processes) behind a LambdaServer on 127.0.0.1; real clients:
prometheus_client's parser, boto3.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.request
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from lambdalite.errors import TooManyRequestsError
from lambdalite.toolkit.local.control import Control
from lambdalite.toolkit.local.cpu import vcpus
from lambdalite.toolkit.local.metrics import Telemetry
from lambdalite.toolkit.local.server import probe_sandbox

from helpers import HANDLERS
from helpers.lambda_servers import ServeProcess, ServerThread, config, lambda_client


@pytest.fixture(scope="module")
def caps():
    return probe_sandbox()


def platform_events(logs: list[str]) -> list[dict]:
    return [json.loads(line) for line in logs if line.startswith('{"time"')]


def test_json_log_format_writes_lambdas_platform_events(caps):
    cfg = config("faults.echo", log_format="JSON", system_log_level="DEBUG")
    with ServerThread(cfg, caps) as s:
        cold = s.invoke({"print": "hello"})
        warm = s.invoke({"fail": "on purpose"})
        env = json.loads(cold.payload)["env"]
        events = platform_events(s.logs)
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "JSON" and env["AWS_LAMBDA_LOG_LEVEL"] == "INFO"
    assert [e["type"] for e in events] == [
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]
    for event in events:
        assert datetime.fromisoformat(event["time"]).utcoffset().total_seconds() == 0
    assert events[0]["record"]["initializationType"] == "on-demand" and events[0]["record"]["phase"] == "init"
    assert events[0]["record"]["functionName"] == "probe"
    first, second = events[5]["record"], events[8]["record"]
    assert first["requestId"] == cold.request_id and second["requestId"] == warm.request_id
    metrics = first["metrics"]
    assert set(metrics) == {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"}
    assert metrics["memorySizeMB"] == 512 and 0 < metrics["maxMemoryUsedMB"] <= 512
    assert metrics["durationMs"] == pytest.approx(cold.duration_ms, abs=0.001)
    assert metrics["initDurationMs"] == pytest.approx(cold.init_ms, abs=0.001)
    assert metrics["billedDurationMs"] == math.ceil(round(cold.duration_ms + cold.init_ms, 6))  # init is billed
    assert "initDurationMs" not in second["metrics"]
    assert first["status"] == "success" and events[4]["record"]["status"] == "success"
    # The handler raised: runtimeDone and report say so, with the error's type.
    assert second["status"] == events[7]["record"]["status"] == "error"
    assert second["errorType"] == "ValueError"
    # The invocation's own log (X-Amz-Log-Result) is in the same format.
    assert '"type":"platform.report"' in cold.log and "REPORT RequestId" not in cold.log
    assert "hello" in cold.log


def test_json_system_log_level_info_writes_start_and_report_only(caps):
    with ServerThread(config("faults.echo", log_format="JSON"), caps) as s:
        s.invoke({})
        types = [e["type"] for e in platform_events(s.logs)]
    assert types == ["platform.initStart", "platform.start", "platform.report"]


def test_text_format_is_unchanged(caps):
    with ServerThread(config("faults.echo"), caps) as s:
        result = s.invoke({})
    assert platform_events(s.logs) == []
    assert (
        result.log.startswith("START RequestId:")
        and "REPORT RequestId:" in result.log
        and "END RequestId" in result.log
    )


def test_json_application_log_level_drops_lower_levels(caps):
    cfg = config("work.levels", log_format="JSON", application_log_level="WARN")
    with ServerThread(cfg, caps) as s:
        log = s.invoke({}).log
    assert '"a WARNING line"' in log and '"a ERROR line"' in log
    for dropped in ("TRACE", "DEBUG", "INFO"):
        assert f'"a {dropped} line"' not in log
    assert "a plain line" in log  # not JSON: kept as it is


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, **labels: str) -> float:
    [match] = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return match


def test_prometheus_metrics_count_what_happened(caps):
    with ServerThread(config("faults.echo", max_concurrency=1), caps) as s:
        telemetry = Telemetry.attach(s.server)
        before = scrape(s.url)
        assert value(before["lambdalite_invocations"], status="success") == 0
        s.invoke({})
        s.invoke({})
        s.invoke({"fail": "x"})
        started = threading.Event()

        def slow() -> None:
            started.set()
            s.invoke({"sleep": 1.0})

        worker = threading.Thread(target=slow)
        worker.start()
        started.wait()
        throttled = 0
        for _ in range(50):  # the one instance is busy: the next invoke is refused
            try:
                s.invoke({})
            except TooManyRequestsError:
                throttled += 1
                break
        worker.join()
        metrics = scrape(s.url)
        assert telemetry.throttles == throttled == 1
    assert value(metrics["lambdalite_invocations"], status="success", function="probe") == 3
    assert value(metrics["lambdalite_invocations"], status="error") == 1
    assert value(metrics["lambdalite_errors"], type="ValueError") == 1
    assert value(metrics["lambdalite_cold_starts"]) == 1
    assert value(metrics["lambdalite_throttles"]) == 1
    durations = metrics["lambdalite_invocation_duration_seconds"]
    assert value(durations, le="+Inf") == 4 and [s for s in durations if s.name.endswith("_count")][0].value == 4
    assert 1.0 <= [s for s in durations if s.name.endswith("_sum")][0].value < 10
    assert value(metrics["lambdalite_init_duration_seconds"], le="+Inf") == 1
    states = {s.labels["state"]: s.value for s in metrics["lambdalite_instances"]}
    assert set(states) == {"starting", "idle", "busy"} and states["idle"] == 1 and states["busy"] == 0
    [memory] = metrics["lambdalite_instance_memory_bytes"]
    assert 1e6 < memory.value < 512 * 2**20
    assert 0 < value(metrics["lambdalite_max_memory_used_bytes"]) <= 512 * 2**20
    assert value(metrics["lambdalite_memory_size_bytes"]) == 512 * 2**20
    assert value(metrics["lambdalite_cost_usd"]) > 0


def test_metrics_paths_take_only_get(caps):
    """POST /metrics is the function's (here: the default front door's 404), not the metrics'."""
    with ServerThread(config("faults.echo"), caps) as s:
        Telemetry.attach(s.server)
        request = urllib.request.Request(s.url + "/metrics", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        info.value.close()
        assert info.value.code == 404


def test_boto3_reads_and_updates_the_configuration_and_the_next_invoke_is_cold(caps):
    with ServerThread(config("faults.echo", environment={"STAGE": "one"}), caps) as s:
        Control.attach(s.server)
        client = lambda_client(s.url)
        got = client.get_function_configuration(FunctionName="probe")
        assert got["MemorySize"] == 512 and got["Timeout"] == 10 and got["Environment"]["Variables"]["STAGE"] == "one"
        assert got["LastUpdateStatus"] == "Successful" and got["State"] == "Active"
        first = client.invoke(FunctionName="probe", Payload=b"{}", LogType="Tail")
        pid = json.loads(first["Payload"].read())["pid"]
        updated = client.update_function_configuration(
            FunctionName="probe",
            MemorySize=1024,
            Timeout=20,
            Environment={"Variables": {"STAGE": "two"}},
            RevisionId=got["RevisionId"],
        )
        assert updated["MemorySize"] == 1024 and updated["RevisionId"] != got["RevisionId"]
        client.get_waiter("function_updated_v2").wait(FunctionName="probe")
        answer = client.invoke(FunctionName="probe", Payload=b"{}", LogType="Tail")
        body = json.loads(answer["Payload"].read())
        tail = __import__("base64").b64decode(answer["LogResult"]).decode()
        assert body["pid"] != pid and "Init Duration" in tail  # a new instance: a cold start
        assert body["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024" and body["env"]["STAGE"] == "two"
        assert body["memory_limit_in_mb"] == "1024" and "Memory Size: 1024 MB" in tail
        assert 10_000 < body["remaining_ms"] <= 20_000
        # What Lambda refuses, refused the same way.
        with pytest.raises(ClientError) as info:
            client.update_function_configuration(FunctionName="probe", Environment={"Variables": {"AWS_REGION": "x"}})
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
        with pytest.raises(ClientError) as info:
            client.update_function_configuration(FunctionName="probe", RevisionId="stale")
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_function_configuration(FunctionName="someone-else")
        with pytest.raises(ClientError) as info:
            client.update_function_configuration(FunctionName="probe", Handler="other.handler")
        assert "cannot change Handler" in info.value.response["Error"]["Message"]
        assert client.get_function_configuration(FunctionName="probe")["MemorySize"] == 1024


def test_cpu_time_follows_memory(caps):
    """At 256 MB an instance gets 256/1769 = 0.14 of a CPU: a CPU-bound handler's CPU time over
    its wall time stays near that (an unthrottled one gets a whole CPU when the machine has it)."""
    with ServerThread(config("work.burn", memory_mb=256, cpu_share=True, timeout_s=60.0), caps) as s:
        s.invoke({"n": 1000})  # the cold start
        answer = json.loads(s.invoke({"n": 400_000}).payload)
        governor = s.server.governor
        assert governor is not None and governor.stops > 0
        share = answer["cpu_s"] / answer["wall_s"]
    assert share < 1.6 * vcpus(256), answer
    assert vcpus(1769) == 1.0 and vcpus(512) == pytest.approx(0.2894, abs=1e-4)
    assert vcpus(10240) == pytest.approx(10240 / 1769)  # CPU time; Lambda spreads it over 6 vCPUs


def test_serve_log_format_json_from_the_command_line(tmp_path):
    args = ["--handler", "work.levels", "--code-dir", str(HANDLERS), "--function-name", "levels"]
    with ServeProcess(tmp_path, *args, "--log-format", "json", "--log-level", "WARN", "--cpu", "host") as served:
        answer = lambda_client(served.url).invoke(FunctionName="levels", Payload=b"{}")
        assert answer["StatusCode"] == 200
        configuration = lambda_client(served.url).get_function_configuration(FunctionName="levels")
    assert configuration["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "/aws/lambda/levels",
        "ApplicationLogLevel": "WARN",
        "SystemLogLevel": "INFO",
    }
    types = [e["type"] for e in platform_events(served.stdout().splitlines())]
    assert types == ["platform.initStart", "platform.start", "platform.report"]
    assert '"a WARNING line"' in served.stdout() and '"a INFO line"' not in served.stdout()
    assert "CPU         the host's (--cpu host); logs JSON" in served.stderr()
