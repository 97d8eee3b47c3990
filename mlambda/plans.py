"""Usage plans: a rate (token bucket refill), a burst (bucket size), an optional quota per
UTC day or month, and a weight for fair sharing. Pure values and calendar arithmetic;
the per-key counting lives in `mlambda/gateway/throttle.py`.

Text forms (the CLI's): rate `100/s`, `6000/min`, `36000/h`; quota `100000/day`,
`2000000/month`.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from mlambda.errors import InvalidParameter

PERIODS = ("day", "month")
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hour": 3600.0}
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Plan:
    name: str
    rate: float  # requests per second: the bucket's refill
    burst: int  # the bucket's size: requests allowed at once after a quiet spell
    quota: int | None = None  # requests per period, or no quota
    period: str | None = None  # "day" | "month" (UTC), with a quota
    weight: int = 1  # share of a contended queue, relative to other keys

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise InvalidParameter(
                f"plan name {self.name!r}: expected 1-64 letters, digits, '_', '-' or '.'")
        if not self.rate > 0:
            raise InvalidParameter(f"rate {self.rate}: expected a number of requests/s > 0")
        if self.burst < 1:
            raise InvalidParameter(f"burst {self.burst}: expected an integer >= 1")
        if (self.quota is None) != (self.period is None):
            raise InvalidParameter("quota and period: give both or neither")
        if self.quota is not None and self.quota < 1:
            raise InvalidParameter(f"quota {self.quota}: expected an integer >= 1")
        if self.period is not None and self.period not in PERIODS:
            raise InvalidParameter(f"period {self.period!r}: expected day or month")
        if self.weight < 1:
            raise InvalidParameter(f"weight {self.weight}: expected an integer >= 1")


def parse_rate(text: str) -> float:
    """`100/s` -> 100.0 requests per second; `6000/min` -> 100.0."""
    count, _, unit = text.strip().partition("/")
    try:
        value = float(count)
        per = _RATE_UNITS[unit.strip() or "s"]
    except (ValueError, KeyError):
        raise InvalidParameter(
            f"rate {text!r}: expected N/s, N/min or N/h, e.g. 100/s") from None
    if not value > 0:
        raise InvalidParameter(f"rate {text!r}: must be more than 0")
    return value / per


def parse_quota(text: str) -> tuple[int, str]:
    """`100000/day` -> (100000, "day")."""
    count, _, period = text.strip().partition("/")
    period = period.strip()
    if not count.strip().isdigit() or period not in PERIODS:
        raise InvalidParameter(f"quota {text!r}: expected N/day or N/month, e.g. 100000/day")
    return int(count), period


def day(now: float) -> tuple[str, float]:
    """The UTC day of `now` as `YYYY-MM-DD`, and the time it ends."""
    t = time.gmtime(now)
    start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", float(start + 86400)


def period_days(now: float, period: str) -> tuple[list[str], float]:
    """The UTC days of the period (`day` or `month`) that contains `now`, up to and
    including today, and the time the period ends."""
    t = time.gmtime(now)
    today, day_end = day(now)
    if period == "day":
        return [today], day_end
    year, month = t.tm_year, t.tm_mon
    days = [f"{year:04d}-{month:02d}-{d:02d}" for d in range(1, t.tm_mday + 1)]
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    return days, float(calendar.timegm((next_year, next_month, 1, 0, 0, 0)))
