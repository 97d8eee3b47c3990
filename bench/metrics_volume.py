"""How much disk the metrics of N invocations take: `--invocations` spread evenly over
`--functions` functions and `--days` days (evenly is the worst case for the store: every
interval of every series has a row), recorded through the real hot-path code
(`Metrics.on_outcome`, `on_alias_outcome`, `request`, then `absorb` as the writer thread
runs it) and written through the real
`MetricStore` as retention leaves it: 10 s points for the last day, 1-minute and 1-hour
rollups for the whole range. Each function has four series (function, alias, version,
route).

Target (issue 10): the metrics and logs of 10 million invocations under 2 GB; this
measures the metrics side (the logs helper's bench measures the logs).

    .venv/bin/python -m bench.metrics_volume [--invocations 10000000] [--functions 20] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from mlambda.engines.local import LocalEngine
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.spec import FunctionSpec
from mlambda.telemetry.metrics import Gauges, Metrics, merged
from mlambda.telemetry.metricstore import (
    DAILY,
    FINE,
    HOURLY,
    ROLLUP,
    MetricStore,
    SeriesKey,
)
from mlambda.telemetry.series import Point


def outcome(rng: random.Random, cold: bool) -> Outcome:
    duration = rng.lognormvariate(3.5, 0.6)  # ~33 ms median, a long tail
    return Outcome("r", "1", b"", None, 200, (), duration, rng.expovariate(1 / 3.0),
                   rng.uniform(200, 900) if cold else None, 300, "", rng.choice((1, 1, 2, 4)),
                   "i")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=10_000_000)
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep metrics.db here (default: a temporary directory, removed)")
    args = parser.parse_args()
    where = args.dir or Path(tempfile.mkdtemp(prefix="mlambda-metrics-volume-"))
    where.mkdir(parents=True, exist_ok=True)
    store = MetricStore(where / "metrics.db")
    engine = LocalEngine(str(where))  # never started: only its type is needed
    os.rmdir(engine.rundir)
    metrics = Metrics(store, engine)
    rng = random.Random(1)
    refs = [VersionRef(f"fn{i:02d}", "1", "", FunctionSpec(name=f"fn{i:02d}",
                                                           handler="app.handler"))
            for i in range(args.functions)]
    minutes = int(args.days * 1440)
    per_minute = args.invocations / minutes / len(refs)
    end = int(time.time() // HOURLY * HOURLY)
    start = end - minutes * 60
    fine_from = end - 86400
    hour: dict[SeriesKey, Point] = {}
    day: dict[SeriesKey, Point] = {}
    recorded = 0
    began = time.perf_counter()

    def run(n: int) -> None:
        nonlocal recorded
        for ref in refs:
            for _ in range(n):
                o = outcome(rng, cold=rng.random() < 0.002)
                metrics.on_outcome(ref, o)
                metrics.on_alias_outcome(ref.function, "live", o, 512)
                metrics.request(f"POST /{ref.function}", 200, (o.duration_ms + 2) / 1000)
                recorded += 1
        busy = rng.randint(0, 2)
        gauges: Gauges = [(ref.function, "1", {"idle": 2 - busy, "busy": busy}, 0)
                          for ref in refs]
        events, metrics.pending = metrics.pending, []
        metrics.absorb(events, gauges)  # what the writer thread does with them

    def take() -> dict[SeriesKey, Point]:
        metrics.count_busy()
        metrics.busy = {}
        window, metrics.window = merged(metrics.window), {}
        return window

    for m in range(minutes):
        ts = start + 60 * m
        minute: dict[SeriesKey, Point] = {}
        if ts >= fine_from:  # the last day: six 10 s points, then their minute
            for k in range(6):
                run(_draw(rng, per_minute / 6))
                window = take()
                store.write(ts + FINE * k, window, FINE)
                for key, p in window.items():
                    minute.setdefault(key, Point()).merge(p)
        else:
            run(_draw(rng, per_minute))
            minute = take()
        store.write(ts, minute, ROLLUP)
        for key, p in minute.items():
            hour.setdefault(key, Point()).merge(p)
        if (ts + 60) % HOURLY == 0:
            store.write(ts, hour, HOURLY)
            for key, p in hour.items():
                day.setdefault(key, Point()).merge(p)
            hour = {}
        if (ts + 60) % DAILY == 0:
            store.write(ts, day, DAILY)
            day = {}
        if m % 1440 == 1439:
            print(f"day {(m + 1) // 1440}: {recorded:,} invocations, "
                  f"{store.bytes_on_disk() / 2**20:,.1f} MiB", flush=True)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = dict(store.db.execute("SELECT period, COUNT(*) FROM points GROUP BY period"))
    size = store.bytes_on_disk()
    store.close()
    report = {
        "invocations": recorded, "functions": len(refs), "days": args.days,
        "series": len(store.ids), "rows": rows, "bytes": size,
        "bytes_per_invocation": size / max(recorded, 1),
        "seconds": time.perf_counter() - began, "file": str(where / "metrics.db"),
    }
    print(json.dumps(report, indent=2))
    if args.dir is None:
        shutil.rmtree(where)
    print(f"\nmetrics of {recorded:,} invocations ({len(refs)} functions, {args.days:g} "
          f"days): {size / 2**20:,.1f} MiB on disk ({size / max(recorded, 1):.1f} bytes per "
          f"invocation); target: metrics + logs of 10 M invocations < 2 GB")


def _draw(rng: random.Random, mean: float) -> int:
    """A whole number of invocations with the given mean (the remainder by chance)."""
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


if __name__ == "__main__":
    main()
