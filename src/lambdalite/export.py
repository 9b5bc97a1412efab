"""PyTorch to ONNX export (needs the `export` extra: torch and onnx).

    export_onnx(module, example, Path("model.onnx"))

Exports with the TorchScript-based exporter (`dynamo=False`), opset 17, a dynamic batch axis,
and checks the file with onnx's checker. Everything this module imports is heavy, so only the
zoo builders and the `export`/`import` commands import it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch

__all__ = ["OPSET", "export_onnx", "quiet"]

OPSET = 17


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what model code prints to stdout and the exporter's warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    *,
    input_name: str = "input",
    output_name: str = "logits",
    dynamic_batch: bool = True,
) -> Path:
    module.eval()
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with quiet(), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes=axes,
        )
    onnx.checker.check_model(str(out))
    return out
