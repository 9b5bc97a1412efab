"""From samples to a decision: per configuration, speed and cost at a cold-start share, and the marks.

Cost follows Lambda's bill (us-east-1, before the free tier): $0.20 per million requests plus
the GB-seconds of Billed Duration at the architecture's price; a cold invocation's Billed
Duration includes its init (billed since 1 August 2025). At a cold-start share `c`:

    cost per request  = request price + GB-s price x memory (GB) x ((1 - c) x warm billed + c x cold billed) / 1000
    mean latency (ms) = (1 - c) x warm duration + c x (cold duration + init duration)

The marks: `cheapest` (lowest cost), `fastest` (lowest mean latency), `best trade-off` (the lowest
`weight x cost + (1 - weight) x latency`, each scaled to 0..1 across the configurations, as AWS
Lambda Power Tuning's "balanced" strategy). Configurations whose invocations failed get no mark.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdalite.toolkit.local.protocol import PRICE_PER_GB_SECOND, PRICE_PER_MILLION_REQUESTS
from lambdalite.toolkit.tune.sweep import Sample

__all__ = ["MARKS", "Row", "analyse", "cost_per_request"]

MARKS = ("cheapest", "fastest", "best trade-off")


@dataclass(slots=True)
class Row:
    """One configuration (function, variant, memory size), summarised."""

    function: str
    architecture: str
    variant: str
    memory_mb: int
    warm: int  # invocations measured warm
    cold: int  # and cold
    errors: int
    warm_ms: float | None  # median Duration of the warm ones
    warm_billed_ms: float | None  # mean Billed Duration of the warm ones
    cold_ms: float | None  # median Duration of the cold ones (without init)
    init_ms: float | None  # median Init Duration
    cold_billed_ms: float | None  # mean Billed Duration of the cold ones (init included)
    max_memory_mb: int
    cost_per_million: float = 0.0  # USD, at the cold-start share
    latency_ms: float = 0.0  # mean, at the cold-start share
    marks: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.variant if self.variant != "default" else self.function

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_per_request(memory_mb: int, billed_ms: float, architecture: str = "x86_64") -> float:
    """USD for one request billed `billed_ms` at `memory_mb`."""
    price = PRICE_PER_GB_SECOND.get(architecture, PRICE_PER_GB_SECOND["x86_64"])
    return PRICE_PER_MILLION_REQUESTS / 1e6 + memory_mb / 1024 * billed_ms / 1000 * price


def analyse(samples: Sequence[Sample], *, cold_share: float = 0.01, weight: float = 0.5) -> list[Row]:
    """One row per configuration, in sweep order, with costs, latencies and marks."""
    groups: dict[tuple[str, str, int], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.function, sample.variant, sample.memory_mb), []).append(sample)
    rows = [_row(group, cold_share) for group in groups.values()]
    _mark(rows, weight)
    return rows


def _row(group: list[Sample], share: float) -> Row:
    first = group[0]
    good = [s for s in group if s.error is None]
    warm = [s for s in good if not s.cold]
    cold = [s for s in good if s.cold]
    row = Row(
        first.function,
        first.architecture,
        first.variant,
        first.memory_mb,
        len(warm),
        len(cold),
        len(group) - len(good),
        statistics.median(s.duration_ms for s in warm) if warm else None,
        statistics.fmean(s.billed_ms for s in warm) if warm else None,
        statistics.median(s.duration_ms for s in cold) if cold else None,
        statistics.median(s.init_ms or 0.0 for s in cold) if cold else None,
        statistics.fmean(s.billed_ms for s in cold) if cold else None,
        max((s.max_memory_mb for s in group), default=0),
    )
    if row.warm_billed_ms is None and row.cold_billed_ms is None:
        return row
    # Without warm samples every request is cold; without cold ones, none is.
    c = (
        share
        if row.warm_billed_ms is not None and row.cold_billed_ms is not None
        else (1.0 if row.warm_billed_ms is None else 0.0)
    )
    warm_cost = cost_per_request(row.memory_mb, row.warm_billed_ms or 0.0, row.architecture)
    cold_cost = cost_per_request(row.memory_mb, row.cold_billed_ms or 0.0, row.architecture)
    row.cost_per_million = ((1 - c) * warm_cost + c * cold_cost) * 1e6
    cold_total = (row.cold_ms or 0.0) + (row.init_ms or 0.0)
    row.latency_ms = (1 - c) * (row.warm_ms or 0.0) + c * cold_total
    return row


def _mark(rows: list[Row], weight: float) -> None:
    valid = [r for r in rows if r.errors == 0 and (r.warm or r.cold)]
    if not valid:
        return
    cheapest = min(valid, key=lambda r: (r.cost_per_million, r.memory_mb))
    fastest = min(valid, key=lambda r: (r.latency_ms, r.memory_mb))
    cheapest.marks.append("cheapest")
    fastest.marks.append("fastest")

    def scaled(value: float, values: list[float]) -> float:
        low, high = min(values), max(values)
        return 0.0 if high == low else (value - low) / (high - low)

    costs = [r.cost_per_million for r in valid]
    latencies = [r.latency_ms for r in valid]
    best = min(
        valid,
        key=lambda r: (
            weight * scaled(r.cost_per_million, costs) + (1 - weight) * scaled(r.latency_ms, latencies),
            r.memory_mb,
        ),
    )
    best.marks.append("best trade-off")
