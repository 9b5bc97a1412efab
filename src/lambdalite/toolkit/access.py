"""Who may call a function's front door, how often, and what abuse would cost: one vocabulary.

`lambdalite build`/`deploy` write these rules into the template (API Gateway and Lambda enforce
them) and `lambdalite serve` enforces the same rules locally (`toolkit/local/guard.py`), so a
client that works against one works against the other.

    Auth: none | api-key (REST API + usage plan) | iam (SigV4) | jwt (HTTP API JWT authorizer)
    Throttle.parse("10,20")        # 10 requests/s steady, bursts of 20
    Quota.parse("10000/day")       # per API key (usage plan)
    monthly_worst_case(...)        # the most a month of callers can spend, at these limits

Prices are us-east-1's list prices before the free tier: HTTP API $1.00 and REST API $3.50 per
million requests (first tier), Lambda $0.20 per million plus its GB-seconds (`protocol.py`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from lambdalite.errors import UsageError

__all__ = [
    "API_PRICE_PER_MILLION",
    "AUTHS",
    "DEFAULT_AUTH",
    "DEFAULT_QUOTA",
    "DEFAULT_THROTTLE",
    "PUBLIC_WITH_API_KEY",
    "Auth",
    "Quota",
    "Spend",
    "Throttle",
    "describe_auth",
    "monthly_worst_case",
]

Auth = Literal["none", "api-key", "iam", "jwt"]
AUTHS: tuple[Auth, ...] = get_args(Auth)
# The safe default: a key that only its owner has, with a throttle and a daily quota, so the
# most anyone can spend is known in advance; the page still works (it asks for the key).
DEFAULT_AUTH: Auth = "api-key"
QuotaPeriod = Literal["DAY", "WEEK", "MONTH"]
_PERIOD_DAYS = {"DAY": 1, "WEEK": 7, "MONTH": 30}
MONTH_S = 30 * 86400

# With api-key, the page itself (GET /) is open: a browser cannot send x-api-key when it opens a
# URL. Everything else (predict, OpenAPI, OIP) needs the key. The template and `serve` share this.
PUBLIC_WITH_API_KEY: tuple[tuple[str, str], ...] = (("GET", "/"),)

API_PRICE_PER_MILLION = {"http": 1.00, "rest": 3.50, "none": 0.0}  # USD, us-east-1, first tier
_LAMBDA_PER_MILLION = 0.20
_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}


@dataclass(frozen=True, slots=True)
class Throttle:
    """A token bucket: `rate` requests per second refill it, `burst` is its size."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)) or self.burst < 1:
            raise UsageError(f"a throttle needs a rate above 0 and a burst of 1 or more, not {self.rate},{self.burst}")

    @classmethod
    def parse(cls, text: str) -> Throttle:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*,\s*(\d+)\s*", text)
        if m is None:
            raise UsageError(f"--throttle takes RATE,BURST (requests per second, burst size), e.g. 10,20; not {text!r}")
        return cls(float(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.rate:g} requests/s, bursts of {self.burst}"

    def spec(self) -> str:
        return f"{self.rate:g},{self.burst}"


@dataclass(frozen=True, slots=True)
class Quota:
    """At most `limit` requests per `period` (per API key)."""

    limit: int
    period: QuotaPeriod

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period not in _PERIOD_DAYS:
            raise UsageError(
                f"a quota needs a limit of 1 or more per day, week or month, not {self.limit}/{self.period}"
            )

    @classmethod
    def parse(cls, text: str) -> Quota:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(day|week|month)\s*", text.lower())
        if m is None:
            raise UsageError(f"--quota takes N/day, N/week or N/month, e.g. 10000/day; not {text!r}")
        return cls(int(m[1]), m[2].upper())  # type: ignore[arg-type]

    @property
    def seconds(self) -> int:
        return _PERIOD_DAYS[self.period] * 86400

    def __str__(self) -> str:
        return f"{self.limit:,} requests/{self.period.lower()}"

    def spec(self) -> str:
        return f"{self.limit}/{self.period.lower()}"


DEFAULT_THROTTLE = Throttle(10.0, 20)
DEFAULT_QUOTA = Quota(10_000, "DAY")


class Spend(NamedTuple):
    """The most a month of callers can cost, at the limits in force."""

    requests: int
    usd: float
    bound: str  # what caps it: "the quota", "the throttle", "the reserved concurrency"


def monthly_worst_case(
    *,
    api: str,
    memory_mb: int,
    arch: str,
    throttle: Throttle | None,
    quota: Quota | None,
    reserved_concurrency: int | None,
    seconds_per_request: float = 1.0,
) -> Spend | None:
    """Requests and dollars in 30 days if callers use every request the limits allow (each one
    running `seconds_per_request`); None when nothing bounds it."""
    caps: list[tuple[float, str]] = []
    if throttle is not None:
        caps.append((throttle.rate * MONTH_S, "the throttle"))
    if quota is not None:
        caps.append((quota.limit * MONTH_S / quota.seconds, "the quota"))
    if reserved_concurrency is not None:
        caps.append((reserved_concurrency * MONTH_S / seconds_per_request, "the reserved concurrency"))
    if not caps:
        return None
    requests, bound = min(caps)
    per_request = (API_PRICE_PER_MILLION.get(api, 0.0) + _LAMBDA_PER_MILLION) / 1e6
    per_request += memory_mb / 1024 * seconds_per_request * _GB_SECOND.get(arch, _GB_SECOND["x86_64"])
    return Spend(int(requests), requests * per_request, bound)


def describe_auth(auth: Auth, api: str) -> str:
    """One phrase for the plan and the report: who may call."""
    if auth == "api-key":
        return "API key required (x-api-key), usage plan"
    if auth == "iam":
        return "AWS IAM: SigV4-signed requests from principals allowed execute-api:Invoke"
    if auth == "jwt":
        return "JWT authorizer: Authorization: Bearer <token> from the issuer, for the audience"
    return "none: public, anyone with the URL" if api != "none" else "none"
