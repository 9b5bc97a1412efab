"""Lambda's two wire protocols and its platform text, as pure functions (no sockets, no clocks).

The Invoke API (what boto3, the AWS CLI and curl send):

    POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=...]

The Runtime API (what awslambdaric, inside each instance, calls):

    GET  /2018-06-01/runtime/invocation/next               long-poll for the next event
    POST /2018-06-01/runtime/invocation/{id}/response      the handler's result      -> 202
    POST /2018-06-01/runtime/invocation/{id}/error         the handler raised        -> 202
    POST /2018-06-01/runtime/init/error                    init failed (then it exits) -> 202
    GET  /2018-06-01/runtime/restore/next                  SnapStart: snapshot here; returns once restored
    POST /2018-06-01/runtime/restore/error                 an after-restore hook raised (then it exits) -> 202

Plus the CloudWatch lines (START / END / REPORT / INIT_REPORT), 1 ms billing and the price list.
Everything here follows /work/shared/reference/lambda-protocol.md; AWS quirks are noted where handled.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote

from lambdalite.errors import (
    InvalidParameterValueError,
    InvalidRequestContentError,
    InvokeRefusedError,
    RequestTooLargeError,
)
from lambdalite.toolkit.local.messages import Reply

__all__ = [
    "ASYNC_PAYLOAD_LIMIT",
    "CLIENT_CONTEXT_LIMIT",
    "CostEstimate",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "FunctionRef",
    "INIT_BUDGET_S",
    "InvocationType",
    "LATEST",
    "LOG_TAIL_BYTES",
    "PRICE_PER_GB_SECOND",
    "PRICE_PER_MILLION_REQUESTS",
    "PRICE_SNAPSTART_CACHE_PER_GB_SECOND",
    "PRICE_SNAPSTART_RESTORE_PER_GB",
    "SNAPSTART_MIN_CACHE_S",
    "RESPONSE_LIMIT",
    "RESTORE_BUDGET_S",
    "Report",
    "RuntimeRoute",
    "SYNC_PAYLOAD_LIMIT",
    "billed_ms",
    "check_payload",
    "cost_per_million",
    "decode_client_context",
    "end_line",
    "error_payload",
    "exit_description",
    "function_arn",
    "init_report_line",
    "invocation_type",
    "log_tail",
    "match_invoke",
    "match_runtime",
    "new_trace_id",
    "next_headers",
    "parse_function_name",
    "report_line",
    "response_too_large_payload",
    "restore_report_line",
    "restore_start_line",
    "runtime_error_reply",
    "service_error_reply",
    "snapshot_init_budget_s",
    "snapshot_init_report_line",
    "snapstart_cost",
    "SnapStartCost",
    "start_line",
    "timeout_payload",
]

LATEST = "$LATEST"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # "Request must be smaller than 6291456 bytes"
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # Event invocations: 1 MB since October 2025 (256 KB before)
RESPONSE_LIMIT = 6 * 1024 * 1024 + 100  # RIE's MaxPayloadSize: 6,291,556 bytes
LOG_TAIL_BYTES = 4096
INIT_BUDGET_S = 10.0  # on-demand init; past it, init is retried inside the first invoke
RESTORE_BUDGET_S = 10.0  # SnapStart: loading the runtime and the after-restore hooks, else SnapStartTimeoutException
CLIENT_CONTEXT_LIMIT = 3583  # bytes of base64 in X-Amz-Client-Context
PRICE_PER_MILLION_REQUESTS = 0.20  # USD, us-east-1
PRICE_PER_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}  # tier 1, us-east-1
# SnapStart for Python and .NET (us-east-1): the cached snapshot while the version is active (at
# least 3 hours), and every restore, both by the function's memory size.
PRICE_SNAPSTART_CACHE_PER_GB_SECOND = 0.0000015046
PRICE_SNAPSTART_RESTORE_PER_GB = 0.0001397998
SNAPSTART_MIN_CACHE_S = 3 * 3600

InvocationType = Literal["RequestResponse", "Event", "DryRun"]
_INVOCATION_TYPES: tuple[InvocationType, ...] = ("RequestResponse", "Event", "DryRun")

_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
# The service's FunctionName pattern: name, name:qualifier, partial ARN or full ARN.
_FUNCTION_NAME = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(?:-gov)?-[a-z]+-\d:)?"
    r"(?:\d{12}:)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?$"
)
_QUALIFIER = re.compile(r"^(?:\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]{1,128})$")
_RUNTIME_PREFIX = "/2018-06-01/runtime/"

_SIGNALS = {  # how Go (and so Lambda) spells a signal in "Runtime exited with error: signal: ..."
    1: "hangup",
    2: "interrupt",
    3: "quit",
    4: "illegal instruction",
    5: "trace/breakpoint trap",
    6: "aborted",
    7: "bus error",
    8: "floating point exception",
    9: "killed",
    11: "segmentation fault",
    13: "broken pipe",
    14: "alarm clock",
    15: "terminated",
}


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """The function an invoke names: the bare name and the qualifier, if one was given."""

    name: str
    qualifier: str | None = None


def match_invoke(method: str, path: str) -> str | None:
    """The still percent-encoded FunctionName when this is an Invoke API request, else None."""
    if method != "POST":
        return None
    m = _INVOKE_PATH.match(path)
    return m.group(1) if m else None


def parse_function_name(raw: str, query: str = "") -> FunctionRef:
    """Decode FunctionName (botocore sends `:` as %3A and `$` as %24) and the Qualifier parameter."""
    text = unquote(raw)
    m = _FUNCTION_NAME.match(text)
    if m is None or len(m.group("name")) > 64:
        raise InvalidParameterValueError(
            f"1 validation error detected: Value '{text}' at 'functionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: "
            "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?"
            "([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
        )
    qualifier = m.group("qualifier")
    given = parse_qs(query, keep_blank_values=True).get("Qualifier")
    if given:
        q = given[-1]
        if not _QUALIFIER.match(q):
            raise InvalidParameterValueError(f"Invalid Qualifier: {q!r}")
        if qualifier is not None and qualifier != q:
            raise InvalidParameterValueError(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        qualifier = q
    return FunctionRef(m.group("name"), qualifier)


def function_arn(name: str, qualifier: str | None = None, *, region: str, account: str) -> str:
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def invocation_type(value: str | None) -> InvocationType:
    if value is None or value == "":
        return "RequestResponse"
    for known in _INVOCATION_TYPES:
        if value == known:
            return known
    raise InvalidParameterValueError(
        f"1 validation error detected: Value '{value}' at 'invocationType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
    )


def check_payload(body: bytes, size: int, kind: InvocationType) -> bytes:
    """The payload to hand the runtime: checked for size and JSON, and `{}` when empty."""
    if kind == "Event" and size > ASYNC_PAYLOAD_LIMIT:
        raise RequestTooLargeError(
            f"{size} byte payload is too large for the Event invocation type (limit {ASYNC_PAYLOAD_LIMIT} bytes)"
        )
    if size > SYNC_PAYLOAD_LIMIT:
        raise RequestTooLargeError(
            f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction operation"
        )
    if not body.strip():
        return b"{}"  # awslambdaric cannot unmarshal an empty JSON body; SAM substitutes {} too
    try:
        json.loads(body)
    except RecursionError:
        raise InvalidRequestContentError(
            "Could not parse request body into json: Could not parse payload into json: nested too deeply"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestContentError(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from exc
    return body


def decode_client_context(value: str | None) -> str | None:
    """X-Amz-Client-Context (base64 JSON) as the JSON text the runtime's header carries."""
    if not value:
        return None
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise InvalidParameterValueError(
            f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes of base64; got {len(value)}"
        )
    try:
        text = base64.b64decode(value, validate=True).decode()
        if not isinstance(json.loads(text), dict):
            raise ValueError("not a JSON object")
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestContentError("Client context must be a valid Base64-encoded JSON object.") from exc
    return text


