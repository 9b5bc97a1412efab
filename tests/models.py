"""Tiny models built in code, so bundle/engine/postprocessing tests run in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lambdalite.bundle import Bundle, InputSpec, OutputSpec, write_bundle

TINY_LABELS = ["red", "green", "blue", "gray"]
TINY_INPUT = InputSpec(
    size=(8, 8),
    layout="NCHW",
    resize=None,
    crop="center",
    scale=1 / 255,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    name="pixels",
)
# Mean colour -> logits: each class scores how much of "its" channel there is.
TINY_WEIGHTS = np.array([[4, -2, -2, 0], [-2, 4, -2, 0], [-2, -2, 4, 0]], np.float32)
TINY_BIAS = np.array([0, 0, 0, 0.5], np.float32)


def tiny_classifier_onnx(batch: int | str = "batch") -> bytes:
    """(N, 3, 8, 8) pixels in [0, 1] -> (N, 4) logits over TINY_LABELS."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])
    nodes = [
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [x],
        [y],
        initializer=[numpy_helper.from_array(TINY_WEIGHTS, "W"), numpy_helper.from_array(TINY_BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lambdalite-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_reference(pixels: np.ndarray) -> np.ndarray:
    """What the tiny model computes, in numpy: logits for (N, 3, H, W) input."""
    return pixels.mean(axis=(2, 3)) @ TINY_WEIGHTS + TINY_BIAS


def write_tiny_bundle(root: Path, **overrides: object) -> Bundle:
    args: dict[str, object] = {
        "name": "tiny",
        "version": "0.1.0",
        "task": "image-classification",
        "engine": "onnxruntime",
        "files": {"model": tiny_classifier_onnx(), "labels": ("\n".join(TINY_LABELS) + "\n").encode()},
        "filenames": {"model": "model.onnx", "labels": "labels.txt"},
        "input": TINY_INPUT,
        "output": OutputSpec(kind="logits", top_k=3),
    }
    args.update(overrides)
    return write_bundle(root, **args)  # type: ignore[arg-type]


def tiny_torchscript(size: int | None = None) -> bytes:
    """The tiny network as TorchScript (needs torch): (N, 3, H, W) -> (N, 4) logits, any H, W."""
    import io

    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.from_numpy(TINY_WEIGHTS.copy()))
            self.register_buffer("b", torch.from_numpy(TINY_BIAS.copy()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) @ self.w + self.b

    module = torch.jit.script(Tiny().eval())
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def seed004_archive(
    path: Path, model: bytes, labels: list[str] | None = None, model_name: str = "resnet50_jit.pth"
) -> Path:
    """A `model.tar.gz` laid out as seed 004 makes it: the TorchScript file and classes.txt."""
    import io
    import tarfile

    classes = ("\n".join(labels or TINY_LABELS) + "\n").encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in ((model_name, model), ("classes.txt", classes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
