"""One execution environment: a runtime process, its own Runtime API listener, and Lambda's limits.

    instance = Instance(config, environment, log=print, number=1, on_dead=..., sandbox={...})
    await instance.start()            # spawns `python -m awslambdaric HANDLER` (through sandbox.py)
    outcome = await instance.run(job)  # one invocation at a time; the first one pays the cold start
    await instance.close()

The process long-polls `GET /next` on 127.0.0.1:<its own port>; `run` hands the event to that
poll and waits for `/response`, `/error` or `/init/error`, for the process to exit, for the
function timeout, or for its memory to pass the configured size. Memory is its whole process
tree's, as Lambda counts the sandbox: the tree's current size polled (every 20 ms, 50 ms with
children) and the runtime's own peak resident size (VmHWM), checked again on every Runtime API
call, so a process that went over, even briefly and between two polls, is out of memory before
anything it says is accepted. Timeouts and out-of-memory kill the whole process group, as Lambda
does, and the instance is not reused. Init has a 10 s budget: past it the init is killed and
retried inside the invocation, under the function timeout.

Everything the process prints (stdout and stderr share one pipe) becomes log lines, attributed to
the invocation in flight and framed by START / END / REPORT. The pipe is drained before an answer
is accepted, so a line printed before `return` always lands inside its invocation's log.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.cpu import Governor, vcpus
from lambdalite.toolkit.local.http import HttpServer
from lambdalite.toolkit.local.messages import FunctionConfig, Outcome, OutcomeKind, Reply, Request
from lambdalite.toolkit.local.platform import platform_log
from lambdalite.toolkit.local.process import RuntimeProcess

__all__ = ["Instance", "Job", "LogSink"]

LogSink = Callable[[str], None]

_MEMORY_POLL_S = 0.02
_TREE_POLL_S = 0.05  # with child processes: summing their Pss costs about 1 ms per 200 MB
_ACCEPTED = Reply(202, [("Content-Type", "application/json")], b'{"status":"OK"}')


@dataclass(slots=True, eq=False)
class Job:
    """One invocation on its way through an instance."""

    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None
    lines: list[str] = field(default_factory=list)


class Instance:
    def __init__(
        self,
        config: FunctionConfig,
        environment: dict[str, str],
        *,
        log: LogSink,
        number: int,
        on_dead: Callable[[Instance], None],
        sandbox: dict[str, object],
    ) -> None:
        self.config = config
        self.environment = environment
        self.log = log
        self.number = number
        self.on_dead = on_dead
        self.sandbox = sandbox
        self.runtime = HttpServer(self._runtime_request, max_body=protocol.RESPONSE_LIMIT)
        self.platform = platform_log(
            config.log_format,
            function_name=config.name,
            system_level=config.system_log_level,
            application_level=config.application_log_level,
        )
        self.port = 0
        self.proc: RuntimeProcess | None = None
        self.initialized = False
        self.init_ms: float | None = None  # reported once, on the invocation that paid for it
        self.restore_ms: float | None = None  # SnapStart (RestoredInstance): reported like init_ms
        self.billed_restore_ms: int | None = None
        self.dead = False
        self.retiring = False  # finishing its last invocation; never handed another
        self.last_used = time.monotonic()
        self.peak_mb = 0
        self.job: Job | None = None
        self.done: asyncio.Future[Outcome] | None = None
        self.delivered = False
        self.suppressed_init = False
        self.started_at = 0.0
        self.init_lines: list[str] = []
        self.waiter: asyncio.Future[None] | None = None
        self._init_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None  # the function timeout
        self._memory_timer: asyncio.TimerHandle | None = None
        self._exited = asyncio.Event()
        self.closed: asyncio.Task[None] | None = None  # the Runtime API listener closing, once dead
        self.governor: Governor | None = None  # set: the process gets Lambda's CPU for the memory size

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return not self.dead and not self.retiring

    @property
    def busy(self) -> bool:
        return self.job is not None

    async def start(self) -> None:
        self.port = await self.runtime.start("127.0.0.1", 0)
        self._spawn()

    def _spawn(self) -> None:
        env = dict(self.environment)
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.port}"
        proc = RuntimeProcess(
            [sys.executable, "-m", "lambdalite.toolkit.local.sandbox", self.config.handler],
            cwd=self.config.code_dir,
            env=env,
            on_line=self._on_line,
            on_exit=self._on_exit,
        )
        self.proc = proc
        self.initialized = False
        if self.governor is not None:
            self.governor.add(proc.pid, proc.pidfd, vcpus(self.config.memory_mb))
        self._platform(self.platform.init_start(self.config.version))
        if not self.suppressed_init:
            loop = asyncio.get_running_loop()
            self._init_timer = loop.call_later(self.config.init_budget_s, self._on_init_budget, proc)
        self._watch_memory()

    async def run(self, job: Job) -> Outcome:
        """Run one invocation; the instance must be usable and not busy."""
        assert self.usable and self.job is None
        self.job = job
        self.delivered = False
        self.done = asyncio.get_running_loop().create_future()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        try:
            return await self.done
        finally:
            self.last_used = time.monotonic()

    def kill(self) -> None:
        """SIGKILL the whole process group; the exit callback does the rest."""
        if self.proc is not None:
            self.proc.kill()

    async def close(self) -> None:
        self.retiring = True
        self.kill()
        if self.proc is not None and self.proc.alive:
            try:
                await asyncio.wait_for(self._exited.wait(), 5)
            except TimeoutError:
                pass
        self._mark_dead()
        if self.closed is not None:
            await self.closed

    # -- the Runtime API -----------------------------------------------------------------------------

    async def _runtime_request(self, request: Request) -> Reply:
        route = protocol.match_runtime(request.method, request.path)
        if route is None:
            return protocol.runtime_error_reply(404, "InvalidRequest", f"{request.method} {request.path} not found")
        if self._over_memory()[0]:
            # Lambda would have killed the process the moment it passed its memory size, so whatever it
            # says now (init done, an answer) never happened. The poll alone misses a peak that falls
            # back, or one reached between two polls just before the runtime answers.
            self._out_of_memory()
            return protocol.runtime_error_reply(500, "Runtime.OutOfMemory", "the memory size was exceeded")
        if route.action == "next":
            return await self._next()
        if route.action == "init_error":
            return self._init_error(request)
        job = self.job
        if job is None or not self.delivered or route.request_id != job.request_id:
            return protocol.runtime_error_reply(400, "InvalidRequestID", "Invalid request ID")
        if self.proc is not None:
            self.proc.drain(partial=True)  # what it printed before the answer belongs to this invocation
        if request.body_dropped:
            self._finish("too_large", protocol.response_too_large_payload(), error_type="Function.ResponseSizeTooLarge")
            return protocol.runtime_error_reply(
                413,
                "RequestEntityTooLarge",
                f"Exceeded maximum allowed payload size ({protocol.RESPONSE_LIMIT} bytes).",
            )
        if route.action == "error":
            error_type = request.header("lambda-runtime-function-error-type") or _error_type(request.body)
            self._finish("error", request.body, error_type=error_type)
        else:
            self._finish("response", request.body, content_type=request.header("content-type") or "application/json")
        await asyncio.sleep(0)  # let the caller's answer go out first; the runtime waits for 202 either way
        return _ACCEPTED

    async def _next(self) -> Reply:
        if not self.initialized:
            self._init_complete()
        if self.delivered:  # the runtime skipped answering its invocation
            return protocol.runtime_error_reply(403, "InvalidStateTransition", "invocation still in progress")
        if self.job is None:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self._deliver()

    def _init_complete(self) -> None:
        assert self.proc is not None
        self.initialized = True
        self._cancel_init_timer()
        if not self.suppressed_init:
            self.init_ms = (time.perf_counter() - self.proc.spawned_at) * 1e3
            self._platform(self.platform.init_done(self.init_ms))
        self.init_lines = []

    def _deliver(self) -> Reply:
        job = self.job
        assert job is not None
        self.delivered = True
        if not self.suppressed_init:
            self._begin(job)
        loop = asyncio.get_running_loop()
        deadline_ms = int((time.time() + self.config.timeout_s - (time.perf_counter() - self.started_at)) * 1000)
        if self._timer is None:
            self._timer = loop.call_at(self._deadline(), self._on_timeout)
        self._watch_memory()
        body = job.payload
        headers = protocol.next_headers(
            job.request_id,
            deadline_ms,
            job.function_arn,
            trace_id=job.trace_id,
            client_context=job.client_context,
            cognito_identity=job.cognito_identity,
            tenant_id=job.tenant_id,
        )
        return Reply(200, headers, body)

    def _begin(self, job: Job) -> None:
        """The invocation's clock starts: START is logged."""
        self.started_at = time.perf_counter()
        self._platform(self.platform.start(job.request_id, self.config.version, job.trace_id))

    def _deadline(self) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + self.config.timeout_s - (time.perf_counter() - self.started_at)

    def _init_error(self, request: Request) -> Reply:
        if self.initialized:
            return protocol.runtime_error_reply(403, "InvalidStateTransition", "init already completed")
        if self.proc is not None:
            self.proc.drain(partial=True)
        error_type = request.header("lambda-runtime-function-error-type") or _error_type(request.body)
        self._fail_init(request.body, error_type or "Runtime.Unknown", "error")
        return _ACCEPTED

    # -- ends of an invocation -----------------------------------------------------------------------

    def _fail_init(self, payload: bytes, error_type: str, status: str) -> None:
        """Init failed (reported, exited, out of memory): the waiting invocation gets the error."""
        assert self.proc is not None
        init_ms = (time.perf_counter() - self.proc.spawned_at) * 1e3
        self._cancel_init_timer()
        self.retiring = True
        asyncio.get_running_loop().call_soon(self.kill)  # it exits anyway; it must not count as running
        phase = "invoke" if self.suppressed_init else "init"
        job = self.job
        if job is None or self.done is None or self.done.done():
            self._platform(self.platform.init_report(init_ms, phase, status, error_type))
            return
        job.lines.extend(self.init_lines)
        self.delivered = True
        self._platform(self.platform.init_report(init_ms, phase, status, error_type))
        if not self.suppressed_init:
            self._begin(job)
        self._finish(
            "init_error", payload, error_type=error_type, duration_ms=None if self.suppressed_init else init_ms
        )

    def _finish(
        self,
        kind: OutcomeKind,
        payload: bytes,
        *,
        content_type: str = "application/json",
        error_type: str | None = None,
        duration_ms: float | None = None,
    ) -> None:
        job, done = self.job, self.done
        if job is None or done is None or done.done():
            return
        if self.proc is not None and self.proc.alive:
            self.proc.drain(partial=True)  # its output so far, a last line without newline included
        self._cancel_timer()
        if duration_ms is None:
            duration_ms = (time.perf_counter() - self.started_at) * 1e3
        if kind == "timeout":
            duration_ms = self.config.timeout_s * 1e3
        out_of_memory = kind == "oom" or error_type == "Runtime.OutOfMemory"
        memory_mb = self.config.memory_mb if out_of_memory else self._max_memory_mb()  # Lambda reports the cap
        init_ms = self.init_ms if kind != "init_error" else None
        restore_ms, billed_restore_ms = self.restore_ms, self.billed_restore_ms
        self.init_ms = self.restore_ms = self.billed_restore_ms = None
        status = {"timeout": "timeout", "exit": "error", "oom": "error", "init_error": "error"}.get(kind)
        report = protocol.Report(
            job.request_id,
            duration_ms,
            protocol.billed_ms(duration_ms, init_ms) + (billed_restore_ms or 0),
            self.config.memory_mb,
            memory_mb,
            init_ms,
            status,
            error_type if status == "error" else None,
            restore_ms,
            billed_restore_ms,
        )
        function_error = error_type if kind == "error" else None
        self._platform(self.platform.end(report, function_error=function_error, trace_id=job.trace_id))
        outcome = Outcome(
            kind,
            payload,
            content_type,
            error_type,
            duration_ms,
            init_ms,
            memory_mb,
            report.billed_ms,
            "\n".join(job.lines) + "\n",
            restore_ms,
            billed_restore_ms,
        )
        self.job = None
        self.done = None
        self.delivered = False
        self.suppressed_init = False
        if kind in ("timeout", "oom"):
            self.retiring = True
            self.kill()
        elif kind == "too_large":
            self.retiring = True  # the runtime exits on the 413 (sent before this kill runs)
            asyncio.get_running_loop().call_soon(self.kill)
        done.set_result(outcome)

    def _on_timeout(self) -> None:
        self._timer = None
        job = self.job
        if job is None:
            return
        if not self.initialized:  # a suppressed init that did not finish in time
            self._platform(self.platform.init_report(self.config.timeout_s * 1e3, "invoke", "timeout"))
        self._finish(
            "timeout", protocol.timeout_payload(job.request_id, self.config.timeout_s), error_type="Sandbox.Timedout"
        )

    def _on_init_budget(self, proc: RuntimeProcess) -> None:
        """Init ran past 10 s: Lambda kills it and retries init inside the invocation (a suppressed init)."""
        self._init_timer = None
        if proc is not self.proc or self.initialized or self.dead:
            return
        self._platform(self.platform.init_report(self.config.init_budget_s * 1e3, "init", "timeout"))
        self.kill()
        job = self.job
        if job is None:
            self.retiring = True
            return
        self.suppressed_init = True
        self.init_ms = None
        self.init_lines = []  # the killed attempt's output is in the log already
        self._begin(job)
        self._timer = asyncio.get_running_loop().call_at(self._deadline(), self._on_timeout)
        self._spawn()

    def _on_exit(self, proc: RuntimeProcess, returncode: int) -> None:
        if self.governor is not None:
            self.governor.remove(proc.pid)
        if proc is not self.proc:  # a process we replaced (suppressed init)
            return
        job = self.job
        if job is not None and self.done is not None and not self.done.done():
            message = (
                f"RequestId: {job.request_id} Error: Runtime exited with error: {protocol.exit_description(returncode)}"
            )
            if not self.initialized:
                self._fail_init(protocol.error_payload("Runtime.ExitError", message), "Runtime.ExitError", "error")
            else:
                self._finish(
                    "exit", protocol.error_payload("Runtime.ExitError", message), error_type="Runtime.ExitError"
                )
        self._exited.set()
        self._mark_dead()

    def _mark_dead(self) -> None:
        if self.dead:
            return
        self.dead = True
        self.closed = asyncio.get_running_loop().create_task(self.runtime.close())
        self._cancel_timer()
        self._cancel_init_timer()
        if self._memory_timer is not None:
            self._memory_timer.cancel()
            self._memory_timer = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.cancel()
        self.on_dead(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_init_timer(self) -> None:
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None

    # -- memory --------------------------------------------------------------------------------------

    def _watch_memory(self, period: float = _MEMORY_POLL_S) -> None:
        if self._memory_timer is None and not self.dead:
            self._memory_timer = asyncio.get_running_loop().call_later(period, self._poll_memory)

    def _poll_memory(self) -> None:
        self._memory_timer = None
        proc = self.proc
        if proc is None or self.dead or not proc.alive:
            return
        over, children = self._over_memory()
        if over:
            self._out_of_memory()
            return
        if self.job is not None or not self.initialized:
            self._watch_memory(_TREE_POLL_S if children else _MEMORY_POLL_S)

    def _over_memory(self) -> tuple[bool, int]:
        """(whether the instance is over its memory size, how many descendants the runtime has).

        Over: the process tree uses more now, or the runtime itself ever held more (its VmHWM)."""
        proc = self.proc
        if proc is None or self.dead or not proc.alive:
            return False, 0
        used_kb, hwm_kb, children = proc.memory_kb()
        self.peak_mb = max(self.peak_mb, math.ceil(max(used_kb, hwm_kb) / 1024))
        return max(used_kb, hwm_kb) > self.config.memory_mb * 1024, children

    def _out_of_memory(self) -> None:
        job = self.job
        self.kill()
        self.retiring = True
        if job is None:
            return
        message = f"RequestId: {job.request_id} Error: Runtime exited with error: signal: killed"
        payload = protocol.error_payload("Runtime.OutOfMemory", message)
        if not self.initialized:
            self._fail_init(payload, "Runtime.OutOfMemory", "error")
        else:
            self._finish("oom", payload, error_type="Runtime.OutOfMemory")

    def _max_memory_mb(self) -> int:
        if self.proc is not None and self.proc.alive:
            used_kb, hwm_kb, _ = self.proc.memory_kb()
            self.peak_mb = max(self.peak_mb, math.ceil(max(used_kb, hwm_kb) / 1024))
        return self.peak_mb

    # -- output --------------------------------------------------------------------------------------

    def _on_line(self, line: str) -> None:
        if self.platform.keep(line):  # JSON format: Lambda drops records below the application log level
            self._emit(line, from_function=True)

    def _platform(self, lines: list[str]) -> None:
        for line in lines:
            self._emit(line)

    def _emit(self, line: str, *, from_function: bool = False) -> None:
        self.log(line)
        job = self.job
        if job is not None and (self.delivered or self.suppressed_init):
            job.lines.append(line)
        elif from_function and not self.initialized:
            self.init_lines.append(line)


def _error_type(body: bytes) -> str | None:
    import json

    try:
        value = json.loads(body)
    except ValueError:
        return None
    error_type = value.get("errorType") if isinstance(value, dict) else None
    return error_type if isinstance(error_type, str) else None
