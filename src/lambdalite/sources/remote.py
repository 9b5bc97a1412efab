"""Remote model sources: download once into the cache, verify, unpack, reuse.

    https://host/models/clothing.tar.gz#sha256=<64 hex digits>     (http:// too)
    s3://bucket/key.tar.gz                                          (?versionId=... pins a version)

A scheme module (`lambdalite.sources.https`, `lambdalite.sources.s3`) only opens a `Stream`; everything else is
done here the same way for every scheme:

* The entry `<cache>/remote/<key>` is keyed by the whole reference (pin included) and reused
  without touching the network: a second cold start, even in another process, downloads
  nothing. A new object needs a new key, a `versionId` or a new pin.
* An entry lock makes concurrent cold starts (separate processes) download once; the others
  wait and reuse the result.
* The download streams into a temporary directory beside the entry, hashed as it goes, inside
  the cache's byte budget (least-recently-used entries are evicted first). The `#sha256=` pin and
  whatever checksum the server offers are checked before anything is unpacked.
* The archive is unpacked safely (`lambdalite.core.archive`) and removed, so /tmp holds the model
  once. A bundle is used as it is; a SageMaker or seed-004 `model.tar.gz` (a model file and
  `classes.txt`, no `lambdalite.json`) becomes a bundle on the spot (`lambdalite.toolkit.convert.importer`).
* Only when all of that succeeded is the directory renamed into place: a failure leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from lambdalite.core.bundle import MANIFEST_NAME
from lambdalite.core.cache import Cache, entry_lock, touch
from lambdalite.core.progress import Progress
from lambdalite.errors import ChecksumError, SourceError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Digests",
    "Opener",
    "Stream",
    "display",
    "fetch",
    "materialize",
    "split_pin",
]

DEFAULT_TIMEOUT = 20.0
_RECORD = "source.json"
_HEX = frozenset("0123456789abcdef")
_TAR_MAGIC_OFFSET = 257


class Digests(NamedTuple):
    """What the bytes that arrived hash to."""

    size: int
    sha256: str
    md5: str


class Stream(Protocol):
    """One open download. `chunks` yields the body; `verify` checks server-side checksums."""

    name: str  # the object's file name (the last path segment), for messages and type sniffing
    size: int | None  # the announced length, when known

    def chunks(self) -> Iterator[bytes]: ...

    def verify(self, digests: Digests) -> None: ...

    def close(self) -> None: ...


Opener = Callable[[str, float], Stream]  # (url, timeout in seconds) -> an open download


def display(url: str) -> str:
    """The URL for messages: query strings (presigned signatures) and passwords left out."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def split_pin(reference: str) -> tuple[str, str | None]:
    """`url#sha256=<hex>` -> (url, hex digest); the digest is None when nothing is pinned."""
    url, _, fragment = reference.partition("#")
    if not fragment:
        return url, None
    algorithm, _, digest = fragment.partition("=")
    digest = digest.lower()
    if algorithm != "sha256" or len(digest) != 64 or not set(digest) <= _HEX:
        raise SourceError(f"{display(url)}: a pin must read #sha256=<64 hex digits>, not #{fragment[:80]}")
    return url, digest


def fetch(reference: str, opener: Opener, progress: Progress, *, cache: Cache, timeout: float) -> Path:
    """The local bundle directory for a remote reference, downloading it once into `cache`.

    `timeout` is how long to wait for a connection or for the next bytes."""
    url, pin = split_pin(reference)
    key = hashlib.sha256(reference.encode()).hexdigest()[:24]
    entry = cache.home / "remote" / key
    ready = _ready(entry)
    if ready is not None:
        return ready
    with entry_lock(entry):
        ready = _ready(entry)  # another process fetched it while we waited
        if ready is not None:
            return ready
        work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
        try:
            record = _download_into(work, url, pin, opener, progress, cache, timeout)
            (work / _RECORD).write_text(json.dumps(record, indent=2) + "\n")
            os.rename(work, entry)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    root = _ready(entry)
    if root is None:  # pragma: no cover - we just wrote it; only a concurrent eviction gets here
        raise SourceError(f"{display(url)}: the cache entry {entry} vanished while in use")
    return root


