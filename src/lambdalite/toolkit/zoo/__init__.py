"""The zoo's builders: each named model built offline, once, into the cache.

The names and where a built model lives are `lambdalite.sources.zoo` (a function reads built
bundles too); building needs the toolkit and an extra (see each model's `needs`).

    ensure_built("efficientnet-lite0", progress)   # the bundle directory, built on first use
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from lambdalite.core.cache import Cache
from lambdalite.core.progress import Progress
from lambdalite.errors import EngineError
from lambdalite.settings import Settings
from lambdalite.sources import zoo

__all__ = ["ZOO", "build", "ensure_built", "resolve_model"]

ZOO = zoo.ZOO


def build(name: str, out: Path, progress: Progress) -> None:
    """Build zoo model `name` into the empty directory `out`."""
    model = ZOO[name]
    module_name, func_name = model.builder.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"building the zoo model {name} needs the '{model.needs}' extra ({exc.name} is missing): "
            f"pip install 'lambdalite[{model.needs}]'"
        ) from exc
    builder: Callable[[Path, Progress], None] = getattr(module, func_name)
    builder(out, progress)


def ensure_built(name: str, progress: Progress | None = None, *, cache: Cache | None = None) -> Path:
    """The bundle directory of zoo model `name` in `cache` (default: the environment's), built
    first if that cache has none."""
    return zoo.ensure_built(name, cache or Settings.from_env().cache, progress, build=build)


def resolve_model(reference: str, progress: Progress | None = None, *, settings: Settings | None = None) -> Path:
    """`lambdalite.sources.references.resolve`, building zoo models the cache lacks."""
    from lambdalite.sources.references import resolve

    return resolve(reference, progress, settings=settings, build_zoo=build)
