"""Progress display for long steps (export, quantize, download, build, deploy), on stderr.

    with progress.step("Exporting efficientnet-lite0 to ONNX"):
        ...
    with progress.bar("Downloading model.tar.gz", total=size) as advance:
        advance(len(chunk))

On a terminal a bar redraws in place; otherwise each step prints one line when it starts and
one when it ends, so logs stay readable. `Quiet` shows nothing (used inside functions).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TextIO

__all__ = ["Progress", "Quiet", "Stderr"]


class Progress(Protocol):
    def step(self, title: str) -> AbstractContextManager[None]: ...

    def bar(
        self, title: str, total: int | None, unit: str = "bytes"
    ) -> AbstractContextManager[Callable[[int], None]]: ...

    def note(self, message: str) -> None: ...


class Quiet:
    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        yield

    @contextmanager
    def bar(self, title: str, total: int | None, unit: str = "bytes") -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, message: str) -> None:
        pass


class Stderr:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def note(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        start = time.perf_counter()
        print(f"==> {title} ...", file=self.stream, flush=True)
        yield  # on failure the caller's error message says what went wrong
        print(f"    done in {time.perf_counter() - start:.1f} s", file=self.stream, flush=True)

    @contextmanager
    def bar(self, title: str, total: int | None, unit: str = "bytes") -> Iterator[Callable[[int], None]]:
        """`unit` is "bytes" (shown as KB/MB) or a noun for counted things ("images")."""
        start = time.perf_counter()
        done = 0
        last = 0.0

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.perf_counter()
            if self.tty and now - last > 0.1:
                last = now
                self.stream.write("\r" + _bar_line(title, done, total, unit))
                self.stream.flush()

        if not self.tty:
            print(f"==> {title} ...", file=self.stream, flush=True)
        yield advance
        elapsed = time.perf_counter() - start
        if self.tty:
            self.stream.write("\r" + _bar_line(title, done, total, unit) + f" {elapsed:.1f} s\n")
        else:
            print(f"    {_amount(done, unit)} in {elapsed:.1f} s", file=self.stream)
        self.stream.flush()


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def _amount(n: int, unit: str) -> str:
    return _size(n) if unit == "bytes" else f"{n} {unit}"


def _bar_line(title: str, done: int, total: int | None, unit: str = "bytes") -> str:
    if not total:
        return f"{title} {_amount(done, unit)}"
    frac = min(1.0, done / total)
    filled = int(frac * 30)
    return f"{title} [{'#' * filled}{'.' * (30 - filled)}] {frac:4.0%} {_amount(done, unit)}"
