"""The records the emulator's modules hand each other: HTTP requests and replies, invoke outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FunctionConfig", "InvokeResult", "Outcome", "OutcomeKind", "Reply", "Request", "SandboxCaps"]


@dataclass(slots=True)
class Request:
    """One parsed HTTP request. `body_size` is the declared size, even when the body was dropped."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    body_size: int
    body_dropped: bool = False  # larger than the listener's cap: read and thrown away

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(slots=True)
class Reply:
    """One HTTP response. Content-Length and Connection are added by the server."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


# What ended one invocation inside an instance.
OutcomeKind = Literal[
    "response",  # the runtime posted /response
    "error",  # the runtime posted /error (the handler raised)
    "init_error",  # the runtime posted /init/error, or died or ran out of time before its first /next
    "timeout",  # the function timeout passed; the instance was killed
    "exit",  # the runtime process exited during the invoke
    "oom",  # the instance went over its memory size and was killed
    "too_large",  # the runtime posted a response over 6 MB
    "restore_error",  # SnapStart: an after-restore hook failed, or the instance died restoring
    "restore_timeout",  # SnapStart: the restore ran past its 10 s budget
]


@dataclass(slots=True)
class Outcome:
    """How an invocation ended, as the instance saw it, before it becomes an Invoke API answer."""

    kind: OutcomeKind
    payload: bytes
    content_type: str = "application/json"
    error_type: str | None = None  # for REPORT's `Error Type` and the init report
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on the invoke that paid for a cold start
    max_memory_mb: int = 0
    billed_ms: int = 0
    log: str = ""  # START ... REPORT, the function's output between
    restore_ms: float | None = None  # set on the first invoke of a restored (SnapStart) instance
    billed_restore_ms: int | None = None


@dataclass(slots=True)
class InvokeResult:
    """One answered invocation, as the Invoke API or an in-process caller (the gateway) sees it."""

    request_id: str
    status: int  # 200 RequestResponse, 202 Event, 204 DryRun
    payload: bytes = b""
    content_type: str = "application/json"
    function_error: str | None = None  # "Unhandled" on any function error
    error_type: str | None = None  # the errorType behind a function error
    log: str = ""  # START ... REPORT of this invocation (sync invokes only)
    duration_ms: float = 0.0
    billed_ms: int = 0
    init_ms: float | None = None
    max_memory_mb: int = 0
    executed_version: str = "$LATEST"
    restore_ms: float | None = None
    billed_restore_ms: int | None = None


@dataclass(slots=True)
class FunctionConfig:
    """One function as `lambdalite serve` runs it: code, handler, memory, timeout, environment."""

    name: str
    handler: str
    code_dir: str
    memory_mb: int = 1024
    timeout_s: float = 30.0
    ephemeral_mb: int = 512
    environment: dict[str, str] = field(default_factory=dict)  # the user's variables
    model_dir: str | None = None  # passed to instances as LAMBDALITE_MODEL
    layers: tuple[str, ...] = ()  # directories with a layer's content each, merged at /opt in this order
    max_concurrency: int = 1
    idle_timeout_s: float = 300.0
    queue: bool = False  # wait for a free instance instead of answering 429
    init_budget_s: float = 10.0
    region: str = "us-east-1"
    account: str = "123456789012"
    version: str = "$LATEST"
    event_retry_delays_s: tuple[float, ...] = (1.0, 2.0)  # Lambda waits ~1 min, then ~2 min
    snapstart: bool = False  # init once into a snapshot; every instance is restored from it
    snapshot_budget_s: float | None = None  # the snapshot's init; None: 130 s or the timeout, the longer
    restore_budget_s: float = 10.0  # SnapStart: loading the runtime and the after-restore hooks
    alias: str | None = None  # a name invokes may use as the qualifier (SnapStart: the published version's alias)
    log_format: str = "Text"  # LoggingConfig.LogFormat: Text or JSON
    application_log_level: str = "INFO"  # JSON only: TRACE, DEBUG, INFO, WARN, ERROR, FATAL
    system_log_level: str = "INFO"  # JSON only: DEBUG, INFO, WARN
    architecture: str = "x86_64"  # for prices and GetFunctionConfiguration
    description: str = ""
    cpu_share: bool = False  # give each instance Lambda's CPU for its memory size (toolkit/local/cpu.py)


@dataclass(frozen=True, slots=True)
class SandboxCaps:
    """What this machine lets the sandbox do (probed once by the server)."""

    mount: bool  # a private mount namespace: tmpfs /tmp with a quota, read-only root
    landlock: int  # Landlock ABI version, 0 when missing
    note: str | None = None  # why something is missing, for the startup warning
