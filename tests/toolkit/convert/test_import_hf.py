"""`lambdalite import` of Hugging Face folders (save_pretrained, optimum-cli) and Keras 3 files.

Every model is built here from a config with small seeded random weights (tests/helpers/hf_models.py,
tests/helpers/keras_models.py) or is the real optimum-cli's output for such a model
(tests/fixtures/optimum, made by make_optimum.sh); nothing is downloaded (HF_HUB_OFFLINE=1).
Each import is run as the user runs it, the command in a subprocess, and the bundle is then
compared here, independently of the command's own check, with the original: transformers'
model and PIL image processor on the photo as its pipelines load it, or seed 001's Keras
preprocessing, against the bundle's prediction from the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lambdalite.core.bundle import InputSpec, Manifest, open_bundle
from lambdalite.core.images import Preprocessor
from lambdalite.errors import BundleError, UsageError
from lambdalite.model import load_model
from lambdalite.toolkit.convert.hf import CHECK_PHOTOS, check_photos, processor_attrs, spec_from_processor

from helpers import FIXTURES, TESTS

os.environ["HF_HUB_OFFLINE"] = "1"

HERE = TESTS
LAMBDALITE = Path(sys.executable).parent / "lambdalite"
OPTIMUM = FIXTURES / "optimum"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(TESTS)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What each kind's preprocessor_config.json must become: (size, resize, resample, mean, std, geometry).
EXPECTED = {
    "vit": ((64, 64), None, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "fractional"),
    "convnext": ((64, 64), 73, "bicubic", IMAGENET_MEAN, IMAGENET_STD, "whole-pixel"),  # int(64 / 0.875)
    "resnet": ((72, 72), 82, "bicubic", IMAGENET_MEAN, IMAGENET_STD, "whole-pixel"),  # int(72 / 0.875)
    "mobilenet_v2": ((64, 64), 73, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "whole-pixel"),
    "swin": ((64, 64), None, "bicubic", IMAGENET_MEAN, IMAGENET_STD, "fractional"),
}
ARCH = {
    "vit": "ViTForImageClassification",
    "convnext": "ConvNextForImageClassification",
    "resnet": "ResNetForImageClassification",
    "mobilenet_v2": "MobileNetV2ForImageClassification",
    "swin": "SwinForImageClassification",
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAMBDALITE), *args], capture_output=True, text=True, timeout=600, env=env or ENV, cwd=HERE
    )


def one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("==>", "    "))]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    found = check_photos(None)
    assert [name for name, _ in found] == list(CHECK_PHOTOS)  # the default photos are all there
    return found


def hf_reference(folder: Path, photos: list[tuple[str, bytes]]) -> dict[str, np.ndarray]:
    """Probabilities from transformers itself: load_image, the PIL image processor, the torch model."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.image_utils import load_image

    processor = AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    model = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    out = {}
    for name, data in photos:
        inputs = processor(load_image(Image.open(io.BytesIO(data))), return_tensors="pt")
        with torch.no_grad():
            out[name] = torch.softmax(model(**inputs).logits.double(), -1)[0].numpy()
    return out


