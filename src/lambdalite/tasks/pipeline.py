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
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image

from lambdalite.core.bundle import Bundle, InputSpec
from lambdalite.core.images import DecodeLimits, decode
from lambdalite.errors import BundleError, LambdaliteError, PipelineError, TrustError
from lambdalite.tasks.base import Capabilities, Task, TaskFactory

__all__ = ["HOOKS", "TRUST_ENV", "CodeTask", "Context", "PipelineTask", "load"]

TRUST_ENV = "LAMBDALITE_TRUST_CODE"
HOOKS = ("preprocess", "postprocess", "Pipeline")
_serial = itertools.count()


class Context(NamedTuple):
    """What `postprocess` gets besides the result: the bundle and the request's options."""

    bundle: Bundle
    options: Mapping[str, Any]


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

    def __init__(self, func: Callable[[Image.Image, InputSpec], Any], spec: InputSpec, limits: DecodeLimits) -> None:
        self.func = func
        self.spec = spec
        self.limits = limits

    def __call__(self, data: bytes) -> npt.NDArray[np.generic]:
        out = _call("preprocess", self.func, decode(data, limits=self.limits), self.spec)
        if not isinstance(out, np.ndarray):
            raise PipelineError(f"pipeline.py preprocess must return a numpy array, got {type(out).__name__}")
        return out


class PipelineTask:
    """A built-in task with the bundle's own `preprocess` and/or `postprocess`."""

    def __init__(self, inner: Task, postprocess: Callable[[Any, Context], Any] | None) -> None:
        self.kind = inner.kind
        self.bundle = inner.bundle
        # The built-in task's labels and tensors (with the bundle's preprocess, if it has one);
        # postprocess changes what predict answers, not the model.
        self.capabilities = inner.capabilities
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


class CodeTask:
    """A task whose whole predict step is the bundle's `Pipeline`."""

    capabilities = Capabilities()  # the bundle's code is the whole step: nothing else is offered

    def __init__(self, bundle: Bundle, pipeline: Any, *, limits: DecodeLimits) -> None:
        self.kind = bundle.manifest.task
        self.bundle = bundle
        self.pipeline = pipeline
        self.limits = limits

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]:
        pictures = [decode(data, limits=self.limits) for data in images]
        return _json_ready("predict", _call("predict", self.pipeline.predict, pictures, **options), len(images))

    def warmup(self) -> None:
        if callable(getattr(self.pipeline, "warmup", None)):
            _call("warmup", self.pipeline.warmup)


def load(
    bundle: Bundle,
    *,
    threads: int,
    trust_code: bool,
    limits: DecodeLimits,
    builtin: Callable[[str], TaskFactory],
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
        pipeline = _call("Pipeline()", hooks["Pipeline"])
        for method in ("setup", "predict"):
            if not callable(getattr(pipeline, method, None)):
                raise BundleError(f"{bundle.path('pipeline').name}: Pipeline has no {method} method")
        _call("setup", pipeline.setup, bundle, threads=threads)
        return CodeTask(bundle, pipeline, limits=limits)
    preprocess = _Preprocess(hooks["preprocess"], bundle.manifest.input, limits) if "preprocess" in hooks else None
    inner = builtin(bundle.manifest.task)(bundle, threads=threads, limits=limits, preprocess=preprocess)
    return PipelineTask(inner, hooks.get("postprocess"))
