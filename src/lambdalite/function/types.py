"""Wire types: what crosses Lambda's boundary, as Protocols and TypedDicts.

Events and proxy responses keep AWS's camelCase keys verbatim. Nothing here runs; this module
exists for type checkers and readers.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

from lambdalite.settings import ResponseShape

__all__ = [
    "ErrorEnvelope",
    "HttpApiEvent",
    "LambdaContext",
    "ProxyResponse",
    "ResponseShape",
    "RestApiEvent",
]


class LambdaContext(Protocol):
    """The context object the runtime passes to a handler (awslambdaric's `LambdaContext`).

    function_name, function_version, invoked_function_arn, memory_limit_in_mb (a string in
    awslambdaric), aws_request_id, log_group_name, log_stream_name; and the time left before
    the function's timeout.
    """

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: Any
    aws_request_id: str
    log_group_name: str
    log_stream_name: str

    def get_remaining_time_in_millis(self) -> int: ...


class RestApiEvent(TypedDict, total=False):
    """API Gateway REST proxy event (payload 1.0; the HTTP API's 1.0 adds "version": "1.0")."""

    resource: str
    path: str
    httpMethod: str
    headers: dict[str, str] | None
    multiValueHeaders: dict[str, list[str]] | None
    queryStringParameters: dict[str, str] | None
    multiValueQueryStringParameters: dict[str, list[str]] | None
    pathParameters: dict[str, str] | None
    stageVariables: dict[str, str] | None
    requestContext: dict[str, Any]
    body: str | None
    isBase64Encoded: bool


class HttpApiEvent(TypedDict, total=False):
    """HTTP API payload 2.0 and Function URL event (same schema)."""

    version: str
    routeKey: str
    rawPath: str
    rawQueryString: str
    cookies: list[str]
    headers: dict[str, str]
    queryStringParameters: dict[str, str] | None
    requestContext: dict[str, Any]
    body: str | None
    pathParameters: dict[str, str] | None
    isBase64Encoded: bool
    stageVariables: dict[str, str] | None


class ProxyResponse(TypedDict, total=False):
    """What a function returns to API Gateway or a Function URL."""

    statusCode: int
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]
    body: str
    isBase64Encoded: bool
    cookies: list[str]


class ErrorEnvelope(TypedDict, total=False):
    """The Lambda error payload (Runtime API `/error`, Invoke API function errors)."""

    errorMessage: str
    errorType: str
    stackTrace: list[str]
    requestId: str
