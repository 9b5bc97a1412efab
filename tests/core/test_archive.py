from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lambdalite.core.archive import extract_archive
from lambdalite.errors import UnsafeArchiveError


def make_tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_extracts_files_and_directories(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", [("a.txt", b"A"), ("sub/b.txt", b"BB")])
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "a.txt").read_bytes() == b"A"
    assert (out / "sub" / "b.txt").read_bytes() == b"BB"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("../escape.txt", b"x")], "refusing path with '..'"),
        ([("ok/../../escape.txt", b"x")], "refusing path with '..'"),
        ([("/etc/evil", b"x")], "refusing absolute path"),
        ([special("link", tarfile.SYMTYPE, "/etc/passwd")], "refusing link"),
        ([special("hard", tarfile.LNKTYPE, "/etc/passwd")], "refusing link"),
        ([special("dev", tarfile.CHRTYPE)], "refusing special file"),
        ([special("fifo", tarfile.FIFOTYPE)], "refusing special file"),
    ],
)
def test_hostile_archives_are_refused_and_nothing_is_written(tmp_path, entries, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [("first.txt", b"ok"), *entries])
    dest_parent = tmp_path / "cache"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, dest_parent / "out")
    assert not (dest_parent / "out").exists()
    assert list(dest_parent.iterdir()) == []  # the half-done extraction was removed
    assert not (tmp_path / "escape.txt").exists()


def test_size_cap(tmp_path):
    archive = make_tar(tmp_path / "big.tar.gz", [("a", b"x" * 1000), ("b", b"y" * 1000)])
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than"):
        extract_archive(archive, tmp_path / "out", max_bytes=1500)
    assert not (tmp_path / "out").exists()


def test_member_count_cap(tmp_path):
    archive = make_tar(tmp_path / "many.tar.gz", [(f"f{i}", b"") for i in range(5)])
    with pytest.raises(UnsafeArchiveError, match="more than 3 entries"):
        extract_archive(archive, tmp_path / "out", max_members=3)


@pytest.mark.parametrize("payload", [b"", b"not a tar at all", b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_archives(tmp_path, payload):
    archive = tmp_path / "corrupt.tar.gz"
    archive.write_bytes(payload)
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_archive(tmp_path):
    archive = make_tar(tmp_path / "t.tar.gz", [("a.bin", bytes(range(256)) * 4000)])
    archive.write_bytes(archive.read_bytes()[:400])
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