def assert_bundle_matches(bundle: Path, reference: dict[str, np.ndarray], photos: list[tuple[str, bytes]]) -> None:
    """Same top-1 (the user's answer) and probabilities within 1e-4, photo by photo."""
    model = load_model(str(bundle))
    labels = model.bundle.read_lines("labels")
    for name, data in photos:
        want = reference[name]
        top2 = np.sort(want)[-2:]
        assert top2[1] - top2[0] > 1e-3, f"{name}: the test model is near a tie ({top2}); change its seed"
        [answer] = model.predict([data], top_k=len(labels))
        got = np.array([next(a["probability"] for a in answer if a["className"] == label) for label in labels])
        assert answer[0]["className"] == labels[int(np.argmax(want))], name
        assert np.abs(got - want).max() <= 1e-4, (name, np.abs(got - want).max())


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_hf_folder_imports_and_matches_transformers(kind, tmp_path, photos):
    from helpers.hf_models import LABELS, build

    folder = build(kind, tmp_path / f"{kind}-model")
    proc = run("import", str(folder), "-o", str(tmp_path / "bundle.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    assert f"engine onnxruntime, input {EXPECTED[kind][0][0]}x{EXPECTED[kind][0][1]} NCHW, 5 classes" in proc.stdout
    assert f"checked against transformers 5.24.0 {ARCH[kind]} with " in proc.stdout
    assert "top-1 agrees on 8/8 photos" in proc.stdout

    m = open_bundle_from(tmp_path / "bundle.tar.gz", tmp_path / "unpacked")
    size, resize, resample, mean, std, geometry = EXPECTED[kind]
    i = m.input
    assert (i.size, i.resize, i.crop, i.resample, i.geometry) == (size, resize, "center", resample, geometry)
    assert (i.mean, i.std, i.scale, i.jpeg_draft, i.name) == (mean, std, 1 / 255, False, "pixel_values")
    assert m.output.kind == "logits" and m.metadata["format"] == "huggingface"
    assert m.metadata["check"]["max_input_difference"] <= 1e-6  # the same input tensors, photo by photo
    assert (tmp_path / "unpacked" / "labels.txt").read_text().splitlines() == LABELS
    assert_bundle_matches(tmp_path / "bundle.tar.gz", hf_reference(folder, photos), photos)


def open_bundle_from(archive: Path, where: Path) -> Manifest:
    from lambdalite.core.archive import extract_archive

    return open_bundle(extract_archive(archive, where)).manifest


NO_TORCH = """
import json, sys
if sys.argv[1] == "blocked":
    sys.modules["torch"] = None  # as if torch were not installed: importing it fails
from lambdalite.toolkit.cli import main
try:
    main(["import", sys.argv[2], "-o", sys.argv[3]])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"
                                                  and sys.modules[m] is not None)}))
"""


@pytest.mark.parametrize("kind", ["vit", "convnext"])
def test_optimum_folder_imports_without_torch(kind, tmp_path, photos):
    folder = tmp_path / kind  # the real optimum-cli output: model.onnx, config.json, preprocessor_config.json
    shutil.copytree(OPTIMUM / kind, folder)
    for mode in ("blocked", "available"):
        out = tmp_path / f"bundle-{mode}"
        proc = subprocess.run(
            [sys.executable, "-c", NO_TORCH, mode, str(folder), str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result == {"code": 0, "torch": []}, proc.stderr  # imported, and torch never loaded
        assert "matches against the folder's model.onnx with transformers'" in proc.stderr
    m = open_bundle(tmp_path / "bundle-available").manifest
    assert m.metadata["format"] == "optimum" and m.input.name == "pixel_values" and m.output.name == "logits"
    size, resize, resample, mean, std, geometry = EXPECTED[kind]
    assert (m.input.size, m.input.resize, m.input.resample, m.input.mean, m.input.geometry) == (
        size,
        resize,
        resample,
        mean,
        geometry,
    )
    # optimum's ONNX with lambdalite's preprocessing against the transformers model it came from
    assert_bundle_matches(tmp_path / "bundle-available", hf_reference(OPTIMUM / f"{kind}-weights", photos), photos)


def test_imported_bundle_serves_without_heavy_imports(tmp_path):
    from helpers.cold_path import THIRD_PARTY, serving_imports

    shutil.copytree(OPTIMUM / "vit", tmp_path / "vit")
    proc = run("import", str(tmp_path / "vit"), "-o", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    loaded = serving_imports(tmp_path / "b", tmp_path)
    assert "onnxruntime" in loaded
    assert loaded <= THIRD_PARTY, loaded - THIRD_PARTY  # no transformers, keras, tokenizers, torch


def test_check_refuses_a_bundle_that_differs(tmp_path):
    """A transparent PNG: HF's load_image drops the alpha, lambdalite composites it on white."""
    shutil.copytree(OPTIMUM / "vit", tmp_path / "vit")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (80, 80, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # invisible colours
    (tmp_path / "photos").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photos" / "clear.png")
    proc = run("import", str(tmp_path / "vit"), "--check-images", str(tmp_path / "photos"), "-o", str(tmp_path / "o"))
    one_line_error(proc, "the bundle does not match the original against the folder's model.onnx")
    assert "nothing was written" in proc.stderr and not (tmp_path / "o").exists()
    assert "clear.png:" in proc.stderr  # the photo's numbers are shown


def test_refusals_are_one_line(tmp_path):
    weights = tmp_path / "vit"
    shutil.copytree(OPTIMUM / "vit-weights", weights)
    one_line_error(
        run("import", str(weights), "--mean", "0", "0", "0", "-o", str(tmp_path / "o")),
        "--mean would override preprocessor_config.json",
    )
    config = json.loads((weights / "config.json").read_text())
    (weights / "config.json").write_text(json.dumps({**config, "architectures": ["ViTForMaskedImageModeling"]}))
    one_line_error(run("import", str(weights), "-o", str(tmp_path / "o")), "not an image classifier")
    (weights / "config.json").write_text(json.dumps(config))
    (weights / "preprocessor_config.json").unlink()
    one_line_error(run("import", str(weights), "-o", str(tmp_path / "o")), "has no preprocessor_config.json")
    (weights / "model.safetensors").unlink()
    one_line_error(run("import", str(weights), "-o", str(tmp_path / "o")), "has neither weights")


# The mapping itself, processor by processor (no model, no torch).
BASE = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}


def attrs(**kw: Any) -> dict[str, Any]:
    return {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, **BASE, **kw}


def test_mapping_of_each_processor():
    convnext = spec_from_processor("ConvNextImageProcessor", attrs(size={"shortest_edge": 224}, crop_pct=0.875), "m")
    assert (convnext.size, convnext.resize, convnext.geometry) == ((224, 224), 256, "whole-pixel")
    big = spec_from_processor("ConvNextImageProcessor", attrs(size={"shortest_edge": 384}, crop_pct=0.875), "m")
    assert (big.size, big.resize) == ((384, 384), None)  # ConvNeXt warps at 384 and above
    mobilenet = spec_from_processor(
        "MobileNetV2ImageProcessor",
        attrs(size={"shortest_edge": 256}, do_center_crop=True, crop_size={"height": 224, "width": 224}),
        "m",
    )
    assert (mobilenet.size, mobilenet.resize, mobilenet.resample) == ((224, 224), 256, "bilinear")
    vit = spec_from_processor("ViTImageProcessor", attrs(size={"height": 384, "width": 384}, resample=3), "m")
    assert (vit.size, vit.resize, vit.resample, vit.jpeg_draft) == ((384, 384), None, "bicubic", False)
    raw = spec_from_processor("ViTImageProcessor", attrs(size={"height": 32, "width": 48}, do_normalize=False), "m")
    assert (raw.size, raw.mean, raw.std) == ((32, 48), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    unscaled = spec_from_processor("ViTImageProcessor", attrs(size={"height": 8, "width": 8}, do_rescale=False), "m")
    assert unscaled.scale == 1.0
    lanczos = spec_from_processor("ViTImageProcessor", attrs(size={"height": 8, "width": 8}, resample=1), "m")
    assert lanczos.resample == "lanczos"


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("BeitImageProcessor", {"size": {"height": 8, "width": 8}}, "does not know how BeitImageProcessor"),
        ("ViTImageProcessor", {"size": {"height": 8, "width": 8}, "do_pad": True}, "pads images"),
        ("ViTImageProcessor", {"size": {"height": 8, "width": 8}, "do_resize": False}, "does not resize"),
        ("CLIPImageProcessor", {"size": {"shortest_edge": 224}}, "without a crop, so the input size varies"),
        ("ViTImageProcessor", {"size": {"shortest_edge": 8, "longest_edge": 16}}, "resizes to"),
        (
            "DeiTImageProcessor",
            {"size": {"height": 256, "width": 256}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}},
            "resizes to 256x256 and then crops 224x224",
        ),
        (
            "BitImageProcessor",
            {"size": {"shortest_edge": 200}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}},
            "padding the rest",
        ),
        ("ViTImageProcessor", {"size": {"height": 8, "width": 8}, "image_mean": [0.5, 0.5]}, "expected 3 numbers"),
    ],
)
def test_processors_the_bundle_cannot_express_are_refused(kind, settings, message):
    with pytest.raises(UsageError, match=message):
        spec_from_processor(kind, attrs(**settings), "m")


@pytest.mark.parametrize("size", [(97, 131), (131, 97), (64, 64), (300, 73), (73, 300), (1000, 999)])
@pytest.mark.parametrize("processor", ["convnext", "mobilenet"])
def test_whole_pixel_geometry_gives_hf_pixels(size, processor):
    """The Preprocessor's whole-pixel resize + crop equals transformers' PIL processors, pixel for pixel."""
    from transformers import ConvNextImageProcessorPil, MobileNetV2ImageProcessorPil

    hf = (
        ConvNextImageProcessorPil(size={"shortest_edge": 224}, crop_pct=0.875, resample=3)
        if processor == "convnext"
        else MobileNetV2ImageProcessorPil(size={"shortest_edge": 77}, crop_size={"height": 64, "width": 60})
    )
    kind = "ConvNextImageProcessor" if processor == "convnext" else "MobileNetV2ImageProcessor"
    spec = spec_from_processor(kind, processor_attrs(hf), "m")
    rng = np.random.default_rng(size[0])
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    want = hf(img, return_tensors="np")["pixel_values"][0]
    pre = Preprocessor.from_spec(spec)
    got = pre.to_array(pre.resize(img))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5


def test_new_input_keys_keep_old_manifests_valid():
    old = InputSpec().to_dict()
    assert "geometry" not in old and "jpeg_draft" not in old  # defaults are not written: old bytes unchanged
    spec = InputSpec(resize=256, geometry="whole-pixel", jpeg_draft=False, resample="lanczos")
    data = spec.to_dict()
    assert (data["geometry"], data["jpeg_draft"], data["resample"]) == ("whole-pixel", False, "lanczos")
    manifest = {
        "schema_version": 1,
        "name": "m",
        "version": "1",
        "task": "image-classification",
        "engine": "onnxruntime",
        "files": {"model": {"path": "m.onnx", "sha256": "0" * 64}, "labels": {"path": "l.txt", "sha256": "0" * 64}},
    }
    assert Manifest.from_dict({**manifest, "input": data}).input == spec
    assert Manifest.from_dict({**manifest, "input": old}).input == InputSpec()
    with pytest.raises(BundleError, match="input.jpeg_draft: expected true or false"):
        Manifest.from_dict({**manifest, "input": {**data, "jpeg_draft": "no"}})
    with pytest.raises(BundleError, match="input.geometry: 'hf' is not one of"):
        Manifest.from_dict({**manifest, "input": {**data, "geometry": "hf"}})
    with pytest.raises(BundleError, match="input.resize: 200 is smaller than the crop 224x224"):
        Manifest.from_dict({**manifest, "input": {**data, "resize": 200}})
    assert Preprocessor.from_spec(spec).decode_size is None  # full-size decoding
    assert Preprocessor.from_spec(InputSpec()).decode_size == (256, 256)


# Keras 3 files, seed 001's kind of model.


def keras_model(kind: str, where: Path, photos: list[tuple[str, bytes]]) -> dict[str, Any]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    proc = subprocess.run(
        [
            sys.executable,
            str(TESTS / "helpers" / "keras_models.py"),
            kind,
            str(where),
            *(str(data / n) for n, _ in photos),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**ENV, "KERAS_BACKEND": "torch"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]) if kind != "lambda" else {}


SEED001_FLAGS = ("--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5", "--no-crop", "--resample", "nearest")


def test_keras_file_with_seed001_preprocessing(tmp_path, photos):
    made = keras_model("small", tmp_path / "keras", photos)
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(made["classes"]) + "\n")
    reference = {name: np.array(p) for name, p in made["reference"].items()}
    for model_file in ("model.keras", "model.h5"):
        out = tmp_path / f"bundle-{model_file}"
        proc = run(
            "import", str(tmp_path / "keras" / model_file), "--labels", str(labels), *SEED001_FLAGS, "--full-decode",
            "-o", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "engine onnxruntime, input 71x71 NHWC, 10 classes, output logits" in proc.stdout
        assert "checked against keras 3.15.1 (torch backend)" in proc.stdout and "8/8 photos" in proc.stdout
        i = open_bundle(out).manifest.input
        assert (i.layout, i.size, i.resize, i.resample, i.mean, i.std, i.jpeg_draft) == (
            "NHWC", (71, 71), None, "nearest", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False,
        )  # fmt: skip
        # against seed 001's own function: keras-image-helper's preprocessing into the Keras model
        assert_bundle_matches(out, reference, photos)


def test_keras_lambda_layer_is_refused(tmp_path, photos):
    keras_model("lambda", tmp_path / "k", photos)
    labels = tmp_path / "classes.txt"
    labels.write_text("a\nb\nc\n")
    proc = run("import", str(tmp_path / "k" / "model.keras"), "--labels", str(labels), "-o", str(tmp_path / "o"))
    one_line_error(proc, "holds a Lambda layer")
    proc = run("import", str(tmp_path / "k" / "model.keras"), "-o", str(tmp_path / "o"))
    one_line_error(proc, "pass --labels classes.txt")


@pytest.mark.slow
def test_seed001_xception_imports(tmp_path, photos):
    """Seed 001's architecture itself: Xception at 299x299 with a 10-class head (random weights)."""
    made = keras_model("xception", tmp_path / "keras", photos)
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(made["classes"]) + "\n")
    out = tmp_path / "bundle.tar.gz"
    proc = run(
        "import", str(tmp_path / "keras" / "model.keras"), "--labels", str(labels), *SEED001_FLAGS, "--full-decode",
        "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "input 299x299 NHWC, 10 classes" in proc.stdout
    assert_bundle_matches(out, {n: np.array(p) for n, p in made["reference"].items()}, photos)
