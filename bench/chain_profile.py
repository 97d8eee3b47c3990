"""Where a chained call's time goes: the CPU time per request of each process on the
path (the gateway, `relay`'s instance, `echo`'s instance) and their context switches,
for `echo` called directly and for `relay` -> `echo` (context.invoke), through the Invoke
API at concurrency 1, in alternating rounds. CPU time per request is far steadier than
latency on a shared machine, so it says what the hop costs even where a p50 cannot.

    .venv/bin/python -m bench.chain_profile [--requests 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx
import psutil

from bench.common import ROOT, Running, start_platform

Usage = dict[str, tuple[float, int, int]]  # part -> (cpu s, voluntary, involuntary switches)


def parts(platform: Running) -> dict[str, list[int]]:
    out = {"gateway": [platform.proc.pid]}
    with httpx.Client(base_url=platform.url, headers={"x-api-key": platform.admin_key}) as c:
        for name in ("relay", "echo"):
            out[name] = [inst["pid"] for runtime in
                         c.get(f"/admin/v1/functions/{name}").json()["runtime"]
                         for inst in runtime["instances"]]
    return out


def usage(pids: dict[str, list[int]]) -> Usage:
    out: Usage = {}
    for part, ps in pids.items():
        cpu, vol, inv = 0.0, 0, 0
        for pid in ps:
            proc = psutil.Process(pid)
            times, switches = proc.cpu_times(), proc.num_ctx_switches()
            cpu += times.user + times.system
            vol += switches.voluntary
            inv += switches.involuntary
        out[part] = (cpu, vol, inv)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    platform = start_platform(ROOT / "bench" / "chain.seed.toml")
    rows: dict[str, list[dict[str, float]]] = {"echo": [], "relay": []}
    try:
        with httpx.Client(base_url=platform.url,
                          headers={"x-api-key": platform.invoke_key}) as c:

            def call(function: str, i: int) -> None:
                r = c.post(f"/2015-03-31/functions/{function}/invocations?Qualifier=live",
                           json={"n": i})
                if r.status_code != 200 or "x-amz-function-error" in r.headers:
                    raise SystemExit(f"{function}: {r.status_code} {r.text}")

            for i in range(50):  # both warm: instances started, connections open
                call("echo", i)
                call("relay", i)
            pids = parts(platform)
            n = args.requests
            for _ in range(args.rounds):
                for function in ("echo", "relay"):
                    before, start = usage(pids), time.perf_counter()
                    latencies = []
                    for i in range(n):
                        t = time.perf_counter()
                        call(function, i)
                        latencies.append((time.perf_counter() - t) * 1000)
                    after = usage(pids)
                    row = {"p50_ms": statistics.median(latencies),
                           "requests_per_s": n / (time.perf_counter() - start)}
                    for part in pids:
                        row[f"{part}_cpu_us"] = (after[part][0] - before[part][0]) * 1e6 / n
                        row[f"{part}_switches"] = sum(
                            after[part][k] - before[part][k] for k in (1, 2)) / n
                    rows[function].append(row)
    finally:
        platform.stop()
    best = {f: {k: min(r[k] for r in rs) for k in rs[0]} for f, rs in rows.items()}
    print(json.dumps({"rounds": rows, "best": best}, indent=2))
    d, r = best["echo"], best["relay"]
    print(f"\nCPU per request (us, best of {args.rounds} rounds of {args.requests}):")
    for part in ("gateway", "relay", "echo"):
        print(f"  {part:8} direct {d[f'{part}_cpu_us']:7.0f}   chained {r[f'{part}_cpu_us']:7.0f}"
              f"   (+{r[f'{part}_cpu_us'] - d[f'{part}_cpu_us']:.0f}; context switches "
              f"{d[f'{part}_switches']:.1f} -> {r[f'{part}_switches']:.1f})")
    added = sum(r[f"{p}_cpu_us"] - d[f"{p}_cpu_us"] for p in ("gateway", "relay", "echo"))
    print(f"  the hop adds {added:.0f} us of CPU per call; p50 {d['p50_ms']:.3f} -> "
          f"{r['p50_ms']:.3f} ms")


if __name__ == "__main__":
    main()
