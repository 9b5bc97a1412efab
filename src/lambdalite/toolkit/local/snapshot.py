"""SnapStart's snapshot, locally: one template process initialised once, instances forked from it.

    snapshot = Snapshot(config, environment, sandbox, log=print)
    await snapshot.create()                 # init + before-snapshot hooks, under the snapshot budget
    proc = await snapshot.restore(7, "127.0.0.1:PORT", on_line=..., on_exit=...)   # a new instance
    await snapshot.close()

On Lambda, publishing a version runs the function's init once (up to 130 s or the function
timeout, whichever is longer), runs the `before snapshot` hooks, snapshots the microVM and
restores every new execution environment from that snapshot. Here the template is a process
started like any instance (`forkserver.py`: the sandbox, then the official awslambdaric, with
`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`); when awslambdaric calls `GET /runtime/restore/next`
on the template's Runtime API, the init and its hooks are done and the snapshot is "taken": the
template becomes a fork server (`forkserver.py`) and each restore is a `fork()` of it, so a new
instance shares every page the init wrote (the model's weights included) until it writes its own.

The template reports each child's exit status over the control socket; `ForkedProcess` is the
child as the instance sees it (the same interface as a spawned `RuntimeProcess`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from lambdalite.errors import EmulatorError
from lambdalite.toolkit.local import protocol
from lambdalite.toolkit.local.http import HttpServer
from lambdalite.toolkit.local.messages import FunctionConfig, Reply, Request
from lambdalite.toolkit.local.process import RuntimeProcess

__all__ = ["ForkedProcess", "Snapshot", "runtime_version"]

_FORK_REPLY_S = 10.0


def runtime_version() -> str:
    v = sys.version_info
    return f"python:{v.major}.{v.minor} (lambdalite, awslambdaric)"


class ForkedProcess(RuntimeProcess):
    """A restored instance: a child of the template (not of the emulator), so its exit status
    comes from the template's report (`exited`) rather than from a pidfd."""

    def __init__(
        self,
        pid: int,
        out_fd: int,
        *,
        spawned_at: float,
        on_line: Callable[[str], None],
        on_exit: Callable[[RuntimeProcess, int], None],
    ) -> None:
        # Not RuntimeProcess.__init__: there is nothing to spawn, only the output pipe to watch.
        self.on_line = on_line
        self.on_exit = on_exit
        self.spawned_at = spawned_at
        self.forked_pid = pid
        self.returncode: int | None = None
        self.out_fd = out_fd
        self.partial = b""
        asyncio.get_running_loop().add_reader(out_fd, self.drain)

    @property
    def pid(self) -> int:
        return self.forked_pid

    @property
    def alive(self) -> bool:
        return self.returncode is None

    def exited(self, returncode: int) -> None:
        """The template reaped it (or died): drain what it wrote, then report the exit."""
        if self.returncode is not None:
            return
        self.returncode = returncode
        self.drain()
        self._close_output()
        self.on_exit(self, returncode)


