"""API Gateway in front of the local Lambda: HTTP request -> proxy event -> invoke -> HTTP response.

`lambdalite serve` sends every request that is not the Invoke API here. `event_from_request`
and `response_from_result` are pure and follow API Gateway's rules
(../shared/reference/lambda-protocol.md §4):

* `http` (HTTP API, payload 2.0, the default): every body whose content type is not text
  arrives base64-encoded; a response with `isBase64Encoded` is always decoded; a function that
  returns JSON without `statusCode` gets a 200 `application/json` answer of that JSON.
* `rest` (REST API, payload 1.0): a body is base64-encoded only when its Content-Type matches
  one of `binary_media_types` (`image/*`, `*/*`…); otherwise it is passed as UTF-8 text, which
  corrupts binary uploads exactly as the real thing does. A base64 response is decoded only
  when the request's first Accept type matches a binary media type. Anything but an object with
  an integer `statusCode` is a 502.

Limits: a 10 MB payload (413) and a 30 s integration timeout (REST 504 "Endpoint request timed
out"; HTTP API 503 "Service Unavailable", as issue threads report the real ones answer). A
function error is a 502 (REST) or 500 (HTTP API).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs

__all__ = [
    "DEFAULT_BINARY_MEDIA_TYPES",
    "FrontDoor",
    "GatewayConfig",
    "event_from_request",
    "response_from_result",
]

Api = Literal["http", "rest"]
Answer = tuple[int, list[tuple[str, str]], bytes]
MAX_PAYLOAD = 10 * 2**20
INTEGRATION_TIMEOUT_S = 30.0
DEFAULT_BINARY_MEDIA_TYPES = ("image/*", "multipart/form-data")
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_JSON = [("Content-Type", "application/json")]


class GatewayConfig:
    """How the emulated API behaves: its kind, binary media types (REST), stage and limits."""

    def __init__(
        self,
        api: Api = "http",
        binary_media_types: Sequence[str] = (),
        stage: str = "$default",
        timeout_s: float = INTEGRATION_TIMEOUT_S,
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self.api = api
        self.binary_media_types = tuple(t.strip().lower() for t in binary_media_types if t.strip())
        self.stage = stage if api == "http" else (stage if stage != "$default" else "local")
        self.timeout_s = timeout_s
        self.max_payload = max_payload

    def is_binary(self, content_type: str) -> bool:
        media = content_type.split(";", 1)[0].strip().lower()
        return bool(media) and any(fnmatch.fnmatchcase(media, pattern) for pattern in self.binary_media_types)


class InvokeResultLike(Protocol):
    payload: bytes
    function_error: str | None


Invoker = Callable[[bytes], Awaitable[InvokeResultLike]]


def _is_text(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith(_TEXT_TYPES)


def _now() -> tuple[str, int]:
    epoch_ms = int(time.time() * 1000)
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)), epoch_ms


def event_from_request(
    config: GatewayConfig,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
) -> dict[str, Any]:
    """The proxy event API Gateway would send the function for this request."""
    request_id = request_id or str(uuid.uuid4())
    request_time, epoch_ms = _now()
    content_type = headers.get("content-type", "")
    user_agent = headers.get("user-agent", "")
    host = headers.get("host", "localhost")
    if config.api == "http":
        encode = bool(body) and not _is_text(content_type)
        cookie = headers.get("cookie")
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path if config.stage == "$default" else f"/{config.stage}{path}",
            "rawQueryString": query,
            "headers": {k: v for k, v in headers.items() if k != "cookie"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": host,
                "domainPrefix": "local",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": user_agent,
                },
                "requestId": request_id,
                "routeKey": "$default",
                "stage": config.stage,
                "time": request_time,
                "timeEpoch": epoch_ms,
            },
            "isBase64Encoded": encode,
        }
        if cookie:
            event["cookies"] = [c.strip() for c in cookie.split(";") if c.strip()]
        if query:
            event["queryStringParameters"] = {
                k: ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()
            }
        if body:
            event["body"] = base64.b64encode(body).decode() if encode else body.decode("utf-8", "replace")
        return event
    encode = bool(body) and config.is_binary(content_type)
    multi_query = parse_qs(query, keep_blank_values=True) if query else {}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": dict(headers) or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path.strip("/") else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "extendedRequestId": request_id,
            "httpMethod": method,
            "path": f"/{config.stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": request_time,
            "requestTimeEpoch": epoch_ms,
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "stage": config.stage,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": user_agent,
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "user": None,
                "userArn": None,
            },
        },
        # Without a matching binary media type the bytes are read as UTF-8 text: binary data breaks.
        "body": (base64.b64encode(body).decode() if encode else body.decode("utf-8", "replace")) if body else None,
        "isBase64Encoded": encode,
    }


def _message(status: int, message: str, request_id: str, config: GatewayConfig) -> Answer:
    return status, _JSON + _id_header(request_id, config), json.dumps({"message": message}).encode()


def _id_header(request_id: str, config: GatewayConfig) -> list[tuple[str, str]]:
    return [("apigw-requestid" if config.api == "http" else "x-amzn-RequestId", request_id)]


def _first_accept(accept: str) -> str:
    return accept.split(",", 1)[0].split(";", 1)[0].strip().lower()


def response_from_result(
    config: GatewayConfig,
    payload: bytes,
    function_error: str | None,
    *,
    request_id: str,
    accept: str = "",
) -> Answer:
    """The HTTP answer API Gateway gives for what the function returned."""
    if function_error:
        if config.api == "rest":
            return _message(502, "Internal server error", request_id, config)
        return _message(500, "Internal Server Error", request_id, config)
    try:
        value = json.loads(payload) if payload else None
    except (ValueError, RecursionError):
        value = ...
    if config.api == "http" and not (isinstance(value, dict) and "statusCode" in value):
        if value is ...:  # not JSON at all: malformed
            return _message(500, "Internal Server Error", request_id, config)
        return 200, _JSON + _id_header(request_id, config), payload
    if (
        not isinstance(value, dict)
        or isinstance(value.get("statusCode"), bool)
        or not isinstance(value.get("statusCode"), int)
    ):
        # REST: "Malformed Lambda proxy response"
        return _message(
            502 if config.api == "rest" else 500,
            "Internal server error" if config.api == "rest" else "Internal Server Error",
            request_id,
            config,
        )
    headers: list[tuple[str, str]] = []
    single = value.get("headers") or {}
    multi = (value.get("multiValueHeaders") or {}) if config.api == "rest" else {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return _message(502 if config.api == "rest" else 500, "Internal server error", request_id, config)
    for name, val in single.items():
        if str(name).lower() not in {str(k).lower() for k in multi}:
            headers.append((str(name), str(val)))
    for name, vals in multi.items():
        for val in vals if isinstance(vals, list) else [vals]:
            headers.append((str(name), str(val)))
    for cookie in (value.get("cookies") or []) if config.api == "http" else []:
        headers.append(("Set-Cookie", str(cookie)))
    body = value.get("body")
    raw = b"" if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    if value.get("isBase64Encoded") and body is not None:
        decode = config.api == "http" or config.is_binary(_first_accept(accept))
        if decode:
            try:
                raw = base64.b64decode(str(body), validate=True)
            except (binascii.Error, ValueError):
                return _message(502 if config.api == "rest" else 500, "Internal server error", request_id, config)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return value["statusCode"], headers + _id_header(request_id, config), raw


class FrontDoor:
    """The serve port's fallback: each HTTP request becomes one invocation through `invoke`."""

    def __init__(
        self, config: GatewayConfig, invoke: Invoker, refused: Callable[[BaseException], Answer | None] | None = None
    ) -> None:
        self.config = config
        self.invoke = invoke
        self.refused = refused

    async def __call__(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer:
        request_id = str(uuid.uuid4())
        if len(body) > self.config.max_payload:
            return _message(413, "Request Too Long", request_id, self.config)
        event = event_from_request(self.config, method, path, query, headers, body, request_id=request_id)
        payload = json.dumps(event).encode()
        task = asyncio.ensure_future(self.invoke(payload))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self.config.timeout_s)
        except TimeoutError:
            # The function keeps running (as on AWS); the client stops waiting.
            if self.config.api == "rest":
                return _message(504, "Endpoint request timed out", request_id, self.config)
            return _message(503, "Service Unavailable", request_id, self.config)
        except Exception as exc:
            answer = self.refused(exc) if self.refused else None
            if answer is None:
                raise
            return answer
        return response_from_result(
            self.config, result.payload, result.function_error, request_id=request_id, accept=headers.get("accept", "")
        )
