"""Collection off the hot path, on real parts (a real store; the engine is never started):
events are aggregated where they belong, a function's series is its versions' merged,
and concurrency counts invocations that ran between two samples of the gauges."""

from __future__ import annotations

import os
from pathlib import Path

from mlambda.engines.local import LocalEngine
from mlambda.errors import TooManyRequests, function_error
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.spec import FunctionSpec
from mlambda.telemetry import series as s
from mlambda.telemetry.metrics import Metrics, merged, peak, union
from mlambda.telemetry.metricstore import FINE, MetricStore, SeriesKey


def test_peak_and_union() -> None:
    assert peak([(0, 1), (2, 3)]) == 1
    assert peak([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert peak([(0, 10), (1, 2), (1.5, 3)]) == 3
    assert union([(0, 1), (0, 1), (0.5, 2), (3, 4)]) == [(0, 2), (3, 4)]  # a batch is one


def outcome(instance: str, duration_ms: float, error: bool = False,
            init_ms: float | None = None) -> Outcome:
    err = function_error("BadThing", "no") if error else None
    return Outcome("r", "1", b"", err, 200, (), duration_ms, 1.0, init_ms, 60, "", 1, instance)


def test_events_land_in_their_series_and_functions_merge_their_versions(
        tmp_path: Path) -> None:
    engine = LocalEngine(str(tmp_path))
    metrics = Metrics(MetricStore(tmp_path / "m.db"), engine)
    spec = FunctionSpec(name="f", handler="app.handler", memory_mb=1024)
    v1, v2 = VersionRef("f", "1", "", spec), VersionRef("f", "2", "", spec)
    metrics.on_outcome(v1, outcome("a", 100.0, init_ms=50.0))
    metrics.on_outcome(v1, outcome("a", 100.0, error=True))
    metrics.on_outcome(v2, outcome("b", 10_000.0))  # still running while v1's ran
    metrics.on_alias_outcome("f", "live", outcome("a", 100.0), 1024)
    metrics.on_alias_outcome("f", "2", outcome("b", 1.0), 1024)  # a version, not an alias
    metrics.throttled("f", "live", "1", "QueueFull")
    metrics.throttled("f", "live", None, "LimitExceededException")  # no version chosen yet
    metrics.request("POST /f", 429, 0.002)
    pushed_out = TooManyRequests("full", "QueueFull").info()  # displaced by a lighter key
    metrics.on_outcome(v1, Outcome("r", "1", b"", pushed_out, 0, (), 0.0, 5.0, None, 0, "", 0,
                                   ""))
    events, metrics.pending = metrics.pending, []
    metrics.absorb(events, [("f", "1", {"idle": 1}, 0), ("f", "2", {"busy": 1}, 3)])
    metrics.count_busy()
    points = merged(metrics.window)
    f, one = points[SeriesKey("f")], points[SeriesKey("f", "", "1")]
    assert f.counts[s.INVOCATIONS] == 3 and one.counts[s.INVOCATIONS] == 2
    assert f.total(s.ERRORS) == 1 and f.counts[s.COLD_STARTS] == 1
    assert f.labels(s.THROTTLES, f.counts) == {"QueueFull": 2, "LimitExceededException": 1}
    assert points[SeriesKey("f", "live")].total(s.THROTTLES) == 2
    assert points[SeriesKey("f", "live")].counts[s.INVOCATIONS] == 1
    assert SeriesKey("f", "2") not in points
    # billed: ceil(100 + 50) ms and 100 ms and 10 s at 1 GB
    assert f.counts[s.BILLED_GB_S] == (150 + 100 + 10_000) / 1000
    assert one.gauges[s.CONCURRENT] == 1  # two invocations, one after the other
    assert f.gauges[s.CONCURRENT] == 2  # v2's long one overlapped both
    assert f.gauges[s.QUEUE_DEPTH] == 3 and f.gauges[s.labelled(s.INSTANCES, "busy")] == 1
    route = points[SeriesKey("", route="POST /f")]
    assert route.counts == {"Requests:4xx": 1} and route.hists[s.LATENCY].max == 2.0
    metrics.flush()
    [(_, stored)] = list(metrics.store.read(SeriesKey("f"), FINE, 0, 4e9))
    assert stored.counts[s.INVOCATIONS] == 3 and stored.gauges[s.CONCURRENT] == 2
    assert metrics.cumulative()[SeriesKey("f")].counts[s.INVOCATIONS] == 3
    metrics.store.close()
    os.rmdir(engine.rundir)  # never started: only its temporary directory to remove
