"""Hugging Face image classifiers into bundles (`lambdalite import DIR`).

Two kinds of folder:

- a `save_pretrained` folder: `config.json`, `preprocessor_config.json` and the weights
  (`model.safetensors`, or `pytorch_model.bin`, sharded or not). The model is loaded with
  `transformers` and exported to ONNX with torch (the `export` extra).
- an `optimum-cli export onnx --task image-classification` folder: the same two JSON files and
  `model.onnx`. Nothing is exported and torch is never imported.

What is read: the labels from `config.json`'s `id2label`; how an image becomes the input from
the image processor that `preprocessor_config.json` describes, loaded with `transformers` (PIL
backend, so class defaults apply exactly as for its users) and mapped onto `InputSpec`: the
resize (`size` as height/width, or `shortest_edge` with ConvNeXt's `crop_pct`), the centre crop,
`rescale_factor`, `image_mean`/`image_std` and `resample`. A processor the bundle cannot express
(padding, a longest-edge limit, a resize without a crop that leaves the input size varying, an
unknown processor class) is refused with what it does.

Then the bundle is checked on photos against the original, each side with its own
preprocessing: the Hugging Face image processor on the decoded photo (as its pipelines load it)
into the `transformers` model (or, for an optimum folder, the folder's `model.onnx`), against
lambdalite's decoding and preprocessing of the same bytes into the bundle. The import fails
unless the top-1 class agrees on every photo and the largest probability difference is within
the tolerance (1e-4 by default); the numbers are printed and kept in the manifest's metadata.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import RESAMPLE, Bundle, InputSpec, OutputSpec, Resample, open_bundle, write_bundle
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BundleError, UsageError

if TYPE_CHECKING:
    from lambdalite.toolkit.convert.options import ImportOptions

__all__ = [
    "CHECK_PHOTOS",
    "Check",
    "PhotoCheck",
    "import_hf_folder",
    "is_hf_folder",
    "labels_from_config",
    "spec_from_processor",
]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# scikit-image's sample photos (the `export` extra ships them): colour, grey, PNG and JPEG,
# landscape, portrait and square, two JPEGs large enough that a reduced decode would show.
CHECK_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "motorcycle_left.png",
    "camera.png",
)
# PIL's resampling filter numbers, as `resample` is saved in preprocessor_config.json.
PIL_FILTERS: dict[int, Resample] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# Processors whose PIL backend is the generic one (resize, centre crop, rescale, normalize),
# plus ConvNeXt's, whose resize also applies `crop_pct`. Anything else does more than the
# bundle can be sure to repeat.
GENERIC_PROCESSORS = (
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "BitImageProcessor",
    "CLIPImageProcessor",
    "SiglipImageProcessor",
    "MobileNetV1ImageProcessor",
    "MobileNetV2ImageProcessor",
)
CONVNEXT_PROCESSOR = "ConvNextImageProcessor"
SUPPORTED_PROCESSORS = (*GENERIC_PROCESSORS, CONVNEXT_PROCESSOR)


def is_hf_folder(path: Path) -> bool:
    """A directory holding a Hugging Face `config.json` (and not a lambdalite bundle)."""
    return path.is_dir() and (path / "config.json").is_file() and not (path / "lambdalite.json").is_file()


def read_json(path: Path, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{folder} has no {path.name}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{folder}/{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{folder}/{path.name}: expected a JSON object")
    return data


def labels_from_config(config: Mapping[str, Any], origin: str) -> list[str]:
    """Class names from `id2label`, in index order; every index 0..n-1 exactly once."""
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{origin}: config.json has no id2label; pass --labels classes.txt")
    try:
        by_index = {int(k): v for k, v in raw.items()}
    except (TypeError, ValueError):
        raise UsageError(f"{origin}: config.json id2label keys must be class indices, got {sorted(raw)[:3]}") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise UsageError(f"{origin}: config.json id2label must number the classes 0..{len(by_index) - 1}")
    labels = [by_index[i] for i in range(len(by_index))]
    for i, name in enumerate(labels):
        if not isinstance(name, str) or not name.strip() or "\n" in name or "\r" in name:
            raise UsageError(f"{origin}: config.json id2label[{i}] is {name!r}, not a one-line class name")
    return [name.strip() for name in labels]


def _size(value: Any) -> dict[str, int]:
    """A processor's `size`/`crop_size` (a SizeDict, a dict or None) as the keys that are set."""
    if value is None:
        return {}
    items = value.items() if hasattr(value, "items") else vars(value).items()
    return {k: int(v) for k, v in items if v is not None}


