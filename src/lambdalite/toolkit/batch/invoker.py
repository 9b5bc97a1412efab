"""Invoking the function: `lambdalite serve` (`--endpoint`) or the deployed one (by name), through boto3.

    invoker = Invoker.connect(endpoint="http://127.0.0.1:8080", function="function", timeout=120)
    reply = invoker.invoke({"images": [b64, b64]})    # Reply: results, or what went wrong and what to do

Every invoke asks for the log tail (`LogType=Tail`), whose REPORT line gives the billed duration
and memory size the cost estimate uses. A reply says what the caller should do with a failure:

* `retry`: throttled (429 `TooManyRequestsException`, 5xx service errors), a timeout (the client's,
  or the function's `Sandbox.Timedout`), a broken connection, or the function's own
  `ThrottledError` / `*TimeoutError`: the same request later can work (with backoff and jitter).
* `split`: anything else that may be one image's fault (a function error, 413): with several
  images, send them one at a time to find out which; with one, the failure is that image's.
* `fatal`: no such function, refused credentials: the run cannot go on.

boto3 retries nothing itself here (the runner does, with full jitter); with `--endpoint` and no
AWS credentials the requests go unsigned, which `lambdalite serve` accepts.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any, NamedTuple

from lambdalite.errors import UsageError

__all__ = ["RETRYABLE_FUNCTION_ERRORS", "Invoker", "Reply"]

# Function errors that the same request can get past later.
RETRYABLE_FUNCTION_ERRORS = frozenset(
    {
        "Sandbox.Timedout",
        "ThrottledError",
        "StorageTimeoutError",
        "FetchTimeoutError",
        "SourceTimeoutError",
        "Runtime.ExitError",  # the instance died (say, killed): another one may not
    }
)
_RETRYABLE_SERVICE = frozenset(
    {
        "TooManyRequestsException",
        "ServiceException",
        "EC2ThrottledException",
        "ENILimitReachedException",
        "ResourceNotReadyException",
        "ResourceConflictException",
        "SnapStartNotReadyException",
        "Throttling",
        "ThrottlingException",
    }
)
_FATAL_SERVICE = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "KMSAccessDeniedException",
    }
)
_REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms\tBilled Duration: (\d+) ms\tMemory Size: (\d+) MB")
_INIT = re.compile(r"Init Duration: ([\d.]+) ms")


class Reply(NamedTuple):
    """One invoke's outcome: results (one per image) or an error, and what Lambda billed for it."""

    results: list[Any] | None
    error_type: str | None = None
    message: str = ""
    retry: bool = False
    split: bool = False
    fatal: bool = False
    latency_ms: float = 0.0
    duration_ms: float | None = None  # the function's own, from the REPORT line
    billed_ms: int | None = None
    memory_mb: int | None = None
    init_ms: float | None = None


