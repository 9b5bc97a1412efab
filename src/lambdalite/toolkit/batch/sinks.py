"""Where results go, and what is already done there: a JSONL file or one JSON object per image in S3.

    sink = open_sink("labels.jsonl")            # or "s3://bucket/prefix"
    todo = [t for t in tasks if t.id not in sink.done]
    sink.write([{"input": "cats/1.jpg", "model": {...}, "result": [...]}, ...])

A result is final: a rerun skips every image the sink already holds, so an interrupted run
resumes where it stopped and no image gets two results. A JSONL line is written whole with one
`write` on an append-only file and flushed to disk; a line cut short by a kill is dropped when
the file is opened again. Permanent failures are final too (`{"input", "error": {"type",
"message"}}`); `retry_failed` forgets them so they run again. In S3 a result for `cats/1.jpg` is
`<prefix>cats/1.jpg.json` (for `s3://bucket/key`: `<prefix>key.json`, the function's own
layout), a failure `<prefix>cats/1.jpg.error.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from lambdalite.errors import UsageError

__all__ = ["JsonlSink", "S3Sink", "Sink", "open_sink", "result_name"]


class Sink(Protocol):
    where: str
    done: set[str]  # ids with a final record (results, and failures unless retried)
    failed_before: int  # failures forgotten so that they run again

    def track(self, ids: list[str]) -> None: ...

    def write(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, path: Path, *, retry_failed: bool = False) -> None:
        self.where = str(path)
        self.path = path
        self.done: set[str] = set()
        self.failed_before = 0
        if path.exists():
            self._recover(retry_failed)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _recover(self, retry_failed: bool) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a line cut short by a kill is dropped
        kept: list[bytes] = []
        for number, line in enumerate(complete.splitlines(keepends=True), 1):
            try:
                record = json.loads(line)
                ident = record["input"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(
                    f"{self.path}:{number} is not a lambdalite batch record; write to a new file"
                ) from None
            if "error" in record and retry_failed:
                self.failed_before += 1
                continue
            self.done.add(ident)
            kept.append(line)
        if len(complete) != len(data) or self.failed_before:
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_bytes(b"".join(kept))
            os.replace(temporary, self.path)

    def track(self, ids: list[str]) -> None:
        """Nothing to learn: the file said what is done when it was opened."""

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        os.write(self.fd, lines.encode())
        os.fsync(self.fd)
        self.done.update(r["input"] for r in records)

    def close(self) -> None:
        os.close(self.fd)


def result_name(ident: str) -> str:
    """The key (without `.json`) a result is filed under in S3."""
    if ident.startswith("s3://"):
        return ident.removeprefix("s3://").partition("/")[2]
    if ident.startswith(("https://", "http://")):
        return "urls/" + hashlib.sha256(ident.encode()).hexdigest()
    parts = [p for p in PurePosixPath(ident.replace("\\", "/")).parts if p not in ("/", ".", "..")]
    return "/".join(parts)


class S3Sink:
    def __init__(self, uri: str, client: Any, *, retry_failed: bool = False) -> None:
        self.where = uri
        self.client = client
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not self.bucket:
            raise UsageError(f"{uri!r} names no bucket; write s3://bucket/prefix")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.failed_before = 0
        self.done: set[str] = set()
        self.names: dict[str, str] = {}  # result name -> id, for the ids we are asked about
        self.existing: set[str] = set()
        self.failures: set[str] = set()
        self.retry_failed = retry_failed
        self._list()

    def _list(self) -> None:
        import botocore.exceptions

        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) :]
                    if key.endswith(".error.json"):
                        self.failures.add(key.removesuffix(".error.json"))
                    elif key.endswith(".json"):
                        self.existing.add(key.removesuffix(".json"))
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            raise UsageError(f"listing {self.where}: {error.get('Code')} {error.get('Message', '')}".rstrip()) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise UsageError(f"listing {self.where}: {exc}") from None

    def track(self, ids: list[str]) -> None:
        """Learn the ids of this run: which are done, and that no two share a key."""
        for ident in ids:
            name = result_name(ident)
            if name in self.names and self.names[name] != ident:
                raise UsageError(f"{ident} and {self.names[name]} would both be filed as {self.prefix}{name}.json")
            self.names[name] = ident
            if name in self.existing or (name in self.failures and not self.retry_failed):
                self.done.add(ident)
            elif name in self.failures:
                self.failed_before += 1

    def write(self, records: list[dict[str, Any]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def put(record: dict[str, Any]) -> None:
            name = result_name(record["input"])
            suffix = ".error.json" if "error" in record else ".json"
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            self.client.put_object(
                Bucket=self.bucket, Key=f"{self.prefix}{name}{suffix}", Body=body, ContentType="application/json"
            )
            if suffix == ".json" and name in self.failures:  # retried and done: one record per image
                self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.error.json")

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(records)))) as pool:
            list(pool.map(put, records))
        self.done.update(r["input"] for r in records)

    def close(self) -> None:
        pass


def open_sink(output: str, *, retry_failed: bool = False, s3: Any = None) -> JsonlSink | S3Sink:
    if output.startswith("s3://"):
        from lambdalite.toolkit.batch.sources import s3_client

        return S3Sink(output, s3 if s3 is not None else s3_client(), retry_failed=retry_failed)
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"-o {output} is a folder; name a .jsonl file, or s3://bucket/prefix")
    return JsonlSink(path, retry_failed=retry_failed)