def _triple(value: Any, what: str, origin: str) -> tuple[float, float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value),) * 3
    if isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, int | float) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise UsageError(f"{origin}: preprocessor_config.json {what} is {value!r}; expected 3 numbers (RGB)")


def spec_from_processor(kind: str, attrs: Mapping[str, Any], origin: str) -> InputSpec:
    """The `InputSpec` that repeats what a Hugging Face image processor does, or a UsageError.

    `kind` is the processor class name without its backend suffix (`ViTImageProcessor`);
    `attrs` its effective settings (the config's values over the class defaults).
    """

    def refuse(what: str) -> UsageError:
        return UsageError(f"{origin}: the image processor ({kind}) {what}; a lambdalite bundle cannot express that")

    if kind not in SUPPORTED_PROCESSORS:
        raise UsageError(
            f"{origin}: lambdalite does not know how {kind} prepares images "
            f"(it maps {', '.join(SUPPORTED_PROCESSORS)}); convert the model yourself and import "
            f"the .onnx with --labels and the preprocessing flags"
        )
    if attrs.get("do_pad"):
        raise refuse("pads images")
    if not attrs.get("do_resize", False):
        raise refuse("does not resize, so the input size follows each image")
    size = _size(attrs.get("size"))
    crop = _size(attrs.get("crop_size")) if attrs.get("do_center_crop") else {}
    if crop and set(crop) != {"height", "width"}:
        raise refuse(f"crops to {crop}, not a height and width")
    crop_hw = (crop["height"], crop["width"]) if crop else None

    resize: int | None  # the short side's target; None: straight to (height, width)
    if kind == CONVNEXT_PROCESSOR:
        if set(size) != {"shortest_edge"}:
            raise refuse(f"has size {size}; ConvNeXt's processor expects shortest_edge")
        edge = size["shortest_edge"]
        if edge < 384:
            crop_pct = attrs.get("crop_pct")
            if not isinstance(crop_pct, int | float) or isinstance(crop_pct, bool) or not 0 < crop_pct <= 1:
                raise refuse(f"has crop_pct {crop_pct!r}")
            resize, target = int(edge / crop_pct), (edge, edge)
            if crop_hw is not None and crop_hw != target:
                raise refuse(f"crops twice ({edge}x{edge}, then {crop_hw[0]}x{crop_hw[1]})")
        else:  # ConvNeXt warps to (edge, edge) at 384 and above
            resize, target = None, (edge, edge)
            if crop_hw is not None and crop_hw != target:
                raise refuse(f"resizes to {edge}x{edge} and then crops {crop_hw[0]}x{crop_hw[1]}")
    elif set(size) == {"height", "width"}:
        resize, target = None, (size["height"], size["width"])
        if crop_hw is not None and crop_hw != target:
            raise refuse(
                f"resizes to {target[0]}x{target[1]} and then crops {crop_hw[0]}x{crop_hw[1]} "
                f"(lambdalite resizes the short side before a crop)"
            )
    elif set(size) == {"shortest_edge"}:
        if crop_hw is None:
            raise refuse(f"resizes the short side to {size['shortest_edge']} without a crop, so the input size varies")
        resize, target = size["shortest_edge"], crop_hw
    else:
        raise refuse(f"resizes to {size} (lambdalite knows height/width or shortest_edge)")
    if resize is not None and resize < max(target):
        raise refuse(f"crops {target[0]}x{target[1]} from a short side of {resize}, padding the rest")

    resample_code = attrs.get("resample")
    resample_code = 2 if resample_code is None else resample_code
    resample = PIL_FILTERS.get(int(resample_code)) if isinstance(resample_code, int) else None
    if resample is None or resample not in RESAMPLE:
        raise refuse(f"resamples with {resample_code!r}")
    scale = float(attrs.get("rescale_factor") or 1 / 255) if attrs.get("do_rescale") else 1.0
    if attrs.get("do_normalize"):
        mean = _triple(attrs.get("image_mean"), "image_mean", origin)
        std = _triple(attrs.get("image_std"), "image_std", origin)
        if min(std) <= 0:
            raise refuse(f"divides by image_std {std}")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return InputSpec(
        size=target,
        layout="NCHW",
        resize=resize,
        crop="center",
        scale=scale,
        mean=mean,
        std=std,
        resample=resample,
        name="pixel_values",
        geometry="fractional" if resize is None else "whole-pixel",
        jpeg_draft=False,
    )


