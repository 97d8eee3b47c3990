"""Where the two cores go while `POST /inference` is under load: the gateway (its event
loop thread and its other threads: metrics, logs, SQLite), the instances, the templates,
the load generator (wrk), anything else on the machine, and idle; read from /proc
(per-thread CPU times and the machine's own counters) over a window in the middle of a
wrk run, so the shares add up to the machine's cores.

    .venv/bin/python -m bench.core_shares [--connections 1000] [--seconds 20]
        [--env MLAMBDA_TELEMETRY=0] [--seed FILE] [--echo]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.common import LUA, WrkResult, start_platform, wrk
from bench.inference_http import UNIQUE, body

TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, idle) ticks of all cores together since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, idle


def thread_ticks(pid: int) -> dict[int, int]:
    """utime + stime of each thread of `pid`."""
    out: dict[int, int] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = int(rest[11]) + int(rest[12])
    return out


@dataclass
class Sample:
    at: float
    machine: tuple[int, int]
    threads: dict[tuple[str, int, int], int] = field(default_factory=dict)  # (role, pid, tid)


def roles(gateway: int, wrk_pid: int | None) -> dict[int, str]:
    """pid -> role, for the gateway, its templates and instances, and wrk."""
    out = {gateway: "gateway"}
    try:  # templates are the gateway's children; instances are forked by templates
        for template in psutil.Process(gateway).children():
            out[template.pid] = "template"
            for child in template.children(recursive=True):
                out[child.pid] = "instance"
    except psutil.Error:
        pass
    if wrk_pid is not None:
        out[wrk_pid] = "wrk"
    return out


def sample(gateway: int, wrk_pid: int | None) -> Sample:
    s = Sample(time.monotonic(), machine_ticks())
    for pid, role in roles(gateway, wrk_pid).items():
        for tid, ticks in thread_ticks(pid).items():
            name = role
            if role == "gateway":
                name = "gateway: event loop" if tid == pid else "gateway: other threads"
            s.threads[(name, pid, tid)] = ticks
    return s


def shares(a: Sample, b: Sample, cores: int) -> dict[str, float]:
    """Cores used by each role between two samples (the whole machine adds up to `cores`)."""
    seconds = b.at - a.at
    out: dict[str, float] = {}
    for key, ticks in b.threads.items():
        used = ticks - a.threads.get(key, 0) if key in a.threads else ticks
        out[key[0]] = out.get(key[0], 0.0) + used / TICK / seconds
    busy = (b.machine[0] - a.machine[0]) / TICK / seconds
    idle = (b.machine[1] - a.machine[1]) / TICK / seconds
    total = busy + idle  # = cores, give or take a tick
    scale = cores / total if total else 1.0
    out = {k: v * scale for k, v in sorted(out.items())}
    out["other processes"] = max(0.0, busy * scale - sum(out.values()))
    out["idle"] = idle * scale
    return out


def instance_pids(gateway: int) -> list[int]:
    return [pid for pid, role in roles(gateway, None).items() if role == "instance"]


def measure(connections: int, seconds: int, env: dict[str, str] | None = None,
            seed: Path | None = None, echo: bool = False) -> dict[str, object]:
    """The shares under `POST /inference` (or `POST /echo` with a small JSON body)."""
    platform = start_platform(seed, env=env)
    try:
        key = platform.invoke_key
        url = f"{platform.url}/echo" if echo else f"{platform.url}/inference"
        payload, script = (None, LUA) if echo else (body(), UNIQUE)
        wrk(url, 8, 2, 1, key, payload, script=script)  # warm: the instances are up
        result: dict[str, WrkResult] = {}

        def load() -> None:
            result["wrk"] = wrk(url, connections, seconds, 1, key, payload, script=script)

        runner = threading.Thread(target=load)
        runner.start()
        time.sleep(1.5)  # connections open, queue full
        wrk_pid = next((p.pid for p in psutil.Process().children(recursive=True)
                        if p.name() == "wrk"), None)
        window = max(1.0, seconds - 4.0)
        a = sample(platform.proc.pid, wrk_pid)
        time.sleep(window)
        b = sample(platform.proc.pid, wrk_pid)
        runner.join()
        cores = os.cpu_count() or 1
        w = result["wrk"]
        return {"cores": shares(a, b, cores), "instances": len(instance_pids(platform.proc.pid)),
                "wrk": asdict(w)}
    finally:
        platform.stop()


def table(report: dict[str, object]) -> str:
    cores: dict[str, float] = report["cores"]  # type: ignore[assignment]
    w: dict[str, object] = report["wrk"]  # type: ignore[assignment]
    rps = float(w["requests_per_s"])  # type: ignore[arg-type]
    lines = [f"{w['requests_per_s']:,.0f} req/s, p50 {w['p50_ms']:.1f} ms, p99 "
             f"{w['p99_ms']:.1f} ms, {w['errors']} errors; {report['instances']} instances",
             f"{'share of the cores':<26} {'cores':>6} {'us/request':>11}"]
    for name, used in cores.items():
        per = f"{used / rps * 1e6:11.0f}" if rps and name != "idle" else f"{'':11}"
        lines.append(f"{name:<26} {used:6.2f} {per}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the platform, e.g. MLAMBDA_TELEMETRY=0")
    parser.add_argument("--seed", type=Path, help="another seed file (functions and routes)")
    parser.add_argument("--echo", action="store_true", help="POST /echo instead of /inference")
    args = parser.parse_args()
    env = dict(pair.split("=", 1) for pair in args.env)
    report = measure(args.connections, args.seconds, env, args.seed, args.echo)
    print(json.dumps(report, indent=2, default=str))
    print(table(report))


if __name__ == "__main__":
    main()
