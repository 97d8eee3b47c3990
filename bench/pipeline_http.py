"""POST /inference at 1000 connections (wrk), served by the one `handwriting` function and
then by the two-function pipeline (handwriting-pre -> handwriting-infer through
context.invoke), on the same platform, moving the route between the runs. Target: the
pipeline reaches at least 90% of the single function's requests/s (issue 11).

It also says where the cores go: the CPU time per answered request of the gateway, of
each function's instances and of wrk, from /proc (psutil) over each run.

    .venv/bin/python -m bench.pipeline_http [--seconds 30] [--connections 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
from dataclasses import asdict

import httpx
import psutil

from bench.common import ROOT, Running, start_platform, wrk
from bench.inference_http import UNIQUE, body

TARGET_SHARE = 0.9
FUNCTIONS = ("handwriting", "handwriting-pre", "handwriting-infer")


def cpu_by_process(platform: Running) -> dict[str, dict[int, float]]:
    """CPU seconds so far: the gateway's, and each function's instances' by pid."""
    out: dict[str, dict[int, float]] = {"gateway": {platform.proc.pid: 0.0}}
    with httpx.Client(base_url=platform.url, headers={"x-api-key": platform.admin_key}) as c:
        for name in FUNCTIONS:
            out[name] = {}
            for runtime in c.get(f"/admin/v1/functions/{name}").json()["runtime"]:
                for inst in runtime["instances"]:
                    out[name][inst["pid"]] = 0.0
    for procs in out.values():
        for pid in procs:
            try:
                t = psutil.Process(pid).cpu_times()
                procs[pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return out


def wrk_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    platform = start_platform(ROOT / "bench" / "chain.seed.toml")
    results = {}
    where: dict[str, dict[str, float]] = {}
    try:
        url = f"{platform.url}/inference"
        key = platform.invoke_key
        for target in ("handwriting:live", "handwriting-pre:live"):
            r = httpx.post(f"{platform.url}/admin/v1/routes",
                           headers={"x-api-key": platform.admin_key},
                           json={"method": "POST", "path": "/inference", "target": target})
            r.raise_for_status()
            # the same load first, so that every instance the autoscaler wants is up (and
            # its model loaded) before the measured run
            wrk(url, args.connections, args.warmup, 2, key, body(), script=UNIQUE)
            before, wrk_before = cpu_by_process(platform), wrk_cpu()
            result = wrk(url, args.connections, args.seconds, 2, key, body(), script=UNIQUE)
            after, wrk_after = cpu_by_process(platform), wrk_cpu()
            results[target] = result
            us = {"wrk": (wrk_after - wrk_before) * 1e6 / max(1, result.requests)}
            started = 0
            for part, procs in after.items():
                # an instance started during the run is not counted: its init (the model's
                # load) is not a cost per request
                spent = sum(t - before[part][pid] for pid, t in procs.items()
                            if pid in before.get(part, {}))
                started += sum(1 for pid in procs if pid not in before.get(part, {}))
                if spent > 0:
                    us[part] = spent * 1e6 / max(1, result.requests)
            us["instances_started_during_the_run"] = started
            where[target] = us
    finally:
        platform.stop()
    single, piped = results["handwriting:live"], results["handwriting-pre:live"]
    share = piped.requests_per_s / single.requests_per_s
    print(json.dumps({"single": asdict(single), "pipeline": asdict(piped), "share": share,
                      "cpu_us_per_request": where, "target_share": TARGET_SHARE,
                      "pass": share >= TARGET_SHARE}, indent=2))
    print(f"\none function, {args.connections} connections: {single.row()}")
    print(f"pipeline,     {args.connections} connections: {piped.row()}")
    for target, us in where.items():
        started = us.pop("instances_started_during_the_run")
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in us.items())
        print(f"CPU per request (us), {target}: {parts}; total {sum(us.values()):,.0f} "
              f"({started:.0f} instances started during the run, not counted)")
    print(f"pipeline / one function: {share:.0%} of the requests/s (target >= "
          f"{TARGET_SHARE:.0%}): {'PASS' if share >= TARGET_SHARE else 'FAIL'}")


if __name__ == "__main__":
    main()
