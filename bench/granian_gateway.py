"""The same mlambda gateway (the Platform's raw ASGI app, lifespan and all) served by
granian, a Rust HTTP server, instead of uvicorn with our httptools protocol
(mlambda/gateway/connection.py, GuardedHttp): `echo` and `POST /inference` at 1000
connections under each, measured alternately in one run (issue 14, part 3).

granian runs from its own venv outside the repository (~/.cache/mlambda-bench/granian-*:
granian and uvloop pinned; a .pth file lets it import this checkout and the packages of
the venv running this script, so it serves the current code with mlambda's own
dependencies). It is never a dependency of mlambda.

What granian does not give that GuardedHttp does (see docs/mosec.md and the report): no
body deadline, and its header deadline, header caps and connection cap (if any) answer
in hyper's plain text or by closing, not our JSON 408/431/503.

    .venv/bin/python -m bench.granian_gateway [--seconds 20] [--connections 1000] \
        [--servers uvicorn,granian] [--passes 2]

granian's entry point (in its worker process): `bench.granian_gateway:app`, a factory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import core_shares
from bench.common import (
    LUA,
    ROOT,
    Running,
    WrkResult,
    free_port,
    start_platform,
    wait_healthy,
    wrk,
)
from bench.core_shares import Sample
from bench.inference_http import UNIQUE, body
from bench.mosec_peer import loaded
from bench.venvs import bench_venv

GRANIAN = "2.8.9"
UVLOOP = "0.23.0"


def app() -> Any:
    """granian's factory: the platform `mlambda up` builds, from the MLAMBDA_* variables,
    as its ASGI app (the gateway answers lifespan: start and drain as under uvicorn)."""
    from mlambda.server import Platform, raise_open_files
    from mlambda.settings import Settings

    settings = Settings.load()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_files(settings.max_connections + 1024)
    return Platform(settings).gateway


def granian_python() -> Path:
    return bench_venv(f"granian-{GRANIAN}", [f"granian=={GRANIAN}", f"uvloop=={UVLOOP}"],
                      see_mlambda=True)


def start_granian(loop: str) -> Running:
    """`mlambda up`'s platform under granian: one worker process (the gateway is one
    process under uvicorn too), one Rust runtime thread, the same backlog."""
    data = Path(tempfile.mkdtemp(prefix="mlambda-bench-granian-")) / "data"
    port = free_port()
    cmd = [str(granian_python()), "-m", "granian", "--interface", "asgi", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--runtime-threads", "1", "--loop", loop, "--backlog", "4096", "--no-ws",
           "--log-level", "warning", "--no-access-log", "bench.granian_gateway:app"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MLAMBDA_DATA": str(data),
                                 "MLAMBDA_PORT": str(port),
                                 "MLAMBDA_LOG_LEVEL": "warning"},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, f"granian ({' '.join(cmd)})")
    except RuntimeError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    keys = {r: (data / f"{r}.key").read_text().strip() for r in ("invoke", "admin")}
    return Running(proc, url, keys["invoke"], keys["admin"])


def sampler(server: str, running: Running) -> Callable[[int | None], Sample]:
    """bench.core_shares' roles (the gateway's event loop and other threads, templates,
    instances, wrk). Under uvicorn the gateway is `mlambda up` itself; under granian, its
    worker process (whose other threads are granian's Rust runtime), and granian's main
    process, which only supervises, is counted apart."""
    def sample(wrk_pid: int | None) -> Sample:
        if server == "uvicorn":
            return core_shares.sample(running.proc.pid, wrk_pid)
        workers = psutil.Process(running.proc.pid).children()
        if not workers:
            raise RuntimeError("granian has no worker process")
        s = core_shares.sample(workers[0].pid, wrk_pid)
        for tid, ticks in core_shares.thread_ticks(running.proc.pid).items():
            s.threads[("granian: supervisor", running.proc.pid, tid)] = ticks
        return s
    return sample


@dataclass
class Run:
    server: str
    echo: WrkResult
    echo_cores: dict[str, float]
    inference: WrkResult
    inference_cores: dict[str, float]

    def lines(self) -> list[str]:
        out = []
        for name, result, cores in (("echo", self.echo, self.echo_cores),
                                    ("POST /inference", self.inference, self.inference_cores)):
            out.append(f"{self.server:>15} {name:<16} {result.row()}")
            per = 1e6 / result.requests_per_s if result.requests_per_s else 0.0
            out += [f"{'':>16}  {role:<26} {used:5.2f} cores {used * per:6.0f} us/request"
                    for role, used in cores.items()]
        return out


def measure(server: str, connections: int, seconds: int, threads: int) -> Run:
    running = (start_platform() if server == "uvicorn"
               else start_granian("uvloop" if server == "granian-uvloop" else "asyncio"))
    try:
        key = running.invoke_key
        echo_url, inference_url = f"{running.url}/echo", f"{running.url}/inference"
        # warm: the instances the autoscaler wants for this load are up
        wrk(echo_url, connections, 2, threads, key)
        echo, echo_cores = loaded(echo_url, key, connections, seconds, threads,
                                  sampler(server, running), question=None, script=LUA)
        wrk(inference_url, connections, 2, threads, key, body(), script=UNIQUE)
        inference, inference_cores = loaded(inference_url, key, connections, seconds, threads,
                                            sampler(server, running))
    finally:
        if server == "uvicorn":
            running.stop()
        else:
            os.killpg(running.proc.pid, signal.SIGTERM)
            try:
                running.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(running.proc.pid, signal.SIGKILL)
                running.proc.wait(10)
    return Run(server, echo, echo_cores, inference, inference_cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="wrk's -t")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--servers", default="uvicorn,granian",
                        help="uvicorn (GuardedHttp, as shipped), granian (asyncio loop), "
                             "granian-uvloop (fails today: mlambda/runtime/supervisor.py "
                             "asserts an asyncio.Transport, which uvloop's is not)")
    args = parser.parse_args()
    servers = args.servers.split(",")
    unknown = set(servers) - {"uvicorn", "granian", "granian-uvloop"}
    if unknown:
        raise SystemExit(f"--servers: unknown {sorted(unknown)}")
    granian_python()  # made before anything is timed
    runs = [measure(server, args.connections, args.seconds, args.threads)
            for _ in range(args.passes) for server in servers]
    print(json.dumps([asdict(r) for r in runs], indent=2))
    print(f"\n{args.connections} connections, {args.seconds} s each, wrk -t{args.threads}, "
          f"passes alternate {', '.join(servers)}:")
    for run in runs:
        print("\n".join(run.lines()))


if __name__ == "__main__":
    main()
