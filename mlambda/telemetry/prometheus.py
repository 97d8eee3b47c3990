"""`GET /metrics`: the metrics in Prometheus's text format, rendered by prometheus-client
from the same in-memory aggregates the store is written from (counters since this
process started; gauges as they are now). Nothing is recorded twice.

Per version (labels function, version): invocations, errors (error_type), cold starts,
billed GB-seconds, duration / init duration / queue wait histograms, batch size,
concurrent executions, instances (state), queue depth. Per function: throttles (reason),
which a usage plan may refuse before any version is chosen. Per alias: invocations,
errors, duration. Per route: requests (status class) and latency as the client saw it.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mlambda.telemetry import series as s
from mlambda.telemetry.metrics import Gauges
from mlambda.telemetry.metricstore import SeriesKey
from mlambda.telemetry.series import Histogram, Point

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS_LE = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)  # ms: 1 ms .. 10 s
BATCH_LE = (1, 2, 4, 8, 16, 32, 50, 100, 200, 500, 1000)  # each one of series.BOUNDS


def _buckets(h: Histogram, bounds: tuple[float, ...],
             divisor: float) -> list[tuple[str, float]]:
    out = [(repr(b / divisor), float(n)) for b, n in h.cumulative(bounds)]
    return [*out, ("+Inf", float(h.count))]


class PlatformCollector(Collector):
    def __init__(self, points: dict[SeriesKey, Point], gauges: Gauges) -> None:
        self.points = points
        self.sampled = gauges

    def collect(self) -> Iterator[Metric]:
        points = self.points
        vl = ["function", "version"]
        al = ["function", "alias"]
        inv = CounterMetricFamily("mlambda_invocations", "Invocations that reached a "
                                  "function (throttled requests excluded)", labels=vl)
        err = CounterMetricFamily("mlambda_errors", "Invocations that ended in an error",
                                  labels=[*vl, "error_type"])
        cold = CounterMetricFamily("mlambda_cold_starts", "Invocations that paid an "
                                   "instance's init", labels=vl)
        gbs = CounterMetricFamily("mlambda_billed_gb_seconds", "Billed duration (init "
                                  "included) x memory size, GB-s", labels=vl)
        thr = CounterMetricFamily("mlambda_throttles", "Requests refused with 429, by reason",
                                  labels=["function", "reason"])
        dur = HistogramMetricFamily("mlambda_duration_seconds", "Handler duration", labels=vl)
        init = HistogramMetricFamily("mlambda_init_duration_seconds", "Init phase of cold "
                                     "starts", labels=vl)
        wait = HistogramMetricFamily("mlambda_queue_wait_seconds", "Time queued before an "
                                     "instance took the invocation", labels=vl)
        batch = HistogramMetricFamily("mlambda_batch_size", "Size of the batch each "
                                      "invocation ran in", labels=vl)
        ainv = CounterMetricFamily("mlambda_alias_invocations", "Invocations through an "
                                   "alias", labels=al)
        aerr = CounterMetricFamily("mlambda_alias_errors", "Errors through an alias",
                                   labels=[*al, "error_type"])
        adur = HistogramMetricFamily("mlambda_alias_duration_seconds", "Handler duration "
                                     "through an alias", labels=al)
        req = CounterMetricFamily("mlambda_http_requests", "Requests on a gateway route",
                                  labels=["route", "status_class"])
        lat = HistogramMetricFamily("mlambda_http_request_duration_seconds", "Latency as "
                                    "the client saw it, gateway included", labels=["route"])
        for key, p in sorted(points.items()):
            if key.route:
                for cls, n in p.labels(s.REQUESTS, p.counts).items():
                    req.add_metric([key.route, cls], n)
                self.histogram(lat, [key.route], p, s.LATENCY)
            elif key.alias:
                ids = [key.function, key.alias]
                ainv.add_metric(ids, p.counts.get(s.INVOCATIONS, 0.0))
                for kind, n in p.labels(s.ERRORS, p.counts).items():
                    aerr.add_metric([*ids, kind], n)
                self.histogram(adur, ids, p, s.DURATION)
            elif key.version:
                ids = [key.function, key.version]
                inv.add_metric(ids, p.counts.get(s.INVOCATIONS, 0.0))
                for kind, n in p.labels(s.ERRORS, p.counts).items():
                    err.add_metric([*ids, kind], n)
                cold.add_metric(ids, p.counts.get(s.COLD_STARTS, 0.0))
                gbs.add_metric(ids, p.counts.get(s.BILLED_GB_S, 0.0))
                self.histogram(dur, ids, p, s.DURATION)
                self.histogram(init, ids, p, s.INIT_DURATION)
                self.histogram(wait, ids, p, s.QUEUE_WAIT)
                self.histogram(batch, ids, p, s.BATCH_SIZE)
            else:
                for reason, n in p.labels(s.THROTTLES, p.counts).items():
                    thr.add_metric([key.function, reason], n)
        yield from (inv, err, cold, gbs, thr, dur, init, wait, batch, ainv, aerr, adur, req, lat)
        yield from self.gauges()

    @staticmethod
    def histogram(fam: HistogramMetricFamily, labels: list[str], p: Point, name: str) -> None:
        h = p.hists.get(name)
        if h is None:
            return
        if name == s.BATCH_SIZE:
            fam.add_metric(labels, _buckets(h, BATCH_LE, 1.0), h.total)
        else:
            fam.add_metric(labels, _buckets(h, SECONDS_LE, 1000.0), h.total / 1000)

    def gauges(self) -> Iterator[Metric]:
        v = ["function", "version"]
        busy = GaugeMetricFamily("mlambda_concurrent_executions", "Busy instances now",
                                 labels=v)
        instances = GaugeMetricFamily("mlambda_instances", "Instances now, by state",
                                      labels=[*v, "state"])
        queue = GaugeMetricFamily("mlambda_queue_depth", "Invocations waiting now", labels=v)
        for function, version, states, queued in self.sampled:
            ids = [function, version]
            busy.add_metric(ids, states.get("busy", 0))
            for state in ("starting", "idle", "busy", "stopping"):
                instances.add_metric([*ids, state], states.get(state, 0))
            queue.add_metric(ids, queued)
        yield from (busy, instances, queue)


def exposition(points: dict[SeriesKey, Point], gauges: Gauges) -> bytes:
    """The text format of `points` (counters since start) and `gauges` (now)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(points, gauges))
    return generate_latest(registry)
