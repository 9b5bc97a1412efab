"""SnapStart in the local Lambda: one init into a snapshot, instances restored (forked) from it.

The handler (tests/handlers/snaphooks.py) registers its hooks through the real
`snapshot_restore_py`, as a user's function does; every server runs real awslambdaric processes,
and each test checks that no process it started is left behind.
"""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

import pytest

from lambdalite.errors import EmulatorError, SnapStartError, SnapStartTimeoutError
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.messages import InvokeResult
from lambdalite.toolkit.local.server import probe_sandbox
from lambdalite.toolkit.local.snapshot import Snapshot

from helpers.lambda_servers import ServerThread, config, lambda_client

REPORT = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\tDuration: (?P<duration>\d+\.\d\d) ms\tBilled Duration: (?P<billed>\d+) ms\t"
    r"Memory Size: 512 MB\tMax Memory Used: \d+ MB\tRestore Duration: (?P<restore>\d+\.\d\d) ms\t"
    r"Billed Restore Duration: (?P<billed_restore>\d+) ms\t"
)


@pytest.fixture(scope="module")
def caps():
    return probe_sandbox()


def snap_config(**overrides: Any):
    environment = overrides.pop("environment", {})
    return config(
        "snaphooks.handler",
        snapstart=True,
        version="1",
        alias="live",
        environment=environment,
        **overrides,
    )


