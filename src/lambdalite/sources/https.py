"""`https://` (and `http://`) model sources, with the standard library only.

It runs inside functions, so it uses urllib: nothing to install, nothing heavy to import.
Redirects are followed (S3 presigned URLs, release assets); TLS is verified against the system
trust store (`SSL_CERT_FILE` adds a private CA). When the server is S3 and the ETag is a plain
MD5 (a single-part, non-KMS upload), the bytes are checked against it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from urllib.parse import unquote, urlsplit

from lambdalite import __version__
from lambdalite.errors import SourceError, SourceTimeoutError
from lambdalite.sources.remote import Digests, display

__all__ = ["HttpStream", "etag_md5", "open_url"]

_CHUNK = 1 << 20


def etag_md5(etag: str | None, encrypted_with_kms: bool) -> str | None:
    """The MD5 an S3 ETag stands for, or None where it is not one (multipart, KMS, SSE-C)."""
    # S3 quirk: the ETag is the body's MD5 only for single-part uploads without SSE-KMS/SSE-C.
    if not etag or encrypted_with_kms:
        return None
    value = etag.strip().removeprefix("W/").strip('"').lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


class HttpStream:
    def __init__(self, url: str, response: http.client.HTTPResponse, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.response = response
        self.name = unquote(urlsplit(response.geturl() or url).path.rsplit("/", 1)[-1]) or "model"
        headers: Message = response.headers
        length = headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None
        from_s3 = headers.get("Server", "") == "AmazonS3" or "x-amz-request-id" in headers
        kms = headers.get("x-amz-server-side-encryption", "") == "aws:kms" or (
            "x-amz-server-side-encryption-customer-algorithm" in headers
        )
        self.expected_md5 = etag_md5(headers.get("ETag"), kms) if from_s3 else None

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.response.read(_CHUNK):
                yield chunk
        except TimeoutError as exc:
            raise SourceTimeoutError(
                f"{display(self.url)}: no data for {self.timeout:g} s; try again or raise LAMBDALITE_SOURCE_TIMEOUT"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"{display(self.url)}: the download broke off: {exc}") from exc

    def verify(self, digests: Digests) -> None:
        from lambdalite.errors import ChecksumError

        if self.expected_md5 is not None and digests.md5 != self.expected_md5:
            raise ChecksumError(
                f"{display(self.url)}: MD5 {digests.md5} does not match the ETag {self.expected_md5}; "
                f"the download is corrupt"
            )

    def close(self) -> None:
        self.response.close()


def open_url(url: str, timeout: float) -> HttpStream:
    """Open `url` for a streaming GET (`timeout`: seconds to connect, and between reads); every
    failure is a one-line `SourceError`."""
    shown = display(url)
    request = urllib.request.Request(
        url, headers={"User-Agent": f"lambdalite/{__version__}", "Accept-Encoding": "identity"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise SourceError(_status_message(shown, exc.code, exc.reason)) from None
    except urllib.error.URLError as exc:
        raise _connection_error(shown, exc.reason, timeout) from exc
    except TimeoutError as exc:
        raise SourceTimeoutError(
            f"{shown}: no answer within {timeout:g} s; check the URL or raise LAMBDALITE_SOURCE_TIMEOUT"
        ) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise SourceError(f"{shown}: cannot download: {exc}") from exc
    return HttpStream(url, response, timeout)


def _status_message(shown: str, status: int, reason: object) -> str:
    if status == 404:
        return f"{shown}: not found (HTTP 404); check the URL"
    if status in (401, 403):
        return f"{shown}: access denied (HTTP {status}); the object is private or a presigned URL has expired"
    return f"{shown}: the server answered HTTP {status} {reason}"


def _connection_error(shown: str, reason: object, timeout: float) -> SourceError:
    host = urlsplit(shown).netloc
    if isinstance(reason, TimeoutError):
        return SourceTimeoutError(
            f"{shown}: no connection within {timeout:g} s; raise LAMBDALITE_SOURCE_TIMEOUT if the host is slow"
        )
    if isinstance(reason, ConnectionRefusedError):
        return SourceError(f"{shown}: connection refused by {host}; is the server running?")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return SourceError(
            f"{shown}: the TLS certificate of {host} is not trusted ({reason.verify_message}); "
            f"set SSL_CERT_FILE to trust a private CA"
        )
    if isinstance(reason, socket.gaierror):
        return SourceError(f"{shown}: cannot resolve the host {urlsplit(shown).hostname}")
    return SourceError(f"{shown}: cannot connect: {reason}")
