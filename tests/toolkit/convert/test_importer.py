"""`lambdalite import`: SageMaker / seed-004 archives, bare TorchScript, ONNX and TFLite into bundles."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from lambdalite.core.bundle import open_bundle
from lambdalite.errors import SourceError
from lambdalite.model import load_model
from lambdalite.sources.plain import bundle_in_place, is_torchscript
from lambdalite.toolkit.convert.importer import ImportOptions, import_model

from helpers import FIXTURES
from helpers.images import encode
from helpers.models import TINY_LABELS, seed004_archive, tiny_classifier_onnx, tiny_torchscript

LAMBDALITE = Path(sys.executable).parent / "lambdalite"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAMBDALITE), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("==>", "    "))]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


def red() -> bytes:
    return encode(Image.new("RGB", (30, 20), (240, 10, 10)), "PNG")


def test_seed004_archive_becomes_an_onnx_bundle(tmp_path):
    pytest.importorskip("torch")
    archive = seed004_archive(tmp_path / "model.tar.gz", tiny_torchscript())
    proc = run("import", str(archive), "-o", str(tmp_path / "bundle.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    assert "engine onnxruntime, input 224x224 NCHW, 4 classes, output logits" in proc.stdout
    assert "ONNX matches TorchScript" in proc.stderr  # the conversion was checked
    model = load_model(str(tmp_path / "bundle.tar.gz"))
    m = model.bundle.manifest
    assert (m.engine, m.input.resize, m.input.mean) == ("onnxruntime", 256, (0.485, 0.456, 0.406))
    assert model.predict([red()])[0][0]["className"] == "red"


def test_keep_torchscript(tmp_path):
    pytest.importorskip("torch")
    pt = tmp_path / "resnet50_jit.pth"
    pt.write_bytes(tiny_torchscript())
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(TINY_LABELS) + "\n")
    bundle = import_model(pt, tmp_path / "b", ImportOptions(labels=labels, keep_torchscript=True, input_size=64))
    assert bundle.manifest.engine == "torchscript" and bundle.manifest.input.size == (64, 64)
    assert load_model(str(bundle.root)).predict([red()])[0][0]["className"] == "red"


def test_tflite_with_keras_preprocessing(tmp_path):
    out = tmp_path / "clothing"
    proc = run(
        "import",
        str(FIXTURES / "clothing-int8.tflite"),
        "--labels",
        str(FIXTURES / "clothing-labels.txt"),
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.5",
        "0.5",
        "0.5",
        "--no-crop",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    m = open_bundle(out).manifest
    assert (m.engine, m.input.layout, m.input.size, m.input.crop) == ("litert", "NHWC", (64, 64), "none")
    assert m.input.mean == (0.5, 0.5, 0.5) and m.output.kind == "logits"
    assert len(load_model(str(out)).predict([red()], top_k=10)[0]) == 10


def test_onnx_reads_name_shape_and_classes(tmp_path):
    onnx_file = tmp_path / "tiny.onnx"
    onnx_file.write_bytes(tiny_classifier_onnx())
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(TINY_LABELS))
    bundle = import_model(onnx_file, tmp_path / "b", ImportOptions(labels=labels, crop="none"))
    m = bundle.manifest
    assert (m.input.name, m.input.size, m.input.layout, m.output.name) == ("pixels", (8, 8), "NCHW", "logits")
    assert m.name == "tiny"
    labels.write_text("\n".join(TINY_LABELS[:3]))
    with pytest.raises(Exception, match="the model has 4 outputs but the labels list 3 classes"):
        import_model(onnx_file, tmp_path / "c", ImportOptions(labels=labels))


def test_torchserve_index_to_name_labels(tmp_path):
    import json

    onnx_file = tmp_path / "tiny.onnx"
    onnx_file.write_bytes(tiny_classifier_onnx())
    labels = tmp_path / "index_to_name.json"
    labels.write_text(json.dumps({str(i): [f"n{i:08d}", name] for i, name in enumerate(TINY_LABELS)}))
    bundle = import_model(onnx_file, tmp_path / "b", ImportOptions(labels=labels))
    assert bundle.read_lines("labels") == TINY_LABELS


def test_pickled_state_dict_is_not_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    state = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, state)
    assert not is_torchscript(state)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(state, "model.pth")
        tar.addfile(tarfile.TarInfo("classes.txt"), io.BytesIO(b""))
    proc = run("import", str(archive), "-o", str(tmp_path / "out.tar.gz"))
    one_line_error(proc, "model.pth is not TorchScript")
    state.write_bytes(tiny_torchscript())  # a real model, but the archive's classes.txt is empty
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(state, "model.pth")
        tar.addfile(tarfile.TarInfo("classes.txt"), io.BytesIO(b""))
    one_line_error(run("import", str(archive), "-o", str(tmp_path / "o")), "model.tar.gz: classes.txt lists no labels")


def test_hostile_archive_is_refused_by_import(tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../escape.pt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    proc = run("import", str(archive), "-o", str(tmp_path / "out.tar.gz"))
    one_line_error(proc, "refusing path with '..'")
    assert not (tmp_path.parent / "escape.pt").exists() and not (tmp_path / "out.tar.gz").exists()


def test_missing_labels_and_unknown_files(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(tiny_classifier_onnx())
    one_line_error(run("import", str(onnx_file), "-o", str(tmp_path / "o")), "pass --labels classes.txt")
    root = tmp_path / "unpacked"
    root.mkdir()
    (root / "weights.h5").write_bytes(b"keras")
    with pytest.raises(SourceError, match=r"no model file found .*weights.h5"):
        bundle_in_place(root, "s3://b/k")


def test_local_seed004_archive_is_served_as_it_is(tmp_path, lambdalite_home):
    pytest.importorskip("torch")
    archive = seed004_archive(tmp_path / "model.tar.gz", tiny_torchscript())
    model = load_model(str(archive))
    assert model.bundle.manifest.engine == "torchscript"
    assert model.bundle.root.is_relative_to(lambdalite_home)
    assert model.predict([red()])[0][0]["className"] == "red"
