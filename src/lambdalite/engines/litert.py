"""The LiteRT engine: TensorFlow Lite models through the PyPI `ai-edge-litert` interpreter.

TFLite models are NHWC. Float models take and give float32. Quantized models (int8 or uint8
tensors with a scale and zero point) take float input, which is quantized here with the input
tensor's parameters, and give float output, dequantized with the output tensor's: the engine
answers in the same units whatever the model's precision. An input that already has the model's
integer dtype is passed through untouched. The interpreter is not thread-safe, so runs are
serialised.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import Interpreter

from lambdalite.engines import TensorInfo
from lambdalite.errors import EngineError

__all__ = ["LiteRTEngine", "load"]

_QUANTIZED = (np.int8, np.uint8, np.int16)


def _quantization(detail: Mapping[str, Any]) -> tuple[float, int] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).type in _QUANTIZED and scale:
        return float(scale), int(zero_point)
    return None


def _info(detail: Mapping[str, Any]) -> TensorInfo:
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    dtype = "float32" if _quantization(detail) else np.dtype(detail["dtype"]).name
    return TensorInfo(str(detail["name"]), dtype, shape)


class LiteRTEngine:
    name = "litert"

    def __init__(self, interpreter: Interpreter) -> None:
        self.interpreter = interpreter
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        self.inputs = [_info(d) for d in self._in]
        self.outputs = [_info(d) for d in self._out]
        self._lock = threading.Lock()

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        with self._lock:
            try:
                self._set_inputs(feeds)
                self.interpreter.invoke()
                return [self._get(d) for d in self._out]
            except EngineError:
                raise
            except (ValueError, RuntimeError) as exc:  # the interpreter's errors for shapes and types
                raise EngineError(f"LiteRT failed to run the model: {str(exc).strip().splitlines()[0]}") from exc

    def _set_inputs(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> None:
        resized = False
        values = []
        for detail in self._in:
            name = detail["name"]
            if name not in feeds:
                if len(self._in) == 1 and len(feeds) == 1:
                    [x] = feeds.values()
                else:
                    raise EngineError(f"missing input {name!r} (got {', '.join(feeds)})")
            else:
                x = feeds[name]
            x = self._convert(np.asarray(x), detail)
            if tuple(x.shape) != tuple(detail["shape"]):
                self.interpreter.resize_tensor_input(detail["index"], list(x.shape))
                resized = True
            values.append((detail["index"], x))
        if resized:
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()
        for index, x in values:
            self.interpreter.set_tensor(index, x)

    @staticmethod
    def _convert(x: npt.NDArray[np.generic], detail: Mapping[str, Any]) -> npt.NDArray[np.generic]:
        want: np.dtype[Any] = np.dtype(detail["dtype"])
        if x.dtype == want:
            same: npt.NDArray[np.generic] = np.ascontiguousarray(x)
            return same
        quant = _quantization(detail)
        if quant is not None and np.issubdtype(x.dtype, np.floating):
            scale, zero_point = quant
            info = np.iinfo(want)
            q = np.round(x.astype(np.float32) / scale) + zero_point
            quantized: npt.NDArray[np.generic] = np.clip(q, info.min, info.max).astype(want)
            return quantized
        if np.issubdtype(want, np.floating) and np.issubdtype(x.dtype, np.number):
            return x.astype(want)
        raise EngineError(f"input {detail['name']!r} takes {want.name}, not {x.dtype.name}")

    def _get(self, detail: Mapping[str, Any]) -> npt.NDArray[np.generic]:
        out: npt.NDArray[np.generic] = self.interpreter.get_tensor(detail["index"])
        quant = _quantization(detail)
        if quant is None:
            copied: npt.NDArray[np.generic] = np.array(out)
            return copied
        scale, zero_point = quant
        return ((out.astype(np.float32) - zero_point) * scale).astype(np.float32)


def load(model: bytes, *, threads: int) -> LiteRTEngine:
    try:
        interpreter = Interpreter(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EngineError(f"LiteRT cannot load the model: {str(exc).strip().splitlines()[0]}") from exc
    return LiteRTEngine(interpreter)
