"""The Ray engine against the local engine, in one run (issue 12's targets):

1. `POST /inference` at 1000 connections, local engine, then the Ray engine (a one-machine
   Ray that `mlambda up --engine ray` starts): ray >= 80% of local's requests/s, its p99
   under 1000 ms, zero errors.
2. From zero replicas, a burst of 1000 at once through the Ray engine: the slowest under 5 s.
3. With --clusters: a 1-node Ray cluster (1 CPU) against a 2-node one (1 CPU each), the
   gateway joining each with --ray-address: 2 nodes >= 1.8x 1 node.

Each run reports the gateway's own CPU per request (its process only, not the replicas):
what one core of gateway can front.

    .venv/bin/python -m bench.ray_engine [--seconds 30] [--clusters]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import httpx
import psutil

from bench.common import Running, start_platform, wrk
from bench.inference_http import UNIQUE, body, burst


def warm(platform: Running) -> None:
    r = httpx.post(f"{platform.url}/inference", content=body().replace("UUID", "0" * 64),
                   headers={"x-api-key": platform.invoke_key}, timeout=120)
    r.raise_for_status()


def load(platform: Running, seconds: int, cold_burst: bool = False) -> dict[str, Any]:
    """(A cold burst, then) warm, then wrk at 1000 connections; with the gateway's CPU."""
    out: dict[str, Any] = {}
    host, port = platform.url.removeprefix("http://").split(":")
    if cold_burst:
        out["cold_burst_1000"] = burst(host, int(port), platform.invoke_key)
    warm(platform)
    gateway = psutil.Process(platform.proc.pid)
    before = gateway.cpu_times()
    result = wrk(f"{platform.url}/inference", 1000, seconds, 2, platform.invoke_key, body(),
                 script=UNIQUE)
    after = gateway.cpu_times()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    out["c1000"] = asdict(result)
    out["gateway_cpu_ms_per_request"] = 1000 * cpu_s / max(1, result.requests)
    return out


def run(env: dict[str, str], seconds: int, cold_burst: bool = False) -> dict[str, Any]:
    platform = start_platform(env=env)
    try:
        return load(platform, seconds, cold_burst)
    finally:
        platform.stop()


def on_cluster(nodes: int, seconds: int) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        return run({"MLAMBDA_ENGINE": "ray", "MLAMBDA_RAY_ADDRESS": cluster.address}, seconds)
    finally:
        cluster.shutdown()


def rps(result: dict[str, Any]) -> float:
    return float(result["c1000"]["requests_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--clusters", action="store_true",
                        help="also compare a 1-node and a 2-node Ray cluster")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "local": run({"MLAMBDA_ENGINE": "local"}, args.seconds),
        "ray": run({"MLAMBDA_ENGINE": "ray"}, args.seconds, cold_burst=True),
    }
    if args.clusters:
        report["cluster_1_node"] = on_cluster(1, args.seconds)
        report["cluster_2_nodes"] = on_cluster(2, args.seconds)
    print(json.dumps(report, indent=2))
    local, ray = report["local"], report["ray"]
    share = rps(ray) / max(rps(local), 1e-9)
    p99 = ray["c1000"]["p99_ms"]
    cold = ray["cold_burst_1000"]
    print(f"\nlocal: {rps(local):,.0f} req/s, gateway {local['gateway_cpu_ms_per_request']:.3f}"
          f" ms CPU per request")
    print(f"ray:   {rps(ray):,.0f} req/s ({share:.0%} of local; target >= 80%), p99 "
          f"{p99:.0f} ms (target < 1000), {ray['c1000']['errors']} errors (target 0), gateway "
          f"{ray['gateway_cpu_ms_per_request']:.3f} ms CPU per request")
    print(f"ray cold burst of 1000: {cold['ok']} answered 200, slowest "
          f"{cold['slowest_s']:.2f} s (target < 5 s)")
    ok = (share >= 0.8 and p99 < 1000 and ray["c1000"]["errors"] == 0
          and cold["ok"] == 1000 and cold["slowest_s"] < 5)
    if args.clusters:
        one, two = report["cluster_1_node"], report["cluster_2_nodes"]
        scale = rps(two) / max(rps(one), 1e-9)
        print(f"1 node: {rps(one):,.0f} req/s; 2 nodes: {rps(two):,.0f} req/s = {scale:.2f}x "
              f"(target >= 1.8x); gateway {two['gateway_cpu_ms_per_request']:.3f} ms CPU per "
              "request")
        ok = ok and scale >= 1.8
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
