"""Shared pieces of the benchmarks: a real `mlambda up`, wrk, and wrk's report parsed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "post.lua"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    invoke_key: str
    admin_key: str

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def start_platform(seed: Path | None = None, env: dict[str, str] | None = None) -> Running:
    data = Path(tempfile.mkdtemp(prefix="mlambda-bench-"))
    port = free_port()
    cmd = [sys.executable, "-m", "mlambda.cli", "up", "--port", str(port), "--data",
           str(data / "data")]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MLAMBDA_LOG_LEVEL": "warning", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, "mlambda up")
    keys = {r: (data / "data" / f"{r}.key").read_text().strip() for r in ("invoke", "admin")}
    return Running(proc, url, keys["invoke"], keys["admin"])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 60) -> None:
    """Until `url`/healthz answers 200; raises if `proc` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not become healthy")
        time.sleep(0.1)


@dataclass
class WrkResult:
    command: str
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) + non-2xx responses

    def row(self) -> str:
        return (f"{self.requests_per_s:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 "
                f"{self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms, {self.errors} errors "
                f"of {self.requests:,}")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: int, threads: int, key: str,
        body: str | None = None, timeout_s: int = 10, script: Path = LUA) -> WrkResult:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
           "--latency", "-s", str(script), url]
    env = {**os.environ, "KEY": key, "RUN": str(time.time_ns() % 2**31)}  # unique.lua's ids
    if body is not None:
        env["BODY"] = body
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    dist = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", out, re.M))
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(
        command=" ".join(cmd),
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(dist["50"]), p90_ms=_ms(dist["90"]), p99_ms=_ms(dist["99"]),
        max_ms=_ms(latency.group(3)) if latency else 0.0,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=errors,
    )
