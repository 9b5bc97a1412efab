"""Tasks: what a bundle's model does with images, from bytes in to JSON-ready results out.

Each task lives in its own module and is built from an opened bundle and its engine(s). A task
object is created once, at load, and then called per request:

    task.predict([jpeg_bytes, png_bytes], top_k=5)  ->  one JSON-ready result per image

`image-classification` results are the DJL list `[{"className": ..., "probability": ...}]`,
best first; `image-to-text` results are `{"caption": ..., "score": ...}` (with `beam_size` > 1
also `"alternatives"`). A bundle may carry code that changes either (`tasks.pipeline`). The
interface every task keeps is `tasks.base.Task`.
"""

from __future__ import annotations

import importlib

from lambdalite.core.bundle import Bundle
from lambdalite.core.images import DecodeLimits
from lambdalite.errors import BundleError
from lambdalite.tasks.base import Capabilities, Task, TaskFactory, TensorAccess

__all__ = ["TASK_MODULES", "Capabilities", "Task", "TaskFactory", "TensorAccess", "builtin_factory", "load_task"]

TASK_MODULES = {
    "image-classification": "lambdalite.tasks.classification",
    "image-to-text": "lambdalite.tasks.captioning",
}


def load_task(
    bundle: Bundle, *, threads: int | None = None, trust_code: bool = False, limits: DecodeLimits | None = None
) -> Task:
    """The task for `bundle`. A bundle with its own code (a `pipeline` file) loads only when
    `trust_code` is true, and raises `TrustError` otherwise (see `lambdalite.tasks.pipeline`).
    Bundles without code never import that module. `threads` defaults to what the CPUs allow."""
    from lambdalite.engines import default_threads

    threads = threads or default_threads()
    limits = limits or DecodeLimits()
    if "pipeline" in bundle.manifest.files:
        from lambdalite.tasks import pipeline

        return pipeline.load(bundle, threads=threads, trust_code=trust_code, limits=limits, builtin=builtin_factory)
    return builtin_factory(bundle.manifest.task)(bundle, threads=threads, limits=limits)


def builtin_factory(task: str) -> TaskFactory:
    """The `load` of the built-in task module for the manifest's `task`."""
    try:
        module = importlib.import_module(TASK_MODULES[task])
    except KeyError:  # pragma: no cover - the manifest already validated the task name
        raise BundleError(f"unsupported task {task!r}") from None
    factory: TaskFactory = module.load
    return factory
