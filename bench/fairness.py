"""Fair sharing between API keys on `POST /inference`: a light key's latency, alone and
then beside a flood from a heavy key with ten times its connections (wrk).

Target (issue 8): the light key's p99 under the flood stays under 2x its unloaded p99.

    .venv/bin/python -m bench.fairness [--seconds 20] [--heavy 1000] [--light 100]

The heavy key is the data directory's invoke key, the light key its admin key (any two
keys; `--heavy-key/--light-key` to use keys with plans). Each light connection sends its
next question when the previous one is answered, after `--light-interval` seconds at
the earliest (0: at once). Every question has its own esun_uuid, so none is a retry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass

from bench.clients import Connection, image_b64, percentile, question
from bench.common import ROOT, start_platform, wrk
from bench.inference_http import body

UNIQUE = ROOT / "bench" / "unique.lua"


@dataclass
class Latencies:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def row(self) -> str:
        return (f"{self.requests} requests, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
                f"max {self.max_ms:.1f} ms, {self.errors} errors")


async def light_load(host: str, port: int, key: str, connections: int, seconds: float,
                     interval: float, tag: str) -> Latencies:
    images = [image_b64(i) for i in range(8)]
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def caller(c: int) -> None:
        nonlocal errors
        conn = Connection(host, port, key)
        n = 0
        try:
            while time.monotonic() < deadline:
                n += 1
                payload = question(f"{tag}-{c}-{n}".ljust(64, "0"), images[n % len(images)])
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.post("/inference", payload)
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                took = time.perf_counter() - t0
                if status == 200:
                    latencies.append(took * 1000)
                else:
                    errors += 1
                if interval > took:
                    await asyncio.sleep(interval - took)
        finally:
            conn.close()

    await asyncio.gather(*(caller(c) for c in range(connections)))
    latencies.sort()
    return Latencies(len(latencies), errors, percentile(latencies, 0.5),
                     percentile(latencies, 0.99), latencies[-1] if latencies else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--heavy", type=int, default=1000, help="the heavy key's connections")
    parser.add_argument("--light", type=int, default=100, help="the light key's connections")
    parser.add_argument("--light-interval", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--heavy-key")
    parser.add_argument("--light-key")
    args = parser.parse_args()
    platform = start_platform()
    try:
        heavy_key = args.heavy_key or platform.invoke_key
        light_key = args.light_key or platform.admin_key
        host, port_text = platform.url.removeprefix("http://").split(":")
        port = int(port_text)
        warm = max(1.0, args.seconds / 10)  # instances started, model loaded
        asyncio.run(light_load(host, port, light_key, args.light, warm, 0, "warm"))
        alone = asyncio.run(light_load(host, port, light_key, args.light, args.seconds,
                                       args.light_interval, "alone"))
        # the flood starts first and outlasts the measurement by a margin on each side
        margin = max(1, round(args.seconds / 10))
        flood_s = int(args.seconds) + 2 * margin
        result: dict[str, object] = {}

        async def both() -> Latencies:
            loop = asyncio.get_running_loop()
            heavy = loop.run_in_executor(None, lambda: wrk(
                f"{platform.url}/inference", args.heavy, flood_s, args.threads, heavy_key,
                body(), script=UNIQUE))
            await asyncio.sleep(margin)
            light = await light_load(host, port, light_key, args.light, args.seconds,
                                     args.light_interval, "flood")
            result["heavy"] = asdict(await heavy)
            return light

        loaded = asyncio.run(both())
    finally:
        platform.stop()
    ratio = loaded.p99_ms / alone.p99_ms
    report = {"heavy_connections": args.heavy, "light_connections": args.light,
              "light_interval_s": args.light_interval, "light_alone": asdict(alone),
              "light_under_flood": asdict(loaded), "heavy_flood": result["heavy"],
              "p99_ratio": ratio, "target": "p99_ratio < 2"}
    print(json.dumps(report, indent=2))
    heavy = result["heavy"]
    assert isinstance(heavy, dict)
    print(f"\nlight key ({args.light} connections) alone:       {alone.row()}")
    print(f"light key beside the flood ({args.heavy} conn.): {loaded.row()}")
    print(f"heavy key flood: {heavy['requests_per_s']:,.0f} req/s, p99 {heavy['p99_ms']:.1f} ms, "
          f"{heavy['errors']} errors of {heavy['requests']:,}")
    print(f"light p99 under flood / alone: {ratio:.2f}x "
          f"({'meets' if ratio < 2 else 'misses'} the target of < 2x)")


if __name__ == "__main__":
    main()
