"""SnapStart in the local Lambda: a new instance restored from the snapshot vs initialised from scratch.

    .venv/bin/python benchmarks/bench_snapstart.py [--runs 15] [--bursts 5]

Everything goes through real `lambdalite serve` processes on the demo model (efficientnet-lite0,
the real handler, a direct invoke of examples/chelsea.jpg), side by side in one run, interleaved:

1. A request that needs a new instance (every instance reaped before it): "ready" is the
   instance's own start as the REPORT line gives it (`Init Duration`: spawn to the runtime's
   first poll for work; `Restore Duration`: fork to the first poll, after-restore hooks included),
   "first response" is the client's wall time for the request. Without `--snapstart` on this
   branch and on the branch's base commit (the cold start without SnapStart must be unchanged),
   and with `--snapstart`. Goal: ready in at most 20 ms (median), at least 8x faster than a
   normal cold start. 1024 MB, so one inference thread, as Lambda's CPU share at that size.
2. The same with 2 intra-op threads (`LAMBDALITE_THREADS=2`): the snapshot's ONNX Runtime pool
   does not survive the fork, so the function's after-restore hook rebuilds the session in the
   background; how long that takes is read from its log line.
3. A burst of 8 concurrent requests on a cold function (`--max-concurrency 8`): p50 and p99 of
   the client's latency, with and without SnapStart.
4. Memory with 8 instances up (after a burst): RSS, PSS and USS (/proc/PID/smaps_rollup) per
   instance and in all, and `Max Memory Used` as the REPORT lines give it (what Lambda bills
   and caps: the instance's peak resident set, shared pages included).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.lambda_servers import ServeProcess, processes_with
from report import ROOT, precompile, stamp, write_section

IMAGE = ROOT / "examples" / "chelsea.jpg"
INVOKE = "/2015-03-31/functions/function/invocations"
REPORT = re.compile(r"^REPORT RequestId: .*$", re.M)


def field(report: str, name: str) -> float | None:
    m = re.search(rf"\t{name}: ([\d.]+) (?:ms|MB)", report)
    return float(m.group(1)) if m else None


def invoke(port: int, body: bytes) -> tuple[float, str, bytes]:
    """One request on a new connection: (seconds, REPORT line, payload)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request("POST", INVOKE, body=body, headers={"X-Amz-Log-Type": "Tail"})
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - start
    conn.close()
    if response.status != 200 or response.getheader("X-Amz-Function-Error"):
        sys.exit(f"invoke failed: {response.status} {payload[:500]!r}")
    log = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode()
    reports = REPORT.findall(log)
    return elapsed, reports[-1] if reports else "", payload