def load_processor(folder: Path) -> tuple[str, Any]:
    """The folder's image processor with the PIL backend: (class name without backend, processor)."""
    try:
        from transformers import AutoImageProcessor
    except ImportError as exc:
        raise UsageError(
            f"importing a Hugging Face folder needs transformers to read its image processor "
            f"(pip install 'lambdalite[export]'); {exc.name} is missing"
        ) from exc
    if not (folder / "preprocessor_config.json").is_file():
        raise UsageError(f"{folder} has no preprocessor_config.json: lambdalite cannot tell how images are prepared")
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder), backend="pil", local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{folder}/preprocessor_config.json: transformers cannot load it: {exc}") from exc
    kind = type(processor).__name__.removesuffix("Pil")
    return kind, processor


def processor_attrs(processor: Any) -> dict[str, Any]:
    names = (
        "do_resize",
        "size",
        "do_center_crop",
        "crop_size",
        "crop_pct",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "resample",
        "do_pad",
    )
    out: dict[str, Any] = {name: getattr(processor, name, None) for name in names}
    for name in ("size", "crop_size"):  # SizeDicts as plain {key: int}
        out[name] = _size(out[name]) or None
    for name in ("image_mean", "image_std"):
        if isinstance(out[name], tuple):
            out[name] = list(out[name])
    if out["resample"] is not None:
        out["resample"] = int(out["resample"])
    return out


class PhotoCheck(NamedTuple):
    name: str
    reference_top1: str
    bundle_top1: str
    max_difference: float
    margin: float  # the reference's gap between its best and second-best probability
    pixel_difference: float | None  # largest difference of the input tensors, when comparable


class Check(NamedTuple):
    """The bundle against the original on photos, each with its own preprocessing."""

    reference: str
    photos: list[PhotoCheck]
    tolerance: float

    @property
    def agree(self) -> int:
        return sum(p.reference_top1 == p.bundle_top1 for p in self.photos)

    @property
    def max_difference(self) -> float:
        return max(p.max_difference for p in self.photos)

    @property
    def passed(self) -> bool:
        return self.agree == len(self.photos) and self.max_difference <= self.tolerance

    def summary(self) -> str:
        return (
            f"against {self.reference}: top-1 agrees on {self.agree}/{len(self.photos)} photos, "
            f"max probability difference {self.max_difference:.1e} (tolerance {self.tolerance:.0e})"
        )

    def lines(self) -> list[str]:
        out = []
        for p in self.photos:
            pixels = "" if p.pixel_difference is None else f", input tensors differ by {p.pixel_difference:.1e}"
            out.append(
                f"    {p.name}: {p.reference_top1!r} vs {p.bundle_top1!r}, "
                f"probabilities differ by {p.max_difference:.1e}{pixels}"
            )
        return out

    @property
    def max_input_difference(self) -> float | None:
        diffs = [p.pixel_difference for p in self.photos if p.pixel_difference is not None]
        return max(diffs) if diffs else None

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": self.reference,
            "photos": len(self.photos),
            "top1_agree": self.agree,
            "max_probability_difference": float(f"{self.max_difference:.3e}"),
            "tolerance": self.tolerance,
        }
        if self.max_input_difference is not None:  # both sides' input tensors, compared
            out["max_input_difference"] = float(f"{self.max_input_difference:.3e}")
        return out


