"""The ONNX Runtime engine (CPUExecutionProvider).

For SnapStart (`lambdalite.function.snapstart`): after `lambdalite.engines.keep_models()`, every
engine loaded keeps its model's bytes (`kept_engines()`), so that an environment restored without
its intra-op pool threads (the local emulator forks its snapshot, and a fork keeps only the
forking thread) can `rebuild` its session with a working pool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

# ONNX Runtime (1.2x on Linux) persists a telemetry device ID under $XDG_CACHE_HOME or ~/.cache when
# it starts; a function's filesystem is read-only there, so every cold start logged a coloured
# "Failed to persist telemetry device ID" warning. A function sends no telemetry: off, unless the
# environment already says otherwise.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort

from lambdalite.engines import TensorInfo, keeping_models
from lambdalite.errors import EngineError

__all__ = ["OnnxEngine", "kept_engines", "load"]

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _info(arg: ort.NodeArg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
    return TensorInfo(arg.name, _DTYPES.get(arg.type, arg.type), shape)


_KEPT: list[OnnxEngine] = []  # engines that keep their model (loaded after keep_models())


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, session: ort.InferenceSession, threads: int = 1) -> None:
        self.session = session
        self.threads = threads
        self.source: bytes | None = None  # the model's bytes, kept only after keep_models()
        self.inputs = [_info(a) for a in session.get_inputs()]
        self.outputs = [_info(a) for a in session.get_outputs()]

    def rebuild(self, threads: int) -> None:
        """Make a new session with `threads` intra-op threads and swap it in (a run in flight
        finishes on the old one). Needs the bytes kept since `lambdalite.engines.keep_models()`.

        The old session is never destroyed: this is for a process whose pool threads are gone (a
        fork), and destroying a session joins its pool's threads, which here would wait forever
        (holding the GIL). Its pages are mostly the snapshot's, shared, so keeping it costs little.
        """
        if self.source is None:
            raise EngineError("this engine did not keep its model: call lambdalite.engines.keep_models() first")
        old = self.session
        self.session = _session(self.source, threads)
        self.threads = threads
        _never_destroy(old)

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            return list(self.session.run(None, dict(feeds)))
        except Exception as exc:  # onnxruntime raises its own exception types for bad shapes etc.
            raise EngineError(f"onnxruntime failed to run the model: {str(exc).splitlines()[0]}") from exc


def kept_engines() -> list[OnnxEngine]:
    """The engines loaded since `lambdalite.engines.keep_models()`, in load order."""
    return list(_KEPT)


def load(model: bytes, *, threads: int) -> OnnxEngine:
    engine = OnnxEngine(_session(model, threads), threads)
    if keeping_models():
        engine.source = model
        _KEPT.append(engine)
    return engine


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads == 1:
        # With one thread there is no pool to keep spinning; don't burn the CPU credit.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from exc


def _never_destroy(obj: object) -> None:
    """One reference more than anything will ever release, interpreter shutdown included."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
