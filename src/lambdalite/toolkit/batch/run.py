"""Fan a batch out over the function: up to N requests in flight, images batched per request,
retries with backoff and jitter, results written as they come, resumable, interruptible.

    summary = run_batch(tasks, sink, invoker, Options(concurrency=8, per_request=8), model=model)

Images from local files travel as base64 (`{"images": [...]}`, at most `per_request` and about
5 MB of base64 per request, under Lambda's 6 MB); s3:// and https:// images travel as names the
function reads itself (`{"urls": [...]}`). A request that fails in a way that may be one image's
fault is split into one request per image; throttling and timeouts are retried with full jitter
(`sleep(uniform(0, min(max_delay, base_delay * 2**attempt)))`); when the retries are spent the
image is left for a rerun, not recorded. Ctrl-C stops sending, lets the requests in flight
finish, writes their results and says how to resume.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from lambdalite.errors import LambdaliteError, UsageError
from lambdalite.toolkit.batch.invoker import Invoker, Reply
from lambdalite.toolkit.batch.report import Progress, Summary
from lambdalite.toolkit.batch.sinks import Sink
from lambdalite.toolkit.batch.sources import Task

__all__ = ["MAX_PER_REQUEST", "Options", "plan_requests", "run_batch"]

MAX_PER_REQUEST = 16  # the function's MAX_BATCH for {"images": [...]} and {"urls": [...]}
MAX_PAYLOAD = 5 * 2**20 + 768 * 1024  # base64 bytes per request: Lambda takes 6 MB (6,291,456) in all


@dataclass(frozen=True)
class Options:
    concurrency: int = 4
    per_request: int = 8
    max_payload: int = MAX_PAYLOAD
    request_options: dict[str, Any] = field(default_factory=dict)  # top_k...
    retries: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0


class Done(NamedTuple):
    """What one request's worker hands back: final records, images left for later, every invoke."""

    records: list[dict[str, Any]]
    unfinished: list[tuple[Task, str]]
    calls: list[Reply]
    retries: Counter[str]


def _size(task: Task) -> int:
    if task.path is None:
        return len(task.url or "") + 8
    try:
        return task.path.stat().st_size * 4 // 3 + 8
    except OSError:
        return 8


def plan_requests(tasks: list[Task], per_request: int, max_payload: int = MAX_PAYLOAD) -> Iterator[list[Task]]:
    """Consecutive tasks of one kind (files, or names the function reads), within the count and size."""
    chunk: list[Task] = []
    size = 0
    for task in tasks:
        task_size = _size(task)
        same_kind = not chunk or (chunk[0].path is None) == (task.path is None)
        if chunk and (not same_kind or len(chunk) >= per_request or size + task_size > max_payload):
            yield chunk
            chunk, size = [], 0
        chunk.append(task)
        size += task_size
    if chunk:
        yield chunk


