"""Images read from S3 and results written there, with the function's role (boto3, imported here only).

    data = read_image(S3Object("photos", "2024/cat.jpg"), settings)     # under the image size cap
    write_json("results", "2024/cat.jpg.json", document, settings)

Imported only when a batch event or a direct invoke naming `s3://` arrives, so a function that
never sees one never imports boto3. Credentials and region come from the environment (inside
Lambda: the execution role); `AWS_ENDPOINT_URL_S3` points the client at moto, MinIO or
LocalStack. Timeouts are the image-URL ones (`LAMBDALITE_URL_CONNECT_TIMEOUT`,
`LAMBDALITE_URL_TIMEOUT`); botocore retries throttling itself (standard mode, 3 attempts).

Every failure is one deliberate error whose class says whether retrying can help:
`ThrottledError` (SlowDown, 503, 500, a connection that broke) and `StorageTimeoutError` can;
`StorageError` (missing, denied) and `PayloadTooLargeError` (over `LAMBDALITE_MAX_IMAGE_BYTES`)
cannot.
"""

from __future__ import annotations

import json
import threading
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from lambdalite.errors import (
    LambdaliteError,
    PayloadTooLargeError,
    StorageError,
    StorageTimeoutError,
    ThrottledError,
)
from lambdalite.settings import Settings

__all__ = ["S3Object", "parse_s3_url", "read_image", "write_json"]

_CHUNK = 256 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem", "InvalidObjectState"}
_RETRYABLE = {
    "SlowDown",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}

_lock = threading.Lock()
_clients: dict[tuple[float, float], Any] = {}


class S3Object(NamedTuple):
    """One object: its bucket, key (decoded) and optionally a version."""

    bucket: str
    key: str
    version_id: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (f"?versionId={self.version_id}" if self.version_id else "")


def parse_s3_url(url: str) -> S3Object:
    """`s3://bucket/key` (`?versionId=` optional) as an S3Object; a bad URL is a StorageError."""
    parts = urlsplit(url.strip())
    key = unquote(parts.path.lstrip("/"))
    if parts.scheme != "s3" or not parts.netloc or not key or key.endswith("/"):
        raise StorageError(f"{url[:200]!r} is not an S3 object; write s3://bucket/path/to/image.jpg")
    versions = parse_qs(parts.query).get("versionId")
    return S3Object(parts.netloc, key, versions[0] if versions else None)


def _client(settings: Settings) -> Any:
    """One client per process (and timeouts): clients are thread-safe, making them is not."""
    timeouts = (settings.url_connect_timeout, settings.url_timeout)
    with _lock:
        client = _clients.get(timeouts)
        if client is None:
            config = Config(
                connect_timeout=timeouts[0],
                read_timeout=timeouts[1],
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=16,
                user_agent_extra="lambdalite",
            )
            client = _clients[timeouts] = boto3.session.Session().client("s3", config=config)
        return client


def read_image(where: S3Object, settings: Settings) -> bytes:
    """The object's bytes, refused unread when larger than `LAMBDALITE_MAX_IMAGE_BYTES`."""
    cap = settings.max_image_bytes
    kwargs: dict[str, Any] = {"Bucket": where.bucket, "Key": where.key}
    if where.version_id:
        kwargs["VersionId"] = where.version_id
    try:
        response = _client(settings).get_object(**kwargs)
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if isinstance(size, int) and size > cap:
                mb = f"{size / 2**20:.1f} MB, over the {cap / 2**20:.0f} MB"
                raise PayloadTooLargeError(f"{where} is {mb} image cap (LAMBDALITE_MAX_IMAGE_BYTES)")
            chunks: list[bytes] = []
            total = 0
            for chunk in body.iter_chunks(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise PayloadTooLargeError(f"{where} is over the {cap / 2**20:.0f} MB image cap")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            body.close()
    except LambdaliteError:
        raise
    except Exception as exc:
        raise _error("reading", where, exc, "s3:GetObject") from None


def write_json(bucket: str, key: str, document: Any, settings: Settings) -> None:
    """Put `document` as a JSON object at bucket/key."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        _client(settings).put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except Exception as exc:
        raise _error("writing", S3Object(bucket, key), exc, "s3:PutObject") from None


def _error(doing: str, where: S3Object, exc: Exception, permission: str) -> LambdaliteError:
    """A botocore failure as the one deliberate error that says whether a retry can help."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        label = f"{status} {code}".strip()
        if code == "NoSuchBucket":
            return StorageError(f"{doing} {where}: the bucket {where.bucket} does not exist ({label})")
        if code in _MISSING or status == 404:
            return StorageError(f"{where} does not exist ({label})")
        if code in _DENIED or status == 403:
            return StorageError(
                f"{doing} {where}: access denied ({label}); the function's role needs {permission} on "
                f"arn:aws:s3:::{where.bucket}/{where.key}"
            )
        if code in _RETRYABLE or status in (429, 500, 502, 503, 504):
            return ThrottledError(f"{doing} {where}: S3 answered {label}; try again later")
        return StorageError(f"{doing} {where}: S3 answered {label}: {error.get('Message', '')}".rstrip(": "))
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StorageError(
            f"{doing} {where}: no AWS credentials found (inside Lambda the execution role provides them; "
            f"elsewhere set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
        )
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return StorageTimeoutError(f"{doing} {where}: S3 did not answer in time; try again later")
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ResponseStreamingError
        | OSError,
    ):
        return ThrottledError(f"{doing} {where}: the connection to S3 failed ({exc}); try again later")
    return StorageError(f"{doing} {where}: {type(exc).__name__}: {exc}")
