"""A handler whose module takes `SLOW_INIT_S` seconds to import (an over-long model load)."""

import os
import time

time.sleep(float(os.environ.get("SLOW_INIT_S", "0")))


def handler(event, context):
    return {"ok": True}
