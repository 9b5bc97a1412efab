"""Keras 3 models into bundles (`lambdalite import model.keras --labels classes.txt`).

A `.keras` file (Keras 3's zip of config and weights) or a legacy `.h5` (what Keras 2's
`ModelCheckpoint` wrote, as seed 001's Xception) is loaded with Keras 3 on its torch backend
(`KERAS_BACKEND=torch`, no TensorFlow) and exported to ONNX with torch (the `export` extra).

What is read from the model: the input layout (channels last or first), its size when fixed,
the class count, and whether the output is already a softmax. What must be given by flags, as
for TFLite: the labels and the preprocessing (`--mean/--std` after /255, `--resize`/`--no-crop`,
`--resample`; ImageNet defaults otherwise). Seed 001's Xception preprocessing (x / 127.5 - 1 on
a plain resize, nearest) is `--mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 --no-crop --resample nearest`.

Files whose layers run Python code (`Lambda` layers) are refused: loading them would execute
code from the file (Keras's safe mode). The bundle is checked on photos against the Keras
model, both fed the bundle's own preprocessing, so the check covers the conversion.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import Bundle, OutputSpec, write_bundle
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BundleError, UsageError

if TYPE_CHECKING:
    from lambdalite.toolkit.convert.options import ImportOptions

__all__ = ["import_keras", "keras_input"]


def _keras() -> Any:
    """Keras 3 on the torch backend (set before Keras is first imported)."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
        import torch  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"importing a Keras model needs keras and torch (pip install 'lambdalite[export]'); {exc.name} is missing"
        ) from exc
    backend = keras.backend.backend()
    if backend != "torch":
        raise UsageError(f"Keras is already running on its {backend} backend; lambdalite exports with torch")
    if not str(keras.__version__).startswith("3."):
        raise UsageError(f"lambdalite reads Keras 3 files; keras {keras.__version__} is installed")
    return keras


def _load(keras: Any, source: Path) -> Any:
    try:
        return keras.saving.load_model(str(source), compile=False, safe_mode=True)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise UsageError(
                f"{source.name} holds a Lambda layer (Python code stored in the file); lambdalite does not run "
                f"code from a model file: rebuild the model without it"
            ) from exc
        raise UsageError(f"{source.name}: Keras cannot load it: {text.splitlines()[0] if text else exc}") from exc
    except (OSError, TypeError, KeyError) as exc:
        raise UsageError(f"{source.name}: Keras cannot load it: {exc}") from exc


def keras_input(model: Any, origin: str) -> tuple[Literal["NCHW", "NHWC"], tuple[int, int] | None]:
    """The layout and (height, width) of a model's one image input, from its declared shape."""
    if len(model.inputs) != 1:
        raise UsageError(f"{origin}: the model takes {len(model.inputs)} inputs; lambdalite feeds one image")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise UsageError(f"{origin}: the model's input has shape {shape}, not (batch, height, width, 3)")
    if shape[3] == 3:
        layout: Literal["NCHW", "NHWC"] = "NHWC"
        h, w = shape[1], shape[2]
    elif shape[1] == 3:
        layout, h, w = "NCHW", shape[2], shape[3]
    else:
        raise UsageError(f"{origin}: the model's input {shape} has no axis of 3 colour channels")
    return layout, (int(h), int(w)) if h and w else None


def export_keras_onnx(model: Any, shape: tuple[int, int, int, int], out: Path) -> Path:
    """Export with torch's dynamo exporter (onnxscript), a dynamic batch axis, then onnx's checker.

    Keras's torch backend computes "same" padding from the traced input's shape, which the
    TorchScript exporter cannot fold into constants (Xception's pooling fails there); the
    dynamo exporter traces those sizes symbolically, as Keras's own `export(format="onnx")` does.
    """
    import logging

    import onnx
    import torch

    from lambdalite.toolkit.convert.export import quiet

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> Any:
            return self.model(x, training=False)

    batch = torch.export.Dim("batch", min=1, max=4096)
    example = torch.zeros((2, *shape[1:]))  # a batch of 2: a batch of 1 would be specialised
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notes
    try:
        with quiet(), torch.no_grad():
            program = torch.onnx.export(
                Forward().eval(),
                (example,),
                dynamo=True,
                opset_version=18,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes={"x": {0: batch}},
                verbose=False,
            )
            if program is None:  # only without a dynamo result; never with dynamo=True
                raise BundleError("torch.onnx.export gave no program")
            program.optimize()
            program.save(str(out))
    finally:
        onnx_logger.setLevel(level)
    onnx.checker.check_model(str(out))
    return out


