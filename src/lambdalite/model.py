"""Load a model once, from any reference, and time the phases of that cold start.

model = load_model("efficientnet-lite0")
model.predict([jpeg_bytes], top_k=5)   # -> [[{"className": ..., "probability": ...}, ...]]

load_model("shapes-captioner").predict([jpeg_bytes], beam_size=3)  # -> [{"caption": ..., ...}]
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from lambdalite.core.bundle import Bundle, open_bundle
from lambdalite.core.images import DecodeLimits
from lambdalite.core.progress import Progress
from lambdalite.engines import default_threads, import_engine
from lambdalite.settings import Settings
from lambdalite.sources.references import resolve
from lambdalite.sources.zoo import Builder
from lambdalite.tasks import Task, load_task

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
    settings: Settings | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    warmup: bool = False,
    trust_code: bool | None = None,
    build_zoo: Builder | None = None,
) -> Model:
    """Resolve `reference`, open the bundle and load its task; optionally run it once.

    `timings` records the cold start's phases: resolve_ms (finding or fetching the model),
    imports_ms (the engine's framework), session_ms (reading, verifying and loading the model),
    warmup_ms (the first run).

    `settings` (default: read from this process's environment) give the cache, the threads
    (`threads` overrides), the image limits and whether a bundle's own code (`pipeline.py`) may
    run (`trust_code` overrides; untrusted code raises `TrustError`). `build_zoo` builds zoo
    models the cache lacks (the toolkit's builder).
    """
    settings = settings or Settings.from_env()
    t0 = time.perf_counter()
    root = resolve(reference, progress, settings=settings, build_zoo=build_zoo)
    t1 = time.perf_counter()
    bundle = open_bundle(root)
    import_engine(bundle.manifest.engine)
    t2 = time.perf_counter()
    limits = DecodeLimits(settings.max_pixels, max_scans=settings.max_jpeg_scans, max_bytes=settings.max_decode_bytes)
    task = load_task(
        bundle,
        threads=threads or settings.threads or default_threads(settings.memory_mb),
        trust_code=settings.trust_code if trust_code is None else trust_code,
        limits=limits,
    )
    t3 = time.perf_counter()
    timings = {"resolve_ms": (t1 - t0) * 1e3, "imports_ms": (t2 - t1) * 1e3, "session_ms": (t3 - t2) * 1e3}
    if warmup:
        task.warmup()
        timings["warmup_ms"] = (time.perf_counter() - t3) * 1e3
    if limits.max_bytes is None and settings.memory_mb is not None:
        limits.max_bytes, limits.budget = decode_budget(settings.memory_mb, resident_bytes())
    return Model(reference, task, timings)


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux), or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


_MIN_DECODE_BUDGET = 16 * 2**20


def decode_budget(memory_mb: int, resident: int | None) -> tuple[int, str]:
    """The bytes one image may take to decode in a function of `memory_mb` whose model is loaded
    (`resident` bytes in use): half of what is left, the other half for the engine's working
    memory on a full batch and the allocator's slack. With it, and why, for refusals."""
    left = max(0, memory_mb * 2**20 - (resident or 0))
    budget = max(_MIN_DECODE_BUDGET, left // 2)
    return budget, (
        f"half of the {left / 2**20:.0f} MB that the function's {memory_mb} MB leave once its model is loaded; "
        "LAMBDALITE_MAX_DECODE_BYTES sets it"
    )
