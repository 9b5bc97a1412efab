"""The tuning result for people: a Markdown table, and a chart of duration and cost against memory.

    write_outputs(rows, samples, out_dir, title="...", cold_share=0.01)
    # -> tune.json (every sample and row), tune.md (the table), tune.png and tune.svg (the chart)

The chart needs matplotlib (`pip install 'lambdalite[tune]'`); the table and JSON do not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdalite.errors import UsageError
from lambdalite.toolkit.tune.analysis import Row
from lambdalite.toolkit.tune.sweep import Sample

__all__ = ["chart", "markdown_table", "write_outputs"]

_SYMBOLS = {"cheapest": "$", "fastest": "»", "best trade-off": "★"}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def markdown_table(rows: Sequence[Row], cold_share: float) -> str:
    """The table: one line per configuration, the marks in the last column."""
    head = (
        "| configuration | arch | memory (MB) | warm p50 (ms) | cold p50 (ms) | init p50 (ms) | billed warm / cold "
        f"(ms) | max memory (MB) | mean latency (ms) | $ per 1M requests ({cold_share:.0%} cold) | n warm / cold | |"
    )
    lines = [head, "|" + " --- |" * 12]
    for r in rows:
        billed = f"{_ms(r.warm_billed_ms)} / {_ms(r.cold_billed_ms)}"
        marks = ", ".join(f"{_SYMBOLS[m]} {m}" for m in r.marks)
        if r.errors:
            marks = (marks + "; " if marks else "") + f"{r.errors} failed"
        lines.append(
            f"| {r.label} | {r.architecture} | {r.memory_mb} | {_ms(r.warm_ms)} | {_ms(r.cold_ms)} | {_ms(r.init_ms)} "
            f"| {billed} | {r.max_memory_mb} | {_ms(r.latency_ms)} | {r.cost_per_million:.4f} | {r.warm} / {r.cold} "
            f"| {marks} |"
        )
    return "\n".join(lines) + "\n"


def chart(rows: Sequence[Row], paths: Sequence[Path], *, title: str, cold_share: float) -> list[Path]:
    """Duration (warm, and cold with init) and cost per million against memory, one line per series."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as exc:
        raise UsageError("the chart needs matplotlib: pip install 'lambdalite[tune]' (or pass --no-chart)") from exc

    series: dict[str, list[Row]] = {}
    for row in rows:
        series.setdefault(f"{row.label} ({row.architecture})", []).append(row)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, members) in enumerate(series.items()):
        color = colors[i % len(colors)]
        members = sorted(members, key=lambda r: r.memory_mb)
        xs = [r.memory_mb for r in members]
        warm = [(r.memory_mb, r.warm_ms) for r in members if r.warm_ms is not None]
        cold = [(r.memory_mb, (r.cold_ms or 0) + (r.init_ms or 0)) for r in members if r.cold_ms is not None]
        if warm:
            left.plot(*zip(*warm, strict=True), "o-", color=color, label=f"{name} warm")
        if cold:
            left.plot(*zip(*cold, strict=True), "s--", color=color, alpha=0.6, label=f"{name} cold (+init)")
        right.plot(xs, [r.cost_per_million for r in members], "o-", color=color, label=name)
        for r in members:
            for mark in r.marks:
                target = right if mark == "cheapest" else left
                y = r.cost_per_million if mark == "cheapest" else (r.warm_ms if r.warm_ms is not None else r.latency_ms)
                if mark == "best trade-off":
                    target, y = right, r.cost_per_million
                target.annotate(
                    f"{_SYMBOLS[mark]} {mark}",
                    (r.memory_mb, y),
                    textcoords="offset points",
                    xytext=(6, 8 if mark != "best trade-off" else -14),
                    fontsize=8,
                    color=color,
                )
    left.set_xlabel("memory (MB)")
    left.set_ylabel("duration (ms)")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    # Minor ticks: label 2x and 5x only, so the log axis stays readable.
    left.yaxis.set_minor_formatter(
        matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else "")
    )
    left.set_title("duration against memory")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("memory (MB)")
    right.set_ylabel("USD per million requests")
    right.set_title(f"cost against memory ({cold_share:.0%} cold starts)")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    written = []
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata: dict[str, Any] = {"Date": None} if path.suffix == ".svg" else {"Software": None}
        fig.savefig(path, dpi=110, metadata=metadata)
        written.append(path)
    plt.close(fig)
    return written


def write_outputs(
    rows: Sequence[Row],
    samples: Sequence[Sample],
    out_dir: Path,
    *,
    title: str,
    cold_share: float,
    with_chart: bool = True,
    stem: str = "tune",
) -> list[Path]:
    """tune.json, tune.md and (with matplotlib) tune.png and tune.svg in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "title": title,
        "coldShare": cold_share,
        "rows": [r.to_dict() for r in rows],
        "samples": [s.to_dict() for s in samples],
    }
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    paths[0].write_text(json.dumps(data, indent=2) + "\n")
    paths[1].write_text(f"# {title}\n\n" + markdown_table(rows, cold_share))
    if with_chart:
        paths += chart(rows, [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"], title=title, cold_share=cold_share)
    return paths
