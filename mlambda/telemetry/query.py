"""Reading metrics back: a time range at a period, as named series of [unix_ts, value].

Runs on the telemetry's writer thread (see `Metrics.query`): stored points (10 s for the
last day, 1-minute rollups for a month), plus the unflushed interval.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass
from typing import Any

from mlambda.errors import InvalidParameter
from mlambda.telemetry import series as s
from mlambda.telemetry.metricstore import FINE, ROLLUP, TIERS, MetricStore, SeriesKey
from mlambda.telemetry.series import Point

MAX_POINTS = 1500
EPOCH_FLOOR = 1e9  # a bare number above this is a time (2001-09-09 on), not seconds ago
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
AUTO_PERIODS = (10, 60, 300, 900, 3600, 21600, 86400)

# What each series means (also in the OpenAPI document, via the admin API's docstrings).
SERIES_DOC = {
    "Invocations": "invocations that reached the function (throttled requests excluded)",
    "Errors": "invocations that ended in an error (any type; by type under breakdown)",
    "Throttles": "requests refused with 429 (by reason under breakdown: QueueFull, ...)",
    "ColdStarts": "invocations that paid an instance's init",
    "BilledGBSeconds": "billed duration (ms, rounded up, init included) x memory size",
    "DurationAvg": "handler duration, ms (also P50, P90, P99, Max)",
    "InitDurationAvg": "init phase of cold starts, ms (also Max)",
    "QueueWaitAvg": "time queued before an instance took it, ms (also P50, P99)",
    "BatchSizeAvg": "batch size each invocation ran in (also Max)",
    "ConcurrentExecutions": "busy instances, the most at once in the period (sampled every "
                            "second, and counted from the invocations that ended in it)",
    "Instances": "instances in any state (maximum; by state under breakdown)",
    "QueueDepth": "invocations waiting (maximum)",
    "MaxMemoryUsed": "largest peak RSS of an instance, MB",
    "Requests": "per route: requests (by status class under breakdown)",
    "LatencyP99": "per route: latency as the client saw it, gateway included, ms "
                  "(also Avg, P50, P90, Max)",
}


def parse_time(text: str, now: float, field: str) -> float:
    """`3600` or `90s`, `15m`, `1h`, `30d`, `2w` (that long ago), epoch seconds (a bare
    number over 10^9), or ISO 8601 (UTC when no zone is given)."""
    value = text.strip()
    m = _DURATION.match(value)
    if m:
        amount = float(m.group(1))
        if not m.group(2) and amount > EPOCH_FLOOR:
            return amount
        return now - amount * _UNITS[m.group(2) or "s"]
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"field `{field}`: expected seconds ago (3600), a duration (15m, 1h, 30d) or an "
            f"ISO 8601 time (2026-11-29T10:00:00Z), got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def duration_s(text: str, field: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise InvalidParameter(f"field `{field}`: expected a duration (90s, 15m, 1h, 30d), "
                               f"got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class Range:
    since: float
    until: float
    period: int

    @property
    def first(self) -> int:
        return int(self.since // self.period * self.period)

    def buckets(self) -> range:
        return range(self.first, int(self.until), self.period)


def plan_range(since: float, until: float, period: int | None, now: float,
               fine_retention_s: float) -> Range:
    """Check a requested range and pick its period (10 s, or a multiple of 60 s)."""
    if until <= since:
        raise InvalidParameter("field `until`: must be after `since`")
    span = until - since
    if period is None:
        period = next((p for p in AUTO_PERIODS if span / p <= MAX_POINTS), AUTO_PERIODS[-1])
        if period == FINE and since < now - fine_retention_s:
            period = ROLLUP
    if period != FINE and (period <= 0 or period % ROLLUP):
        raise InvalidParameter(f"field `period`: expected 10 or a multiple of 60 seconds, "
                               f"got {period}")
    if period == FINE and since < now - fine_retention_s - FINE:
        raise InvalidParameter(
            f"field `period`: 10 s points are kept for {fine_retention_s / 3600:g} h; ask for "
            f"period=60 (or more) over a longer range")
    if span / period > MAX_POINTS:
        raise InvalidParameter(f"field `period`: {span / period:.0f} points of {period} s; at "
                               f"most {MAX_POINTS} (choose a longer period)")
    return Range(since, until, period)


def gather(store: MetricStore, live: dict[SeriesKey, Point], live_ts: float,
           key: SeriesKey, r: Range) -> dict[int, Point]:
    """The series' points merged into buckets of `r.period`: 1-minute rollups where the
    range is rolled up, 10 s points after that, and the unflushed interval."""
    out: dict[int, Point] = {}

    def put(ts: float, point: Point) -> None:
        if not r.first <= ts < r.until:
            return
        bucket = int(ts // r.period * r.period)
        if bucket in out:
            out[bucket].merge(point)
        else:
            out[bucket] = point

    # the coarsest tier that divides the period, where it is rolled up; finer after that
    start = r.first
    tiers = [p for p in TIERS if r.period % p == 0]
    for tier in reversed(tiers):
        if tier == FINE:
            end = r.until
        else:
            rolled = store.rolled_until(tier)
            if rolled is None:
                continue
            end = min(r.until, rolled)
        if end > start:
            for ts, point in store.read(key, tier, start, end):
                put(ts, point)
            start = int(end)
    if key in live:
        put(live_ts, live[key])
    return out


HIST_STATS = ((s.DURATION, ("Avg", "P50", "P90", "P99", "Max")),
              (s.INIT_DURATION, ("Avg", "Max")),
              (s.QUEUE_WAIT, ("Avg", "P50", "P99")),
              (s.BATCH_SIZE, ("Avg", "Max")))
ROUTE_HIST_STATS = ((s.LATENCY, ("Avg", "P50", "P90", "P99", "Max")),)


def stats(p: Point | None, names: frozenset[str] | None = None) -> dict[str, float | None]:
    """The named values of one point (counters 0 and percentiles None when empty); only
    `names` if given."""
    p = p or Point()
    out: dict[str, float | None] = {
        "Invocations": p.counts.get(s.INVOCATIONS, 0.0),
        "Errors": p.total(s.ERRORS),
        "Throttles": p.total(s.THROTTLES),
        "ColdStarts": p.counts.get(s.COLD_STARTS, 0.0),
        "BilledGBSeconds": p.counts.get(s.BILLED_GB_S, 0.0),
    }
    for name, wanted in HIST_STATS:
        out.update(histogram_stats(name, p.hists.get(name), wanted, names))
    for name in (s.CONCURRENT, s.INSTANCES, s.QUEUE_DEPTH, s.MAX_MEMORY):
        out[name] = p.gauges.get(name, 0.0)
    return out if names is None else {k: v for k, v in out.items() if k in names}


def route_stats(p: Point | None, names: frozenset[str] | None = None
                ) -> dict[str, float | None]:
    p = p or Point()
    out: dict[str, float | None] = {"Requests": p.total(s.REQUESTS)}
    for name, wanted in ROUTE_HIST_STATS:
        out.update(histogram_stats(name, p.hists.get(name), wanted, names))
    return out if names is None else {k: v for k, v in out.items() if k in names}


def series_names(is_route: bool) -> list[str]:
    """Every series a function's (or a route's) answer has."""
    return list((route_stats if is_route else stats)(None))


def histogram_stats(name: str, h: s.Histogram | None, wanted: tuple[str, ...],
                    names: frozenset[str] | None = None) -> dict[str, float | None]:
    if names is not None:
        wanted = tuple(w for w in wanted if name + w in names)
        if not wanted:
            return {}
    if h is None or not h.count:
        return {name + stat: None for stat in wanted}
    ranks = [int(stat[1:]) / 100 for stat in wanted if stat[0] == "P"]
    found = dict(zip(ranks, h.quantiles(ranks), strict=True))
    out: dict[str, float | None] = {}
    for stat in wanted:
        value: float | None
        if stat == "Avg":
            value = h.total / h.count
        elif stat == "Max":
            value = h.max
        else:
            value = found[int(stat[1:]) / 100]
        out[name + stat] = None if value is None else round(value, 3)
    return out


def breakdown(p: Point | None, is_route: bool) -> dict[str, dict[str, float]]:
    p = p or Point()
    if is_route:
        return {"Requests": p.labels(s.REQUESTS, p.counts)}
    return {"Errors": p.labels(s.ERRORS, p.counts),
            "Throttles": p.labels(s.THROTTLES, p.counts),
            "Instances": p.labels(s.INSTANCES, p.gauges)}


def timeseries(store: MetricStore, live: dict[SeriesKey, Point], live_ts: float,
               key: SeriesKey, r: Range, names: frozenset[str] | None = None
               ) -> dict[str, Any]:
    """The API's answer: every series (or only `names`) as [[ts, value], ...] over the
    range (one entry per period, empty periods included), a breakdown by label, and a
    summary of the range."""
    points = gather(store, live, live_ts, key, r)
    is_route = bool(key.route)
    shape = route_stats if is_route else stats
    empty = shape(None, names)
    series: dict[str, list[list[float | None]]] = {n: [] for n in empty}
    whole = total(store, live, live_ts, key, r)  # from days and hours: fewer merges
    seen = breakdown(whole, is_route)
    labels: dict[str, dict[str, list[list[float]]]] = {
        group: {label: [] for label in found} for group, found in seen.items()}
    labelled = any(labels.values())
    nothing = breakdown(None, is_route)
    for ts in r.buckets():
        p = points.get(ts)
        for n, v in (empty if p is None else shape(p, names)).items():
            series[n].append([ts, v])
        if labelled:
            by = nothing if p is None else breakdown(p, is_route)
            for group, values in labels.items():
                for label, pairs in values.items():
                    pairs.append([ts, by[group].get(label, 0.0)])
    return {
        "function": key.function or None,
        "alias": key.alias or None,
        "version": key.version or None,
        "route": key.route or None,
        "period": r.period,
        "since": r.first,
        "until": r.until,
        "series": series,
        "breakdown": labels,
        "summary": {**shape(whole, names), "breakdown": seen},
    }


def cover(store: MetricStore, first: int, until: float) -> list[tuple[int, int, float]]:
    """The rows that add up to [first, until) exactly, as `(tier, start, end)` spans to
    read in order: the coarsest rows wherever they are complete (rolled up) and fit the
    range whole, so a month is 30 daily rows and its ragged ends, not 720 hourly ones.
    The last 10 s row may reach past `until`, as a chart's last bucket does. `first` is
    aligned to a tier with rows there (a `Range.first` is)."""
    done = {tier: (until if tier == FINE else store.rolled_until(tier) or 0.0)
            for tier in TIERS}
    spans: list[tuple[int, int, float]] = []
    pos = first
    while pos < until:
        fits = [t for t in TIERS if pos % t == 0 and pos + t <= min(until, done[t])]
        if not fits:  # the ragged end: the last 10 s row, whole
            tier, end = FINE, until
        else:
            tier = fits[-1]
            # its rows, up to where they end or where a coarser tier may take over
            end = min(until, done[tier]) // tier * tier
            coarser = [t for t in TIERS if t > tier]
            if coarser:
                end = min(end, (pos // coarser[0] + 1) * coarser[0])
        if spans and spans[-1][0] == tier and spans[-1][2] == pos:
            spans[-1] = (tier, spans[-1][1], end)
        else:
            spans.append((tier, pos, end))
        pos = int(end) if fits else int(until) + 1
    return spans


def total(store: MetricStore, live: dict[SeriesKey, Point], live_ts: float, key: SeriesKey,
          r: Range, hists: bool = True) -> Point:
    """One series over the range, merged into one point, from the fewest rows (see
    `cover`); without histograms if `hists` is false (counters and gauges only)."""
    whole = Point()
    for tier, start, end in cover(store, r.first, r.until):
        for _, p in store.read(key, tier, start, end, hists):
            whole.merge(p)
    if key in live and r.first <= live_ts < r.until:
        p = live[key]
        if not hists:
            p = Point.of(p.counts, p.gauges)
        whole.merge(p)
    return whole


def totals(store: MetricStore, live: dict[SeriesKey, Point], live_ts: float,
           keys: list[SeriesKey], r: Range, hists: bool = True) -> dict[SeriesKey, Point]:
    """Each series' total over the range (see `total`)."""
    return {key: total(store, live, live_ts, key, r, hists) for key in keys}


def now() -> float:
    return time.time()
