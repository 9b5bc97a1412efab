"""Batch event sources: many images per event, results written to S3, failures answered per item.

    answer = handle(function, event, "sqs", context)    # after events.batch_kind(event) == "sqs"

Imported only when such an event arrives (`function/events.py` recognises them by envelope):

* `s3`: S3 event notifications (`ObjectCreated:*`; keys arrive URL-encoded, spaces as `+`).
* `sns`: SNS records whose `Message` is an S3 notification, or names images like an SQS body.
* `eventbridge`: S3's `Object Created` event (keys arrive decoded).
* `sqs`: messages whose body is an S3 notification (S3 -> SQS), an SNS envelope (S3 -> SNS ->
  SQS), an EventBridge event, S3's `s3:TestEvent` (skipped), or names images itself: a plain
  `s3://bucket/key`, an `https://` URL or base64, or JSON as direct invokes take it
  (`{"url": ...}`, `{"image": ...}`, `{"urls": [...]}`, `{"images": [...]}`, `top_k`) plus an
  optional `"id"` naming the result.
* `s3-batch`: S3 Batch Operations jobs, invocation schema 1.0 (`s3BucketArn`) and 2.0
  (`s3Bucket`, `userArguments`); keys arrive URL-encoded.

Every image becomes one item, read (S3 with the function's role, https under the URL policy,
base64 as sent) under the same size and decode guards as requests, run, and its result written
to `LAMBDALITE_OUTPUT` as one JSON document at `<prefix><input key>.json` (`urls/<sha256>.json`
for a URL, `images/<sha256>.json` for bytes, `<id>.json` when a message names it) with the
model's name and version. The answers:

* SQS: `{"batchItemFailures": [{"itemIdentifier": <messageId>}]}` listing exactly the messages
  with a failed image (Lambda returns those to the queue; its redrive policy ends in the DLQ).
* Batch Operations: one result per task, `Succeeded`, `TemporaryFailure` (throttled, timed out,
  or the function ran out of time: S3 retries it) or `PermanentFailure` (a bad image, a missing
  object, a refused URL), with a `resultString` (where the result went, or the error).
* S3, SNS and EventBridge (asynchronous invokes): a summary; if any image failed temporarily the
  invoke raises `BatchError`, so Lambda retries the event (permanent failures are logged, not
  retried).

No recursion: an S3-notified object under `LAMBDALITE_OUTPUT` is a result of this function and
is skipped (logged), whatever triggered it; `Settings` refuses at init an output that the
configured trigger (`LAMBDALITE_TRIGGER`) would fire on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import unquote_plus

from lambdalite.errors import (
    BatchError,
    ConfigError,
    EventError,
    InternalError,
    LambdaliteError,
    ThrottledError,
)
from lambdalite.function import inputs as inputs_
from lambdalite.function.events import BatchKind
from lambdalite.function.logs import log_request, log_unexpected
from lambdalite.function.storage import S3Object, parse_s3_url, read_image, write_json
from lambdalite.function.types import LambdaContext
from lambdalite.model import Model
from lambdalite.settings import S3Prefix, Settings

__all__ = ["Host", "Item", "Outcome", "answer", "handle", "items_from", "outcome_code", "result_key"]

Ref = S3Object | str | bytes  # an S3 object, an image URL, or the image itself
Code = Literal["ok", "skipped", "temporary", "permanent"]
_PREFETCH = 8  # images read ahead while the model runs
_MIN_MARGIN_MS = 1500  # stop this long before the function's timeout, at least
_MAX_ID = 900


class Host(Protocol):
    """What a batch needs of the function (`lambdalite.function.app.Function` is one)."""

    settings: Settings
    model: Model

    def predict(self, parsed: inputs_.Inputs, *, s3: bool = False) -> list[Any]: ...

    def fetch(self, url: str, *, s3: bool = False) -> bytes: ...


class Item(NamedTuple):
    """One image of a batch event: what the source answers for (`group`: an SQS message id, a
    Batch Operations task id, a record's index), what to read, and what to call its result."""

    group: str
    ref: Ref | None
    name: str = ""
    options: Mapping[str, int] = {}
    notified: bool = False  # it came from an S3 notification (so: never one of our results)
    error: LambdaliteError | None = None  # it could not even be read from the event
    skip: str | None = None  # a reason not to run it (a test event, a result of ours)

    @property
    def label(self) -> str:
        if isinstance(self.ref, bytes):
            return f"<{len(self.ref)} bytes>"
        return str(self.ref) if self.ref is not None else self.group


class Outcome(NamedTuple):
    item: Item
    code: Code
    detail: str  # where the result went, why it was skipped, or "ErrorType: message"
    error_type: str | None = None


# -- events -> items ----------------------------------------------------------------------------


def _s3_items(records: Any, group: Callable[[int], str]) -> list[Item]:
    """S3 notification records (keys URL-encoded, `+` for spaces)."""
    if not isinstance(records, list):
        raise EventError("malformed S3 event: Records must be a list")
    items = []
    for i, record in enumerate(records):
        try:
            name = str(record["eventName"])
            s3 = record["s3"]
            where = S3Object(
                str(s3["bucket"]["name"]), unquote_plus(str(s3["object"]["key"])), s3["object"].get("versionId")
            )
        except (KeyError, TypeError) as exc:
            items.append(Item(group(i), None, error=EventError(f"malformed S3 event record: no {exc}")))
            continue
        skip = None if name.startswith("ObjectCreated:") else f"{name} is not an ObjectCreated event"
        items.append(Item(group(i), where, where.key, notified=True, skip=skip))
    return items


def _eventbridge_items(event: Mapping[str, Any], group: str) -> list[Item]:
    """S3's EventBridge event: `detail.object.key` arrives decoded."""
    try:
        detail = event["detail"]
        where = S3Object(
            str(detail["bucket"]["name"]), str(detail["object"]["key"]), detail["object"].get("version-id")
        )
    except (KeyError, TypeError) as exc:
        return [Item(group, None, error=EventError(f"malformed EventBridge S3 event: no {exc}"))]
    kind = event.get("detail-type")
    skip = None if kind == "Object Created" else f"{kind!r} is not an Object Created event"
    return [Item(group, where, where.key, notified=True, skip=skip)]


def _name(ref: Ref, given: str | None, index: int, count: int) -> str:
    """The result's key under the output prefix (".json" is added)."""
    if given:
        return given if count == 1 else f"{given}/{index}"
    if isinstance(ref, S3Object):
        return ref.key
    if isinstance(ref, str):
        return "urls/" + hashlib.sha256(ref.encode()).hexdigest()
    return "images/" + hashlib.sha256(ref).hexdigest()


def _given_id(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("id")
    if value is None:
        return None
    text = str(value).strip().strip("/")
    if not text or len(text) > _MAX_ID or any(part in ("", ".", "..") for part in text.split("/")):
        raise EventError(f"id must name a result like cats/0001 (no empty, . or .. parts), not {str(value)[:80]!r}")
    return text


def _body_items(body: Any, group: str, max_bytes: int, depth: int = 0) -> list[Item]:
    """What one message (SQS body, SNS Message) holds: S3 events, or images named by the sender."""
    if not isinstance(body, str):
        return [Item(group, None, error=EventError("the message body must be a string"))]
    text = body.strip()
    payload: Any = text
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            return [Item(group, None, error=EventError("the message body starts with { but is not JSON"))]
    if isinstance(payload, dict) and depth < 3:
        if isinstance(payload.get("Records"), list):
            return _s3_items(payload["Records"], lambda i: group)
        if payload.get("Event") == "s3:TestEvent":
            return [Item(group, None, skip="S3's s3:TestEvent (sent when notifications are configured)")]
        if payload.get("Type") == "Notification" and "Message" in payload:  # S3 -> SNS -> SQS
            return _body_items(payload["Message"], group, max_bytes, depth + 1)
        if payload.get("source") == "aws.s3" and "detail-type" in payload:  # EventBridge -> SQS
            return _eventbridge_items(payload, group)
    if isinstance(payload, str):
        if payload.startswith(("s3://", "http://", "https://")):
            payload = {"url": payload}
        else:
            payload = {"image": payload}
    try:
        given = _given_id(payload) if isinstance(payload, dict) else None
        parsed = inputs_.from_json(payload, max_bytes=max_bytes)
        refs: list[Ref] = [
            parse_s3_url(i) if isinstance(i, str) and i.startswith("s3://") else i for i in parsed.images
        ]
    except LambdaliteError as exc:
        return [Item(group, None, error=exc)]
    return [Item(group, ref, _name(ref, given, i, len(refs)), parsed.options) for i, ref in enumerate(refs)]


def _batch_operations_items(event: Mapping[str, Any]) -> list[Item]:
    """S3 Batch Operations tasks: 1.0 names the bucket by ARN, 2.0 by name; keys URL-encoded."""
    tasks = event.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise EventError("malformed S3 Batch Operations event: tasks must be a non-empty list")
    items = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
            raise EventError(f"malformed S3 Batch Operations event: tasks[{i}] has no taskId")
        arn, bucket, key = task.get("s3BucketArn"), task.get("s3Bucket"), task.get("s3Key")
        if isinstance(arn, str) and ":::" in arn:
            bucket = arn.rsplit(":::", 1)[1]
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            error = EventError(f"task {task['taskId']} names no bucket (s3BucketArn or s3Bucket) and key (s3Key)")
            items.append(Item(task["taskId"], None, error=error))
            continue
        where = S3Object(bucket, unquote_plus(key), task.get("s3VersionId") or None)
        items.append(Item(task["taskId"], where, where.key))
    return items


def items_from(event: Mapping[str, Any], kind: BatchKind, max_bytes: int) -> list[Item]:
    """Every image the event names, in order; a malformed envelope raises EventError."""
    if kind == "s3":
        return _s3_items(event.get("Records"), lambda i: f"record-{i}")
    if kind == "eventbridge":
        return _eventbridge_items(event, str(event.get("id") or "event"))
    if kind == "s3-batch":
        return _batch_operations_items(event)
    records = event.get("Records")
    if not isinstance(records, list):
        raise EventError(f"malformed {kind.upper()} event: Records must be a list")
    items: list[Item] = []
    for i, record in enumerate(records):
        if kind == "sqs":
            group = record.get("messageId") if isinstance(record, dict) else None
            if not isinstance(group, str) or not group:
                raise EventError(f"malformed SQS event: Records[{i}] has no messageId")
            items += _body_items(record.get("body"), group, max_bytes)
        else:  # sns
            sns = record.get("Sns") if isinstance(record, dict) else None
            group = str((sns or {}).get("MessageId") or f"record-{i}")
            message = sns.get("Message") if isinstance(sns, dict) else None
            items += _body_items(message, group, max_bytes)
    return items


def result_key(prefix: str, item: Item) -> str:
    return f"{prefix}{item.name}.json"


# -- running ------------------------------------------------------------------------------------


def outcome_code(error: LambdaliteError) -> Code:
    """Whether retrying the same image later can help: throttling and timeouts, yes; else no."""
    return "temporary" if isinstance(error, ThrottledError | TimeoutError) else "permanent"


def _read(function: Host, ref: Ref) -> bytes:
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, S3Object):
        return read_image(ref, function.settings)
    return function.fetch(ref)


class _Clock:
    """Whether there is time left for another image: the function's remaining time against a
    margin (at least `_MIN_MARGIN_MS`, and three times the slowest image so far). Once out, out."""

    def __init__(self, context: LambdaContext | None) -> None:
        self.context = context
        self.slowest_ms = 0.0
        self.out = False

    def out_of_time(self) -> bool:
        if self.context is not None and not self.out:
            self.out = self.context.get_remaining_time_in_millis() < max(_MIN_MARGIN_MS, 3 * self.slowest_ms)
        return self.out

    def took(self, start: float) -> None:
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - start) * 1e3)


