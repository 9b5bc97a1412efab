"""Bundles that carry their own code (`pipeline.py`), run only when the caller trusts them.

A bundle may add a Python file with the role `pipeline` to change how its model is used.
It may define any of these (see docs/pipelines.md for a worked example):

    def preprocess(image: PIL.Image.Image, spec: InputSpec) -> np.ndarray:
        # One decoded RGB picture -> one model input sample (no batch axis). Replaces the
        # manifest's resize, crop and normalisation; decoding stays lambdalite's (safe, bounded).

    def postprocess(result: Any, context: Context) -> Any:
        # One picture's built-in result -> what the client receives (JSON-ready).
        # `context.bundle` is the bundle, `context.options` the request's options.

    class Pipeline:
        # The whole predict step, instead of the built-in task (which is then not loaded).
        def setup(self, bundle: Bundle, *, threads: int) -> None: ...   # once, at load
        def predict(self, images: list[PIL.Image.Image], **options: Any) -> list[Any]: ...
        def warmup(self) -> None: ...                                    # optional

`Pipeline` replaces the whole step, so it cannot be combined with the two functions.

Running code from a bundle is running a program: it can read the function's environment and
credentials, reach the network and change what every request gets. So it runs only when
trusted explicitly: `load_model(..., trust_code=True)`, `lambdalite predict --trust-code`, or
`LAMBDALITE_TRUST_CODE=1` in the function. Otherwise loading fails with `TrustError`. The
file's sha256 is checked against the manifest before it is executed. Errors the code raises
reach the client as `PipelineError` (a `LambdaliteError` it raises on purpose passes through).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from .bundle import Bundle, InputSpec
from .errors import BundleError, LambdaliteError, PipelineError, TrustError
from .images import decode

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ["HOOKS", "TRUST_ENV", "CodeTask", "Context", "PipelineTask", "load", "trust_from_env"]

TRUST_ENV = "LAMBDALITE_TRUST_CODE"
HOOKS = ("preprocess", "postprocess", "Pipeline")
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")
_serial = itertools.count()


class Context(NamedTuple):
    """What `postprocess` gets besides the result: the bundle and the request's options."""

    bundle: Bundle
    options: Mapping[str, Any]


class _Preprocessing(Protocol):
    preprocess: Callable[[bytes], npt.NDArray[np.generic]]


def trust_from_env() -> bool:
    """Whether `LAMBDALITE_TRUST_CODE` allows running code from bundles (unset means no)."""
    value = os.environ.get(TRUST_ENV, "").strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise TrustError(f"{TRUST_ENV} must be 1 (trust code in bundles) or 0, not {value!r}")


def _refuse(bundle: Bundle) -> TrustError:
    path = bundle.manifest.files["pipeline"].path
    return TrustError(
        f"bundle {bundle.manifest.name} carries its own code ({path}), which would run with all of this "
        f"process's permissions, and it was not trusted; read it, then allow it with --trust-code (CLI), "
        f"trust_code=True (Python) or {TRUST_ENV}=1 (in the function)"
    )


