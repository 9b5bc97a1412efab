"""Hostile requests against `lambdalite serve` with the demo model, as a client sends them (issue 14).

One server for the module (`--memory 1024`, the defaults otherwise): JPEG scan bombs, PNGs that
decode to more than the memory allows, slow-drip image URLs, deep JSON, a HEAD on a keep-alive
connection; and the instance stays up through all of it. The hostile files are generated here.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from helpers.hostile import DripServer, flat_png, scan_bomb
from helpers.lambda_servers import ServeProcess

URL_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def serve(demo_bundle, tmp_path_factory) -> Iterator[ServeProcess]:
    args = (
        "efficientnet-lite0",
        "--memory",
        "1024",
        "--max-concurrency",
        "1",
        "--env",
        "LAMBDALITE_ALLOW_PRIVATE_URLS=1",  # the drip server is on 127.0.0.1
        "--env",
        f"LAMBDALITE_URL_TIMEOUT={URL_TIMEOUT}",
    )
    with ServeProcess(tmp_path_factory.mktemp("hostile"), *args) as server:
        yield server


def request(
    serve: ServeProcess, method: str, path: str, body: bytes | None = None, content_type: str = "image/png"
) -> tuple[int, dict, float]:
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=120)
    start = time.monotonic()
    conn.request(method, path, body=body, headers={"Content-Type": content_type} if body is not None else {})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.monotonic() - start
    conn.close()
    return response.status, json.loads(data) if data else {}, elapsed


def cold_starts(serve: ServeProcess) -> int:
    return serve.stdout().count("INIT_START")


def test_a_scan_bomb_is_a_quick_400(serve):
    request(serve, "GET", "/v2/health/ready")  # the instance is up before the clock starts
    for repeats in (1_000, 5_000):
        status, body, elapsed = request(serve, "POST", "/predict", scan_bomb(7999, repeats), "image/jpeg")
        assert status == 400 and body["error"]["type"] == "ImageDecodeError", body
        assert "scans" in body["error"]["message"]
        assert elapsed < 1.0, f"{repeats} scans took {elapsed:.1f} s to refuse"


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda: flat_png(8000, 8000, "RGBA"), 400),
        (lambda: flat_png(8000, 8000, "P", transparency=True), 200),  # decodes within the budget
        (lambda: flat_png(1, 63_000_000, "L"), 400),
    ],
)
def test_pngs_under_the_pixel_limit_do_not_kill_the_instance(serve, make, status):
    before = cold_starts(serve)
    got, body, _ = request(serve, "POST", "/predict", make())
    assert got == status, body
    if status == 400:
        assert body["error"]["type"] == "ImageTooLargeError" and "1024 MB" in body["error"]["message"], body
    assert "Runtime.OutOfMemory" not in serve.stdout()
    assert cold_starts(serve) == max(before, 1)  # the same instance: it never died


@pytest.mark.parametrize("kind", ["body", "headers"])
def test_a_slow_drip_url_is_a_504_at_the_deadline(serve, kind):
    drip = DripServer(kind, interval=0.5)
    try:
        payload = json.dumps({"url": drip.url()}).encode()
        status, body, elapsed = request(serve, "POST", "/predict", payload, "application/json")
    finally:
        drip.close()
    assert status == 504 and body["error"]["type"] == "FetchTimeoutError", body
    assert elapsed < URL_TIMEOUT + 0.5 + 0.5  # the deadline, within half a second (plus the round trip)


def test_deep_json_and_a_huge_top_k_are_400s(serve):
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body, _ = request(serve, "POST", "/2015-03-31/functions/function/invocations", deep, "application/json")
    assert status == 400, body
    status, body, _ = request(serve, "POST", "/predict", deep, "application/json")
    assert status == 400 and body["error"]["type"] == "EventError"
    status, body, _ = request(serve, "POST", "/predict?top_k=" + "7" * 5000, flat_png(8, 8, "RGB"))
    assert status == 400 and "top_k" in body["error"]["message"]


def test_head_has_no_body_and_the_connection_stays_usable(serve):
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
    conn.request("HEAD", "/")
    head = conn.getresponse()
    assert head.status == 200 and int(head.getheader("Content-Length")) > 1000
    assert head.read() == b""
    conn.request("GET", "/openapi.json")  # on the same keep-alive connection
    answer = conn.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["openapi"].startswith("3.")
    conn.close()


def test_the_cold_start_log_has_no_telemetry_warning(serve):
    request(serve, "GET", "/v2/health/live")
    log = serve.stdout()
    assert "INIT_START" in log and '"event":"cold_start"' in log
    assert "telemetry" not in log and "\x1b[" not in log, log[:2000]


def test_normal_requests_still_work_after_all_that(serve, chelsea_jpeg):
    status, body, _ = request(serve, "POST", "/predict", chelsea_jpeg, "image/jpeg")
    assert status == 200 and body[0]["className"], body
