"""API Gateway emulation, pure: HTTP request -> event -> (function) -> HTTP response."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from lambdalite.function.app import Function
from lambdalite.function.events import HttpApi, RestApi, infer
from lambdalite.model import load_model
from lambdalite.toolkit.local.gateway import FrontDoor, GatewayConfig, event_from_request, response_from_result
from lambdalite.toolkit.local.invoke import LocalContext

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x80\x81\xfe\xff"  # not valid UTF-8 on purpose
HTTP = GatewayConfig("http")
REST_BINARY = GatewayConfig("rest", ["image/*", "multipart/form-data"])
REST_PLAIN = GatewayConfig("rest", [])


def test_http_api_event_base64s_binary_bodies():
    event = event_from_request(
        HTTP,
        "POST",
        "/predict",
        "top_k=2&x=1&x=2",
        {"content-type": "image/jpeg", "cookie": "a=1; b=2", "user-agent": "curl/8"},
        JPEG,
    )
    assert isinstance(infer(event), HttpApi)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == JPEG
    assert event["queryStringParameters"] == {"top_k": "2", "x": "1,2"}  # repeated keys comma-joined
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    request = infer(event).request()
    assert request.body == JPEG and request.path == "/predict"
    text = event_from_request(HTTP, "POST", "/", "", {"content-type": "application/json"}, b'{"a": 1}')
    assert text["isBase64Encoded"] is False and text["body"] == '{"a": 1}'
    form = event_from_request(HTTP, "POST", "/", "", {"content-type": "application/x-www-form-urlencoded"}, b"a=1")
    assert form["isBase64Encoded"] is True  # only text/*, JSON, XML and JS stay text


def test_rest_event_with_and_without_binary_media_types():
    with_binary = event_from_request(REST_BINARY, "POST", "/predict", "", {"content-type": "image/jpeg"}, JPEG)
    assert isinstance(infer(with_binary), RestApi)
    assert with_binary["isBase64Encoded"] is True and infer(with_binary).request().body == JPEG
    without = event_from_request(REST_PLAIN, "POST", "/predict", "", {"content-type": "image/jpeg"}, JPEG)
    assert without["isBase64Encoded"] is False
    assert infer(without).request().body != JPEG  # mangled, as on AWS
    assert without["requestContext"]["stage"] == "local"


def test_wildcard_media_types():
    assert GatewayConfig("rest", ["*/*"]).is_binary("application/pdf")
    assert GatewayConfig("rest", ["image/*"]).is_binary("image/png; q=1")
    assert not GatewayConfig("rest", ["image/*"]).is_binary("text/plain")


def proxy(status=200, body="{}", b64=False, headers=None, **extra):
    return json.dumps(
        {
            "statusCode": status,
            "headers": headers or {"Content-Type": "application/json"},
            "body": body,
            "isBase64Encoded": b64,
            **extra,
        }
    ).encode()


def test_responses():
    status, headers, body = response_from_result(HTTP, proxy(201, '{"ok":1}'), None, request_id="r")
    assert (status, body) == (201, b'{"ok":1}') and ("Content-Type", "application/json") in headers
    # HTTP API: JSON without statusCode is a 200 of that JSON.
    assert response_from_result(HTTP, b"[1, 2]", None, request_id="r")[::2] == (200, b"[1, 2]")
    # REST: anything but a proxy response is a 502.
    assert response_from_result(REST_BINARY, b"[1, 2]", None, request_id="r")[0] == 502
    assert response_from_result(REST_BINARY, proxy(status="200"), None, request_id="r")[0] == 502
    # Function errors.
    assert response_from_result(REST_BINARY, b'{"errorType":"X"}', "Unhandled", request_id="r")[0] == 502
    assert response_from_result(HTTP, b'{"errorType":"X"}', "Unhandled", request_id="r")[0] == 500


def test_binary_responses_follow_accept_on_rest():
    png = base64.b64encode(b"\x89PNG").decode()
    payload = proxy(body=png, b64=True, headers={"Content-Type": "image/png"})
    assert response_from_result(HTTP, payload, None, request_id="r")[2] == b"\x89PNG"
    assert response_from_result(REST_BINARY, payload, None, request_id="r", accept="image/png")[2] == b"\x89PNG"
    # The first Accept type decides; otherwise the client gets the base64 text.
    assert (
        response_from_result(REST_BINARY, payload, None, request_id="r", accept="text/html, image/png")[2]
        == png.encode()
    )


def test_multi_value_headers_and_cookies():
    payload = proxy(headers={"X-A": "1"}, multiValueHeaders={"X-B": ["1", "2"]}, cookies=["c=1"])
    _, rest_headers, _ = response_from_result(REST_BINARY, payload, None, request_id="r")
    assert ("X-B", "1") in rest_headers and ("X-B", "2") in rest_headers
    _, http_headers, _ = response_from_result(HTTP, payload, None, request_id="r")
    assert ("Set-Cookie", "c=1") in http_headers and ("X-B", "1") not in http_headers


class _Result:
    def __init__(self, payload: bytes, function_error: str | None = None) -> None:
        self.payload = payload
        self.function_error = function_error


def run_front_door(
    config: GatewayConfig,
    function: Function,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict | None = None,
    query: str = "",
):
    async def invoke(payload: bytes) -> _Result:
        try:
            out = function(json.loads(payload), LocalContext())
        except Exception as exc:
            return _Result(json.dumps({"errorType": type(exc).__name__}).encode(), "Unhandled")
        return _Result(json.dumps(out).encode())

    door = FrontDoor(config, invoke)
    return asyncio.run(door(method, path, query, headers or {}, body))


@pytest.fixture()
def tiny_function(tiny_bundle) -> Function:
    return Function(load_model(str(tiny_bundle.root), threads=1))


def test_front_door_end_to_end_with_the_function(tiny_function):
    from PIL import Image

    from helpers.images import jpeg_bytes

    red = jpeg_bytes(Image.new("RGB", (20, 20), (250, 0, 0)), quality=95)
    status, headers, body = run_front_door(HTTP, tiny_function, "POST", "/predict", red, {"content-type": "image/jpeg"})
    assert status == 200 and json.loads(body)[0]["className"] == "red"
    status, _, body = run_front_door(
        REST_BINARY, tiny_function, "POST", "/predict", red, {"content-type": "image/jpeg"}
    )
    assert status == 200 and json.loads(body)[0]["className"] == "red"
    status, _, body = run_front_door(REST_PLAIN, tiny_function, "POST", "/predict", red, {"content-type": "image/jpeg"})
    assert status == 400 and "binary media types" in json.loads(body)["error"]["message"]
    status, headers, body = run_front_door(HTTP, tiny_function, "GET", "/")
    assert status == 200 and dict(headers)["Content-Type"].startswith("text/html") and b"<html" in body


def test_front_door_limits(tiny_function):
    big = b"\xff" * (10 * 2**20 + 1)
    assert run_front_door(HTTP, tiny_function, "POST", "/predict", big, {"content-type": "image/jpeg"})[0] == 413

    async def slow(payload: bytes) -> _Result:
        await asyncio.sleep(5)
        return _Result(b"{}")

    for config, status in ((GatewayConfig("http", timeout_s=0.1), 503), (GatewayConfig("rest", timeout_s=0.1), 504)):
        answer = asyncio.run(FrontDoor(config, slow)("GET", "/", "", {}, b""))
        assert answer[0] == status