def _import(bundle: Bundle) -> types.ModuleType:
    path = bundle.path("pipeline")
    source = bundle.read("pipeline")  # sha256 checked here, before anything is executed
    name = f"lambdalite_pipeline_{bundle.manifest.files['pipeline'].sha256[:12]}_{next(_serial)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise PipelineError(f"{path.name} failed on import: {_describe(exc)}") from exc
    return module


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _call(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run bundle code; a deliberate LambdaliteError passes, anything else becomes a PipelineError."""
    try:
        return func(*args, **kwargs)
    except LambdaliteError:
        raise
    except Exception as exc:
        raise PipelineError(f"pipeline.py {what} raised {_describe(exc)}") from exc


def _json_ready(what: str, results: list[Any], count: int) -> list[Any]:
    if not isinstance(results, list) or len(results) != count:
        got = f"a list of {len(results)}" if isinstance(results, list) else type(results).__name__
        raise PipelineError(f"pipeline.py {what} must return a list of one result per image ({count}), got {got}")
    try:
        json.dumps(results)
    except (TypeError, ValueError) as exc:
        raise PipelineError(
            f"pipeline.py {what} returned something that is not JSON ({_describe(exc)}); "
            f"convert numpy values with .item() or .tolist()"
        ) from exc
    return results


class _Preprocess:
    """Bytes -> sample through the bundle's `preprocess`, after lambdalite's safe decode."""

    def __init__(self, func: Callable[[Image.Image, InputSpec], Any], spec: InputSpec) -> None:
        self.func = func
        self.spec = spec

    def __call__(self, data: bytes) -> npt.NDArray[np.generic]:
        out = _call("preprocess", self.func, decode(data), self.spec)
        if not isinstance(out, np.ndarray):
            raise PipelineError(f"pipeline.py preprocess must return a numpy array, got {type(out).__name__}")
        return out


class PipelineTask:
    """A built-in task with the bundle's own `preprocess` and/or `postprocess`."""

    def __init__(self, inner: Task, postprocess: Callable[[Any, Context], Any] | None) -> None:
        self.task = inner.task
        self.bundle = inner.bundle
        self.inner = inner
        self.postprocess = postprocess

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]:
        results = self.inner.predict(images, **options)
        if self.postprocess is None:
            return results
        context = Context(self.bundle, types.MappingProxyType(dict(options)))
        return _json_ready(
            "postprocess", [_call("postprocess", self.postprocess, r, context) for r in results], len(images)
        )

    def warmup(self) -> None:
        self.inner.warmup()

    def __getattr__(self, name: str) -> Any:
        """Everything else is the built-in task's (its labels, its vocabulary...)."""
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class CodeTask:
    """A task whose whole predict step is the bundle's `Pipeline`."""

    def __init__(self, bundle: Bundle, pipeline: Any) -> None:
        self.task = bundle.manifest.task
        self.bundle = bundle
        self.pipeline = pipeline

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]:
        pictures = [decode(data) for data in images]
        return _json_ready("predict", _call("predict", self.pipeline.predict, pictures, **options), len(images))

    def warmup(self) -> None:
        if callable(getattr(self.pipeline, "warmup", None)):
            _call("warmup", self.pipeline.warmup)


def load(
    bundle: Bundle,
    *,
    threads: int | None,
    trust_code: bool,
    builtin: Callable[[Bundle, int | None], Task],
) -> Task:
    """Load a bundle that has a `pipeline` file: refuse unless trusted, else import and wire it."""
    if not trust_code:
        raise _refuse(bundle)
    module = _import(bundle)
    hooks = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name, None))}
    if not hooks:
        raise BundleError(f"{bundle.path('pipeline').name} defines none of {', '.join(HOOKS)}; see docs/pipelines.md")
    if "Pipeline" in hooks:
        if len(hooks) > 1:
            others = " and ".join(sorted(set(hooks) - {"Pipeline"}))
            raise BundleError(
                f"{bundle.path('pipeline').name} defines Pipeline and {others}: a Pipeline replaces the "
                f"whole predict step, so do that work in its predict"
            )
        from .engines import default_threads

        pipeline = _call("Pipeline()", hooks["Pipeline"])
        for method in ("setup", "predict"):
            if not callable(getattr(pipeline, method, None)):
                raise BundleError(f"{bundle.path('pipeline').name}: Pipeline has no {method} method")
        _call("setup", pipeline.setup, bundle, threads=threads or default_threads())
        return CodeTask(bundle, pipeline)
    inner = builtin(bundle, threads)
    if "preprocess" in hooks:  # both built-in tasks turn bytes into a sample with their `preprocess`
        cast(_Preprocessing, inner).preprocess = _Preprocess(hooks["preprocess"], bundle.manifest.input)
    return PipelineTask(inner, hooks.get("postprocess"))
