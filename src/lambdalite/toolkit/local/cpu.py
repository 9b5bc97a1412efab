"""CPU follows memory: each instance gets the CPU time Lambda would give its memory size.

Lambda allocates CPU in proportion to memory: 1,769 MB buys one vCPU's worth of CPU time and
10,240 MB (the most) 5.8 vCPUs' worth, on six vCPUs (`vcpus`). A function at 512 MB therefore
runs CPU-bound code 1,769 / 512 = 3.46 times slower than at 1,769 MB. `serve --memory M`
reproduces that without touching the machine's cgroups:

* CPU time, CFS-bandwidth style. A `Governor` thread in the emulator reads each instance's
  process CPU clock (`clock_gettime` on the process's CPU-time clock: every thread of it, in
  nanoseconds). Each instance earns `vcpus(M)` seconds of CPU time per second of wall time in a
  token bucket that holds at most one period's worth (20 ms); when it has used what it earned
  it is stopped (`SIGSTOP` through a pidfd, so a recycled pid can never be hit) until the next
  period starts (`SIGCONT`). What ran past the budget before the stop took effect is a debt paid
  in the next period, so the share holds on average whatever the governor's wake-up latency.
  An idle instance uses no CPU and is never stopped.
* Threads. The function sees `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` and sizes its engine's thread
  pool to the vCPUs it buys (`lambdalite.engines.default_threads`), as it does on Lambda.

What it costs: the governor wakes a few times per period per busy instance; BENCHMARKS.md
measures its CPU use and the accuracy of the 3.46x. Limits: processes the function starts
itself are neither counted nor stopped (only the runtime process); a share above the CPUs the
machine can give is not reached; stopping is accurate to the wake-up latency of one thread
(a fraction of a millisecond on an idle machine, more on a loaded one).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

from lambdalite.engines import MB_PER_VCPU

__all__ = ["MAX_VCPUS", "PERIOD_S", "Governor", "shared_governor", "vcpus"]

MAX_VCPUS = 6.0  # at 10,240 MB
PERIOD_S = 0.02
_MIN_SLEEP_S = 0.0002


def vcpus(memory_mb: int) -> float:
    """The vCPUs' worth of CPU time Lambda gives `memory_mb`: 1 per 1,769 MB (5.79 at 10,240 MB)."""
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def _cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU time (Linux: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED))."""
    return ((~pid) << 3) | 2


@dataclass(slots=True, eq=False)
class _Entry:
    pid: int
    pidfd: int  # the governor's own duplicate
    cpus: float
    clock: int
    last_ns: int = 0  # its CPU clock at the start of this period
    last_wall: float = 0.0  # and the wall clock then
    budget_ns: float = 0.0  # CPU time it may still use this period
    stopped: bool = False
    throttled_periods: int = 0


class Governor:
    """Enforce CPU-time shares on processes from one background thread."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._users = 0
        self.cpu_s = 0.0  # CPU time the governor itself used
        self.periods = 0
        self.stops = 0

    def retain(self) -> Governor:
        """One more user (a server); the thread runs while anyone uses it."""
        with self._lock:
            self._users += 1
        self.start()
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.stop()

    def start(self) -> None:
        if self._thread is None:
            self._running = True
            self._thread = threading.Thread(target=self._run, name="lambdalite-cpu-governor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and continue every process it stopped."""
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        with self._lock:
            for entry in list(self._entries.values()):
                self._release(entry)
            self._entries.clear()

    def add(self, pid: int, pidfd: int, cpus: float) -> None:
        """Limit process `pid` (its pidfd, duplicated here) to `cpus` CPUs of CPU time."""
        entry = _Entry(pid, os.dup(pidfd), cpus, _cpu_clock(pid))
        entry.last_ns = self._used(entry)
        entry.last_wall = time.monotonic()
        entry.budget_ns = cpus * self.period_s * 1e9
        with self._lock:
            old = self._entries.pop(pid, None)
            if old is not None:
                self._release(old)
            self._entries[pid] = entry
        self._wake.set()

    def remove(self, pid: int) -> None:
        with self._lock:
            entry = self._entries.pop(pid, None)
            if entry is not None:
                self._release(entry)

    def throttled_periods(self, pid: int) -> int:
        with self._lock:
            entry = self._entries.get(pid)
            return entry.throttled_periods if entry is not None else 0

    # -- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        started = time.thread_time() - self.cpu_s
        while self._running:
            with self._lock:
                idle = not self._entries
            if idle:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._period()
            self.cpu_s = time.thread_time() - started

    def _period(self) -> None:
        """One period: every instance earns `cpus` x the wall time since the last period (a token
        bucket holding at most one period's worth), pays for the CPU time it used, and runs while
        it has budget left. Earning by the wall clock keeps the share exact when periods run long."""
        begin = time.monotonic()
        deadline = begin + self.period_s
        self.periods += 1
        with self._lock:
            for entry in self._entries.values():
                now_ns = self._used(entry)
                cap = entry.cpus * self.period_s * 1e9
                earned = entry.cpus * (begin - entry.last_wall) * 1e9
                # The bucket: what it held, plus what it earned, less what the process used (an
                # overrun is a debt); never more than one period's worth.
                entry.budget_ns = min(cap, entry.budget_ns + earned - (now_ns - entry.last_ns))
                entry.last_ns, entry.last_wall = now_ns, begin
                if entry.budget_ns > 0 and entry.stopped:
                    self._signal(entry, signal.SIGCONT)
                    entry.stopped = False
        while self._running:
            now = time.monotonic()
            if now >= deadline:
                return
            wake = deadline
            with self._lock:
                for entry in self._entries.values():
                    if entry.stopped:
                        continue
                    used = self._used(entry) - entry.last_ns
                    # The budget keeps being earned while the period runs (it may run long).
                    left = entry.budget_ns + entry.cpus * (now - begin) * 1e9 - used
                    if left <= 0:
                        self._signal(entry, signal.SIGSTOP)
                        entry.stopped = True
                        entry.throttled_periods += 1
                        self.stops += 1
                        continue
                    # Used this fast so far (at least one CPU's rate): when would the budget run out?
                    rate = max(1.0, used / max(1.0, (now - begin) * 1e9))
                    wake = min(wake, now + left / 1e9 / rate)
            time.sleep(max(_MIN_SLEEP_S, wake - time.monotonic()))

    @staticmethod
    def _used(entry: _Entry) -> int:
        try:
            return time.clock_gettime_ns(entry.clock)
        except OSError:  # gone: the instance removes it when it sees the exit
            return entry.last_ns

    @staticmethod
    def _signal(entry: _Entry, sig: int) -> None:
        try:
            signal.pidfd_send_signal(entry.pidfd, sig)
        except (ProcessLookupError, OSError):
            pass

    def _release(self, entry: _Entry) -> None:
        if entry.stopped:
            self._signal(entry, signal.SIGCONT)
        os.close(entry.pidfd)


_SHARED: Governor | None = None
_SHARED_LOCK = threading.Lock()


def shared_governor() -> Governor:
    """The process's one governor (several servers in one process share its thread)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Governor()
        return _SHARED
