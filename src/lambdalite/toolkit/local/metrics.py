"""What the local Lambda has been doing, counted: Prometheus text on `/metrics`, JSON for the dashboard.

    telemetry = Telemetry.attach(server)      # before server.start(): sees every line and invocation
    GET /metrics                              # Prometheus text format 0.0.4 (also /_lambdalite/metrics)
    GET /_lambdalite/api/state                # the dashboard's JSON: the same numbers, and recent history

It watches three things and keeps no more than a bounded window of each:

* every answered invocation (`LambdaServer.observers`): status, duration, billed time, init
  duration, memory, the function error's type;
* every log line (it wraps the server's log sink): REPORT lines (the dashboard shows the latest),
  the function's own `cold_start` records (their init phases) and `request` records (the error
  types of requests the function answered with a 4xx/5xx, which are not function errors);
* the instances, sampled once a second: starting (cold), idle (warm) or busy, and their memory.

Only `GET` on those paths is taken from the port; any other method or path reaches the function.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections import Counter, deque
from typing import Any

from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.messages import InvokeResult, Reply, Request
from lambdalite.toolkit.local.server import LambdaServer

__all__ = ["DURATION_BUCKETS_MS", "PREFIX", "Telemetry"]

PREFIX = "/_lambdalite"
METRICS_PATHS = ("/metrics", PREFIX + "/metrics")
STATE_PATH = PREFIX + "/api/state"
# Histogram buckets (upper bounds, ms) for invocation and init durations.
DURATION_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 900000)
_WINDOW = 10_000  # durations kept for percentiles and the dashboard's histogram
_HISTORY_S = 600  # seconds of instance samples
_RECENT = 20  # REPORT lines and cold starts kept
_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, scale: float) -> list[str]:
        out, total = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            out.append(f'{name}_bucket{{le="{_number(bound * scale)}"}} {total}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {_number(self.sum * scale)}")
        out.append(f"{name}_count {self.count}")
        return out


class Telemetry:
    def __init__(self, server: LambdaServer) -> None:
        self.server = server
        self.started = time.time()
        self.invocations: Counter[str] = Counter()  # by status: success, error, timeout
        self.errors: Counter[str] = Counter()  # by type, function errors and the function's own error answers
        self.cold_starts = 0
        self.throttles = 0
        self.billed_ms = 0
        self.duration = _Histogram(DURATION_BUCKETS_MS)
        self.init = _Histogram(DURATION_BUCKETS_MS)
        self.max_memory = 0
        self.recent_ms: deque[float] = deque(maxlen=_WINDOW)
        self.reports: deque[str] = deque(maxlen=_RECENT)
        self.colds: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.history: deque[dict[str, Any]] = deque(maxlen=_HISTORY_S)
        self._phases: deque[dict[str, float]] = deque(maxlen=64)  # cold_start records awaiting their invocation
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def attach(cls, server: LambdaServer) -> Telemetry:
        """Watch `server` (call before it starts instances) and answer its metrics paths."""
        telemetry = cls(server)
        sink = server.log

        def log(line: str) -> None:
            sink(line)
            telemetry.line(line)

        server.log = log
        server.observers.append(telemetry)
        server.routes.append(telemetry.route)
        return telemetry

    # -- what it is told -------------------------------------------------------------------------------

    def invoked(self, result: InvokeResult) -> None:
        self._ensure_sampling()
        status = "success"
        if result.error_type == "Sandbox.Timedout":
            status = "timeout"
        elif result.function_error:
            status = "error"
        self.invocations[status] += 1
        if result.function_error:
            self.errors[result.error_type or "Unhandled"] += 1
        self.duration.observe(result.duration_ms)
        self.recent_ms.append(result.duration_ms)
        self.billed_ms += result.billed_ms
        self.max_memory = max(self.max_memory, result.max_memory_mb)
        if result.init_ms is not None:
            self.cold_starts += 1
            self.init.observe(result.init_ms)
            cold: dict[str, Any] = {"time": time.time(), "initMs": round(result.init_ms, 2)}
            if self._phases:
                cold["phases"] = self._phases.popleft()
            self.colds.append(cold)

    def throttled(self) -> None:
        self.throttles += 1

    def line(self, line: str) -> None:
        if line.startswith("REPORT "):
            self.reports.append(line.rstrip("\t"))
        elif line.startswith("{"):
            self._record(line)

    def _record(self, line: str) -> None:
        if '"platform.report"' in line:
            self.reports.append(line)
            return
        if '"cold_start"' not in line and '"error"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if record.get("event") == "cold_start":
            phases = ("modelFetchMs", "importsMs", "sessionMs", "firstRunMs")
            self._phases.append({k: float(record[k]) for k in phases if isinstance(record.get(k), int | float)})
        elif record.get("event") == "request" and isinstance(record.get("error"), str):
            self.errors[record["error"]] += 1

    # -- sampling ----------------------------------------------------------------------------------------

    def _ensure_sampling(self) -> None:
        if self._timer is None and not self.server.closing:
            self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.server.closing:
            return
        self.sample()
        self._ensure_sampling()

    def instances(self) -> dict[str, int]:
        """How many instances are starting (a cold start in progress), idle and busy."""
        starting = idle = busy = 0
        for instance in self.server.instances:
            if instance.dead:
                continue
            if not instance.initialized:
                starting += 1
            elif instance.busy:
                busy += 1
            else:
                idle += 1
        return {"starting": starting, "idle": idle, "busy": busy}

    def sample(self) -> dict[str, Any]:
        now = time.time()
        point = {
            "time": round(now, 3),
            **self.instances(),
            "invocations": sum(self.invocations.values()),
            "errors": sum(self.errors.values()),
            "coldStarts": self.cold_starts,
            "throttles": self.throttles,
        }
        if self.history and now - self.history[-1]["time"] < 0.5:
            self.history[-1] = point  # sampled on demand between ticks: replace, don't crowd
        else:
            self.history.append(point)
        return point

    def memory(self) -> dict[int, int]:
        """Resident memory (bytes) of each live instance: its runtime's whole process tree."""
        out = {}
        for instance in self.server.instances:
            if instance.proc is not None and instance.proc.alive:
                rss_kb, _, _ = instance.proc.memory_kb()  # the whole process tree, as Lambda counts it
                out[instance.number] = rss_kb * 1024
        return out

    # -- what it answers ----------------------------------------------------------------------------------

    async def route(self, request: Request) -> Reply | None:
        if request.method != "GET":
            return None
        if request.path in METRICS_PATHS:
            self._ensure_sampling()
            return Reply(200, [("Content-Type", _TEXT)], self.prometheus().encode())
        if request.path == STATE_PATH:
            self._ensure_sampling()
            body = json.dumps(self.state(), separators=(",", ":")).encode()
            return Reply(200, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)
        return None

    def cost(self) -> dict[str, float]:
        """What the invocations so far cost, and a million like them would (us-east-1, before the free tier)."""
        config = self.server.config
        arch = "arm64" if config.architecture == "arm64" else "x86_64"
        requests = sum(self.invocations.values())
        gb_s = config.memory_mb / 1024 * self.billed_ms / 1000
        usd = requests * protocol.PRICE_PER_MILLION_REQUESTS / 1e6 + gb_s * protocol.PRICE_PER_GB_SECOND[arch]
        return {
            "usd": usd,
            "gbSeconds": gb_s,
            "perMillionUsd": usd / requests * 1e6 if requests else 0.0,
            "meanBilledMs": self.billed_ms / requests if requests else 0.0,
        }

    def state(self) -> dict[str, Any]:
        point = self.sample()
        ordered = sorted(self.recent_ms)

        def pct(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None

        config = self.server.config
        return {
            "function": config.name,
            "memoryMb": config.memory_mb,
            "timeoutS": config.timeout_s,
            "maxConcurrency": config.max_concurrency,
            "architecture": config.architecture,
            "cpuShare": config.cpu_share,
            "uptimeS": round(time.time() - self.started, 1),
            "now": point,
            "history": list(self.history),
            "invocations": dict(self.invocations),
            "errors": dict(self.errors),
            "coldStarts": self.cold_starts,
            "throttles": self.throttles,
            "p50Ms": pct(0.5),
            "p99Ms": pct(0.99),
            "histogram": {
                "boundsMs": list(DURATION_BUCKETS_MS),
                "counts": _window_counts(ordered, DURATION_BUCKETS_MS),
            },
            "colds": list(self.colds),
            "reports": list(self.reports),
            "cost": self.cost(),
            "maxMemoryUsedMb": self.max_memory,
        }

    def prometheus(self) -> str:
        """Prometheus text exposition format, version 0.0.4."""
        config = self.server.config
        fn = _label(config.name)
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("lambdalite_invocations_total", "counter", "Invocations answered, by how they ended.")
        for status in ("success", "error", "timeout"):
            out.append(f'lambdalite_invocations_total{{function="{fn}",status="{status}"}} {self.invocations[status]}')
        family(
            "lambdalite_errors_total", "counter", "Errors by type: function errors and the function's error answers."
        )
        for kind, count in sorted(self.errors.items()):
            out.append(f'lambdalite_errors_total{{function="{fn}",type="{_label(kind)}"}} {count}')
        family("lambdalite_cold_starts_total", "counter", "Instances started for an invocation (cold starts).")
        out.append(f'lambdalite_cold_starts_total{{function="{fn}"}} {self.cold_starts}')
        family("lambdalite_throttles_total", "counter", "Invocations refused with 429 (no free instance).")
        out.append(f'lambdalite_throttles_total{{function="{fn}"}} {self.throttles}')
        family("lambdalite_invocation_duration_seconds", "histogram", "Invocation duration (REPORT Duration).")
        out.extend(_labelled(self.duration.lines("lambdalite_invocation_duration_seconds", 1e-3), fn))
        family("lambdalite_init_duration_seconds", "histogram", "Init duration of cold starts (REPORT Init Duration).")
        out.extend(_labelled(self.init.lines("lambdalite_init_duration_seconds", 1e-3), fn))
        family("lambdalite_billed_duration_seconds_total", "counter", "Billed duration, init included.")
        out.append(f'lambdalite_billed_duration_seconds_total{{function="{fn}"}} {_number(self.billed_ms / 1000)}')
        family("lambdalite_instances", "gauge", "Instances now, by state: starting (cold), idle (warm), busy.")
        for state, count in self.instances().items():
            out.append(f'lambdalite_instances{{function="{fn}",state="{state}"}} {count}')
        family("lambdalite_instance_memory_bytes", "gauge", "Resident memory of each instance's runtime process.")
        for number, rss in sorted(self.memory().items()):
            out.append(f'lambdalite_instance_memory_bytes{{function="{fn}",instance="{number}"}} {rss}')
        family("lambdalite_max_memory_used_bytes", "gauge", "The largest Max Memory Used any REPORT has shown.")
        out.append(f'lambdalite_max_memory_used_bytes{{function="{fn}"}} {self.max_memory * 2**20}')
        family("lambdalite_memory_size_bytes", "gauge", "The function's configured memory size.")
        out.append(f'lambdalite_memory_size_bytes{{function="{fn}"}} {config.memory_mb * 2**20}')
        family("lambdalite_cost_usd_total", "counter", "What the invocations so far would cost on Lambda (us-east-1).")
        out.append(f'lambdalite_cost_usd_total{{function="{fn}"}} {_number(self.cost()["usd"])}')
        return "\n".join(out) + "\n"


def _window_counts(ordered: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for value in ordered:
        counts[bisect.bisect_left(bounds, value)] += 1
    return counts


def _labelled(lines: list[str], fn: str) -> list[str]:
    """Add the function label to histogram lines."""
    out = []
    for line in lines:
        name, _, rest = line.partition(" ")
        if "{" in name:
            out.append(name.replace("{", f'{{function="{fn}",', 1) + " " + rest)
        else:
            out.append(f'{name}{{function="{fn}"}} {rest}')
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value)) if abs(value) < 1e15 else repr(float(value))
