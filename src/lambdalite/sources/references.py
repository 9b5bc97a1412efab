"""Model references: every place a model is named takes the same string.

    efficientnet-lite0                  a zoo name (built into the cache on first use)
    ./my-bundle/                        a bundle directory (holds lambdalite.json)
    ./my-bundle.tar.gz                  a packed bundle (unpacked once into the cache)
    ./model.tar.gz                      a SageMaker / seed-004 archive (TorchScript + classes.txt)
    https://host/model.tar.gz           downloaded once into the cache; #sha256=<hex> pins it
    s3://bucket/key                     the same through boto3 (?versionId=... for a version)

`resolve` turns a reference into a local bundle directory. Remote schemes download into the
cache through `lambdalite.sources.remote` (each scheme registers a fetcher in SCHEMES; boto3 is
imported only when an s3:// reference is resolved). A model archive that is not a bundle (a
seed-004 `model.tar.gz`: a TorchScript file and `classes.txt`) is served as it is with the
torchscript engine when torch is installed; `lambdalite import` converts it to an ONNX bundle
that needs no torch.

Seed 004 names its model with `MODEL_BUCKET` and `MODEL_KEY`; `configured_reference` turns the
settings into a reference (`LAMBDALITE_MODEL` first).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lambdalite.core.bundle import MANIFEST_NAME, file_sha256
from lambdalite.core.cache import Cache, entry_lock, touch
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import ModelNotFoundError, SourceError
from lambdalite.settings import Settings
from lambdalite.sources.zoo import ZOO, Builder, ensure_built

if TYPE_CHECKING:
    from lambdalite.sources.remote import Stream

__all__ = ["SCHEMES", "configured_reference", "resolve", "unpack_bundle_archive"]


def _open_https(url: str, timeout: float) -> Stream:
    from lambdalite.sources.https import open_url

    return open_url(url, timeout)


def _open_s3(url: str, timeout: float) -> Stream:
    from lambdalite.sources.s3 import open_object  # boto3 is imported here: only when an object is downloaded

    return open_object(url, timeout)


def _fetch_https(ref: str, progress: Progress, settings: Settings) -> Path:
    from lambdalite.sources.remote import fetch

    return fetch(ref, _open_https, progress, cache=settings.cache, timeout=settings.source_timeout)


def _fetch_s3(ref: str, progress: Progress, settings: Settings) -> Path:
    from lambdalite.sources.remote import fetch

    return fetch(ref, _open_s3, progress, cache=settings.cache, timeout=settings.source_timeout)


# scheme -> fetcher(reference, progress, settings) -> local file or directory
SCHEMES: dict[str, Callable[[str, Progress, Settings], Path]] = {
    "https": _fetch_https,
    "http": _fetch_https,
    "s3": _fetch_s3,
}


def configured_reference(settings: Settings) -> str | None:
    """The model reference the settings name: `LAMBDALITE_MODEL`, else seed 004's pair.

    `MODEL_BUCKET` + `MODEL_KEY` become `s3://MODEL_BUCKET/MODEL_KEY`, pinned with
    `#sha256=MODEL_SHA256` when that is set too. None when no model is named.
    """
    if settings.model:
        return settings.model
    bucket = settings.model_bucket or ""
    key = settings.model_key or ""
    if not bucket and not key:
        return None
    if not bucket or not key:
        missing = "MODEL_KEY" if bucket else "MODEL_BUCKET"
        raise ModelNotFoundError(f"MODEL_BUCKET and MODEL_KEY go together; {missing} is not set")
    if bucket.startswith("s3://"):
        bucket = bucket[5:]
    from urllib.parse import quote

    ref = f"s3://{bucket.strip('/')}/{quote(key.lstrip('/'), safe='/!-_.*()~')}"
    return f"{ref}#sha256={settings.model_sha256}" if settings.model_sha256 else ref


def _fingerprint(path: Path) -> str:
    return file_sha256(path)[:24]


def unpack_bundle_archive(archive: Path, cache: Cache, progress: Progress | None = None) -> Path:
    """Unpack a packed bundle into the cache (keyed by its content) and return the directory."""
    try:
        key = _fingerprint(archive)
    except OSError as exc:
        raise SourceError(f"cannot read {archive}: {exc.strerror}") from exc
    entry = cache.home / "bundles" / key
    root = _unpacked(entry)
    if root is not None:
        return root
    with entry_lock(entry):
        root = _unpacked(entry)
        if root is None:
            import shutil
            import tempfile

            from lambdalite.sources.remote import materialize

            cache.make_room(2 * archive.stat().st_size)
            work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
            try:
                materialize(archive, work / "bundle", str(archive), progress or Quiet(), budget=cache.budget)
                os.rename(work, entry)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    root = _unpacked(entry)
    if root is None:  # pragma: no cover - we just made it
        raise ModelNotFoundError(f"{archive}: unpacked, but no bundle was found in it")
    return root


def _unpacked(entry: Path) -> Path | None:
    """The bundle root inside an unpacked entry (a bundle may be packed inside a top directory)."""
    top = entry / "bundle"
    if (top / MANIFEST_NAME).is_file():
        touch(entry)
        return top
    if top.is_dir():
        subdirs = [p for p in top.iterdir() if p.is_dir()]
        if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
            touch(entry)
            return subdirs[0]
    return None


def resolve(
    ref: str, progress: Progress | None = None, *, settings: Settings | None = None, build_zoo: Builder | None = None
) -> Path:
    """A local bundle directory for the model reference `ref`.

    `settings` say where the cache is and how long downloads may wait (default: read from this
    process's environment); `build_zoo` builds a zoo model the cache does not hold yet (the
    toolkit passes one; a function has none)."""
    progress = progress or Quiet()
    settings = settings or Settings.from_env()
    scheme = ref.split("://", 1)[0] if "://" in ref else ""
    if scheme:
        fetch = SCHEMES.get(scheme)
        if fetch is None:
            raise ModelNotFoundError(
                f"unsupported model source {scheme}:// in {ref!r} "
                f"(use a zoo name, a bundle directory or a .tar.gz bundle)"
            )
        return _local(fetch(ref, progress, settings), ref, progress, settings.cache)
    if ref in ZOO:
        return ensure_built(ref, settings.cache, progress, build=build_zoo)
    path = Path(ref).expanduser()
    if path.exists():
        return _local(path, ref, progress, settings.cache)
    raise ModelNotFoundError(
        f"unknown model {ref!r}: not a zoo model ({', '.join(sorted(ZOO))}), "
        f"nor a bundle directory or .tar.gz file that exists"
    )


def _local(path: Path, ref: str, progress: Progress, cache: Cache) -> Path:
    if path.is_dir():
        return path.resolve()
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return unpack_bundle_archive(path, cache, progress)
    if path.suffix in (".onnx", ".tflite", ".pt", ".pth"):
        raise ModelNotFoundError(
            f"{ref} is a bare model file, not a bundle; make one with `lambdalite import {ref} -o bundle.tar.gz`"
        )
    raise ModelNotFoundError(f"{ref} is neither a bundle directory nor a .tar.gz bundle")
