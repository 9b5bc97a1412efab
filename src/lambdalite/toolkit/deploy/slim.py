"""Make the installed dependencies smaller without changing what the function can do.

Only files are deleted, each by a named rule; shared objects are never stripped or rewritten
(stripping breaks some vendored libraries and buys little once zipped). The rules:

* test suites, type stubs, C headers, static libraries and stale bytecode;
* tooling that ships inside the runtime packages but that inference never imports:
  onnxruntime's quantization, transformers optimiser and converters, numpy's f2py, LiteRT's
  converter and calibration, and accelerators Lambda does not have (GPU, NPU);
* Pillow codecs for formats lambdalite refuses anyway (`lambdalite.core.images.FORMATS`);
* shared libraries that nothing left refers to: a library is kept when any remaining binary or
  Python file names it (a DT_NEEDED entry or a dlopen string), so a vendored library is removed
  only once the extension that loaded it is gone. onnxruntime's own `libonnxruntime.so` (the C
  API, not linked by its Python binding) goes the same way.

    removed = slim(deps_dir, keep_formats={"JPEG", "PNG"})
    removed.bytes_by_reason  # {"test suites": 17_000_000, ...}
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["RULES", "Rule", "Slimmed", "prunable_libraries", "slim"]


@dataclass(frozen=True, slots=True)
class Rule:
    """Delete what matches `pattern` (matched from the right, like `PurePath.match`)."""

    pattern: str
    reason: str
    directory: bool = False


_ORT_TOOLS = "onnxruntime tooling (quantization, transformers, converters)"
_HEADERS = "C headers and static libraries"
_BUILD_TOOLS = "build tooling (f2py, PyInstaller hooks)"
_LITERT_TOOLS = "LiteRT tooling (converter, calibration, analyzer, AOT)"
RULES: tuple[Rule, ...] = (
    Rule("__pycache__", "stale bytecode", directory=True),
    Rule("tests", "test suites", directory=True),
    Rule("testing/_private/extbuild.py", "test suites"),
    Rule("*.pyi", "type stubs"),
    Rule("*.pxd", _HEADERS),
    Rule("numpy/_core/include", _HEADERS, directory=True),
    Rule("numpy/_core/lib", _HEADERS, directory=True),
    Rule("numpy/random/lib", _HEADERS, directory=True),
    Rule("numpy/random/_examples", _HEADERS, directory=True),
    Rule("numpy/f2py", _BUILD_TOOLS, directory=True),
    Rule("numpy/_pyinstaller", _BUILD_TOOLS, directory=True),
    Rule("onnxruntime/tools", _ORT_TOOLS, directory=True),
    Rule("onnxruntime/transformers", _ORT_TOOLS, directory=True),
    Rule("onnxruntime/quantization", _ORT_TOOLS, directory=True),
    Rule("onnxruntime/training", _ORT_TOOLS, directory=True),
    Rule("onnxruntime/backend", _ORT_TOOLS, directory=True),
    Rule("onnxruntime/datasets", _ORT_TOOLS, directory=True),
    Rule("ai_edge_litert/tools", _LITERT_TOOLS, directory=True),
    Rule("ai_edge_litert/aot", _LITERT_TOOLS, directory=True),
    Rule("ai_edge_litert/_pywrap_litert_converter.so", _LITERT_TOOLS),
    Rule("ai_edge_litert/_pywrap_*calibration*.so", _LITERT_TOOLS),
    Rule("ai_edge_litert/_pywrap_analyzer_wrapper.so", _LITERT_TOOLS),
    Rule("ai_edge_litert/format_converter_wrapper_pybind11.so", _LITERT_TOOLS),
    # Lambda has no GPU and no NPU.
    Rule("ai_edge_litert/vendors", "accelerators Lambda does not have (GPU, NPU)", directory=True),
    Rule("ai_edge_litert/libLiteRtWebGpuAccelerator.so", "accelerators Lambda does not have (GPU, NPU)"),
    Rule("*.dist-info/RECORD", "install records (stale once slimmed)"),
    Rule("*.dist-info/entry_points.txt", "install records (stale once slimmed)"),
    # Tk is not part of Lambda's Python, so ImageTk's extension could never load there.
    Rule("PIL/_imagingtk.*.so", "Pillow extensions that cannot be used"),
)
# Pillow's optional codec extensions, by the image format that needs them.
_PILLOW_CODECS = {"AVIF": "PIL/_avif.*.so"}
_UNREFERENCED = "shared libraries nothing refers to"


@dataclass(slots=True)
class Slimmed:
    """What `slim` removed: relative paths and bytes per reason."""

    paths: list[str] = field(default_factory=list)
    bytes_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.bytes_by_reason.values())

    def add(self, rel: str, size: int, reason: str) -> None:
        self.paths.append(rel)
        self.bytes_by_reason[reason] = self.bytes_by_reason.get(reason, 0) + size


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _codec_rules(formats: Iterable[str]) -> list[Rule]:
    wanted = set(formats)
    return [
        Rule(pattern, f"Pillow codecs for formats lambdalite refuses ({fmt})")
        for fmt, pattern in _PILLOW_CODECS.items()
        if fmt not in wanted
    ]


def slim(root: Path, *, keep_formats: Iterable[str]) -> Slimmed:
    """Delete what the rules match under `root`, a directory of installed dependencies."""
    rules = (*RULES, *_codec_rules(keep_formats))
    removed = Slimmed()
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        here = Path(dirpath)
        rel_dir = PurePosixPath(here.relative_to(root).as_posix())
        for name in sorted(dirnames):
            rel = rel_dir / name
            rule = _match(rel, rules, directory=True)
            if rule is not None:
                removed.add(rel.as_posix() + "/", _size(here / name), rule.reason)
                shutil.rmtree(here / name)
                dirnames.remove(name)
        for name in sorted(filenames):
            rel = rel_dir / name
            rule = _match(rel, rules, directory=False)
            if rule is not None:
                removed.add(rel.as_posix(), (here / name).stat().st_size, rule.reason)
                (here / name).unlink()
    for path in prunable_libraries(root):
        removed.add(path.relative_to(root).as_posix(), path.stat().st_size, _UNREFERENCED)
        path.unlink()
    return removed


def _match(rel: PurePosixPath, rules: Iterable[Rule], *, directory: bool) -> Rule | None:
    for rule in rules:
        if rule.directory == directory and rel.match(rule.pattern):
            return rule
    return None


def _is_library(name: str) -> bool:
    """A plain shared library (`libfoo.so.1`), as opposed to a Python extension module."""
    return name.startswith("lib") and (name.endswith(".so") or ".so." in name) and ".cpython-" not in name


def prunable_libraries(root: Path) -> list[Path]:
    """Plain shared libraries under `root` that no other kept file names, transitively.

    A library `libfoo-1a2b3c.so.1.2` is referenced when some other `.so` or `.py` file holds the
    bytes `libfoo-1a2b3c.so` (its DT_NEEDED entry, or a dlopen or ctypes string).
    """
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".py" or ".so" in p.name))
    libraries = [p for p in files if _is_library(p.name)]
    referrers: dict[Path, set[Path]] = {lib: set() for lib in libraries}
    stems = {lib: lib.name.split(".so", 1)[0].encode() + b".so" for lib in libraries}
    for path in files:
        data = path.read_bytes()
        for lib, stem in stems.items():
            if lib != path and stem in data:
                referrers[lib].add(path)
    pruned: list[Path] = []
    changed = True
    while changed:
        changed = False
        for lib in libraries:
            if lib not in pruned and not referrers[lib] - set(pruned):
                pruned.append(lib)
                changed = True
    return pruned