def service_error_reply(exc: InvokeRefusedError, request_id: str) -> Reply:
    """A service error the way botocore parses it: the shape name in x-amzn-ErrorType, a JSON body."""
    body: dict[str, str] = {}
    if exc.reason:
        body["Reason"] = exc.reason
    if exc.type_field:
        body["Type"] = exc.type_field
    # ResourceNotFoundException's and the SnapStart errors' model member is `Message`; the others use `message`.
    body[exc.message_field] = exc.message
    return Reply(
        exc.status,
        [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", exc.shape),
        ],
        json.dumps(body).encode(),
    )


# ---- Runtime API ---------------------------------------------------------------------------------

RuntimeAction = Literal["next", "response", "error", "init_error", "restore_next", "restore_error"]


@dataclass(frozen=True, slots=True)
class RuntimeRoute:
    action: RuntimeAction
    request_id: str = ""


def match_runtime(method: str, path: str) -> RuntimeRoute | None:
    if not path.startswith(_RUNTIME_PREFIX):
        return None
    rest = path[len(_RUNTIME_PREFIX) :]
    if method == "GET" and rest == "invocation/next":
        return RuntimeRoute("next")
    if method == "GET" and rest == "restore/next":
        return RuntimeRoute("restore_next")
    if method != "POST":
        return None
    if rest == "init/error":
        return RuntimeRoute("init_error")
    if rest == "restore/error":
        return RuntimeRoute("restore_error")
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "invocation" and parts[1] and parts[2] in ("response", "error"):
        return RuntimeRoute("response" if parts[2] == "response" else "error", unquote(parts[1]))
    return None


