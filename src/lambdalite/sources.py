"""Model references: every place a model is named takes the same string.

    efficientnet-lite0                  a zoo name (built into the cache on first use)
    ./my-bundle/                        a bundle directory (holds lambdalite.json)
    ./my-bundle.tar.gz                  a packed bundle (unpacked once into the cache)
    ./model.tar.gz                      a SageMaker / seed-004 archive (TorchScript + classes.txt)
    https://host/model.tar.gz           downloaded once into the cache; #sha256=<hex> pins it
    s3://bucket/key                     the same through boto3 (?versionId=... for a version)

`resolve` turns a reference into a local bundle directory. Remote schemes download into the
cache through `lambdalite.remote` (each scheme registers a fetcher in SCHEMES; boto3 is
imported only when an s3:// reference is resolved). A model archive that is not a bundle (a
seed-004 `model.tar.gz`: a TorchScript file and `classes.txt`) is served as it is with the
torchscript engine when torch is installed; `lambdalite import` converts it to an ONNX bundle
that needs no torch.

Seed 004 names its model with `MODEL_BUCKET` and `MODEL_KEY`; `reference_from_env` turns the
environment into a reference (`LAMBDALITE_MODEL` first).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .bundle import MANIFEST_NAME, file_sha256
from .cache import cache_home, entry_lock, touch
from .errors import ModelNotFoundError, SourceError
from .progress import Progress, Quiet
from .zoo import ZOO, ensure_built

if TYPE_CHECKING:
    from .remote import Stream

__all__ = ["SCHEMES", "reference_from_env", "resolve", "unpack_bundle_archive"]


def _open_https(url: str) -> Stream:
    from .https import open_url

    return open_url(url)


def _open_s3(url: str) -> Stream:
    from .s3 import open_object  # boto3 is imported here: only when an object is downloaded

    return open_object(url)


def _fetch_https(ref: str, progress: Progress) -> Path:
    from .remote import fetch

    return fetch(ref, _open_https, progress)


def _fetch_s3(ref: str, progress: Progress) -> Path:
    from .remote import fetch

    return fetch(ref, _open_s3, progress)


# scheme -> fetcher(reference, progress) -> local file or directory
SCHEMES: dict[str, Callable[[str, Progress], Path]] = {
    "https": _fetch_https,
    "http": _fetch_https,
    "s3": _fetch_s3,
}


def reference_from_env(environ: Mapping[str, str]) -> str | None:
    """The model reference an environment names: `LAMBDALITE_MODEL`, else seed 004's pair.

    `MODEL_BUCKET` + `MODEL_KEY` become `s3://MODEL_BUCKET/MODEL_KEY`, pinned with
    `#sha256=MODEL_SHA256` when that is set too. None when the environment names no model.
    """
    explicit = environ.get("LAMBDALITE_MODEL", "").strip()
    if explicit:
        return explicit
    bucket = environ.get("MODEL_BUCKET", "").strip()
    key = environ.get("MODEL_KEY", "").strip()
    if not bucket and not key:
        return None
    if not bucket or not key:
        missing = "MODEL_KEY" if bucket else "MODEL_BUCKET"
        raise ModelNotFoundError(f"MODEL_BUCKET and MODEL_KEY go together; {missing} is not set")
    if bucket.startswith("s3://"):
        bucket = bucket[5:]
    from urllib.parse import quote

    ref = f"s3://{bucket.strip('/')}/{quote(key.lstrip('/'), safe='/!-_.*()~')}"
    pin = environ.get("MODEL_SHA256", "").strip()
    return f"{ref}#sha256={pin}" if pin else ref


def _fingerprint(path: Path) -> str:
    return file_sha256(path)[:24]


def unpack_bundle_archive(archive: Path, progress: Progress | None = None) -> Path:
    """Unpack a packed bundle into the cache (keyed by its content) and return the directory."""
    try:
        key = _fingerprint(archive)
    except OSError as exc:
        raise SourceError(f"cannot read {archive}: {exc.strerror}") from exc
    entry = cache_home() / "bundles" / key
    root = _unpacked(entry)
    if root is not None:
        return root
    with entry_lock(entry):
        root = _unpacked(entry)
        if root is None:
            import shutil
            import tempfile

            from .cache import make_room
            from .remote import materialize

            make_room(2 * archive.stat().st_size)
            work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
            try:
                materialize(archive, work / "bundle", str(archive), progress or Quiet())
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
