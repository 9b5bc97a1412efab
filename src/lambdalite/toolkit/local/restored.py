"""A SnapStart instance: restored from the snapshot instead of initialised, logged as Lambda logs it.

    instance = RestoredInstance(config, environment, snapshot=snapshot, log=print, number=3, ...)
    await instance.start()            # RESTORE_START; the template forks this instance
    outcome = await instance.run(job)  # the first one carries Restore Duration in its REPORT

Everything else (the Runtime API, timeouts, memory, logs) is `Instance`'s. What differs:

* The restore: the forked runtime calls `GET /runtime/restore/next` on this instance's Runtime API
  (the snapshot is restored), runs the after-restore hooks, then polls `/next`. That first poll
  ends the restore: `RESTORE_REPORT Restore Duration: … ms`, and the first REPORT carries
  `Restore Duration` (from the fork to the first poll) and `Billed Restore Duration` (the hooks:
  from `restore/next` to the first poll, whole ms), which is also added to `Billed Duration`.
  There is no `Init Duration`: the init ran once, in the snapshot.
* A failed restore is not a function error: an after-restore hook that raised (the runtime posts
  `/runtime/restore/error`, `Runtime.AfterRestoreError`) or a runtime that died restoring logs
  `RESTORE_REPORT … Status: error  Error Type: …` and the invoke gets the service error
  `SnapStartException` (400); past the 10 s restore budget it is `Status: timeout` and
  `SnapStartTimeoutException` (408). The instance is discarded.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

from lambdalite.errors import InvokeRefusedError, SnapStartError, SnapStartTimeoutError
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.instances import Instance, Job, LogSink
from lambdalite.toolkit.local.messages import FunctionConfig, Outcome, Reply, Request
from lambdalite.toolkit.local.process import RuntimeProcess
from lambdalite.toolkit.local.snapshot import Snapshot, runtime_version

__all__ = ["RestoredInstance", "restore_refusal"]

_ACCEPTED = Reply(202, [("Content-Type", "application/json")], b'{"status":"OK"}')
RESTORE_FAILURES = ("restore_error", "restore_timeout")


def restore_refusal(outcome: Outcome) -> InvokeRefusedError:
    """The service error an invoke gets when the instance meant for it could not be restored."""
    if outcome.kind == "restore_timeout":
        return SnapStartTimeoutError("Lambda couldn't restore the snapshot within the timeout limit.")
    detail = _error_text(outcome.payload) or outcome.error_type or "the runtime exited"
    return SnapStartError(
        f"The afterRestore() runtime hook encountered an error ({detail}). "
        "For more information, check the Amazon CloudWatch logs."
    )


class RestoredInstance(Instance):
    def __init__(
        self,
        config: FunctionConfig,
        environment: dict[str, str],
        *,
        snapshot: Snapshot,
        log: LogSink,
        number: int,
        on_dead: Callable[[Instance], None],
        sandbox: dict[str, object],
    ) -> None:
        super().__init__(config, environment, log=log, number=number, on_dead=on_dead, sandbox=sandbox)
        self.snapshot = snapshot
        self.restore_started = 0.0
        self.restored_at: float | None = None  # the runtime's GET /restore/next: the hooks start
        self.restore_failed = False
        self.failed: Outcome | None = None  # a restore that failed before an invocation was handed over
        self._restore_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.port = await self.runtime.start("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        self.restore_started = time.perf_counter()
        self._emit(protocol.restore_start_line(runtime_version()))
        self._restore_timer = loop.call_later(self.config.restore_budget_s, self._on_restore_budget)
        try:
            self.proc = await self.snapshot.restore(
                self.number, f"127.0.0.1:{self.port}", on_line=self._on_line, on_exit=self._on_exit
            )
        except BaseException:
            self._cancel_restore_timer()
            await self.runtime.close()
            raise
        self._watch_memory()

    async def run(self, job: Job) -> Outcome:
        failed = self.failed
        if failed is not None:  # it died restoring before this invocation reached it
            self.failed = None
            return failed
        return await super().run(job)

    async def _runtime_request(self, request: Request) -> Reply:
        route = protocol.match_runtime(request.method, request.path)
        if route is not None and route.action == "restore_next":
            if self.restored_at is None:
                self.restored_at = time.perf_counter()
            return Reply(200, [("Content-Type", "application/json")], b"")
        if route is not None and route.action == "restore_error":
            if self.proc is not None:
                self.proc.drain()
            error_type = request.header("lambda-runtime-function-error-type") or "Runtime.AfterRestoreError"
            self._fail_restore("restore_error", request.body, error_type, "error")
            return _ACCEPTED
        return await super()._runtime_request(request)

    def _init_complete(self) -> None:
        """The first poll for an invocation: the restore is over."""
        now = time.perf_counter()
        self.initialized = True
        self._cancel_restore_timer()
        self.init_ms = None
        self.restore_ms = (now - self.restore_started) * 1e3
        hooks_from = self.restored_at if self.restored_at is not None else now
        self.billed_restore_ms = max(1, math.ceil(round((now - hooks_from) * 1e3, 6)))
        self._emit(protocol.restore_report_line(self.restore_ms))
        self.init_lines = []

    def _fail_init(self, payload: bytes, error_type: str, status: str) -> None:
        # What fails an init elsewhere (an exit, memory, an init error) fails the restore here.
        self._fail_restore("restore_error", payload, error_type, status)

    def _on_exit(self, proc: RuntimeProcess, returncode: int) -> None:
        if proc is self.proc and not self.initialized and not self.restore_failed:
            message = f"Runtime exited with error: {protocol.exit_description(returncode)}"
            self._fail_restore(
                "restore_error", protocol.error_payload("Runtime.ExitError", message), "Runtime.ExitError"
            )
        super()._on_exit(proc, returncode)

    def _on_restore_budget(self) -> None:
        self._restore_timer = None
        if not self.initialized and not self.restore_failed and not self.dead:
            self._fail_restore("restore_timeout", b"", None, "timeout")

    def _fail_restore(self, kind: str, payload: bytes, error_type: str | None, status: str = "error") -> None:
        if self.restore_failed:
            return
        self.restore_failed = True
        self._cancel_restore_timer()
        self.retiring = True
        asyncio.get_running_loop().call_soon(self.kill)
        restore_ms = (time.perf_counter() - self.restore_started) * 1e3
        if kind == "restore_timeout":
            restore_ms = self.config.restore_budget_s * 1e3
        self._emit(protocol.restore_report_line(restore_ms, status, error_type))
        outcome = Outcome(
            "restore_timeout" if kind == "restore_timeout" else "restore_error",
            payload,
            error_type=error_type,
            restore_ms=restore_ms,
            log="\n".join(self.init_lines) + "\n",
        )
        job, done = self.job, self.done
        if job is not None and done is not None and not done.done():
            self.job = None
            self.done = None
            self.delivered = False
            done.set_result(outcome)
        else:
            self.failed = outcome

    def _cancel_restore_timer(self) -> None:
        if self._restore_timer is not None:
            self._restore_timer.cancel()
            self._restore_timer = None

    def _mark_dead(self) -> None:
        self._cancel_restore_timer()
        super()._mark_dead()


def _error_text(payload: bytes) -> str | None:
    try:
        error = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(error, dict):
        return None
    kind, message = error.get("errorType"), error.get("errorMessage")
    return f"{kind}: {message}" if kind and message else None
