"""The function: one model, loaded once, answering every event shape the seeds send.

    function = Function.from_env()           # at init: resolve, load, warm up, log the phases
    function(event, context)                 # per request: recognise, read, predict, answer

Direct invokes get plain JSON in the configured shape (`LAMBDALITE_RESPONSE`: `djl` (default),
`scores` or `top1`) and failures raise typed `LambdaliteError`s, so Lambda reports a meaningful
`errorType`. Gateway and Function URL events get a proxy response in their own format and
failures become `{"error": {"type", "message"}}` with a 4xx/5xx status. No traceback reaches a
client; unexpected errors are logged (with traceback) and answered as an internal error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import inputs as inputs_
from .errors import BundleError, ImageDecodeError, LambdaliteError, ModelNotFoundError
from .events import infer
from .model import Model
from .types import LambdaContext, ResponseShape
from .web import HttpRequest, HttpResponse, json_response

__all__ = ["SHAPES", "Function", "InternalError", "log_json", "model_reference_from_env", "shape_result"]

SHAPES: tuple[ResponseShape, ...] = ("djl", "scores", "top1")
MAX_BODY_BYTES = 6 * 2**20  # Lambda's synchronous payload limit
_TEXT_HINT = (
    " — the gateway delivered the upload as text, which corrupts binary data: add image/* and "
    "multipart/form-data to the REST API's binary media types (BinaryMediaTypes)"
)


class InternalError(LambdaliteError):
    """An unexpected failure inside the function; details are in the function's logs only."""


def log_json(event: str, **fields: Any) -> None:
    """One structured log line (CloudWatch keeps each stdout line as a record). Never image data."""
    print(json.dumps({"event": event, **fields}, separators=(",", ":"), default=str), flush=True)


def model_reference_from_env(env: Mapping[str, str]) -> str:
    """Which model this function serves: LAMBDALITE_MODEL, seed 004's MODEL_BUCKET/MODEL_KEY,
    or a bundle shipped next to the code in $LAMBDA_TASK_ROOT."""
    explicit = env.get("LAMBDALITE_MODEL")
    if explicit:
        return explicit
    if env.get("MODEL_BUCKET") or env.get("MODEL_KEY"):
        from .sources import reference_from_env  # quotes the key, pins MODEL_SHA256, names a missing half

        reference = reference_from_env(env)
        if reference:
            return reference
    root = Path(env.get("LAMBDA_TASK_ROOT") or os.getcwd())
    for candidate in (root / "model", root):
        if (candidate / "lambdalite.json").is_file():
            return str(candidate)
    bundles = sorted(p.parent for p in root.glob("*/lambdalite.json"))
    if len(bundles) == 1:
        return str(bundles[0])
    raise ModelNotFoundError(
        "no model configured: set LAMBDALITE_MODEL (a zoo name, bundle path, .tar.gz, https:// or s3:// "
        f"reference), or MODEL_BUCKET and MODEL_KEY, or ship a bundle in {root / 'model'}"
    )


def shape_result(result: Any, shape: ResponseShape) -> Any:
    """One image's result in the response shape; non-classification results pass through."""
    if not isinstance(result, list) or shape == "djl":
        return result
    if shape == "scores":
        return {r["className"]: r["probability"] for r in result}
    best = result[0]
    return {"class": best["className"], "confidence": best["probability"]}


