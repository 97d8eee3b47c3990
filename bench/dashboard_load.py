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


def http_loads(c: httpx.Client, names: list[str], rounds: int) -> dict[str, list[float]]:
    """A page and the data requests its script makes, one after the other."""
    out: dict[str, list[float]] = {"overview": [], "function_30d": [], "function_15m": []}
    for _ in range(rounds):
        t = time.perf_counter()
        c.get("/dashboard/").raise_for_status()
        c.get("/dashboard/api/metrics/overview").raise_for_status()
        out["overview"].append((time.perf_counter() - t) * 1000)
        for name in names:
            for since, label in (("30d", "function_30d"), ("15m", "function_15m")):
                t = time.perf_counter()
                c.get(f"/dashboard/functions/{name}").raise_for_status()
                c.get("/dashboard/api/metrics", params={"function": name, "since": since}
                      ).raise_for_status()
                c.get(f"/dashboard/api/functions/{name}").raise_for_status()
                c.get("/dashboard/api/logs", params={"function": name, "since": since,
                                                     "limit": 200}).raise_for_status()
                out[label].append((time.perf_counter() - t) * 1000)
    return out


def browser_loads(url: str, key: str, names: list[str], work: Path) -> dict[str, list[float]]:
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
    out: dict[str, list[float]] = {"overview": [], "function_30d": []}
    try:
        d.get(url + "/dashboard/signin")
        d.find_element(By.ID, "key").send_keys(key)
        d.find_element(By.ID, "signin").click()
        wait_for(lambda: d.current_url.endswith("/dashboard/"), 30, "signed in")
        for _ in range(3):
            d.get(url + "/dashboard/")
            wait_for(lambda: d.execute_script(
                "return document.querySelectorAll('#overview tbody tr').length") >= len(names),
                30, "the overview")
            out["overview"].append(float(d.execute_script("return performance.now()")))
        for name in names:
            d.get(f"{url}/dashboard/functions/{name}#range=30d")
            wait_for(lambda: d.execute_script(
                "return [...document.querySelectorAll('.chart')].every(f => f.dataset.points"
                " && f.querySelector('canvas'))"), 30, "the charts")
            out["function_30d"].append(float(d.execute_script("return performance.now()")))
    finally:
        d.quit()
    return out


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(pct(v, 95), 1),
                "max_ms": round(max(v), 1), "n": len(v)} for k, v in samples.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--functions", type=int, default=20)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--invocations", type=int, default=1_000_000,
                    help="log rows written to measure bytes per invocation")
    ap.add_argument("--print-share", type=float, default=0.2,
                    help="share of invocations whose handler printed a line")
    ap.add_argument("--rounds", type=int, default=3, help="HTTP rounds over every page")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium timings")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlambda-bench-dash-"))
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
    result: dict[str, Any] = {
        "functions": args.functions, "days": args.days, "invocations": args.invocations,
        "print_share": args.print_share, "fill_s": round(filled_s, 1),
        "logs_bytes": logs_bytes, "logs_bytes_per_invocation": round(per_invocation, 1),
        "metrics_bytes": metrics_bytes,
        "projected_10M_bytes": round(per_invocation * TEN_MILLION + metrics_bytes),
        "target_10M_bytes": 2 * 1024**3,
    }
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
            result["chromium"] = summary(browser_loads(server.url, server.admin_key, names,
                                                       work))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["data"] = str(data)
    result["target_page_ms"] = 300
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
