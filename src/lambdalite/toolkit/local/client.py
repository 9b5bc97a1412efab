"""A minimal Invoke API client over plain HTTP (no boto3 on this path): what `lambdalite invoke` uses."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from lambdalite.errors import EmulatorError, UsageError

__all__ = ["InvokeAnswer", "invoke_http"]


@dataclass(frozen=True, slots=True)
class InvokeAnswer:
    status: int
    payload: bytes
    function_error: str | None
    log_result: str | None
    executed_version: str | None
    request_id: str | None


def invoke_http(
    endpoint: str, function_name: str, payload: bytes, invocation_type: str, log_tail: bool, timeout: float
) -> InvokeAnswer:
    """POST one invocation; service errors (4xx/5xx) raise EmulatorError naming the AWS error."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"--endpoint must be an http:// or https:// URL, got {endpoint!r}")
    conn_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(url.hostname, url.port, timeout=timeout)
    path = f"{url.path.rstrip('/')}/2015-03-31/functions/{quote(function_name, safe='')}/invocations"
    headers = {"X-Amz-Invocation-Type": invocation_type, "X-Amz-Log-Type": "Tail" if log_tail else "None"}
    try:
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except TimeoutError as exc:
        raise EmulatorError(f"no answer from {endpoint} within {timeout:g} s") from exc
    except OSError as exc:
        raise EmulatorError(
            f"cannot reach {endpoint}: {exc.strerror or exc} (is `lambdalite serve` running there?)"
        ) from exc
    finally:
        conn.close()
    if response.status >= 300:
        error_type = (response.getheader("x-amzn-ErrorType") or f"HTTP {response.status}").split(":")[0]
        try:
            detail = json.loads(body)
            message = detail.get("message") or detail.get("Message") or ""
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")[:200]
        raise EmulatorError(f"{error_type}: {message}".rstrip(": "))
    return InvokeAnswer(
        response.status,
        body,
        response.getheader("X-Amz-Function-Error"),
        response.getheader("X-Amz-Log-Result"),
        response.getheader("X-Amz-Executed-Version"),
        response.getheader("x-amzn-RequestId"),
    )
