"""The front door through `lambdalite serve`: API Gateway emulation with curl, as users do it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import CAT_CLASSES
from helpers.cli import curl
from helpers.images import jpeg_bytes, png_header_only
from helpers.lambda_servers import ServeProcess, wait_until_gone


@pytest.fixture(scope="module")
def served(demo_bundle, tmp_path_factory):
    """The demo model behind `lambdalite serve` (HTTP API, the default)."""
    with ServeProcess(tmp_path_factory.mktemp("serve"), "efficientnet-lite0", "--max-concurrency", "1") as server:
        yield server
    assert wait_until_gone(server.mark) == []


def assert_cat_top5(status: int, body: str) -> None:
    assert status == 200, body
    result = json.loads(body)
    assert len(result) == 5 and result[0]["className"] in CAT_CLASSES


def test_curl_raw_image_body(served, chelsea_path):
    assert_cat_top5(
        *curl("--data-binary", f"@{chelsea_path}", "-H", "Content-Type: image/jpeg", f"{served.url}/predict")
    )


def test_curl_multipart_upload(served, chelsea_path):
    assert_cat_top5(*curl("-F", f"file=@{chelsea_path}", f"{served.url}/predict"))


def test_curl_without_a_content_type_still_works(served, chelsea_path):
    # curl labels --data-binary as x-www-form-urlencoded; the function reads the bytes for what they are.
    assert_cat_top5(*curl("--data-binary", f"@{chelsea_path}", f"{served.url}/predict"))


def test_seed004_route_and_page(served, chelsea_path):
    assert_cat_top5(
        *curl("--data-binary", f"@{chelsea_path}", "-H", "Content-Type: image/jpeg", f"{served.url}/invocations")
    )
    status, page = curl(f"{served.url}/")
    assert status == 200 and "<title>efficientnet-lite0" in page
    status, doc = curl(f"{served.url}/openapi.json")
    assert status == 200 and "/predict" in json.loads(doc)["paths"]


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = jpeg_bytes(Image.new("RGB", (300, 200), (40, 120, 200)), quality=95)
    files = {
        "truncated.jpg": good[: len(good) // 2],
        "empty.jpg": b"",
        "random.jpg": bytes(range(256)) * 40,
        "text.jpg": b"Dear reader, this is plain text sent as a JPEG.\n" * 10,
        "bomb.png": png_header_only(30000, 30000),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.jpg", "random.jpg", "text.jpg", "bomb.png"])
def test_bad_uploads_get_4xx_and_the_next_good_one_succeeds(served, bad_uploads, chelsea_path, name):
    ctype = "image/png" if name.endswith(".png") else "image/jpeg"
    status, body = curl(
        "--data-binary", f"@{bad_uploads[name]}", "-H", f"Content-Type: {ctype}", f"{served.url}/predict"
    )
    assert 400 <= status < 500, body
    error = json.loads(body)["error"]
    assert error["message"] and "Traceback" not in body
    status, body = curl("-F", f"file=@{bad_uploads[name]};type={ctype}", f"{served.url}/predict")
    assert 400 <= status < 500, body
    assert_cat_top5(
        *curl("--data-binary", f"@{chelsea_path}", "-H", "Content-Type: image/jpeg", f"{served.url}/predict")
    )


def test_rest_api_with_and_without_binary_media_types(demo_bundle, chelsea_path, tmp_path):
    with ServeProcess(
        tmp_path,
        "efficientnet-lite0",
        "--api",
        "rest",
        "--binary-media-types",
        "image/*,multipart/form-data",
        "--max-concurrency",
        "1",
    ) as server:
        assert_cat_top5(
            *curl("--data-binary", f"@{chelsea_path}", "-H", "Content-Type: image/jpeg", f"{server.url}/predict")
        )
        assert_cat_top5(*curl("-F", f"file=@{chelsea_path}", f"{server.url}/predict"))
    with ServeProcess(tmp_path, "efficientnet-lite0", "--api", "rest", "--max-concurrency", "1") as server:
        # No binary media types: API Gateway passes the JPEG as UTF-8 text and the bytes are lost.
        status, body = curl(
            "--data-binary", f"@{chelsea_path}", "-H", "Content-Type: image/jpeg", f"{server.url}/predict"
        )
        assert status == 400
        assert "binary media types" in json.loads(body)["error"]["message"]
        status, body = curl("-F", f"file=@{chelsea_path}", f"{server.url}/predict")
        assert status == 400
        # JSON is text: a base64 image in a JSON body still works, as on AWS.
        import base64

        payload = json.dumps({"image": base64.b64encode(chelsea_path.read_bytes()).decode()})
        assert_cat_top5(*curl("-H", "Content-Type: application/json", "-d", payload, f"{server.url}/predict"))


def test_api_gateway_payload_limit(served, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\xff" * (10 * 2**20 + 10))
    status, body = curl("--data-binary", f"@{big}", "-H", "Content-Type: image/jpeg", f"{served.url}/predict")
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}