def concurrently(s: ServerThread, events: list[dict[str, Any]]) -> list[InvokeResult]:
    """Invoke with every event at once, so that each needs an instance of its own."""
    results: list[InvokeResult | None] = [None] * len(events)

    def one(i: int) -> None:
        results[i] = s.invoke(events[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_init_runs_once_then_each_instance_is_restored_and_logged_as_lambda_logs_it(caps):
    with ServerThread(snap_config(max_concurrency=2), caps) as s:
        snapshot_log = s.log_text()
        assert snapshot_log.count("INIT_START") == 1
        # before-snapshot hooks: in the reverse order of registration, inside the init
        assert snapshot_log.index("hook 2 (runs first)") < snapshot_log.index("hook 1 (runs last)")
        assert re.search(r"^INIT_REPORT Init Duration: \d+\.\d\d ms$", snapshot_log, re.M)
        s.logs.clear()

        first, second = concurrently(s, [{"sleep": 0.5}, {"sleep": 0.5}])
        bodies = [json.loads(r.payload) for r in (first, second)]
        assert bodies[0]["pid"] != bodies[1]["pid"]  # two instances...
        assert {b["init_pid"] for b in bodies} == {bodies[0]["init_pid"]}  # ...forked from the one init
        assert bodies[0]["init_pid"] not in (bodies[0]["pid"], bodies[1]["pid"])
        for body in bodies:
            assert body["ran"] == ["before-2", "before-1", "after-hook"]  # the init's hooks, then its own restore
            assert body["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
            assert body["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == "1"
            assert "AWS_LAMBDA_LOG_GROUP_NAME" not in body["env"] and "AWS_LAMBDA_LOG_STREAM_NAME" not in body["env"]
            assert body["snapshot_file"] is True  # the snapshot's /tmp...
            if caps.mount:  # ...and a private copy of it: the other instance's write is not here
                assert body["tmp_lines"] == 1
            # (without a mount namespace every instance shares the snapshot's TMPDIR, as the README says)

        log = s.log_text()
        assert "INIT_START" not in log and log.count("RESTORE_START") == 2 and log.count("after restore: hook") == 2
        for result in (first, second):
            lines = result.log.splitlines()
            assert lines[0] == f"START RequestId: {result.request_id} Version: 1"
            m = REPORT.fullmatch(lines[-1])
            assert m is not None, lines[-1]
            assert "Init Duration" not in result.log
            # Billed Duration = the duration rounded up + the billed restore (the after-restore hooks)
            assert int(m["billed"]) == math.ceil(float(m["duration"])) + int(m["billed_restore"])
            assert float(m["restore"]) >= int(m["billed_restore"]) - 1
            assert result.restore_ms == pytest.approx(float(m["restore"]), abs=0.01)
            assert f"RESTORE_REPORT Restore Duration: {m['restore']} ms" in log

        warm = s.invoke({})
        assert "Restore Duration" not in warm.log and warm.restore_ms is None


def test_restored_instances_share_the_snapshots_random_state_unless_a_hook_reseeds(caps):
    # As on Lambda: a fork reseeds Python's `random`, a snapshot restore does not; the emulator
    # undoes the fork's reseed, so code that forgets to reseed shows it locally too.
    with ServerThread(snap_config(max_concurrency=2), caps) as s:
        a, b = (json.loads(r.payload) for r in concurrently(s, [{"sleep": 0.5}, {"sleep": 0.5}]))
        assert a["pid"] != b["pid"]
        assert a["init_id"] == b["init_id"]
        assert (a["random"], a["numpy"]) == (b["random"], b["numpy"])
    with ServerThread(snap_config(max_concurrency=2, environment={"SNAP_RESEED": "1"}), caps) as s:
        a, b = (json.loads(r.payload) for r in concurrently(s, [{"sleep": 0.5}, {"sleep": 0.5}]))
        assert a["pid"] != b["pid"] and a["random"] != b["random"]


def test_a_failing_after_restore_hook_is_a_snapstart_exception(caps):
    with ServerThread(snap_config(environment={"SNAP_FAIL_RESTORE": "1"}), caps) as s:
        with pytest.raises(SnapStartError) as failed:
            s.invoke({})
        assert "ConnectionError: the database is gone after restore" in str(failed.value)
        log = s.log_text()
        assert re.search(
            r"^RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: error\tError Type: Runtime.AfterRestoreError$",
            log,
            re.M,
        )
        assert "[ERROR] ConnectionError: the database is gone after restore" in log  # awslambdaric's record
        assert "START RequestId" not in log  # the invocation never started
        # Over the Invoke API, boto3 raises the service's own exception; the server keeps serving.
        client = lambda_client(s.url)
        with pytest.raises(client.exceptions.SnapStartException) as over_http:
            client.invoke(FunctionName="probe:live", Payload=b"{}")
        assert over_http.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "afterRestore() runtime hook" in over_http.value.response["Error"]["Message"]


def test_a_restore_past_its_budget_is_a_snapstart_timeout(caps):
    cfg = snap_config(restore_budget_s=0.5, environment={"SNAP_SLOW_RESTORE": "30"})
    with ServerThread(cfg, caps) as s:
        with pytest.raises(SnapStartTimeoutError):
            s.invoke({})
        assert "RESTORE_REPORT Restore Duration: 500.00 ms\tStatus: timeout" in s.log_text()
        client = lambda_client(s.url)
        with pytest.raises(client.exceptions.SnapStartTimeoutException):
            client.invoke(FunctionName="probe", Payload=b"{}")


def test_a_failing_before_snapshot_hook_fails_the_snapshot(caps):
    s = ServerThread(snap_config(environment={"SNAP_FAIL_BEFORE": "1"}), caps)
    s.thread.start()
    try:
        with pytest.raises(EmulatorError, match="Runtime.BeforeSnapshotError: cannot snapshot this"):
            s.call(s.server.start("127.0.0.1", 0))
        assert re.search(
            r"^INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: error\t"
            r"Error Type: Runtime.BeforeSnapshotError$",
            s.log_text(),
            re.M,
        )
    finally:
        s.__exit__(None, None, None)


def test_the_snapshots_init_has_its_own_budget(caps):
    cfg = config("slow_init.handler", snapstart=True, snapshot_budget_s=0.5, environment={"SLOW_INIT_S": "30"})
    s = ServerThread(cfg, caps)
    s.thread.start()
    try:
        with pytest.raises(EmulatorError, match="ran past 0.5 s"):
            s.call(s.server.start("127.0.0.1", 0))
        assert "INIT_REPORT Init Duration: 500.00 ms\tPhase: init\tStatus: timeout" in s.log_text()
    finally:
        s.__exit__(None, None, None)


def test_the_version_and_its_alias_are_invokable_other_versions_are_not(caps):
    with ServerThread(snap_config(), caps) as s:
        client = lambda_client(s.url)
        for name, qualifier in (("probe:live", None), ("probe", "1"), ("probe", None)):
            kwargs = {"Qualifier": qualifier} if qualifier else {}
            answer = client.invoke(FunctionName=name, Payload=b"{}", **kwargs)
            assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "1"
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="probe:2", Payload=b"{}")


def test_snapshot_budget_and_report_lines():
    assert protocol.snapshot_init_budget_s(30) == 130 and protocol.snapshot_init_budget_s(600) == 600
    assert protocol.snapshot_init_budget_s(900) == 900
    # the snapshot's init is not held to the on-demand 10 s: 130 s, or the timeout when longer
    assert Snapshot(snap_config(timeout_s=30.0), {}, {}, log=print).budget_s == 130
    assert Snapshot(snap_config(timeout_s=300.0), {}, {}, log=print).budget_s == 300
    report = protocol.Report("r", 1.5, 4, 128, 60, restore_ms=12.345, billed_restore_ms=2)
    assert protocol.report_line(report).endswith("\tRestore Duration: 12.35 ms\tBilled Restore Duration: 2 ms\t")
    assert protocol.restore_report_line(10.0, "error", "Runtime.ExitError") == (
        "RESTORE_REPORT Restore Duration: 10.00 ms\tStatus: error\tError Type: Runtime.ExitError"
    )
    assert protocol.match_runtime("GET", "/2018-06-01/runtime/restore/next") == protocol.RuntimeRoute("restore_next")
    assert protocol.match_runtime("POST", "/2018-06-01/runtime/restore/error") == protocol.RuntimeRoute("restore_error")
    cost = protocol.snapstart_cost(1024)
    assert cost.restore_usd == pytest.approx(0.0001397998)
    assert cost.cache_usd_per_hour == pytest.approx(0.0000015046 * 3600)
    assert cost.minimum_cache_usd == pytest.approx(3 * cost.cache_usd_per_hour)
