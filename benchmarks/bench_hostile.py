"""Hostile requests mixed into a normal load on `lambdalite serve` (issue 14).

    .venv/bin/python benchmarks/bench_hostile.py [--requests 300] [--concurrency 8] [--rounds 2]

One `lambdalite serve efficientnet-lite0 --memory 1024 --max-concurrency 16` process, warmed up
(16 instances), takes alternated rounds of two kinds through its API Gateway (`POST /predict`):

* clean: 95% of `--requests` (285) normal requests, the cat photo (examples/chelsea.jpg), from
  `--concurrency` client threads (http.client, one keep-alive connection each);
* mixed: the same normal load, plus the other 5% (15): hostile requests of issue 14's rows 1-3,
  each sent on its own connection at evenly spaced moments of the round, so the normal requests
  run at the same concurrency in both kinds and every hostile request is extra load: a
  progressive 7999x7999 JPEG whose last scan repeats 1,000 times (337 KB), PNGs that decode to
  more than the memory allows (8000x8000 RGBA, 1 x 63,000,000 grey), and image URLs whose server
  drips its body or its headers a byte every 0.5 s (LAMBDALITE_URL_TIMEOUT 10 s).

Goals: zero lost requests (every request answered; every normal one 200), every hostile one
answered 4xx/504 within its bound (1 s for images, the URL deadline plus 0.5 s for drips), and
the normal requests' p99 in the mixed rounds within 2x of the clean rounds'.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lambdalite.toolkit.zoo import ensure_built

from helpers.hostile import DripServer, flat_png, scan_bomb
from helpers.lambda_servers import ServeProcess
from report import ROOT, precompile, stamp, write_section

IMAGE = ROOT / "examples" / "chelsea.jpg"
URL_TIMEOUT_S = 10.0
IMAGE_BOUND_S = 1.0
INSTANCES = 16  # the normal clients' instances, and room for the hostile requests on top


class Request:
    def __init__(self, kind: str, body: bytes, content_type: str, expect: tuple[int, ...], bound: float | None) -> None:
        self.kind = kind
        self.body = body
        self.content_type = content_type
        self.expect = expect
        self.bound = bound


def hostile_requests(drips: dict[str, DripServer]) -> list[Request]:
    bomb = scan_bomb(7999, 1_000)
    rgba = flat_png(8000, 8000, "RGBA")
    tall = flat_png(1, 63_000_000, "L")
    url_bound = URL_TIMEOUT_S + 0.5
    return [
        Request("scan bomb (7999x7999, 1,000 repeated scans)", bomb, "image/jpeg", (400,), IMAGE_BOUND_S),
        Request("PNG 8000x8000 RGBA", rgba, "image/png", (400,), IMAGE_BOUND_S),
        Request(
            "URL dripping its body",
            json.dumps({"url": drips["body"].url()}).encode(),
            "application/json",
            (504,),
            url_bound,
        ),
        Request("PNG 1 x 63,000,000 grey", tall, "image/png", (400,), IMAGE_BOUND_S),
        Request(
            "URL dripping its headers",
            json.dumps({"url": drips["headers"].url()}).encode(),
            "application/json",
            (504,),
            url_bound,
        ),
    ]


def run_round(
    port: int, normal: Request, count: int, concurrency: int, hostile: list[Request], spread_s: float
) -> list[tuple[Request, int | None, float]]:
    """`count` normal requests from `concurrency` keep-alive clients; meanwhile each of `hostile`
    on its own connection, evenly over `spread_s` seconds."""
    results: list[tuple[Request, int | None, float]] = []
    lock = threading.Lock()
    left = iter(range(count))

    def send(conn: http.client.HTTPConnection, request: Request) -> tuple[int | None, float]:
        start = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=request.body, headers={"Content-Type": request.content_type})
            response = conn.getresponse()
            response.read()
            return response.status, time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            conn.close()  # lost: no answer
            return None, time.perf_counter() - start

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if next(left, None) is None:
                    break
            status, elapsed = send(conn, normal)
            with lock:
                results.append((normal, status, elapsed))
        conn.close()

    def one_hostile(request: Request, at: float) -> None:
        time.sleep(at)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        status, elapsed = send(conn, request)
        conn.close()
        with lock:
            results.append((request, status, elapsed))

    with ThreadPoolExecutor(concurrency + len(hostile)) as pool:
        futures = [pool.submit(client) for _ in range(concurrency)]
        futures += [
            pool.submit(one_hostile, request, spread_s * (i + 0.5) / len(hostile)) for i, request in enumerate(hostile)
        ]
        for future in futures:
            future.result()
    return results


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind, alternated")
    args = parser.parse_args()
    precompile()
    ensure_built("efficientnet-lite0")
    normal = Request("normal", IMAGE.read_bytes(), "image/jpeg", (200,), None)
    drips = {kind: DripServer(kind, interval=0.5, give_up=60) for kind in ("body", "headers")}
    hostile = hostile_requests(drips)
    load_before = os.getloadavg()
    serve_args = (
        "efficientnet-lite0",
        "--memory",
        "1024",
        "--max-concurrency",
        str(INSTANCES),
        "--env",
        "LAMBDALITE_ALLOW_PRIVATE_URLS=1",  # the drip servers are on 127.0.0.1
        "--env",
        f"LAMBDALITE_URL_TIMEOUT={URL_TIMEOUT_S:g}",
    )
    rounds: dict[str, list[list[tuple[Request, int | None, float]]]] = {"clean": [], "mixed": []}
    n_hostile = round(args.requests * 0.05)
    mix = [hostile[i % len(hostile)] for i in range(n_hostile)]
    n_normal = args.requests - n_hostile
    with tempfile.TemporaryDirectory() as tmp, ServeProcess(Path(tmp), *serve_args) as serve:
        warm = run_round(serve.port, normal, INSTANCES * 4, INSTANCES, [], 0)  # every instance started
        assert all(status == 200 for _, status, _ in warm), "warm-up failed"
        starts_after_warmup = serve.stdout().count("INIT_START")
        rss_before = rss_mb(serve.proc.pid)  # type: ignore[union-attr]
        spread = 0.0
        for i in range(args.rounds):
            for kind in ("clean", "mixed") if i % 2 == 0 else ("mixed", "clean"):
                print(f"round {i + 1}: {kind}", flush=True)
                start = time.perf_counter()
                extra = mix if kind == "mixed" else []
                rounds[kind].append(run_round(serve.port, normal, n_normal, args.concurrency, extra, spread or 10.0))
                if kind == "clean" and not spread:
                    spread = (time.perf_counter() - start) * 0.9  # spread the hostile ones over a round's length
        rss_after = rss_mb(serve.proc.pid)  # type: ignore[union-attr]
        log = serve.stdout()
    for drip in drips.values():
        drip.close()
    load_after = os.getloadavg()

    lines = []
    every = [r for kind in rounds.values() for one in kind for r in one]
    lost = [r for r in every if r[1] is None]
    normal_failed = [r for r in every if r[0] is normal and r[1] != 200]
    hostile_results = [r for r in every if r[0] is not normal]
    out_of_bound = [r for r in hostile_results if r[1] not in r[0].expect or r[2] > (r[0].bound or 0)]
    clean = [t for one in rounds["clean"] for req, _, t in one if req is normal]
    mixed = [t for one in rounds["mixed"] for req, _, t in one if req is normal]
    ratio = p99(mixed) / p99(clean)
    restarts = log.count("INIT_START") - starts_after_warmup
    oom = log.count("Runtime.OutOfMemory")

    lines.append(stamp())
    lines.append(
        f"Load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min). `lambdalite serve "
        f"efficientnet-lite0 --memory 1024 --max-concurrency {INSTANCES}`, warmed up; {args.rounds} rounds of each "
        f"kind, alternated, through the HTTP API (`POST /predict`): {n_normal} normal requests at concurrency "
        f"{args.concurrency} in every round, and in the mixed rounds {n_hostile} hostile ones (5% of "
        f"{args.requests}; issue 14, rows 1-3) on top, each on its own connection, evenly spread over the round."
    )
    lines.append("")
    lines.append("| | clean rounds | mixed rounds |")
    lines.append("| --- | --- | --- |")
    lines.append(f"| normal requests | {len(clean)} | {len(mixed)} |")
    lines.append(f"| normal p50 | {statistics.median(clean) * 1e3:.0f} ms | {statistics.median(mixed) * 1e3:.0f} ms |")
    lines.append(f"| normal p99 | {p99(clean) * 1e3:.0f} ms | {p99(mixed) * 1e3:.0f} ms |")
    per_round = [f"{p99([t for req, _, t in one if req is normal]) * 1e3:.0f}" for one in rounds["clean"]]
    per_round_mixed = [f"{p99([t for req, _, t in one if req is normal]) * 1e3:.0f}" for one in rounds["mixed"]]
    lines.append(f"| normal p99 per round | {', '.join(per_round)} ms | {', '.join(per_round_mixed)} ms |")
    lines.append("")
    lines.append(
        f"Normal p99, mixed / clean: **{ratio:.2f}x** (goal: at most 2x). Lost requests: **{len(lost)}** "
        f"(no answer); normal requests not answered 200: **{len(normal_failed)}**; instances started after "
        f"the warm-up: {restarts}; `Runtime.OutOfMemory` in the log: {oom}. Emulator RSS {rss_before:.0f} MB "
        f"before the rounds, {rss_after:.0f} MB after."
    )
    lines.append("")
    lines.append("| hostile request | count | answers | slowest | bound |")
    lines.append("| --- | --- | --- | --- | --- |")
    for request in hostile:
        mine = [r for r in hostile_results if r[0] is request]
        statuses = ", ".join(f"{s}" for s in sorted({str(r[1]) for r in mine}))
        slowest = max(t for _, _, t in mine)
        lines.append(
            f"| {request.kind} | {len(mine)} | {statuses} | {slowest * 1e3:.0f} ms | "
            f"{'/'.join(map(str, request.expect))} within {request.bound:g} s |"
        )
    lines.append("")
    goals = [ratio <= 2.0, not lost, not normal_failed, not out_of_bound]
    verdict = (
        "All goals met."
        if all(goals)
        else "Goals missed: "
        + "; ".join(
            text
            for ok, text in zip(
                goals,
                [
                    "normal p99 over 2x",
                    f"{len(lost)} lost",
                    f"{len(normal_failed)} normal not 200",
                    f"{len(out_of_bound)} hostile out of bound",
                ],
                strict=True,
            )
            if not ok
        )
    )
    lines.append(verdict)
    body = "\n".join(lines)
    print(body)
    write_section("Hostile requests in a normal load (issue 14)", body)


if __name__ == "__main__":
    main()
