from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lambdalite.core.bundle import MANIFEST_NAME, Manifest, open_bundle, pack_bundle
from lambdalite.errors import BundleError, ChecksumError

from helpers.models import TINY_LABELS, write_tiny_bundle


def manifest_dict(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / MANIFEST_NAME).read_text())


def test_written_bundle_reads_back(tiny_bundle):
    opened = open_bundle(tiny_bundle.root)
    assert opened.manifest == tiny_bundle.manifest
    assert opened.manifest.task == "image-classification"
    assert opened.manifest.input.size == (8, 8)
    assert opened.read_lines("labels") == TINY_LABELS
    model = opened.read("model")
    assert hashlib.sha256(model).hexdigest() == opened.manifest.files["model"].sha256


def test_manifest_round_trips_through_json(tiny_bundle):
    data = tiny_bundle.manifest.to_dict()
    assert Manifest.from_dict(json.loads(json.dumps(data))) == tiny_bundle.manifest


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.pop("task"), "task: missing"),
        (lambda d: d.update(task="segmentation"), "task: 'segmentation' is not one of"),
        (lambda d: d.update(engine="tensorflow"), "engine: 'tensorflow' is not one of"),
        (lambda d: d.update(schema_version=99), "schema_version: version 99 is not supported"),
        (lambda d: d["input"].update(size=[224]), "input.size: expected [height, width]"),
        (lambda d: d["input"].update(layout="CHWN"), "input.layout"),
        (lambda d: d["input"].update(mean=[0.5, "x", 0.5]), "input.mean: expected a list of 3 numbers"),
        (lambda d: d["input"].update(std=[0.5, 0, 0.5]), "input.std: expected positive numbers"),
        (lambda d: d["input"].update(colour="RGB"), "input.colour: unknown key"),
        (lambda d: d["files"].pop("labels"), "files.labels: missing"),
        (lambda d: d["files"]["model"].update(path="../evil.onnx"), "files.model.path: must be a relative path"),
        (lambda d: d["files"]["model"].update(sha256="abc"), "files.model.sha256: expected 64 lowercase hex"),
        (lambda d: d["output"].update(kind="softmax"), "output.kind"),
        (lambda d: d["output"].update(top_k=0), "output.top_k: expected an integer >= 1"),
    ],
)
def test_bad_manifest_names_the_key(tiny_bundle, mutate, key):
    data = manifest_dict(tiny_bundle.root)
    mutate(data)
    (tiny_bundle.root / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError) as err:
        open_bundle(tiny_bundle.root)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_manifest_that_is_not_json(tiny_bundle):
    (tiny_bundle.root / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(tiny_bundle.root)


def test_directory_without_manifest(tmp_path):
    with pytest.raises(BundleError, match="has no lambdalite.json"):
        open_bundle(tmp_path)


def test_checksum_mismatch_is_detected(tiny_bundle):
    model = tiny_bundle.path("model")
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="model.onnx is corrupt"):
        tiny_bundle.read("model")
    data, check = tiny_bundle.read_deferred("model")
    with pytest.raises(ChecksumError):
        check()


def test_packing_is_reproducible(tmp_path):
    a = write_tiny_bundle(tmp_path / "a")
    b = write_tiny_bundle(tmp_path / "b")
    # Different directories, different file times: same bytes out.
    (b.root / "labels.txt").touch()
    out_a = pack_bundle(a, tmp_path / "a.tar.gz")
    out_b = pack_bundle(b, tmp_path / "b.tar.gz")
    assert out_a.read_bytes() == out_b.read_bytes()
    again = pack_bundle(a, tmp_path / "again.tar.gz")
    assert again.read_bytes() == out_a.read_bytes()


def test_pack_refuses_a_corrupt_bundle(tiny_bundle, tmp_path):
    tiny_bundle.path("labels").write_text("changed\n")
    with pytest.raises(ChecksumError):
        pack_bundle(tiny_bundle, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()
