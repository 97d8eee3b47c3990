"""The batch former: a pure function from a snapshot of a dispatcher to a decision.

An idle instance takes everything queued, up to `max_batch`. Waiting for more only pays
when this is the last idle instance (others are busy, so the load is real), the batch is
not full, and at the current arrival rate at least one more request is expected before
the oldest queued one has waited `max_wait`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchSnapshot:
    queued: int
    oldest_wait_s: float
    idle_instances: int
    busy_instances: int
    max_batch: int
    max_wait_s: float
    arrival_rate: float  # requests per second, recent


@dataclass(frozen=True)
class BatchPlan:
    take: int  # how many to hand to an idle instance now; 0: wait
    wait_s: float = 0.0  # when take == 0: how long until deciding again


def plan_batch(s: BatchSnapshot) -> BatchPlan:
    if s.queued == 0 or s.idle_instances == 0:
        return BatchPlan(0, 0.0)
    take_all = BatchPlan(min(s.queued, s.max_batch))
    if s.queued >= s.max_batch or s.max_wait_s <= 0:
        return take_all
    if s.idle_instances > 1 or s.busy_instances == 0:
        return take_all
    remaining = s.max_wait_s - s.oldest_wait_s
    if remaining <= 0 or s.arrival_rate * remaining < 1.0:
        return take_all
    # wait until the batch is expected to be full, or the window closes
    fill_s = (s.max_batch - s.queued) / s.arrival_rate
    return BatchPlan(0, min(remaining, fill_s))
