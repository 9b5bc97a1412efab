"""The function: one model, loaded once, answering every event shape the seeds send.

    function = Function.from_settings(Settings.from_env())   # at init: resolve, load, warm up, log
    function(event, context)                                  # per request: recognise, read, answer

Direct invokes get plain JSON in the configured shape (`LAMBDALITE_RESPONSE`: `djl` (default),
`scores` or `top1`) and failures raise typed `LambdaliteError`s, so Lambda reports a meaningful
`errorType`. Gateway and Function URL events get a proxy response in their own format, routed by
the one routing table (`ROUTES` below: the page, OpenAPI, the Open Inference Protocol, and
predictions on every other path), and failures become `{"error": {"type", "message"}}` with a
4xx/5xx status. No traceback reaches a client; unexpected errors are logged (with traceback)
and answered as an internal error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambdalite.core.images import CLOCK
from lambdalite.errors import ImageDecodeError, InternalError, LambdaliteError, ModelNotFoundError
from lambdalite.function import inputs as inputs_
from lambdalite.function import logs
from lambdalite.function.events import batch_kind, infer
from lambdalite.function.logs import COLD_START_METRICS, log_json, log_request, log_unexpected, result_fields
from lambdalite.function.routes import Route, Router
from lambdalite.function.types import LambdaContext
from lambdalite.function.web import HttpRequest, HttpResponse, json_response
from lambdalite.model import Model
from lambdalite.settings import SHAPES, ResponseShape, Settings
from lambdalite.sources.references import configured_reference
from lambdalite.sources.zoo import Builder

__all__ = ["SHAPES", "Function", "model_reference", "shape_result"]

_TEXT_HINT = (
    " — the gateway delivered the upload as text, which corrupts binary data: add image/* and "
    "multipart/form-data to the REST API's binary media types (BinaryMediaTypes)"
)


def model_reference(settings: Settings) -> str:
    """Which model this function serves: LAMBDALITE_MODEL, seed 004's MODEL_BUCKET/MODEL_KEY,
    or a bundle shipped next to the code in $LAMBDA_TASK_ROOT."""
    reference = configured_reference(settings)
    if reference:
        return reference
    root = settings.task_root or Path.cwd()
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
        settings: Settings | None = None,
        *,
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or Settings()
        self.shape: ResponseShape = self.settings.response
        self._fetch = fetch
        labels = model.task.capabilities.labels
        # Seed 001 returns a score for every class; the other shapes default to the manifest's top_k.
        self.scores_top_k = len(labels) if self.shape == "scores" and labels is not None else None
        self.router = Router(self.routes())
        manifest = model.bundle.manifest
        logs.configure(self.settings, model=manifest.name, version=manifest.version)

    @classmethod
    def from_settings(cls, settings: Settings, *, build_zoo: Builder | None = None) -> Function:
        """Resolve and load the model at init, warm it up, and log the cold start's phases.

        `build_zoo` builds a zoo model the cache lacks (the toolkit's `invoke-local` passes it;
        a deployed function serves the bundle it ships)."""
        t0 = time.perf_counter()
        reference = model_reference(settings)
        from lambdalite.model import load_model

        model = load_model(reference, settings=settings, warmup=True, build_zoo=build_zoo)
        function = cls(model, settings)
        t = model.timings
        log_json(
            "cold_start",
            metrics=COLD_START_METRICS,
            model=model.name,
            task=model.bundle.manifest.task,
            engine=model.bundle.manifest.engine,
            reference=reference,
            modelFetchMs=round(t.get("resolve_ms", 0.0), 2),
            importsMs=round(t.get("imports_ms", 0.0), 2),
            sessionMs=round(t.get("session_ms", 0.0), 2),
            firstRunMs=round(t.get("warmup_ms", 0.0), 2),
            initMs=round((time.perf_counter() - t0) * 1e3, 2),
            coldStart=1,
        )
        return function

    # -- the routing table ------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Every HTTP route this function answers, in the order they are matched."""
        from lambdalite.function import oip

        def page(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
            if request.param("url"):  # GET /?url=... predicts, as seed 001's page does
                return self.predict_http(request, log)
            from lambdalite.function.docs import page

            return page(self.model.bundle.manifest)

        def openapi(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
            from lambdalite.function.docs import openapi

            return json_response(openapi(self.model.bundle.manifest, self.shape))

        def favicon(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
            return HttpResponse(204, {"Content-Type": "image/x-icon"}, b"")

        def predict(request: HttpRequest, match: re.Match[str], log: dict[str, Any]) -> HttpResponse:
            return self.predict_http(request, log)

        predicting = {"GET": predict, "POST": predict, "PUT": predict}
        return [
            Route(r"/(?:index\.html)?", {"GET": page, "POST": predict, "PUT": predict}),
            Route(r"/openapi\.json", {"GET": openapi}),
            Route(r"/favicon\.ico", {"GET": favicon}),
            *oip.routes(self.model, max_batch=self.settings.max_batch),
            # /predict, /invocations (seed 004) and any other path a gateway proxies: a prediction.
            Route(r".*", predicting),
        ]

    # -- per request -------------------------------------------------------------------------

    def __call__(self, event: Any, context: LambdaContext | None = None) -> Any:
        logs.begin(context)
        try:
            return self._answer(event, context)
        finally:
            logs.end()

    def _answer(self, event: Any, context: LambdaContext | None) -> Any:
        start = time.perf_counter()
        request_id = context.aws_request_id if context is not None else None
        source = infer(event)
        if source is None:
            kind = batch_kind(event)
            if kind is not None:  # S3, SQS, SNS, EventBridge, S3 Batch Operations: function/batch.py
                from lambdalite.function.batch import handle

                return handle(self, event, kind, context)
            return self._direct(event, request_id, start)
        fields: dict[str, Any] = {}
        error: LambdaliteError | None
        origin: str | None = None
        try:
            request = source.request()
        except LambdaliteError as exc:
            from lambdalite.function.routes import error_response

            response, error = error_response(exc), exc
        else:
            origin = request.headers.get("origin")
            response, error = self.handle_http(request, request_id, fields)
        log_request(
            request_id=request_id,
            source=source.name,
            status=response.status,
            error=error,
            duration_ms=(time.perf_counter() - start) * 1e3,
            **fields,
        )
        if self.settings.cors_origins:
            response = self._cors(origin, response)
        return source.response(response)

    def _cors(self, origin: str | None, response: HttpResponse) -> HttpResponse:
        """CORS headers for an allowed origin (a REST API passes the function's headers through;
        an HTTP API or Function URL adds its own, from the template's CorsConfiguration)."""
        allowed = self.settings.cors_origins
        if not origin or (origin not in allowed and "*" not in allowed):
            return response
        headers = {
            **response.headers,
            "Access-Control-Allow-Origin": "*" if "*" in allowed else origin,
            "Access-Control-Allow-Headers": "content-type,x-api-key,authorization,x-amz-date,x-amz-security-token",
        }
        if "*" not in allowed:
            headers["Vary"] = "Origin"
        return response._replace(headers=headers)

    def _direct(self, event: Any, request_id: str | None, start: float) -> Any:
        try:
            parsed = inputs_.from_json(event, max_bytes=self.settings.max_body_bytes, max_batch=self.settings.max_batch)
            phases: dict[str, Any] = {}
            results = self.predict(parsed, phases, s3=True)
        except LambdaliteError as exc:
            log_request(
                request_id=request_id, source="direct", error=exc, duration_ms=(time.perf_counter() - start) * 1e3
            )
            raise exc.with_traceback(None) from None
        except Exception as exc:
            raise self._internal(exc, request_id) from None
        body = self._body(parsed, results)
        log_request(
            request_id=request_id,
            source="direct",
            status=200,
            duration_ms=(time.perf_counter() - start) * 1e3,
            **self._result_fields(parsed, results),
            **phases,
        )
        if self.shape == "top1":
            return {"statusCode": 200, "body": body}  # seed 004's envelope for direct invokes
        return body

    def handle_http(
        self, request: HttpRequest, request_id: str | None = None, log: dict[str, Any] | None = None
    ) -> tuple[HttpResponse, LambdaliteError | None]:
        """Answer an HTTP request through the routing table; the error it ended with, if any.

        `log` collects what the request's log record should say (images, top-1...)."""
        return self.router.dispatch(
            request, {} if log is None else log, unexpected=lambda exc: self._internal(exc, request_id)
        )

    def predict_http(self, request: HttpRequest, log: dict[str, Any]) -> HttpResponse:
        parsed = inputs_.from_request(
            request, max_bytes=self.settings.max_body_bytes, max_batch=self.settings.max_batch
        )
        phases: dict[str, Any] = {}
        try:
            results = self.predict(parsed, phases)
        except ImageDecodeError as exc:
            if request.text_body and request.source == "rest":
                raise ImageDecodeError(str(exc) + _TEXT_HINT) from exc
            raise
        log.update(self._result_fields(parsed, results), **phases)
        return json_response(self._body(parsed, results))

    def predict(self, parsed: inputs_.Inputs, phases: dict[str, Any] | None = None, *, s3: bool = False) -> list[Any]:
        """The model's answers; `phases` gets how long fetching, decoding, preprocessing and the
        model itself (inference and postprocessing) took, in ms. `s3`: the request may name s3://
        objects (direct invokes and batch events, never HTTP)."""
        t0 = time.perf_counter()
        images = [self.fetch(i, s3=s3) if isinstance(i, str) else i for i in parsed.images]
        options = dict(parsed.options)
        if self.scores_top_k is not None and "top_k" not in options:
            options["top_k"] = self.scores_top_k
        t1 = time.perf_counter()
        CLOCK.take()
        results = self.model.predict(images, **options)
        total_ms = (time.perf_counter() - t1) * 1e3
        decode_ms, preprocess_ms = CLOCK.take()
        if phases is not None:
            if any(isinstance(i, str) for i in parsed.images):
                phases["fetchMs"] = round((t1 - t0) * 1e3, 3)
            phases.update(
                decodeMs=round(decode_ms, 3),
                preprocessMs=round(preprocess_ms, 3),
                inferenceMs=round(max(0.0, total_ms - decode_ms - preprocess_ms), 3),
            )
        return results

    def fetch(self, url: str, *, s3: bool = False) -> bytes:
        if s3 and url.startswith("s3://"):  # read with the function's role; an HTTP caller never gets here
            from lambdalite.function.storage import parse_s3_url, read_image

            return read_image(parse_s3_url(url), self.settings)
        if self._fetch is None:
            from lambdalite.function.urls import URLPolicy, fetch_image

            policy = URLPolicy.from_settings(self.settings)
            self._fetch = lambda u: fetch_image(u, policy)
        return self._fetch(url)

    def _body(self, parsed: inputs_.Inputs, results: list[Any]) -> Any:
        shaped = [shape_result(r, self.shape) for r in results]
        return shaped if parsed.batch else shaped[0]

    @staticmethod
    def _result_fields(parsed: inputs_.Inputs, results: list[Any]) -> dict[str, Any]:
        urls = sum(isinstance(i, str) for i in parsed.images)
        return result_fields(len(parsed.images), parsed.byte_count, urls, results)

    @staticmethod
    def _internal(exc: Exception, request_id: str | None) -> InternalError:
        log_unexpected(exc, request_id)
        return InternalError(f"internal error (request {request_id}); see the function's logs")
