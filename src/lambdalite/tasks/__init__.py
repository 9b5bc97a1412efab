"""Tasks: what a bundle's model does with images, from bytes in to JSON-ready results out.

Each task lives in its own module and is built from an opened bundle and its engine(s). A task
object is created once, at load, and then called per request:

    task.predict([jpeg_bytes, png_bytes], top_k=5)  ->  one JSON-ready result per image

`image-classification` results are the DJL list `[{"className": ..., "probability": ...}]`,
best first; `image-to-text` results are `{"caption": ..., "score": ...}` (with `beam_size` > 1
also `"alternatives"`). A bundle may carry code that changes either (`lambdalite.pipeline`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from ..bundle import Bundle
from ..errors import BundleError

__all__ = ["TASK_MODULES", "Task", "load_task"]

TASK_MODULES = {
    "image-classification": "lambdalite.tasks.classification",
    "image-to-text": "lambdalite.tasks.captioning",
}


class Task(Protocol):
    """A loaded model that answers requests. `predict` takes encoded images (bytes)."""

    task: str
    bundle: Bundle

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]: ...

    def warmup(self) -> None: ...


class TaskFactory(Protocol):
    def __call__(self, bundle: Bundle, *, threads: int | None = None) -> Task: ...


def load_task(bundle: Bundle, *, threads: int | None = None, trust_code: bool | None = False) -> Task:
    """The task for `bundle`. A bundle with its own code (a `pipeline` file) loads only when
    `trust_code` is true (None: `LAMBDALITE_TRUST_CODE` decides), and raises `TrustError`
    otherwise (see `lambdalite.pipeline`). Bundles without code never import that module."""
    if "pipeline" in bundle.manifest.files:
        from .. import pipeline

        if trust_code is None:
            trust_code = pipeline.trust_from_env()
        return pipeline.load(bundle, threads=threads, trust_code=trust_code, builtin=_load_builtin)
    return _load_builtin(bundle, threads)


def _load_builtin(bundle: Bundle, threads: int | None) -> Task:
    task = bundle.manifest.task
    try:
        module = importlib.import_module(TASK_MODULES[task])
    except KeyError:  # pragma: no cover - the manifest already validated the task name
        raise BundleError(f"unsupported task {task!r}") from None
    factory: TaskFactory = module.load
    return factory(bundle, threads=threads)
