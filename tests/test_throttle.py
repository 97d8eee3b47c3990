"""The meter: token bucket, quotas per UTC day and month, RateLimit-* headers, counts."""

from __future__ import annotations

import calendar

import pytest

from mlambda.errors import InvalidParameter, LimitExceeded, TooManyRequests
from mlambda.gateway.throttle import Meter
from mlambda.keys import ApiKey
from mlambda.plans import Plan, parse_quota, parse_rate, period_days

T0 = float(calendar.timegm((2026, 11, 29, 12, 0, 0)))  # noon UTC


def key(plan: Plan | None, key_id: str = "k_1") -> ApiKey:
    return ApiKey(key_id, "app", "invoke", "h" * 64, plan=plan)


def limits(headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in headers}


def test_bucket_allows_the_burst_then_the_rate() -> None:
    meter, k = Meter(), key(Plan("p", rate=10, burst=5))
    for i in range(5):
        got = limits(meter.admit(k, T0))
        assert got == {"ratelimit-limit": 5, "ratelimit-remaining": 4 - i, "ratelimit-reset": 1}
    with pytest.raises(TooManyRequests) as refused:
        meter.admit(k, T0)
    assert refused.value.reason == "CallerRateLimitExceeded"
    assert dict(refused.value.headers())[b"retry-after"] == b"1"
    meter.admit(k, T0 + 0.11)  # 10/s: one token back after 0.1 s
    with pytest.raises(TooManyRequests):
        meter.admit(k, T0 + 0.15)
    assert limits(meter.admit(k, T0 + 10))["ratelimit-remaining"] == 4  # refilled, capped


def test_slow_rate_gives_a_longer_retry_after() -> None:
    meter, k = Meter(), key(Plan("p", rate=0.25, burst=1))
    meter.admit(k, T0)
    with pytest.raises(TooManyRequests) as refused:
        meter.admit(k, T0 + 1)
    assert refused.value.retry_after == pytest.approx(3.0)
    assert (b"retry-after", b"3") in refused.value.headers()


def test_daily_quota_refuses_until_the_next_utc_day() -> None:
    meter, k = Meter(), key(Plan("p", rate=1000, burst=1000, quota=3, period="day"))
    assert limits(meter.admit(k, T0)) == {"ratelimit-limit": 3, "ratelimit-remaining": 2,
                                          "ratelimit-reset": 12 * 3600}
    meter.admit(k, T0 + 1)
    meter.admit(k, T0 + 2)
    with pytest.raises(LimitExceeded) as refused:
        meter.admit(k, T0 + 3)
    assert refused.value.error_type == "LimitExceededException" and refused.value.status == 429
    assert refused.value.retry_after == pytest.approx(12 * 3600 - 3)
    meter.admit(k, T0 + 12 * 3600)  # midnight UTC: a new day, a new quota
    assert meter.pending == {("k_1", "2026-11-29"): [3, 1], ("k_1", "2026-11-30"): [1, 0]}


def test_monthly_quota_counts_every_day_of_the_month_persisted_or_not() -> None:
    persisted = {("k_1", "2026-11-01"): 4, ("k_1", "2026-11-28"): 3,
                 ("k_1", "2026-10-31"): 50, ("k_2", "2026-11-29"): 50}
    meter, k = Meter(persisted), key(Plan("p", rate=1000, burst=1000, quota=10, period="month"))
    meter.admit(k, T0)
    meter.admit(k, T0)
    assert limits(meter.admit(k, T0))["ratelimit-remaining"] == 0  # 4 + 3 + 3 of 10
    with pytest.raises(LimitExceeded):
        meter.admit(k, T0)
    december = float(calendar.timegm((2026, 12, 1, 0, 0, 0)))
    assert limits(meter.admit(k, december))["ratelimit-remaining"] == 9


def test_a_restart_keeps_the_quota_through_drain_and_persisted_counts() -> None:
    plan = Plan("p", rate=1000, burst=1000, quota=5, period="day")
    first = Meter()
    for _ in range(4):
        first.admit(key(plan), T0)
    usage = first.drain()
    assert usage.counts == {("k_1", "2026-11-29"): [4, 0]} and first.pending == {}
    again = Meter({k: n for k, (n, _) in usage.counts.items()})  # as the server reloads them
    again.admit(key(plan), T0 + 5)
    with pytest.raises(LimitExceeded):
        again.admit(key(plan), T0 + 6)


def test_requeued_counts_are_drained_again() -> None:
    meter, k = Meter(), key(None)
    meter.admit(k, T0)
    meter.last_used["k_1"] = T0
    usage = meter.drain()
    meter.admit(k, T0 + 1)
    meter.requeue(usage)  # the write failed
    assert meter.drain().counts == {("k_1", "2026-11-29"): [2, 0]}
    assert meter.count("k_1", "2026-11-29") == 2


def test_a_new_plan_applies_at_once_and_keeps_the_counts() -> None:
    meter = Meter()
    meter.admit(key(Plan("small", rate=1, burst=2, quota=100, period="day")), T0)
    bigger = Plan("big", rate=1, burst=50, quota=1, period="day")
    with pytest.raises(LimitExceeded):  # the one request already made counts
        meter.admit(key(bigger), T0)
    no_plan = key(None)
    assert meter.admit(no_plan, T0) == ()  # no plan: counted, never refused, no headers
    assert meter.count("k_1", "2026-11-29") == 2


def test_quota_headers_when_the_quota_is_nearer_than_the_bucket() -> None:
    meter, k = Meter(), key(Plan("p", rate=1, burst=10, quota=1000, period="day"))
    assert limits(meter.admit(k, T0))["ratelimit-limit"] == 10
    meter.persisted[("k_1", "2026-11-29")] = 995
    k2 = key(Plan("p", rate=1, burst=10, quota=1000, period="day"))  # a reload restates
    assert limits(meter.admit(k2, T0)) == {"ratelimit-limit": 1000, "ratelimit-remaining": 3,
                                           "ratelimit-reset": 12 * 3600}


def test_plan_text_and_validation() -> None:
    assert parse_rate("100/s") == 100 and parse_rate("600/min") == 10
    assert parse_rate("7200/h") == 2
    assert parse_quota("100000/day") == (100000, "day")
    assert parse_quota("5/month") == (5, "month")
    for bad in ("fast", "0/s", "10/fortnight"):
        with pytest.raises(InvalidParameter, match="rate"):
            parse_rate(bad)
    with pytest.raises(InvalidParameter, match="quota"):
        parse_quota("100/week")
    with pytest.raises(InvalidParameter, match="burst"):
        Plan("p", rate=1, burst=0)
    with pytest.raises(InvalidParameter, match="quota and period"):
        Plan("p", rate=1, burst=1, quota=5)
    with pytest.raises(InvalidParameter, match="plan name"):
        Plan("../x", rate=1, burst=1)


def test_periods_are_utc_days_and_months() -> None:
    days, end = period_days(T0, "month")
    assert days[0] == "2026-11-01" and days[-1] == "2026-11-29" and len(days) == 29
    assert end == calendar.timegm((2026, 12, 1, 0, 0, 0))
    dec31 = float(calendar.timegm((2026, 12, 31, 23, 59, 59)))
    assert period_days(dec31, "month")[1] == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert period_days(dec31, "day") == (["2026-12-31"], dec31 + 1)
