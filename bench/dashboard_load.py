"""The dashboard with a month of history, and what logs take on disk.

1. Fills real stores: registers `--functions` functions (copies of echo), writes
   `--days` of their metrics into DATA/metrics.db as the server keeps them (1-minute and
   1-hour rollups for the whole range, 10 s points for the last day), and
   `--invocations` invocation logs into DATA/logs.db (a share of them with a printed
   line, as a handler's output).
2. Measures the bytes on disk: logs per invocation, extrapolated to 10 M invocations,
   plus the metrics store (bounded by its retention, not by the traffic).
   Target: metrics + logs of 10 M invocations < 2 GB.
3. Starts `mlambda up` on that data, signs in, and times dashboard page loads: over
   HTTP (the page and the data requests its script makes), and in headless Chromium
   (navigation start -> every chart drawn with the 30-day range, or the overview's
   table filled). Target: a page in < 300 ms.

    .venv/bin/python -m bench.dashboard_load                       # 20 functions, 30 days
    .venv/bin/python -m bench.dashboard_load --days 0.1 --functions 2 --invocations 2000
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from mlambda.registry import Alias, Registry
from mlambda.telemetry import series as s
from mlambda.telemetry.logstore import INVOCATION, LogRecord, LogStore
from mlambda.telemetry.metricstore import (
    DAILY,
    FINE,
    HOURLY,
    ROLLUP,
    MetricStore,
    SeriesKey,
)
from mlambda.telemetry.series import Point
from tests.conftest import start_server, wait_for

ROOT = Path(__file__).resolve().parent.parent
TEN_MILLION = 10_000_000
OUTPUTS = ["predicted 國 p=0.93", "loaded model handwriting@0d34f62e7015",
           "preprocess: 12 strokes, contrast 0.82", "batch of 8 in 14.2 ms"]


def register(data: Path, functions: int, work: Path) -> list[str]:
    registry = Registry(data)
    names = []
    for i in range(functions):
        name = f"fn{i:02d}"
        bundle = work / "bundles" / name
        shutil.copytree(ROOT / "functions" / "echo", bundle,
                        ignore=shutil.ignore_patterns("__pycache__"))
        toml = bundle / "function.toml"
        toml.write_text(re.sub(r'^name = ".*"$', f'name = "{name}"', toml.read_text(),
                               flags=re.M))
        latest = registry.put_latest(bundle)
        version = registry.publish(latest.function)
        registry.set_alias(Alias(name, "live", version.version))
        names.append(name)
    registry.close()
    return names


def point(rng: random.Random, seconds: int) -> Point:
    p = Point()
    n = max(1, int(rng.expovariate(1 / (seconds * 2))))  # about 2 requests a second
    p.add(s.INVOCATIONS, n)
    if rng.random() < 0.05:
        p.add(s.labelled(s.ERRORS, "Handled"), 1 + rng.randrange(3))
    if rng.random() < 0.02:
        p.add(s.labelled(s.THROTTLES, "QueueFull"), 1 + rng.randrange(5))
    if rng.random() < 0.1:
        p.add(s.COLD_STARTS, 1)
        p.observe(s.INIT_DURATION, rng.uniform(50, 400))
    p.add(s.BILLED_GB_S, n * 0.05 * 0.125)
    for _ in range(min(n, 8)):
        p.observe(s.DURATION, rng.lognormvariate(3, 0.6))
        p.observe(s.QUEUE_WAIT, rng.expovariate(1 / 3))
        p.observe(s.BATCH_SIZE, 1 + rng.randrange(8))
    p.gauge(s.CONCURRENT, rng.randrange(1, 6))
    p.gauge(s.labelled(s.INSTANCES, "idle"), rng.randrange(1, 4))
    p.gauge(s.labelled(s.INSTANCES, "busy"), rng.randrange(0, 3))
    p.gauge(s.QUEUE_DEPTH, rng.randrange(0, 20))
    p.gauge(s.MAX_MEMORY, rng.uniform(40, 120))
    return p


def fill_metrics(data: Path, names: list[str], days: float, now: float) -> None:
    store = MetricStore(data / "metrics.db")
    rng = random.Random(1)
    start = now - days * 86400
    tiers = [(ROLLUP, start), (HOURLY, start), (DAILY, start), (FINE, max(start, now - 86400))]
    for name in names:
        keys = [SeriesKey(name), SeriesKey(name, alias="live"), SeriesKey(name, version="1")]
        for period, first in tiers:
            with store.transaction():
                ts = int(first // period * period)
                while ts < now - period:
                    p = point(rng, period)
                    for key in keys:
                        store.merge_row(period, store.series_id(key), ts, p)
                    ts += period
    with store.transaction():
        for period in (ROLLUP, HOURLY, DAILY):
            store.set_meta(f"rolled_until_{period}", (now - FINE) // period * period)
    store.close()


def fill_logs(data: Path, names: list[str], invocations: int, days: float, now: float,
              print_share: float) -> None:
    store = LogStore(data / "logs.db")
    rng = random.Random(2)
    start = now - days * 86400
    step = (now - start) / max(1, invocations)
    batch: list[LogRecord] = []
    for i in range(invocations):
        printed = rng.random() < print_share
        error = rng.random() < 0.01
        batch.append(LogRecord(
            ts=start + i * step, function=names[i % len(names)], version="1",
            kind=INVOCATION,
            text=(rng.choice(OUTPUTS) + "\n") if printed else
            ("[ERROR] Handled: bad input\n" if error else ""),
            request_id=str(uuid.uuid4()), error_type="Handled" if error else None,
            duration_ms=rng.lognormvariate(3, 0.6),
            init_ms=rng.uniform(50, 400) if rng.random() < 0.01 else None,
            memory_mb=128, max_memory_mb=rng.randrange(40, 120)))
        if len(batch) == 10_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def sign_in(url: str, key: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    form = c.get("/dashboard/signin").text
    token = form.split('name="csrf" value="')[1].split('"')[0]
    r = c.post("/dashboard/signin", data={"key": key, "csrf": token})
    assert r.status_code == 303, r.text
    return c


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# what the page's script asks for (dashboard.js: CHARTS)
CHART_SERIES = ("Invocations,Errors,Throttles,DurationP50,DurationP99,ConcurrentExecutions,"
                "Instances,ColdStarts,BatchSizeAvg,BatchSizeMax")


def http_loads(c: httpx.Client, names: list[str], rounds: int) -> dict[str, list[float]]:
    """A page and the data requests its script makes, one after the other (the server's
    whole work for the page; a browser makes them at once)."""
    out: dict[str, list[float]] = {"overview": [], "function_30d": [], "function_15m": []}
    for _ in range(rounds):
        t = time.perf_counter()
        c.get("/dashboard/").raise_for_status()
        c.get("/dashboard/api/metrics/overview").raise_for_status()
        c.get("/dashboard/api/cost", params={"since": "30d"}).raise_for_status()
        out["overview"].append((time.perf_counter() - t) * 1000)
        for name in names:
            for since, label in (("30d", "function_30d"), ("15m", "function_15m")):
                t = time.perf_counter()
                c.get(f"/dashboard/functions/{name}").raise_for_status()
                c.get("/dashboard/api/metrics", params={"function": name, "since": since,
                                                        "series": CHART_SERIES}
                      ).raise_for_status()
                c.get(f"/dashboard/api/functions/{name}").raise_for_status()
                c.get("/dashboard/api/logs", params={"function": name, "since": since,
                                                     "limit": 200}).raise_for_status()
                out[label].append((time.perf_counter() - t) * 1000)
    return out


# Installed in every page before its own script: the long tasks (> 50 ms of the main
# thread at once) of the load, which PerformanceObserver does not buffer for later.
LONG_TASKS = """
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
} catch (e) {}
"""

# Where one load's time went, read from the page once its "mlambda:ready" mark is set:
# Navigation Timing (the HTML), Resource Timing (each static file and data request),
# the page's own User Timing (each answer's body parsed, the charts drawn, tables and
# logs rendered), paint timing and the long tasks.
BREAKDOWN = r"""
const nav = performance.getEntriesByType("navigation")[0];
const ready = performance.getEntriesByName("mlambda:ready")[0].startTime;
const paint = performance.getEntriesByName("first-contentful-paint")[0];
const out = {
  ready: ready, html_ttfb: nav.responseStart, html_end: nav.responseEnd,
  dom_content_loaded: nav.domContentLoadedEventEnd, fcp: paint ? paint.startTime : null,
  long_tasks_ms: window.__longTasks.filter(([t]) => t < ready)
    .reduce((sum, [, d]) => sum + d, 0),
  long_tasks: window.__longTasks.filter(([t]) => t < ready).length,
};
for (const r of performance.getEntriesByType("resource")) {
  if (r.startTime > ready) continue;
  const u = new URL(r.name);
  const api = u.pathname.startsWith("/dashboard/api/");
  const key = api ? "api " + u.pathname.slice("/dashboard/api/".length)
                                .replace(/^functions\/.+/, "functions")
                  : "static " + u.pathname.split("/").pop();
  out[key + " | start"] = r.startTime;
  out[key + " | wait"] = r.responseStart - r.startTime;  // sent -> first byte (0: cached)
  out[key + " | end"] = r.responseEnd;
  out[key + " | kB"] = r.transferSize / 1000;  // 0 when served from the cache
}
for (const m of performance.getEntriesByType("measure")) {
  if (m.name.startsWith("mlambda:") && m.startTime < ready) {
    const key = "script " + m.name.slice("mlambda:".length)
      .replace(/^body functions\/.+/, "body functions");
    out[key] = (out[key] || 0) + m.duration;
  }
}
return out;
"""


def browser_loads(url: str, key: str, names: list[str], work: Path,
                  rounds: int) -> dict[str, list[dict[str, float]]]:
    """Page loads in headless Chromium, each timed by the page itself: navigation start
    -> its "mlambda:ready" mark (the overview's two tables filled; a function's six
    charts drawn, its versions and its logs shown), with the breakdown above."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", f"--user-data-dir={work / 'profile'}",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LONG_TASKS})
    out: dict[str, list[dict[str, float]]] = {"overview": [], "function_30d": [],
                                              "function_15m": []}

    def load(path: str) -> dict[str, float]:
        d.get(url + path)
        wait_for(lambda: d.execute_script(
            "return performance.getEntriesByName('mlambda:ready').length"), 30, path)
        return {k: float(v) for k, v in d.execute_script(BREAKDOWN).items() if v is not None}

    try:
        d.get(url + "/dashboard/signin")
        d.find_element(By.ID, "key").send_keys(key)
        d.find_element(By.ID, "signin").click()
        wait_for(lambda: d.current_url.endswith("/dashboard/"), 30, "signed in")
        for _ in range(rounds):
            # a page differing only in its #range is not loaded again: another page between
            for since in ("30d", "15m"):
                out["overview"].append(load("/dashboard/"))
                for name in names:
                    out[f"function_{since}"].append(
                        load(f"/dashboard/functions/{name}#range={since}"))
    finally:
        d.quit()
    return out


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(pct(v, 95), 1),
                "max_ms": round(max(v), 1), "n": len(v)} for k, v in samples.items() if v}