def check_photos(check_images: Path | None) -> list[tuple[str, bytes]]:
    """The photos to check on: a folder the user gave, else scikit-image's samples."""
    if check_images is not None:
        from lambdalite.toolkit.convert.options import image_files

        found = image_files(check_images)
        return [(p.relative_to(check_images).as_posix(), p.read_bytes()) for p in found]
    try:
        import skimage
    except ImportError:
        raise UsageError(
            "checking the bundle needs photos: pass --check-images DIR, or install scikit-image "
            "(pip install 'lambdalite[export]'), whose sample photos are used by default"
        ) from None
    data = Path(skimage.__file__).parent / "data"
    return [(name, (data / name).read_bytes()) for name in CHECK_PHOTOS if (data / name).is_file()]


def _softmax(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    from lambdalite.tasks.classification import softmax

    return softmax(np.asarray(x, np.float64))


def run_check(
    bundle: Bundle,
    reference: str,
    reference_run: Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]],
    photos: Sequence[tuple[str, bytes]],
    tolerance: float,
    *,
    reference_input: Callable[[str, bytes], npt.NDArray[np.float32]] | None = None,
    reference_probabilities: bool = False,
) -> Check:
    """Each photo through the original and through the bundle, as the function would run it.

    `reference_input` turns a photo (name, bytes) into the original's input batch (its own
    preprocessing); None gives it the bundle's own tensor, which checks the conversion alone.
    `reference_run` maps that batch to logits (or probabilities with `reference_probabilities`).
    """
    from lambdalite.engines import default_threads
    from lambdalite.tasks.classification import load

    classifier = load(bundle, threads=default_threads())
    labels = classifier.labels
    results = []
    for name, data in photos:
        ours = np.asarray(classifier.preprocess(data)[None], np.float32)
        theirs = ours if reference_input is None else reference_input(name, data)
        raw = np.asarray(reference_run(theirs), np.float64).reshape(1, -1)
        want = raw[0] if reference_probabilities else _softmax(raw)[0]
        got = classifier.class_probabilities(ours)[0]
        if want.shape != got.shape:
            raise BundleError(f"the bundle gives {got.shape[0]} classes, the original {want.shape[0]}")
        top2 = np.sort(want)[-2:] if want.shape[0] > 1 else np.array([0.0, 1.0])
        comparable = reference_input is not None and ours.shape == theirs.shape
        results.append(
            PhotoCheck(
                name=name,
                reference_top1=labels[int(np.argmax(want))],
                bundle_top1=labels[int(np.argmax(got))],
                max_difference=float(np.abs(want - got).max()),
                margin=float(top2[1] - top2[0]),
                pixel_difference=float(np.abs(ours - theirs).max()) if comparable else None,
            )
        )
    return Check(reference, results, tolerance)


class HFProcessor(NamedTuple):
    """What the folder's image processor is and does, as a process without torch saw it."""

    kind: str  # the class name without its backend suffix, e.g. ViTImageProcessor
    attrs: dict[str, Any]  # its effective settings (processor_attrs)
    pixels: dict[str, npt.NDArray[np.float32]]  # photo name -> pixel_values (1, 3, H, W)


def run_processor(folder: Path, photos: Sequence[tuple[str, bytes]], work: Path) -> HFProcessor:
    """Load the image processor and prepare the photos in a child Python that cannot import torch.

    transformers imports torch whenever it is installed; the child hides it (as on an install
    without torch), so this process never loads torch for an optimum folder, and the processor
    runs exactly as on a torch-free install (its PIL backend needs only numpy and Pillow).
    """
    import subprocess
    import sys

    shown = work / "photos"
    shown.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (name, data) in enumerate(photos):
        (shown / f"{i:04d}").write_bytes(data)
        names.append(name)
    out = work / "pixels.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "lambdalite.toolkit.convert.hf", str(folder), str(shown), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        if last.startswith("error: "):
            raise UsageError(last.removeprefix("error: "))
        raise BundleError(f"{folder}: reading the image processor failed: {last}")
    report = json.loads(proc.stdout.splitlines()[-1])
    with np.load(out) as arrays:
        pixels = {name: np.asarray(arrays[f"{i:04d}"], np.float32) for i, name in enumerate(names)}
    return HFProcessor(str(report["kind"]), dict(report["attrs"]), pixels)


