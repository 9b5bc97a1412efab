"""Every event shape of the seeds through the function, with the tiny model and the demo model."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from lambdalite.errors import (
    EventError,
    FetchError,
    FetchTimeoutError,
    ImageDecodeError,
    ImageTooLargeError,
    URLRefusedError,
)
from lambdalite.function.app import Function
from lambdalite.function.urls import URLPolicy, fetch_image
from lambdalite.model import load_model
from lambdalite.settings import Settings
from lambdalite.toolkit.local.invoke import LocalContext

from helpers import CAT_CLASSES
from helpers.eventlib import event_names, load_event, multipart
from helpers.images import jpeg_bytes, png_header_only

RED = jpeg_bytes(Image.new("RGB", (40, 30), (250, 5, 5)), quality=95)
LOCAL_URLS = URLPolicy(allow_private=True, total_timeout=5)


def make(model_ref: str, policy: URLPolicy = LOCAL_URLS, **settings) -> Function:
    model = load_model(model_ref, threads=1)
    return Function(model, Settings(**settings), fetch=lambda url: fetch_image(url, policy))


@pytest.fixture()
def tiny(tiny_bundle) -> Function:
    return make(str(tiny_bundle.root))


@pytest.fixture(scope="module")
def demo(demo_bundle) -> Function:
    return make(str(demo_bundle))


def answer(function: Function, event):
    """The function's answer as plain JSON: the body of a proxy response, or the direct result."""
    out = function(event, LocalContext())
    if isinstance(out, dict) and "statusCode" in out and "isBase64Encoded" in out:
        assert out["headers"]["Content-Type"] == "application/json"
        assert out["isBase64Encoded"] is False
        assert out["statusCode"] == 200, out["body"]
        return json.loads(out["body"])
    return json.loads(json.dumps(out))  # what awslambdaric would serialise


GOOD_EVENTS = [n for n in event_names() if n != "rest-text-jpeg.json"]


def first_labels(result) -> list[str]:
    results = result if isinstance(result[0], list) else [result]
    return [r[0]["className"] for r in results]


@pytest.mark.parametrize("name", GOOD_EVENTS)
def test_every_event_with_the_tiny_model(tiny, image_server, name):
    result = answer(tiny, load_event(name, RED, image_server.url("/red.jpg")))
    assert set(first_labels(result)) == {"red"}


@pytest.mark.parametrize("name", GOOD_EVENTS)
def test_every_event_with_the_demo_model(demo, image_server, chelsea_jpeg, name):
    result = answer(demo, load_event(name, chelsea_jpeg, image_server.url("/cat.jpg")))
    labels = first_labels(result)
    assert labels and all(label in CAT_CLASSES for label in labels)


def test_options_from_query_and_body(demo, chelsea_jpeg, image_server):
    assert len(answer(demo, load_event("http-api-binary.json", chelsea_jpeg))) == 3  # ?top_k=3
    assert len(answer(demo, load_event("http-api-get-url.json", url=image_server.url("/cat.jpg")))) == 2
    assert len(answer(demo, load_event("direct-image-base64.json", chelsea_jpeg))) == 3
    batch = answer(demo, load_event("direct-batch.json", chelsea_jpeg))
    assert len(batch) == 2 and all(len(r) == 2 for r in batch)


def test_response_shapes(tiny_bundle, image_server):
    ref = str(tiny_bundle.root)
    scores = make(ref, response="scores")
    out = answer(scores, {"url": image_server.url("/red.jpg")})
    assert set(out) == {"red", "green", "blue", "gray"}  # seed 001: a score for every class
    assert max(out, key=out.get) == "red"
    top1 = make(ref, response="top1")
    direct = top1({"url": image_server.url("/red.jpg")}, LocalContext())
    assert direct["statusCode"] == 200 and direct["body"]["class"] == "red"  # seed 004's envelope
    assert 0 < direct["body"]["confidence"] <= 1
    gateway = answer(top1, load_event("rest-json-url.json", url=image_server.url("/red.jpg")))
    assert gateway["class"] == "red"  # behind a gateway the proxy response is the envelope


def test_rest_without_binary_media_types_explains_the_fix(demo, chelsea_jpeg):
    out = demo(load_event("rest-text-jpeg.json", chelsea_jpeg), LocalContext())
    assert out["statusCode"] == 400
    error = json.loads(out["body"])["error"]
    assert error["type"] == "ImageDecodeError"
    assert "binary media types" in error["message"]


def gateway_error(function: Function, event) -> tuple[int, dict]:
    out = function(event, LocalContext())
    assert "Traceback" not in out["body"]
    return out["statusCode"], json.loads(out["body"])["error"]


def http_event(body: bytes | None, content_type: str | None = "image/jpeg", method: str = "POST", query: str = ""):
    event = load_event("http-api-binary.json", b"")
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event["queryStringParameters"] = None
    event["headers"].pop("content-type")
    if content_type:
        event["headers"]["content-type"] = content_type
    event["body"] = base64.b64encode(body).decode() if body is not None else None
    event["isBase64Encoded"] = body is not None
    return event


