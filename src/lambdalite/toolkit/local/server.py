"""The local Lambda: the Invoke API on one port, a pool of instances behind it.

    server = LambdaServer(config, log=print)
    port = await server.start("127.0.0.1", 8080)
    result = await server.invoke(b'{"url": "..."}')      # in process, no HTTP
    await server.close()                                   # every instance killed and reaped

Scheduling is Lambda's: a free warm instance takes the invocation; otherwise a new one starts
(a cold start) while fewer than `max_concurrency` exist; otherwise the answer is 429
TooManyRequestsException, or, with `queue`, the invocation waits for the first free instance.
`Event` invocations are queued (202), wait for capacity instead of being throttled, and are
retried twice on a function error with the same request id. Idle instances are stopped after
`idle_timeout_s`.

The Event queue holds no payloads in memory: each is spooled to a file in the emulator's state
directory until an instance takes it, and at most `max_concurrency` events are in flight. Past
`MAX_QUEUED_EVENTS` events or `MAX_QUEUED_EVENT_BYTES` spooled, an Event invoke is refused with
429 TooManyRequestsException. Synchronous invokes come first: a free instance goes to a waiting
synchronous invoke before any queued event, and while instances are busy with events a
synchronous invoke waits for the first to finish instead of being throttled (a backlog of events
never starves it: it is answered about one handler duration after an instance frees up).

The seam for an HTTP front door (API Gateway, `lambdalite.toolkit.local.gateway`):

* Every request on the serve port that is not the Invoke API goes to `fallback`, an async callable
  `(method, path, query, headers, body) -> (status, [(header, value), ...], body)`; `headers` has
  lower-cased names. The default answers 404 `{"message": "Not Found"}`. It may be set after
  construction, since a front door usually needs the server's `invoke`:
  `server.fallback = FrontDoor(GatewayConfig(), server.invoke)`.
* `LambdaServer.invoke(payload, ...)` runs one invocation and returns an `InvokeResult` (status,
  payload bytes, `function_error`, `error_type`, the invocation's log, durations, request id). It
  raises `InvokeRefusedError` subclasses for service errors: `TooManyRequestsError` when throttled,
  `RequestTooLargeError` for an oversized payload.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import lambdalite
from lambdalite.errors import (
    EmulatorError,
    FunctionNotFoundError,
    InvalidParameterValueError,
    InvokeRefusedError,
    TooManyRequestsError,
)
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.cpu import Governor, shared_governor
from lambdalite.toolkit.local.environment import lambda_environment
from lambdalite.toolkit.local.http import PUBLIC_LIMITS, HttpLimits, HttpServer
from lambdalite.toolkit.local.instances import Instance, Job, LogSink
from lambdalite.toolkit.local.messages import FunctionConfig, InvokeResult, Outcome, Reply, Request, SandboxCaps
from lambdalite.toolkit.local.sandbox import LAYERS_ROOT, TASK_ROOT
from lambdalite.toolkit.local.snapshot import Snapshot

__all__ = [
    "MAX_QUEUED_EVENTS",
    "MAX_QUEUED_EVENT_BYTES",
    "Fallback",
    "LambdaServer",
    "Observer",
    "Route",
    "Summary",
    "not_found",
    "probe_sandbox",
]

Fallback = Callable[[str, str, str, Mapping[str, str], bytes], Awaitable[tuple[int, Sequence[tuple[str, str]], bytes]]]
# A route of the serve port's own (metrics, dashboard, control plane): a Reply, or None to pass.
Route = Callable[[Request], Awaitable[Reply | None]]


class Observer(Protocol):
    """Told of every answered invocation and every throttle (metrics, the dashboard)."""

    def invoked(self, result: InvokeResult) -> None: ...

    def throttled(self) -> None: ...


_FRONT_DOOR_BODY_LIMIT = 10 * 2**20  # API Gateway's payload limit; the Invoke API checks its own 6 MB
_STATS_WINDOW = 100_000
MAX_QUEUED_EVENTS = 100_000
MAX_QUEUED_EVENT_BYTES = 2 * 2**30  # spooled payloads, on disk


@dataclass(frozen=True, slots=True)
class _QueuedEvent:
    """An Event invocation waiting for an instance; its payload is in `path` until then."""

    job: Job
    path: str
    size: int


async def not_found(
    method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, Sequence[tuple[str, str]], bytes]:
    return 404, [("Content-Type", "application/json")], b'{"message": "Not Found"}'


def probe_sandbox() -> SandboxCaps:
    """Ask a throwaway process what the sandbox can do here (mount namespace, Landlock)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(_package_paths()))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lambdalite.toolkit.local.sandbox", "--probe"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        found = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return SandboxCaps(False, 0, f"sandbox probe failed: {exc}")
    return SandboxCaps(bool(found["mount"]), int(found["landlock"]), found.get("mount_error"))


