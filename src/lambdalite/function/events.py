"""One small class per front door: recognise its events, read the request, write the response.

    source = infer(event)          # RestApi, HttpApi, or None for a direct invoke
    request = source.request()     # -> web.HttpRequest
    return source.response(http_response)

`RestApi` is API Gateway's REST proxy event (payload 1.0, also the HTTP API's 1.0 format);
`HttpApi` is payload 2.0, which Function URLs share (its `source` says "url" for those).

Batch sources are recognised here too, by their envelope alone (`batch_kind`): S3 event
notifications, SQS and SNS records, EventBridge's S3 events and S3 Batch Operations jobs. Reading
them is `lambdalite.function.batch`, imported only when such an event arrives. Anything else is a
direct invoke and never reaches this module.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs

from lambdalite.errors import EventError
from lambdalite.function.types import ProxyResponse
from lambdalite.function.web import HttpRequest, HttpResponse

__all__ = ["BATCH_KINDS", "SOURCES", "BatchKind", "HttpApi", "RestApi", "batch_kind", "infer"]


def _body(event: Mapping[str, Any]) -> tuple[bytes, bool]:
    """The body as bytes, and whether the gateway delivered it as text rather than base64."""
    body = event.get("body")
    if body is None:
        return b"", False
    if not isinstance(body, str):
        raise EventError("malformed event: body must be a string or null")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True), False
        except (binascii.Error, ValueError) as exc:
            raise EventError("malformed event: isBase64Encoded is true but the body is not base64") from exc
    # A text body is the request's bytes decoded as UTF-8 by the gateway (lossy for binary data).
    return body.encode("utf-8", "surrogatepass"), True


def _object(event: Mapping[str, Any], key: str, kind: str) -> Mapping[str, Any]:
    """`event[key]` when it is an object; {} when absent or null; EventError otherwise."""
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"malformed {kind} event: {key} must be an object or null, not {_type(value)}")
    return value


def _list(value: Any, what: str, kind: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventError(f"malformed {kind} event: {what} must be a list, not {_type(value)}")
    return value


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _proxy_body(response: HttpResponse) -> tuple[str, bool]:
    if response.is_text:
        return response.body.decode("utf-8", "replace"), False
    return base64.b64encode(response.body).decode("ascii"), True


class RestApi:
    """API Gateway REST proxy integration (payload 1.0)."""

    name = "rest"

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event

    @classmethod
    def infer(cls, event: Mapping[str, Any]) -> bool:
        return "httpMethod" in event and "requestContext" in event and event.get("version", "1.0") == "1.0"

    def request(self) -> HttpRequest:
        e = self.event
        kind = "REST API"
        headers: dict[str, str] = {}
        # multiValueHeaders holds every value; headers only the last. Either may be null.
        for name, values in _object(e, "multiValueHeaders", kind).items():
            headers[name.lower()] = ", ".join(str(v) for v in _list(values, f"multiValueHeaders.{name}", kind))
        for name, value in _object(e, "headers", kind).items():
            headers.setdefault(name.lower(), str(value))
        query: dict[str, list[str]] = {}
        for name, values in _object(e, "multiValueQueryStringParameters", kind).items():
            query[name] = [str(v) for v in _list(values, f"multiValueQueryStringParameters.{name}", kind)]
        for name, value in _object(e, "queryStringParameters", kind).items():
            query.setdefault(name, [str(value)])
        body, text = _body(e)
        path = e.get("path") or "/"
        method = e.get("httpMethod")
        if not isinstance(method, str) or not isinstance(path, str):
            raise EventError("malformed REST API event: httpMethod and path must be strings")
        return HttpRequest(method.upper(), path, query, headers, body, "rest", text)

    def response(self, response: HttpResponse) -> ProxyResponse:
        body, b64 = _proxy_body(response)
        return {"statusCode": response.status, "headers": dict(response.headers), "body": body, "isBase64Encoded": b64}


class HttpApi:
    """HTTP API payload 2.0, and Function URLs (same schema)."""

    name = "http"

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        context = event.get("requestContext") or {}
        self.name = "url" if ".lambda-url." in str(context.get("domainName", "")) else "http"

    @classmethod
    def infer(cls, event: Mapping[str, Any]) -> bool:
        context = event.get("requestContext")
        return event.get("version") == "2.0" and isinstance(context, dict) and "http" in context

    def request(self) -> HttpRequest:
        e = self.event
        kind = "HTTP API"
        context = e["requestContext"]
        http = _object(context, "http", kind)
        method = http.get("method")
        raw_path = e.get("rawPath") or http.get("path") or "/"
        if not isinstance(method, str) or not isinstance(raw_path, str):
            raise EventError("malformed HTTP API event: requestContext.http.method and rawPath must be strings")
        stage = context.get("stage")
        # With a named stage, rawPath carries it as a prefix ("/dev/predict").
        if isinstance(stage, str) and stage != "$default" and raw_path.startswith(f"/{stage}"):
            rest = raw_path[len(stage) + 1 :]
            if rest == "" or rest.startswith("/"):
                raw_path = rest or "/"
        headers = {str(k).lower(): str(v) for k, v in _object(e, "headers", kind).items()}
        cookies = _list(e.get("cookies"), "cookies", kind)
        if not all(isinstance(c, str) for c in cookies):
            raise EventError(f"malformed {kind} event: cookies must be a list of strings")
        if cookies and "cookie" not in headers:
            headers["cookie"] = "; ".join(cookies)
        raw_query = e.get("rawQueryString") or ""
        if not isinstance(raw_query, str):
            raise EventError(f"malformed {kind} event: rawQueryString must be a string, not {_type(raw_query)}")
        parameters = _object(e, "queryStringParameters", kind)
        query = (
            parse_qs(raw_query.lstrip("?"), keep_blank_values=True)
            if raw_query
            else {k: [str(v)] for k, v in parameters.items()}
        )
        body, text = _body(e)
        return HttpRequest(method.upper(), raw_path, query, headers, body, self.name, text)

    def response(self, response: HttpResponse) -> ProxyResponse:
        body, b64 = _proxy_body(response)
        return {"statusCode": response.status, "headers": dict(response.headers), "body": body, "isBase64Encoded": b64}


SOURCES: tuple[type[RestApi] | type[HttpApi], ...] = (HttpApi, RestApi)


def infer(event: Any) -> RestApi | HttpApi | None:
    """The front door that sent `event`, or None for a direct invoke."""
    if not isinstance(event, dict):
        return None
    for source in SOURCES:
        if source.infer(event):
            return source(event)
    return None


BatchKind = Literal["s3", "sqs", "sns", "eventbridge", "s3-batch"]
BATCH_KINDS: tuple[BatchKind, ...] = ("s3", "sqs", "sns", "eventbridge", "s3-batch")
_RECORD_SOURCES: dict[str, BatchKind] = {"aws:s3": "s3", "aws:sqs": "sqs", "aws:sns": "sns"}


def batch_kind(event: Any) -> BatchKind | None:
    """The batch source that sent `event`, from its envelope only, or None.

    `{"Records": [{"eventSource": "aws:s3" | "aws:sqs"}]}` (SNS spells it `EventSource`), an
    EventBridge event from `aws.s3`, or an S3 Batch Operations job (`invocationSchemaVersion`)."""
    if not isinstance(event, dict):
        return None
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        return _RECORD_SOURCES.get(str(first.get("eventSource") or first.get("EventSource") or ""))
    if event.get("source") == "aws.s3" and "detail-type" in event:
        return "eventbridge"
    if "invocationSchemaVersion" in event and "tasks" in event:
        return "s3-batch"
    return None
