"""Sweep a function's memory sizes and measure each the way Lambda bills it: from REPORT.

    client = boto3.client("lambda", endpoint_url="http://127.0.0.1:8080")   # or AWS itself
    samples = sweep(client, "my-function", memory=[512, 1024, 1769], payloads=[b'{"url": ...}'],
                    cold=2, warm=5, variants=[Variant("int8", {"LAMBDALITE_MODEL": "..."})])

The same calls work against `lambdalite serve` and AWS: UpdateFunctionConfiguration (memory and
environment), boto3's `function_updated_v2` waiter, and Invoke with `LogType=Tail`, whose log
tail holds the REPORT line (or, in the JSON log format, the `platform.report` record) with
Duration, Billed Duration, Init Duration and Max Memory Used.

Cold starts are made, not hoped for: before each cold sample the environment changes
(`LAMBDALITE_TUNE_RUN`), so Lambda must start a new execution environment, as AWS Lambda Power
Tuning's users asked it to do (its issues 123, 176, 197). Whether a sample was cold is read from
its REPORT (an Init Duration), not assumed. The function's configuration is restored at the end,
also when the sweep fails.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lambdalite.errors import TuneError

__all__ = ["NONCE", "Report", "Sample", "Variant", "parse_report", "sweep"]

NONCE = "LAMBDALITE_TUNE_RUN"
_REPORT = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\s+Duration: (?P<duration>[\d.]+) ms\s+Billed Duration: (?P<billed>\d+) ms"
    r"\s+Memory Size: (?P<memory>\d+) MB\s+Max Memory Used: (?P<used>\d+) MB"
    r"(?:\s+Init Duration: (?P<init>[\d.]+) ms)?"
)


@dataclass(frozen=True, slots=True)
class Variant:
    """A named set of environment variables laid over the function's own (fp32, int8...)."""

    name: str
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Report:
    """What Lambda's REPORT says about one invocation."""

    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured invocation."""

    function: str
    architecture: str
    variant: str
    memory_mb: int
    cold: bool  # from the REPORT: it carried an Init Duration
    duration_ms: float
    billed_ms: int
    init_ms: float | None
    max_memory_mb: int
    error: str | None = None  # the function error's type, if it failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_report(log: str) -> Report | None:
    """The REPORT of an invocation's log: the text line, or the JSON format's platform.report."""
    for line in reversed(log.splitlines()):
        if line.startswith("REPORT "):
            m = _REPORT.match(line)
            if m:
                init = m.group("init")
                return Report(
                    m.group("id"),
                    float(m.group("duration")),
                    int(m.group("billed")),
                    int(m.group("memory")),
                    int(m.group("used")),
                    float(init) if init else None,
                )
        elif '"platform.report"' in line:
            try:
                record = json.loads(line)["record"]
                metrics = record["metrics"]
                init = metrics.get("initDurationMs")
                return Report(
                    record["requestId"],
                    float(metrics["durationMs"]),
                    int(metrics["billedDurationMs"]),
                    int(metrics["memorySizeMB"]),
                    int(metrics["maxMemoryUsedMB"]),
                    float(init) if init is not None else None,
                )
            except (ValueError, KeyError, TypeError):
                continue
    return None


def sweep(
    client: Any,
    function: str,
    *,
    memory: Sequence[int],
    payloads: Sequence[bytes],
    cold: int = 2,
    warm: int = 5,
    variants: Sequence[Variant] = (Variant("default"),),
    progress: Callable[[str], None] | None = None,
) -> list[Sample]:
    """Every (variant, memory size): `cold` cold invocations, then `warm` warm ones, payloads in turn."""
    say = progress or (lambda message: None)
    original = client.get_function_configuration(FunctionName=function)
    base_env = dict(original.get("Environment", {}).get("Variables", {}))
    architecture = (original.get("Architectures") or ["x86_64"])[0]
    samples: list[Sample] = []
    turn = 0
    try:
        for variant in variants:
            for size in memory:
                environment = {**base_env, **variant.environment}
                for i in range(cold):
                    say(f"{function} {variant.name} {size} MB: cold {i + 1}/{cold}")
                    _configure(client, function, size, {**environment, NONCE: uuid.uuid4().hex})
                    samples.append(
                        _invoke(client, function, payloads[turn % len(payloads)], architecture, variant, size)
                    )
                    turn += 1
                if not cold:
                    _configure(client, function, size, {**environment, NONCE: uuid.uuid4().hex})
                    _invoke(client, function, payloads[0], architecture, variant, size)  # the cold start, not counted
                for i in range(warm):
                    say(f"{function} {variant.name} {size} MB: warm {i + 1}/{warm}")
                    samples.append(
                        _invoke(client, function, payloads[turn % len(payloads)], architecture, variant, size)
                    )
                    turn += 1
    finally:
        say(f"{function}: restoring {original.get('MemorySize')} MB and its environment")
        _configure(client, function, int(original["MemorySize"]), base_env)
    return samples


def _configure(client: Any, function: str, memory_mb: int, environment: dict[str, str]) -> None:
    from botocore.exceptions import ClientError, WaiterError

    try:
        client.update_function_configuration(
            FunctionName=function, MemorySize=memory_mb, Environment={"Variables": environment}
        )
        client.get_waiter("function_updated_v2").wait(FunctionName=function, WaiterConfig={"Delay": 1})
    except (ClientError, WaiterError) as exc:
        raise TuneError(f"cannot set {function} to {memory_mb} MB: {exc}") from exc


def _invoke(client: Any, function: str, payload: bytes, architecture: str, variant: Variant, size: int) -> Sample:
    answer = client.invoke(FunctionName=function, Payload=payload, LogType="Tail")
    body = answer["Payload"].read()
    log = base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace")
    report = parse_report(log)
    if report is None:
        raise TuneError(
            f"{function}'s invocation log has no REPORT (a chatty function may push it out of the tail): {log[-300:]!r}"
        )
    error = _error_type(body) if answer.get("FunctionError") else None
    return Sample(
        function,
        architecture,
        variant.name,
        size,
        report.init_ms is not None,
        report.duration_ms,
        report.billed_ms,
        report.init_ms,
        report.max_memory_mb,
        error or None,
    )


def _error_type(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return "Unhandled"
    kind = value.get("errorType") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else "Unhandled"
