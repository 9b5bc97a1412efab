"""Shared by the benchmarks: the machine's description and BENCHMARKS.md sections.

Each benchmark owns one section (`## <title>`), replaced in place when it runs again, so the
file keeps every benchmark's latest result side by side.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by the scripts in `benchmarks/` (each owns one section; re-run a script to refresh it).\n"
    "Numbers are medians of interleaved runs on the machine named in each section. They are\n"
    "measurements, not claims: where a goal is missed, the section says so.\n"
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} CPUs{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def stamp() -> str:
    return f"Machine: {machine()}. Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}."


def write_section(title: str, body: str) -> None:
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    BENCHMARKS_MD.write_text(text.rstrip() + "\n")
    print(f"wrote section {title!r} of {BENCHMARKS_MD}")


def timed_runs(
    commands: dict[str, Sequence[str]], runs: int, env: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Wall time (s) of each command, run `runs` times, interleaved so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, env=env)
            times[name].append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit(f"{name} failed: {proc.stderr.decode()[-2000:]}")
    return times


def per_call(fn: Callable[[], object], repeat: int, warmup: int = 5) -> list[float]:
    """Seconds per call of fn, `repeat` samples after `warmup` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e3


def precompile() -> None:
    """Cold starts must not pay for compiling: PYTHONDONTWRITEBYTECODE may be set here."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src"), str(ROOT / "benchmarks")], check=True)
