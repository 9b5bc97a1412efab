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
with 400, 404, 405 or 500 (`render_error`). The model is always loaded (the function loads it at
init), so ready is always true. `routes(model)` is this protocol's part of the function's
routing table.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from lambdalite import __version__
from lambdalite.engines import TensorInfo
from lambdalite.errors import InputError, LambdaliteError, MethodNotAllowedError, RouteNotFoundError
from lambdalite.function.routes import Route
from lambdalite.function.web import HttpRequest, HttpResponse, json_response
from lambdalite.model import Model
from lambdalite.settings import MAX_BATCH

__all__ = ["DATATYPES", "render_error", "routes"]

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
_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "litert": "tensorflow_tflite", "torchscript": "pytorch_torchscript"}


def render_error(exc: LambdaliteError) -> HttpResponse:
    """OIP's error answer: `{"error": "<message>"}`; server-side failures are 500."""
    headers = {"Allow": ", ".join(exc.allow)} if isinstance(exc, MethodNotAllowedError) and exc.allow else None
    return json_response({"error": str(exc)}, exc.status if exc.status < 500 else 500, headers)


def routes(model: Model, *, max_batch: int = MAX_BATCH) -> list[Route]:
    """The protocol's routes for `model`; every other path under /v2 is a 404 in its format.

    `infer` takes at most `max_batch` images (or samples of a tensor input) per request."""

    def checked(match: re.Match[str]) -> None:
        manifest = model.bundle.manifest
        if match["name"] != model.name:
            raise RouteNotFoundError(f"unknown model {match['name']!r}; this function serves {model.name!r}")
        if match["version"] is not None and match["version"] != manifest.version:
            raise RouteNotFoundError(
                f"unknown version {match['version']!r} of {model.name}; it has {manifest.version!r}"
            )

    def server(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        return json_response({"name": "lambdalite", "version": __version__, "extensions": ["classification"]})

    def live(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        return json_response({"live": True})

    def ready(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        return json_response({"ready": True})

    def models(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        return json_response({"models": [model.name]})

    def metadata(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        checked(match)
        return json_response(_metadata(model))

    def model_ready(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        checked(match)
        return json_response({"name": model.name, "ready": True})

    def infer(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
        checked(match)
        return json_response(_infer(model, request.json(), max_batch))

    return [
        Route(r"/v2/?", {"GET": server}, render_error),
        Route(r"/v2/health/live/?", {"GET": live}, render_error),
        Route(r"/v2/health/ready/?", {"GET": ready}, render_error),
        Route(r"/v2/models/?", {"GET": models}, render_error),
        Route(_MODEL + r"/?", {"GET": metadata}, render_error),
        Route(_MODEL + r"/ready/?", {"GET": model_ready}, render_error),
        Route(_MODEL + r"/infer/?", {"POST": infer}, render_error),
        Route(r"/v2/.*", {}, render_error),
    ]


def _metadata(model: Model) -> dict[str, Any]:
    manifest = model.bundle.manifest
    tensors = model.task.capabilities.tensors
    inputs = [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    outputs: list[dict[str, Any]] = []
    if tensors is not None:
        inputs += [
            {"name": t.name, "datatype": _NUMPY_TO_OIP.get(t.dtype, "BYTES"), "shape": list(t.shape)}
            for t in tensors.engine.inputs
        ]
        outputs = [
            {"name": t.name, "datatype": _NUMPY_TO_OIP.get(t.dtype, "BYTES"), "shape": list(t.shape)}
            for t in tensors.engine.outputs
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
        raise InputError(f"inputs[{index}] must be an object")
    name, datatype, shape, data = spec.get("name"), spec.get("datatype"), spec.get("shape"), spec.get("data")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InputError(f"inputs[{index}] needs a name and a datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InputError(f"inputs[{index}] ({name}): shape must be a list of non-negative integers")
    parameters = _parameters(spec, f"inputs[{index}] ({name})")
    if data is None:
        if "binary_data_size" in parameters:
            raise InputError("the binary tensor data extension is not supported; send JSON data")
        raise InputError(f"inputs[{index}] ({name}) has no data")
    return name, datatype, shape, data


def _parameters(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """An object's `parameters`: an object when present (the protocol's `$parameters`)."""
    parameters = spec.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InputError(f'{where}: "parameters" must be an object, not {type(parameters).__name__}')
    return parameters


def _flat(data: Any, name: str) -> list[Any]:
    """The elements of a (possibly nested) `data` list, row-major."""
    try:
        return list(np.asarray(data, dtype=object).reshape(-1))
    except (ValueError, TypeError, RecursionError) as exc:
        raise InputError(f"{name}: data must be a list, flat or nested as the shape: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _check_shape(name: str, shape: list[int], declared: tuple[int, ...], max_batch: int) -> None:
    """A tensor's shape against the model input's: same rank, every fixed axis equal, a batch
    axis no larger than the batch cap."""
    if 0 in shape:
        raise InputError(f"{name} has shape {shape}: no samples")
    if declared and len(shape) != len(declared):
        raise InputError(f"{name} has shape {shape}; the model takes {len(declared)} axes {_shape_text(declared)}")
    for axis, (got, want) in enumerate(zip(shape, declared, strict=False)):
        if want > 0 and got != want:
            raise InputError(f"{name} has shape {shape}; the model takes {_shape_text(declared)} (axis {axis})")
    if shape and (not declared or declared[0] <= 0) and shape[0] > max_batch:
        raise InputError(f"{name} holds {shape[0]} samples; at most {max_batch} per request (LAMBDALITE_MAX_BATCH)")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("-1" if d <= 0 else str(d) for d in shape) + "]"


def _decode_image(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where}: BYTES elements must be base64 strings of encoded images")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}: not valid base64") from exc


def _infer(model: Model, body: Any, max_batch: int = MAX_BATCH) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError('the request needs "inputs": a non-empty list of tensors')
    _parameters(body, "the request")
    requested = body.get("outputs")
    if requested is not None and not isinstance(requested, list):
        raise InputError('"outputs" must be a list')
    for i, spec in enumerate(requested or []):
        if not isinstance(spec, dict):
            raise InputError(f"outputs[{i}] must be an object with a name")
        _parameters(spec, f"outputs[{i}]")
    tensors = [_tensor(spec, i) for i, spec in enumerate(body["inputs"])]
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.bundle.manifest.version}
    if "id" in body:
        response["id"] = body["id"]
    access = model.task.capabilities.tensors
    if any(t[1] == "BYTES" for t in tensors):
        if len(tensors) != 1:
            raise InputError("send encoded images as one BYTES input")
        name, _, shape, data = tensors[0]
        flat = _flat(data, name)
        if not flat:
            raise InputError(f"{name} holds no images")
        if len(flat) > max_batch:
            raise InputError(f"{name} holds {len(flat)} images; at most {max_batch} per request (LAMBDALITE_MAX_BATCH)")
        images = [_decode_image(v, f"{name}[{i}]") for i, v in enumerate(flat)]
        if access is None:  # a captioner or a bundle's own code: the task answers, as text
            texts = [r.get("caption", "") if isinstance(r, dict) else str(r) for r in model.predict(images)]
            response["outputs"] = [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
            return response
        batch = np.stack([access.preprocess(image) for image in images])
        feeds = {access.input_name: batch}
    else:
        if access is None:
            raise InputError("this model takes encoded images: send one BYTES input of base64 strings")
        feeds = {}
        known = {t.name: t for t in access.engine.inputs}
        for name, datatype, shape, data in tensors:
            if name not in known:
                raise InputError(f"the model has no input {name!r} (it has {', '.join(known)})")
            if datatype not in DATATYPES:
                raise InputError(f"unsupported datatype {datatype!r} for {name}")
            expected = known[name].dtype
            if np.dtype(DATATYPES[datatype]).name != expected:
                raise InputError(f"{name} must be {_NUMPY_TO_OIP.get(expected, expected)}, not {datatype}")
            _check_shape(name, shape, known[name].shape, max_batch)
            try:
                array: np.ndarray[Any, Any] = np.asarray(data, dtype=DATATYPES[datatype]).reshape(shape)
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                raise InputError(f"{name}: data does not fit shape {shape} as {datatype}: {_short(exc)}") from None
            feeds[name] = array
    outputs = access.engine.run(feeds)
    return response | {"outputs": _outputs(model, access.engine.outputs, outputs, requested)}


def _outputs(
    model: Model, names: Sequence[TensorInfo], outputs: list[Any], requested: list[Any] | None
) -> list[dict[str, Any]]:
    by_name = {t.name: np.asarray(o) for t, o in zip(names, outputs, strict=True)}
    wanted = requested or [{"name": name} for name in by_name]
    result = []
    for spec in wanted:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or name not in by_name:
            raise InputError(f"the model has no output {name!r} (it has {', '.join(by_name)})")
        array = by_name[name]
        k = _parameters(spec, f"output {name}").get("classification")
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
        raise InputError("the classification parameter must be a positive integer")
    labels = model.task.capabilities.labels
    if labels is None:
        raise InputError("this model has no class labels")
    from lambdalite.tasks.classification import softmax

    scores = array.reshape(array.shape[0], -1).astype(np.float64)
    if model.bundle.manifest.output.kind == "logits":
        scores = softmax(scores)
    k = min(k, scores.shape[1])
    data = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:k]
        data += [f"{row[i]:.6f}:{i}:{labels[i]}" for i in top]
    return {"name": name, "datatype": "BYTES", "shape": [scores.shape[0], k], "data": data}
