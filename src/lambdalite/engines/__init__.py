"""Inference engines behind one small interface.

An engine wraps one framework's session for one model file. Each lives in its own module and
imports its framework at the top of that module, so choosing `onnxruntime` never loads torch
and vice versa; this package imports only numpy.

    engine = load_engine("onnxruntime", model_bytes, threads=default_threads())
    [logits] = engine.run({engine.inputs[0].name: batch})
"""

import importlib
import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from lambdalite.errors import EngineError

__all__ = [
    "ENGINE_MODULES",
    "Engine",
    "TensorInfo",
    "cpu_quota",
    "default_threads",
    "import_engine",
    "keep_models",
    "keeping_models",
    "load_engine",
    "threads_for",
]

ENGINE_MODULES = {
    "onnxruntime": ("lambdalite.engines.onnx", "onnxruntime", "onnxruntime"),
    "litert": ("lambdalite.engines.litert", "ai_edge_litert", "ai-edge-litert (pip install 'lambdalite[tflite]')"),
    "torchscript": ("lambdalite.engines.torchscript", "torch", "torch (pip install 'lambdalite[torch]')"),
}
MB_PER_VCPU = 1769  # Lambda gives one vCPU's worth of CPU per 1,769 MB of memory.
_KEEP_MODELS = False


class TensorInfo(NamedTuple):
    """A model input or output: its name, numpy dtype name and shape (-1 for a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


class Engine(Protocol):
    """One loaded model. `run` maps input names to arrays and returns the outputs in order."""

    name: str
    inputs: Sequence[TensorInfo]
    outputs: Sequence[TensorInfo]

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]: ...


class EngineFactory(Protocol):
    def __call__(self, model: bytes, *, threads: int) -> Engine: ...


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def cpu_quota() -> float | None:
    """The CPU quota of this process's cgroup (v2 `cpu.max` or v1 CFS), or None if unlimited."""
    try:
        quota, period = _read("/sys/fs/cgroup/cpu.max").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        q = int(_read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
        p = int(_read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def default_threads(memory_mb: int | None = None) -> int:
    """Intra-op threads that the CPU we may use can actually run.

    The smallest of: the CPUs this process may run on, the cgroup quota, and on Lambda the vCPU
    credits its memory size buys (`memory_mb`: 1 per 1,769 MB; Lambda shows 2+ cores even at
    128 MB, so the visible count oversubscribes). `LAMBDALITE_THREADS` (the settings' `threads`)
    overrides this where the caller reads it.
    """
    return threads_for(len(os.sched_getaffinity(0)), cpu_quota(), memory_mb)


def threads_for(cpus: int, quota: float | None, memory_mb: int | None) -> int:
    """Threads for `cpus` visible CPUs, a cgroup `quota` (CPUs) and a Lambda memory size."""
    limits: list[float] = [cpus]
    if quota is not None:
        limits.append(quota)
    if memory_mb is not None:
        limits.append(memory_mb / MB_PER_VCPU)
    return max(1, math.floor(min(limits) + 0.5))


def import_engine(name: str) -> EngineFactory:
    """Import the engine called `name` (and its framework); its `load` function."""
    try:
        module_name, framework, install = ENGINE_MODULES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r} (known: {', '.join(ENGINE_MODULES)})") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] == framework:
            raise EngineError(f"engine {name!r} needs {install}, which is not installed") from exc
        raise
    factory: EngineFactory = module.load
    return factory


def keep_models() -> None:
    """From now on, engines that can rebuild their session keep their model's bytes (SnapStart:
    `lambdalite.function.snapstart`). Costs the model's size in memory; off by default."""
    global _KEEP_MODELS
    _KEEP_MODELS = True


def keeping_models() -> bool:
    return _KEEP_MODELS


def load_engine(name: str, model: bytes, *, threads: int | None = None) -> Engine:
    """Load `model` (the model file's bytes) with the engine called `name`."""
    return import_engine(name)(model, threads=threads or default_threads())
