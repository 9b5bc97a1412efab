"""One runtime process as the event loop sees it: spawned, read, measured, killed, reaped.

    proc = RuntimeProcess(argv, cwd=..., env=..., on_line=print, on_exit=lambda p, code: ...)
    proc.drain()             # every complete line it has written so far, now (never blocks)
    proc.memory_kb()         # (VmRSS, VmHWM) from /proc
    proc.kill()              # SIGKILL to its whole process group

It runs in its own session (so its process group is its own), with stdout and stderr on one
non-blocking pipe. Its exit is watched through a pidfd (Linux 5.3+): no threads, no SIGCHLD
handler. On exit, whatever is left in its group is killed before the pid is reaped, so the
group id cannot have been reused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

__all__ = ["RuntimeProcess", "memory_kb"]


class RuntimeProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: dict[str, str],
        on_line: Callable[[str], None],
        on_exit: Callable[[RuntimeProcess, int], None],
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.on_line = on_line
        self.on_exit = on_exit
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self.spawned_at = time.perf_counter()
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=cwd,
                env=env,
                pass_fds=tuple(pass_fds),
                start_new_session=True,  # its own process group: a kill takes its children too
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.out_fd = read_fd
        self.partial = b""
        self.pidfd = os.pidfd_open(self.popen.pid)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.out_fd, self.drain)
        loop.add_reader(self.pidfd, self._exited)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.returncode is None

    def kill(self) -> None:
        """SIGKILL the whole process group; `on_exit` follows."""
        if self.alive:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def memory_kb(self) -> tuple[int, int]:
        return memory_kb(self.pid) if self.alive else (0, 0)

    def drain(self) -> None:
        """Hand every complete line written so far to `on_line`, without blocking."""
        while self.out_fd >= 0:
            try:
                data = os.read(self.out_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_output()
                return
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                self.on_line(line.decode("utf-8", "replace"))

    def _close_output(self) -> None:
        if self.out_fd < 0:
            return
        if self.partial:
            self.on_line(self.partial.decode("utf-8", "replace"))
            self.partial = b""
        asyncio.get_running_loop().remove_reader(self.out_fd)
        os.close(self.out_fd)
        self.out_fd = -1

    def _exited(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pidfd)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # anything it left in its group; the pid is not reaped yet
        except (ProcessLookupError, PermissionError):
            pass
        returncode = self.popen.wait()
        os.close(self.pidfd)
        self.drain()
        self._close_output()
        self.on_exit(self, returncode)


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB, from /proc; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return 0, 0
    return _field_kb(status, b"VmRSS:"), _field_kb(status, b"VmHWM:")


def _field_kb(status: bytes, name: bytes) -> int:
    start = status.find(name)
    if start < 0:
        return 0
    end = status.find(b"\n", start)
    return int(status[start + len(name) : end].split()[0])
