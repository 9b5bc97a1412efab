"""Model references: every place a model is named takes the same string.

    efficientnet-lite0            a zoo name (built into the cache on first use)
    ./my-bundle/                  a bundle directory (holds lambdalite.json)
    ./my-bundle.tar.gz            a packed bundle (unpacked once into the cache)
    https://host/model.tar.gz     (remote sources; each scheme registers a fetcher in SCHEMES)
    s3://bucket/key

`resolve` turns a reference into a local bundle directory. Remote schemes fetch into the cache
and hand the local file to the same path as a `.tar.gz` reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from .bundle import MANIFEST_NAME
from .cache import cache_home, entry_lock
from .errors import ModelNotFoundError, SourceError
from .progress import Progress, Quiet
from .zoo import ZOO, ensure_built

__all__ = ["SCHEMES", "resolve", "unpack_bundle_archive"]

_SHOW_UNPACK_BYTES = 16 * 2**20
# scheme -> fetcher(reference, progress) -> local file or directory
SCHEMES: dict[str, Callable[[str, Progress], Path]] = {}


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def unpack_bundle_archive(archive: Path, progress: Progress | None = None) -> Path:
    """Unpack a packed bundle into the cache (keyed by its content) and return the directory."""
    try:
        key = _fingerprint(archive)
    except OSError as exc:
        raise SourceError(f"cannot read {archive}: {exc.strerror}") from exc
    dest = cache_home() / "bundles" / key
    if (dest / MANIFEST_NAME).is_file():
        return dest
    with entry_lock(dest):
        if not (dest / MANIFEST_NAME).is_file():
            from .archive import extract_archive

            shown = progress if progress is not None and archive.stat().st_size > _SHOW_UNPACK_BYTES else Quiet()
            with shown.step(f"Unpacking {archive.name}"):
                extract_archive(archive, dest)
    root = dest
    if not (root / MANIFEST_NAME).is_file():
        # A bundle packed with its directory as the top entry.
        subdirs = [p for p in root.iterdir() if p.is_dir()]
        if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
            return subdirs[0]
    return root


def resolve(ref: str, progress: Progress | None = None) -> Path:
    """A local bundle directory for the model reference `ref`."""
    progress = progress or Quiet()
    scheme = ref.split("://", 1)[0] if "://" in ref else ""
    if scheme:
        fetch = SCHEMES.get(scheme)
        if fetch is None:
            raise ModelNotFoundError(
                f"unsupported model source {scheme}:// in {ref!r} "
                f"(use a zoo name, a bundle directory or a .tar.gz bundle)"
            )
        return _local(fetch(ref, progress), ref, progress)
    if ref in ZOO:
        return ensure_built(ref, progress)
    path = Path(ref).expanduser()
    if path.exists():
        return _local(path, ref, progress)
    raise ModelNotFoundError(
        f"unknown model {ref!r}: not a zoo model ({', '.join(sorted(ZOO))}), "
        f"nor a bundle directory or .tar.gz file that exists"
    )


def _local(path: Path, ref: str, progress: Progress) -> Path:
    if path.is_dir():
        return path.resolve()
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return unpack_bundle_archive(path, progress)
    if path.suffix in (".onnx", ".tflite", ".pt", ".pth"):
        raise ModelNotFoundError(
            f"{ref} is a bare model file, not a bundle; make one with `lambdalite import {ref} -o bundle.tar.gz`"
        )
    raise ModelNotFoundError(f"{ref} is neither a bundle directory nor a .tar.gz bundle")