def _processor_child(folder: Path, photos: Path, out: Path) -> None:
    """The child's side of `run_processor` (python -m lambdalite.toolkit.convert.hf FOLDER PHOTOS OUT.npz)."""
    import io
    import sys

    sys.modules["torch"] = None  # type: ignore[assignment]  # as if not installed: transformers skips it
    from PIL import Image

    kind, processor = load_processor(folder)
    from transformers.image_utils import load_image

    arrays = {}
    for path in sorted(photos.iterdir()):
        image = load_image(Image.open(io.BytesIO(path.read_bytes())))  # EXIF rotation + RGB, as HF pipelines
        arrays[path.name] = np.asarray(processor(image, return_tensors="np")["pixel_values"], np.float32)
    np.savez(out, **arrays)  # type: ignore[arg-type]
    print(json.dumps({"kind": kind, "attrs": processor_attrs(processor)}))


def _refuse_flags(options: ImportOptions, origin: str) -> None:
    given = [
        flag
        for flag, value in (
            ("--input-size", options.input_size),
            ("--resize", options.resize),
            ("--mean", options.mean),
            ("--std", options.std),
            ("--resample", options.resample),
            ("--no-crop", options.crop == "none" or None),
        )
        if value is not None
    ]
    if given:
        raise UsageError(
            f"{origin}: {', '.join(given)} would override preprocessor_config.json, which is read as it is; "
            f"edit the folder's preprocessor_config.json instead"
        )


def _weights(folder: Path) -> Path | None:
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def _classifier_architecture(config: Mapping[str, Any], origin: str) -> str:
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        architectures = []
    arch = next((a for a in architectures if isinstance(a, str) and a.endswith("ForImageClassification")), None)
    if arch is None:
        what = ", ".join(map(str, architectures)) or f"model_type {config.get('model_type')!r}"
        raise UsageError(
            f"{origin}: config.json describes {what}, not an image classifier "
            f"(an architecture named ...ForImageClassification)"
        )
    return arch


def import_hf_folder(source: Path, out: Path, options: ImportOptions, progress: Progress | None = None) -> Bundle:
    """Make the bundle `out` from a `save_pretrained` folder or an `optimum-cli export onnx` folder."""
    from lambdalite.sources.plain import read_labels

    progress = progress or Quiet()
    origin = str(source)
    config = read_json(source / "config.json", source)
    arch = _classifier_architecture(config, origin)
    _refuse_flags(options, origin)
    onnx_file = source / "model.onnx"
    weights = _weights(source)
    if not onnx_file.is_file() and weights is None:
        raise UsageError(
            f"{origin} has neither weights ({', '.join(WEIGHT_FILES[::2])}) nor model.onnx; "
            f"save it with model.save_pretrained(DIR) and processor.save_pretrained(DIR)"
        )
    labels = read_labels(options.labels) if options.labels else labels_from_config(config, origin)
    if not (source / "preprocessor_config.json").is_file():
        raise UsageError(f"{origin} has no preprocessor_config.json: lambdalite cannot tell how images are prepared")
    photos = check_photos(options.check_images)
    with tempfile.TemporaryDirectory(prefix="lambdalite-hf-") as tmp:
        work = Path(tmp)
        with progress.step(f"Reading the image processor and preparing {len(photos)} photos with it"):
            hf = run_processor(source, photos, work)
            spec = spec_from_processor(hf.kind, hf.attrs, origin)
        kind = hf.kind
        progress.note(
            f"    {kind}: {_describe(spec)}, mean {list(spec.mean)}, std {list(spec.std)}, scale {spec.scale:.6g}"
        )
        if onnx_file.is_file():
            fmt: Literal["optimum", "huggingface"] = "optimum"
            for extra in ("model.onnx_data", "model.onnx.data"):
                if (source / extra).exists():
                    raise UsageError(
                        f"{origin}: model.onnx keeps its weights in {extra}; a bundle holds one model file "
                        f"(re-export it as one file, or import the save_pretrained folder instead)"
                    )
            model_path = onnx_file
            reference_name = f"the folder's model.onnx with transformers' {kind}Pil"
            reference_run = _onnx_runner(model_path.read_bytes())
        else:
            fmt = "huggingface"
            model_path, reference_run, version = _export_with_torch(source, arch, spec, work / "model.onnx", progress)
            reference_name = f"transformers {version} {arch} with {kind}Pil"
        from lambdalite.sources.plain import inspect_model

        with progress.step("Reading the ONNX model"):
            facts = inspect_model("onnxruntime", model_path.read_bytes(), spec.size[0])
        if facts.classes is not None and facts.classes != len(labels):
            raise BundleError(f"{origin}: the model has {facts.classes} outputs but id2label names {len(labels)}")
        spec = spec._replace(name=facts.input_name)
        staged = write_bundle(
            work / "bundle",
            name=options.name or source.resolve().name,
            version=options.version,
            task="image-classification",
            engine="onnxruntime",
            files={"model": model_path, "labels": ("\n".join(labels) + "\n").encode()},
            filenames={"model": "model.onnx", "labels": "labels.txt"},
            input=spec,
            output=OutputSpec(
                kind="probabilities" if facts.probabilities else "logits", top_k=options.top_k, name=facts.output_name
            ),
            metadata={
                "imported_from": source.resolve().name,
                "format": fmt,
                "architecture": arch,
                "model_type": config.get("model_type"),
                "image_processor": kind,
            },
        )
        with progress.step(f"Checking the bundle on {len(photos)} photos against the original"):
            check = run_check(
                staged,
                reference_name,
                reference_run,
                photos,
                options.tolerance,
                reference_input=lambda name, data: hf.pixels[name],
            )
        return finish_checked(staged, check, out, origin, progress)


