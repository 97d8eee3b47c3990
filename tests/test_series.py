"""Points and their histograms: percentiles exact to the bucket, exact merges, a lossless
encoding."""

from __future__ import annotations

import bisect
import itertools
import random

from mlambda.telemetry import series as s
from mlambda.telemetry.series import BOUNDS, Histogram, Point, decode, encode


def bucket_of(value: float) -> tuple[float, float]:
    i = bisect.bisect_left(BOUNDS, value)
    return (BOUNDS[i - 1] if i else 0.0), BOUNDS[i]


def test_bounds_hold_every_prometheus_bucket_from_1_ms_to_10_s() -> None:
    for ms in (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000):
        assert ms in BOUNDS
    assert all(b / a <= 1.15 for a, b in itertools.pairwise(BOUNDS))


def test_quantiles_fall_in_the_true_values_bucket() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.2) for _ in range(5000)]
    h = Histogram()
    for v in values:
        h.observe(v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        true = ordered[int(q * len(ordered)) - 1]
        low, high = bucket_of(true)
        got = h.quantile(q)
        assert got is not None and low <= got <= high, (q, true, got)
    assert h.quantile(1.0) == max(values)
    assert h.count == 5000 and abs(h.total - sum(values)) < 1e-6


def test_merged_halves_equal_the_whole() -> None:
    rng = random.Random(1)
    values = [rng.uniform(0.2, 3000) for _ in range(1000)]
    whole, a, b = Histogram(), Histogram(), Histogram()
    for i, v in enumerate(values):
        whole.observe(v)
        (a if i % 2 else b).observe(v)
    a.merge(b)
    assert a.buckets == whole.buckets and a.count == whole.count
    assert a.max == whole.max and a.min == whole.min
    assert a.quantile(0.99) == whole.quantile(0.99)


def test_point_round_trips_through_its_encoding() -> None:
    p = Point()
    p.add(s.INVOCATIONS, 3)
    p.add(s.labelled(s.ERRORS, "Task.TimedOut"))
    p.add(s.labelled(s.ERRORS, "BadThing"), 2)
    for v in (1.5, 20.0, 900.0):
        p.observe(s.DURATION, v)
    p.gauge(s.CONCURRENT, 4)
    p.gauge(s.CONCURRENT, 2)
    back = decode(encode(p))
    assert back.counts == p.counts and back.gauges == {s.CONCURRENT: 4}
    assert back.hists[s.DURATION].buckets == p.hists[s.DURATION].buckets
    assert back.total(s.ERRORS) == 3
    assert back.labels(s.ERRORS, back.counts) == {"Task.TimedOut": 1, "BadThing": 2}


def test_empty_histogram_has_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None


def test_quantiles_in_one_pass_equal_each_quantile() -> None:
    rng = random.Random(3)
    h = Histogram()
    for _ in range(2000):
        h.observe(rng.lognormvariate(2, 1.5))
    qs = [0.99, 0.5, 0.0, 0.9, 1.0]
    assert h.quantiles(qs) == [h.quantile(q) for q in qs]
    assert Histogram().quantiles([0.5, 0.99]) == [None, None]


def test_a_point_read_without_histograms_keeps_counters_and_gauges() -> None:
    p = Point()
    p.add(s.INVOCATIONS, 5)
    p.add(s.labelled(s.THROTTLES, "QueueFull"), 2)
    p.observe(s.DURATION, 12.5)
    p.gauge(s.CONCURRENT, 3)
    light = decode(encode(p), hists=False)
    assert light.counts == p.counts and light.gauges == p.gauges and not light.hists
