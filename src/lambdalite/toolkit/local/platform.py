"""What the platform writes around a function's own output, in Lambda's two log formats.

    lines = platform_log("JSON", system_level="INFO", application_level="INFO")
    lines.start(request_id, "$LATEST", trace_id)        # -> ['{"time":...,"type":"platform.start",...}']
    lines.keep(function_line)                             # application log-level filtering (JSON only)

Text (Lambda's default): `INIT_START`, `START`, `END`, `REPORT`, `INIT_REPORT`, as `protocol.py`
formats them. JSON (`LoggingConfig: {LogFormat: JSON}`): one object per event with `time`, `type`
and `record`: `platform.initStart`, `platform.initRuntimeDone`, `platform.initReport`,
`platform.start`, `platform.runtimeDone` and `platform.report` (its `metrics`: durationMs,
billedDurationMs, memorySizeMB, maxMemoryUsedMB, initDurationMs), each written only when its
level passes the system log level (Lambda's mapping: start and report are INFO; a successful
runtimeDone, initRuntimeDone and on-demand initReport are DEBUG; anything that failed is WARN).
The function's JSON lines whose `level` is below the application log level are dropped, as
Lambda drops them (a JSON line without a valid level counts as INFO); lines that are not JSON
pass as they are.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

from lambdalite.toolkit.local import protocol

__all__ = ["APPLICATION_LEVELS", "LOG_FORMATS", "SYSTEM_LEVELS", "JsonPlatform", "Platform", "platform_log"]

LOG_FORMATS = ("Text", "JSON")
SYSTEM_LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30}
APPLICATION_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50}
# What a function's JSON "level" may say, as Python and the managed runtimes spell it.
_LINE_LEVELS = APPLICATION_LEVELS | {"WARNING": 30, "CRITICAL": 50}
Status = Literal["success", "error", "failure", "timeout"]


class Platform:
    """Text format: CloudWatch's classic lines, every one of them."""

    json = False

    def init_start(self, version: str) -> list[str]:
        v = sys.version_info
        return [f"INIT_START Runtime Version: python:{v.major}.{v.minor} (lambdalite, awslambdaric)"]

    def init_done(self, init_ms: float) -> list[str]:
        return []  # Text has no line for a successful init: REPORT carries Init Duration

    def init_report(self, init_ms: float, phase: str, status: str, error_type: str | None = None) -> list[str]:
        return [protocol.init_report_line(init_ms, phase, status, error_type)]

    def start(self, request_id: str, version: str, trace_id: str | None = None) -> list[str]:
        return [protocol.start_line(request_id, version)]

    def end(
        self, report: protocol.Report, *, function_error: str | None = None, trace_id: str | None = None
    ) -> list[str]:
        """END and REPORT; `function_error` is the errorType when the handler raised."""
        return [protocol.end_line(report.request_id), protocol.report_line(report)]

    def keep(self, line: str) -> bool:
        return True


class JsonPlatform(Platform):
    """JSON format: platform events as Lambda writes them to CloudWatch, filtered by level."""

    json = True

    def __init__(self, function_name: str, system_level: int, application_level: int) -> None:
        self.function_name = function_name
        self.system_level = system_level
        self.application_level = application_level

    def init_start(self, version: str) -> list[str]:
        v = sys.version_info
        runtime = f"python:{v.major}.{v.minor}.lambdalite"
        return self._event(
            "platform.initStart",
            20,
            initializationType="on-demand",
            phase="init",
            runtimeVersion=runtime,
            runtimeVersionArn=f"arn:aws:lambda:{protocol.DEFAULT_REGION}::runtime:lambdalite-python{v.major}{v.minor}",
            functionName=self.function_name,
            functionVersion=version,
        )

    def init_done(self, init_ms: float) -> list[str]:
        return [
            *self._event(
                "platform.initRuntimeDone", 10, initializationType="on-demand", phase="init", status="success"
            ),
            *self._event(
                "platform.initReport",
                10,
                initializationType="on-demand",
                phase="init",
                status="success",
                metrics={"durationMs": round(init_ms, 3)},
            ),
        ]

    def init_report(self, init_ms: float, phase: str, status: str, error_type: str | None = None) -> list[str]:
        record: dict[str, object] = {
            "initializationType": "on-demand",
            "phase": phase,
            "status": status,
            "metrics": {"durationMs": round(init_ms, 3)},
        }
        if error_type:
            record["errorType"] = error_type
        return self._event("platform.initReport", 30 if status != "success" else 10, **record)

    def start(self, request_id: str, version: str, trace_id: str | None = None) -> list[str]:
        record: dict[str, object] = {"requestId": request_id, "version": version}
        if trace_id:
            record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        return self._event("platform.start", 20, **record)

    def end(
        self, report: protocol.Report, *, function_error: str | None = None, trace_id: str | None = None
    ) -> list[str]:
        status: Status = "success"
        if report.status == "timeout":
            status = "timeout"
        elif report.status == "error":
            status = "failure"  # the runtime (not the handler) failed: Lambda's "failure"
        elif function_error:
            status = "error"  # the handler raised
        error_type = report.error_type or function_error
        done: dict[str, object] = {
            "requestId": report.request_id,
            "status": status,
            "metrics": {"durationMs": round(report.duration_ms, 3)},
        }
        if error_type:
            done["errorType"] = error_type
        metrics: dict[str, object] = {
            "durationMs": round(report.duration_ms, 3),
            "billedDurationMs": report.billed_ms,
            "memorySizeMB": report.memory_mb,
            "maxMemoryUsedMB": report.max_memory_mb,
        }
        if report.init_ms is not None:
            metrics["initDurationMs"] = round(report.init_ms, 3)
        result: dict[str, object] = {"requestId": report.request_id, "metrics": metrics, "status": status}
        if error_type:
            result["errorType"] = error_type
        if trace_id:
            done["tracing"] = result["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        failed = 30 if status != "success" else None
        return [
            *self._event("platform.runtimeDone", failed or 10, **done),
            *self._event("platform.report", failed or 20, **result),
        ]

    def keep(self, line: str) -> bool:
        if not line.startswith("{"):
            return True
        try:
            record = json.loads(line)
        except ValueError:
            return True
        level = record.get("level") if isinstance(record, dict) else None
        value = _LINE_LEVELS.get(level.upper(), 20) if isinstance(level, str) else 20
        return value >= self.application_level

    def _event(self, kind: str, level: int, **record: object) -> list[str]:
        if level < self.system_level:
            return []
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        return [json.dumps({"time": stamp, "type": kind, "record": record}, separators=(",", ":"))]


def platform_log(
    log_format: str, *, function_name: str = "function", system_level: str = "INFO", application_level: str = "INFO"
) -> Platform:
    """The platform's lines for Lambda's `LogFormat` (Text or JSON) and levels."""
    if log_format.upper() == "JSON":
        return JsonPlatform(function_name, SYSTEM_LEVELS[system_level], APPLICATION_LEVELS[application_level])
    return Platform()
