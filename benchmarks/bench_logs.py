"""What Powertools would cost the function's cold start, against writing its format ourselves.

    .venv/bin/python benchmarks/bench_logs.py

Fresh interpreters, as a cold start is, each first importing what the function imports anyway
(json, numpy, Pillow, lambdalite's settings and errors), then timing:
  (a) lambdalite's logs: `import lambdalite.function.logs`, configure for JSON and EMF, write one
      cold-start record and one request record;
  (b) Powertools: `from aws_lambda_powertools import Logger, Metrics`, make a Logger (RFC 3339,
      UTC) and Metrics, write the same two records and flush one metric set.
Interleaved runs, medians. Then the per-record cost of each, warm, in this process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import per_call, precompile, stamp, write_section

RUNS = 21
PRELUDE = "import json, numpy, PIL.Image, lambdalite.settings, lambdalite.errors, time\nt0 = time.perf_counter()\n"
OURS = (
    PRELUDE
    + """
from lambdalite.function import logs
from lambdalite.settings import Settings
logs.configure(Settings(log_format="json", metrics_namespace="lambdalite"), model="m", version="1")
logs.log_json("cold_start", metrics=logs.COLD_START_METRICS, initMs=1.0, coldStart=1)
logs.log_request(request_id="r", source="http", status=200, duration_ms=3.0, images=1, imageBytes=10)
print("ELAPSED", (time.perf_counter() - t0) * 1e3)
"""
)
POWERTOOLS = (
    PRELUDE
    + """
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
logger = Logger(service="lambdalite", use_rfc3339=True, utc=True)
metrics = Metrics(namespace="lambdalite")
logger.info("cold_start", extra={"initMs": 1.0})
metrics.add_dimension("Model", "m")
metrics.add_metric(name="durationMs", unit=MetricUnit.Milliseconds, value=3.0)
logger.info("request", extra={"source": "http", "status": 200})
metrics.flush_metrics()
print("ELAPSED", (time.perf_counter() - t0) * 1e3)
"""
)


def cold(script: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMBDALITE_", "AWS_", "POWERTOOLS_"))}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    return float(next(line for line in proc.stdout.splitlines() if line.startswith("ELAPSED")).split()[1])


def main() -> None:
    precompile()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(logging.__file__).parent)], check=False)
    times: dict[str, list[float]] = {"ours": [], "powertools": []}
    for _ in range(RUNS):
        times["ours"].append(cold(OURS))
        times["powertools"].append(cold(POWERTOOLS))
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["powertools"])

    # Warm: one request record each (JSON format), written to a buffer.
    from aws_lambda_powertools import Logger

    from lambdalite.function import logs
    from lambdalite.settings import Settings

    logs.configure(Settings(log_format="json"), model="m", version="1")
    sink = io.StringIO()
    logger = Logger(service="bench", use_rfc3339=True, utc=True, logger_handler=logging.StreamHandler(sink))

    def ours_record() -> None:
        with redirect_stdout(sink):
            logs.log_request(request_id="r", source="http", status=200, duration_ms=3.0, images=1, imageBytes=10)

    def powertools_record() -> None:
        logger.info("request", extra={"requestId": "r", "source": "http", "status": 200, "durationMs": 3.0})

    warm_ours = statistics.median(per_call(ours_record, 2000)) * 1e6
    warm_theirs = statistics.median(per_call(powertools_record, 2000)) * 1e6
    load = os.getloadavg()
    body = f"""{stamp()} Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.

Fresh interpreters ({RUNS} interleaved runs, medians), after importing what the function imports
anyway (numpy, Pillow, lambdalite's settings): from the first log import to two records written.

| | cold start added | one request record, warm |
|---|---:|---:|
| lambdalite's `function/logs.py` (Powertools' keys, EMF written by hand) | {ours:.1f} ms | {warm_ours:.1f} µs |
| Powertools for AWS Lambda (Python) {_version()} (Logger + Metrics) | {theirs:.1f} ms | {warm_theirs:.1f} µs |

Decision: the function writes Powertools' format itself. Importing Powertools would add
{theirs - ours:.0f} ms ({theirs / ours:.0f}x) to every cold start for the same records; the records
are checked against the real Powertools package in `tests/function/test_logs.py` instead
(same keys in the same order, same types, same timestamp shape, same EMF directives).
"""
    write_section("Logs: Powertools' format written by hand vs importing Powertools", body)
    print(json.dumps({"ours_ms": ours, "powertools_ms": theirs, "warm_us": [warm_ours, warm_theirs]}))


def _version() -> str:
    from importlib.metadata import version

    return version("aws-lambda-powertools")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t:.0f} s")
