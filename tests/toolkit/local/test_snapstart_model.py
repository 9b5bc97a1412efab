"""The function's own SnapStart hooks, on the demo model, in real restored instances.

tests/handlers/snapmodel.py is lambdalite's handler (its hooks registered by its init) plus a
`draw` event that shows an instance's random numbers and thread count. The engine runs with two
intra-op threads, so the snapshot holds an ONNX Runtime session with a thread pool: a forked
instance has lost those threads and must get working ones back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lambdalite.toolkit.local.messages import InvokeResult
from lambdalite.toolkit.local.server import probe_sandbox

from helpers.lambda_servers import ServerThread, config


@pytest.fixture(scope="module")
def caps():
    return probe_sandbox()


def model_config(demo_bundle: Path, **overrides: Any):
    return config(
        "snapmodel.handler",
        memory_mb=1024,
        model_dir=str(demo_bundle),
        environment={"LAMBDALITE_THREADS": "2"},
        **overrides,
    )


def records(log: str, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{") and f'"event":"{event}"' in line:
            found.append(json.loads(line))
    return found


def at_once(s: ServerThread, events: list[dict[str, Any]]) -> list[InvokeResult]:
    results: list[InvokeResult | None] = [None] * len(events)

    def one(i: int) -> None:
        results[i] = s.invoke(events[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return [r for r in results if r is not None]


def test_restored_instances_answer_as_a_normal_one_draw_their_own_numbers_and_get_their_threads_back(
    caps, demo_bundle, chelsea_jpeg
):
    event = {"image": base64.b64encode(chelsea_jpeg).decode()}
    with ServerThread(model_config(demo_bundle), caps) as normal:
        expected = json.loads(normal.invoke(event).payload)
        assert expected[0]["className"] == "Egyptian cat"

    cfg = model_config(demo_bundle, snapstart=True, version="1", alias="live", max_concurrency=2)
    with ServerThread(cfg, caps) as s:
        [snapshot] = records(s.log_text(), "snapshot")
        assert snapshot["engineThreads"] == 2 and snapshot["threads"] >= 2  # the pool is running at snapshot time
        # Restored a while after the snapshot, as instances usually are: the snapshot's pool
        # threads are idle then, and a session whose pool is gone must never be destroyed (its
        # destructor would wait for those threads forever, holding the GIL: a hung instance).
        time.sleep(2)
        draws = [json.loads(r.payload) for r in at_once(s, [{"draw": True, "sleep": 0.5}] * 2)]
        assert all("pid" in d for d in draws), (draws, s.log_text()[-3000:])
        assert draws[0]["pid"] != draws[1]["pid"]
        # The init drew from both generators; the function's after-restore hook reseeded them.
        assert draws[0]["random"] != draws[1]["random"] and draws[0]["numpy"] != draws[1]["numpy"]
        restores = records(s.log_text(), "restore")
        assert len(restores) == 2
        for restore in restores:
            assert restore["reseeded"] == ["random", "numpy"]
            assert restore["threadsLost"] > 0 and restore["rebuilding"] == 1

        # Each instance answers exactly as the normal instance did, while its session is rebuilt and after.
        answers = [json.loads(r.payload) for r in at_once(s, [event, event])]
        assert answers == [expected, expected]
        deadline = time.monotonic() + 60
        while len(records(s.log_text(), "restore_threads")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        rebuilt = records(s.log_text(), "restore_threads")
        assert [(r["engines"], r["threads"]) for r in rebuilt] == [(1, 2), (1, 2)]
        after = at_once(s, [{"draw": True, "sleep": 0.5}] * 2)
        assert {json.loads(r.payload)["pid"] for r in after} == {d["pid"] for d in draws}  # the same two instances
        assert all(json.loads(r.payload)["threads"] >= 2 for r in after)  # a working intra-op pool again
        assert [json.loads(r.payload) for r in at_once(s, [event, event])] == [expected, expected]
