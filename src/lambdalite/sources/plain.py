"""Plain model archives: a model file and its labels, without a lambdalite manifest.

A SageMaker or seed-004 `model.tar.gz` (a TorchScript `.pt`/`.pth`, an `.onnx` or a `.tflite`,
plus `classes.txt`/`labels.txt`/`synset.txt` or TorchServe's `index_to_name.json`) is made a
bundle where it was unpacked (`bundle_in_place`), at run time, when a function is pointed at it
(`LAMBDALITE_MODEL=s3://.../model.tar.gz`, seed 004's `MODEL_BUCKET`/`MODEL_KEY`, https).
`lambdalite import` reads models with the same functions.

What the model says is read from it by loading it with its engine: input name, layout (NCHW or
NHWC, from where the 3 channels are), size when fixed, and the class count (checked against the
labels). A probe run tells whether the output already sums to one (`probabilities`) or needs a
softmax (`logits`). The rest is ImageNet's defaults (resize the short side to size x 256/224,
centre crop, mean 0.485/0.456/0.406, std 0.229/0.224/0.225).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from lambdalite.core.bundle import MANIFEST_NAME, FileRef, InputSpec, Manifest, OutputSpec, Resample, file_sha256
from lambdalite.errors import BundleError, EngineError, SourceError, UsageError

__all__ = [
    "ENGINE_FOR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_FILES",
    "MODEL_SUFFIXES",
    "PROBE_SIZES",
    "Found",
    "Kind",
    "ModelFacts",
    "bundle_in_place",
    "check_classes",
    "find_model",
    "input_spec",
    "inspect_model",
    "is_torchscript",
    "model_kind",
    "not_torchscript",
    "read_labels",
]

Kind = Literal["onnx", "tflite", "torchscript"]
ENGINE_FOR: dict[Kind, str] = {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torchscript"}
MODEL_SUFFIXES: dict[str, Kind] = {
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".torchscript": "torchscript",
    ".ptl": "torchscript",
}
LABEL_FILES = ("classes.txt", "labels.txt", "synset.txt", "class_names.txt", "index_to_name.json", "labels.json")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROBE_SIZES = (224, 299, 256, 384, 240, 260, 300, 320, 380, 456, 512)


class Found(NamedTuple):
    model: Path
    kind: Kind
    labels: Path | None


class ModelFacts(NamedTuple):
    """What a loaded model tells about itself."""

    input_name: str
    layout: Literal["NCHW", "NHWC"]
    size: tuple[int, int] | None
    classes: int | None
    output_name: str
    probabilities: bool


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with `code/`), False for a pickled state_dict."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n or n.startswith("code/") for n in names) and any(n.endswith("data.pkl") for n in names)


def model_kind(path: Path) -> Kind | None:
    return MODEL_SUFFIXES.get(path.suffix.lower())


def find_model(root: Path, origin: str) -> Found:
    """The one model file and the labels file in an unpacked archive."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    models = [p for p in files if model_kind(p) is not None]
    if not models:
        names = ", ".join(str(p.relative_to(root)) for p in files[:8]) or "nothing"
        raise SourceError(
            f"{origin}: no model file found (looked for .pt, .pth, .onnx, .tflite; the archive holds {names})"
        )
    if len(models) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in models)
        raise SourceError(f"{origin}: more than one model file ({names}); import the one you mean on its own")
    labels = next((p for name in LABEL_FILES for p in files if p.name == name), None)
    return Found(models[0], model_kind(models[0]) or "onnx", labels)


