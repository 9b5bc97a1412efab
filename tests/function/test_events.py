"""Event -> HttpRequest -> proxy response, per front door, exactly."""

from __future__ import annotations

import base64

from lambdalite.function.events import HttpApi, RestApi, infer
from lambdalite.function.web import HttpResponse, json_response

from helpers.eventlib import load_event


def test_recognises_each_front_door():
    assert isinstance(infer(load_event("rest-binary-jpeg.json", b"x")), RestApi)
    http = infer(load_event("http-api-binary.json", b"x"))
    assert isinstance(http, HttpApi) and http.name == "http"
    url = infer(load_event("function-url-binary.json", b"x"))
    assert isinstance(url, HttpApi) and url.name == "url"
    for direct in ({"url": "x"}, {"image": "..."}, [], "s", None, {"httpMethod": "GET"}):
        assert infer(direct) is None


def test_rest_request():
    request = infer(load_event("rest-binary-jpeg.json", b"\xff\xd8binary")).request()
    assert request.method == "POST" and request.path == "/predict"
    assert request.headers["content-type"] == "image/jpeg"  # names lower-cased
    assert request.body == b"\xff\xd8binary" and request.text_body is False
    assert request.source == "rest"


def test_rest_multi_value_headers_and_query():
    event = load_event("rest-binary-jpeg.json", b"x")
    event["multiValueHeaders"]["Accept"] = ["image/png", "application/json"]
    event["queryStringParameters"] = {"top_k": "2"}
    event["multiValueQueryStringParameters"] = {"top_k": ["1", "2"]}
    request = infer(event).request()
    assert request.headers["accept"] == "image/png, application/json"
    assert request.query["top_k"] == ["1", "2"]


def test_null_maps_are_tolerated():
    event = load_event("rest-binary-jpeg.json", b"x")
    event.update(headers=None, multiValueHeaders=None, body=None, isBase64Encoded=False)
    request = infer(event).request()
    assert request.headers == {} and request.body == b""


def test_http_api_stage_prefix_is_removed():
    request = infer(load_event("http-api-stage-binary.json", b"x")).request()
    assert request.path == "/predict"
    assert request.query == {"top_k": ["3"]}


def test_text_bodies_are_marked():
    request = infer(load_event("rest-text-jpeg.json", b"\xff\xd8\xff\xe0")).request()
    assert request.text_body is True


def test_proxy_responses():
    rest = RestApi(load_event("rest-binary-jpeg.json", b"x"))
    out = rest.response(json_response({"a": 1}, 201))
    assert out == {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json"},
        "body": '{"a":1}',
        "isBase64Encoded": False,
    }
    http = HttpApi(load_event("http-api-binary.json", b"x"))
    binary = http.response(HttpResponse(200, {"Content-Type": "image/png"}, b"\x89PNG"))
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x89PNG"
    page = http.response(HttpResponse(200, {"Content-Type": "text/html; charset=utf-8"}, "<p>é</p>".encode()))
    assert page["body"] == "<p>é</p>" and page["isBase64Encoded"] is False