def _http_get(path: str) -> dict[str, Any]:
    """An HTTP API (payload 2.0) GET event: how to ask the function's own routes through Invoke."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"accept": "application/json", "user-agent": "lambdalite-batch"},
        "requestContext": {
            "domainName": "batch.lambdalite.local",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "lambdalite-batch",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


class Invoker:
    def __init__(self, client: Any, function: str, description: str) -> None:
        self.client = client
        self.function = function
        self.description = description  # for messages: "function cats at http://127.0.0.1:8080"

    @classmethod
    def connect(
        cls,
        *,
        function: str,
        endpoint: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        timeout: float = 120.0,
        connections: int = 10,
    ) -> Invoker:
        import boto3
        import botocore.exceptions
        from botocore import UNSIGNED
        from botocore.config import Config

        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise UsageError(str(exc)) from None
        config = Config(
            connect_timeout=10,
            read_timeout=timeout,
            retries={"total_max_attempts": 1},  # the runner retries, with jitter
            max_pool_connections=max(10, connections + 2),
            tcp_keepalive=True,
        )
        if endpoint and session.get_credentials() is None:
            config = config.merge(Config(signature_version=UNSIGNED))  # lambdalite serve checks no signature
        client = session.client(
            "lambda", endpoint_url=endpoint, region_name=session.region_name or "us-east-1", config=config
        )
        where = endpoint or f"AWS ({client.meta.region_name})"
        return cls(client, function, f"function {function} at {where}")

    def invoke(self, payload: Any) -> Reply:
        """Invoke with `payload` (a direct invoke naming images): the results, one per image."""
        reply, decoded = self.call(payload)
        if reply.error_type is not None:
            return reply
        if isinstance(decoded, dict) and "statusCode" in decoded and "body" in decoded:
            decoded = decoded["body"]  # seed 004's envelope (LAMBDALITE_RESPONSE=top1)
        if not isinstance(decoded, list):
            return reply._replace(error_type="UnexpectedAnswer", message=f"expected a list, got {str(decoded)[:200]}")
        return reply._replace(results=decoded)

    def call(self, payload: Any) -> tuple[Reply, Any]:
        """One invoke: how it went (`results` unset), and the decoded answer."""
        import botocore.exceptions

        body = json.dumps(payload, separators=(",", ":")).encode()
        start = time.perf_counter()

        def took() -> float:
            return (time.perf_counter() - start) * 1e3

        try:
            response = self.client.invoke(
                FunctionName=self.function, InvocationType="RequestResponse", LogType="Tail", Payload=body
            )
            answer = response["Payload"].read()
        except botocore.exceptions.ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or meta.get("HTTPStatusCode"))
            status = int(meta.get("HTTPStatusCode") or 0)
            message = str(error.get("Message") or "")
            if code in _FATAL_SERVICE:
                return Reply(None, code, f"{self.description}: {code}: {message}", fatal=True, latency_ms=took()), None
            retry = code in _RETRYABLE_SERVICE or status == 429 or status >= 500
            return Reply(None, code, message, retry=retry, split=not retry, latency_ms=took()), None
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError) as exc:
            return Reply(None, "Timeout", str(exc), retry=True, latency_ms=took()), None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError) as exc:
            return Reply(None, "ConnectionError", str(exc), retry=True, latency_ms=took()), None
        except botocore.exceptions.NoCredentialsError:
            message = "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID (or pass --endpoint for serve)"
            return Reply(None, "NoCredentials", message, fatal=True), None
        duration, billed, memory, init = self._report(response.get("LogResult"))
        reply = Reply(None, None, "", False, False, False, took(), duration, billed, memory, init)
        try:
            decoded = json.loads(answer) if answer else None
        except ValueError:
            decoded = None
        function_error = response.get("FunctionError")
        if function_error:
            details = decoded if isinstance(decoded, dict) else {}
            error_type = str(details.get("errorType") or f"Function{function_error}")
            message = str(details.get("errorMessage") or answer[:300].decode("utf-8", "replace"))
            retry = error_type in RETRYABLE_FUNCTION_ERRORS
            return reply._replace(error_type=error_type, message=message, retry=retry, split=True), decoded
        return reply, decoded

    @staticmethod
    def _report(log_result: str | None) -> tuple[float | None, int | None, int | None, float | None]:
        if not log_result:
            return None, None, None, None
        log = base64.b64decode(log_result).decode("utf-8", "replace")
        report = _REPORT.search(log)
        if report is None:
            return None, None, None, None
        init = _INIT.search(log[report.start() :])
        return float(report[1]), int(report[2]), int(report[3]), float(init[1]) if init else None

    def model(self) -> tuple[Reply, dict[str, Any] | None]:
        """The model the function serves (`{"name", "version"}`, from its Open Inference Protocol
        routes; None for a function without them). Also the first call, so that a wrong endpoint
        or function name shows at once."""
        reply, listed = self.call(_http_get("/v2/models"))
        if reply.error_type is not None:
            return reply, None
        try:
            name = json.loads(listed["body"])["models"][0]
            _, metadata = self.call(_http_get(f"/v2/models/{name}"))
            version = json.loads(metadata["body"])["versions"][0]
        except (KeyError, IndexError, TypeError, ValueError):
            return reply, None
        return reply, {"name": name, "version": version}
