"""Verify AWS Signature Version 4 on a request as it arrived, the way API Gateway (AWS_IAM) and Lambda do.

Pure: the request's method, raw path and query (as on the wire), lower-case headers and body,
the credentials to accept, the region and service, and the time.

    credentials = {"AKIDEXAMPLE": Credentials("AKIDEXAMPLE", "secret")}
    access_key = verify(method, path, query, headers, body, credentials, region="us-east-1",
                        service="execute-api", now=datetime.now(UTC))     # or raises SigV4Refusal

The canonical request follows the SigV4 specification for services other than S3: the path is
normalized (dot and empty segments removed) and URI-encoded again (`%3A` is signed as `%253A`),
query pairs are encoded and sorted, header values trimmed with inner spaces collapsed, and the
payload hash is the SHA-256 of the body as received (a changed body no longer matches). The
request time must be within 5 minutes of `now`.

Refusals carry AWS's messages (403 on both services), with the error type the service puts in
`x-amzn-ErrorType`: `MissingAuthenticationTokenException` (unsigned), `IncompleteSignatureException`
(a malformed Authorization header), `UnrecognizedClientException` (an access key or session token
it does not know: "The security token included in the request is invalid."),
`InvalidSignatureException` (a signature mismatch, which API Gateway follows with the canonical
request and string to sign it expected, or a time outside the window: "Signature expired: ...
is now earlier than ... (... - 5 min.)").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote, unquote

__all__ = ["ALGORITHM", "Credentials", "SigV4Refusal", "canonical_path", "verify"]

ALGORITHM = "AWS4-HMAC-SHA256"
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_WINDOW = timedelta(minutes=5)
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


class SigV4Refusal(Exception):
    """Why a request is refused: `error_type` is the x-amzn-ErrorType, `message` AWS's text."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _incomplete(message: str) -> SigV4Refusal:
    return SigV4Refusal("IncompleteSignatureException", message)


def canonical_path(raw_path: str) -> str:
    """The path as SigV4 signs it for every service but S3: dot and empty segments removed, encoded again."""
    segments: list[str] = []
    for part in raw_path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
        else:
            segments.append(part)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and segments:
        path += "/"
    return quote(path, safe="/~")


def _canonical_query(raw_query: str) -> str:
    pairs = []
    for pair in raw_query.split("&") if raw_query else []:
        key, _, value = pair.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    """(credential, signed headers, signature) from `AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        raise _incomplete(f"Authorization header requires 'Credential' parameter. Authorization={value}")
    params: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, text = item.strip().partition("=")
        if not sep:
            raise _incomplete(
                f"'{item.strip()}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
            )
        params[name] = text
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not params.get(name)]
    if missing:
        raise _incomplete(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={value}"
        )
    return params["Credential"], params["SignedHeaders"].split(";"), params["Signature"]


def _key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, Credentials],
    *,
    region: str,
    service: str,
    now: datetime,
    details: bool = True,
) -> str:
    """The access key that signed this request, or `SigV4Refusal`. `now` is timezone-aware UTC;
    `details` adds the expected canonical request and string to sign to a mismatch (API Gateway)."""
    authorization = headers.get("authorization")
    if not authorization:
        raise SigV4Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    credential, signed_headers, signature = _parse_authorization(authorization)
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise _incomplete(
            f"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
            f"Authorization={authorization}"
        )
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _incomplete(
            f"Credential should be scoped to a valid region, not a malformed scope. Authorization={authorization}"
        )
    access_key, date, scope_region, scope_service, _ = scope
    known = credentials.get(access_key)
    if known is None or (headers.get("x-amz-security-token") or None) != known.token:
        raise SigV4Refusal("UnrecognizedClientException", INVALID_TOKEN)
    try:
        when = datetime.strptime(amz_date, _TIME_FORMAT).replace(tzinfo=now.tzinfo)
    except ValueError:
        raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.") from None
    stamp = now.strftime(_TIME_FORMAT)
    if when < now - _WINDOW:
        raise SigV4Refusal(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {(now - _WINDOW).strftime(_TIME_FORMAT)} "
            f"({stamp} - 5 min.)",
        )
    if when > now + _WINDOW:
        raise SigV4Refusal(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {(now + _WINDOW).strftime(_TIME_FORMAT)} "
            f"({stamp} + 5 min.)",
        )
    if date != amz_date[:8]:
        raise SigV4Refusal(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if scope_region != region:
        raise SigV4Refusal(
            "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{scope_region}'. "
        )
    if scope_service != service:
        raise SigV4Refusal(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'. "
        )
    lines = []
    for name in signed_headers:
        value = headers.get(name)
        if value is None:
            raise SigV4Refusal("InvalidSignatureException", MISMATCH)
        lines.append(f"{name}:{' '.join(value.split())}")
    content = headers.get("x-amz-content-sha256")
    payload = content if content == "UNSIGNED-PAYLOAD" else hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            method.upper(),
            canonical_path(path),
            _canonical_query(query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload,
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, "/".join(scope[1:]), hashlib.sha256(canonical.encode()).hexdigest()]
    )
    expected = hmac.new(_key(known.secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
        message = MISMATCH
        if details:
            message += (
                f"\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{string_to_sign}'\n"
            )
        raise SigV4Refusal("InvalidSignatureException", message)
    return access_key