@pytest.mark.parametrize(
    ("event_args", "status", "etype"),
    [
        ((b"{not json", "application/json"), 400, "EventError"),
        ((b"plain text, not an image", "image/jpeg"), 400, "ImageDecodeError"),
        ((b"", "image/jpeg"), 400, "EventError"),
        ((None, None, "POST"), 400, "EventError"),
        ((b"hello", "text/plain"), 415, "UnsupportedMediaTypeError"),
        ((b"{}", "application/json"), 400, "EventError"),
        ((png_header_only(30000, 30000), "image/png"), 400, "ImageTooLargeError"),
        (
            (multipart({}, {"note": "no file"}), "multipart/form-data; boundary=----lambdaliteBoundary7MA4YWxkTrZu0gW"),
            400,
            "EventError",
        ),
        ((b"--x\r\nbroken", "multipart/form-data; boundary=zzz"), 400, "EventError"),
        ((b'{"image": "%%%not-base64%%%"}', "application/json"), 400, "EventError"),
        ((b'{"url": "http://169.254.169.254/latest/meta-data/"}', "application/json"), 422, "URLRefusedError"),
        ((None, None, "GET", "url=file:///etc/passwd"), 422, "URLRefusedError"),
        ((None, None, "DELETE"), 405, "MethodNotAllowedError"),
    ],
)
def test_gateway_errors(tiny_bundle, event_args, status, etype):
    function = make(str(tiny_bundle.root), policy=URLPolicy())
    got_status, error = gateway_error(function, http_event(*event_args))
    assert (got_status, error["type"]) == (status, etype), error
    assert error["message"] and "\n" not in error["message"]


def test_body_over_the_cap_is_413(tiny_bundle):
    function = Function(load_model(str(tiny_bundle.root), threads=1), Settings(max_body_bytes=1000))
    status, error = gateway_error(function, http_event(RED + b"\x00" * 2000))
    assert (status, error["type"]) == (413, "PayloadTooLargeError")


def test_fetch_failures_are_502_and_504(tiny_bundle, image_server):
    function = make(str(tiny_bundle.root), policy=LOCAL_URLS._replace(total_timeout=0.5))
    status, error = gateway_error(function, http_event(None, None, "GET", "url=" + image_server.url("/missing.jpg")))
    assert (status, error["type"]) == (502, "FetchError")
    status, error = gateway_error(function, http_event(None, None, "GET", "url=" + image_server.url("/slow")))
    assert (status, error["type"]) == (504, "FetchTimeoutError")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({}, EventError),
        ({"url": 42}, EventError),
        ({"image": "not base64!!"}, EventError),
        ({"image": base64.b64encode(b"text, not an image").decode()}, ImageDecodeError),
        ({"image": base64.b64encode(png_header_only(30000, 30000)).decode()}, ImageTooLargeError),
        ({"images": []}, EventError),
        ({"urls": ["http://x"] * 100}, EventError),
        ({"url": "http://10.0.0.1/x.jpg"}, URLRefusedError),
        ({"url": "ftp://example.com/x.jpg"}, URLRefusedError),
        ({"image": base64.b64encode(RED).decode(), "top_k": "many"}, EventError),
        ("just a string", EventError),
        ([1, 2, 3], EventError),
    ],
)
def test_direct_invoke_errors_are_typed(tiny_bundle, payload, error):
    function = make(str(tiny_bundle.root), policy=URLPolicy())
    with pytest.raises(error) as exc:
        function(payload, LocalContext())
    assert exc.value.__traceback__ is not None
    assert "\n" not in str(exc.value)


def test_direct_fetch_errors(tiny_bundle, image_server):
    function = make(str(tiny_bundle.root), policy=LOCAL_URLS._replace(total_timeout=0.5))
    with pytest.raises(FetchError):
        function({"url": image_server.url("/missing.jpg")}, LocalContext())
    with pytest.raises(FetchTimeoutError):
        function({"url": image_server.url("/slow")}, LocalContext())


def test_malformed_gateway_events(tiny):
    event = load_event("rest-binary-jpeg.json", RED)
    event["body"] = "@@@ not base64 @@@"
    out = tiny(event, LocalContext())
    assert out["statusCode"] == 400 and json.loads(out["body"])["error"]["type"] == "EventError"
    event = load_event("http-api-binary.json", RED)
    event["requestContext"]["http"]["method"] = 7
    out = tiny(event, LocalContext())
    assert out["statusCode"] == 400


def test_the_function_keeps_serving_after_bad_input(tiny):
    for junk in (b"", b"junk", png_header_only(30000, 30000), RED[: len(RED) // 2]):
        tiny(http_event(junk), LocalContext())
    assert answer(tiny, http_event(RED))[0]["className"] == "red"


def test_structured_logs(tiny, capsys):
    answer(tiny, load_event("http-api-binary.json", RED))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [request] = [line for line in lines if line["event"] == "request"]
    assert request["source"] == "http" and request["status"] == 200
    assert request["top1"] == "red" and request["imageBytes"] == len(RED)
    assert "durationMs" in request
    assert base64.b64encode(RED).decode()[:40] not in json.dumps(lines)  # never image data


def test_cors_headers_for_allowed_origins_behind_a_rest_api(tiny_bundle, chelsea_jpeg):
    function = make(str(tiny_bundle.root), cors_origins=("https://app.example.com",))
    event = load_event("rest-binary-jpeg.json", chelsea_jpeg)
    event["headers"] = {**(event.get("headers") or {}), "Origin": "https://app.example.com"}
    event.get("multiValueHeaders", {}).pop("Origin", None)
    answer = function(event, LocalContext())
    assert answer["statusCode"] == 200
    assert answer["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert answer["headers"]["Vary"] == "Origin"
    event["headers"]["Origin"] = "https://evil.example"
    assert "Access-Control-Allow-Origin" not in function(event, LocalContext())["headers"]
