"""Model files from elsewhere become bundles (`lambdalite import`, and archives found at run time).

Accepted: a SageMaker or seed-004 `model.tar.gz` (a TorchScript `.pt`/`.pth`, an `.onnx` or a
`.tflite`, plus `classes.txt`/`labels.txt`/`synset.txt` or TorchServe's `index_to_name.json`), a
bare model file of those kinds, or a bundle (returned as it is). Hugging Face and optimum
folders are `convert_hf`'s, Keras files (`.keras`, `.h5`) `convert_keras`'s.

What the model says is read from it by loading it with its engine: input name, layout (NCHW or
NHWC, from where the 3 channels are), size when fixed, and the class count (checked against the
labels). A probe run tells whether the output already sums to one (`probabilities`) or needs a
softmax (`logits`). The rest comes from `ImportOptions`, with ImageNet defaults (resize the short
side to size x 256/224, centre crop, mean 0.485/0.456/0.406, std 0.229/0.224/0.225).

TorchScript is converted to ONNX (needs torch and onnx: the `export` extra), so serving it needs
no torch; `keep_torchscript` keeps it for the torchscript engine. TorchScript does not record its
input size: it is taken from the options, or probed (224, then other common sizes).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from .bundle import MANIFEST_NAME, Bundle, InputSpec, OutputSpec, Resample, file_sha256, write_bundle
from .errors import BundleError, EngineError, SourceError, UsageError
from .progress import Progress, Quiet

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImportOptions",
    "ModelFacts",
    "bundle_in_place",
    "find_model",
    "import_model",
    "inspect_model",
    "is_torchscript",
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
_PROBE_SIZES = (224, 299, 256, 384, 240, 260, 300, 320, 380, 456, 512)


class ImportOptions(NamedTuple):
    """What `lambdalite import` takes from flags; None means: read it from the model, or default."""

    labels: Path | None = None
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: int | None = None
    crop: Literal["center", "none"] = "center"
    name: str | None = None
    version: str = "1.0.0"
    keep_torchscript: bool = False
    top_k: int = 5
    resample: Resample | None = None
    full_decode: bool = False  # decode JPEGs at full size (no reduced-scale draft)
    check_images: Path | None = None  # photos to check an import against the original model
    tolerance: float = 1e-4  # the largest probability difference that check accepts


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


def _kind(path: Path) -> Kind | None:
    return MODEL_SUFFIXES.get(path.suffix.lower())


def find_model(root: Path, origin: str) -> Found:
    """The one model file and the labels file in an unpacked archive."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    models = [p for p in files if _kind(p) is not None]
    if not models:
        names = ", ".join(str(p.relative_to(root)) for p in files[:8]) or "nothing"
        raise SourceError(
            f"{origin}: no model file found (looked for .pt, .pth, .onnx, .tflite; the archive holds {names})"
        )
    if len(models) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in models)
        raise SourceError(f"{origin}: more than one model file ({names}); import the one you mean on its own")
    labels = next((p for name in LABEL_FILES for p in files if p.name == name), None)
    return Found(models[0], _kind(models[0]) or "onnx", labels)


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
    from .engines import load_engine

    engine = load_engine(engine_name, model, threads=1)
    first = engine.inputs[0]
    shape = first.shape
    layout: Literal["NCHW", "NHWC"] = "NHWC" if len(shape) == 4 and shape[3] == 3 and shape[1] != 3 else "NCHW"
    hw = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3]) if len(shape) == 4 else (-1, -1)
    fixed = hw if hw[0] > 0 and hw[1] > 0 else None
    sizes = [fixed] if fixed else [(s, s) for s in ([size_hint] if size_hint else _PROBE_SIZES)]
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


def _input_spec(facts: ModelFacts, options: ImportOptions, size: tuple[int, int]) -> InputSpec:
    crop = options.crop
    resize = options.resize
    if resize is None and crop == "center":
        resize = round(min(size) * 256 / 224)
    return InputSpec(
        size=size,
        layout=facts.layout,
        resize=resize if crop == "center" else None,
        crop=crop,
        scale=1 / 255,
        mean=options.mean or IMAGENET_MEAN,
        std=options.std or IMAGENET_STD,
        resample=options.resample or "bilinear",
        name=facts.input_name,
        jpeg_draft=not options.full_decode,
    )


def _check_classes(facts: ModelFacts, labels: Sequence[str], origin: str) -> None:
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
        raise SourceError(_not_torchscript(found.model, origin))
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
        _check_classes(facts, labels, origin)
        size = facts.size or (224, 224)
    labels_name = "lambdalite-labels.txt"  # normalised: one name per line
    (root / labels_name).write_text("\n".join(labels) + "\n")
    from .bundle import FileRef, Manifest

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
        input=_input_spec(facts, ImportOptions(), size),
        output=OutputSpec(kind="probabilities" if facts.probabilities else "logits", top_k=5),
        metadata={"imported_from": origin, "format": found.kind},
    )
    Manifest.from_dict(json.loads(manifest.to_json()))
    (root / MANIFEST_NAME).write_bytes(manifest.to_json())
    return root


def _not_torchscript(path: Path, origin: str) -> str:
    return (
        f"{origin}: {path.name} is not TorchScript (a pickled model or state_dict needs its Python code); "
        f"save it with torch.jit.script/trace, or export it with `lambdalite export module:factory`"
    )


