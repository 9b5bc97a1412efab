"""The page in real headless Chromium, served by `lambdalite serve` exactly as it is deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CAT_CLASSES, REPO
from helpers.lambda_servers import ServeProcess

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/setup dev"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served(demo_bundle, tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("page"), "efficientnet-lite0", "--max-concurrency", "1") as server:
        yield server


def test_upload_the_cat_and_see_a_cat(browser, served, chelsea_path, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized screen
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served.url + "/")
    assert page.title().startswith("efficientnet-lite0")
    page.set_input_files("#file", str(chelsea_path))
    page.wait_for_selector("#results .bar", timeout=60_000)
    labels = [e.inner_text() for e in page.query_selector_all("#results .bar .label")]
    percents = [e.inner_text() for e in page.query_selector_all("#results .bar .pct")]
    assert len(labels) == 5 and labels[0] in CAT_CLASSES
    assert all(p.endswith("%") for p in percents)
    assert "Answered in" in page.inner_text("#timing")
    assert page.is_visible("#preview")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-cat.png"), full_page=True)
    assert (ARTIFACTS / "page-cat.png").stat().st_size > 10_000
    assert errors == []
    # Nothing overflows the phone's width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_errors_are_readable_and_the_page_recovers(browser, served, chelsea_path, tmp_path, image_server):
    page = browser.new_page()
    page.goto(served.url + "/")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"this is text wearing a .jpg name\n" * 20)
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    message = page.inner_text("#error")
    assert "not an image" in message and "Traceback" not in message
    assert not message.startswith("400") and "Bad Request" not in message  # the message, not the status line
    assert not page.is_visible("#output") and not page.is_visible("#preview")  # no card with an empty picture
    # A URL the function must not fetch (loopback): refused, said plainly.
    page.fill("#url", image_server.url("/cat.jpg"))
    page.click("#go")
    page.wait_for_function("document.getElementById('error').textContent.includes('loopback')", timeout=60_000)
    message = page.inner_text("#error")
    assert "Unprocessable" not in message and not message.startswith("422"), message
    assert not page.is_visible("#output") and not page.is_visible("#preview")
    assert "the image sent" not in page.inner_text("body")  # the preview's alt text is nowhere
    page.screenshot(path=str(ARTIFACTS / "page-error.png"), full_page=True)
    # The next good upload works and clears the error.
    page.set_input_files("#file", str(chelsea_path))
    page.wait_for_selector("#results .bar", timeout=60_000)
    assert page.query_selector("#results .bar .label").inner_text() in CAT_CLASSES
    assert not page.is_visible("#error")
    page.screenshot(path=str(ARTIFACTS / "page-recovered.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first use trains the captioner
def test_the_page_shows_a_caption_and_its_alternatives(browser, tmp_path):
    from lambdalite.toolkit.zoo import ensure_built, scenes

    ensure_built("shapes-captioner")
    scene = next(s for s in map(scenes.scene, scenes.TEST_SEEDS[400:]) if len(s.shapes) == 2)
    image = tmp_path / f"scene{scene.suffix}"
    image.write_bytes(scene.encode())
    with ServeProcess(tmp_path, "shapes-captioner", "--max-concurrency", "1") as server:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(server.url + "/")
        assert "captions images" in page.inner_text(".sub")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#caption", state="visible", timeout=60_000)
        caption = page.inner_text("#caption")
        assert caption.split()[0] in ("a", "two", "three") and any(
            shape in caption for shape in ("circle", "square", "triangle")
        )
        assert page.query_selector_all("#alternatives .alt")  # beam 3: the other two captions
        assert page.query_selector_all("#results .bar") == []
        page.screenshot(path=str(ARTIFACTS / "page-caption.png"), full_page=True)


def test_the_page_asks_for_the_api_key_once_and_keeps_it_for_the_tab(browser, demo_bundle, chelsea_path, tmp_path):
    args = ("efficientnet-lite0", "--max-concurrency", "1", "--auth", "api-key", "--api-key", "tab-key-42")
    with ServeProcess(tmp_path, *args) as server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url + "/")  # the page itself opens without a key
        page.set_input_files("#file", str(chelsea_path))
        page.wait_for_selector("#key-form", state="visible", timeout=60_000)
        page.fill("#key", "not-the-key")
        page.click("#key-go")
        page.wait_for_function("document.getElementById('key-note').textContent.includes('refused')", timeout=60_000)
        page.fill("#key", "tab-key-42")
        page.click("#key-go")  # the pending image is sent again, with the key
        page.wait_for_selector("#results .bar", timeout=60_000)
        assert page.query_selector("#results .bar .label").inner_text() in CAT_CLASSES
        assert page.evaluate("sessionStorage.getItem('lambdalite.apiKey')") == "tab-key-42"
        assert page.evaluate("localStorage.length") == 0  # the tab only, nothing that outlives it
        page.screenshot(path=str(ARTIFACTS / "page-api-key.png"), full_page=True)
        page.reload()
        page.set_input_files("#file", str(chelsea_path))
        page.wait_for_selector("#results .bar", timeout=60_000)
        assert not page.is_visible("#key-form")  # asked once
        other = context.new_page()  # another tab asks again
        other.goto(server.url + "/")
        assert other.evaluate("sessionStorage.getItem('lambdalite.apiKey')") is None
        context.close()