class Function:
    def __init__(
        self,
        model: Model,
        *,
        shape: ResponseShape = "djl",
        max_body_bytes: int = MAX_BODY_BYTES,
        max_image_bytes: int | None = None,
        fetch: Callable[[str], bytes] | None = None,
        routes: Callable[[Function, HttpRequest], HttpResponse | None] | None = None,
    ) -> None:
        if shape not in SHAPES:
            raise BundleError(f"LAMBDALITE_RESPONSE must be one of {', '.join(SHAPES)}, not {shape!r}")
        self.model = model
        self.shape = shape
        self.max_body_bytes = max_body_bytes
        self.max_image_bytes = max_image_bytes or max_body_bytes
        self._fetch = fetch
        if routes is None:
            from .routes import route as routes
        self.routes = routes
        labels = getattr(model.task, "labels", None)
        # Seed 001 returns a score for every class; the other shapes default to the manifest's top_k.
        self.scores_top_k = len(labels) if shape == "scores" and labels is not None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Function:
        """Resolve and load the model at init, warm it up, and log the cold start's phases."""
        env = os.environ if env is None else env
        t0 = time.perf_counter()
        from .model import load_model

        reference = model_reference_from_env(env)
        model = load_model(reference, warmup=True)
        shape = env.get("LAMBDALITE_RESPONSE", "djl")
        function = cls(
            model,
            shape=shape,  # type: ignore[arg-type]
            max_body_bytes=int(env.get("LAMBDALITE_MAX_BODY_BYTES", MAX_BODY_BYTES)),
        )
        t = model.timings
        log_json(
            "cold_start",
            model=model.name,
            task=model.bundle.manifest.task,
            engine=model.bundle.manifest.engine,
            reference=reference,
            modelFetchMs=round(t.get("resolve_ms", 0.0), 2),
            importsMs=round(t.get("imports_ms", 0.0), 2),
            sessionMs=round(t.get("session_ms", 0.0), 2),
            firstRunMs=round(t.get("warmup_ms", 0.0), 2),
            initMs=round((time.perf_counter() - t0) * 1e3, 2),
        )
        return function

    # -- per request -------------------------------------------------------------------------

    def __call__(self, event: Any, context: LambdaContext | None = None) -> Any:
        start = time.perf_counter()
        request_id = getattr(context, "aws_request_id", None)
        source = infer(event)
        if source is None:
            return self._direct(event, request_id, start)
        fields: dict[str, Any] = {}
        try:
            request = source.request()
        except LambdaliteError as exc:
            response = self.error_response(exc)
        else:
            response = self.handle_http(request, request_id, fields)
        log_json(
            "request",
            requestId=request_id,
            source=source.name,
            status=response.status,
            durationMs=round((time.perf_counter() - start) * 1e3, 3),
            **fields,
        )
        return source.response(response)

    def _direct(self, event: Any, request_id: str | None, start: float) -> Any:
        try:
            parsed = inputs_.from_json(event, max_bytes=self.max_image_bytes)
            results = self.predict(parsed)
        except LambdaliteError as exc:
            log_json(
                "request",
                requestId=request_id,
                source="direct",
                error=exc.type_name,
                message=str(exc),
                durationMs=round((time.perf_counter() - start) * 1e3, 3),
            )
            raise exc.with_traceback(None) from None
        except Exception as exc:
            self._log_unexpected(exc, request_id)
            raise InternalError(f"internal error (request {request_id}); see the function's logs") from None
        body = self._body(parsed, results)
        log_json(
            "request",
            requestId=request_id,
            source="direct",
            status=200,
            durationMs=round((time.perf_counter() - start) * 1e3, 3),
            **self._result_fields(parsed, results),
        )
        if self.shape == "top1":
            return {"statusCode": 200, "body": body}  # seed 004's envelope for direct invokes
        return body

    def handle_http(
        self, request: HttpRequest, request_id: str | None = None, log: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Answer an HTTP request: the function's own routes first, else a prediction.

        `log` collects what the request's log line should say (images, top-1...)."""
        try:
            if self.routes is not None:
                routed = self.routes(self, request)
                if routed is not None:
                    return routed
            if request.method not in ("GET", "POST", "PUT"):
                return json_response(
                    {
                        "error": {
                            "type": "MethodNotAllowed",
                            "message": f"{request.method} is not supported; POST an image",
                        }
                    },
                    405,
                )
            return self.predict_http(request, log)
        except LambdaliteError as exc:
            if log is not None:
                log.update(error=exc.type_name, message=str(exc))
            return self.error_response(exc)
        except Exception as exc:
            self._log_unexpected(exc, request_id)
            return self.error_response(InternalError(f"internal error (request {request_id})"))

    def predict_http(self, request: HttpRequest, log: dict[str, Any] | None = None) -> HttpResponse:
        parsed = inputs_.from_request(request, max_bytes=self.max_body_bytes)
        try:
            results = self.predict(parsed)
        except ImageDecodeError as exc:
            if request.text_body and request.source == "rest":
                raise ImageDecodeError(str(exc) + _TEXT_HINT) from exc
            raise
        if log is not None:
            log.update(self._result_fields(parsed, results))
        return json_response(self._body(parsed, results))

    def predict(self, parsed: inputs_.Inputs) -> list[Any]:
        images = [self.fetch(i) if isinstance(i, str) else i for i in parsed.images]
        options = dict(parsed.options)
        if self.scores_top_k is not None and "top_k" not in options:
            options["top_k"] = self.scores_top_k
        return self.model.predict(images, **options)

    def fetch(self, url: str) -> bytes:
        if self._fetch is None:
            from .fetch import FetchPolicy, fetch

            policy = FetchPolicy.from_env()
            self._fetch = lambda u: fetch(u, policy)
        return self._fetch(url)

    def _body(self, parsed: inputs_.Inputs, results: list[Any]) -> Any:
        shaped = [shape_result(r, self.shape) for r in results]
        return shaped if parsed.batch else shaped[0]

    @staticmethod
    def error_response(exc: LambdaliteError) -> HttpResponse:
        return json_response({"error": {"type": exc.type_name, "message": str(exc)}}, exc.status)

    @staticmethod
    def _result_fields(parsed: inputs_.Inputs, results: list[Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "images": len(parsed.images),
            "imageBytes": parsed.byte_count,
            "urls": sum(isinstance(i, str) for i in parsed.images),
        }
        first = results[0] if results else None
        if isinstance(first, list) and first:
            fields.update(top1=first[0]["className"], confidence=round(first[0]["probability"], 4))
        elif isinstance(first, dict) and "caption" in first:
            fields.update(caption=first["caption"])
        return fields

    @staticmethod
    def _log_unexpected(exc: BaseException, request_id: str | None) -> None:
        lines = traceback.format_exception(exc)
        # One record: CloudWatch splits on newlines, awslambdaric joins a record's lines with \r.
        print(
            f"[ERROR] {type(exc).__name__}: {exc} (request {request_id})\r" + "".join(lines).replace("\n", "\r"),
            file=sys.stderr,
            flush=True,
        )