def _ready(entry: Path) -> Path | None:
    try:
        record = json.loads((entry / _RECORD).read_text())
        root = entry / str(record["root"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (root / MANIFEST_NAME).is_file():
        return None
    touch(entry)
    return root


def _download_into(
    work: Path, url: str, pin: str | None, opener: Opener, progress: Progress, cache: Cache, timeout: float
) -> dict[str, object]:
    stream = opener(url, timeout)
    try:
        name = _safe_filename(stream.name)
        if stream.size is not None:
            # Room for the download and what it unpacks to (weights barely compress).
            cache.make_room(2 * stream.size, keep=[work])
        target = work / "download" / name
        target.parent.mkdir()
        started = time.perf_counter()
        digests = _stream_to(stream, target, url, progress, cache.budget)
        seconds = time.perf_counter() - started
        if stream.size is not None and digests.size != stream.size:
            raise SourceError(
                f"{display(url)}: the download stopped at {digests.size} of {stream.size} bytes; try again"
            )
        if pin is not None and digests.sha256 != pin:
            raise ChecksumError(
                f"{display(url)}: sha256 {digests.sha256[:12]}… does not match the pinned "
                f"{pin[:12]}…; the object is corrupt or was replaced"
            )
        stream.verify(digests)
    finally:
        stream.close()
    root = materialize(target, work / "bundle", display(url), progress, budget=cache.budget)
    shutil.rmtree(target.parent)
    return {
        "reference": display(url),
        "root": str(root.relative_to(work)),
        "bytes": digests.size,
        "sha256": digests.sha256,
        "seconds": round(seconds, 3),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _safe_filename(name: str) -> str:
    name = name.rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned[:120] or "model"


def _stream_to(stream: Stream, target: Path, url: str, progress: Progress, budget: int) -> Digests:
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with progress.bar(f"Downloading {stream.name}", stream.size) as advance, target.open("xb") as out:
        for chunk in stream.chunks():
            size += len(chunk)
            if size > budget:
                raise SourceError(
                    f"{display(url)}: the download passed the cache budget of {budget / 2**20:.0f} MB; "
                    f"raise LAMBDALITE_CACHE_BYTES"
                )
            out.write(chunk)
            sha256.update(chunk)
            md5.update(chunk)
            advance(len(chunk))
    return Digests(size, sha256.hexdigest(), md5.hexdigest())


def _is_tar(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(_TAR_MAGIC_OFFSET + 8)
    return head[:2] == b"\x1f\x8b" or head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar"


def materialize(archive: Path, dest: Path, origin: str, progress: Progress, *, budget: int) -> Path:
    """Unpack a bundle or model archive into the new directory `dest`; the bundle root inside it.

    A bundle is returned as it is (also when packed with its directory as the top entry). A
    SageMaker or seed-004 `model.tar.gz` without `lambdalite.json` is made into a bundle in place.
    """
    from lambdalite.core.archive import extract_archive

    if not _is_tar(archive):
        raise SourceError(
            f"{origin} is not a .tar.gz bundle or model archive; make a bundle with "
            f"`lambdalite import {archive.name} -o bundle.tar.gz` and point at that"
        )
    show = archive.stat().st_size > 16 * 2**20
    with progress.step(f"Unpacking {archive.name}") if show else nullcontext():
        extract_archive(archive, dest, max_bytes=budget)
    if (dest / MANIFEST_NAME).is_file():
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST_NAME).is_file():
        return subdirs[0]
    from lambdalite.sources.plain import bundle_in_place  # numpy and an engine: only for plain archives

    return bundle_in_place(dest, origin)
