"""Foundation benchmarks: `lambdalite predict` against the bare onnxruntime script.

    .venv/bin/python benchmarks/bench_predict.py [--runs 21]

1. Cold start: the whole `lambdalite predict efficientnet-lite0 IMAGE --json` process against
   `benchmarks/bare_predict.py` (same import, load, decode and run), interleaved, medians.
   Goal: within 1.2x of the bare script.
2. Warm per-image latency, in process, split into decode, preprocess and run, for lambdalite's
   path and the bare path. Goal: lambdalite's overhead over the bare path under 0.5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bare_predict as bare
from lambdalite.core.images import Preprocessor, decode
from lambdalite.engines import default_threads
from lambdalite.model import load_model
from lambdalite.tasks.classification import softmax, top_k
from lambdalite.toolkit.zoo import ensure_built

from report import ROOT, median_ms, per_call, precompile, stamp, timed_runs, write_section

IMAGE = ROOT / "examples" / "chelsea.jpg"


def bare_warm(bundle: Path, data: bytes, threads: int) -> dict[str, list[float]]:
    session, labels = bare.load(str(bundle), threads)
    img = bare.decode(data)
    x = bare.preprocess(img)
    return {
        "decode": per_call(lambda: bare.decode(data), 200),
        "preprocess": per_call(lambda: bare.preprocess(img), 200),
        "run": per_call(lambda: bare.run(session, labels, x), 200),
        "total": per_call(lambda: bare.run(session, labels, bare.preprocess(bare.decode(data))), 200),
    }


def lambdalite_warm(data: bytes, threads: int) -> dict[str, list[float]]:
    model = load_model("efficientnet-lite0", threads=threads)
    task = model.task
    pre = Preprocessor.from_spec(model.bundle.manifest.input)
    img = decode(data, min_size=pre.decode_size)
    x = pre.to_array(pre.resize(img))[None]

    def run() -> object:
        probs = task.class_probabilities(x)  # type: ignore[attr-defined]
        return top_k(probs[0], task.labels, 5)  # type: ignore[attr-defined]

    return {
        "decode": per_call(lambda: decode(data, min_size=pre.decode_size), 200),
        "preprocess": per_call(lambda: pre.to_array(pre.resize(img)), 200),
        "run": per_call(run, 200),
        "total": per_call(lambda: model.predict([data], top_k=5), 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    precompile()
    bundle = ensure_built("efficientnet-lite0")
    python = sys.executable
    cli = str(Path(python).parent / "lambdalite")
    cold = timed_runs(
        {
            "bare script": [python, str(ROOT / "benchmarks" / "bare_predict.py"), str(bundle), str(IMAGE)],
            "lambdalite predict": [cli, "predict", "efficientnet-lite0", str(IMAGE), "--json"],
        },
        args.runs,
    )
    bare_cold, ll_cold = (statistics.median(cold[k]) * 1e3 for k in ("bare script", "lambdalite predict"))
    ratio = ll_cold / bare_cold

    data = IMAGE.read_bytes()
    threads = default_threads()
    bare_t = bare_warm(bundle, data, threads)
    ours = lambdalite_warm(data, threads)
    _ = softmax  # the run step above includes softmax and top-k, as the bare path does
    rows = []
    for phase in ("decode", "preprocess", "run", "total"):
        b, o = median_ms(bare_t[phase]), median_ms(ours[phase])
        rows.append(f"| {phase} | {b:.3f} | {o:.3f} | {o - b:+.3f} |")
    overhead = median_ms(ours["total"]) - median_ms(bare_t["total"])
    body = f"""{stamp()}

Model: efficientnet-lite0 (fp32 ONNX, 224x224), image: `examples/chelsea.jpg` (451x300 JPEG).
Threads: {threads}. Commands run interleaved, {args.runs} times each.

**Cold start, whole process** (`lambdalite predict efficientnet-lite0 chelsea.jpg --json` against
`benchmarks/bare_predict.py`, which does the same import, load, decode and run by hand):

| | median (ms) |
| --- | --- |
| bare script | {bare_cold:.1f} |
| lambdalite predict | {ll_cold:.1f} |
| ratio | **{ratio:.2f}x** (goal: within 1.2x) {"- met" if ratio <= 1.2 else "- NOT met"} |

**Warm, per image, in process** (median of 200 calls each; lambdalite's decode lets the JPEG decoder
downscale (`draft`), resizes and crops in one resampling pass, and checks for bombs):

| phase | bare (ms) | lambdalite (ms) | difference (ms) |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Overhead of lambdalite's whole `predict` over the bare path: **{overhead:+.3f} ms** per image
(goal: under 0.5 ms) {"- met" if overhead < 0.5 else "- NOT met"}.
"""
    write_section("Foundation: lambdalite predict vs the bare script", body)
    print(body)


if __name__ == "__main__":
    time.sleep(0)
    main()
