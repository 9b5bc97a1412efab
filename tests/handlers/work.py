"""Handlers that do measurable work: CPU-bound loops (CPU follows memory) and levelled log lines."""

from __future__ import annotations

import json
import time
from typing import Any


def burn(event: Any, context: Any) -> Any:
    """Spin `n` iterations of pure-Python arithmetic on one thread; how long it took, wall and CPU."""
    n = int(event.get("n", 2_000_000)) if isinstance(event, dict) else 2_000_000
    wall0, cpu0 = time.perf_counter(), time.process_time()
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "x": x}


def levels(event: Any, context: Any) -> Any:
    """One JSON log line per level, then a plain line (no level: Lambda treats it as INFO)."""
    for level in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR"):
        print(json.dumps({"level": level, "message": f"a {level} line"}), flush=True)
    print("a plain line", flush=True)
    return {"ok": True}
