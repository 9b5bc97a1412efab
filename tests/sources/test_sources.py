from __future__ import annotations

import pytest

from lambdalite.core.bundle import open_bundle, pack_bundle
from lambdalite.errors import ModelNotFoundError, UnsafeArchiveError
from lambdalite.sources.references import resolve


def test_directory_reference(tiny_bundle):
    assert resolve(str(tiny_bundle.root)) == tiny_bundle.root.resolve()


def test_tar_gz_reference_unpacks_once_into_the_cache(tiny_bundle, tmp_path, lambdalite_home):
    archive = pack_bundle(tiny_bundle, tmp_path / "tiny.tar.gz")
    first = resolve(str(archive))
    assert first.is_relative_to(lambdalite_home)
    assert open_bundle(first).manifest == tiny_bundle.manifest
    marker = first / "marker"
    marker.write_text("still here")
    assert resolve(str(archive)) == first and marker.exists()  # reused, not unpacked again


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("ftp://host/model.tar.gz", "unsupported model source ftp://"),
    ],
)
def test_unknown_references(ref, message):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve(ref)


def test_bare_model_file_points_at_import(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="lambdalite import"):
        resolve(str(onnx_file))


def test_corrupt_tar_gz_reference(tmp_path, lambdalite_home):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"junk" * 10)
    with pytest.raises(UnsafeArchiveError):
        resolve(str(bad))
