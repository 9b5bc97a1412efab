"""The TorchScript engine (torch, an optional extra: serving seed-004 models as they are).

The model is loaded from bytes with `torch.jit.load` onto the CPU, in eval mode, and run under
`torch.inference_mode()` with torch's intra-op threads set to what the engine was given.
TorchScript records no input names or shapes: the one input is called `input` and its shape is
left open; a model returning a tuple or list gives its tensors in order.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import torch

from lambdalite.engines import TensorInfo
from lambdalite.errors import EngineError

__all__ = ["TorchScriptEngine", "load"]


class TorchScriptEngine:
    name = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module
        self.inputs = [TensorInfo("input", "float32", (-1, -1, -1, -1))]
        self.outputs = [TensorInfo("output", "float32", ())]

    def run(self, feeds: Mapping[str, npt.NDArray[np.generic]]) -> list[npt.NDArray[np.generic]]:
        try:
            [x] = feeds.values()
        except ValueError:
            raise EngineError(f"the TorchScript engine takes one input, not {len(feeds)}") from None
        try:
            with torch.inference_mode():
                out = self.module(torch.from_numpy(np.ascontiguousarray(x)))
        except Exception as exc:  # TorchScript raises torch.jit.Error / RuntimeError for bad shapes
            raise EngineError(f"torch failed to run the model: {str(exc).strip().splitlines()[-1]}") from exc
        tensors = list(out) if isinstance(out, tuple | list) else [out]
        return [t.detach().numpy() for t in tensors if isinstance(t, torch.Tensor)]


def load(model: bytes, *, threads: int) -> TorchScriptEngine:
    torch.set_num_threads(threads)
    try:
        module = torch.jit.load(io.BytesIO(model), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # a zip that is not TorchScript, a truncated file, an unknown op...
        raise EngineError(f"torch cannot load the model as TorchScript: {str(exc).strip().splitlines()[0]}") from exc
    return TorchScriptEngine(module.eval())
