"""The live dashboard of `lambdalite serve`, in real headless Chromium, serving the demo model."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO
from helpers.lambda_servers import ServeProcess

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        return exc.code


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/setup dev"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def test_the_dashboard_shows_what_serve_is_doing_and_updates_live(browser, demo_bundle, chelsea_jpeg, tmp_path):
    with ServeProcess(tmp_path, "efficientnet-lite0", "--max-concurrency", "2", "--memory", "1769") as served:
        assert post(served.url + "/predict", chelsea_jpeg, "image/jpeg") == 200  # the cold start
        assert post(served.url + "/predict", chelsea_jpeg, "image/jpeg") == 200
        assert post(served.url + "/predict", b"definitely not a jpeg", "image/jpeg") == 400
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(served.url + "/_lambdalite")  # redirected to the folder
        assert page.url.endswith("/_lambdalite/")
        page.wait_for_function("document.getElementById('t-invocations').textContent === '3'", timeout=30_000)
        assert page.inner_text("#t-cold") == "1"
        assert page.inner_text("#t-errors") == "1"
        assert "ms" in page.inner_text("#t-p50") and "ms" in page.inner_text("#t-p99")
        assert page.inner_text("#t-cost").startswith("$")
        assert "per million requests" in page.inner_text("#cost")
        assert page.inner_text("#fn").endswith("efficientnet-lite0")
        # errors by type: the function's own 400 answer, by its error type
        assert page.inner_text("#errors tbody .type") == "ImageDecodeError"
        # the cold start, with its init phases drawn
        # attached, not visible: a phase of 0.1 ms draws a span too thin to count as visible
        page.wait_for_selector("#colds tr.cold .phases span", state="attached")
        phases = page.eval_on_selector_all("#colds tr.cold .phases span", "spans => spans.map(s => s.title)")
        assert any(title.startswith("session") for title in phases) and any(t.startswith("imports") for t in phases)
        # the latest REPORT lines, and the charts
        assert page.inner_text("#reports").count("REPORT RequestId:") == 3
        assert page.query_selector_all("#histogram rect.bucket")
        page.wait_for_selector("#instances path.layer-idle")
        # live: a new invocation shows up without a reload
        assert post(served.url + "/predict", chelsea_jpeg, "image/jpeg") == 200
        page.wait_for_function("document.getElementById('t-invocations').textContent === '4'", timeout=30_000)
        assert page.inner_text("#live").startswith("live")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
        # self-contained: the page asked nothing of any other host
        assert all(url.startswith(served.url) for url in requests), requests
        assert errors == []
        # the function's own page is still the function's
        with urllib.request.urlopen(served.url + "/", timeout=60) as response:
            assert b"efficientnet-lite0" in response.read()
        with urllib.request.urlopen(served.url + "/_lambdalite/api/state", timeout=10) as response:
            state = json.loads(response.read())
        # 4 predictions (one answered 400: the function answered) and the page: 5, and no favicon request
    assert state["coldStarts"] == 1 and state["invocations"] == {"success": 5}