def finish_checked(staged: Bundle, check: Check, out: Path, origin: str, progress: Progress) -> Bundle:
    """Report the check; write the bundle to `out` (with the check in its metadata) only if it passed."""
    for line in check.lines():
        progress.note(line)
    if not check.passed:
        raise BundleError(
            f"{origin}: the bundle does not match the original {check.summary()}; "
            f"nothing was written (a looser --tolerance accepts it)"
        )
    progress.note(f"    matches {check.summary()}")
    m = staged.manifest
    roles = {role: staged.path(role) for role in m.files}
    final = write_bundle(
        out,
        name=m.name,
        version=m.version,
        task=m.task,
        engine=m.engine,
        files=roles,
        filenames={role: ref.path for role, ref in m.files.items()},
        input=m.input,
        output=m.output,
        options=m.options,
        metadata={**m.metadata, "check": check.to_metadata()},
    )
    return open_bundle(final.root)


def _describe(spec: InputSpec) -> str:
    h, w = spec.size
    if spec.resize is None:
        return f"resize to {h}x{w} ({spec.resample})"
    return f"resize the short side to {spec.resize} ({spec.resample}), centre crop {h}x{w}"


def _onnx_runner(model: bytes) -> Any:
    from lambdalite.engines import load_engine

    engine = load_engine("onnxruntime", model, threads=None)
    name = engine.inputs[0].name

    def run(pixels: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return np.asarray(engine.run({name: pixels})[0])

    return run


def _export_with_torch(
    source: Path, arch: str, spec: InputSpec, out: Path, progress: Progress
) -> tuple[Path, Any, str]:
    """Load the transformers model, export its logits to ONNX (dynamic batch), return a runner for it."""
    try:
        import torch
        import transformers

        from lambdalite.toolkit.convert.export import export_onnx
    except ImportError as exc:
        raise UsageError(
            f"exporting a Hugging Face model to ONNX needs torch, onnx and transformers "
            f"(pip install 'lambdalite[export]'), or export it with optimum-cli and import that folder "
            f"({exc.name} is missing)"
        ) from exc
    with progress.step(f"Loading {arch} from {source.name}"):
        try:
            model = transformers.AutoModelForImageClassification.from_pretrained(
                str(source), local_files_only=True, attn_implementation="eager"
            ).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"{source}: transformers cannot load the model: {exc}") from exc

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).logits  # type: ignore[no-any-return]

    h, w = spec.size
    with progress.step(f"Exporting to ONNX ({h}x{w} input, dynamic batch)"):
        example = torch.zeros(1, 3, h, w)
        export_onnx(Logits().eval(), example, out, input_name="pixel_values", output_name="logits")

    def run(pixels: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        with torch.no_grad():
            return model(pixel_values=torch.from_numpy(pixels)).logits.numpy()  # type: ignore[no-any-return]

    return out, run, str(transformers.__version__)


if __name__ == "__main__":
    import sys

    try:
        _processor_child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
