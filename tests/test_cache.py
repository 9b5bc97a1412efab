"""The cache's byte budget and least-recently-used eviction."""

from __future__ import annotations

import os
import time

import pytest

from lambdalite.cache import DEFAULT_CACHE_BYTES, cache_budget, cache_entries, entry_lock, make_room, touch
from lambdalite.errors import SourceError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", DEFAULT_CACHE_BYTES), ("1000", 1000), ("400M", 400 * 2**20), ("1.5G", int(1.5 * 2**30)), ("64KiB", 65536)],
)
def test_budget_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("LAMBDALITE_CACHE_BYTES", value)
    assert cache_budget() == expected


@pytest.mark.parametrize("value", ["lots", "-5", "0"])
def test_bad_budget(monkeypatch, value):
    monkeypatch.setenv("LAMBDALITE_CACHE_BYTES", value)
    with pytest.raises(SourceError, match="LAMBDALITE_CACHE_BYTES"):
        cache_budget()


def fill(entry, size: int, mtime: float) -> None:
    entry.mkdir(parents=True)
    (entry / "data").write_bytes(b"x" * size)
    os.utime(entry, (mtime, mtime))


def test_eviction_is_least_recently_used_and_spares_busy_entries(lambdalite_home, monkeypatch):
    now = time.time()
    old, busy, recent = (lambdalite_home / "bundles" / n for n in ("old", "busy", "recent"))
    fill(old, 1000, now - 300)
    fill(busy, 1000, now - 200)
    fill(recent, 1000, now - 100)
    assert cache_entries() == [old, busy, recent]
    touch(old)  # used just now: no longer the oldest
    assert cache_entries()[-1] == old
    monkeypatch.setenv("LAMBDALITE_CACHE_BYTES", "3500")
    with entry_lock(busy):  # another process is building or fetching it
        make_room(1500)
    assert not recent.exists()  # the least recently used that was free
    assert busy.exists() and old.exists()
    with entry_lock(busy), pytest.raises(SourceError, match="cannot be evicted"):
        make_room(2600, keep=[old])
    make_room(2500, keep=[old])  # the lock is released: busy can go now
    assert not busy.exists() and old.exists()


def test_the_test_run_caches_inside_the_checkout_and_its_processes_do_too(demo_bundle):
    import subprocess
    import sys

    from lambdalite.cache import cache_home

    from conftest import REPO, TEST_HOME

    assert TEST_HOME == REPO / ".lambdalite" and cache_home() == TEST_HOME
    assert demo_bundle.is_relative_to(TEST_HOME)  # the zoo fixtures build here, not in ~/.cache
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from lambdalite.cache import cache_home; print(cache_home(), os.environ['XDG_CACHE_HOME'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == [str(TEST_HOME), str(TEST_HOME / "xdg-cache")]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(TEST_HOME)], cwd=REPO)
    assert ignored.returncode == 0  # never committed
