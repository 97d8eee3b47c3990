"""POST /inference at 1000 connections (wrk), served by the one `handwriting` function and
then by the two-function pipeline (handwriting-pre -> handwriting-infer through
context.invoke), on the same platform, moving the route between the runs. Target: the
pipeline reaches at least 90% of the single function's requests/s (issue 11).

    .venv/bin/python -m bench.pipeline_http [--seconds 30] [--connections 1000]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import httpx

from bench.common import ROOT, start_platform, wrk
from bench.inference_http import UNIQUE, body

TARGET_SHARE = 0.9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    platform = start_platform(ROOT / "bench" / "chain.seed.toml")
    results = {}
    try:
        url = f"{platform.url}/inference"
        key = platform.invoke_key
        for target in ("handwriting:live", "handwriting-pre:live"):
            r = httpx.post(f"{platform.url}/admin/v1/routes",
                           headers={"x-api-key": platform.admin_key},
                           json={"method": "POST", "path": "/inference", "target": target})
            r.raise_for_status()
            wrk(url, 64, args.warmup, 1, key, body(), script=UNIQUE)  # instances up
            results[target] = wrk(url, args.connections, args.seconds, 2, key, body(),
                                  script=UNIQUE)
    finally:
        platform.stop()
    single, piped = results["handwriting:live"], results["handwriting-pre:live"]
    share = piped.requests_per_s / single.requests_per_s
    print(json.dumps({"single": asdict(single), "pipeline": asdict(piped), "share": share,
                      "target_share": TARGET_SHARE, "pass": share >= TARGET_SHARE}, indent=2))
    print(f"\none function, {args.connections} connections: {single.row()}")
    print(f"pipeline,     {args.connections} connections: {piped.row()}")
    print(f"pipeline / one function: {share:.0%} of the requests/s (target >= "
          f"{TARGET_SHARE:.0%}): {'PASS' if share >= TARGET_SHARE else 'FAIL'}")


if __name__ == "__main__":
    main()
