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

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lambdalite.engines import default_threads
from lambdalite.images import Preprocessor, decode
from lambdalite.model import load_model
from lambdalite.tasks.classification import softmax, top_k
from lambdalite.zoo import ensure_built

from report import ROOT, median_ms, per_call, precompile, stamp, timed_runs, write_section

IMAGE = ROOT / "examples" / "chelsea.jpg"


def bare_warm(bundle: Path, data: bytes, threads: int) -> dict[str, list[float]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    labels = (bundle / "labels.txt").read_text().splitlines()
    import io

    def dec() -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (256, 256))
        return img.convert("RGB")

    def pre(img: Image.Image) -> np.ndarray:
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        img = img.crop((left, top, left + 224, top + 224))
        return np.ascontiguousarray(((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None])

    def run(x: np.ndarray) -> list[dict[str, object]]:
        logits = session.run(None, {"input": x})[0][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return [{"className": labels[i], "probability": float(p[i])} for i in np.argsort(-p)[:5]]

    img = dec()
    x = pre(img)
    return {
        "decode": per_call(dec, 200),
        "preprocess": per_call(lambda: pre(img), 200),
        "run": per_call(lambda: run(x), 200),
        "total": per_call(lambda: run(pre(dec())), 200),
    }


def lambdalite_warm(data: bytes, threads: int) -> dict[str, list[float]]:
    model = load_model("efficientnet-lite0", threads=threads)
    task = model.task
    pre = Preprocessor.from_spec(model.bundle.manifest.input)
    img = decode(data, min_size=pre.decode_size)
    x = pre.to_array(pre.resize(img))[None]

    def run() -> object:
        probs = task.probabilities(x)  # type: ignore[attr-defined]
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
    bare = bare_warm(bundle, data, threads)
    ours = lambdalite_warm(data, threads)
    _ = softmax  # the run step above includes softmax and top-k, as the bare path does
    rows = []
    for phase in ("decode", "preprocess", "run", "total"):
        b, o = median_ms(bare[phase]), median_ms(ours[phase])
        rows.append(f"| {phase} | {b:.3f} | {o:.3f} | {o - b:+.3f} |")
    overhead = median_ms(ours["total"]) - median_ms(bare["total"])
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
