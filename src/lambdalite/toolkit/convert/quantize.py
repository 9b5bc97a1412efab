"""Static int8 quantization of an ONNX bundle, with an accuracy report against the float model.

    bundle, report = quantize_bundle(open_bundle(fp32_dir), out_dir, calibration, held_out)

The recipe (onnxruntime.quantization): `quant_pre_process` (shape inference and graph cleanup),
then `quantize_static` in the QDQ format, weights int8 per output channel (symmetric),
activations uint8 (U8S8, the fast path of ONNX Runtime's x86 kernels, VNNI included) with
min/max ranges calibrated on images run through the bundle's own `Preprocessor`, so the ranges
are the ones serving sees. The first convolution and the final classifier stay in float: they
are a sliver of the compute and the layers where int8 error costs the most (the stem sees raw
pixels; the classifier's logits decide near ties). Not dynamic quantization: on CNNs it is
slower (activations are quantized at run time) and less accurate.

The report runs the float and the int8 model on held-out images and gives top-1 agreement and
the largest difference in any class probability. Needs onnx and onnxruntime (the `zoo` extra),
not torch.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import Bundle, write_bundle
from lambdalite.core.images import Preprocessor
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BundleError, UsageError

__all__ = ["AccuracyReport", "compare", "float_nodes", "quantize_bundle", "quantize_onnx"]


class AccuracyReport(NamedTuple):
    """int8 against float on the same held-out images."""

    images: int
    top1_agreement: float
    max_probability_diff: float
    mean_probability_diff: float
    disagreements: tuple[tuple[str, str, str], ...]  # (image, float top-1, int8 top-1)

    def lines(self) -> list[str]:
        out = [
            f"accuracy against the float model on {self.images} held-out images:",
            f"  top-1 agreement          {self.top1_agreement * 100:6.2f}%",
            f"  largest probability diff {self.max_probability_diff:.4f}",
            f"  mean probability diff    {self.mean_probability_diff:.6f}",
        ]
        out += [f"  differs on {name}: float {a!r}, int8 {b!r}" for name, a, b in self.disagreements]
        return out


def float_nodes(model_path: Path) -> tuple[list[str], list[str]]:
    """The nodes kept in float, and the op types whose output stays float.

    The first Conv stays float: on an RGB stem (three input channels) the int8 kernel is both
    slower than the float one (EfficientNet-Lite0: 1.2 ms against 0.5) and the least accurate
    layer. A Gemm classifier gets int8 weights but a float output: its input is already int8 (the
    pooled features), and rounding the logits to 256 levels is what flips near ties. A MatMul
    classifier stays float.
    """
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    first_conv = next((n for n in nodes if n.op_type == "Conv"), None)
    classifier = next((n for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    keep = [first_conv.name] if first_conv is not None else []
    if classifier is not None and classifier.op_type == "MatMul":
        keep.append(classifier.name)
    return keep, ["Gemm"] if classifier is not None and classifier.op_type == "Gemm" else []


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what the quantization tooling prints to stdout, and its warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over preprocessed images."""

    def __init__(self, input_name: str, batches: Sequence[npt.NDArray[np.generic]], advance: Any) -> None:
        self.input_name = input_name
        self._it: Iterator[npt.NDArray[np.generic]] = iter(batches)
        self._advance = advance

    def get_next(self) -> dict[str, npt.NDArray[np.generic]] | None:
        x = next(self._it, None)
        if x is None:
            return None
        self._advance(1)
        return {self.input_name: x[None]}


