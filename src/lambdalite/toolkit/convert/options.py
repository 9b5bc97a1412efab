"""What `lambdalite import` is asked to do (its flags), shared by every importer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from lambdalite.core.bundle import Resample
from lambdalite.errors import UsageError

__all__ = ["IMAGE_SUFFIXES", "ImportOptions", "image_files"]


class ImportOptions(NamedTuple):
    """What `lambdalite import` takes from flags; None means: read it from the model, or default."""

    labels: Path | None = None
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: int | None = None
    crop: Literal["center", "none"] = "center"
    name: str | None = None
    version: str = "1.0.0"
    keep_torchscript: bool = False
    top_k: int = 5
    resample: Resample | None = None
    full_decode: bool = False  # decode JPEGs at full size (no reduced-scale draft)
    check_images: Path | None = None  # photos to check an import against the original model
    tolerance: float = 1e-4  # the largest probability difference that check accepts
    # Hugging Face captioners: generate() keyword arguments and a BLIP text prompt.
    generate: Mapping[str, Any] = MappingProxyType({})
    prompt: str | None = None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def image_files(folder: Path) -> list[Path]:
    """The images in `folder` (recursively), sorted; a UsageError when there are none."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a directory of images")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise UsageError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found
