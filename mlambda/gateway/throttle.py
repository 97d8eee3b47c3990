"""The meter on the request path: a token bucket and a quota counter per key, and the
usage counts per key per UTC day. All in memory and all O(1) per request; nothing here
does I/O. The platform drains the new counts to SQLite in the background (`drain`), and
seeds the meter at start with what is persisted, so a restart never resets a quota.

Single-threaded by design: it is only touched from the event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlambda.errors import LimitExceeded, TooManyRequests
from mlambda.keys import ApiKey
from mlambda.plans import Plan, day, period_days

Headers = tuple[tuple[bytes, bytes], ...]
NO_HEADERS: Headers = ()
DayKey = tuple[str, str]  # (key_id, "YYYY-MM-DD")


@dataclass(slots=True)
class KeyState:
    """One key's bucket and quota counter, for the plan it was computed under."""

    plan: Plan
    tokens: float
    stamp: float
    used: int  # admitted in the current quota period
    period_end: float


@dataclass(frozen=True)
class Usage:
    """Counts since the last drain: (key_id, day) -> [admitted, throttled]; last use."""

    counts: dict[DayKey, list[int]] = field(default_factory=dict)
    last_used: dict[str, float] = field(default_factory=dict)


class Meter:
    def __init__(self, persisted: dict[DayKey, int] | None = None) -> None:
        # admitted requests per key per day as persisted (this month's, at least)
        self.persisted: dict[DayKey, int] = dict(persisted or {})
        self.pending: dict[DayKey, list[int]] = {}
        self.last_used: dict[str, float] = {}  # key_id -> time of its last request
        self.states: dict[str, KeyState] = {}
        self.day = ""
        self.day_end = 0.0

    # -- the request path -----------------------------------------------------------

    def seen(self, key: ApiKey, now: float) -> None:
        """A request authenticated with `key` (any role): its last use."""
        self.last_used[key.key_id] = now

    def admit(self, key: ApiKey, now: float) -> Headers:
        """Count one request of `key` at `now`; raise TooManyRequests over the rate or
        LimitExceeded over the quota. Returns the RateLimit-* headers (none without a plan)."""
        if now >= self.day_end:
            self.day, self.day_end = day(now)
        slot = self.pending.get((key.key_id, self.day))
        if slot is None:
            slot = self.pending[(key.key_id, self.day)] = [0, 0]
        plan = key.plan
        if plan is None:
            slot[0] += 1
            return NO_HEADERS
        state = self.states.get(key.key_id)
        if state is None or state.plan is not plan or now >= state.period_end:
            state = self.restate(key, plan, now, state)
        if plan.quota is not None and state.used >= plan.quota:
            slot[1] += 1
            raise LimitExceeded(
                f"API key {key.name} used its quota of {plan.quota} requests per "
                f"{plan.period} (plan {plan.name})", "QuotaExceeded",
                state.period_end - now, self.headers(plan, state, now))
        tokens = min(float(plan.burst), state.tokens + max(0.0, now - state.stamp) * plan.rate)
        state.stamp = now
        if tokens < 1.0:
            state.tokens = tokens
            slot[1] += 1
            raise TooManyRequests(
                f"API key {key.name} is over its rate of {plan.rate:g} requests/s "
                f"(burst {plan.burst}, plan {plan.name})", "CallerRateLimitExceeded",
                (1.0 - tokens) / plan.rate, self.headers(plan, state, now))
        state.tokens = tokens - 1.0
        state.used += 1
        slot[0] += 1
        return self.headers(plan, state, now)

    @staticmethod
    def headers(plan: Plan, state: KeyState, now: float) -> Headers:
        """RateLimit-Limit/Remaining/Reset (IETF draft) for whichever of the bucket and the
        quota runs out first."""
        remaining = int(state.tokens)
        if plan.quota is not None and plan.quota - state.used <= remaining:
            limit, remaining = plan.quota, plan.quota - state.used
            reset = math.ceil(state.period_end - now)
        else:
            limit = plan.burst
            reset = math.ceil((plan.burst - state.tokens) / plan.rate)
        return ((b"ratelimit-limit", b"%d" % limit), (b"ratelimit-remaining", b"%d" % remaining),
                (b"ratelimit-reset", b"%d" % reset))

    def restate(self, key: ApiKey, plan: Plan, now: float, old: KeyState | None) -> KeyState:
        """A key's state under a (new) plan or a new period: the quota counter from the
        counts so far, the bucket full (or as it was, capped at the new burst)."""
        used, period_end = 0, math.inf
        if plan.period is not None:
            days, period_end = period_days(now, plan.period)
            used = sum(self.count(key.key_id, d) for d in days)
        tokens = float(plan.burst) if old is None else min(old.tokens, float(plan.burst))
        state = KeyState(plan, tokens, now if old is None else old.stamp, used, period_end)
        self.states[key.key_id] = state
        return state

    def count(self, key_id: str, on_day: str) -> int:
        """Admitted requests of a key on a day: persisted plus not yet drained."""
        slot = self.pending.get((key_id, on_day))
        return self.persisted.get((key_id, on_day), 0) + (slot[0] if slot else 0)

    # -- the background --------------------------------------------------------------

    def drain(self) -> Usage:
        """The counts since the last drain, for the caller to persist (and forget)."""
        usage = Usage(self.pending, self.last_used)
        for k, (admitted, _) in self.pending.items():
            self.persisted[k] = self.persisted.get(k, 0) + admitted
        self.pending, self.last_used = {}, {}
        return usage

    def requeue(self, usage: Usage) -> None:
        """Put drained counts back (they could not be persisted): the next drain has them."""
        for k, (admitted, throttled) in usage.counts.items():
            self.persisted[k] -= admitted
            slot = self.pending.setdefault(k, [0, 0])
            slot[0] += admitted
            slot[1] += throttled
        for key_id, ts in usage.last_used.items():
            self.last_used[key_id] = max(ts, self.last_used.get(key_id, 0.0))

    def forget_before(self, first_day: str) -> None:
        """Drop persisted counts older than `first_day` (no quota can need them)."""
        self.persisted = {k: v for k, v in self.persisted.items() if k[1] >= first_day}
