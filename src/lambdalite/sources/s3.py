"""`s3://bucket/key` model sources through boto3, imported only when such a reference is used.

Credentials, region and endpoint come from the standard AWS environment and config files
(inside Lambda: the execution role). `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) points the
client at an S3-compatible server (MinIO, moto, LocalStack). `?versionId=` selects a version.

Integrity: the GET asks for S3's stored checksum (`ChecksumMode=ENABLED`), which botocore checks
against the bytes as they stream; where the ETag is a plain MD5 (single-part upload, no KMS),
the bytes are also checked against it. Seed 004 names its model with two variables,
`MODEL_BUCKET` and `MODEL_KEY`; `reference_from_env` (in `lambdalite.sources.references`) turns them into
an `s3://` reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from lambdalite.errors import ChecksumError, SourceError, SourceTimeoutError
from lambdalite.sources.https import etag_md5
from lambdalite.sources.remote import Digests

__all__ = ["S3Location", "S3Stream", "open_object", "parse"]

_CHUNK = 1 << 20
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


class S3Location(NamedTuple):
    bucket: str
    key: str
    version_id: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + (f"?versionId={self.version_id}" if self.version_id else "")


def parse(url: str) -> S3Location:
    parts = urlsplit(url)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if parts.scheme != "s3" or not bucket or not key or key.endswith("/"):
        raise SourceError(f"{url!r} is not an S3 object reference; write s3://bucket/path/to/model.tar.gz")
    versions = parse_qs(parts.query).get("versionId")
    return S3Location(bucket, key, versions[0] if versions else None)


class S3Stream:
    def __init__(self, where: S3Location, response: dict[str, Any], timeout: float) -> None:
        self.where = where
        self.timeout = timeout
        self.name = where.key.rsplit("/", 1)[-1]
        self.size: int | None = response.get("ContentLength")
        self.body = response["Body"]
        kms = response.get("ServerSideEncryption") == "aws:kms" or "SSECustomerAlgorithm" in response
        self.expected_md5 = etag_md5(response.get("ETag"), kms)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(_CHUNK)
        except botocore.exceptions.FlexibleChecksumError as exc:
            raise ChecksumError(
                f"{self.where}: the bytes do not match S3's stored checksum; the download is corrupt"
            ) from exc
        except botocore.exceptions.ReadTimeoutError as exc:
            raise SourceTimeoutError(
                f"{self.where}: no data for {self.timeout:g} s; try again or raise LAMBDALITE_SOURCE_TIMEOUT"
            ) from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise SourceError(f"{self.where}: the download broke off: {exc}") from exc

    def verify(self, digests: Digests) -> None:
        if self.expected_md5 is not None and digests.md5 != self.expected_md5:
            raise ChecksumError(
                f"{self.where}: MD5 {digests.md5} does not match the ETag {self.expected_md5}; the download is corrupt"
            )

    def close(self) -> None:
        self.body.close()


def _client(timeout: float) -> Any:
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "max_attempts": 3},
        user_agent_extra="lambdalite",
    )
    # boto3 reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself (botocore >= 1.31).
    return boto3.session.Session().client("s3", config=config)


def open_object(url: str, timeout: float) -> S3Stream:
    """Open an S3 object for a streaming GET (`timeout`: seconds to connect, and between reads);
    every failure is a one-line `SourceError`."""
    where = parse(url)
    client = _client(timeout)
    kwargs: dict[str, Any] = {"Bucket": where.bucket, "Key": where.key, "ChecksumMode": "ENABLED"}
    if where.version_id:
        kwargs["VersionId"] = where.version_id
    try:
        response = client.get_object(**kwargs)
    except botocore.exceptions.ClientError as exc:
        raise _client_error(where, exc) from None
    except botocore.exceptions.NoCredentialsError:
        raise SourceError(
            f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE "
            f"(inside Lambda the execution role provides them)"
        ) from None
    except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError) as exc:
        raise SourceTimeoutError(
            f"{where}: no answer from {client.meta.endpoint_url} within {timeout:g} s; "
            f"raise LAMBDALITE_SOURCE_TIMEOUT if it is slow"
        ) from exc
    except botocore.exceptions.EndpointConnectionError as exc:
        raise SourceError(
            f"{where}: cannot connect to {client.meta.endpoint_url} (connection refused or unreachable); "
            f"check AWS_ENDPOINT_URL_S3 and the network"
        ) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise SourceError(f"{where}: {exc}") from exc
    return S3Stream(where, response, timeout)


def _client_error(where: S3Location, exc: botocore.exceptions.ClientError) -> SourceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return SourceError(f"{where}: the bucket {where.bucket} does not exist (404 NoSuchBucket)")
    if code in _MISSING or status == 404:
        return SourceError(f"{where} does not exist (404 {code or 'NotFound'}); check MODEL_BUCKET/MODEL_KEY")
    if code in _BAD_CREDENTIALS:
        return SourceError(f"{where}: the AWS credentials were rejected ({status} {code})")
    if code in _DENIED or status == 403:
        # S3 quirk: without s3:ListBucket a missing key is reported as 403, not 404.
        return SourceError(
            f"{where}: access denied (403 {code or 'Forbidden'}); the function's role needs s3:GetObject on "
            f"arn:aws:s3:::{where.bucket}/{where.key} (and s3:ListBucket to tell a missing key from a denied one)"
        )
    return SourceError(f"{where}: S3 answered {status} {code}: {error.get('Message', '')}".rstrip(": "))
