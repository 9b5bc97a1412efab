"""Tiny models built in code, so bundle/engine/postprocessing tests run in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lambdalite.core.bundle import Bundle, InputSpec, OutputSpec, write_bundle

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


def heavy_classifier_onnx(ballast_mb: int) -> bytes:
    """The tiny classifier plus `ballast_mb` MB of weights it really reads (one element of them,
    times zero): a model whose file alone is bigger than a small memory size."""
    model = onnx.load_from_string(tiny_classifier_onnx())
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.zeros(ballast_mb * 2**18, np.float32), "ballast"),
            numpy_helper.from_array(np.array([0], np.int64), "first"),
            numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
        ]
    )
    graph.node[-1].output[0] = "tiny_logits"
    graph.node.extend(
        [
            helper.make_node("Gather", ["ballast", "first"], ["picked"]),
            helper.make_node("Mul", ["picked", "zero"], ["nothing"]),
            helper.make_node("Add", ["tiny_logits", "nothing"], ["logits"]),
        ]
    )
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


# A tiny captioner with known behaviour: the caption is a bigram chain over TINY_VOCAB, nudged
# by the image's colour and by a per-beam repetition penalty kept in the decoder's state.
TINY_VOCAB = ["<pad>", "<start>", "<end>", "red", "blue", "x", "y", "z"]
_P = {  # next-token probabilities after each token (rows need not be complete: the rest is tiny)
    "<start>": {"x": 0.5, "y": 0.4, "red": 0.05, "blue": 0.05},
    "x": {"z": 0.36, "y": 0.26, "<end>": 0.38 - 0.1, "red": 0.05, "blue": 0.05},
    "y": {"<end>": 0.95, "z": 0.03},
    "z": {"<end>": 0.9, "x": 0.06},
    "red": {"<end>": 0.5, "x": 0.3, "z": 0.2},
    "blue": {"<end>": 0.5, "y": 0.3, "z": 0.2},
}
TINY_LOGP = np.full((len(TINY_VOCAB), len(TINY_VOCAB)), np.log(1e-4), np.float32)
for _prev, _row in _P.items():
    for _tok, _p in _row.items():
        TINY_LOGP[TINY_VOCAB.index(_prev), TINY_VOCAB.index(_tok)] = np.log(_p)
# Mean colour -> a bias on every step's logits: red pictures favour "red", blue ones "blue".
TINY_COLOUR = np.zeros((3, len(TINY_VOCAB)), np.float32)
TINY_COLOUR[0, 3], TINY_COLOUR[0, 4], TINY_COLOUR[2, 3], TINY_COLOUR[2, 4] = 6, -6, -6, 6
TINY_PENALTY = np.float32(8.0)  # subtracted per earlier occurrence of a token
TINY_CAPTION_INPUT = TINY_INPUT._replace(name="image")


def tiny_encoder_onnx(batch: int | str = "batch", initial_counts: list[float] | None = None) -> bytes:
    """(N, 3, 8, 8) -> features (N, 1, V): the colour bias; optionally counts (N, V), the initial state."""
    v = len(TINY_VOCAB)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 1, v])]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "C"], ["bias"]),
        helper.make_node("Unsqueeze", ["bias", "axis1"], ["features"]),
    ]
    inits = [numpy_helper.from_array(TINY_COLOUR, "C"), numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    if initial_counts is not None:
        outputs.append(helper.make_tensor_value_info("counts", TensorProto.FLOAT, [batch, v]))
        nodes += [
            helper.make_node("Mul", ["bias", "zero"], ["zeros"]),
            helper.make_node("Add", ["zeros", "init"], ["counts"]),
        ]
        inits += [
            numpy_helper.from_array(np.float32(0), "zero"),
            numpy_helper.from_array(np.array(initial_counts, np.float32), "init"),
        ]
    return _model(helper.make_graph(nodes, "tiny-encoder", [x], outputs, initializer=inits))


def tiny_decoder_onnx(probabilities: bool = False) -> bytes:
    """token (B,), counts (B, V), features (B, 1, V) -> logits (B, V), next_counts (B, V).

    next_counts = counts + onehot(token); logits = LOGP[token] + colour bias - penalty * next_counts.
    """
    v = len(TINY_VOCAB)
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("counts", TensorProto.FLOAT, ["batch", v]),
        helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 1, v]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", v]),
        helper.make_tensor_value_info("next_counts", TensorProto.FLOAT, ["batch", v]),
    ]
    last = "probs" if probabilities else "logits"
    nodes = [
        helper.make_node("Gather", ["LOGP", "token"], ["base"], axis=0),
        helper.make_node("ReduceMean", ["features"], ["bias"], axes=[1], keepdims=0),
        helper.make_node("OneHot", ["token", "depth", "onoff"], ["seen"], axis=-1),
        helper.make_node("Add", ["counts", "seen"], ["next_counts"]),
        helper.make_node("Mul", ["next_counts", "penalty"], ["pen"]),
        helper.make_node("Add", ["base", "bias"], ["biased"]),
        helper.make_node("Sub", ["biased", "pen"], [last]),
    ]
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["probs"], ["logits"], axis=-1))
    inits = [
        numpy_helper.from_array(TINY_LOGP, "LOGP"),
        numpy_helper.from_array(TINY_PENALTY, "penalty"),
        numpy_helper.from_array(np.array([v], np.int64), "depth"),
        numpy_helper.from_array(np.array([0, 1], np.float32), "onoff"),
    ]
    return _model(helper.make_graph(nodes, "tiny-decoder", inputs, outputs, initializer=inits))


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lambdalite-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_caption_reference(mean_rgb: np.ndarray, tokens: list[int], initial_counts: np.ndarray | None = None) -> float:
    """Total log-probability of `tokens` (ending with <end>) for a picture of mean colour `mean_rgb`."""
    bias = mean_rgb.astype(np.float64) @ TINY_COLOUR
    counts = np.zeros(len(TINY_VOCAB)) if initial_counts is None else initial_counts.astype(np.float64)
    prev, total = TINY_VOCAB.index("<start>"), 0.0
    suppressed = [TINY_VOCAB.index("<pad>"), TINY_VOCAB.index("<start>")]
    for tok in tokens:
        counts[prev] += 1  # the state counts every token fed so far, this step's included
        logits = TINY_LOGP[prev].astype(np.float64) + bias - TINY_PENALTY * counts
        logits[suppressed] = -np.inf
        logits -= logits.max()
        total += logits[tok] - np.log(np.exp(logits).sum())
        prev = tok
    return total


def write_tiny_captioner(root: Path, **overrides: object) -> Bundle:
    args: dict[str, object] = {
        "name": "tiny-captioner",
        "version": "0.1.0",
        "task": "image-to-text",
        "engine": "onnxruntime",
        "files": {
            "encoder": tiny_encoder_onnx(),
            "decoder": tiny_decoder_onnx(),
            "vocab": ("\n".join(TINY_VOCAB) + "\n").encode(),
        },
        "filenames": {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "vocab": "vocab.txt"},
        "input": TINY_CAPTION_INPUT,
        "output": OutputSpec(kind="logits", top_k=1),
        "options": {"beam_size": 1, "max_length": 4},
    }
    args.update(overrides)
    return write_bundle(root, **args)  # type: ignore[arg-type]
