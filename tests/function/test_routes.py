"""The function's own routes: the page, the OpenAPI document and the Open Inference Protocol v2."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from lambdalite.function.app import Function
from lambdalite.model import load_model
from lambdalite.toolkit.local.invoke import LocalContext

from helpers import CAT_CLASSES
from helpers.eventlib import load_event
from helpers.images import jpeg_bytes


def call(function: Function, method: str, path: str, body=None, query: str = ""):
    event = load_event("http-api-binary.json", b"")
    event["requestContext"]["http"]["method"] = method
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["queryStringParameters"] = None
    event["headers"]["content-type"] = "application/json"
    event["body"] = json.dumps(body) if body is not None else None
    event["isBase64Encoded"] = False
    out = function(event, LocalContext())
    return out["statusCode"], out["headers"], out["body"]


@pytest.fixture()
def tiny(tiny_bundle) -> Function:
    return Function(load_model(str(tiny_bundle.root), threads=1))


@pytest.fixture(scope="module")
def demo(demo_bundle) -> Function:
    return Function(load_model(str(demo_bundle), threads=1))


def test_get_root_is_the_page_so_it_works_on_lambda(demo):
    event = load_event("rest-binary-jpeg.json", b"")
    event.update(httpMethod="GET", path="/", resource="/", body=None, isBase64Encoded=False)
    out = demo(event, LocalContext())
    assert out["statusCode"] == 200 and out["headers"]["Content-Type"].startswith("text/html")
    page = out["body"]
    assert "<title>efficientnet-lite0" in page and "{{" not in page
    assert "http://" not in page.replace("http://localhost", "") and "https://" not in page.replace(
        "https://example.com", ""
    )  # self-contained: no CDN
    assert out["isBase64Encoded"] is False


def test_openapi_document(demo):
    status, _, body = call(demo, "GET", "/openapi.json")
    doc = json.loads(body)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/predict", "/invocations", "/v2/models/{model_name}/infer"} <= set(doc["paths"])
    content = doc["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data", "application/json"} <= set(content)


def test_oip_health_and_metadata(demo):
    assert json.loads(call(demo, "GET", "/v2/health/live")[2]) == {"live": True}
    assert json.loads(call(demo, "GET", "/v2/health/ready")[2]) == {"ready": True}
    assert json.loads(call(demo, "GET", "/v2")[2])["name"] == "lambdalite"
    status, _, body = call(demo, "GET", "/v2/models/efficientnet-lite0")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "efficientnet-lite0" and meta["platform"] == "onnxruntime_onnx"
    assert {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]} in meta["inputs"]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert json.loads(call(demo, "GET", "/v2/models/efficientnet-lite0/ready")[2]) == {
        "name": "efficientnet-lite0",
        "ready": True,
    }
    assert call(demo, "GET", "/v2/models/efficientnet-lite0/versions/1.0.0/ready")[0] == 200
    status, _, body = call(demo, "GET", "/v2/models/resnet50")
    assert status == 404 and "error" in json.loads(body)
    assert call(demo, "GET", "/v2/models/efficientnet-lite0/versions/9/ready")[0] == 404


def test_oip_infer_with_encoded_image_bytes(demo, chelsea_jpeg):
    request = {
        "id": "req-7",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(chelsea_jpeg).decode()]}
        ],
        "outputs": [{"name": "logits", "parameters": {"classification": 3}}],
    }
    status, _, body = call(demo, "POST", "/v2/models/efficientnet-lite0/infer", request)
    response = json.loads(body)
    assert status == 200 and response["id"] == "req-7" and response["model_name"] == "efficientnet-lite0"
    [out] = response["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 3]
    probability, index, label = out["data"][0].split(":", 2)
    assert label in CAT_CLASSES and 0 < float(probability) <= 1 and int(index) in (281, 282, 285)


def test_oip_infer_with_tensors_matches_the_engine(tiny):
    x = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    request = {
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 3, 8, 8], "data": x.reshape(-1).tolist()}]
    }
    status, _, body = call(tiny, "POST", "/v2/models/tiny/infer", request)
    assert status == 200, body
    [out] = json.loads(body)["outputs"]
    assert out["name"] == "logits" and out["shape"] == [2, 4] and out["datatype"] == "FP32"
    from helpers.models import tiny_reference

    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 4), tiny_reference(x), rtol=1e-4, atol=1e-5)
    # Nested data works too.
    nested = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 3, 8, 8], "data": x.tolist()}]}
    assert call(tiny, "POST", "/v2/models/tiny/infer", nested)[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "inputs"),
        ({"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1]}]}, 400, "no input 'nope'"),
        ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [1, 2]}]}, 400, "shape"),
        ({"inputs": [{"name": "pixels", "datatype": "INT64", "shape": [1], "data": [1]}]}, 400, "must be FP32"),
        ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@@"]}]}, 400, "base64"),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(b"not an image").decode()],
                    }
                ]
            },
            400,
            "not an image",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "datatype": "FP32",
                        "shape": [1, 3, 8, 8],
                        "parameters": {"binary_data_size": 768},
                    }
                ]
            },
            400,
            "binary tensor data extension",
        ),
    ],
)
def test_oip_infer_errors(tiny, body, status, message):
    got, _, text = call(tiny, "POST", "/v2/models/tiny/infer", body)
    assert got == status, text
    error = json.loads(text)["error"]
    assert isinstance(error, str) and message in error


def test_predict_routes(tiny):
    red = jpeg_bytes(Image.new("RGB", (20, 20), (250, 0, 0)), quality=95)
    for path in ("/predict", "/invocations", "/"):
        status, _, body = call(tiny, "POST", path, {"image": base64.b64encode(red).decode()})
        assert status == 200 and json.loads(body)[0]["className"] == "red"
