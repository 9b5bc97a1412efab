"""Handlers that misbehave on purpose, one way each, for the emulator's fault tests.

Every handler answers normally for a plain event, so "the next request succeeds" can be checked
on the same instance pool; the fault happens only when the event asks for it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

LOADED_AT = time.time()


def echo(event: Any, context: Any) -> Any:
    """Echo the event with what the context and environment say (the conformance handler)."""
    if isinstance(event, dict):
        if event.get("print"):
            print(event["print"])
            print("to stderr", file=sys.stderr)
        if event.get("sleep"):
            time.sleep(float(event["sleep"]))
        if event.get("fail"):
            raise ValueError(f"bad input: {event['fail']}")
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "function_name": context.function_name,
        "client_context": getattr(context.client_context, "custom", None) if context.client_context else None,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "pid": os.getpid(),
        "runtime": [sys.argv[0], "awslambdaric" in sys.modules],
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("AWS_", "LAMBDA", "_HANDLER", "TZ", "STAGE", "MODEL_", "TMPDIR"))
        },
    }


def fail(event: Any, context: Any) -> Any:
    if event.get("fail"):
        raise ValueError(f"bad input: {event['fail']}")
    return {"ok": True}


def sleep(event: Any, context: Any) -> Any:
    time.sleep(float(event.get("sleep", 0)))
    return {"slept": event.get("sleep", 0), "pid": os.getpid()}


def allocate(event: Any, context: Any) -> Any:
    """Allocate `mb` megabytes gradually (touching every page), as a growing model would."""
    chunks = []
    for _ in range(int(event.get("mb", 0)) // 8):
        chunks.append(bytearray(b"\x01" * (8 * 2**20)))
        time.sleep(0.002)
    return {"allocated_mb": 8 * len(chunks), "pid": os.getpid()}


def spike(event: Any, context: Any) -> Any:
    """Touch `mb` megabytes at once, free them and answer at once: a peak between two samples."""
    import mmap

    size = int(event.get("mb", 0)) * 2**20
    block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0))
    block.close()  # the pages were resident (populated by the kernel in one go), and now they are gone
    return {"peak_mb": size // 2**20}


def exit_process(event: Any, context: Any) -> Any:
    if "exit" in event:
        print("exiting now", flush=True)
        os._exit(int(event["exit"]))
    return {"ok": True, "pid": os.getpid()}


def write(event: Any, context: Any) -> Any:
    """Try to write `bytes` bytes to `path`; report what happened instead of raising."""
    path = os.path.expandvars(event["path"])
    size = int(event.get("bytes", 1))
    try:
        with open(path, "wb") as f:
            block = b"\0" * (1 << 20)
            left = size
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)
        os.remove(path) if event.get("remove") else None
        return {"written": size}
    except OSError as exc:
        return {"error": exc.strerror, "errno": exc.errno}


def big_response(event: Any, context: Any) -> Any:
    return "x" * int(event["size"])


def modules(event: Any, context: Any) -> Any:
    """Which modules the instance has loaded by the time the handler runs."""
    return sorted(sys.modules)


def spawn(event: Any, context: Any) -> Any:
    """Start a child process that outlives this invocation, then sleep `sleep` seconds."""
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    time.sleep(float(event.get("sleep", 0)))
    return {"child": child.pid}
