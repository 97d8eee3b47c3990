"""The autoscaler: a pure function from a snapshot of a version to a scaling decision.

Scale out when work waits and no instance is idle (up to `max_instances`, one new
instance per `max_batch` queued requests); keep `min_instances`; stop instances idle for
`idle_ttl_s` (scale to zero); stop the template once no instance has been alive for
`template_ttl_s`, after which the next call pays a full start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceView:
    instance_id: str
    state: str  # InstanceState value
    idle_since: float  # monotonic time it became idle (meaningful when idle)


@dataclass(frozen=True)
class ScaleSnapshot:
    now: float
    queued: int
    instances: tuple[InstanceView, ...]
    min_instances: int
    max_instances: int
    max_batch: int
    idle_ttl_s: float
    template_alive: bool
    template_idle_since: float | None  # when the last instance went away; None: has some
    template_ttl_s: float
    failed: bool  # the version's init failed recently: do not start more


@dataclass(frozen=True)
class ScaleDecision:
    start: int = 0
    stop: tuple[str, ...] = ()
    stop_template: bool = False
    next_check_at: float | None = None


def decide(s: ScaleSnapshot) -> ScaleDecision:
    starting = sum(1 for i in s.instances if i.state == "starting")
    idle = [i for i in s.instances if i.state == "idle"]
    busy = sum(1 for i in s.instances if i.state == "busy")
    live = starting + len(idle) + busy
    start = 0
    if not s.failed:
        if s.queued > 0 and not idle:
            wanted = math.ceil(s.queued / s.max_batch) - starting
            start = max(0, min(s.max_instances - live, wanted))
        start = max(start, s.min_instances - live)
    stop: list[str] = []
    next_check: float | None = None
    spare = live + start - s.min_instances
    for inst in sorted(idle, key=lambda i: i.idle_since):
        expires = inst.idle_since + s.idle_ttl_s
        if spare <= 0:
            break
        if expires <= s.now:
            stop.append(inst.instance_id)
            spare -= 1
        else:
            next_check = expires if next_check is None else min(next_check, expires)
    stop_template = False
    if s.template_alive and live + start == len(stop) and s.template_idle_since is not None:
        expires = s.template_idle_since + s.template_ttl_s
        if expires <= s.now:
            stop_template = True
        else:
            next_check = expires if next_check is None else min(next_check, expires)
    return ScaleDecision(start, tuple(stop), stop_template, next_check)