def breakdown(loads: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per page: the load (navigation -> ready) as p50/p95/max, the first load apart (its
    static files not yet cached), and the median of each part: the HTML and the page's
    events; each request as "start -> end ms (wait for the first byte), kB on the wire";
    the page's own work (answers parsed, charts drawn, tables and logs rendered)."""
    out: dict[str, Any] = {}
    for page, samples in loads.items():
        if not samples:
            continue

        def median(key: str) -> float:
            return round(statistics.median([s[key] for s in samples if key in s]), 1)  # noqa: B023

        keys = sorted({k for s in samples for k in s})
        ready = [s["ready"] for s in samples]
        requests = {}
        for name in sorted({k.split(" | ")[0] for k in keys if " | " in k}):
            requests[name] = (f"{median(name + ' | start')} -> {median(name + ' | end')} ms "
                              f"(first byte after {median(name + ' | wait')}), "
                              f"{median(name + ' | kB')} kB")
        out[page] = {
            "ready_ms": {"p50": round(statistics.median(ready), 1),
                         "p95": round(pct(ready, 95), 1), "max": round(max(ready), 1),
                         "first": round(ready[0], 1), "n": len(ready)},
            "page_ms": {k: median(k) for k in ("html_ttfb", "html_end", "dom_content_loaded",
                                               "fcp", "long_tasks", "long_tasks_ms")
                        if k in keys},
            "requests": requests,
            "script_ms": {k[len("script "):]: median(k) for k in keys
                          if k.startswith("script ")},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=20)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--invocations", type=int, default=1_000_000,
                    help="log rows written to measure bytes per invocation")
    ap.add_argument("--print-share", type=float, default=0.2,
                    help="share of invocations whose handler printed a line")
    ap.add_argument("--rounds", type=int, default=3, help="HTTP rounds over every page")
    ap.add_argument("--browser-rounds", type=int, default=2,
                    help="Chromium rounds over every page (the overview, each function at 30 "
                         "days and at 15 min)")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium timings")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--data", type=Path, default=None,
                    help="time the pages on this data directory (one a --keep run filled) "
                         "instead of filling a new one (its first --functions functions): no "
                         "sizes reported")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlambda-bench-dash-"))
    result: dict[str, Any] = {}
    if args.data is not None:
        data = args.data
        registry = Registry(data)
        names = registry.functions()[:args.functions]
        registry.close()
        result.update({"data": str(data), "functions": len(names)})
    else:
        data = work / "data"
        data.mkdir()
        now = time.time()
        t = time.perf_counter()
        names = register(data, args.functions, work)
        fill_metrics(data, names, args.days, now)
        fill_logs(data, names, args.invocations, args.days, now, args.print_share)
        filled_s = time.perf_counter() - t
        logs_bytes, metrics_bytes = size(data / "logs.db"), size(data / "metrics.db")
        per_invocation = logs_bytes / max(1, args.invocations)
        result.update({
            "functions": args.functions, "days": args.days, "invocations": args.invocations,
            "print_share": args.print_share, "fill_s": round(filled_s, 1),
            "logs_bytes": logs_bytes, "logs_bytes_per_invocation": round(per_invocation, 1),
            "metrics_bytes": metrics_bytes,
            "projected_10M_bytes": round(per_invocation * TEN_MILLION + metrics_bytes),
            "target_10M_bytes": 2 * 1024**3,
        })
    empty_seed = work / "seed.toml"
    empty_seed.write_text("")
    server = start_server(work, seed=empty_seed, data=data)
    try:
        c = sign_in(server.url, server.admin_key)
        try:
            http_loads(c, names[:1], 1)  # warm: first queries open the stores
            result["http"] = summary(http_loads(c, names, args.rounds))
        finally:
            c.close()
        if not args.no_browser:
            result["chromium"] = breakdown(browser_loads(
                server.url, server.admin_key, names, work, args.browser_rounds))
    finally:
        server.stop()
        if args.keep and args.data is None:
            result["data"] = str(data)
            shutil.rmtree(work / "profile", ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)  # with --data: only the run's own files
    result["target_page_ms"] = 300
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
