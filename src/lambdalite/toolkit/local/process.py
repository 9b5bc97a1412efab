"""One runtime process as the event loop sees it: spawned, read, measured, killed, reaped.

    proc = RuntimeProcess(argv, cwd=..., env=..., on_line=print, on_exit=lambda p, code: ...)
    proc.drain()             # every complete line it has written so far, now (never blocks)
    proc.drain(partial=True) # and a last line without its newline (when an invocation answers)
    proc.memory_kb()         # (memory of its whole process tree, its own VmHWM) from /proc
    proc.kill()              # SIGKILL to its whole process group and every descendant

It runs in its own session (so its process group is its own), with stdout and stderr on one
non-blocking pipe. Lambda counts and limits the whole sandbox, so memory is the whole process
tree's: the process alone is its resident set (VmRSS); with descendants (found through
/proc/PID/task/TID/children; the sandbox makes the process a child subreaper, so orphans stay
in its tree) it is the tree's proportional set size (Pss, which counts pages shared after a
fork once, not once per process). Its exit is watched through a pidfd (Linux 5.3+): no threads, no SIGCHLD
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

__all__ = ["RuntimeProcess", "descendants", "memory_kb", "tree_memory_kb"]


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
        """SIGKILL the whole process group and every descendant (one that left the group too);
        `on_exit` follows."""
        if self.alive:
            _kill_tree(self.pid)

    def memory_kb(self) -> tuple[int, int, int]:
        """(kB the process tree uses now, the process's own VmHWM, how many descendants it has)."""
        return tree_memory_kb(self.pid) if self.alive else (0, 0, 0)

    def drain(self, *, partial: bool = False) -> None:
        """Hand every complete line written so far to `on_line`, without blocking; with `partial`,
        what follows the last newline too (output without a trailing newline belongs to the
        invocation that wrote it: drained when that invocation answers)."""
        while self.out_fd >= 0:
            try:
                data = os.read(self.out_fd, 65536)
            except BlockingIOError:
                if partial and self.partial:
                    text, self.partial = self.partial, b""
                    self.on_line(text.decode("utf-8", "replace"))
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
        _kill_tree(self.pid)  # anything it left in its group or its tree; the pid is not reaped yet
        returncode = self.popen.wait()
        os.close(self.pidfd)
        self.drain()
        self._close_output()
        self.on_exit(self, returncode)


def _kill_tree(pid: int) -> None:
    found = descendants(pid)
    for target in (pid, *found):
        try:
            if target == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children of each of its threads, recursively)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.append(child)
                    stack.append(child)
    return found


def tree_memory_kb(pid: int) -> tuple[int, int, int]:
    """(kB in use by `pid` and its descendants, VmHWM of `pid`, how many descendants).

    Alone: its VmRSS (cheap). With descendants: the sum of every process's Pss."""
    rss, hwm = memory_kb(pid)
    children = descendants(pid)
    if not children:
        return rss, hwm, 0
    total = sum(_pss_kb(p) for p in (pid, *children))
    return max(total, 0), hwm, len(children)


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            rollup = f.read()
    except OSError:
        return memory_kb(pid)[0]
    start = rollup.find(b"\nPss:")
    if start < 0:
        return memory_kb(pid)[0]
    return _field_kb(rollup[start + 1 :], b"Pss:")


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