def next_headers(
    request_id: str,
    deadline_ms: int,
    function_arn: str,
    *,
    trace_id: str | None = None,
    client_context: str | None = None,
    cognito_identity: str | None = None,
    tenant_id: str | None = None,
) -> list[tuple[str, str]]:
    """The /next response headers; the optional ones only when they have values (as RIE does)."""
    headers = [
        ("Content-Type", "application/json"),  # exactly this: awslambdaric JSON-decodes only on an exact match
        ("Lambda-Runtime-Aws-Request-Id", request_id),
        ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
        ("Lambda-Runtime-Invoked-Function-Arn", function_arn),
    ]
    if trace_id:
        headers.append(("Lambda-Runtime-Trace-Id", trace_id))
    if client_context:
        headers.append(("Lambda-Runtime-Client-Context", client_context))
    if cognito_identity:
        headers.append(("Lambda-Runtime-Cognito-Identity", cognito_identity))
    if tenant_id:
        headers.append(("Lambda-Runtime-Aws-Tenant-Id", tenant_id))
    return headers


def runtime_error_reply(status: int, error_type: str, message: str) -> Reply:
    """An error answer to the runtime, in the envelope RIE uses."""
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return Reply(status, [("Content-Type", "application/json")], body)


def new_trace_id(now_s: float) -> str:
    """An X-Ray trace header like the one Lambda passes even when tracing is off."""
    return f"Root=1-{int(now_s):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


# ---- function errors the platform writes ----------------------------------------------------------


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}, separators=(",", ":")).encode()


def timeout_payload(request_id: str, timeout_s: float) -> bytes:
    return error_payload(
        "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
    )


def exit_description(returncode: int) -> str:
    """`exit status 42` or `signal: killed`, as Go's ProcessState prints them."""
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {_SIGNALS.get(-returncode, f'signal {-returncode}')}"


