"""The ONNX Runtime engine (CPUExecutionProvider)."""

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

from lambdalite.engines import TensorInfo
from lambdalite.errors import EngineError

__all__ = ["OnnxEngine", "load"]

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


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.inputs = [_info(a) for a in session.get_inputs()]
        self.outputs = [_info(a) for a in session.get_outputs()]

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            return list(self.session.run(None, dict(feeds)))
        except Exception as exc:  # onnxruntime raises its own exception types for bad shapes etc.
            raise EngineError(f"onnxruntime failed to run the model: {str(exc).splitlines()[0]}") from exc


def load(model: bytes, *, threads: int) -> OnnxEngine:
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
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from exc
    return OnnxEngine(session)
