"""The function's log records: one per cold start and one per request, never image data.

Two shapes, chosen by Lambda's log format (`AWS_LAMBDA_LOG_FORMAT`, the function's `LoggingConfig`):

* Text (Lambda's default): `{"event": "request", "requestId": ..., "durationMs": ...}`, one JSON
  line per record, as it always was.
* JSON: the same fields under the keys Powertools for AWS Lambda (Python) writes, so its users'
  queries and dashboards work unchanged: `level`, `location`, `message` (the event),
  `timestamp` (RFC 3339, UTC, as Powertools' `use_rfc3339=True`), `service`, `cold_start`,
  `function_name`, `function_memory_size`, `function_arn`, `function_request_id`, then ours,
  then `xray_trace_id`. Records below `AWS_LAMBDA_LOG_LEVEL` are not written.

With `LAMBDALITE_METRICS_NAMESPACE` set, each record is also a CloudWatch Embedded Metric Format
document: its `_aws` member names which of the record's own numbers are metrics (per `Model` and
`ModelVersion`; `errors` also per `ErrorType`), so CloudWatch extracts them from the one line and
no value is written twice. Lambda keeps a JSON line as it is in either format.

CloudWatch keeps each stdout line as a record; awslambdaric joins a record's lines with `\\r`, so
a traceback (only ever in the logs, never in an answer) is one record too.

The function calls `configure` once at init, `begin` and `end` around each request; this module
writes lines itself (no `logging`, no Powertools import on the cold path: BENCHMARKS.md measures
what importing Powertools would cost).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any, NamedTuple

from lambdalite.errors import LambdaliteError
from lambdalite.settings import LOG_LEVELS, Settings, xray_trace_header

__all__ = [
    "COLD_START_METRICS",
    "REQUEST_METRICS",
    "LogConfig",
    "begin",
    "configure",
    "end",
    "log_json",
    "log_request",
    "log_unexpected",
    "result_fields",
]

# Which fields of a record are metrics, and their CloudWatch units.
COLD_START_METRICS = {
    "coldStart": "Count",
    "initMs": "Milliseconds",
    "modelFetchMs": "Milliseconds",
    "importsMs": "Milliseconds",
    "sessionMs": "Milliseconds",
    "firstRunMs": "Milliseconds",
}
REQUEST_METRICS = {
    "durationMs": "Milliseconds",
    "fetchMs": "Milliseconds",
    "decodeMs": "Milliseconds",
    "preprocessMs": "Milliseconds",
    "inferenceMs": "Milliseconds",
    "images": "Count",
    "imageBytes": "Bytes",
}
_NAMES = {level: name for name, level in LOG_LEVELS.items()} | {30: "WARNING", 50: "CRITICAL"}  # Python's names


class LogConfig(NamedTuple):
    """How records are written: from the settings, and the model the function serves."""

    json: bool = False
    level: int = LOG_LEVELS["INFO"]
    service: str = "lambdalite"
    function_name: str | None = None
    memory_mb: int | None = None
    namespace: str | None = None  # EMF metrics in this CloudWatch namespace; None: none
    model: str = ""
    version: str = ""


class _Request:
    """What JSON records say about the invocation in flight (Powertools' context keys)."""

    __slots__ = ("arn", "cold", "function_name", "memory", "request_id", "trace_id")

    def __init__(self) -> None:
        self.cold = True  # until the first invocation ends, as Powertools' cold_start
        self.request_id: str | None = None
        self.arn: str | None = None
        self.function_name: str | None = None
        self.memory: str | None = None
        self.trace_id: str | None = None


_config = LogConfig()
_request = _Request()


def configure(settings: Settings, *, model: str = "", version: str = "") -> LogConfig:
    """Take the log format, level, service, metrics namespace and the model from the settings."""
    global _config
    _config = LogConfig(
        json=settings.log_format == "json",
        level=settings.log_level,
        service=settings.service,
        function_name=settings.function_name,
        memory_mb=settings.memory_mb,
        namespace=settings.metrics_namespace,
        model=model,
        version=version,
    )
    return _config


def begin(context: Any) -> None:
    """An invocation starts: its request id, ARN and X-Ray trace id go into JSON records."""
    if not _config.json:
        return
    _request.request_id = getattr(context, "aws_request_id", None)
    _request.arn = getattr(context, "invoked_function_arn", None)
    _request.function_name = getattr(context, "function_name", None)
    memory = getattr(context, "memory_limit_in_mb", None)  # a string from awslambdaric, kept as Powertools keeps it
    _request.memory = str(memory) if memory is not None else None
    header = xray_trace_header()
    _request.trace_id = header.split(";")[0].replace("Root=", "") if header else None


def end() -> None:
    """The invocation ended: later records are no longer part of the cold start."""
    _request.cold = False
    _request.request_id = None
    _request.trace_id = None


def log_json(
    event: str, *, level: int = LOG_LEVELS["INFO"], metrics: dict[str, str] | None = None, **fields: Any
) -> None:
    """One structured log line; `metrics` names the fields that are EMF metrics (and their units)."""
    _write(event, level, fields, metrics, sys._getframe(1))


def log_request(
    *,
    request_id: str | None,
    source: str,
    duration_ms: float,
    status: int | None = None,
    error: LambdaliteError | None = None,
    **fields: Any,
) -> None:
    """The one record each request leaves: where it came from, how it ended, what it was.

    `status` is the HTTP status of a gateway answer (None for a direct invoke that raised);
    `error` the deliberate error it ended with; `fields` what the request was about (images,
    bytes, the top-1 or the caption: see `result_fields`) and how long its phases took
    (`fetchMs`, `decodeMs`, `preprocessMs`, `inferenceMs`)."""
    record: dict[str, Any] = {"requestId": request_id, "source": source}
    if status is not None:
        record["status"] = status
    level = LOG_LEVELS["INFO"]
    if error is not None:
        record.update(error=error.type_name, message=str(error))
        level = LOG_LEVELS["ERROR"] if (status or error.status) >= 500 else LOG_LEVELS["WARN"]
    record["durationMs"] = round(duration_ms, 3)
    record.update(fields)
    _write("request", level, record, REQUEST_METRICS, sys._getframe(1))


def result_fields(images: int, image_bytes: int, urls: int, results: list[Any]) -> dict[str, Any]:
    """What a request's log record says about its images and its answer."""
    fields: dict[str, Any] = {"images": images, "imageBytes": image_bytes, "urls": urls}
    first = results[0] if results else None
    if isinstance(first, list) and first:
        fields.update(top1=first[0]["className"], confidence=round(first[0]["probability"], 4))
    elif isinstance(first, dict) and "caption" in first:
        fields.update(caption=first["caption"])
    return fields


def log_unexpected(exc: BaseException, request_id: str | None) -> None:
    """An unexpected failure, with its traceback, as one record on stderr."""
    lines = traceback.format_exception(exc)
    if _config.json:
        record = _envelope(f"{type(exc).__name__}: {exc} (request {request_id})", LOG_LEVELS["ERROR"], sys._getframe(1))
        record.update(exception="".join(lines).rstrip("\n"), exception_name=type(exc).__name__)
        _trace(record)
        print(_dumps(record), file=sys.stderr, flush=True)
        return
    print(
        f"[ERROR] {type(exc).__name__}: {exc} (request {request_id})\r" + "".join(lines).replace("\n", "\r"),
        file=sys.stderr,
        flush=True,
    )


# -- writing ---------------------------------------------------------------------------------------


def _write(event: str, level: int, fields: dict[str, Any], metrics: dict[str, str] | None, frame: Any) -> None:
    config = _config
    if config.json:
        if level < config.level:
            return
        record = _envelope(event, level, frame)
        record["event"] = event
        record.update(fields)
    else:
        record = {"event": event, **fields}
    if config.namespace is not None and metrics:
        _embed_metrics(record, metrics, config)
    if config.json:
        _trace(record)
    print(_dumps(record), flush=True)


def _envelope(message: str, level: int, frame: Any) -> dict[str, Any]:
    """Powertools' keys, in Powertools' order."""
    request = _request
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+00:00"
    record: dict[str, Any] = {
        "level": _NAMES.get(level, "INFO"),
        "location": f"{frame.f_code.co_name}:{frame.f_lineno}",
        "message": message,
        "timestamp": stamp,
        "service": _config.service,
        "cold_start": request.cold,
        "function_name": request.function_name or _config.function_name,
        "function_memory_size": request.memory or (str(_config.memory_mb) if _config.memory_mb else None),
        "function_arn": request.arn,
        "function_request_id": request.request_id,
    }
    return {k: v for k, v in record.items() if v is not None}


def _trace(record: dict[str, Any]) -> None:
    if _request.trace_id:
        record["xray_trace_id"] = _request.trace_id


def _embed_metrics(record: dict[str, Any], metrics: dict[str, str], config: LogConfig) -> None:
    """Make `record` an EMF document: its numeric `metrics` fields per model and version."""
    names = [
        name for name in metrics if isinstance(record.get(name), int | float) and not isinstance(record[name], bool)
    ]
    error = record.get("error")
    if not names and not error:
        return
    record["Model"] = config.model or "unknown"
    record["ModelVersion"] = config.version or "unknown"
    directives = []
    if names:
        directives.append(
            {
                "Namespace": config.namespace,
                "Dimensions": [["Model", "ModelVersion"]],
                "Metrics": [{"Name": name, "Unit": metrics[name]} for name in names],
            }
        )
    if isinstance(error, str):
        record["ErrorType"] = error
        record["errors"] = 1
        directives.append(
            {
                "Namespace": config.namespace,
                "Dimensions": [["Model", "ModelVersion", "ErrorType"]],
                "Metrics": [{"Name": "errors", "Unit": "Count"}],
            }
        )
    record["_aws"] = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=str)
