"""The admin API's metrics and cost endpoints (admin key only):

    GET /admin/v1/metrics?function=F[&alias=A|&version=N]|route=R &since= [&until=] [&period=]
    GET /admin/v1/metrics/overview
    GET /admin/v1/cost?[function=F]&since=30d[&sheet=S]
    GET /admin/v1/cost/scenario?scenario=10000/day 0.5s 8GB 22days[&sheet=S]
"""

from __future__ import annotations

import datetime
import os
import time
from typing import TYPE_CHECKING, Any

import psutil
from fastapi import FastAPI, Query
from fastapi.params import Depends

from mlambda import cost
from mlambda.errors import Conflict, InvalidParameter, NotFound
from mlambda.telemetry import query as q
from mlambda.telemetry.metrics import Metrics
from mlambda.telemetry.metricstore import FINE, HOURLY, ROLLUP, MetricStore, SeriesKey
from mlambda.telemetry.series import Point

if TYPE_CHECKING:
    from mlambda.server import Platform

METRICS_DOC = """A function's (or alias's, version's, route's) metrics over a range, one
value per period: `{"function", "alias", "version", "route", "period", "since", "until",
"series": {NAME: [[unix_ts, value], ...]}, "breakdown": {"Errors": {errorType: [[ts, n],
...]}, "Throttles": {reason: ...}, "Instances": {state: ...}}, "summary": {NAME: value over
the whole range, "breakdown": {...}}}` (a route's breakdown is `{"Requests": {"2xx": ...}}`).
Counters are per period (0 when idle); durations are ms (null when nothing ran); gauges are
the period's maximum. The series:

""" + "\n".join(f"- `{name}`: {doc}" for name, doc in q.SERIES_DOC.items())


def chosen_series(text: str, is_route: bool) -> frozenset[str]:
    known = q.series_names(is_route)
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(known))
    if unknown or not names:
        raise InvalidParameter(f"field `series`: expected names among {', '.join(known)}; "
                               f"got {', '.join(unknown) or 'none'}")
    return names


