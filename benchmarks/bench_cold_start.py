"""The function's cold start, this tree against an earlier commit, side by side in one run.

    .venv/bin/python benchmarks/bench_cold_start.py [--base dc396e8] [--runs 21]

Each run is what Lambda's init does: a fresh interpreter imports `lambdalite.handler` (which
reads the settings, resolves, loads, verifies and warms the demo model) and answers one direct
invoke. The two trees are the working tree's `src` and the base commit's, checked out into a
temporary worktree; both serve the same bundle directory, runs are interleaved, and the table
gives medians and their ratio. The import of the handler (init) and the whole process (start,
init, one request, exit) are both timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lambdalite.toolkit.zoo import ensure_built

from report import ROOT, stamp, write_section

IMAGE = ROOT / "examples" / "chelsea.jpg"

INIT = """
import base64, json, sys, time
t0 = time.perf_counter()
import lambdalite.handler
t1 = time.perf_counter()
lambdalite.handler.handler({"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}, None)
t2 = time.perf_counter()
print("TIMES " + json.dumps([t1 - t0, t2 - t1]))
"""


def run_once(src: Path, bundle: Path) -> tuple[float, float, float]:
    """(init s, first request s, whole process s) of one cold start with `src` first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "MODEL_"))}
    env.update(PYTHONPATH=str(src), LAMBDALITE_MODEL=str(bundle), PYTHONDONTWRITEBYTECODE="")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", INIT, str(IMAGE)], capture_output=True, text=True, env=env)
    whole = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{src}: {proc.stderr[-2000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("TIMES "))
    init, first = json.loads(line[6:])
    return init, first, whole


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="dc396e8", help="the commit to compare with (default: before issue 13)")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    bundle = ensure_built("efficientnet-lite0")
    with tempfile.TemporaryDirectory(prefix="lambdalite-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=ROOT, check=True)
        try:
            trees = {f"base ({args.base})": base / "src", "this tree": ROOT / "src"}
            for src in trees.values():  # compile once, as `scripts/setup` does, so no run pays for it
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
            times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, src in trees.items():
                    times[name].append(run_once(src, bundle))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    rows = []
    medians = {}
    for name, samples in times.items():
        init, first, whole = (statistics.median(s[i] for s in samples) * 1e3 for i in range(3))
        medians[name] = (init, first, whole)
        rows.append(f"| {name} | {init:.1f} | {first:.1f} | {whole:.1f} |")
    (b_init, _, b_whole), (t_init, _, t_whole) = medians.values()
    body = (
        f"{stamp()}\n\nModel: efficientnet-lite0 (the same bundle directory for both), a direct invoke of "
        f"`examples/chelsea.jpg`; a fresh interpreter per run, {args.runs} runs each, interleaved, medians.\n\n"
        "| tree | init: import lambdalite.handler (ms) | first request (ms) | whole process (ms) |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        f"Init, this tree over the base: **{t_init / b_init:.2f}x**; whole process: **{t_whole / b_whole:.2f}x**.\n"
    )
    write_section("Cold start of the function: this tree against the layout before issue 13", body)
    print(body)


if __name__ == "__main__":
    main()
