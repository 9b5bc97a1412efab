"""Load a model once, from any reference, and time the phases of that cold start.

model = load_model("efficientnet-lite0")
model.predict([jpeg_bytes], top_k=5)   # -> [[{"className": ..., "probability": ...}, ...]]

load_model("shapes-captioner").predict([jpeg_bytes], beam_size=3)  # -> [{"caption": ..., ...}]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .bundle import Bundle, open_bundle
from .engines import import_engine
from .progress import Progress
from .sources import resolve
from .tasks import Task, load_task

__all__ = ["Model", "load_model"]


class Model:
    """A loaded bundle ready to answer; `timings` holds the load phases in milliseconds."""

    __slots__ = ("reference", "task", "timings")

    def __init__(self, reference: str, task: Task, timings: dict[str, float]) -> None:
        self.reference = reference
        self.task = task
        self.timings = timings

    @property
    def bundle(self) -> Bundle:
        return self.task.bundle

    @property
    def name(self) -> str:
        return self.task.bundle.manifest.name

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]:
        return self.task.predict(images, **options)


def load_model(
    reference: str,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    warmup: bool = False,
    trust_code: bool | None = None,
) -> Model:
    """Resolve `reference`, open the bundle and load its task; optionally run it once.

    `timings` records the cold start's phases: resolve_ms (finding or fetching the model),
    imports_ms (the engine's framework), session_ms (reading, verifying and loading the model),
    warmup_ms (the first run).

    `trust_code` allows a bundle's own code (`pipeline.py`) to run; None reads
    `LAMBDALITE_TRUST_CODE` (1 or 0, unset meaning no). Untrusted code raises `TrustError`.
    """
    t0 = time.perf_counter()
    root = resolve(reference, progress)
    t1 = time.perf_counter()
    bundle = open_bundle(root)
    import_engine(bundle.manifest.engine)
    t2 = time.perf_counter()
    task = load_task(bundle, threads=threads, trust_code=trust_code)
    t3 = time.perf_counter()
    timings = {"resolve_ms": (t1 - t0) * 1e3, "imports_ms": (t2 - t1) * 1e3, "session_ms": (t3 - t2) * 1e3}
    if warmup:
        task.warmup()
        timings["warmup_ms"] = (time.perf_counter() - t3) * 1e3
    return Model(reference, task, timings)
