"""What a batch run tells: a progress line while it runs, and a summary with the cost at the end.

    progress = Progress(total=1000)            # on stderr: a bar in place on a terminal, lines in logs
    progress.update(done=10, failed=1, retries=3)
    summary.render()                           # done, failed by type, p50/p99, images/s, cost

The cost is Lambda's price list (us-east-1, before the free tier): $0.20 per million requests
that reached the function (a throttled one is free) plus the billed duration times the memory
size at the architecture's GB-second price. Billed
durations and the memory size come from each invoke's REPORT line (serve writes them as Lambda
does); without one, the client's latency and `--memory` stand in, and the summary says so.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from lambdalite.toolkit.local.protocol import PRICE_PER_GB_SECOND, PRICE_PER_MILLION_REQUESTS

__all__ = ["Progress", "Summary", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`done/total`, rate, ETA, errors and retries; redrawn at most 10 times a second on a terminal,
    a line every 10 s otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.perf_counter()

    def line(self, done: int, failed: int, retries: int) -> str:
        elapsed = time.perf_counter() - self.start
        finished = done + failed
        rate = finished / elapsed if elapsed > 0 else 0.0
        eta = _clock((self.total - finished) / rate) if rate > 0 else "-:--:--"
        frac = finished / self.total if self.total else 1.0
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        return (
            f"[{bar}] {finished}/{self.total} {frac:4.0%}  {rate:6.1f} images/s  ETA {eta}  "
            f"errors {failed}  retries {retries}"
        )

    def update(self, done: int, failed: int, retries: int, *, final: bool = False) -> None:
        if not self.total:
            return
        now = time.perf_counter()
        if not final and now - self.last < (0.1 if self.tty else 10.0):
            return
        self.last = now
        text = self.line(done, failed, retries)
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


@dataclass
class Summary:
    """Everything a run measured; `render` is what the command prints, `to_dict` its JSON."""

    total: int = 0  # images named by INPUT
    skipped: int = 0  # already in OUTPUT
    done: int = 0  # results written this run
    failed: Counter[str] = field(default_factory=Counter)  # permanent failures by error type
    unfinished: Counter[str] = field(default_factory=Counter)  # gave up for now (retries spent), by reason
    requests: int = 0  # invokes, retries included
    invocations: int = 0  # invokes that reached the function (billed; a throttled one is not)
    retries: Counter[str] = field(default_factory=Counter)  # by reason
    latencies_ms: list[float] = field(default_factory=list)  # per successful invoke, as the client saw it
    durations_ms: list[float] = field(default_factory=list)  # the function's own, per invoke (REPORT)
    billed_ms: list[int] = field(default_factory=list)
    images_per_request: list[int] = field(default_factory=list)
    memory_mb: int | None = None  # from REPORT lines
    assumed_memory_mb: int = 1024  # when no REPORT line says
    arch: str = "x86_64"
    elapsed_s: float = 0.0
    interrupted: bool = False
    model: dict[str, Any] | None = None
    output: str = ""

    @property
    def processed(self) -> int:
        return self.done + sum(self.failed.values())

    @property
    def images_per_second(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cost(self) -> dict[str, Any]:
        """This run's cost and what a million images would cost at the same billed durations."""
        measured = bool(self.billed_ms)
        memory = self.memory_mb or self.assumed_memory_mb
        billed = self.billed_ms if measured else [math.ceil(v) for v in self.latencies_ms]
        gb_seconds = sum(billed) / 1000 * memory / 1024
        compute = gb_seconds * PRICE_PER_GB_SECOND[self.arch]
        requests = self.invocations * PRICE_PER_MILLION_REQUESTS / 1e6
        per_image = (compute + requests) / self.processed if self.processed else 0.0
        return {
            "run_usd": compute + requests,
            "per_million_images_usd": per_image * 1e6,
            "billed_ms_per_image": sum(billed) / self.processed if self.processed else 0.0,
            "memory_mb": memory,
            "arch": self.arch,
            "measured": measured,  # False: the client's latency stood in for billed durations
        }

    def to_dict(self) -> dict[str, Any]:
        p50, p99 = percentile(self.latencies_ms, 50), percentile(self.latencies_ms, 99)
        return {
            "total": self.total,
            "skipped": self.skipped,
            "done": self.done,
            "failed": dict(self.failed),
            "unfinished": dict(self.unfinished),
            "requests": self.requests,
            "invocations": self.invocations,
            "retries": dict(self.retries),
            "latency_ms": {"p50": p50, "p99": p99},
            "function_ms": {"p50": percentile(self.durations_ms, 50), "p99": percentile(self.durations_ms, 99)},
            "images_per_request": sum(self.images_per_request) / len(self.images_per_request)
            if self.images_per_request
            else 0.0,
            "images_per_second": self.images_per_second,
            "elapsed_s": self.elapsed_s,
            "interrupted": self.interrupted,
            "model": self.model,
            "output": self.output,
            "cost": self.cost(),
        }

    def render(self) -> str:
        failed = sum(self.failed.values())
        lines = [
            f"done      {self.done} of {self.total} images"
            + (f" ({self.skipped} were already in {self.output})" if self.skipped else "")
            + f" in {self.elapsed_s:.1f} s: {self.images_per_second:.1f} images/s",
        ]
        if failed:
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.failed.most_common())
            lines.append(f"failed    {failed} ({kinds}); recorded in {self.output}, --retry-failed runs them again")
        if self.unfinished:
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.unfinished.most_common())
            lines.append(f"not done  {sum(self.unfinished.values())} ({kinds}): run the same command again to resume")
        if self.interrupted:
            lines.append("stopped   interrupted: run the same command again to resume")
        if self.requests:
            per = ""
            if self.images_per_request:
                per = f" ({sum(self.images_per_request) / len(self.images_per_request):.1f} images each on average)"
            retried = ", ".join(f"{kind} {n}" for kind, n in self.retries.most_common()) or "none"
            lines.append(f"requests  {self.requests}{per}; retried: {retried}")
        p50, p99 = percentile(self.latencies_ms, 50), percentile(self.latencies_ms, 99)
        if p50 is not None and p99 is not None:
            function = ""
            f50, f99 = percentile(self.durations_ms, 50), percentile(self.durations_ms, 99)
            if f50 is not None and f99 is not None:
                function = f"; in the function p50 {f50:.0f} ms, p99 {f99:.0f} ms"
            lines.append(f"latency   p50 {p50:.0f} ms, p99 {p99:.0f} ms per request{function}")
        if self.processed:
            cost = self.cost()
            basis = (
                f"{cost['billed_ms_per_image']:.1f} ms billed per image at {cost['memory_mb']} MB"
                if cost["measured"]
                else f"no REPORT lines: the client's latency at --memory {cost['memory_mb']} MB stands in"
            )
            lines.append(
                f"cost      ${cost['run_usd']:.6f} for this run, ${cost['per_million_images_usd']:.2f} per million "
                f"images ({basis}; {self.arch}, us-east-1, before the free tier)"
            )
        return "\n".join(lines)