def import_model(source: Path, out: Path, options: ImportOptions, progress: Progress | None = None) -> Bundle:
    """Make the bundle directory `out` from an archive or a bare model file."""
    progress = progress or Quiet()
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        raise UsageError(f"{source} is already a bundle; use `lambdalite bundle pack` to pack it")
    if source.is_dir() and (source / "config.json").is_file():  # Hugging Face / optimum folders
        from .convert_hf import import_hf_folder

        return import_hf_folder(source, out, options, progress)
    if source.suffix.lower() in (".keras", ".h5"):
        from .convert_keras import import_keras

        return import_keras(source, out, options, progress)
    with tempfile.TemporaryDirectory(prefix="lambdalite-import-") as tmp:
        work = Path(tmp)
        if source.is_dir():
            found = find_model(source, str(source))
        elif _kind(source) is not None:
            found = Found(source, _kind(source) or "onnx", None)
        else:
            from .archive import extract_archive

            with progress.step(f"Unpacking {source.name}"):
                root = extract_archive(source, work / "unpacked")
            if (root / MANIFEST_NAME).is_file():
                raise UsageError(f"{source} is already a bundle; serve it as it is")
            found = find_model(root, str(source))
        if found.kind == "torchscript" and not is_torchscript(found.model):
            raise UsageError(_not_torchscript(found.model, str(source)))
        labels_path = options.labels or found.labels
        if labels_path is None:
            raise UsageError(f"{source}: no labels found; pass --labels classes.txt (one class name per line)")
        inside = options.labels is None and labels_path.is_relative_to(work)
        labels = read_labels(labels_path, f"{source}: {labels_path.name}" if inside else None)
        kind: Kind = found.kind
        model_path = found.model
        if kind == "torchscript":
            if not options.keep_torchscript:
                model_path, size = _torchscript_to_onnx(model_path, work / "model.onnx", options, progress)
                kind = "onnx"
                options = options._replace(input_size=options.input_size or size)
        with progress.step(f"Reading the {kind} model"):
            facts = inspect_model(ENGINE_FOR[kind], model_path.read_bytes(), options.input_size)
        _check_classes(facts, labels, str(source))
        hw = facts.size or (224, 224)
        if options.input_size and facts.size and facts.size != (options.input_size, options.input_size):
            raise UsageError(
                f"{source}: the model takes {facts.size[0]}x{facts.size[1]} input, "
                f"not --input-size {options.input_size}"
            )
        suffix = {"onnx": ".onnx", "tflite": ".tflite", "torchscript": ".pt"}[kind]
        return write_bundle(
            out,
            name=options.name or _default_name(source),
            version=options.version,
            task="image-classification",
            engine=ENGINE_FOR[kind],
            files={"model": model_path, "labels": ("\n".join(labels) + "\n").encode()},
            filenames={"model": "model" + suffix, "labels": "labels.txt"},
            input=_input_spec(facts, options, hw),
            output=OutputSpec(
                kind="probabilities" if facts.probabilities else "logits", top_k=options.top_k, name=facts.output_name
            ),
            metadata={"imported_from": source.name, "format": found.kind},
        )


def _default_name(source: Path) -> str:
    name = source.name
    for suffix in (".tar.gz", ".tgz", ".tar", *MODEL_SUFFIXES):
        name = name.removesuffix(suffix)
    return name or "model"


def _torchscript_to_onnx(model: Path, out: Path, options: ImportOptions, progress: Progress) -> tuple[Path, int]:
    """Convert TorchScript to ONNX, probing the input size, and check both agree."""
    try:
        import torch

        from .export import export_onnx
    except ImportError as exc:
        raise EngineError(
            f"converting TorchScript to ONNX needs torch and onnx (pip install 'lambdalite[export]'), "
            f"or keep it as it is with --keep-torchscript ({exc.name} is missing)"
        ) from exc
    with progress.step(f"Loading TorchScript {model.name}"):
        module = torch.jit.load(str(model), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    sizes = [options.input_size] if options.input_size else list(_PROBE_SIZES)
    example = None
    for s in sizes:
        candidate = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                expected = module(candidate)
        except Exception:  # TorchScript raises RuntimeError subclasses for a wrong size
            continue
        example, size = candidate, s
        break
    if example is None:
        raise BundleError(
            f"{model.name} does not run on a 1x3xNxN float input for N in {', '.join(map(str, sizes))}; "
            f"pass --input-size"
        )
    if isinstance(expected, tuple | list):
        expected = expected[0]
    with progress.step(f"Converting {model.name} to ONNX ({size}x{size} input, dynamic batch)"):
        export_onnx(module, example, out, output_name="output")
    from .engines import load_engine

    engine = load_engine("onnxruntime", out.read_bytes(), threads=1)
    [got] = engine.run({"input": example.numpy()})
    want = expected.detach().numpy()
    diff = float(np.abs(np.asarray(got) - want).max())
    if diff > 1e-3 * max(1.0, float(np.abs(want).max())):
        raise BundleError(f"the ONNX conversion of {model.name} disagrees with TorchScript (max difference {diff:.2e})")
    progress.note(f"    ONNX matches TorchScript (max difference {diff:.1e})")
    return out, size
