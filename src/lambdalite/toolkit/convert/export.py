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

__all__ = ["OPSET", "export_onnx", "load_factory", "quiet"]

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


def load_factory(spec: str) -> torch.nn.Module:
    """The module a `package.module:factory` names: a callable returning an nn.Module, or one."""
    import importlib
    import os
    import sys

    from lambdalite.errors import UsageError

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{spec!r}: write module:factory, e.g. mypkg.models:build")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: modules beside the user
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"cannot import {module_name!r}: no such module (run from its directory)") from exc
        raise UsageError(f"importing {module_name!r} failed: {exc}") from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    made = target if isinstance(target, torch.nn.Module) else target() if callable(target) else target
    if not isinstance(made, torch.nn.Module):
        raise UsageError(f"{spec} gave a {type(made).__name__}, not a torch.nn.Module")
    return made.eval()
