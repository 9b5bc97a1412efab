"""Where lambdalite keeps built and downloaded models, and how concurrent users share it.

    cache = Cache(settings.cache_home, settings.cache_bytes)   # or settings_cache(settings)

Where it is comes from the settings (`LAMBDALITE_HOME` wins; inside a Lambda function the
temporary directory, the only writable place; else `$XDG_CACHE_HOME/lambdalite`, normally
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

from lambdalite.errors import SourceError

__all__ = ["Cache", "entry_lock", "held_locks", "touch"]

_HELD: set[str] = set()  # entries whose lock this process holds

_EVICTABLE = ("bundles/*", "remote/*", "zoo/*/*")


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock for building or fetching `entry` (blocks until it is ours)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(entry), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.add(str(entry))
        yield
    finally:
        _HELD.discard(str(entry))
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def held_locks() -> list[str]:
    """The entries this process holds a lock on now (a SnapStart snapshot must hold none: a lock
    copied into every restored environment would be held by all of them at once)."""
    return sorted(_HELD)


def _lock_path(entry: Path) -> Path:
    return entry.with_name(f".{entry.name}.lock")


def touch(entry: Path) -> None:
    """Mark `entry` as just used, for least-recently-used eviction."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves; it just cannot record use
        pass


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed while we looked
                pass
    return total


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"


class Cache:
    """The model cache at `home`, holding at most `budget` bytes of evictable entries."""

    __slots__ = ("budget", "home")

    def __init__(self, home: Path, budget: int) -> None:
        self.home = home
        self.budget = budget

    def __repr__(self) -> str:
        return f"Cache({str(self.home)!r}, budget={self.budget})"

    def usage(self) -> int:
        """Bytes held in the cache (file sizes, all entries and partial downloads)."""
        return _tree_bytes(self.home) if self.home.is_dir() else 0

    def entries(self) -> list[Path]:
        """Evictable entries, least recently used first."""
        found: list[tuple[float, Path]] = []
        for pattern in _EVICTABLE:
            for entry in self.home.glob(pattern):
                if entry.is_dir() and not entry.name.startswith("."):
                    try:
                        found.append((entry.stat().st_mtime, entry))
                    except OSError:
                        pass
        return [entry for _, entry in sorted(found)]

    def make_room(self, needed: int, *, keep: Collection[Path] = ()) -> None:
        """Evict least-recently-used entries until `needed` more bytes fit in the budget."""
        budget = self.budget
        if needed > budget:
            raise SourceError(
                f"the model needs about {_mb(needed)} but the cache budget is {_mb(budget)}; "
                f"raise LAMBDALITE_CACHE_BYTES (and the function's ephemeral storage)"
            )
        used = self.usage()
        keep_resolved = {k.resolve() for k in keep}
        for entry in self.entries():
            if used + needed <= budget:
                return
            if entry.resolve() in keep_resolved:
                continue
            freed = _evict(entry)
            used -= freed
        if used + needed > budget:
            raise SourceError(
                f"the cache at {self.home} holds {_mb(used)} that cannot be evicted (in use); "
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
