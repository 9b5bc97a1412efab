"""API Gateway's request limits, locally: a token bucket (throttle) and a quota per period.

    bucket = TokenBucket(Throttle(10, 20), clock=time.monotonic)
    bucket.take()        # False: 429 {"message":"Too Many Requests"}
    quota = QuotaCounter(Quota(1000, "DAY"), clock=time.time)
    quota.take()         # False: 429 {"message":"Limit Exceeded"}

The bucket starts full (`burst` requests at once) and refills at `rate` per second, as API
Gateway's throttles do (stage, route or method, and a usage plan's per-key throttle). A quota
counts requests in calendar periods that start at 00:00 UTC (a week on Monday, a month on its
first day), as a usage plan's does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from lambdalite.toolkit.access import Quota, Throttle

__all__ = ["QuotaCounter", "TokenBucket"]


class TokenBucket:
    def __init__(self, throttle: Throttle, clock: Callable[[], float]) -> None:
        self.throttle = throttle
        self.clock = clock
        self.tokens = float(throttle.burst)
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.throttle.burst), self.tokens + (now - self.last) * self.throttle.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _period_start(period: str, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "WEEK":
        return day - timedelta(days=day.weekday())
    if period == "MONTH":
        return day.replace(day=1)
    return day


class QuotaCounter:
    def __init__(self, quota: Quota, clock: Callable[[], float]) -> None:
        self.quota = quota
        self.clock = clock
        self.period: datetime | None = None
        self.used = 0

    def take(self) -> bool:
        start = _period_start(self.quota.period, datetime.fromtimestamp(self.clock(), UTC))
        if start != self.period:
            self.period, self.used = start, 0
        if self.used >= self.quota.limit:
            return False
        self.used += 1
        return True

    @property
    def remaining(self) -> int:
        return max(0, self.quota.limit - self.used)
