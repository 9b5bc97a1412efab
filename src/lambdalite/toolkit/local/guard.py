"""The front door's locks, locally: what API Gateway checks before a request reaches the function.

`lambdalite serve --auth ...` wraps its API Gateway emulation (`gateway.FrontDoor`) in a `Guard`
and, with `--invoke-auth iam`, checks the Invoke API's signatures with `InvokeAuth`, so a client
that is let in (or refused) here is let in (or refused) the same way when deployed:

* `api-key` (REST API): `x-api-key` must be the key, else 403 `{"message":"Forbidden"}`
  (`ForbiddenException`); the page (GET /, `access.PUBLIC_WITH_API_KEY`) opens without it. The
  key's usage plan: past the throttle 429 `{"message":"Too Many Requests"}`, past the quota 429
  `{"message":"Limit Exceeded"}`.
* `iam`: a SigV4 signature for `execute-api` with the configured credentials (`sigv4.py`), else
  403 with API Gateway's message ("Missing Authentication Token", "The security token included
  in the request is invalid.", the signature mismatch with its canonical request, "Signature
  expired: ...").
* `jwt` (HTTP API): a token from the issuer for the audience, verified against the JWKS
  (`tokens.py`), else 401 `{"message":"Unauthorized"}` with `www-authenticate`.
* every kind: the stage throttle, 429 `{"message":"Too Many Requests"}` past it.

The Invoke API (`InvokeAuth`): a SigV4 signature for `lambda`, else 403 with Lambda's error
types (`InvalidSignatureException`, `UnrecognizedClientException`,
`MissingAuthenticationTokenException`, `IncompleteSignatureException`), which boto3 raises.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from lambdalite.toolkit.access import PUBLIC_WITH_API_KEY, Auth, Quota, Throttle
from lambdalite.toolkit.local.messages import Reply, Request
from lambdalite.toolkit.local.sigv4 import Credentials, SigV4Refusal, verify
from lambdalite.toolkit.local.tokens import JwtAuthorizer, JwtRefusal
from lambdalite.toolkit.local.usage import QuotaCounter, TokenBucket

__all__ = ["Guard", "InvokeAuth", "Rules", "load_credentials"]

Answer = tuple[int, Sequence[tuple[str, str]], bytes]
Inner = Callable[[str, str, str, Mapping[str, str], bytes], Awaitable[Answer]]


@dataclass(frozen=True)
class Rules:
    """What the front door demands (the same choices `lambdalite build` writes into the template)."""

    auth: Auth = "none"
    api: Literal["http", "rest"] = "http"
    api_key: str | None = None
    throttle: Throttle | None = None
    quota: Quota | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    region: str = "us-east-1"
    jwt: JwtAuthorizer | None = None


def load_credentials(profile: str | None = None) -> tuple[dict[str, Credentials], str]:
    """The caller's configured AWS credentials (environment, profile...) and region, as boto3 finds them."""
    import botocore.session

    from lambdalite.errors import UsageError

    session = botocore.session.Session(profile=profile)
    found = session.get_credentials()
    if found is None:
        raise UsageError(
            "--auth iam / --invoke-auth iam check signatures against your AWS credentials, and none are "
            "configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    frozen = found.get_frozen_credentials()
    region = session.get_config_variable("region") or "us-east-1"
    return {frozen.access_key: Credentials(frozen.access_key, frozen.secret_key, frozen.token)}, region


def _json(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


class Guard:
    """Checks a request against `rules`, then hands it to `inner` (the API Gateway emulation)."""

    def __init__(
        self,
        rules: Rules,
        inner: Inner,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.inner = inner
        self.clock = clock
        self.bucket = TokenBucket(rules.throttle, monotonic) if rules.throttle else None
        self.quota = QuotaCounter(rules.quota, clock) if rules.quota and rules.auth == "api-key" else None
        self.refused = 0

    async def __call__(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer:
        refusal = self.check(method, path, query, headers, body)
        if refusal is not None:
            self.refused += 1
            return refusal
        return await self.inner(method, path, query, headers, body)

    def _answer(self, status: int, error_type: str, message: str, extra: Sequence[tuple[str, str]] = ()) -> Answer:
        request_id = str(uuid.uuid4())
        headers = [("Content-Type", "application/json"), *extra]
        if self.rules.api == "rest":
            headers += [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", error_type)]
        else:
            headers.append(("apigw-requestid", request_id))
        return status, headers, _json(message)

    def check(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        """None to let the request in, or API Gateway's answer."""
        rules = self.rules
        public = rules.auth == "api-key" and (method, path) in PUBLIC_WITH_API_KEY
        if rules.auth == "iam":
            try:
                verify(
                    method,
                    path,
                    query,
                    headers,
                    body,
                    rules.credentials,
                    region=rules.region,
                    service="execute-api",
                    now=datetime.fromtimestamp(self.clock(), UTC),
                )
            except SigV4Refusal as refusal:
                return self._answer(403, refusal.error_type, refusal.message)
        elif rules.auth == "jwt":
            assert rules.jwt is not None
            try:
                rules.jwt.check(headers.get("authorization"), now=self.clock())
            except JwtRefusal as refusal:
                extra = []
                if refusal.description is not None:
                    extra.append(
                        (
                            "www-authenticate",
                            f'Bearer scope="" error="invalid_token" error_description="{refusal.description}"',
                        )
                    )
                return self._answer(401, "UnauthorizedException", "Unauthorized", extra)
        elif rules.auth == "api-key" and not public and headers.get("x-api-key") != rules.api_key:
            return self._answer(403, "ForbiddenException", "Forbidden")
        if self.bucket is not None and not self.bucket.take():
            return self._answer(429, "TooManyRequestsException", "Too Many Requests")
        if self.quota is not None and not public and not self.quota.take():
            return self._answer(429, "LimitExceededException", "Limit Exceeded")
        return None


class InvokeAuth:
    """SigV4 on the Invoke API, as Lambda checks it: None lets the request in, else Lambda's 403."""

    def __init__(
        self, credentials: Mapping[str, Credentials], region: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.clock = clock

    def __call__(self, request: Request) -> Reply | None:
        try:
            verify(
                request.method,
                request.path,
                request.query,
                request.headers,
                request.body,
                self.credentials,
                region=self.region,
                service="lambda",
                now=datetime.fromtimestamp(self.clock(), UTC),
                details=False,
            )
        except SigV4Refusal as refusal:
            headers = [
                ("Content-Type", "application/json"),
                ("x-amzn-RequestId", str(uuid.uuid4())),
                ("x-amzn-ErrorType", refusal.error_type),
            ]
            return Reply(403, headers, _json(refusal.message))
        return None
