"""`POST /inference` end to end at 1000 concurrent connections (wrk), next to the
throughput of preprocess + model alone measured in the same run (two processes, batch 64).

    .venv/bin/python -m bench.inference_http [--seconds 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from dataclasses import asdict

from bench.common import ROOT, start_platform, wrk
from bench.model_throughput import throughput


def body() -> str:
    image = (ROOT / "tests" / "data" / "handwriting" / "00-cwTeXKai.jpg").read_bytes()
    return json.dumps({"esun_uuid": "0" * 64, "esun_timestamp": int(time.time()),
                       "image": base64.b64encode(image).decode(), "retry": 2})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    alone = throughput(64, 2, 10)
    platform = start_platform()
    try:
        key = platform.invoke_key
        url = f"{platform.url}/inference"
        c1 = wrk(url, 1, 10, 1, key, body())
        c1000 = wrk(url, 1000, args.seconds, 2, key, body())
    finally:
        platform.stop()
    report = {"model_alone_2proc_batch64": alone, "c1": asdict(c1), "c1000": asdict(c1000),
              "share_of_model_alone": c1000.requests_per_s / alone}
    print(json.dumps(report, indent=2))
    print(f"\npreprocess + model alone (2 processes, batch 64): {alone:,.0f} images/s")
    print(f"POST /inference, concurrency 1:    {c1.row()}")
    print(f"POST /inference, 1000 connections: {c1000.row()} "
          f"({report['share_of_model_alone']:.0%} of the model alone)")


if __name__ == "__main__":
    main()
