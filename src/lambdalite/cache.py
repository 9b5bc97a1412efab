"""Where lambdalite keeps built and downloaded models, and how concurrent users share it.

`LAMBDALITE_HOME` wins. Inside a Lambda function (or a local instance) the only writable place
is the temporary directory, so the default there is `$TMPDIR/lambdalite` (`/tmp/lambdalite` on
Lambda). Elsewhere it is the user cache directory (`$XDG_CACHE_HOME/lambdalite`, normally
`~/.cache/lambdalite`).

Writers build into a temporary sibling and rename into place, under a per-entry lock, so two
processes starting cold at once do the work once and readers never see half an entry.

The cache has a byte budget (`LAMBDALITE_CACHE_BYTES`, default 400 MiB: Lambda's default /tmp is
512 MB and the function may need the rest). Before a download or an unpack, `make_room` evicts
whole entries (`bundles/*`, `remote/*`, `zoo/*/*`), least recently used first; `touch` marks an
entry used. An entry being built by another process (its lock is held) is never evicted.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SourceError

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "cache_budget",
    "cache_entries",
    "cache_home",
    "cache_usage",
    "entry_lock",
    "in_lambda",
    "make_room",
    "touch",
]

DEFAULT_CACHE_BYTES = 400 * 2**20
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}
_EVICTABLE = ("bundles/*", "remote/*", "zoo/*/*")


def in_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ and "AWS_LAMBDA_RUNTIME_API" in os.environ


def cache_home() -> Path:
    explicit = os.environ.get("LAMBDALITE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if in_lambda():
        import tempfile

        return Path(tempfile.gettempdir()) / "lambdalite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "lambdalite"


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock for building or fetching `entry` (blocks until it is ours)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(entry), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_path(entry: Path) -> Path:
    return entry.with_name(f".{entry.name}.lock")


def cache_budget() -> int:
    """The cache's byte budget: `LAMBDALITE_CACHE_BYTES` (bytes, or with a K/M/G suffix)."""
    raw = os.environ.get("LAMBDALITE_CACHE_BYTES", "").strip().upper().removesuffix("B").removesuffix("I")
    if not raw:
        return DEFAULT_CACHE_BYTES
    unit = raw[-1] if raw[-1] in _UNITS else ""
    number = raw[: -1 or None] if unit else raw
    try:
        value = int(float(number) * _UNITS[unit])
    except ValueError:
        shown = os.environ["LAMBDALITE_CACHE_BYTES"]
        raise SourceError(f"LAMBDALITE_CACHE_BYTES must be a size such as 400M or 419430400, not {shown!r}") from None
    if value <= 0:
        raise SourceError("LAMBDALITE_CACHE_BYTES must be positive")
    return value


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed while we looked
                pass
    return total


def cache_usage() -> int:
    """Bytes held in the cache (file sizes, all entries and partial downloads)."""
    home = cache_home()
    return _tree_bytes(home) if home.is_dir() else 0


def cache_entries() -> list[Path]:
    """Evictable entries, least recently used first."""
    home = cache_home()
    found: list[tuple[float, Path]] = []
    for pattern in _EVICTABLE:
        for entry in home.glob(pattern):
            if entry.is_dir() and not entry.name.startswith("."):
                try:
                    found.append((entry.stat().st_mtime, entry))
                except OSError:
                    pass
    return [entry for _, entry in sorted(found)]


def touch(entry: Path) -> None:
    """Mark `entry` as just used, for least-recently-used eviction."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves; it just cannot record use
        pass


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"


def make_room(needed: int, *, keep: Collection[Path] = ()) -> None:
    """Evict least-recently-used entries until `needed` more bytes fit in the budget."""
    budget = cache_budget()
    if needed > budget:
        raise SourceError(
            f"the model needs about {_mb(needed)} but the cache budget is {_mb(budget)}; "
            f"raise LAMBDALITE_CACHE_BYTES (and the function's ephemeral storage)"
        )
    used = cache_usage()
    keep_resolved = {k.resolve() for k in keep}
    for entry in cache_entries():
        if used + needed <= budget:
            return
        if entry.resolve() in keep_resolved:
            continue
        freed = _evict(entry)
        used -= freed
    if used + needed > budget:
        raise SourceError(
            f"the cache at {cache_home()} holds {_mb(used)} that cannot be evicted (in use); "
            f"{_mb(needed)} more would pass the budget of {_mb(budget)} (LAMBDALITE_CACHE_BYTES)"
        )


def _evict(entry: Path) -> int:
    """Remove one entry unless another process holds its lock; the bytes freed."""
    lock_path = _lock_path(entry)
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # being built or fetched right now
        size = _tree_bytes(entry)
        trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
        try:
            os.rename(entry, trash)  # atomic: nobody sees half an entry
        except OSError:
            return 0
        import shutil

        shutil.rmtree(trash, ignore_errors=True)
        return size
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
