"""What to run: a folder (recursively), a file list (one path, s3:// or https:// per line) or an S3 prefix.

    tasks = list_tasks("photos/")                  # [Task("cats/1.jpg", path=...)], sorted
    tasks = list_tasks("s3://photos/2024/")        # [Task("s3://photos/2024/a.jpg", url=...)]

Each task has an `id`, the name its result is filed under (a path relative to the folder, the
line of the list, or the s3:// URI), and either a local `path` (sent as base64) or a `url` the
function reads itself (s3:// with its role, https:// under its URL policy). Only names with an
image extension are taken from folders and prefixes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from lambdalite.errors import UsageError

__all__ = ["IMAGE_SUFFIXES", "Task", "list_tasks", "s3_client"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".mpo"})


class Task(NamedTuple):
    """One image: `id` names its result; exactly one of `path` (a local file) and `url`."""

    id: str
    path: Path | None = None
    url: str | None = None


def s3_client(endpoint_url: str | None = None, profile: str | None = None, region: str | None = None) -> Any:
    """An S3 client from the usual AWS environment (AWS_ENDPOINT_URL_S3 is honoured by boto3)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise UsageError(f"{uri!r} names no bucket; write s3://bucket/prefix")
    return bucket, prefix


def _s3_tasks(uri: str, client: Any) -> Iterator[Task]:
    import botocore.exceptions

    bucket, prefix = _split_s3(uri)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.endswith("/") and Path(key).suffix.lower() in IMAGE_SUFFIXES:
                    yield Task(f"s3://{bucket}/{key}", url=f"s3://{bucket}/{key}")
    except botocore.exceptions.NoCredentialsError:
        raise UsageError(f"listing {uri}: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID)") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise UsageError(f"listing {uri}: {error.get('Code')} {error.get('Message', '')}".rstrip()) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise UsageError(f"listing {uri}: {exc}") from None


def _folder_tasks(root: Path) -> Iterator[Task]:
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            yield Task(path.relative_to(root).as_posix(), path=path)


def _list_tasks(listing: Path) -> Iterator[Task]:
    try:
        text = listing.read_text()
    except UnicodeDecodeError:
        raise UsageError(f"{listing} is not a file list (one path, s3:// or https:// URL per line)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {listing}: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("s3://", "https://", "http://")):
            yield Task(line, url=line)
            continue
        path = Path(line)
        if not path.is_file():
            raise UsageError(f"{listing}:{number}: {line} is not a file")
        yield Task(line, path=path)


def list_tasks(source: str, *, s3: Any = None) -> list[Task]:
    """Every image `source` names, in a stable order; a duplicate name is a UsageError."""
    if source.startswith("s3://"):
        tasks = list(_s3_tasks(source, s3 if s3 is not None else s3_client()))
    else:
        path = Path(source)
        if path.is_dir():
            tasks = list(_folder_tasks(path))
        elif path.is_file():
            tasks = list(_list_tasks(path))
        else:
            raise UsageError(f"{source} is neither a folder, a file list nor s3://bucket/prefix")
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise UsageError(f"{source} names {task.id} twice; each image gets one result")
        seen.add(task.id)
    return tasks