class Server:
    """A `lambdalite serve` process, optionally from another source tree (the base commit)."""

    def __init__(self, tmp: Path, name: str, *args: str, src: Path | None = None) -> None:
        self.name = name
        self.serve = ServeProcess(tmp, "efficientnet-lite0", "--memory", "1024", *args)
        self.src = src
        if src is not None:  # the same venv, the other commit's lambdalite
            self.serve.args[0:2] = [sys.executable, "-c", "from lambdalite.toolkit.cli import main; main()", "serve"]

    def __enter__(self) -> Server:
        saved = os.environ.get("PYTHONPATH")
        if self.src is not None:
            os.environ["PYTHONPATH"] = str(self.src)
        try:
            self.serve.__enter__()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        return self

    def __exit__(self, *exc: object) -> None:
        self.serve.__exit__(*exc)

    @property
    def port(self) -> int:
        return self.serve.port

    def instances(self) -> list[int]:
        """The instance processes (the snapshot's template excluded)."""
        template = self.template()
        return [pid for pid in processes_with(self.serve.mark) if pid not in template]

    def template(self) -> list[int]:
        """The snapshot's process: the serve process's child running the fork server (its forks
        keep its command line, but their parent is the template)."""
        assert self.serve.proc is not None
        return [
            pid
            for pid in processes_with(self.serve.mark)
            if _ppid(pid) == self.serve.proc.pid and b"forkserver" in _cmdline(pid)
        ]

    def wait_reaped(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.instances() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.instances():
            sys.exit(f"{self.name}: instances were not reaped")


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def memory_kb(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (private clean + private dirty) in kB, from smaps_rollup."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            values[key] = int(rest.split()[0])
    return {"rss": values["Rss"], "pss": values["Pss"], "uss": values["Private_Clean"] + values["Private_Dirty"]}


def cold_requests(servers: list[Server], body: bytes, runs: int) -> dict[str, dict[str, list[float]]]:
    """Interleaved: one request per server per run, each on a cold function."""
    out: dict[str, dict[str, list[float]]] = {s.name: {"ready": [], "first": [], "max_memory": []} for s in servers}
    for _ in range(runs):
        for server in servers:
            server.wait_reaped()
            elapsed, report, _ = invoke(server.port, body)
            ready = field(report, "Restore Duration") or field(report, "Init Duration")
            if ready is None:
                sys.exit(f"{server.name}: the request found a warm instance: {report}")
            out[server.name]["ready"].append(ready)
            out[server.name]["first"].append(elapsed * 1e3)
            out[server.name]["max_memory"].append(field(report, "Max Memory Used") or 0)
    return out


def burst(server: Server, body: bytes, n: int = 8) -> tuple[list[float], list[str]]:
    barrier = threading.Barrier(n)
    latencies: list[float] = [0.0] * n
    reports: list[str] = [""] * n

    def one(i: int) -> None:
        barrier.wait()
        latencies[i], reports[i], _ = invoke(server.port, body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return [x * 1e3 for x in latencies], reports


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rebuild_ms(server: Server) -> list[float]:
    found = []
    for line in server.serve.stdout().splitlines():
        if line.startswith("{") and '"event":"restore_threads"' in line:
            found.append(float(json.loads(line)["rebuildMs"]))
    return found


def base_source(tmp: Path) -> Path:
    """The branch's base commit (main when the branch started), its src/ extracted to tmp."""
    base = subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True)
    commit = base.stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tmp / "src")], check=True)
    (tmp / "commit").write_text(commit)
    return tmp / "src"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--bursts", type=int, default=5)
    args = parser.parse_args()
    precompile()
    body = json.dumps({"image": base64.b64encode(IMAGE.read_bytes()).decode()}).encode()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "base").mkdir()
        base_src = base_source(tmp / "base")
        commit = (tmp / "base" / "commit").read_text()[:7]
        cold = ("--idle-timeout", "0.2", "--max-concurrency", "8")
        two = ("--env", "LAMBDALITE_THREADS=2")
        with (
            Server(tmp, f"without SnapStart (base commit {commit})", *cold, src=base_src) as base,
            Server(tmp, "without SnapStart (this branch)", *cold) as normal,
            Server(tmp, "with --snapstart", *cold, "--snapstart") as snap,
        ):
            single = cold_requests([base, normal, snap], body, args.runs)
            bursts: dict[str, list[float]] = {normal.name: [], snap.name: []}
            for _ in range(args.bursts):
                for server in (normal, snap):
                    server.wait_reaped()
                    latencies, _ = burst(server, body)
                    bursts[server.name].extend(latencies)
        # Instances idle 2 s before they are reaped: long enough for the session rebuild to finish.
        slow_reap = ("--idle-timeout", "2", "--max-concurrency", "8")
        with (
            Server(tmp, "without SnapStart, 2 threads", *slow_reap, *two) as normal2,
            Server(tmp, "with --snapstart, 2 threads", *slow_reap, *two, "--snapstart") as snap2,
        ):
            threaded = cold_requests([normal2, snap2], body, max(5, args.runs // 2))
            rebuilds = rebuild_ms(snap2)
        keep = ("--idle-timeout", "300", "--max-concurrency", "8")
        memory: dict[str, Any] = {}
        with (
            Server(tmp, "without SnapStart", *keep) as normal_m,
            Server(tmp, "with --snapstart", *keep, "--snapstart") as snap_m,
        ):
            for server in (normal_m, snap_m):
                _, reports = burst(server, body)
                pids = server.instances()
                if len(pids) != 8:
                    sys.exit(f"{server.name}: expected 8 instances, found {len(pids)}")
                per = [memory_kb(pid) for pid in pids]
                template = [memory_kb(pid) for pid in server.template()]
                memory[server.name] = {
                    "per": per,
                    "template": template,
                    "max_used": [field(r, "Max Memory Used") or 0 for r in reports],
                }
    load_after = os.getloadavg()[0]
    write_section(
        "SnapStart: restored instances vs cold starts (lambdalite serve --snapstart)",
        render(single, bursts, threaded, rebuilds, memory, args, commit, load_before, load_after),
    )


def med(values: list[float]) -> float:
    return statistics.median(values)


def render(
    single: dict[str, dict[str, list[float]]],
    bursts: dict[str, list[float]],
    threaded: dict[str, dict[str, list[float]]],
    rebuilds: list[float],
    memory: dict[str, Any],
    args: argparse.Namespace,
    commit: str,
    load_before: float,
    load_after: float,
) -> str:
    names = list(single)
    base_name, normal_name, snap_name = names
    ready_ratio = med(single[normal_name]["ready"]) / med(single[snap_name]["ready"])
    first_ratio = med(single[normal_name]["first"]) / med(single[snap_name]["first"])
    snap_ready = med(single[snap_name]["ready"])
    met = snap_ready <= 20 and ready_ratio >= 8
    unchanged = med(single[normal_name]["first"]) / med(single[base_name]["first"])
    lines = [
        f"{stamp()} Load average (1 min) {load_before:.1f} before, {load_after:.1f} after: the machine is",
        "shared, so the numbers carry its neighbours' noise.",
        "",
        "Model: efficientnet-lite0 (the demo model, fp32 ONNX) behind the real handler, a direct invoke",
        "of `examples/chelsea.jpg`, through real `lambdalite serve` processes (`--memory 1024`: one",
        "inference thread) and their awslambdaric instances, over loopback HTTP. With `--snapstart` the",
        "init runs once, into the snapshot (a template process), and each new instance is a fork of it",
        "that runs the after-restore hooks. `benchmarks/bench_snapstart.py`.",
        "",
        f"**A request that needs a new instance** ({args.runs} runs, interleaved; every instance reaped",
        "before each request; ready = the REPORT's `Init Duration` or `Restore Duration`: from spawning or",
        "forking the instance to its runtime's first poll for work; first response = the client's time):",
        "",
        "| | ready, median (ms) | ready, p90 (ms) | first response, median (ms) | Max Memory Used (MB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        d = single[name]
        lines.append(
            f"| {name} | {med(d['ready']):.1f} | {pct(d['ready'], 0.9):.1f} | {med(d['first']):.1f} | "
            f"{med(d['max_memory']):.0f} |"
        )
    lines += [
        "",
        f"SnapStart: ready in **{snap_ready:.1f} ms** (goal: at most 20 ms), **{ready_ratio:.1f}x** faster than",
        f"a cold start (goal: at least 8x) - {'met' if met else 'NOT met'}; the first response is",
        f"{first_ratio:.1f}x faster.",
        f"Without SnapStart this branch's cold start takes {unchanged:.2f}x the base commit's ({commit}),",
        "measured in the same run: the path without `--snapstart` is unchanged (the function imports",
        "nothing new unless `AWS_LAMBDA_INITIALIZATION_TYPE` is `snap-start`).",
        "",
        "**With 2 intra-op threads** (`LAMBDALITE_THREADS=2`; the snapshot's ONNX Runtime pool does not",
        "survive a fork, so the function's after-restore hook rebuilds the session on a background thread;",
        "until it is swapped in, the inherited session answers, identically, on one thread):",
        "",
        "| | ready, median (ms) | first response, median (ms) |",
        "| --- | --- | --- |",
    ]
    for name, d in threaded.items():
        lines.append(f"| {name} | {med(d['ready']):.1f} | {med(d['first']):.1f} |")
    if rebuilds:
        lines += [
            "",
            f"The rebuild of the 2-thread session took {med(rebuilds):.0f} ms (median of {len(rebuilds)}) after the",
            "restore, off the request path (it shares the CPUs with the first requests). On Lambda a restore",
            "keeps every thread, so the hook finds none lost and rebuilds nothing.",
        ]
    lines += [
        "",
        f"**A burst of 8 concurrent requests on a cold function** (`--max-concurrency 8`; {args.bursts} bursts",
        "each, alternated, every instance reaped before each burst; client latency over all requests):",
        "",
        "| | p50 (ms) | p99 (ms) | max (ms) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in bursts.items():
        lines.append(f"| {name} | {pct(values, 0.5):.0f} | {pct(values, 0.99):.0f} | {max(values):.0f} |")
    p99_ratio = pct(bursts[normal_name], 0.99) / pct(bursts[snap_name], 0.99)
    lines += [
        "",
        f"p99 {p99_ratio:.1f}x lower with SnapStart: without it, 8 inits share 2 CPUs; with it, 8 forks.",
        "",
        "**Memory with 8 instances up** (after one burst; kB from /proc/PID/smaps_rollup, summed over the",
        "8 instances; PSS divides each shared page among the processes sharing it, USS counts only the",
        "instance's own pages; Max Memory Used is the REPORT's, median of the 8):",
        "",
        "| | RSS per instance (MB) | PSS per instance (MB) | USS per instance (MB) | PSS, 8 instances (MB) | "
        "snapshot process PSS (MB) | Max Memory Used (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in memory.items():
        per = m["per"]
        template = sum(t["pss"] for t in m["template"]) / 1024
        lines.append(
            f"| {name} | {med([p['rss'] for p in per]) / 1024:.0f} | {med([p['pss'] for p in per]) / 1024:.0f} | "
            f"{med([p['uss'] for p in per]) / 1024:.0f} | {sum(p['pss'] for p in per) / 1024:.0f} | "
            f"{f'{template:.0f}' if m['template'] else '-'} | {med(m['max_used']):.0f} |"
        )
    lines += [
        "",
        "Max Memory Used is the instance's peak resident set (VmHWM), shared pages included, as a restored",
        "microVM holds all of its snapshot's memory. A restored instance's peak starts at what the",
        "snapshot held after its init, so the init's transient peak (the model file read while its session",
        "is built) is not in it; a cold-started instance's is. What the machine spends per instance is",
        "the USS (and the PSS sum): the model's weights and the runtime are shared with the snapshot.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
