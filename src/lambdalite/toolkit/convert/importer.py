"""`lambdalite import`: model files from elsewhere become bundles.

Accepted: a SageMaker or seed-004 `model.tar.gz` (a TorchScript `.pt`/`.pth`, an `.onnx` or a
`.tflite`, plus `classes.txt`/`labels.txt`/`synset.txt` or TorchServe's `index_to_name.json`), a
bare model file of those kinds, a bundle (returned as it is), a Hugging Face captioner folder
(`hf_captioner`), a Hugging Face image-classification or optimum folder (`hf`), or a Keras file
(`.keras`, `.h5`: `keras`), all in `lambdalite.toolkit.convert`. The model is read as
`lambdalite.sources.plain` reads archives at run time; `ImportOptions` overrides its defaults.

TorchScript is converted to ONNX (needs torch and onnx: the `export` extra), so serving it needs
no torch; `keep_torchscript` keeps it for the torchscript engine. TorchScript does not record its
input size: it is taken from the options, or probed (224, then other common sizes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lambdalite.core.bundle import MANIFEST_NAME, Bundle, OutputSpec, write_bundle
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BundleError, EngineError, UsageError
from lambdalite.sources.plain import (
    ENGINE_FOR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_SUFFIXES,
    PROBE_SIZES,
    Found,
    Kind,
    check_classes,
    find_model,
    input_spec,
    inspect_model,
    is_torchscript,
    model_kind,
    not_torchscript,
    read_labels,
)
from lambdalite.toolkit.convert.options import ImportOptions, image_files

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImportOptions",
    "import_model",
]


def import_model(source: Path, out: Path, options: ImportOptions, progress: Progress | None = None) -> Bundle:
    """Make the bundle directory `out` from an archive or a bare model file."""
    progress = progress or Quiet()
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        raise UsageError(f"{source} is already a bundle; use `lambdalite bundle pack` to pack it")
    if source.is_dir() and (source / "config.json").is_file():
        from lambdalite.toolkit.convert import hf_captioner

        if hf_captioner.is_captioner(source):
            flags = (
                ("--labels", options.labels),
                ("--input-size", options.input_size),
                ("--mean", options.mean),
                ("--std", options.std),
                ("--resize", options.resize),
                ("--no-crop", options.crop != "center"),
                ("--keep-torchscript", options.keep_torchscript),
            )
            given = [flag for flag, value in flags if value]
            if given:
                raise UsageError(
                    f"{given[0]} does not apply to {source}: a Hugging Face captioner's preprocessing comes from "
                    f"its image processor and its vocabulary from its tokenizer"
                )
            check = tuple(image_files(options.check_images)) if options.check_images else ()
            captioner = hf_captioner.CaptionerOptions(
                options.name, options.version, options.generate, options.prompt, check
            )
            return hf_captioner.import_captioner(source, out, captioner, progress)[0]
    if options.generate or options.prompt:
        raise UsageError("--num-beams, --max-length, --prompt and the like are for Hugging Face captioner folders")
    if source.is_dir() and (source / "config.json").is_file():  # Hugging Face / optimum classifier folders
        from lambdalite.toolkit.convert.hf import import_hf_folder

        return import_hf_folder(source, out, options, progress)
    if source.suffix.lower() in (".keras", ".h5"):
        from lambdalite.toolkit.convert.keras import import_keras

        return import_keras(source, out, options, progress)
    with tempfile.TemporaryDirectory(prefix="lambdalite-import-") as tmp:
        work = Path(tmp)
        if source.is_dir():
            found = find_model(source, str(source))
        elif model_kind(source) is not None:
            found = Found(source, model_kind(source) or "onnx", None)
        else:
            from lambdalite.core.archive import extract_archive

            with progress.step(f"Unpacking {source.name}"):
                root = extract_archive(source, work / "unpacked")
            if (root / MANIFEST_NAME).is_file():
                raise UsageError(f"{source} is already a bundle; serve it as it is")
            found = find_model(root, str(source))
        if found.kind == "torchscript" and not is_torchscript(found.model):
            raise UsageError(not_torchscript(found.model, str(source)))
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
        check_classes(facts, labels, str(source))
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
            input=input_spec(
                facts,
                hw,
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

        from lambdalite.toolkit.convert.export import export_onnx
    except ImportError as exc:
        raise EngineError(
            f"converting TorchScript to ONNX needs torch and onnx (pip install 'lambdalite[export]'), "
            f"or keep it as it is with --keep-torchscript ({exc.name} is missing)"
        ) from exc
    with progress.step(f"Loading TorchScript {model.name}"):
        module = torch.jit.load(str(model), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    sizes = [options.input_size] if options.input_size else list(PROBE_SIZES)
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
    from lambdalite.engines import load_engine

    engine = load_engine("onnxruntime", out.read_bytes(), threads=1)
    [got] = engine.run({"input": example.numpy()})
    want = expected.detach().numpy()
    diff = float(np.abs(np.asarray(got) - want).max())
    if diff > 1e-3 * max(1.0, float(np.abs(want).max())):
        raise BundleError(f"the ONNX conversion of {model.name} disagrees with TorchScript (max difference {diff:.2e})")
    progress.note(f"    ONNX matches TorchScript (max difference {diff:.1e})")
    return out, size
