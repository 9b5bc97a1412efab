"""lambdalite's own handler (its SnapStart hooks included), plus a way to see an instance's state.

The init draws from `random` and numpy's global generator, so both are in the snapshot.
`{"draw": true, "sleep": S}` answers what this environment draws next and how many threads it
runs (after S seconds);
anything else goes to `lambdalite.handler.handler`.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np

from lambdalite.handler import handler as predict

AT_INIT = (random.random(), float(np.random.random()))


def handler(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and event.get("draw"):
        time.sleep(float(event.get("sleep", 0)))  # keeps this instance busy, so another one is restored
        return {
            "pid": os.getpid(),
            "random": random.random(),
            "numpy": float(np.random.random()),
            "threads": len(os.listdir("/proc/self/task")),
        }
    return predict(event, context)
