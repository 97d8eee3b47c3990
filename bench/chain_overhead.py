"""What a chained call costs: p50 latency of `relay` (which calls `echo` through
context.invoke) against `echo` called directly, both through the Invoke API at
concurrency 1, alternating so that both see the same machine. Target: the chained call
adds at most 0.5 ms at p50 (issue 11).

    .venv/bin/python -m bench.chain_overhead [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from bench.common import ROOT, start_platform

TARGET_MS = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    platform = start_platform(ROOT / "bench" / "chain.seed.toml")
    direct: list[float] = []
    chained: list[float] = []
    inside: list[float] = []
    try:
        with httpx.Client(base_url=platform.url,
                          headers={"x-api-key": platform.invoke_key}) as c:

            def call(function: str, i: int) -> tuple[float, httpx.Response]:
                start = time.perf_counter()
                r = c.post(f"/2015-03-31/functions/{function}/invocations?Qualifier=live",
                           json={"n": i})
                elapsed = (time.perf_counter() - start) * 1000
                if r.status_code != 200 or "x-amz-function-error" in r.headers:
                    raise SystemExit(f"{function}: {r.status_code} {r.text}")
                return elapsed, r

            for i in range(50):  # warm both: instances started, connections open
                call("echo", i)
                call("relay", i)
            deadline = time.monotonic() + args.seconds
            i = 0
            while time.monotonic() < deadline:
                ms, _ = call("echo", i)
                direct.append(ms)
                ms, r = call("relay", i)
                chained.append(ms)
                inside.append(r.json()["call_ms"])
                i += 1
    finally:
        platform.stop()
    added = statistics.median(chained) - statistics.median(direct)
    report = {
        "pairs": len(direct),
        "direct_p50_ms": statistics.median(direct),
        "direct_p99_ms": percentile(direct, 0.99),
        "chained_p50_ms": statistics.median(chained),
        "chained_p99_ms": percentile(chained, 0.99),
        "invoke_inside_handler_p50_ms": statistics.median(inside),
        "added_p50_ms": added,
        "target_ms": TARGET_MS,
        "pass": added <= TARGET_MS,
    }
    print(json.dumps(report, indent=2))
    print(f"\necho direct p50 {report['direct_p50_ms']:.3f} ms; relay -> echo p50 "
          f"{report['chained_p50_ms']:.3f} ms; the chained call adds {added:.3f} ms at p50 "
          f"(target <= {TARGET_MS} ms): {'PASS' if report['pass'] else 'FAIL'}; "
          f"context.invoke inside the handler: p50 {report['invoke_inside_handler_p50_ms']:.3f} ms")


if __name__ == "__main__":
    main()
