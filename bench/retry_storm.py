"""A retry storm on `POST /inference`: every question is sent three times (retry 2, 1, 0,
each on its own connection, `--delay` seconds apart, whatever the answer: E.SUN's caller
resends after 1 s), over `--connections` keep-alive connections in all.

Target (issue 8): the handwriting function's invocations equal the distinct questions,
and the three answers to a question are the same.

    .venv/bin/python -m bench.retry_storm [--seconds 20] [--connections 1000] [--delay 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

import httpx

from bench.clients import Connection, image_b64, percentile, question
from bench.common import start_platform

ATTEMPTS = 3


def invocations(url: str, admin_key: str) -> int:
    """Events the handwriting function's instances were given, every version summed."""
    r = httpx.get(f"{url}/admin/v1/functions/handwriting", headers={"x-api-key": admin_key},
                  timeout=30)
    r.raise_for_status()
    return sum(int(v.get("invocations", 0)) for v in r.json()["runtime"])


def store_stats(url: str, admin_key: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/admin/v1/idempotency", headers={"x-api-key": admin_key}, timeout=30)
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


async def storm(host: str, port: int, key: str, callers: int, seconds: float,
                delay: float, run: int) -> dict[str, Any]:
    images = [image_b64(i) for i in range(16)]
    deadline = time.monotonic() + seconds
    questions = 0
    unequal = 0  # questions whose attempts got different answers
    failed = 0  # attempts answered with something else than 200
    latencies: list[float] = []

    async def attempt(conn: Connection, uuid: str, image: str, n: int) -> bytes | None:
        nonlocal failed
        await asyncio.sleep(n * delay)
        t0 = time.perf_counter()
        try:
            status, content = await conn.post("/inference", question(uuid, image, 2 - n))
        except (OSError, asyncio.IncompleteReadError):
            status, content = 0, b""
        latencies.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            failed += 1
            return None
        return content

    async def caller(c: int) -> None:
        nonlocal questions, unequal
        conns = [Connection(host, port, key) for _ in range(ATTEMPTS)]
        n = 0
        try:
            while time.monotonic() < deadline:
                n += 1
                uuid = f"{run:08x}{c:08x}{n:048x}"  # unique to this run, caller, question
                image = images[(c + n) % len(images)]
                answers = await asyncio.gather(*(attempt(conns[i], uuid, image, i)
                                                 for i in range(ATTEMPTS)))
                questions += 1
                got = {a for a in answers if a is not None}
                if len(got) > 1:
                    unequal += 1
        finally:
            for conn in conns:
                conn.close()

    await asyncio.gather(*(caller(c) for c in range(callers)))
    latencies.sort()
    return {"questions": questions, "attempts": questions * ATTEMPTS, "failed": failed,
            "questions_with_unequal_answers": unequal,
            "attempt_p50_ms": percentile(latencies, 0.5),
            "attempt_p99_ms": percentile(latencies, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=1000,
                        help="connections in all; each caller holds three")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds between a question's attempts (0: all at once)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.connections + 512))  # ours and the server's
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    platform = start_platform()
    try:
        host, port_text = platform.url.removeprefix("http://").split(":")
        callers = max(1, args.connections // ATTEMPTS)
        asyncio.run(storm(host, int(port_text), platform.invoke_key, min(callers, 32), 1.0, 0,
                          run=0))
        before = invocations(platform.url, platform.admin_key)
        stats_before = store_stats(platform.url, platform.admin_key)
        result = asyncio.run(storm(host, int(port_text), platform.invoke_key, callers,
                                   args.seconds, args.delay, run=1))
        added = invocations(platform.url, platform.admin_key) - before
        stats = store_stats(platform.url, platform.admin_key)
    finally:
        platform.stop()
    store = {k: stats[k] - stats_before.get(k, 0) for k in ("leads", "joins", "replays",
                                                            "mismatches")}
    report = {"connections": callers * ATTEMPTS, "callers": callers, "delay_s": args.delay,
              **result, "invocations": added, "store": store,
              "target": "invocations == questions, no question with unequal answers"}
    print(json.dumps(report, indent=2))
    ok = added == result["questions"] and result["questions_with_unequal_answers"] == 0
    print(f"\n{result['questions']} distinct questions, {result['attempts']} attempts "
          f"({result['failed']} not 200) over {callers * ATTEMPTS} connections: "
          f"{added} invocations of the function ({store['joins']} joined, "
          f"{store['replays']} replayed): {'meets' if ok else 'misses'} the target")


if __name__ == "__main__":
    main()
