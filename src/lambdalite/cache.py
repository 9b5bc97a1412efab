"""Where lambdalite keeps built and downloaded models, and how concurrent users share it.

`LAMBDALITE_HOME` wins. Inside a Lambda function (or a local instance) the only writable place
is the temporary directory, so the default there is `$TMPDIR/lambdalite` (`/tmp/lambdalite` on
Lambda). Elsewhere it is the user cache directory (`$XDG_CACHE_HOME/lambdalite`, normally
`~/.cache/lambdalite`).

Writers build into a temporary sibling and rename into place, under a per-entry lock, so two
processes starting cold at once do the work once and readers never see half an entry.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["cache_home", "entry_lock", "in_lambda"]


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
    lock_path = entry.with_name(f".{entry.name}.lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
