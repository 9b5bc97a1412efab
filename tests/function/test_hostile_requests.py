"""Requests that used to cost a 500 or an untyped error: each is now a 4xx with a typed error
(issue 14, rows 4-6). Every request goes through the function the way a gateway sends it."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from lambdalite.errors import EventError
from lambdalite.function.app import Function
from lambdalite.model import load_model
from lambdalite.settings import Settings
from lambdalite.toolkit.local.invoke import LocalContext

from helpers.eventlib import load_event
from helpers.images import encode


@pytest.fixture()
def tiny(tiny_bundle) -> Function:
    return Function(load_model(str(tiny_bundle.root), threads=1))


def gateway(function: Function, method: str, path: str, body: bytes | None, query: str = "") -> tuple[int, Any]:
    event = load_event("http-api-binary.json", b"")
    event["requestContext"]["http"]["method"] = method
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["queryStringParameters"] = None
    event["headers"]["content-type"] = "application/json"
    event["body"] = body.decode() if body is not None else None
    event["isBase64Encoded"] = False
    out = function(event, LocalContext())
    assert "Traceback" not in out["body"]
    return out["statusCode"], json.loads(out["body"])


def tiny_gif() -> str:
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    return base64.b64encode(buf.getvalue()).decode()


def oip_bytes(count: int) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": [tiny_gif()] * count}]}
    ).encode()


# -- row 4: the batch cap holds for the Open Inference Protocol too -------------------------------


def test_oip_bytes_input_has_the_same_batch_cap_as_images(tiny):
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", oip_bytes(200))
    assert status == 400 and "200 images; at most 16 per request" in body["error"], body
    status, body = gateway(tiny, "POST", "/predict", json.dumps({"images": [tiny_gif()] * 17}).encode())
    assert status == 400 and "at most 16 per request" in body["error"]["message"]
    assert gateway(tiny, "POST", "/v2/models/tiny/infer", oip_bytes(16))[0] == 200


def test_the_batch_cap_is_a_setting_for_every_shape(tiny_bundle):
    function = Function(load_model(str(tiny_bundle.root), threads=1), Settings(max_batch=3))
    assert gateway(function, "POST", "/v2/models/tiny/infer", oip_bytes(4))[0] == 400
    assert gateway(function, "POST", "/predict", json.dumps({"images": [tiny_gif()] * 4}).encode())[0] == 400
    assert gateway(function, "POST", "/v2/models/tiny/infer", oip_bytes(3))[0] == 200
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [4, 3, 8, 8], "data": [0.0] * (4 * 3 * 64)}
    status, body = gateway(function, "POST", "/v2/models/tiny/infer", json.dumps({"inputs": [tensor]}).encode())
    assert status == 400 and "4 samples; at most 3" in body["error"]


# -- row 5: 400, not 500 ---------------------------------------------------------------------------


def test_json_nested_100000_deep_is_a_400(tiny):
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = gateway(tiny, "POST", "/predict", deep)
    assert status == 400 and body["error"]["type"] == "EventError", body
    assert "nested too deeply" in body["error"]["message"]
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", deep)
    assert status == 400 and "nested too deeply" in body["error"]


def test_a_top_k_of_5000_digits_is_a_400(tiny):
    status, body = gateway(tiny, "POST", "/predict", json.dumps({"image": tiny_gif()}).encode(), "top_k=" + "9" * 5000)
    assert status == 400 and body["error"]["type"] == "EventError", body
    assert "top_k must be a whole number of at most 9 digits" in body["error"]["message"]
    assert len(body["error"]["message"]) < 200
    assert gateway(tiny, "POST", "/predict", json.dumps({"image": tiny_gif()}).encode(), "top_k=2")[0] == 200


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1, 3, 10, 10], "has shape [1, 3, 10, 10]; the model takes [-1, 3, 8, 8] (axis 2)"),
        ([1, 3, 64], "the model takes 4 axes"),
        ([0, 3, 8, 8], "no samples"),
    ],
)
def test_an_oip_tensor_of_the_wrong_shape_is_a_400(tiny, shape, message):
    size = 1
    for d in shape:
        size *= d
    tensor = {"name": "pixels", "datatype": "FP32", "shape": shape, "data": [0.5] * size}
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", json.dumps({"inputs": [tensor]}).encode())
    assert status == 400 and message in body["error"], body


@pytest.mark.parametrize("parameters", [[], [1], "x", 3])
@pytest.mark.parametrize("where", ["request", "input", "output"])
def test_oip_parameters_must_be_an_object(tiny, where, parameters):
    tensor: dict[str, Any] = {"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}
    request: dict[str, Any] = {"inputs": [tensor], "outputs": [{"name": "logits"}]}
    {"request": request, "input": tensor, "output": request["outputs"][0]}[where]["parameters"] = parameters
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", json.dumps(request).encode())
    assert status == 400 and '"parameters" must be an object' in body["error"], body


def test_deeply_nested_oip_data_is_a_400(tiny):
    data: Any = [0.0]
    for _ in range(900):
        data = [data]
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": data}
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", json.dumps({"inputs": [tensor]}).encode())
    assert status == 400, body
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": data}
    status, body = gateway(tiny, "POST", "/v2/models/tiny/infer", json.dumps({"inputs": [image]}).encode())
    assert status == 400, body


# -- row 6: typed errors for malformed gateway events ----------------------------------------------


def http_api_event() -> dict[str, Any]:
    event = load_event("http-api-binary.json", encode(Image.new("RGB", (8, 8), (250, 0, 0)), "PNG"))
    event["headers"]["content-type"] = "image/png"
    return event


def rest_event() -> dict[str, Any]:
    return load_event("rest-binary-jpeg.json", encode(Image.new("RGB", (8, 8), (250, 0, 0)), "JPEG"))


@pytest.mark.parametrize(
    ("make", "field", "value", "words"),
    [
        (http_api_event, "headers", ["a"], "headers must be an object"),
        (http_api_event, "cookies", [1, 2], "cookies must be a list of strings"),
        (http_api_event, "cookies", "a=b", "cookies must be a list"),
        (http_api_event, "rawQueryString", 5, "rawQueryString must be a string"),
        (http_api_event, "queryStringParameters", ["x"], "queryStringParameters must be an object"),
        (rest_event, "headers", "a", "headers must be an object"),
        (rest_event, "multiValueHeaders", {"accept": "text/html"}, "multiValueHeaders.accept must be a list"),
        (rest_event, "multiValueQueryStringParameters", [1], "must be an object"),
        (rest_event, "queryStringParameters", 7, "queryStringParameters must be an object"),
    ],
)
def test_wrong_typed_gateway_fields_are_event_errors(tiny, make, field, value, words):
    event = make()
    assert tiny(event, LocalContext())["statusCode"] == 200  # the event is fine as it is
    event[field] = value
    out = tiny(event, LocalContext())
    error = json.loads(out["body"])["error"]
    assert (out["statusCode"], error["type"]) == (400, "EventError"), error
    assert words in error["message"]


def test_http_api_context_of_the_wrong_type_is_an_event_error(tiny):
    event = http_api_event()
    event["requestContext"]["http"] = ["POST"]
    out = tiny(event, LocalContext())
    assert out["statusCode"] == 400 and json.loads(out["body"])["error"]["type"] == "EventError"


@pytest.mark.parametrize("value", ["!!!!@@@@", "iVBOR w0K GgoA**AA"])
def test_a_string_that_is_not_base64_is_called_that(tiny, value):
    with pytest.raises(EventError, match=r"image is not base64: it has '[!*@]'") as info:
        tiny({"image": value}, LocalContext())
    assert "empty" not in str(info.value)
    status, body = gateway(tiny, "POST", "/predict", json.dumps({"images": [value]}).encode())
    assert status == 400 and "images[0] is not base64" in body["error"]["message"]


def test_url_safe_and_unpadded_base64_still_work(tiny):
    raw = encode(Image.new("RGB", (8, 8), (250, 0, 0)), "PNG")
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert tiny({"image": text}, LocalContext())[0]["className"] == "red"
