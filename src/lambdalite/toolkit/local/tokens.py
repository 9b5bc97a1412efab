"""An HTTP API JWT authorizer, locally: verify a bearer token against a JWKS (a file or a URL).

    authorizer = JwtAuthorizer("https://issuer.example", ("my-client",), JwksSource("jwks.json"))
    claims = authorizer.check(headers.get("authorization"), now=time.time())   # or raises JwtRefusal

As API Gateway does (identity source `$request.header.Authorization`): the header may carry the
token alone or after `Bearer `; the signature must verify with the JWKS key its `kid` names
(RS256/384/512, ES256/384/512, PS256/384/512); `exp` must be in the future and `nbf`/`iat` not
in the future; `iss` must be the issuer; `aud` (or `client_id` when there is no `aud`) must be
one of the audiences. A refusal is 401 `{"message":"Unauthorized"}` with a `www-authenticate:
Bearer scope="" error="invalid_token" error_description="..."` header when a token was given
(only "the token does not have a valid audience" is quoted in AWS's troubleshooting page; the
other descriptions follow its wording). A JWKS URL is fetched once and again, at most once a
minute, when a token names a key it does not hold.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdalite.errors import UsageError

__all__ = ["ALGORITHMS", "JwksSource", "JwtAuthorizer", "JwtRefusal"]

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
_REFETCH_S = 60.0
_FETCH_TIMEOUT_S = 5.0
_MAX_JWKS_BYTES = 1 << 20


class JwtRefusal(Exception):
    """A 401: `description` is the www-authenticate error_description (None: no token at all)."""

    def __init__(self, description: str | None) -> None:
        super().__init__(description or "no token")
        self.description = description


class JwksSource:
    """The authorizer's keys: a JWKS file read once, or a URL fetched when needed."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.remote = where.startswith(("https://", "http://"))
        self._keys: Any = None
        self._fetched = 0.0
        self._lock = threading.Lock()
        if not self.remote:
            self._keys = self._parse(self._read_file())

    def _read_file(self) -> bytes:
        try:
            return Path(self.where).read_bytes()[:_MAX_JWKS_BYTES]
        except OSError as exc:
            raise UsageError(f"cannot read the JWKS file {self.where}: {exc.strerror}") from exc

    def _parse(self, data: bytes) -> Any:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        try:
            return KeySet.import_key_set(json.loads(data))
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise UsageError(f'{self.where} is not a JWKS ({{"keys": [...]}}): {exc}') from exc

    def keys(self, *, refresh: bool = False) -> Any:
        if not self.remote:
            return self._keys
        with self._lock:
            due = self._keys is None or (refresh and time.monotonic() - self._fetched > _REFETCH_S)
            if due:
                with urllib.request.urlopen(self.where, timeout=_FETCH_TIMEOUT_S) as response:
                    self._keys = self._parse(response.read(_MAX_JWKS_BYTES))
                self._fetched = time.monotonic()
            return self._keys


class JwtAuthorizer:
    def __init__(self, issuer: str, audiences: Sequence[str], jwks: JwksSource) -> None:
        self.issuer = issuer
        self.audiences = tuple(audiences)
        self.jwks = jwks

    def check(self, authorization: str | None, *, now: float) -> dict[str, Any]:
        """The token's claims, or `JwtRefusal`."""
        from joserfc import jwt
        from joserfc.errors import BadSignatureError, JoseError

        if not authorization or not authorization.strip():
            raise JwtRefusal(None)
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            try:
                decoded = jwt.decode(token, self.jwks.keys(), algorithms=ALGORITHMS)
            except (JoseError, ValueError) as first:
                if isinstance(first, BadSignatureError) or not self.jwks.remote:
                    raise
                decoded = jwt.decode(token, self.jwks.keys(refresh=True), algorithms=ALGORITHMS)
        except BadSignatureError:
            raise JwtRefusal("signature is invalid") from None
        except OSError:
            raise JwtRefusal("the signing keys could not be read") from None
        except (JoseError, ValueError):
            raise JwtRefusal("the token is malformed or no key of the issuer matches it") from None
        claims: dict[str, Any] = decoded.claims
        self._check_claims(claims, now)
        return claims

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise JwtRefusal("the token does not have a valid expiry (exp)")
        if exp <= now:
            raise JwtRefusal("the token has expired")
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > now:
                raise JwtRefusal(f"the token is not valid yet ({name} is in the future)")
        if claims.get("iss") != self.issuer:
            raise JwtRefusal("the token does not have a valid issuer")
        aud = claims.get("aud", claims.get("client_id"))
        given = [aud] if isinstance(aud, str) else (aud if isinstance(aud, list) else [])
        if not any(a in self.audiences for a in given):
            raise JwtRefusal("the token does not have a valid audience")
