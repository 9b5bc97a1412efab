"""The function's log records: one JSON line per cold start and one per request, never image data.

CloudWatch keeps each stdout line as a record; awslambdaric joins a record's lines with `\\r`, so
a traceback (only ever in the logs, never in an answer) is one record too.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from lambdalite.errors import LambdaliteError

__all__ = ["log_json", "log_request", "log_unexpected", "result_fields"]


def log_json(event: str, **fields: Any) -> None:
    """One structured log line."""
    print(json.dumps({"event": event, **fields}, separators=(",", ":"), default=str), flush=True)


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
    bytes, the top-1 or the caption: see `result_fields`)."""
    record: dict[str, Any] = {"requestId": request_id, "source": source}
    if status is not None:
        record["status"] = status
    if error is not None:
        record.update(error=error.type_name, message=str(error))
    record["durationMs"] = round(duration_ms, 3)
    log_json("request", **record, **fields)


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
    print(
        f"[ERROR] {type(exc).__name__}: {exc} (request {request_id})\r" + "".join(lines).replace("\n", "\r"),
        file=sys.stderr,
        flush=True,
    )
