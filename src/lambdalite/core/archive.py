"""Safe extraction of `.tar.gz` archives from anywhere (bundles, SageMaker `model.tar.gz`).

Archives are untrusted. Before a byte is written, every member is checked: regular files and
directories only (no symlinks, hard links, devices or FIFOs), relative paths that stay inside
the destination (no absolute paths, no `..`), a bounded member count, and a bounded total size,
counted both from the headers and from the bytes actually written (a lying header or a gzip
bomb stops at the cap). Extraction goes to a temporary directory beside the destination and is
renamed into place only when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from lambdalite.errors import UnsafeArchiveError

__all__ = ["MAX_ARCHIVE_BYTES", "MAX_ARCHIVE_MEMBERS", "extract_archive", "is_archive"]

MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_ARCHIVE_MEMBERS = 10_000
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: refusing absolute path {name!r}")
    if "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive.name}: refusing odd path {name!r}")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive.name}: refusing path with '..': {name!r}")
    return path


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> Path:
    """Extract `archive` into the new directory `dest` (which must not exist yet) and return it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        _extract_into(archive, work, max_bytes=max_bytes, max_members=max_members)
        try:
            os.rename(work, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race with another extractor
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def _extract_into(archive: Path, work: Path, *, max_bytes: int, max_members: int) -> None:
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise UnsafeArchiveError(f"{archive.name} is not a readable tar archive: {exc}") from exc
    total = 0
    count = 0
    try:
        with tar:
            for member in tar:
                count += 1
                if count > max_members:
                    raise UnsafeArchiveError(f"{archive.name}: more than {max_members} entries")
                rel = _safe_name(member.name, archive)
                if member.issym() or member.islnk():
                    raise UnsafeArchiveError(f"{archive.name}: refusing link {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f"{archive.name}: refusing special file {member.name!r}")
                target = work.joinpath(*rel.parts) if rel.parts and rel.parts != (".",) else work
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                total += member.size
                if total > max_bytes:
                    raise UnsafeArchiveError(f"{archive.name}: unpacks to more than {max_bytes // 2**20} MB")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise UnsafeArchiveError(f"{archive.name}: cannot read {member.name!r}")
                written = 0
                with src, target.open("xb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > member.size:
                            raise UnsafeArchiveError(f"{archive.name}: {member.name!r} is longer than its header")
                        out.write(chunk)
                target.chmod(0o644)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UnsafeArchiveError(f"{archive.name} is corrupt: {exc}") from exc
    except FileExistsError as exc:
        raise UnsafeArchiveError(f"{archive.name}: duplicate entry {exc.filename!r}") from exc
    except OSError as exc:
        raise UnsafeArchiveError(f"{archive.name}: cannot extract: {exc}") from exc