def response_too_large_payload() -> bytes:
    message = f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."
    return json.dumps({"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}).encode()


# ---- CloudWatch lines, billing, prices ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None = None
    status: str | None = None  # "timeout" or "error"
    error_type: str | None = None
    restore_ms: float | None = None  # SnapStart: the first invoke of a restored instance
    billed_restore_ms: int | None = None


def start_line(request_id: str, version: str = LATEST) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_line(report: Report) -> str:
    """The REPORT line: tab-separated fields in Lambda's order, with a trailing tab."""
    fields = [
        f"REPORT RequestId: {report.request_id}",
        f"Duration: {report.duration_ms:.2f} ms",
        f"Billed Duration: {report.billed_ms} ms",
        f"Memory Size: {report.memory_mb} MB",
        f"Max Memory Used: {report.max_memory_mb} MB",
    ]
    if report.init_ms is not None:
        fields.append(f"Init Duration: {report.init_ms:.2f} ms")
    if report.restore_ms is not None:
        fields.append(f"Restore Duration: {report.restore_ms:.2f} ms")
        fields.append(f"Billed Restore Duration: {report.billed_restore_ms or 0} ms")
    if report.status:
        fields.append(f"Status: {report.status}")
    if report.error_type:
        fields.append(f"Error Type: {report.error_type}")
    return "\t".join(fields) + "\t"


def init_report_line(init_ms: float, phase: str, status: str, error_type: str | None = None) -> str:
    fields = [f"INIT_REPORT Init Duration: {init_ms:.2f} ms", f"Phase: {phase}", f"Status: {status}"]
    if error_type:
        fields.append(f"Error Type: {error_type}")
    return "\t".join(fields)


def snapshot_init_report_line(init_ms: float) -> str:
    """SnapStart: the init that made the snapshot (with its before-snapshot hooks), logged once."""
    return f"INIT_REPORT Init Duration: {init_ms:.2f} ms"


def restore_start_line(runtime_version: str) -> str:
    return f"RESTORE_START Runtime Version: {runtime_version}"


def restore_report_line(restore_ms: float, status: str | None = None, error_type: str | None = None) -> str:
    """`RESTORE_REPORT Restore Duration: 12.34 ms`, with `Status` and `Error Type` when it failed."""
    line = f"RESTORE_REPORT Restore Duration: {restore_ms:.2f} ms"
    if status:
        line += f"\tStatus: {status}"
    if error_type:
        line += f"\tError Type: {error_type}"
    return line


def snapshot_init_budget_s(timeout_s: float) -> float:
    """The snapshot's init may run 130 s or the function timeout, whichever is longer (at most 15 min)."""
    return min(max(130.0, timeout_s), 900.0)


def billed_ms(duration_ms: float, init_ms: float | None = None) -> int:
    """Whole milliseconds, rounded up; a cold start's init is billed too (since 2025-08-01)."""
    total = duration_ms + (init_ms or 0.0)
    return max(1, math.ceil(round(total, 6)))


def log_tail(log: str) -> str:
    """X-Amz-Log-Result: base64 of the last 4 KB of the invocation's log."""
    return base64.b64encode(log.encode()[-LOG_TAIL_BYTES:]).decode()


@dataclass(frozen=True, slots=True)
class CostEstimate:
    requests_usd: float
    compute_usd: float
    mean_billed_ms: float
    memory_mb: int

    @property
    def total_usd(self) -> float:
        return self.requests_usd + self.compute_usd


@dataclass(frozen=True, slots=True)
class SnapStartCost:
    """What SnapStart adds: the cached snapshot per hour (per published version) and each restore."""

    cache_usd_per_hour: float
    restore_usd: float  # per restore (by memory size; the billed restore time is in Billed Duration)
    minimum_cache_usd: float  # a version is cached for at least 3 hours


def snapstart_cost(memory_mb: int) -> SnapStartCost:
    gb = memory_mb / 1024
    hourly = gb * 3600 * PRICE_SNAPSTART_CACHE_PER_GB_SECOND
    return SnapStartCost(hourly, gb * PRICE_SNAPSTART_RESTORE_PER_GB, hourly * SNAPSTART_MIN_CACHE_S / 3600)


def cost_per_million(billed: list[int], memory_mb: int, arch: str = "x86_64") -> CostEstimate:
    """What a million requests would cost at these billed durations (us-east-1, before free tier)."""
    mean = sum(billed) / len(billed) if billed else 0.0
    gb_seconds = memory_mb / 1024 * mean / 1000 * 1_000_000
    return CostEstimate(PRICE_PER_MILLION_REQUESTS, gb_seconds * PRICE_PER_GB_SECOND[arch], mean, memory_mb)