class _Reader:
    """Reads images a few ahead of the model (S3 and URL reads overlap the inference); starts no
    read once the function is out of time."""

    def __init__(self, function: Host, items: list[Item], clock: _Clock) -> None:
        self.function = function
        self.clock = clock
        self.pending: deque[tuple[Item, Future[bytes] | None]] = deque()
        self.todo = iter(items)
        self.pool = ThreadPoolExecutor(max_workers=min(_PREFETCH, max(1, len(items))))

    def _fill(self) -> None:
        while len(self.pending) < _PREFETCH:
            item = next(self.todo, None)
            if item is None:
                return
            runnable = item.ref is not None and item.error is None and item.skip is None
            runnable = runnable and not self.clock.out_of_time()
            future = self.pool.submit(_read, self.function, item.ref) if runnable else None  # type: ignore[arg-type]
            self.pending.append((item, future))

    def __iter__(self) -> Iterator[tuple[Item, Future[bytes] | None]]:
        try:
            self._fill()
            while self.pending:
                yield self.pending.popleft()
                self._fill()
        finally:
            for _, future in self.pending:
                if future is not None:
                    future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)


def _document(function: Host, item: Item, kind: BatchKind, result: Any, request_id: str | None) -> Any:
    manifest = function.model.bundle.manifest
    ref = item.ref
    source = f"sha256:{hashlib.sha256(ref).hexdigest()}" if isinstance(ref, bytes) else str(ref)
    return {
        "input": source,
        "model": {"name": manifest.name, "version": manifest.version},
        "result": result,  # as the task answers (classifiers: the DJL list), whatever LAMBDALITE_RESPONSE says
        "source": kind,
        "requestId": request_id,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _run_one(
    function: Host, item: Item, data: bytes, kind: BatchKind, request_id: str | None, write: bool
) -> tuple[str, Any]:
    output = function.settings.output
    [result] = function.predict(inputs_.Inputs([data], dict(item.options)))
    if not write or output is None:
        return "", result
    key = result_key(output.prefix, item)
    write_json(output.bucket, key, _document(function, item, kind, result, request_id), function.settings)
    return f"s3://{output.bucket}/{key}", result


def run(function: Host, items: list[Item], kind: BatchKind, context: LambdaContext | None) -> list[Outcome]:
    """Run every item, in order, stopping short of the function's timeout (the rest: temporary)."""
    output = function.settings.output
    request_id = context.aws_request_id if context is not None else None
    write = kind != "s3-batch" or output is not None  # Batch Operations can report results itself
    if write and output is None:
        missing = ConfigError(
            f"a {kind} event arrived but LAMBDALITE_OUTPUT is not set: set it to s3://bucket/prefix "
            f"(where results go), outside what triggers the function"
        )
        return [Outcome(i, "permanent", f"ConfigError: {missing}", "ConfigError") for i in items]
    if output is not None:  # never read, let alone run, a result of ours again
        items = [_guard(item, output) for item in items]
    outcomes: list[Outcome] = []
    clock = _Clock(context)
    for item, future in _Reader(function, items, clock):
        if item.skip is not None:
            outcomes.append(Outcome(item, "skipped", item.skip))
            continue
        if item.error is not None:
            outcomes.append(_failed(item, item.error))
            continue
        if future is None or clock.out_of_time():
            outcomes.append(Outcome(item, "temporary", "the function ran out of time before this image", "Timeout"))
            continue
        start = time.perf_counter()
        try:
            where, result = _run_one(function, item, future.result(), kind, request_id, write)
        except LambdaliteError as exc:
            outcomes.append(_failed(item, exc))
        except Exception as exc:
            outcomes.append(_failed(item, _internal(exc, request_id)))
        else:
            outcomes.append(Outcome(item, "ok", where or _summary(result)))
        clock.took(start)
    return outcomes


def _guard(item: Item, output: S3Prefix) -> Item:
    """An S3-notified object under the output is one of our results: skip it, or we would loop."""
    ref = item.ref
    if item.notified and item.skip is None and isinstance(ref, S3Object) and output.holds(ref.bucket, ref.key):
        return item._replace(
            skip=f"{ref} is under LAMBDALITE_OUTPUT ({output}): a result, not run again (it would loop)"
        )
    return item


def _failed(item: Item, error: LambdaliteError) -> Outcome:
    return Outcome(item, outcome_code(error), f"{error.type_name}: {error}", error.type_name)


def _internal(exc: Exception, request_id: str | None) -> InternalError:
    log_unexpected(exc, request_id)
    return InternalError(f"internal error (request {request_id}); see the function's logs")


def _summary(result: Any) -> str:
    """A result in a few hundred characters (Batch Operations' resultString, without an output)."""
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 900 else text[:897] + "..."


# -- answers ------------------------------------------------------------------------------------


def answer(event: Mapping[str, Any], kind: BatchKind, outcomes: list[Outcome]) -> Any:
    """What the source expects back (see the module docstring)."""
    if kind == "sqs":
        failed = dict.fromkeys(o.item.group for o in outcomes if o.code in ("temporary", "permanent"))
        return {"batchItemFailures": [{"itemIdentifier": group} for group in failed]}
    if kind == "s3-batch":
        codes = {"ok": "Succeeded", "skipped": "Succeeded", "temporary": "TemporaryFailure"}
        return {
            "invocationSchemaVersion": event.get("invocationSchemaVersion"),
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event.get("invocationId"),
            "results": [
                {
                    "taskId": o.item.group,
                    "resultCode": codes.get(o.code, "PermanentFailure"),
                    "resultString": o.detail[:1000],
                }
                for o in outcomes
            ],
        }
    temporary = [o for o in outcomes if o.code == "temporary"]
    if temporary:
        listed = "; ".join(f"{o.item.label}: {o.detail}" for o in temporary[:5])
        more = f" (and {len(temporary) - 5} more)" if len(temporary) > 5 else ""
        raise BatchError(
            f"{len(temporary)} of {len(outcomes)} images failed for now, Lambda will retry: {listed}{more}"
        )
    return {
        "succeeded": sum(o.code == "ok" for o in outcomes),
        "skipped": sum(o.code == "skipped" for o in outcomes),
        "failed": [{"input": o.item.label, "error": o.detail} for o in outcomes if o.code == "permanent"],
    }


def handle(function: Host, event: Mapping[str, Any], kind: BatchKind, context: LambdaContext | None) -> Any:
    """Read, run, write and answer one batch event; one request log record says how it went."""
    start = time.perf_counter()
    request_id = context.aws_request_id if context is not None else None
    outcomes: list[Outcome] = []
    try:
        items = items_from(event, kind, function.settings.max_body_bytes)
        outcomes = run(function, items, kind, context)
        result = answer(event, kind, outcomes)
    except LambdaliteError as exc:
        _log(kind, request_id, start, outcomes, exc)
        raise exc.with_traceback(None) from None
    except Exception as exc:
        error = _internal(exc, request_id)
        _log(kind, request_id, start, outcomes, error)
        raise error from None
    _log(kind, request_id, start, outcomes, None)
    return result


def _log(
    kind: BatchKind, request_id: str | None, start: float, outcomes: list[Outcome], error: LambdaliteError | None
) -> None:
    counts = {code: sum(o.code == code for o in outcomes) for code in ("ok", "skipped", "temporary", "permanent")}
    failures = [
        {"id": o.item.group, "input": o.item.label[:300], "error": o.error_type, "message": o.detail[:300]}
        for o in outcomes
        if o.code in ("temporary", "permanent")
    ]
    log_request(
        request_id=request_id,
        source=kind,
        duration_ms=(time.perf_counter() - start) * 1e3,
        error=error,
        images=len(outcomes),
        succeeded=counts["ok"],
        skipped=counts["skipped"],
        temporaryFailures=counts["temporary"],
        permanentFailures=counts["permanent"],
        failures=failures[:20],
    )
