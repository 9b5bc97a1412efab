"""SnapStart: the function's own runtime hooks, before the snapshot and after every restore.

With SnapStart, Lambda runs the init once, when a version is published, snapshots the
environment and restores every new environment from that one snapshot. Whatever the init made
that must be unique, fresh or tied to one environment is then shared by all of them.
`lambdalite.handler` calls `init` instead of loading directly when `AWS_LAMBDA_INITIALIZATION_TYPE`
is `snap-start`; the hooks go through the runtime's own `snapshot_restore_py` (Lambda's python3.12+
runtimes provide it; lambdalite pins it, so `lambdalite serve --snapstart` runs the same hooks,
and a bundle's or user's own hooks beside them). They are registered before the model loads, so
after a restore they run before any hook the model's code registers:

* before the snapshot: no model cache lock may be held (each restored environment would hold its
  copy of it); garbage is collected, so clients and sockets made and dropped during init are
  closed rather than copied into every environment; the threads running are counted.
* after each restore: Python's `random` and numpy's global generator (if the init imported it)
  are reseeded (otherwise every environment restored from one snapshot draws the same numbers);
  boto3's default session,
  whose credentials and pooled connections date from the snapshot, is dropped (the S3 model
  source makes a new client for every download already); and when the environment came back
  without the threads its ONNX Runtime sessions' intra-op pools were running (the local
  emulator forks the snapshot, and a fork keeps only the forking thread; Lambda's snapshot keeps
  them), those sessions are rebuilt on a background thread and swapped in. Until then the old
  session keeps answering: ONNX Runtime runs the work the missing workers would have taken on
  the calling thread, with the same results, on one thread. The old session is never destroyed
  (its destructor would wait forever for the threads the fork did not keep).

Each hook logs one JSON line (`"event": "snapshot"`, `"restore"`, and `"restore_threads"` when
sessions were rebuilt, with how long it took).
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from typing import Any

from lambdalite.core.cache import held_locks
from lambdalite.engines import default_threads, keep_models
from lambdalite.errors import InternalError
from lambdalite.function.app import Function
from lambdalite.function.logs import log_json
from lambdalite.settings import Settings

__all__ = ["Hooks", "after_restore", "before_snapshot", "init"]


class Hooks:
    """What the hooks share: the engines' thread count and the threads running at the snapshot."""

    __slots__ = ("rebuilder", "threads", "threads_at_snapshot")

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.threads_at_snapshot = 0
        self.rebuilder: threading.Thread | None = None


def init(settings: Settings) -> Function:
    """Register the hooks, then load the function as usual (its init goes into the snapshot)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not a python3.12+ runtime: no hooks to register, nothing will be restored
        log_json("snapstart", hooks=False, reason="snapshot_restore_py is not installed")
        return Function.from_settings(settings)
    hooks = Hooks(settings.threads or default_threads(settings.memory_mb))
    if hooks.threads > 1:
        keep_models()  # a session with a thread pool may have to be rebuilt after a restore
    register_before_snapshot(before_snapshot, hooks)
    register_after_restore(after_restore, hooks)
    return Function.from_settings(settings)


def before_snapshot(hooks: Hooks) -> None:
    held = held_locks()
    if held:
        raise InternalError(
            f"a model cache lock is held at snapshot time ({', '.join(held)}): every environment restored "
            "from the snapshot would hold it; release it before the init ends"
        )
    started = time.perf_counter()
    gc.collect()
    hooks.threads_at_snapshot = _running_threads()
    log_json(
        "snapshot",
        threads=hooks.threads_at_snapshot,
        engineThreads=hooks.threads,
        gcMs=round((time.perf_counter() - started) * 1e3, 2),
    )


def after_restore(hooks: Hooks) -> None:
    started = time.perf_counter()
    random.seed()
    reseeded = ["random"]
    numpy_random: Any = sys.modules.get("numpy.random")  # not imported yet: it will seed itself fresh
    if numpy_random is not None:
        numpy_random.seed()
        reseeded.append("numpy")
    boto3: Any = sys.modules.get("boto3")
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None
    lost = max(0, hooks.threads_at_snapshot - _running_threads())
    engines = _pooled_engines() if lost else []
    log_json(
        "restore",
        reseeded=reseeded,
        threadsLost=lost,
        rebuilding=len(engines),
        hooksMs=round((time.perf_counter() - started) * 1e3, 2),
    )
    if engines:
        hooks.rebuilder = threading.Thread(
            target=_rebuild, args=(engines, hooks.threads), name="lambdalite-restore-threads", daemon=True
        )
        hooks.rebuilder.start()


def _pooled_engines() -> list[Any]:
    """The ONNX Runtime engines whose sessions have an intra-op pool (kept to be rebuilt)."""
    onnx: Any = sys.modules.get("lambdalite.engines.onnx")
    return [engine for engine in onnx.kept_engines() if engine.threads > 1] if onnx is not None else []


def _rebuild(engines: list[Any], threads: int) -> None:
    started = time.perf_counter()
    try:
        for engine in engines:
            engine.rebuild(threads)
    except Exception as exc:  # the old sessions keep answering, on one thread
        log_json("restore_threads", error=f"{type(exc).__name__}: {exc}")
        return
    log_json(
        "restore_threads",
        engines=len(engines),
        threads=threads,
        rebuildMs=round((time.perf_counter() - started) * 1e3, 2),
    )


def _running_threads() -> int:
    """Every thread of this process, native ones (ONNX Runtime's pools) included."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()
