"""What usage plans and key checks cost: `POST /inference` at 1000 connections (wrk), with
a key that has every check (a usage plan with a quota, a scope, an expiry) against a key
with none of them (its hash is still looked up: the gateway has no way to skip keys).

One platform, one run, rounds alternating A and B (ABBA order, so drift in the machine's
load falls on both alike). The plan's limits are far above what the run can reach, so
nothing is throttled: the figure is the cost of the checks and the counting alone.
Target (issue 8): plans and key checks cost at most 3% of requests/s.

    .venv/bin/python -m bench.plans_overhead [--seconds 30] [--rounds 3] [--connections 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict

import httpx

from bench.common import start_platform, wrk
from bench.inference_http import UNIQUE, body
from mlambda.client import Client

CONNECTIONS = 1000
TARGET_OVERHEAD = 0.03


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="ABBA rounds (each A and B)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args()
    platform = start_platform()
    try:
        with Client(platform.url, platform.admin_key) as admin:
            admin.create_plan("bench", rate=1e7, burst=10_000_000, quota=10**12, period="day")
            planned = admin.create_key("bench-planned", "invoke", plan="bench",
                                       functions=["handwriting"], expires_in_s=86400)["secret"]
        keys = {"plans on": planned, "plans off": platform.invoke_key}
        payload = body().replace("UUID", "0" * 64)
        for name, key in keys.items():  # each key works, and only A carries RateLimit-*
            r = httpx.post(f"{platform.url}/inference", content=payload, timeout=60,
                           headers={"x-api-key": key, "content-type": "application/json"})
            r.raise_for_status()
            assert ("ratelimit-limit" in r.headers) == (name == "plans on"), r.headers
        url = f"{platform.url}/inference"
        wrk(url, args.connections, max(5, args.seconds // 3), 2, platform.invoke_key, body(),
            script=UNIQUE)  # warm up: instances scaled out at this load
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in keys}
        order = []
        for i in range(args.rounds):
            order += ["plans on", "plans off"] if i % 2 == 0 else ["plans off", "plans on"]
        for name in order:
            result = wrk(url, args.connections, args.seconds, 2, keys[name], body(), script=UNIQUE)
            runs[name].append(asdict(result))
            print(f"{name:9}: {result.row()}", flush=True)
    finally:
        platform.stop()
    rps = {name: statistics.mean(float(r["requests_per_s"]) for r in rs)  # type: ignore[arg-type]
           for name, rs in runs.items()}
    if not rps["plans off"]:
        raise SystemExit("no request completed within a run: give it more --seconds")
    overhead = 1.0 - rps["plans on"] / rps["plans off"]
    report = {"connections": args.connections, "seconds": args.seconds, "order": order,
              "runs": runs, "mean_requests_per_s": rps, "overhead": overhead,
              "target_overhead": TARGET_OVERHEAD, "target_met": overhead <= TARGET_OVERHEAD}
    print(json.dumps(report, indent=2))
    print(f"\nPOST /inference, {args.connections} connections, {args.rounds} ABBA rounds of "
          f"{args.seconds} s: plans on {rps['plans on']:,.0f} req/s, plans off "
          f"{rps['plans off']:,.0f} req/s: overhead {overhead:+.1%} (target <= "
          f"{TARGET_OVERHEAD:.0%}: {'met' if overhead <= TARGET_OVERHEAD else 'NOT met'})")


if __name__ == "__main__":
    main()
