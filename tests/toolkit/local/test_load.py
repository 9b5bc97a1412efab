"""A bounded load test on loopback: every request answered, none lost, nothing left running."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from helpers.lambda_servers import HANDLERS, ServeProcess, wait_until_gone

REQUESTS = 500
CLIENTS = 8


def test_500_requests_at_concurrency_8_on_2_instances(tmp_path):
    args = ("--handler", "faults.echo", "--code-dir", str(HANDLERS), "--max-concurrency", "2", "--memory", "256")
    with ServeProcess(tmp_path, *args) as serve:
        counter = iter(range(REQUESTS))
        lock = threading.Lock()

        def client() -> list[tuple[int, str, bytes, str | None]]:
            answers = []
            conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return answers
                    body = json.dumps({"i": i, "sleep": 0.004}).encode()
                    conn.request("POST", "/2015-03-31/functions/function/invocations", body=body)
                    response = conn.getresponse()
                    answers.append(
                        (
                            response.status,
                            response.getheader("x-amzn-RequestId") or "",
                            response.read(),
                            response.getheader("x-amzn-ErrorType"),
                        )
                    )
                    if response.status == 429:
                        time.sleep(0.01)  # a throttled client backs off a little (boto3 would retry)
            finally:
                conn.close()

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [answer for answers in pool.map(lambda _: client(), range(CLIENTS)) for answer in answers]
        code = serve.stop()

    assert code == 0, serve.stderr()
    assert len(results) == REQUESTS
    ok = [r for r in results if r[0] == 200]
    throttled = [r for r in results if r[0] == 429]
    assert len(ok) + len(throttled) == REQUESTS, {r[0] for r in results}
    assert len(ok) >= 50, f"only {len(ok)} of {REQUESTS} requests got through"
    assert all(r[3] == "TooManyRequestsException" for r in throttled)
    bodies = [json.loads(r[2]) for r in ok]
    assert all(b["request_id"] == r[1] for b, r in zip(bodies, ok, strict=True))
    assert sorted(b["event"]["i"] for b in bodies) == sorted({b["event"]["i"] for b in bodies})  # no duplicates
    assert len({b["pid"] for b in bodies}) <= 2  # never more than two instances
    starts = [line for line in serve.stdout().splitlines() if line.startswith("START RequestId: ")]
    assert len(starts) == len(ok)  # every invocation that ran was answered, and only those ran
    assert f"invocations {len(ok)} " in serve.stderr() and f"throttled {len(throttled)} " in serve.stderr()
    assert wait_until_gone(serve.mark) == []
