"""Slimming deletes files by named rules, and shared libraries only when nothing refers to them."""

from __future__ import annotations

from pathlib import Path

from lambdalite.toolkit.deploy.slim import prunable_libraries, slim

KEEP = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}


def write(root: Path, rel: str, data: bytes = b"x" * 10) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_rules_delete_tooling_tests_and_stubs_but_keep_runtime_code(tmp_path):
    keep = [
        "numpy/__init__.py",
        "numpy/testing/__init__.py",  # numpy.testing is a real module, not a test suite
        "numpy/typing/__init__.py",  # lambdalite imports numpy.typing
        "onnxruntime/capi/onnxruntime_inference_collection.py",
        "onnxruntime-1.31.1.dist-info/METADATA",
        "PIL/Image.py",
    ]
    gone = [
        "numpy/_core/tests/test_api.py",
        "numpy/__init__.pyi",
        "numpy/f2py/__init__.py",
        "numpy/_core/include/numpy/arrayobject.h",
        "onnxruntime/transformers/optimizer.py",
        "onnxruntime/quantization/quantize.py",
        "onnxruntime/tools/convert.py",
        "onnxruntime-1.31.1.dist-info/RECORD",
        "PIL/__pycache__/Image.cpython-312.pyc",
        "PIL/_imagingtk.cpython-312-x86_64-linux-gnu.so",
    ]
    for rel in keep + gone:
        write(tmp_path, rel)
    removed = slim(tmp_path, keep_formats=KEEP)
    for rel in keep:
        assert (tmp_path / rel).exists(), rel
    for rel in gone:
        assert not (tmp_path / rel).exists(), rel
    assert removed.bytes_by_reason["test suites"] == 10
    assert "onnxruntime tooling (quantization, transformers, converters)" in removed.bytes_by_reason
    assert removed.total == 10 * len(gone)


def test_pillow_codecs_go_only_when_lambdalite_refuses_the_format(tmp_path):
    avif = write(tmp_path, "PIL/_avif.cpython-312-x86_64-linux-gnu.so")
    webp = write(tmp_path, "PIL/_webp.cpython-312-x86_64-linux-gnu.so")
    slim(tmp_path, keep_formats=KEEP | {"AVIF"})
    assert avif.exists() and webp.exists()
    slim(tmp_path, keep_formats=KEEP)
    assert not avif.exists() and webp.exists()


def test_a_library_is_pruned_only_when_nothing_left_names_it(tmp_path):
    # _ext needs libused; libused needs libdeep; libonly_avif is needed only by _avif, which goes.
    write(tmp_path, "pkg/_ext.cpython-312-x86_64-linux-gnu.so", b"\x7fELF...libused-1a2b.so.1\x00")
    write(tmp_path, "pkg.libs/libused-1a2b.so.1", b"\x7fELF...libdeep-9f9f.so.2\x00")
    write(tmp_path, "pkg.libs/libdeep-9f9f.so.2", b"\x7fELF")
    write(tmp_path, "PIL/_avif.cpython-312-x86_64-linux-gnu.so", b"\x7fELF...libonly_avif-77.so\x00")
    write(tmp_path, "pkg.libs/libonly_avif-77.so", b"\x7fELF...libchain-88.so\x00")
    write(tmp_path, "pkg.libs/libchain-88.so", b"\x7fELF")
    write(tmp_path, "pkg/loader.py", b"ctypes.CDLL('libdlopened.so')\n")
    write(tmp_path, "pkg/libdlopened.so", b"\x7fELF")
    write(tmp_path, "pkg/libunused.so.1.2.3", b"\x7fELF")
    removed = slim(tmp_path, keep_formats=KEEP)
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert "pkg.libs/libused-1a2b.so.1" in left and "pkg.libs/libdeep-9f9f.so.2" in left
    assert "pkg/libdlopened.so" in left  # named in Python code: loaded with ctypes
    for gone in ("pkg.libs/libonly_avif-77.so", "pkg.libs/libchain-88.so", "pkg/libunused.so.1.2.3"):
        assert gone not in left
        assert gone in removed.paths


def test_extension_modules_are_never_pruned(tmp_path):
    write(tmp_path, "pkg/_lonely.cpython-312-x86_64-linux-gnu.so", b"\x7fELF")
    write(tmp_path, "pkg/_abi3.abi3.so", b"\x7fELF")
    assert prunable_libraries(tmp_path) == []
