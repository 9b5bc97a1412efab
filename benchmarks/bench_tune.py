"""The tuning curve of the demo model, fp32 and int8, measured by `lambdalite tune`'s own code.

    .venv/bin/python benchmarks/bench_tune.py

The local Lambda (an in-process LambdaServer: real awslambdaric instances, Lambda's CPU share
for each memory size) serves efficientnet-lite0 with lambdalite's handler; the tuner talks
boto3 to it (UpdateFunctionConfiguration, Invoke with the log tail) and sweeps 512 to 3,008 MB
for two variants of the function's environment: the fp32 bundle and the int8 one. Each size:
2 cold invocations (a changed environment forces a new instance) and 10 warm ones, the cat
photo as the payload. Writes the table to BENCHMARKS.md and the chart to benchmarks/charts/.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lambdalite.toolkit.local.control import Control
from lambdalite.toolkit.local.server import probe_sandbox
from lambdalite.toolkit.tune.analysis import analyse
from lambdalite.toolkit.tune.chart import chart, markdown_table
from lambdalite.toolkit.tune.sweep import Variant, sweep
from lambdalite.toolkit.zoo import ensure_built

from helpers.lambda_servers import ServerThread, config, lambda_client
from report import ROOT, stamp, write_section

MEMORY = [512, 1024, 1769, 3008]
CHARTS = ROOT / "benchmarks" / "charts"
IMAGE = ROOT / "examples" / "chelsea.jpg"
COLD_SHARE = 0.01


def main() -> None:
    fp32, int8 = ensure_built("efficientnet-lite0"), ensure_built("efficientnet-lite0-int8")
    payload = json.dumps({"image": base64.b64encode(IMAGE.read_bytes()).decode()}).encode()
    cfg = config(
        "lambdalite.handler.handler",
        name="lite0",
        code_dir=str(fp32),
        model_dir=str(fp32),
        memory_mb=1024,
        timeout_s=60.0,
        cpu_share=True,
    )
    started = time.perf_counter()
    with ServerThread(cfg, probe_sandbox()) as server:
        Control.attach(server.server)
        samples = sweep(
            lambda_client(server.url, read_timeout=120),
            "lite0",
            memory=MEMORY,
            payloads=[payload],
            cold=2,
            warm=10,
            variants=[
                Variant("fp32", {"LAMBDALITE_MODEL": str(fp32)}),
                Variant("int8", {"LAMBDALITE_MODEL": str(int8)}),
            ],
            progress=lambda message: print(" ", message, flush=True),
        )
    elapsed = time.perf_counter() - started
    rows = analyse(samples, cold_share=COLD_SHARE)
    title = "efficientnet-lite0 on the local Lambda: fp32 and int8 against memory"
    paths = chart(rows, [CHARTS / "tune-lite0.png", CHARTS / "tune-lite0.svg"], title=title, cold_share=COLD_SHARE)
    (CHARTS / "tune-lite0.json").write_text(
        json.dumps({"rows": [r.to_dict() for r in rows], "samples": [s.to_dict() for s in samples]}, indent=1) + "\n"
    )
    load = os.getloadavg()
    cpus = len(os.sched_getaffinity(0))
    body = f"""{stamp()} Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.

`benchmarks/bench_tune.py`: `lambdalite tune`'s code (boto3 against serve's control plane) on
efficientnet-lite0, the cat photo as a base64 direct invoke, 2 cold and 10 warm invocations per
size and variant, serve giving each instance Lambda's CPU share for its memory size. Durations
from REPORT; cost per million requests with {COLD_SHARE:.0%} cold starts (x86_64, us-east-1, before
the free tier). {len(samples)} invocations in {elapsed:.0f} s.

![tuning curve](benchmarks/charts/tune-lite0.png)

{markdown_table(rows, COLD_SHARE)}
The chart is also in SVG (`benchmarks/charts/tune-lite0.svg`), the samples in `tune-lite0.json`.
Above 1,769 MB a function gets more than one vCPU; this machine has {cpus}, so sizes past
{1769 * cpus:,} MB cannot be faster here than there, and the two engine threads a function runs from
2,654 MB up compete with the other work on this shared machine: those sizes can come out slower
here than on Lambda. A warm request this short (tens of ms) starts
with up to one 20 ms period's worth of CPU banked while the instance was idle (CFS-bandwidth
semantics), so below 1,769 MB it slows less than in proportion; a long CPU-bound request slows
in proportion (see "CPU follows memory").
"""
    write_section("Tuning: efficientnet-lite0 fp32 and int8 against memory", body)
    print("wrote", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
