"""Zip files for Lambda, written reproducibly, and what each package inside weighs.

    sizes = write_zip(Path("function.zip"), [(staging, "")])            # arcname -> (size, zipped)
    artifact = zip_artifact("function", out / "function.zip", trees, owners, progress)
    artifact.packages   # numpy 48.7 MB / 14.9 MB zipped, ...

The same inputs give the same bytes: entries sorted, times fixed at 1980-01-01, modes 0644 (0755
when executable), Unix as the creating system so Lambda keeps the mode bits.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lambdalite.core.bundle import file_sha256
from lambdalite.core.progress import Progress, Quiet
from lambdalite.errors import BuildError

__all__ = ["MAX_UNZIPPED", "MAX_ZIPPED_UPLOAD", "Artifact", "PackageSize", "write_zip", "zip_artifact"]

MAX_ZIPPED_UPLOAD = 50 * 2**20  # a zip uploaded straight to the Lambda API
MAX_UNZIPPED = 250 * 2**20  # 262,144,000 bytes: the function and all its layers, unzipped
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: same bytes on every build


@dataclass(frozen=True, slots=True)
class PackageSize:
    """One distribution (or lambdalite, or the model) inside an artifact."""

    name: str
    version: str
    files: int
    size: int
    compressed: int


@dataclass(frozen=True, slots=True)
class Artifact:
    """A zip file written by the build."""

    kind: Literal["function", "layer"]
    path: Path
    sha256: str
    size: int  # unzipped
    compressed: int  # the zip file's size
    packages: tuple[PackageSize, ...]


def write_zip(
    out: Path, trees: Iterable[tuple[Path, str]], progress: Progress | None = None
) -> dict[str, tuple[int, int]]:
    """Zip every file under each (directory, prefix) into `out`, reproducibly.

    Entries are sorted, times fixed, modes 0644 (0755 when executable). Returns arcname ->
    (size, compressed size).
    """
    files: dict[str, Path] = {}
    for root, prefix in trees:
        for path in root.rglob("*"):
            if path.is_file():
                arcname = prefix + path.relative_to(root).as_posix()
                if arcname in files:
                    raise BuildError(f"two files would be {arcname} in {out.name}")
                files[arcname] = path
    total = sum(p.stat().st_size for p in files.values())
    sizes: dict[str, tuple[int, int]] = {}
    partial = out.with_name(out.name + ".partial")
    try:
        with (
            (progress or Quiet()).bar(f"Writing {out.name}", total) as advance,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf,
        ):
            for arcname in sorted(files):
                path = files[arcname]
                size = path.stat().st_size
                info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
                mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
                info.external_attr = (stat.S_IFREG | mode) << 16
                info.create_system = 3  # Unix, so the mode bits are honoured when unzipped
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as src, zf.open(info, "w", force_zip64=size > 2**31) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                advance(size)
            for info in zf.infolist():
                sizes[info.filename] = (info.file_size, info.compress_size)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sizes


def zip_artifact(
    kind: Literal["function", "layer"],
    out: Path,
    trees: list[tuple[Path, str]],
    owners: dict[str, tuple[str, str]],
    progress: Progress,
) -> Artifact:
    sizes = write_zip(out, trees, progress)
    by_package: dict[tuple[str, str], list[int]] = {}
    for arcname, (size, compressed) in sizes.items():
        top = arcname.removeprefix("python/").split("/")[0]
        owner = owners.get(top, (top, ""))
        row = by_package.setdefault(owner, [0, 0, 0])
        row[0] += 1
        row[1] += size
        row[2] += compressed
    packages = sorted(
        (PackageSize(name, version, n, size, comp) for (name, version), (n, size, comp) in by_package.items()),
        key=lambda p: -p.size,
    )
    return Artifact(
        kind=kind,
        path=out,
        sha256=file_sha256(out),
        size=sum(s for s, _ in sizes.values()),
        compressed=out.stat().st_size,
        packages=tuple(packages),
    )
