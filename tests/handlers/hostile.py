"""Handlers for the emulator's issue-14 tests: child processes that take memory, output without a
trailing newline, errors whose stack trace shows where the code is, payloads to wait on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

_ALLOCATE = """
import os, sys, time
if sys.argv[3] == "1":
    os.setsid()  # leave the runtime's process group and session
chunks = []
for _ in range(int(sys.argv[1]) // 8):
    chunks.append(bytearray(b"\\x01" * (8 * 2**20)))
    time.sleep(0.002)
time.sleep(float(sys.argv[2]))
"""


def child_allocates(event: Any, context: Any) -> Any:
    """A child process allocates `mb` MB (touching every page), holds it `hold` s and exits."""
    args = [str(event.get("mb", 0)), str(event.get("hold", 0.5)), "1" if event.get("setsid") else "0"]
    proc = subprocess.run([sys.executable, "-c", _ALLOCATE, *args], check=False)
    return {"returncode": proc.returncode}


def partial_line(event: Any, context: Any) -> Any:
    """Print without a trailing newline (awslambdaric's stdout is unbuffered), then answer."""
    print(event.get("text", "no newline"), end="")
    return {"ok": True}


def fail(event: Any, context: Any) -> Any:
    raise ValueError("where am I?")


def where(event: Any, context: Any) -> Any:
    """Where the code is, as the function sees it, and whether it may write there."""
    try:
        with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "written.txt"), "w") as f:
            f.write("x")
        writable: Any = True
    except OSError as exc:
        writable = exc.strerror
    return {
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "cwd": os.getcwd(),
        "file": __file__,
        "writable": writable,
        "listing": sorted(os.listdir(os.environ["LAMBDA_TASK_ROOT"]))[:50],
        "env": {k: v for k, v in os.environ.items() if k.startswith("STAGE")},
    }


def sleep(event: Any, context: Any) -> Any:
    time.sleep(float(event.get("sleep", 0)))
    return {"slept": event.get("sleep", 0), "bytes": len(event.get("pad", ""))}


def layered(event: Any, context: Any) -> Any:
    """Modules from the layers, and whether /opt may be written."""
    import importlib

    found = {}
    for name in event.get("modules", []):
        module = importlib.import_module(name)
        found[name] = [module.__file__, getattr(module, "VALUE", None)]
    try:
        open("/opt/written.txt", "w").close()
        writable: Any = True
    except OSError as exc:
        writable = exc.strerror
    return {"modules": found, "writable": writable}
