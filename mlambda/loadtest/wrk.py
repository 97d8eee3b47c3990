"""Driving wrk (Debian's package) with loadtest.lua: a C load generator, so that the
measurement is of the server, not of the Python that sends the requests."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mlambda.loadtest.bodies import Bodies
from mlambda.loadtest.samples import Samples
from mlambda.loadtest.target import Target

SCRIPT = Path(__file__).with_name("loadtest.lua")


def available() -> bool:
    return shutil.which("wrk") is not None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def steady(target: Target, key: str | None, bodies: Bodies, concurrency: int,
           duration_s: float, timeout_s: float = 10.0, threads: int = 2) -> Samples:
    with tempfile.TemporaryDirectory(prefix="mlambda-loadtest-") as tmp:
        templates = Path(tmp) / "bodies.txt"
        templates.write_text("\n".join(bodies.templates) + "\n")
        out = Path(tmp) / "samples.txt"
        env = {**os.environ, "MLAMBDA_LT_BODIES": str(templates), "MLAMBDA_LT_KEY": key or "",
               "MLAMBDA_LT_NONCE": bodies.nonce, "MLAMBDA_LT_CHECK": bodies.kind,
               "MLAMBDA_LT_OUT": str(out), "MLAMBDA_LT_METHOD": target.method}
        threads = max(1, min(threads, concurrency))
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
               f"--timeout={max(1, round(timeout_s))}s", "-s", str(SCRIPT), target.url]
        cpu = _children_cpu()
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        samples = Samples("wrk", concurrency, start, ended=time.monotonic())
        samples.cpu_s = _children_cpu() - cpu
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}"
                               f"{proc.stdout.strip()}")
        read_samples(out.read_text(), samples)
    return samples


def read_samples(text: str, samples: Samples) -> None:
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "errors":
            for kind, n in zip(("connect", "read", "write", "status", "timeout"),
                               map(int, rest.split()), strict=True):
                # wrk counts non-2xx answers as "status" errors: those are wrong answers,
                # counted from the samples; the others are connection failures
                if n and kind != "status":
                    samples.error(kind, n)
        elif word == "percentile":
            p, us = rest.split()
            samples.wrk_percentiles_ms[p] = int(us) / 1000
        else:
            done_us, sent_us, ok = map(int, line.split())
            latency = (done_us - sent_us) / 1e6 if sent_us >= 0 else -1.0
            samples.add(done_us / 1e6, latency, ok == 1)
