"""lambdalite's own handler behind two faults, for the batch client's retry tests.

Until `FLAKY_UNTIL` (epoch seconds) every request naming images outlives the function's timeout,
so the instance is stopped and the Invoke API answers `Sandbox.Timedout`; after it, each such
request waits `FLAKY_DELAY` seconds before answering, keeping its instance busy so that other
requests meet 429 TooManyRequestsException. Other events (the client's model lookup) pass.
"""

from __future__ import annotations

import os
import time
from typing import Any

from lambdalite.handler import handler as lambdalite_handler

UNTIL = float(os.environ.get("FLAKY_UNTIL", "0"))
DELAY = float(os.environ.get("FLAKY_DELAY", "0"))


def handler(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and ("images" in event or "urls" in event):
        if time.time() < UNTIL:
            time.sleep(600)  # past the timeout
        time.sleep(DELAY)
    return lambdalite_handler(event, context)
