"""A SnapStart handler with the runtime's own hooks (snapshot_restore_py), for the emulator's tests.

Its init draws random numbers and makes an id, as code that forgets about snapshots does. The
hooks print what ran; environment variables make them fail or stall:

    SNAP_FAIL_BEFORE=1      the before-snapshot hook raises (publishing the version fails)
    SNAP_FAIL_RESTORE=1     the after-restore hook raises (the invoke gets SnapStartException)
    SNAP_SLOW_RESTORE=S     the after-restore hook sleeps S seconds
    SNAP_RESEED=1           the after-restore hook reseeds `random` (what the SnapStart docs ask for)
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np
from snapshot_restore_py import register_after_restore, register_before_snapshot

INIT_PID = os.getpid()
INIT_ID = uuid.UUID(int=random.getrandbits(128)).hex  # made from `random` at init: shared by every restore
AT_INIT = float(np.random.random())  # numpy's global generator is in the snapshot too
RAN: list[str] = []


@register_before_snapshot
def first_registered_before() -> None:
    RAN.append("before-1")
    print("before snapshot: hook 1 (runs last)", flush=True)


@register_before_snapshot
def second_registered_before() -> None:
    RAN.append("before-2")
    print("before snapshot: hook 2 (runs first)", flush=True)
    if os.environ.get("SNAP_FAIL_BEFORE"):
        raise RuntimeError("cannot snapshot this")


def after_restore(tag: str) -> None:
    RAN.append(f"after-{tag}")
    print(f"after restore: {tag}", flush=True)
    if os.environ.get("SNAP_RESEED"):
        random.seed()
    if os.environ.get("SNAP_SLOW_RESTORE"):
        time.sleep(float(os.environ["SNAP_SLOW_RESTORE"]))
    if os.environ.get("SNAP_FAIL_RESTORE"):
        raise ConnectionError("the database is gone after restore")


register_after_restore(after_restore, "hook")


def handler(event: Any, context: Any) -> Any:
    time.sleep(float(event.get("sleep", 0)) if isinstance(event, dict) else 0)  # busy: another instance restores
    tmp = tempfile.gettempdir()  # /tmp with a mount namespace; else the snapshot's private TMPDIR
    with open(os.path.join(tmp, "instance.txt"), "a") as f:  # each restored instance has its own /tmp
        f.write(f"{os.getpid()}\n")
    with open(os.path.join(tmp, "instance.txt")) as f:
        tmp_lines = f.read().splitlines()
    return {
        "pid": os.getpid(),
        "init_pid": INIT_PID,
        "init_id": INIT_ID,
        "random": random.random(),
        "numpy": float(np.random.random()),
        "ran": RAN,
        "threads": threading.active_count(),
        "tmp_lines": len(tmp_lines),
        "snapshot_file": os.path.exists(os.path.join(tmp, "made-at-init.txt")),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_LAMBDA_", "AWS_ACCESS"))},
        "python": sys.version_info[:2],
    }


with open(os.path.join(tempfile.gettempdir(), "made-at-init.txt"), "w") as f:  # in the snapshot: every restore sees it
    f.write("init\n")
