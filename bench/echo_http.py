"""`echo` over HTTP: the platform's overhead at concurrency 1, and throughput and latency
at 1000 concurrent connections (wrk, on this same 2-core machine).

    .venv/bin/python bench/echo_http.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict

import httpx

from bench.common import ROOT, free_port, start_platform, wrk


def handler_durations(url: str, key: str, n: int) -> list[float]:
    """The handler's own time per call, from the REPORT line of each invocation's log."""
    out = []
    with httpx.Client(headers={"x-api-key": key, "X-Amz-Log-Type": "Tail"}) as c:
        for i in range(n):
            r = c.post(f"{url}/2015-03-31/functions/echo/invocations?Qualifier=live",
                       json={"n": i})
            log = base64.b64decode(r.headers["x-amz-log-result"]).decode()
            out.append(float(re.search(r"\tDuration: ([\d.]+) ms", log).group(1)))  # type: ignore[union-attr]
    return out


def baseline(seconds: int) -> dict[str, object]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port),
         "--loop", "asyncio", "--http", "httptools", "--no-access-log", "--log-level",
         "warning", "--backlog", "4096"], cwd=ROOT)
    try:
        time.sleep(1.5)
        return asdict(wrk(f"http://127.0.0.1:{port}/", 1, seconds, 1, "none"))
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    platform = start_platform()
    try:
        url = f"{platform.url}/echo"
        durations = handler_durations(platform.url, platform.invoke_key, 300)
        c1 = wrk(url, 1, args.seconds // 2, 1, platform.invoke_key)
        c1000 = wrk(url, 1000, args.seconds, 2, platform.invoke_key)
    finally:
        platform.stop()
    floor = baseline(args.seconds // 2)
    handler_p50 = statistics.median(durations)
    report = {
        "handler_p50_ms": handler_p50,
        "c1": asdict(c1),
        "overhead_p50_ms": c1.p50_ms - handler_p50,
        "bare_uvicorn_c1": floor,
        "c1000": asdict(c1000),
    }
    print(json.dumps(report, indent=2))
    print(f"\nconcurrency 1:    {c1.row()}")
    print(f"handler's own time p50: {handler_p50:.3f} ms -> overhead p50 "
          f"{report['overhead_p50_ms']:.3f} ms (bare uvicorn echo p50: {floor['p50_ms']:.3f} ms)")
    print(f"1000 connections: {c1000.row()}")


if __name__ == "__main__":
    main()
