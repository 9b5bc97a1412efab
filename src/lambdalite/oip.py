"""The KServe Open Inference Protocol v2 (REST), served by the function itself.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     {"live": true} / {"ready": true}
    GET  /v2/models                            {"models": [name]}
    GET  /v2/models/{name}[/versions/{v}]      model metadata (inputs, outputs, platform)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

`infer` takes JSON tensors for the model's own inputs (row-major `data`, flat or nested, with
`shape` and `datatype`) or encoded images as a BYTES input (each element a base64 string; the
bundle's preprocessing is applied). It answers the model's outputs as tensors; an output asked
for with `"parameters": {"classification": K}` comes back as K BYTES strings
"probability:index:label" (Triton's classification extension). Errors are `{"error": "..."}`
with 400, 404 or 500. The model is always loaded (the function loads it at init), so ready
is always true.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import LambdaliteError
from .web import HttpRequest, HttpResponse, json_response

if TYPE_CHECKING:
    from .model import Model

__all__ = ["DATATYPES", "handle"]

DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_NUMPY_TO_OIP = {np.dtype(v).name: k for k, v in DATATYPES.items()}
_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?/?$")
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "litert": "tensorflow_tflite", "torchscript": "pytorch_torchscript"}


class _OipError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> HttpResponse:
    return json_response({"error": message}, status)


def handle(model: Model, request: HttpRequest) -> HttpResponse | None:
    """Answer an OIP request, or None when the path is not part of the protocol."""
    path = request.path.rstrip("/") or "/"
    if not (path == "/v2" or path.startswith("/v2/")):
        return None
    try:
        return _route(model, request, path)
    except _OipError as exc:
        return _error(exc.status, str(exc))
    except LambdaliteError as exc:
        return _error(exc.status if exc.status < 500 else 500, str(exc))


def _route(model: Model, request: HttpRequest, path: str) -> HttpResponse:
    get = request.method in ("GET", "HEAD")
    if path == "/v2" and get:
        return json_response({"name": "lambdalite", "version": __version__, "extensions": ["classification"]})
    if path == "/v2/health/live" and get:
        return json_response({"live": True})
    if path == "/v2/health/ready" and get:
        return json_response({"ready": True})
    if path == "/v2/models" and get:
        return json_response({"models": [model.name]})
    match = _MODEL_PATH.match(path)
    if match is None:
        raise _OipError(404, f"no such endpoint: {request.method} {request.path}")
    manifest = model.bundle.manifest
    if match["name"] != model.name:
        raise _OipError(404, f"unknown model {match['name']!r}; this function serves {model.name!r}")
    if match["version"] is not None and match["version"] != manifest.version:
        raise _OipError(404, f"unknown version {match['version']!r} of {model.name}; it has {manifest.version!r}")
    rest = match["rest"]
    if rest == "/ready" and get:
        return json_response({"name": model.name, "ready": True})
    if rest is None and get:
        return json_response(_metadata(model))
    if rest == "/infer" and request.method == "POST":
        return json_response(_infer(model, request.json()))
    raise _OipError(405 if rest else 404, f"{request.method} is not supported on {request.path}")


def _engine(model: Model) -> Any:
    return getattr(model.task, "engine", None)


def _metadata(model: Model) -> dict[str, Any]:
    manifest = model.bundle.manifest
    engine = _engine(model)
    inputs = [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    outputs: list[dict[str, Any]] = []
    if engine is not None:
        inputs += [
            {"name": t.name, "datatype": _NUMPY_TO_OIP.get(t.dtype, "BYTES"), "shape": list(t.shape)}
            for t in engine.inputs
        ]
        outputs = [
            {"name": t.name, "datatype": _NUMPY_TO_OIP.get(t.dtype, "BYTES"), "shape": list(t.shape)}
            for t in engine.outputs
        ]
    else:
        outputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    return {
        "name": model.name,
        "versions": [manifest.version],
        "platform": _PLATFORMS.get(manifest.engine, manifest.engine),
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"task": manifest.task},
    }


def _tensor(spec: Any, index: int) -> tuple[str, str, list[int], Any]:
    if not isinstance(spec, dict):
        raise _OipError(400, f"inputs[{index}] must be an object")
    name, datatype, shape, data = spec.get("name"), spec.get("datatype"), spec.get("shape"), spec.get("data")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise _OipError(400, f"inputs[{index}] needs a name and a datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _OipError(400, f"inputs[{index}] ({name}): shape must be a list of non-negative integers")
    if data is None:
        if isinstance(spec.get("parameters"), dict) and "binary_data_size" in spec["parameters"]:
            raise _OipError(400, "the binary tensor data extension is not supported; send JSON data")
        raise _OipError(400, f"inputs[{index}] ({name}) has no data")
    return name, datatype, shape, data


def _decode_image(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _OipError(400, f"{where}: BYTES elements must be base64 strings of encoded images")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _OipError(400, f"{where}: not valid base64") from exc


def _infer(model: Model, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise _OipError(400, 'the request needs "inputs": a non-empty list of tensors')
    requested = body.get("outputs")
    if requested is not None and not isinstance(requested, list):
        raise _OipError(400, '"outputs" must be a list')
    tensors = [_tensor(spec, i) for i, spec in enumerate(body["inputs"])]
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.bundle.manifest.version}
    if "id" in body:
        response["id"] = body["id"]
    engine = _engine(model)
    if any(t[1] == "BYTES" for t in tensors):
        if len(tensors) != 1:
            raise _OipError(400, "send encoded images as one BYTES input")
        name, _, shape, data = tensors[0]
        flat = list(np.asarray(data, dtype=object).reshape(-1))
        images = [_decode_image(v, f"{name}[{i}]") for i, v in enumerate(flat)]
        if not images:
            raise _OipError(400, f"{name} holds no images")
        if engine is None or not hasattr(model.task, "probabilities"):
            texts = [r.get("caption", "") if isinstance(r, dict) else str(r) for r in model.predict(images)]
            response["outputs"] = [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
            return response
        preprocess = model.task.preprocess  # type: ignore[attr-defined]
        batch = np.stack([preprocess(image) for image in images])
        feeds = {model.task.input_name: batch}  # type: ignore[attr-defined]
    else:
        if engine is None:
            raise _OipError(400, "this model takes encoded images: send one BYTES input of base64 strings")
        feeds = {}
        known = {t.name: t for t in engine.inputs}
        for name, datatype, shape, data in tensors:
            if name not in known:
                raise _OipError(400, f"the model has no input {name!r} (it has {', '.join(known)})")
            if datatype not in DATATYPES:
                raise _OipError(400, f"unsupported datatype {datatype!r} for {name}")
            try:
                array: np.ndarray[Any, Any] = np.asarray(data, dtype=DATATYPES[datatype]).reshape(shape)
            except (ValueError, TypeError) as exc:
                raise _OipError(400, f"{name}: data does not fit shape {shape} as {datatype}: {exc}") from exc
            expected = known[name].dtype
            if array.dtype.name != expected:
                raise _OipError(400, f"{name} must be {_NUMPY_TO_OIP.get(expected, expected)}, not {datatype}")
            feeds[name] = array
    outputs = engine.run(feeds)
    return response | {"outputs": _outputs(model, engine, outputs, requested)}


def _outputs(model: Model, engine: Any, outputs: list[Any], requested: list[Any] | None) -> list[dict[str, Any]]:
    by_name = {t.name: np.asarray(o) for t, o in zip(engine.outputs, outputs, strict=True)}
    wanted = requested or [{"name": name} for name in by_name]
    result = []
    for spec in wanted:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or name not in by_name:
            raise _OipError(400, f"the model has no output {name!r} (it has {', '.join(by_name)})")
        array = by_name[name]
        k = (spec.get("parameters") or {}).get("classification")
        if k is not None:
            result.append(_classification(model, array, k, name))
            continue
        result.append(
            {
                "name": name,
                "datatype": _NUMPY_TO_OIP.get(array.dtype.name, "FP32"),
                "shape": list(array.shape),
                "data": array.reshape(-1).tolist(),
            }
        )
    return result


def _classification(model: Model, array: Any, k: Any, name: str) -> dict[str, Any]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise _OipError(400, "the classification parameter must be a positive integer")
    labels = getattr(model.task, "labels", None)
    if labels is None:
        raise _OipError(400, "this model has no class labels")
    from .tasks.classification import softmax

    scores = array.reshape(array.shape[0], -1).astype(np.float64)
    if model.bundle.manifest.output.kind == "logits":
        scores = softmax(scores)
    k = min(k, scores.shape[1])
    data = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:k]
        data += [f"{row[i]:.6f}:{i}:{labels[i]}" for i in top]
    return {"name": name, "datatype": "BYTES", "shape": [scores.shape[0], k], "data": data}
