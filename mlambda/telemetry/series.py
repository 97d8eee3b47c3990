"""One series' aggregate over one interval (a `Point`): counters, fixed-bucket histograms
and gauge maxima. Points merge exactly (counts add, maxima max), so a 1-minute rollup or
a percentile over 30 days is exact to the histogram bucket.

Metric names are CloudWatch's where it has one. A label rides in the name after a colon:
`Errors:Task.TimedOut`, `Throttles:QueueFull`, `Instances:idle`, `Requests:2xx`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

import msgspec

# Histogram upper bounds in ms (a value v falls in the first bucket whose bound >= v, as
# Prometheus's `le`): 20 per decade from 0.1 ms to 1000 s, ratio <= 1.14, and every
# 1-2.5-5 step, so Prometheus's coarser buckets (1 ms .. 10 s) are sums of these.
_STEPS = (1.0, 1.12, 1.25, 1.4, 1.6, 1.8, 2.0, 2.25, 2.5, 2.8, 3.2, 3.6, 4.0, 4.5, 5.0, 5.6,
          6.3, 7.1, 8.0, 9.0)
BOUNDS: tuple[float, ...] = (
    *(round(s * 10.0 ** e, 6) for e in range(-1, 6) for s in _STEPS), 1e6)
NBUCKETS = len(BOUNDS) + 1  # the last one: above every bound

# counters (summed)
INVOCATIONS = "Invocations"
ERRORS = "Errors"  # Errors:<errorType>
THROTTLES = "Throttles"  # Throttles:<reason>
COLD_STARTS = "ColdStarts"
BILLED_GB_S = "BilledGBSeconds"
REQUESTS = "Requests"  # Requests:<status class>, per route
# histograms (ms, except BatchSize)
DURATION = "Duration"
INIT_DURATION = "InitDuration"
QUEUE_WAIT = "QueueWait"
BATCH_SIZE = "BatchSize"
LATENCY = "Latency"  # per route: as the client saw it, gateway time included
# gauges (the maximum seen in the interval)
CONCURRENT = "ConcurrentExecutions"
INSTANCES = "Instances"  # Instances:<state>
QUEUE_DEPTH = "QueueDepth"
MAX_MEMORY = "MaxMemoryUsed"


def labelled(name: str, label: str) -> str:
    return f"{name}:{label}"


class Histogram:
    """Counts per bucket, sparse (bucket index -> count, no zeros): a point holds a
    handful of the 142 buckets, and merging or reading a month of points touches only
    those."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = 0.0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(BOUNDS, value)
        self.buckets[i] = self.buckets.get(i, 0) + 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value

    def merge(self, other: Histogram) -> None:
        mine = self.buckets
        for i, n in other.buckets.items():
            mine[i] = mine.get(i, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated inside its bucket and clamped to the observed
        min and max: exact to the bucket."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """Several quantiles (each as `quantile`) from one pass over the buckets."""
        if self.count == 0:
            return [None] * len(qs)
        out: dict[float, float] = {}
        wanted = sorted(qs)
        seen = 0
        for i, n in sorted(self.buckets.items()):
            while wanted and seen + n >= wanted[0] * self.count:
                q = wanted.pop(0)
                rank = q * self.count
                low = BOUNDS[i - 1] if i > 0 else 0.0
                high = BOUNDS[i] if i < len(BOUNDS) else self.max
                value = low + (high - low) * max(0.0, rank - seen) / n
                out[q] = min(max(value, self.min), self.max)
            if not wanted:
                break
            seen += n
        return [out.get(q, self.max) for q in qs]

    def cumulative(self, bounds: Iterable[float]) -> list[tuple[float, int]]:
        """Counts at or below each of `bounds` (each one of BOUNDS), for Prometheus."""
        out = []
        for b in bounds:
            last = BOUNDS.index(b)
            out.append((b, sum(n for i, n in self.buckets.items() if i <= last)))
        return out


class Point:
    """The aggregate of one series over one interval."""

    __slots__ = ("counts", "gauges", "hists")

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.hists: dict[str, Histogram] = {}
        self.gauges: dict[str, float] = {}

    @classmethod
    def of(cls, counts: dict[str, float], gauges: dict[str, float]) -> Point:
        """A point of these counters and gauges (copied), without histograms."""
        p = cls()
        p.counts, p.gauges = dict(counts), dict(gauges)
        return p

    def add(self, name: str, value: float = 1.0) -> None:
        self.counts[name] = self.counts.get(name, 0.0) + value

    def observe(self, name: str, value: float) -> None:
        h = self.hists.get(name)
        if h is None:
            h = self.hists[name] = Histogram()
        h.observe(value)

    def gauge(self, name: str, value: float) -> None:
        if value > self.gauges.get(name, -1.0):
            self.gauges[name] = value

    def merge(self, other: Point) -> None:
        for name, v in other.counts.items():
            self.counts[name] = self.counts.get(name, 0.0) + v
        for name, h in other.hists.items():
            mine = self.hists.get(name)
            if mine is None:
                mine = self.hists[name] = Histogram()
            mine.merge(h)
        for name, g in other.gauges.items():
            self.gauge(name, g)

    def __bool__(self) -> bool:
        return bool(self.counts or self.hists or self.gauges)

    def total(self, prefix: str) -> float:
        """A counter summed over its labels (`Errors` = every `Errors:<type>`)."""
        head = prefix + ":"
        return sum(v for k, v in self.counts.items() if k == prefix or k.startswith(head))

    def labels(self, prefix: str, table: dict[str, float]) -> dict[str, float]:
        head = prefix + ":"
        return {k[len(head):]: v for k, v in table.items() if k.startswith(head)}


# On disk a name is a small number (a label follows it: "1:BadThing") and times are whole
# microseconds: a minute's point of a busy function is ~100 bytes instead of ~350.
_NAMES = (INVOCATIONS, ERRORS, THROTTLES, COLD_STARTS, BILLED_GB_S, REQUESTS, DURATION,
          INIT_DURATION, QUEUE_WAIT, BATCH_SIZE, LATENCY, CONCURRENT, INSTANCES, QUEUE_DEPTH,
          MAX_MEMORY)
_CODE = {name: i for i, name in enumerate(_NAMES)}
_MICRO = 1000.0

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[list[Any], list[Any], list[Any]])
_light_decoder = msgspec.msgpack.Decoder(tuple[list[Any], msgspec.Raw, list[Any]])


def _pack_name(name: str) -> int | str:
    head, sep, label = name.partition(":")
    code = _CODE.get(head)
    if code is None:
        return name
    return f"{code}:{label}" if sep else code


def _unpack_name(packed: int | str) -> str:
    name = _UNPACKED.get(packed)
    if name is None:
        if isinstance(packed, int):
            name = _NAMES[packed]
        else:
            head, sep, label = packed.partition(":")
            name = f"{_NAMES[int(head)]}:{label}" if sep and head.isdigit() else packed
        if len(_UNPACKED) < 10_000:  # names are few (metric x label); bound it anyway
            _UNPACKED[packed] = name
    return name


_UNPACKED: dict[int | str, str] = {}


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def encode(point: Point) -> bytes:
    counts: list[Any] = []
    for name, v in point.counts.items():
        counts += (_pack_name(name), _number(v))
    hists: list[Any] = []
    for name, h in point.hists.items():
        sparse: list[int] = []
        for i, n in sorted(h.buckets.items()):
            sparse += (i, n)
        hists.append([_pack_name(name), h.count, round(h.total * _MICRO),
                      round(h.min * _MICRO) if h.count else 0, round(h.max * _MICRO), *sparse])
    gauges: list[Any] = []
    for name, v in point.gauges.items():
        gauges += (_pack_name(name), _number(v))
    return _encoder.encode((counts, hists, gauges))


def decode(blob: bytes, hists: bool = True) -> Point:
    """A stored point; without its histograms if `hists` is false (a total of counters
    and gauges, as a bill needs, reads a month of points several times faster)."""
    if hists:
        counts, packed, gauges = _decoder.decode(blob)
    else:
        counts, _, gauges = _light_decoder.decode(blob)
        packed = []
    point = Point()
    point.counts = {_unpack_name(counts[i]): float(counts[i + 1])
                    for i in range(0, len(counts), 2)}
    point.gauges = {_unpack_name(gauges[i]): float(gauges[i + 1])
                    for i in range(0, len(gauges), 2)}
    for name, count, total, low, high, *sparse in packed:
        h = Histogram()
        h.count, h.total = count, total / _MICRO
        h.min, h.max = low / _MICRO, high / _MICRO
        h.buckets = dict(zip(sparse[::2], sparse[1::2], strict=True))
        point.hists[_unpack_name(name)] = h
    return point