class Snapshot:
    def __init__(
        self,
        config: FunctionConfig,
        environment: dict[str, str],
        sandbox: dict[str, object],
        *,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.environment = environment
        self.sandbox = sandbox
        self.log = log
        self.runtime = HttpServer(self._runtime_request, max_body=protocol.RESPONSE_LIMIT)
        self.proc: RuntimeProcess | None = None
        self.control: socket.socket | None = None
        self.ready: asyncio.Future[None] | None = None
        self.init_ms: float | None = None
        self.init_lines: list[str] = []
        self.children: dict[int, ForkedProcess] = {}
        self.early_exits: dict[int, int] = {}  # exits reported before the restore that forked them returned
        self.pending: dict[int, asyncio.Future[int]] = {}
        self.failure: str | None = None  # why no more restores can happen
        self.restores = 0
        self._gone = asyncio.Event()

    @property
    def budget_s(self) -> float:
        return self.config.snapshot_budget_s or protocol.snapshot_init_budget_s(self.config.timeout_s)

    # -- creating it ---------------------------------------------------------------------------------

    async def create(self) -> float:
        """Run the init once and stop at the snapshot point; the init's milliseconds.

        Raises EmulatorError when the init fails, exits or runs past the snapshot budget (on
        Lambda, publishing the version fails)."""
        loop = asyncio.get_running_loop()
        port = await self.runtime.start("127.0.0.1", 0)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        ours.setblocking(False)
        sandbox = dict(self.sandbox, snapshot={"control_fd": theirs.fileno()})
        env = dict(
            self.environment,
            AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
            _LAMBDALITE_SANDBOX=json.dumps(sandbox),
        )
        self.ready = loop.create_future()
        self._emit(f"INIT_START Runtime Version: {runtime_version()}")
        try:
            self.proc = RuntimeProcess(
                [sys.executable, "-m", "lambdalite.toolkit.local.forkserver", self.config.handler],
                cwd=self.config.code_dir,
                env=env,
                on_line=self._on_line,
                on_exit=self._on_exit,
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        loop.add_reader(ours.fileno(), self._on_control)
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), self.budget_s)
        except TimeoutError:
            self._emit(protocol.init_report_line(self.budget_s * 1e3, "init", "timeout"))
            self.proc.kill()
            raise EmulatorError(
                f"the snapshot's init ran past {self.budget_s:g} s (SnapStart allows 130 s or the function "
                "timeout, whichever is longer); make the init faster or raise --timeout"
            ) from None
        assert self.init_ms is not None
        return self.init_ms

    async def _runtime_request(self, request: Request) -> Reply:
        route = protocol.match_runtime(request.method, request.path)
        ready = self.ready
        if route is None:
            return protocol.runtime_error_reply(404, "InvalidRequest", f"{request.method} {request.path} not found")
        if ready is None or ready.done():
            return protocol.runtime_error_reply(403, "InvalidStateTransition", "the snapshot is taken")
        assert self.proc is not None
        self.proc.drain()
        elapsed_ms = (time.perf_counter() - self.proc.spawned_at) * 1e3
        if route.action == "restore_next":  # init and the before-snapshot hooks are done: snapshot
            self.init_ms = elapsed_ms
            self._emit(protocol.snapshot_init_report_line(elapsed_ms))
            ready.set_result(None)
            return Reply(200, [("Content-Type", "application/json")], b"")
        if route.action == "init_error":
            error_type = request.header("lambda-runtime-function-error-type") or "Runtime.Unknown"
            self._emit(protocol.init_report_line(elapsed_ms, "init", "error", error_type))
            ready.set_exception(EmulatorError(f"the snapshot's init failed: {_describe(error_type, request.body)}"))
            return Reply(202, [("Content-Type", "application/json")], b'{"status":"OK"}')
        # `next` and the rest: awslambdaric in snap-start mode never gets here before restoring.
        return protocol.runtime_error_reply(403, "InvalidStateTransition", "restore the snapshot first")

    def _on_line(self, line: str) -> None:
        self.init_lines.append(line)
        self._emit(line)

    def _emit(self, line: str) -> None:
        self.log(line)

    def _on_exit(self, proc: RuntimeProcess, returncode: int) -> None:
        reason = f"Runtime exited with error: {protocol.exit_description(returncode)}"
        if self.ready is not None and not self.ready.done():
            assert self.proc is not None
            elapsed_ms = (time.perf_counter() - self.proc.spawned_at) * 1e3
            self._emit(protocol.init_report_line(elapsed_ms, "init", "error", "Runtime.ExitError"))
            tail = [line for line in self.init_lines if line.strip()][-3:]
            self.ready.set_exception(
                EmulatorError(f"the snapshot's init failed: {reason}" + (f" ({' | '.join(tail)})" if tail else ""))
            )
        elif self.failure is None:
            self.failure = f"the snapshot process exited ({reason})"
            self.log(f"lambdalite: {self.failure}; new instances cannot be restored")
        self._lost()
        self._gone.set()

    # -- restoring from it ---------------------------------------------------------------------------

    async def restore(
        self,
        number: int,
        api: str,
        *,
        on_line: Callable[[str], None],
        on_exit: Callable[[RuntimeProcess, int], None],
    ) -> ForkedProcess:
        """Fork a new instance whose runtime will talk to the Runtime API at `api`."""
        if self.failure is not None or self.control is None or self.ready is None or not self.ready.done():
            raise EmulatorError(self.failure or "the snapshot is not ready")
        started = time.perf_counter()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[number] = reply
        try:
            try:
                socket.send_fds(self.control, [json.dumps({"restore": number, "api": api}).encode()], [write_fd])
            finally:
                os.close(write_fd)
            pid = await asyncio.wait_for(reply, _FORK_REPLY_S)
        except BaseException as exc:
            os.close(read_fd)
            if isinstance(exc, OSError | TimeoutError):
                raise EmulatorError(f"the snapshot process did not fork a new instance: {exc}") from exc
            raise
        finally:
            self.pending.pop(number, None)
        proc = ForkedProcess(pid, read_fd, spawned_at=started, on_line=on_line, on_exit=on_exit)
        self.children[pid] = proc
        self.restores += 1
        if pid in self.early_exits:
            asyncio.get_running_loop().call_soon(self._exited, pid, self.early_exits.pop(pid))
        return proc

    def _on_control(self) -> None:
        assert self.control is not None
        while True:
            try:
                data = self.control.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            message = json.loads(data)
            if "restored" in message:
                reply = self.pending.get(int(message["restored"]))
                if reply is not None and not reply.done():
                    reply.set_result(int(message["pid"]))
            elif "exit" in message:
                self._exited(int(message["exit"]), int(message["code"]))

    def _exited(self, pid: int, code: int) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            self.early_exits[pid] = code
        else:
            child.exited(code)

    def _lost(self) -> None:
        """The template is gone (its children die with it): every restore in flight or alive ends."""
        if self.control is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.control.fileno())
            except (ValueError, RuntimeError):
                pass
            self.control.close()
            self.control = None
        if self.failure is None:
            self.failure = "the snapshot process is gone"
        for reply in self.pending.values():
            if not reply.done():
                reply.set_exception(EmulatorError(self.failure))
        for pid, child in list(self.children.items()):
            child.kill()
            self.children.pop(pid, None)
            child.exited(-9)

    async def close(self) -> None:
        """Kill the template (any instance still forked from it dies with it) and stop listening."""
        self.failure = self.failure or "the server is closing"
        if self.proc is not None and self.proc.alive:
            self.proc.kill()
            try:
                await asyncio.wait_for(self._gone.wait(), 5)
            except TimeoutError:
                pass
        self._lost()
        await self.runtime.close()


def _describe(error_type: str, body: bytes) -> str:
    try:
        error: Any = json.loads(body)
    except ValueError:
        error = {}
    message = error.get("errorMessage") if isinstance(error, dict) else None
    return f"{error_type}: {message}" if message else error_type