def add_metric_routes(app: FastAPI, platform: Platform, guarded: list[Depends]) -> None:
    def metrics() -> Metrics:
        if platform.metrics is None:
            raise Conflict("telemetry is off on this server (MLAMBDA_TELEMETRY=0)")
        return platform.metrics

    def retention_s() -> float:
        return platform.settings.metrics_retention_10s_h * 3600

    @app.get("/admin/v1/metrics", dependencies=guarded, description=METRICS_DOC)
    async def get_metrics(
        function: str | None = Query(None, description="the function (or give `route`)"),
        alias: str | None = Query(None, description="only this alias of the function"),
        version: str | None = Query(None, description="only this version of the function"),
        route: str | None = Query(None, description="a gateway route, 'POST /inference'"),
        since: str = Query("1h", description="3600, 15m, 1h, 30d (ago) or ISO 8601"),
        until: str | None = Query(None, description="as `since`; default now"),
        period: int | None = Query(None, description="10, or a multiple of 60 s; default: "
                                                     "the finest giving at most 1500 points"),
        series: str | None = Query(None, description="only these series, comma-separated "
                                                     "(Invocations,DurationP99); default: all"),
    ) -> dict[str, Any]:
        """A function's, alias's, version's or route's metrics over a range."""
        m = metrics()
        now = time.time()
        if (function is None) == (route is None):
            raise InvalidParameter("give exactly one of `function` and `route`")
        if alias is not None and version is not None:
            raise InvalidParameter("give at most one of `alias` and `version`")
        if function is not None:
            platform.registry.require(function)
            if version is not None:
                platform.registry.version(function, version)  # 404 if it has none
            if alias is not None and not any(a.function == function and a.name == alias
                                             for a in platform.registry.aliases()):
                raise NotFound(f"Function {function} has no alias {alias}")
            key = SeriesKey(function, alias or "", version or "")
        else:
            key = SeriesKey("", route=" ".join((route or "").split()))
        start = q.parse_time(since, now, "since")
        end = now if until is None else q.parse_time(until, now, "until")
        r = q.plan_range(start, end, period, now, retention_s())
        names = None if series is None else chosen_series(series, bool(key.route))
        return await m.query([key], lambda store, live, ts: q.timeseries(store, live, ts, key, r,
                                                                         names))

    @app.get("/admin/v1/metrics/overview", dependencies=guarded)
    async def overview() -> dict[str, Any]:
        """Every function now: `{"generated_at", "sheet", "functions": [{"function",
        "requests_per_s" (last minute), "invocations_1m", "errors_1m", "throttles_1m",
        "duration_p99_ms" (last minute; null if idle), "instances", "busy" (now),
        "invocations_today", "errors_today", "gb_seconds_today", "cost_today_usd"
        (Lambda + API Gateway at the default sheet, since 00:00 UTC)}]}`."""
        m = metrics()
        now = time.time()
        names = platform.registry.functions()
        keys = [SeriesKey(f) for f in names]
        minute = q.Range(now - 60, now, FINE)
        midnight = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(
            hour=0, minute=0, second=0, microsecond=0).timestamp()
        today = q.Range(midnight, now, HOURLY)  # hourly rows, then minutes, then 10 s

        def read(store: MetricStore, live: dict[SeriesKey, Point],
                 ts: float) -> tuple[dict[SeriesKey, Point], dict[SeriesKey, Point]]:
            return (q.totals(store, live, ts, keys, minute),  # its p99 needs the histograms
                    q.totals(store, live, ts, keys, today, hists=False))

        last, day = await m.query(keys, read)
        sheet = platform.prices().sheet(None)
        rows = []
        for f, key in zip(names, keys, strict=True):
            recent, whole = q.stats(last[key]), q.stats(day[key])
            invocations = recent["Invocations"] or 0.0
            estimate = cost.estimate(cost.Usage(
                whole["Invocations"] or 0.0, whole["BilledGBSeconds"] or 0.0,
                whole["Invocations"] or 0.0, (now - midnight) / 3600), sheet)
            states = [str(i["state"]) for v in platform.engine.running() if v.function == f
                      for i in platform.engine.status(v)["instances"]]  # type: ignore[attr-defined]
            rows.append({
                "function": f,
                "requests_per_s": invocations / (now - minute.first),
                "invocations_1m": invocations,
                "errors_1m": recent["Errors"],
                "throttles_1m": recent["Throttles"],
                "duration_p99_ms": recent["DurationP99"],
                "instances": len(states),
                "busy": states.count("busy"),
                "invocations_today": whole["Invocations"],
                "errors_today": whole["Errors"],
                "gb_seconds_today": whole["BilledGBSeconds"],
                "cost_today_usd": round(estimate.total_usd, 6),
            })
        return {"generated_at": now, "sheet": sheet.name, "functions": rows}

    @app.get("/admin/v1/cost", dependencies=guarded)
    async def get_cost(
        function: str | None = Query(None, description="one function; default: all"),
        since: str = Query("30d", description="3600, 15m, 1h, 30d (ago) or ISO 8601"),
        until: str | None = Query(None),
        sheet: str | None = Query(None, description="a price sheet of the price file"),
    ) -> dict[str, Any]:
        """Measured usage priced as AWS Lambda + API Gateway (requests, GB-seconds billed at
        each function's memory size, one API call per invocation), next to an always-on
        server sized for the observed peak (a core per concurrent execution, the memory of
        every instance alive) and to this machine, over the same hours. `{"since",
        "until", "hours", "sheet": {"name", "date", "source"}, "functions": [{"function",
        "memory_mb", "invocations", "gb_seconds", "peak_concurrency", "peak_instances",
        "total_usd"}], "aws": {estimate}, "this_machine": {...}}` where an estimate is
        `{"lambda_requests_usd", "lambda_compute_usd", "api_usd", "total_usd",
        "monthly_usd", "server": {"name", "count", "vcpus", "memory_gb", "monthly_usd",
        "total_usd"}, "saving_vs_server"}`."""
        m = metrics()
        now = time.time()
        prices = platform.prices()
        chosen = prices.sheet(sheet)
        names = platform.registry.functions()
        if function is not None:
            platform.registry.require(function)
            names = [function]
        start = q.parse_time(since, now, "since")
        end = now if until is None else q.parse_time(until, now, "until")
        if end <= start:
            raise InvalidParameter("field `until`: must be after `since`")
        # the range starts at the finest point kept there (10 s for a day, then 1 min);
        # it is read from the fewest rows that add up to it (days, hours, minutes, 10 s)
        period = FINE if start >= now - retention_s() else ROLLUP
        r = q.Range(start, end, period)
        keys = [SeriesKey(f) for f in names]
        got = await m.query(keys, lambda store, live, ts: q.totals(store, live, ts, keys, r,
                                                                   hists=False))
        hours = (end - start) / 3600
        rows = []
        sums = {"requests": 0.0, "gb_seconds": 0.0, "peak": 0.0, "memory_gb": 0.0}
        for f, key in zip(names, keys, strict=True):
            st = q.stats(got[key])
            memory_mb = platform.memory_mb(f)
            invocations = st["Invocations"] or 0.0
            gb_s = st["BilledGBSeconds"] or 0.0
            peak, instances = st["ConcurrentExecutions"] or 0.0, st["Instances"] or 0.0
            one = cost.estimate(cost.Usage(invocations, gb_s, invocations, hours), chosen)
            rows.append({"function": f, "memory_mb": memory_mb, "invocations": invocations,
                         "gb_seconds": gb_s, "peak_concurrency": peak,
                         "peak_instances": instances, "total_usd": one.total_usd})
            sums["requests"] += invocations
            sums["gb_seconds"] += gb_s
            sums["peak"] += peak
            sums["memory_gb"] += instances * memory_mb / 1024
        usage = cost.Usage(sums["requests"], sums["gb_seconds"], sums["requests"], hours,
                           sums["peak"], sums["memory_gb"])
        machine = cost.this_machine(prices, chosen, os.cpu_count() or 1,
                                    psutil.virtual_memory().total / 2**30, hours)
        return {"since": start, "until": end, "hours": hours,
                "sheet": {"name": chosen.name, "date": chosen.date, "source": chosen.source},
                "functions": rows, "usage": usage.__dict__,
                "aws": cost.estimate(usage, chosen).json(), "this_machine": machine}

    @app.get("/admin/v1/cost/scenario", dependencies=guarded)
    async def cost_scenario(
        scenario: str = Query(description='e.g. "10000/day 0.5s 8GB 22days" (+ peak=N)'),
        sheet: str | None = Query(None, description="a price sheet of the price file"),
    ) -> dict[str, Any]:
        """A month of imagined traffic priced as the measured one is: `{"scenario":
        {"per_day", "duration_s", "memory_gb", "days", "peak"}, "sheet", "usage", "aws":
        {estimate}, "this_machine"}`. With `sheet=spec` the spec's own example comes out:
        $14.63 + $0.04 + $0.22 = $14.89 a month, 77.5% less than its always-on server."""
        prices = platform.prices()
        chosen = prices.sheet(sheet)
        sc = cost.parse_scenario(scenario)
        usage = sc.usage(chosen)
        machine = cost.this_machine(prices, chosen, os.cpu_count() or 1,
                                    psutil.virtual_memory().total / 2**30, usage.hours)
        return {"scenario": sc.__dict__,
                "sheet": {"name": chosen.name, "date": chosen.date, "source": chosen.source},
                "usage": usage.__dict__, "aws": cost.estimate(usage, chosen).json(),
                "this_machine": machine}