def read_labels(path: Path, shown: str | None = None) -> list[str]:
    """Class names: one per line, or a JSON list / {"0": name} / TorchServe {"0": [wnid, name]}."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the labels {shown}: {exc}") from exc
    if path.suffix == ".json":
        try:
            data: Any = json.loads(text)
            if isinstance(data, dict):
                data = [data[str(i)] for i in range(len(data))]
            labels = [v[-1] if isinstance(v, list) else v for v in data]
            if all(isinstance(v, str) and v for v in labels):
                return labels
        except (ValueError, KeyError, TypeError, IndexError):
            pass
        raise UsageError(f"{shown}: expected a JSON list of names or an index -> name object")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise UsageError(f"{shown} lists no labels")
    return labels


def inspect_model(engine_name: str, model: bytes, size_hint: int | None = None) -> ModelFacts:
    """Load the model with its engine and read what it says about its input and output."""
    from lambdalite.engines import load_engine

    engine = load_engine(engine_name, model, threads=1)
    first = engine.inputs[0]
    shape = first.shape
    layout: Literal["NCHW", "NHWC"] = "NHWC" if len(shape) == 4 and shape[3] == 3 and shape[1] != 3 else "NCHW"
    hw = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3]) if len(shape) == 4 else (-1, -1)
    fixed = hw if hw[0] > 0 and hw[1] > 0 else None
    sizes = [fixed] if fixed else [(s, s) for s in ([size_hint] if size_hint else PROBE_SIZES)]
    rng = np.random.default_rng(0)
    error: EngineError | None = None
    for h, w in sizes:
        x = rng.standard_normal((1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)).astype(np.float32)
        try:
            out = np.asarray(engine.run({first.name: x})[0], dtype=np.float64).reshape(1, -1)
        except EngineError as exc:
            error = error or exc
            continue
        probabilities = bool(out.min() >= 0 and abs(out.sum() - 1) < 1e-3)
        return ModelFacts(first.name, layout, (h, w), out.shape[1], engine.outputs[0].name, probabilities)
    tried = ", ".join(f"{h}x{w}" for h, w in sizes)
    raise BundleError(f"the model does not run on a {layout} float input of {tried}: {error}")


def input_spec(
    facts: ModelFacts,
    size: tuple[int, int],
    *,
    resize: int | None = None,
    crop: Literal["center", "none"] = "center",
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    resample: Resample | None = None,
    full_decode: bool = False,
) -> InputSpec:
    """The input spec for a model that takes `size`: ImageNet's defaults where not given.

    `full_decode` turns off decoding large JPEGs at a reduced scale (as PIL.Image.open decodes)."""
    if resize is None and crop == "center":
        resize = round(min(size) * 256 / 224)
    return InputSpec(
        size=size,
        layout=facts.layout,
        resize=resize if crop == "center" else None,
        crop=crop,
        scale=1 / 255,
        mean=mean or IMAGENET_MEAN,
        std=std or IMAGENET_STD,
        resample=resample or "bilinear",
        name=facts.input_name,
        jpeg_draft=not full_decode,
    )


def check_classes(facts: ModelFacts, labels: Sequence[str], origin: str) -> None:
    if facts.classes is not None and facts.classes != len(labels):
        raise BundleError(f"{origin}: the model has {facts.classes} outputs but the labels list {len(labels)} classes")


def bundle_in_place(root: Path, origin: str) -> Path:
    """Make an unpacked SageMaker / seed-004 archive a bundle where it lies (at run time).

    TorchScript is served as it is, with the torchscript engine, when torch is installed; with
    ImageNet defaults (224, resize 256, centre crop) since it does not record its input size.
    """
    found = find_model(root, origin)
    if found.labels is None:
        raise SourceError(
            f"{origin}: no classes.txt (or labels.txt, synset.txt, index_to_name.json) beside {found.model.name}"
        )
    if found.kind == "torchscript" and not is_torchscript(found.model):
        raise SourceError(not_torchscript(found.model, origin))
    labels = read_labels(found.labels, f"{origin}: {found.labels.relative_to(root)}")
    if found.kind == "torchscript":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise SourceError(
                f"{origin} holds a TorchScript model; serving it as it is needs torch "
                f"(pip install 'lambdalite[torch]'), or convert it once with "
                f"`lambdalite import model.tar.gz -o bundle.tar.gz` (ONNX, no torch needed)"
            )
        facts = ModelFacts("input", "NCHW", None, None, "output", False)
        size = (224, 224)
    else:
        facts = inspect_model(ENGINE_FOR[found.kind], found.model.read_bytes())
        check_classes(facts, labels, origin)
        size = facts.size or (224, 224)
    labels_name = "lambdalite-labels.txt"  # normalised: one name per line
    (root / labels_name).write_text("\n".join(labels) + "\n")
    files = {
        "model": FileRef(found.model.relative_to(root).as_posix(), file_sha256(found.model)),
        "labels": FileRef(labels_name, file_sha256(root / labels_name)),
    }
    manifest = Manifest(
        name=found.model.stem,
        version="0",
        task="image-classification",
        engine=ENGINE_FOR[found.kind],
        files=files,
        input=input_spec(facts, size),
        output=OutputSpec(kind="probabilities" if facts.probabilities else "logits", top_k=5),
        metadata={"imported_from": origin, "format": found.kind},
    )
    Manifest.from_dict(json.loads(manifest.to_json()))
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    return root


def not_torchscript(path: Path, origin: str) -> str:
    return (
        f"{origin}: {path.name} is not TorchScript (a pickled model or state_dict needs its Python code); "
        f"save it with torch.jit.script/trace, or export it with `lambdalite export module:factory`"
    )
