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
from bench.model_throughput import single_latency, throughput

UNIQUE = ROOT / "bench" / "unique.lua"


def body() -> str:
    image = (ROOT / "tests" / "data" / "handwriting" / "00-cwTeXKai.jpg").read_bytes()
    return json.dumps({"esun_uuid": "UUID", "esun_timestamp": int(time.time()),
                       "image": base64.b64encode(image).decode(), "retry": 2})


def burst(host: str, port: int, key: str, n: int = 1000) -> dict[str, float]:
    """n requests at once (n connections opened together, each sending one question with
    its own esun_uuid) against a cold function: no instance, no template."""
    import asyncio

    template = body()

    async def one(i: int, t0: float) -> tuple[int, float]:
        payload = template.replace("UUID", f"{i:064x}").encode()
        request = (f"POST /inference HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                   "Connection: close\r\n\r\n").encode() + payload
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        writer.close()
        return status, time.perf_counter() - t0

    async def run() -> list[tuple[int, float]]:
        t0 = time.perf_counter()
        return await asyncio.gather(*(one(i, t0) for i in range(n)))

    results = asyncio.run(run())
    times = sorted(t for _, t in results)
    return {"requests": n, "ok": sum(1 for s, _ in results if s == 200),
            "p50_s": times[n // 2], "p99_s": times[int(0.99 * (n - 1))], "slowest_s": times[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    alone = throughput(64, 2, 10)
    single = single_latency()
    platform = start_platform()
    try:
        key = platform.invoke_key
        url = f"{platform.url}/inference"
        host, port = platform.url.removeprefix("http://").split(":")
        cold = burst(host, int(port), key)  # first: nothing runs for handwriting yet
        c1 = wrk(url, 1, 10, 1, key, body(), script=UNIQUE)
        c1000 = wrk(url, 1000, args.seconds, 2, key, body(), script=UNIQUE)
    finally:
        platform.stop()
    report = {"model_alone_2proc_batch64": alone, "model_single_image": single,
              "cold_burst_1000": cold, "c1": asdict(c1),
              "c1_p50_over_model_ms": c1.p50_ms - single["p50_ms"],
              "c1000": asdict(c1000),
              "share_of_model_alone": c1000.requests_per_s / alone}
    print(json.dumps(report, indent=2))
    print(f"\npreprocess + model alone (2 processes, batch 64): {alone:,.0f} images/s")
    print(f"cold burst of 1000 at once: {cold['ok']} of 1000 answered 200, p50 "
          f"{cold['p50_s']:.2f} s, p99 {cold['p99_s']:.2f} s, slowest {cold['slowest_s']:.2f} s")
    print(f"POST /inference, concurrency 1:    {c1.row()} (p50 {c1.p50_ms - single['p50_ms']:+.2f} "
          f"ms over the model's own single-image p50, {single['p50_ms']:.2f} ms)")
    print(f"POST /inference, 1000 connections: {c1000.row()} "
          f"({report['share_of_model_alone']:.0%} of the model alone)")


if __name__ == "__main__":
    main()