def quantize_onnx(
    model: Path,
    out: Path,
    input_name: str,
    calibration: Sequence[npt.NDArray[np.generic]],
    progress: Progress,
    *,
    extra_float: Sequence[str] = (),
    method: Literal["minmax", "percentile"] = "minmax",
) -> tuple[list[str], list[str]]:
    """Write the static int8 (QDQ, per-channel) version of the ONNX file `model` to `out`.

    Returns the nodes kept in float and the op types left with float outputs: `float_nodes` of
    the prepared graph, plus `extra_float`. `method` "percentile" clips activation ranges at the
    99.999th percentile instead of the extremes, which keeps outliers from eating the int8
    resolution of every other value.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise UsageError("static quantization needs calibration images; none were given")
    with tempfile.TemporaryDirectory(prefix="lambdalite-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with progress.step("Preparing the graph for quantization (shape inference, fusions)"), quiet():
            quant_pre_process(str(model), str(pre))
        default_float, float_outputs = float_nodes(pre)
        excluded = [*default_float, *extra_float]
        with progress.bar(f"Calibrating on {len(calibration)} images", len(calibration), "images") as advance:

            class Reader(_Reader, CalibrationDataReader):  # type: ignore[misc]
                pass

            reader = Reader(input_name, calibration, advance)
            with quiet():
                quantize_static(
                    str(pre),
                    str(out),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile
                    if method == "percentile"
                    else CalibrationMethod.MinMax,
                    nodes_to_exclude=excluded,
                    extra_options={
                        "OpTypesToExcludeOutputQuantization": float_outputs,
                        **({"CalibPercentile": 99.999} if method == "percentile" else {}),
                    },
                )
    return excluded, float_outputs


def compare(
    float_model: bytes,
    int8_model: bytes,
    input_name: str,
    images: Sequence[tuple[str, npt.NDArray[np.generic]]],
    labels: Sequence[str],
    logits: bool,
) -> AccuracyReport:
    """Top-1 agreement and probability differences of two models on preprocessed images."""
    from lambdalite.engines import load_engine
    from lambdalite.tasks.classification import softmax

    if not images:
        raise UsageError("the accuracy report needs held-out images; none were given")
    engines = [load_engine("onnxruntime", m, threads=1) for m in (float_model, int8_model)]
    diffs: list[float] = []
    worst = 0.0
    agree = 0
    disagreements = []
    for name, x in images:
        probs = []
        for engine in engines:
            out = np.asarray(engine.run({input_name: x[None]})[0], dtype=np.float64).reshape(1, -1)
            probs.append(softmax(out)[0] if logits else out[0])
        a, b = int(probs[0].argmax()), int(probs[1].argmax())
        agree += a == b
        if a != b:
            disagreements.append((name, labels[a], labels[b]))
        d = np.abs(probs[0] - probs[1])
        worst = max(worst, float(d.max()))
        diffs.append(float(d.mean()))
    return AccuracyReport(len(images), agree / len(images), worst, float(np.mean(diffs)), tuple(disagreements))


def quantize_bundle(
    source: Bundle,
    out: Path,
    calibration: Sequence[bytes],
    held_out: Sequence[tuple[str, bytes]],
    progress: Progress | None = None,
    *,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    extra_float: Sequence[str] = (),
    method: Literal["minmax", "percentile"] = "minmax",
) -> tuple[Bundle, AccuracyReport]:
    """The int8 bundle of an ONNX image-classification bundle, and its accuracy report."""
    progress = progress or Quiet()
    m = source.manifest
    if m.engine != "onnxruntime" or m.task != "image-classification":
        raise UsageError(
            f"int8 quantization works on ONNX image-classification bundles; {m.name} is {m.task} on {m.engine}"
        )
    if m.input.dtype != "float32":
        raise BundleError(f"{m.name} already takes {m.input.dtype} input; quantize its float version")
    pre = Preprocessor.from_spec(m.input)
    input_name = m.input.name or "input"
    with progress.step(f"Preprocessing {len(calibration)} calibration and {len(held_out)} held-out images"):
        calib = [pre(data) for data in calibration]
        held = [(label, pre(data)) for label, data in held_out]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lambdalite-int8-") as tmp:
        int8_path = Path(tmp) / "model.int8.onnx"
        kept_float, float_outputs = quantize_onnx(
            source.path("model"),
            int8_path,
            input_name,
            calib,
            progress,
            extra_float=extra_float,
            method=method,
        )
        with progress.step(f"Comparing int8 with float on {len(held)} held-out images"):
            report = compare(
                source.read("model"),
                int8_path.read_bytes(),
                input_name,
                held,
                source.read_lines("labels"),
                m.output.kind == "logits",
            )
        bundle = write_bundle(
            out,
            name=name or f"{m.name}-int8",
            version=m.version,
            task=m.task,
            engine="onnxruntime",
            files={"model": int8_path, "labels": source.path("labels")},
            filenames={"model": "model.onnx", "labels": source.manifest.files["labels"].path},
            input=m.input,
            output=m.output,
            options=m.options,
            metadata={
                **dict(m.metadata),
                **(metadata or {}),
                "quantization": f"static int8, QDQ, per-channel weights (S8), U8 activations, {method} calibration"
                + (", float logits" if float_outputs else ""),
                "float_nodes": kept_float,
                "calibration_images": len(calib),
                "top1_agreement": round(report.top1_agreement, 4),
                "max_probability_diff": round(report.max_probability_diff, 4),
            },
        )
    return bundle, report