def _package_paths() -> list[str]:
    """Where lambdalite and its dependencies are imported from, for the instances' PYTHONPATH."""
    here = str(Path(lambdalite.__file__).resolve().parent.parent)
    return [here, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]


def _layer_paths(layers: list[str], mounted: bool) -> list[str]:
    """Where Lambda's Python runtime finds a layer's packages: /opt/python and its site-packages
    (the host's directories when there is no mount namespace; a later layer first)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    roots = [LAYERS_ROOT] if mounted else list(reversed(layers))
    return [p for root in roots for p in (f"{root}/python/lib/{version}/site-packages", f"{root}/python")]


def _check_opt_is_free(paths: list[str]) -> None:
    for path in paths:
        if path == LAYERS_ROOT or path.startswith(LAYERS_ROOT + "/"):
            raise EmulatorError(
                f"cannot put layers at {LAYERS_ROOT}: the instance needs {path}, which is under it "
                "(install lambdalite's Python environment elsewhere, or serve without --layer)"
            )


@dataclass(frozen=True, slots=True)
class Summary:
    """A snapshot for the live status line and the exit report."""

    instances: int
    busy: int
    invocations: int
    cold_starts: int
    errors: int
    throttles: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def warm(self) -> int:
        return self.instances - self.busy


class LambdaServer:
    def __init__(
        self,
        config: FunctionConfig,
        *,
        log: LogSink | None = None,
        fallback: Fallback = not_found,
        caps: SandboxCaps | None = None,
        http_limits: HttpLimits = PUBLIC_LIMITS,
    ) -> None:
        self.config = config
        self.log: LogSink = log or (lambda line: print(line, flush=True))
        self.fallback = fallback
        # Checks an Invoke API request before anything else (e.g. `guard.InvokeAuth`, SigV4): None lets it in.
        self.invoke_auth: Callable[[Request], Reply | None] | None = None
        self.caps = caps
        self.http = HttpServer(self.handle, max_body=_FRONT_DOOR_BODY_LIMIT, limits=http_limits)
        self.instances: list[Instance] = []
        self.idle: list[Instance] = []  # most recently used last: reuse the warmest
        self.waiters: deque[asyncio.Future[Instance]] = deque()  # synchronous invokes: served first
        self.event_waiters: deque[asyncio.Future[Instance]] = deque()
        self.events: set[asyncio.Task[None]] = set()  # events in flight (at most max_concurrency)
        self.event_queue: deque[_QueuedEvent] = deque()  # spooled, waiting for a slot
        self.queued_bytes = 0
        self.events_running = 0  # instances running an event right now
        self._spool: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.durations: deque[float] = deque(maxlen=_STATS_WINDOW)
        self.billed: deque[int] = deque(maxlen=_STATS_WINDOW)
        self.inits: deque[float] = deque(maxlen=_STATS_WINDOW)
        self.restores: deque[int] = deque(maxlen=_STATS_WINDOW)  # SnapStart: billed restore ms
        self.snapshot: Snapshot | None = None
        self.invocations = self.cold_starts = self.errors = self.throttles = 0
        self.closing = False
        self.observers: list[Observer] = []
        self.routes: list[Route] = []  # tried in order before the front door
        self.governor: Governor | None = None  # CPU time by memory size (config.cpu_share)
        self._numbers = 0
        self._reaper: asyncio.Task[None] | None = None
        self._scratch: str | None = None
        self._environment: dict[str, str] = {}
        self._sandbox: dict[str, object] = {}
        self.arn = protocol.function_arn(config.name, region=config.region, account=config.account)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> int:
        """Prepare the sandbox and listen; returns the bound port."""
        if self.caps is None:
            self.caps = await asyncio.to_thread(probe_sandbox)
        self._prepare()
        if not self.caps.mount:
            self._scratch = tempfile.mkdtemp(prefix="lambdalite-")
            self._sandbox["file_size_mb"] = self.config.ephemeral_mb
        if self.config.snapstart:
            await self._create_snapshot()
        bound = await self.http.start(host, port)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())
        return bound

    def _prepare(self) -> None:
        """The environment and sandbox every new instance gets, from the configuration."""
        assert self.caps is not None
        spec = importlib.util.find_spec("awslambdaric")
        runtime_dir = str(Path(spec.origin).parent.parent) if spec and spec.origin else ""
        code_dir = str(Path(self.config.code_dir).resolve())
        # With a mount namespace the instance sees its code where Lambda puts it: /var/task, read-only.
        task_root = TASK_ROOT if self.caps.mount else code_dir
        layers = [str(Path(layer).resolve()) for layer in self.config.layers]
        if layers and self.caps.mount:
            _check_opt_is_free([*_package_paths(), sys.prefix, code_dir])
        pythonpath = [task_root, *_layer_paths(layers, self.caps.mount), *_package_paths()]
        self._environment = lambda_environment(
            self.config, pythonpath=pythonpath, runtime_dir=runtime_dir, task_root=task_root
        )
        model_dir = self.config.model_dir
        own_model = "LAMBDALITE_MODEL" in self.config.environment
        if self.caps.mount and model_dir and not own_model and str(Path(model_dir).resolve()) == code_dir:
            self._environment["LAMBDALITE_MODEL"] = TASK_ROOT  # the bundle is the code
        self._sandbox = {
            "parent": os.getpid(),
            "mount": self.caps.mount,
            "landlock": self.caps.landlock,
            "tmp_size_mb": self.config.ephemeral_mb,
            "expose": [code_dir, *([model_dir] if model_dir else []), *layers, *_package_paths(), sys.prefix],
            "task_root": code_dir if self.caps.mount else None,
            "layers": layers if self.caps.mount else [],
            "cwd": task_root,
            # A backstop only: the parent enforces the memory size on RSS. Runtimes reserve far more
            # address space than they touch (thread stacks, allocator arenas), so leave room.
            "address_space_mb": max(4 * self.config.memory_mb, self.config.memory_mb + 8192),
        }
        if self._scratch is not None:
            self._sandbox["file_size_mb"] = self.config.ephemeral_mb
        if self.config.cpu_share and self.governor is None:
            self.governor = shared_governor().retain()

    async def reconfigure(self, config: FunctionConfig) -> None:
        """Run later invocations with `config` (memory, timeout, environment...), as after Lambda's
        UpdateFunctionConfiguration: every instance is retired (an idle one now, a busy one when its
        invocation ends) and the next invocation starts a new one (a cold start)."""
        self.config = config
        if self.caps is not None:
            self._prepare()
        for instance in list(self.instances):
            instance.retiring = True
        idle, self.idle = self.idle, []
        await asyncio.gather(*(instance.close() for instance in idle), return_exceptions=True)

    async def _create_snapshot(self) -> None:
        """SnapStart: run the init once, in the template every instance will be forked from."""
        environment, sandbox = self._environment, self._sandbox
        if self._scratch is not None:  # no mount namespace: the snapshot's TMPDIR, shared by its instances
            tmp = os.path.join(self._scratch, "snapshot")
            os.makedirs(tmp)
            environment = dict(environment, TMPDIR=tmp)
            sandbox = dict(sandbox, tmp=tmp)
        self.snapshot = Snapshot(self.config, environment, sandbox, log=self.log)
        try:
            await self.snapshot.create()
        except BaseException:
            await self.snapshot.close()
            raise

    async def close(self) -> None:
        """Stop listening, fail whatever waits, kill and reap every instance."""
        self.closing = True
        await self.http.close()
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self.events):
            task.cancel()
        self.event_queue.clear()
        for waiters in (self.waiters, self.event_waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.cancel()
        await asyncio.gather(*(inst.close() for inst in list(self.instances)), return_exceptions=True)
        if self.snapshot is not None:
            await self.snapshot.close()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.governor is not None:
            self.governor.release()
            self.governor = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)

    def summary(self) -> Summary:
        ordered = sorted(self.durations)

        def pct(q: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

        busy = sum(1 for inst in self.instances if inst.busy)
        live = self._live()
        return Summary(
            live,
            busy,
            self.invocations,
            self.cold_starts,
            self.errors,
            self.throttles,
            pct(0.5),
            pct(0.99),
        )

    def cost(self) -> protocol.CostEstimate:
        """A million requests at the measured durations (warm; see `cold_start_cost` for init)."""
        return protocol.cost_per_million(list(self.billed), self.config.memory_mb)

    def cold_start_cost(self) -> tuple[float, float] | None:
        """(mean init ms, USD per cold start): init is billed since 2025-08-01."""
        if not self.inits:
            return None
        mean = sum(self.inits) / len(self.inits)
        usd = self.config.memory_mb / 1024 * protocol.billed_ms(mean) / 1000 * protocol.PRICE_PER_GB_SECOND["x86_64"]
        return mean, usd

    # -- the in-process seam -------------------------------------------------------------------------

    async def invoke(
        self,
        payload: bytes = b"{}",
        *,
        invocation_type: protocol.InvocationType = "RequestResponse",
        client_context: str | None = None,
        trace_id: str | None = None,
        cognito_identity: str | None = None,
        tenant_id: str | None = None,
        request_id: str | None = None,
    ) -> InvokeResult:
        """One invocation of the function, as the Invoke API would run it (without the HTTP).

        `client_context` is the decoded JSON text. Raises `InvokeRefusedError` subclasses for
        service errors (oversized or non-JSON payload, throttled).
        """
        request_id = request_id or str(uuid.uuid4())
        body = protocol.check_payload(payload, len(payload), invocation_type)
        return await self._dispatch(
            request_id, body, invocation_type, client_context, trace_id, cognito_identity, tenant_id
        )

    async def _dispatch(
        self,
        request_id: str,
        body: bytes,
        invocation_type: protocol.InvocationType,
        client_context: str | None,
        trace_id: str | None,
        cognito_identity: str | None,
        tenant_id: str | None,
    ) -> InvokeResult:
        if tenant_id:
            # Lambda refuses a tenant ID for a function without tenant isolation mode, and
            # lambdalite serve does not emulate that mode.
            raise InvalidParameterValueError(
                "The function does not have tenant isolation enabled: remove the tenant ID "
                "(X-Amz-Tenant-Id, TenantId) from the invocation"
            )
        job = Job(
            request_id,
            body,
            self.arn,
            trace_id or protocol.new_trace_id(time.time()),
            client_context,
            cognito_identity,
            tenant_id,
        )
        if invocation_type == "DryRun":
            return InvokeResult(request_id, 204, executed_version=self.config.version)
        if invocation_type == "Event":
            self._enqueue_event(job)
            return InvokeResult(request_id, 202, executed_version=self.config.version)
        instance = await self._acquire(wait=self.config.queue)
        try:
            outcome = await instance.run(job)
        finally:
            self._release(instance)
        if outcome.kind in ("restore_error", "restore_timeout"):  # SnapStart: a service error, not the function's
            from lambdalite.toolkit.local.restored import restore_refusal

            self.errors += 1
            raise restore_refusal(outcome)
        return self._record(job, outcome)

    # -- the Event queue -----------------------------------------------------------------------------

    def _enqueue_event(self, job: Job) -> None:
        """Spool the event's payload and queue it; refuse past the queue's bounds."""
        size = len(job.payload)
        if len(self.event_queue) >= MAX_QUEUED_EVENTS or self.queued_bytes + size > MAX_QUEUED_EVENT_BYTES:
            self.throttles += 1
            raise TooManyRequestsError(
                f"Rate Exceeded. The local Lambda's Event queue is full ({len(self.event_queue):,} events, "
                f"{self.queued_bytes / 2**20:,.0f} MB waiting; at most {MAX_QUEUED_EVENTS:,} and "
                f"{MAX_QUEUED_EVENT_BYTES / 2**30:.0f} GB)",
                reason="ReservedFunctionConcurrentInvocationLimitExceeded",
            )
        if self._spool is None:
            self._spool = tempfile.mkdtemp(prefix="lambdalite-events-")
        path = os.path.join(self._spool, job.request_id)
        with open(path, "wb") as f:
            f.write(job.payload)
        job.payload = b""
        self.event_queue.append(_QueuedEvent(job, path, size))
        self.queued_bytes += size
        self._pump_events()

    def _pump_events(self) -> None:
        """Start queued events while fewer than `max_concurrency` are in flight."""
        while self.event_queue and len(self.events) < self.config.max_concurrency and not self.closing:
            queued = self.event_queue.popleft()
            self.queued_bytes -= queued.size
            task = asyncio.get_running_loop().create_task(self._run_queued(queued))
            self.events.add(task)
            task.add_done_callback(self._event_done)

    def _event_done(self, task: asyncio.Task[None]) -> None:
        self.events.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log(f"lambdalite: an event failed in the emulator: {task.exception()}")
        self._pump_events()

    async def _run_queued(self, queued: _QueuedEvent) -> None:
        try:
            with open(queued.path, "rb") as f:
                queued.job.payload = f.read()
        finally:
            os.unlink(queued.path)
        await self._run_event(queued.job)

    async def _run_event(self, job: Job) -> None:
        delays = (0.0, *self.config.event_retry_delays_s)
        for attempt, delay in enumerate(delays, 1):
            if delay:
                await asyncio.sleep(delay)
            instance = await self._acquire(wait=True, event=True)  # async invokes wait out throttling
            self.events_running += 1
            try:
                outcome = await instance.run(
                    Job(job.request_id, job.payload, job.function_arn, job.trace_id, job.client_context)
                )
            finally:
                self.events_running -= 1
                self._release(instance)
            if outcome.kind not in ("restore_error", "restore_timeout"):
                self._record(job, outcome)
            if outcome.kind == "response":
                return
            if attempt < len(delays):
                self.log(f"lambdalite: event {job.request_id} failed ({outcome.error_type}); retrying")
        self.log(f"lambdalite: event {job.request_id} failed {len(delays)} times; dropped")

    def _record(self, job: Job, outcome: Outcome) -> InvokeResult:
        self.invocations += 1
        self.durations.append(outcome.duration_ms)
        self.billed.append(protocol.billed_ms(outcome.duration_ms))  # the warm cost; init is counted apart
        if outcome.init_ms is not None:
            self.inits.append(outcome.init_ms)
        if outcome.billed_restore_ms is not None:
            self.restores.append(outcome.billed_restore_ms)
        failed = outcome.kind != "response"
        self.errors += failed
        result = InvokeResult(
            job.request_id,
            200,
            outcome.payload,
            outcome.content_type,
            "Unhandled" if failed else None,  # every function error is Unhandled on today's Lambda
            outcome.error_type if failed else None,
            outcome.log,
            outcome.duration_ms,
            outcome.billed_ms,
            outcome.init_ms,
            outcome.max_memory_mb,
            self.config.version,
            outcome.restore_ms,
            outcome.billed_restore_ms,
        )
        for observer in self.observers:
            observer.invoked(result)
        return result

    # -- scheduling ----------------------------------------------------------------------------------

    async def _acquire(self, *, wait: bool, event: bool = False) -> Instance:
        """A free instance, a new one, or a wait for one. Synchronous invokes wait (instead of a
        429) while any instance runs an event, and are handed a freed instance first."""
        while self.idle:
            instance = self.idle.pop()
            if instance.usable:
                return instance
        if self._live() < self.config.max_concurrency:
            return await self._new_instance()
        if not wait and not (self.events_running and not event):
            self.throttles += 1
            for observer in self.observers:
                observer.throttled()
            raise TooManyRequestsError("Rate Exceeded.", reason="ReservedFunctionConcurrentInvocationLimitExceeded")
        waiter: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        (self.event_waiters if event else self.waiters).append(waiter)
        return await waiter

    def _next_waiter(self) -> asyncio.Future[Instance] | None:
        """The first waiter still waiting: synchronous invokes before events."""
        for waiters in (self.waiters, self.event_waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    return waiter
        return None

    def _waiting(self) -> bool:
        return any(not w.done() for w in self.waiters) or any(not w.done() for w in self.event_waiters)

    def _live(self) -> int:
        """Instances that count against the concurrency limit: a killed one no longer does."""
        return sum(1 for instance in self.instances if not instance.retiring)

    async def _new_instance(self) -> Instance:
        assert self.caps is not None
        self._numbers += 1
        environment = self._environment
        sandbox = self._sandbox
        instance: Instance
        if self.snapshot is not None:  # SnapStart: forked from the snapshot, which holds the environment
            from lambdalite.toolkit.local.restored import RestoredInstance

            instance = RestoredInstance(
                self.config,
                environment,
                snapshot=self.snapshot,
                log=self.log,
                number=self._numbers,
                on_dead=self._on_dead,
                sandbox=sandbox,
            )
        else:
            if self._scratch is not None:  # no mount namespace: a private TMPDIR per instance
                tmp = os.path.join(self._scratch, f"instance-{self._numbers}")
                os.makedirs(tmp)
                environment = dict(environment, TMPDIR=tmp)
                sandbox = dict(sandbox, tmp=tmp)
            environment = dict(environment, _LAMBDALITE_SANDBOX=json.dumps(sandbox))
            instance = Instance(
                self.config,
                environment,
                log=self.log,
                number=self._numbers,
                on_dead=self._on_dead,
                sandbox=sandbox,
            )
        instance.governor = self.governor if self.config.cpu_share else None
        self.instances.append(instance)
        self.cold_starts += 1
        try:
            await instance.start()
        except Exception:
            self.instances.remove(instance)
            raise
        return instance

    def _release(self, instance: Instance) -> None:
        if self.closing:
            return
        if not instance.usable:  # killed (or retired): its place is free for whoever waits
            if not instance.dead:  # retired by a new configuration: stop it now
                stopping = asyncio.get_running_loop().create_task(instance.close())
                self._background.add(stopping)
                stopping.add_done_callback(self._background.discard)
            if self._waiting():
                asyncio.get_running_loop().create_task(self._start_for_waiter())
            return
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(instance)
            return
        self.idle.append(instance)

    def _on_dead(self, instance: Instance) -> None:
        if instance.closed is not None:
            self._background.add(instance.closed)
            instance.closed.add_done_callback(self._background.discard)
        if instance in self.instances:
            self.instances.remove(instance)
        if instance in self.idle:
            self.idle.remove(instance)
        tmp = instance.sandbox.get("tmp")
        if isinstance(tmp, str) and self._scratch is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if self._waiting() and not self.closing:
            asyncio.get_running_loop().create_task(self._start_for_waiter())

    async def _start_for_waiter(self) -> None:
        if not self._waiting() or self._live() >= self.config.max_concurrency:
            return
        waiter = self._next_waiter()
        if waiter is None:
            return
        try:
            instance = await self._new_instance()
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter.done():
            self._release(instance)
        else:
            waiter.set_result(instance)

    async def _reap_idle(self) -> None:
        period = min(1.0, max(self.config.idle_timeout_s / 4, 0.05))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for instance in list(self.idle):
                if now - instance.last_used >= self.config.idle_timeout_s:
                    self.idle.remove(instance)
                    instance.retiring = True
                    await instance.close()

    # -- the Invoke API over HTTP --------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        raw_name = protocol.match_invoke(request.method, request.path)
        if raw_name is None:
            for route in self.routes:
                reply = await route(request)
                if reply is not None:
                    return reply
            if request.body_dropped:  # over API Gateway's 10 MB: the front door never sees it
                return Reply(413, [("Content-Type", "application/json")], b'{"message":"Request Too Long"}')
            status, headers, body = await self.fallback(
                request.method, request.path, request.query, request.headers, request.body
            )
            return Reply(status, list(headers), body)
        if self.invoke_auth is not None and (refused := self.invoke_auth(request)) is not None:
            return refused
        request_id = str(uuid.uuid4())
        try:
            self._check_function(protocol.parse_function_name(raw_name, request.query))
            kind = protocol.invocation_type(request.header("x-amz-invocation-type"))
            log_type = request.header("x-amz-log-type") or "None"
            if log_type not in ("None", "Tail"):
                raise InvalidParameterValueError(f"Unsupported log type: {log_type}")
            # A dropped body was over the listener's cap, so the size check refuses it first.
            body = protocol.check_payload(b"" if request.body_dropped else request.body, request.body_size, kind)
            result = await self._dispatch(
                request_id,
                body,
                kind,
                protocol.decode_client_context(request.header("x-amz-client-context")),
                request.header("x-amzn-trace-id"),
                None,
                request.header("x-amz-tenant-id"),
            )
        except InvokeRefusedError as exc:
            return protocol.service_error_reply(exc, request_id)
        except (OSError, EmulatorError) as exc:  # an instance could not start: Lambda's ServiceException
            self.log(f"lambdalite: cannot start an instance: {exc}")
            return protocol.service_error_reply(InvokeRefusedError(f"cannot start an instance: {exc}"), request_id)
        headers = [("x-amzn-RequestId", result.request_id)]
        if result.status != 200:
            return Reply(result.status, headers)
        headers.append(("Content-Type", result.content_type))
        headers.append(("X-Amz-Executed-Version", result.executed_version))
        if result.function_error:
            headers.append(("X-Amz-Function-Error", result.function_error))
        if log_type == "Tail":
            headers.append(("X-Amz-Log-Result", protocol.log_tail(result.log)))
        return Reply(200, headers, result.payload)

    def _check_function(self, ref: protocol.FunctionRef) -> None:
        # `function` is the Runtime Interface Emulator's fixed name: its curl recipes work unchanged.
        qualifiers = (None, protocol.LATEST, self.config.version, self.config.alias)
        if ref.name not in (self.config.name, "function") or ref.qualifier not in qualifiers:
            arn = protocol.function_arn(ref.name, ref.qualifier, region=self.config.region, account=self.config.account)
            raise FunctionNotFoundError(f"Function not found: {arn}")
