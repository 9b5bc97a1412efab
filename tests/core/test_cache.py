"""The cache's byte budget and least-recently-used eviction."""

from __future__ import annotations

import os
import time

import pytest

from lambdalite.core.cache import Cache, entry_lock, touch
from lambdalite.errors import ConfigError, SourceError
from lambdalite.settings import DEFAULT_CACHE_BYTES, Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", DEFAULT_CACHE_BYTES), ("1000", 1000), ("400M", 400 * 2**20), ("1.5G", int(1.5 * 2**30)), ("64KiB", 65536)],
)
def test_budget_from_the_environment(value, expected):
    assert Settings.from_env({"LAMBDALITE_CACHE_BYTES": value}).cache.budget == expected


@pytest.mark.parametrize("value", ["lots", "-5", "0"])
def test_bad_budget(value):
    with pytest.raises(ConfigError, match="LAMBDALITE_CACHE_BYTES"):
        Settings.from_env({"LAMBDALITE_CACHE_BYTES": value})


def fill(entry, size: int, mtime: float) -> None:
    entry.mkdir(parents=True)
    (entry / "data").write_bytes(b"x" * size)
    os.utime(entry, (mtime, mtime))


def test_eviction_is_least_recently_used_and_spares_busy_entries(lambdalite_home):
    cache = Cache(lambdalite_home, 3500)
    now = time.time()
    old, busy, recent = (lambdalite_home / "bundles" / n for n in ("old", "busy", "recent"))
    fill(old, 1000, now - 300)
    fill(busy, 1000, now - 200)
    fill(recent, 1000, now - 100)
    assert cache.entries() == [old, busy, recent]
    touch(old)  # used just now: no longer the oldest
    assert cache.entries()[-1] == old
    with entry_lock(busy):  # another process is building or fetching it
        cache.make_room(1500)
    assert not recent.exists()  # the least recently used that was free
    assert busy.exists() and old.exists()
    with entry_lock(busy), pytest.raises(SourceError, match="cannot be evicted"):
        cache.make_room(2600, keep=[old])
    cache.make_room(2500, keep=[old])  # the lock is released: busy can go now
    assert not busy.exists() and old.exists()


def test_the_test_run_caches_inside_the_checkout_and_its_processes_do_too(demo_bundle):
    import subprocess
    import sys

    from lambdalite.settings import Settings

    from helpers import REPO, TEST_HOME

    assert TEST_HOME == REPO / ".lambdalite" and Settings.from_env().cache_home == TEST_HOME
    assert demo_bundle.is_relative_to(TEST_HOME)  # the zoo fixtures build here, not in ~/.cache
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from lambdalite.settings import Settings; "
            "print(Settings.from_env().cache_home, os.environ['XDG_CACHE_HOME'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == [str(TEST_HOME), str(TEST_HOME / "xdg-cache")]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(TEST_HOME)], cwd=REPO)
    assert ignored.returncode == 0  # never committed