def import_keras(source: Path, out: Path, options: ImportOptions, progress: Progress | None = None) -> Bundle:
    """Make the bundle `out` from a Keras 3 `.keras` (or legacy `.h5`) file."""
    from lambdalite.sources.plain import input_spec, inspect_model, read_labels
    from lambdalite.toolkit.convert.hf import check_photos, finish_checked, run_check

    progress = progress or Quiet()
    origin = str(source)
    if options.labels is None:
        raise UsageError(f"{source}: a Keras file names no classes; pass --labels classes.txt (one name per line)")
    labels = read_labels(options.labels)
    photos = check_photos(options.check_images)
    with progress.step("Loading Keras (torch backend)"):
        keras = _keras()
        import torch
    with progress.step(f"Loading {source.name}"):
        model = _load(keras, source)
    layout, size = keras_input(model, origin)
    if size is None and options.input_size is None:
        raise UsageError(f"{origin}: the model accepts any image size; pass --input-size")
    if size is not None and options.input_size is not None and size != (options.input_size, options.input_size):
        raise UsageError(f"{origin}: the model takes {size[0]}x{size[1]} input, not --input-size {options.input_size}")
    h, w = size or (options.input_size or 224, options.input_size or 224)
    shape = (1, h, w, 3) if layout == "NHWC" else (1, 3, h, w)

    def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        with torch.no_grad():
            y = model(torch.from_numpy(np.ascontiguousarray(batch)), training=False)
        y = y[0] if isinstance(y, list | tuple) else y
        return np.asarray(y.detach().cpu().numpy())

    with tempfile.TemporaryDirectory(prefix="lambdalite-keras-") as tmp:
        work = Path(tmp)
        onnx_path = work / "model.onnx"
        with progress.step(f"Exporting to ONNX ({h}x{w} {layout}, dynamic batch)"):
            try:
                export_keras_onnx(model, shape, onnx_path)
            except Exception as exc:  # the exporter raises many kinds for unsupported layers
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BundleError(f"{origin}: exporting the Keras model to ONNX failed: {first}") from exc
        facts = inspect_model("onnxruntime", onnx_path.read_bytes(), h)
        if facts.classes is not None and facts.classes != len(labels):
            raise BundleError(
                f"{origin}: the model has {facts.classes} outputs but the labels list {len(labels)} classes"
            )
        staged = write_bundle(
            work / "bundle",
            name=options.name or source.stem,
            version=options.version,
            task="image-classification",
            engine="onnxruntime",
            files={"model": onnx_path, "labels": ("\n".join(labels) + "\n").encode()},
            filenames={"model": "model.onnx", "labels": "labels.txt"},
            input=input_spec(
                facts,
                (h, w),
                resize=options.resize,
                crop=options.crop,
                mean=options.mean,
                std=options.std,
                resample=options.resample,
                full_decode=options.full_decode,
            ),
            output=OutputSpec(
                kind="probabilities" if facts.probabilities else "logits", top_k=options.top_k, name=facts.output_name
            ),
            metadata={"imported_from": source.name, "format": "keras", "keras_version": str(keras.__version__)},
        )
        reference = f"keras {keras.__version__} (torch backend) on the bundle's own preprocessing"
        with progress.step(f"Checking the bundle on {len(photos)} photos against Keras"):
            check = run_check(
                staged, reference, run, photos, options.tolerance, reference_probabilities=facts.probabilities
            )
        return finish_checked(staged, check, out, origin, progress)