class _Worker:
    def __init__(self, invoker: Invoker, options: Options, model: dict[str, Any] | None, stop: threading.Event):
        self.invoker = invoker
        self.options = options
        self.model = model
        self.stop = stop

    def record(self, task: Task, result: Any = None, error: tuple[str, str] | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {"input": task.id, "model": self.model}
        if error is None:
            record["result"] = result
        else:
            record["error"] = {"type": error[0], "message": error[1]}
        return record

    def __call__(self, tasks: list[Task]) -> Done:
        done = Done([], [], [], Counter())
        self.attempt(tasks, done)
        return done

    def payload(self, tasks: list[Task], done: Done) -> tuple[dict[str, Any], list[Task]]:
        if tasks[0].path is None:
            return {"urls": [t.url for t in tasks], **self.options.request_options}, tasks
        images, ready = [], []
        for task in tasks:
            assert task.path is not None
            try:
                data = task.path.read_bytes()
            except OSError as exc:
                done.records.append(self.record(task, error=("UnreadableFile", f"cannot read {task.path}: {exc}")))
                continue
            encoded = base64.b64encode(data).decode("ascii")
            if len(encoded) > self.options.max_payload:
                size = f"{len(data) / 2**20:.1f} MB"
                message = f"{task.path} is {size}, too big for a synchronous invoke (6 MB): put it in S3, pass s3://"
                done.records.append(self.record(task, error=("RequestTooLarge", message)))
                continue
            images.append(encoded)
            ready.append(task)
        return {"images": images, **self.options.request_options}, ready

    def attempt(self, tasks: list[Task], done: Done) -> None:
        payload, ready = self.payload(tasks, done)
        if not ready:
            return
        for attempt in range(self.options.retries + 1):
            if self.stop.is_set():
                done.unfinished.extend((t, "Interrupted") for t in ready)
                return
            reply = self.invoker.invoke(payload)
            done.calls.append(reply)
            if reply.results is not None:
                if len(reply.results) != len(ready):
                    error = ("UnexpectedAnswer", f"{len(reply.results)} results for {len(ready)} images")
                    done.records.extend(self.record(t, error=error) for t in ready)
                else:
                    done.records.extend(self.record(t, r) for t, r in zip(ready, reply.results, strict=True))
                return
            if reply.fatal:
                raise UsageError(reply.message)
            reason = reply.error_type or "Error"
            if reply.split and len(ready) > 1:  # maybe one image's fault: find out which
                for task in ready:
                    self.attempt([task], done)
                return
            if not reply.retry:
                done.records.extend(self.record(t, error=(reason, reply.message)) for t in ready)
                return
            done.retries[reason] += 1
            if attempt == self.options.retries:
                break
            delay = random.uniform(0, min(self.options.max_delay, self.options.base_delay * 2**attempt))
            self.stop.wait(delay)  # full jitter; Ctrl-C cuts the wait short
        done.unfinished.extend((t, reason) for t in ready)


def _account(summary: Summary, done: Done) -> None:
    for reply in done.calls:
        summary.requests += 1
        if reply.billed_ms is not None or reply.results is not None:
            summary.invocations += 1
        if reply.billed_ms is not None:
            summary.billed_ms.append(reply.billed_ms)
        if reply.memory_mb is not None:
            summary.memory_mb = reply.memory_mb
        if reply.duration_ms is not None:
            summary.durations_ms.append(reply.duration_ms)
        if reply.results is not None:
            summary.latencies_ms.append(reply.latency_ms)
            summary.images_per_request.append(len(reply.results))
    summary.retries.update(done.retries)
    for record in done.records:
        if "error" in record:
            summary.failed[record["error"]["type"]] += 1
        else:
            summary.done += 1
    summary.unfinished.update(reason for _, reason in done.unfinished if reason != "Interrupted")


def run_batch(
    tasks: list[Task],
    sink: Sink,
    invoker: Invoker,
    options: Options,
    *,
    model: dict[str, Any] | None = None,
    stream: TextIO | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Run every task not already in `sink`; return what happened (also when interrupted)."""
    summary = summary or Summary()
    summary.total, summary.output, summary.model = len(tasks), sink.where, model
    sink.track([t.id for t in tasks])
    todo = [t for t in tasks if t.id not in sink.done]
    summary.skipped = len(tasks) - len(todo)
    progress = Progress(len(todo), stream)
    stop = threading.Event()
    worker = _Worker(invoker, options, model, stop)
    requests = plan_requests(todo, options.per_request, options.max_payload)
    start = time.perf_counter()
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="batch") as pool:
        pending: set[Future[Done]] = set()

        def fill() -> None:
            while not stop.is_set() and len(pending) < 2 * options.concurrency:
                chunk = next(requests, None)
                if chunk is None:
                    return
                pending.add(pool.submit(worker, chunk))

        def collect(finished: set[Future[Done]]) -> None:
            nonlocal failure
            for future in finished:
                if future.cancelled():
                    continue
                try:
                    done = future.result()
                except LambdaliteError as exc:
                    failure = failure or exc
                    stop.set()
                    continue
                sink.write(done.records)
                _account(summary, done)

        try:
            fill()
            while pending:
                finished, still = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(still)
                collect(finished)
                fill()
                progress.update(summary.done, sum(summary.failed.values()), sum(summary.retries.values()))
        except KeyboardInterrupt:
            summary.interrupted = True
            stop.set()
            print(
                "\ninterrupted: finishing the requests in flight (Ctrl-C again to quit at once)", file=progress.stream
            )
            for future in pending:
                future.cancel()
            collect(set(wait(pending).done))
        summary.elapsed_s = time.perf_counter() - start
        progress.update(summary.done, sum(summary.failed.values()), sum(summary.retries.values()), final=True)
    if failure is not None:
        raise failure
    return summary
