"""mlambda beside Mosec, the fastest peer (issue 14): the same handwriting model, the same
E.SUN `POST /inference` contract and the same load, measured alternately in one session.

Mosec (a Rust HTTP front end with Python workers and dynamic batching) runs
bench/mosec_server.py in its own venv, made here outside the repository (never a
dependency of mlambda): ~/.cache/mlambda-bench/mosec-<MOSEC>, with Mosec pinned and numpy,
onnxruntime, pillow and simplejpeg pinned as mlambda pins them. Its workers import the
function's own modules (functions/handwriting: esun, preprocess, classifier) by path.

1. The model alone (bench.model_throughput: 2 processes, batch 64): the ceiling.
2. Mosec's layouts swept (short runs at the same concurrency): one batched stage with
   N workers, or a decode stage then a batched model stage; each with max_wait_time in
   `--waits`. The best (zero errors, then most requests/s) is the one compared.
3. `--passes` A/B passes: mlambda (`mlambda up`) then Mosec with the best layout, each
   checked for correct answers on every fixture image (the same answers as the model
   run here on the same preprocessing, the four keys, esun_uuid echoed, server_uuid),
   warmed, then loaded by wrk with bench/unique.lua (a new esun_uuid per request) at
   `--connections`, and at concurrency 1. While wrk runs, the cores are split as
   bench/core_shares.py splits them (per-thread CPU time from /proc): mlambda's gateway
   (event loop, other threads), templates and instances; Mosec's Rust front end, its
   Python workers and its manager; wrk; other processes; idle.

    .venv/bin/python -m bench.mosec_peer [--seconds 30] [--connections 1000] [--passes 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from bench import core_shares
from bench.clients import IMAGES, question
from bench.common import ROOT, WrkResult, free_port, start_platform, wrk
from bench.core_shares import Sample, machine_ticks, shares, thread_ticks
from bench.inference_http import UNIQUE, body
from bench.model_throughput import MODEL, throughput
from bench.venvs import bench_venv, pins

MOSEC = "0.9.8"
SHARED = ("numpy", "onnxruntime", "pillow", "simplejpeg")  # pinned as mlambda pins them
SERVER = ROOT / "bench" / "mosec_server.py"
FUNCTION = ROOT / "functions" / "handwriting"
KEYS = {"esun_uuid", "server_uuid", "answer", "server_timestamp"}


# -- Mosec's venv and server --------------------------------------------------------------

def mosec_python() -> Path:
    return bench_venv(f"mosec-{MOSEC}", [f"mosec=={MOSEC}", *pins(*SHARED)])


@dataclass(frozen=True)
class Layout:
    """`one:W` (one batched stage of W workers) or `split:D+W` (D decode workers, then W
    model workers), with max_wait_time `wait_ms` and max_batch_size `max_batch`."""

    kind: str
    workers: int
    decoders: int
    wait_ms: int
    max_batch: int = 64

    @classmethod
    def parse(cls, text: str, wait_ms: int) -> Layout:
        m = re.fullmatch(r"one:(\d+)|split:(\d+)\+(\d+)", text)
        if m is None:
            raise SystemExit(f"layout {text!r}: expected one:W or split:D+W")
        if m.group(1):
            return cls("one", int(m.group(1)), 0, wait_ms)
        return cls("split", int(m.group(3)), int(m.group(2)), wait_ms)

    def __str__(self) -> str:
        stages = (f"one stage x{self.workers}" if self.kind == "one"
                  else f"decode x{self.decoders} -> model x{self.workers}")
        return f"{stages}, batch {self.max_batch}, wait {self.wait_ms} ms"


def function_env() -> dict[str, str]:
    """The function's [env] (server_uuid's e-mail and salt), as mlambda gives it."""
    spec = tomllib.loads((FUNCTION / "function.toml").read_text())
    return {k: str(v) for k, v in spec.get("env", {}).items()}


class MosecServer:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **function_env(),
               "MOSEC_BENCH_LAYOUT": layout.kind, "MOSEC_BENCH_WORKERS": str(layout.workers),
               "MOSEC_BENCH_DECODERS": str(layout.decoders),
               "MOSEC_BENCH_MAX_BATCH": str(layout.max_batch),
               "MOSEC_BENCH_WAIT_MS": str(layout.wait_ms), "MOSEC_BENCH_MODEL": str(MODEL)}
        # --capacity: the queue past which Mosec answers 429 (default 1024) above the
        # connections; --timeout: a request's deadline (default 3 s) as long as wrk's
        self.proc = subprocess.Popen(
            [str(mosec_python()), str(SERVER), "--address", "127.0.0.1", "--port",
             str(self.port), "--capacity", "8192", "--timeout", "10000",
             "--log-level", "error"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Up when one real question is answered (every worker has loaded the model by
        then: Mosec connects a worker to its stage only after its __init__)."""
        payload = question("0" * 64, base64.b64encode(IMAGES[0].read_bytes()).decode())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosec exited with {self.proc.returncode}")
            try:
                if httpx.post(f"{self.url}/inference", content=payload,
                              timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("mosec did not answer within 120 s")

    def roles(self) -> dict[int, str]:
        out = {self.proc.pid: "mosec: manager (Python)"}
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                cmd = " ".join(child.cmdline())
                if child.name() == "mosec":
                    out[child.pid] = "mosec: front end (Rust)"
                elif "resource_tracker" in cmd:
                    out[child.pid] = "mosec: manager (Python)"
                else:
                    out[child.pid] = "mosec: workers (Python)"
        except psutil.Error:
            pass
        return out

    def stop(self) -> None:
        """SIGTERM to the server's process group (Mosec stops its front end and workers),
        SIGKILL to what is left after 30 s."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


# -- correctness ---------------------------------------------------------------------------

def expected_answers() -> dict[str, str]:
    """Each fixture image's answer from the function's own preprocessing and model, run
    here, one image at a time: what both servers must answer."""
    sys.path.insert(0, str(FUNCTION))
    import classifier
    import preprocess

    model = classifier.load(MODEL)
    images = sorted(IMAGES[0].parent.glob("*.jpg"))  # the held-out scans and the nulls
    return {p.name: model(preprocess.batch([preprocess.prepare(p.read_bytes())]))[0]
            for p in images}


def check_answers(url: str, key: str, expected: dict[str, str], server_uuid: str) -> None:
    """Every fixture image once, each with its own esun_uuid: the expected answer in
    exactly the four keys, or SystemExit naming what differs."""
    folder = IMAGES[0].parent
    with httpx.Client(headers={"x-api-key": key, "content-type": "application/json"},
                      timeout=30) as client:
        for i, (name, answer) in enumerate(expected.items()):
            uuid = f"{time.time_ns():032x}{i:032x}"
            image = base64.b64encode((folder / name).read_bytes()).decode()
            r = client.post(f"{url}/inference", content=question(uuid, image))
            got = r.json() if r.status_code == 200 else {}
            want = {"esun_uuid": uuid, "server_uuid": server_uuid, "answer": answer}
            if (r.status_code != 200 or set(got) != KEYS
                    or {k: got[k] for k in want} != want
                    or not isinstance(got["server_timestamp"], int)):
                raise SystemExit(f"{url}: wrong answer for {name}: {r.status_code} "
                                 f"{r.text[:300]} (expected {want})")


# -- load and the cores ----------------------------------------------------------------------

def sample_of(pids: dict[int, str]) -> Sample:
    """bench.core_shares' sample (per-thread CPU ticks, and the machine's) for any
    processes: pid -> role."""
    s = Sample(time.monotonic(), machine_ticks())
    for pid, role in pids.items():
        for tid, ticks in thread_ticks(pid).items():
            s.threads[(role, pid, tid)] = ticks
    return s


def loaded(url: str, key: str, connections: int, seconds: int, threads: int,
           sampler: Callable[[int | None], Sample], question: str | None = "",
           script: Path = UNIQUE) -> tuple[WrkResult, dict[str, float]]:
    """wrk (by default: E.SUN questions with unique esun_uuids), and where the cores went
    over the middle of the run (from 1/4 to 3/4 of it: the connections are open and the
    queues full), as bench.core_shares splits them: `sampler(wrk's pid)` samples the
    server's processes by role and wrk; the rest of the machine's busy time is "other
    processes"; then idle."""
    payload = body() if question == "" else question
    result: dict[str, WrkResult] = {}
    runner = threading.Thread(target=lambda: result.update(
        w=wrk(url, connections, seconds, threads, key, payload, script=script)))
    runner.start()
    time.sleep(seconds / 4)
    wrk_pid = next((p.pid for p in psutil.Process().children(recursive=True)
                    if p.name() == "wrk"), None)
    a = sampler(wrk_pid)
    time.sleep(seconds / 2)
    b = sampler(wrk_pid)
    runner.join()
    if not result["w"].requests:
        raise RuntimeError(f"{url}: no request answered in {seconds} s")
    return result["w"], shares(a, b, os.cpu_count() or 1)


def mosec_sampler(server: MosecServer) -> Callable[[int | None], Sample]:
    def sampler(wrk_pid: int | None) -> Sample:
        pids = server.roles()
        if wrk_pid is not None:
            pids[wrk_pid] = "wrk"
        return sample_of(pids)
    return sampler


def mlambda_sampler(gateway: int) -> Callable[[int | None], Sample]:
    """bench.core_shares' own roles: the gateway's event loop and other threads, its
    templates, its instances."""
    return lambda wrk_pid: core_shares.sample(gateway, wrk_pid)


@dataclass
class Leg:
    system: str
    config: str
    c1000: WrkResult
    cores: dict[str, float]
    c1: WrkResult | None

    def lines(self, alone: float | None) -> list[str]:
        share = f" = {self.c1000.requests_per_s / alone:.0%} of the model alone" if alone else ""
        out = [f"{self.system} ({self.config}): {self.c1000.row()}{share}"]
        per_request = 1e6 / self.c1000.requests_per_s if self.c1000.requests_per_s else 0.0
        out += [f"    {role:<32} {used:5.2f} cores  {used * per_request:6.0f} us/request"
                for role, used in self.cores.items()]
        if self.c1 is not None:
            out.append(f"    concurrency 1: {self.c1.row()}")
        return out


def run_mosec(layout: Layout, expected: dict[str, str], server_uuid: str, connections: int,
              seconds: int, threads: int, c1_seconds: int) -> Leg:
    server = MosecServer(layout)
    try:
        check_answers(server.url, "none", expected, server_uuid)
        url = f"{server.url}/inference"
        wrk(url, connections, 2, threads, "none", body(), script=UNIQUE)  # warm
        result, cores = loaded(url, "none", connections, seconds, threads,
                               mosec_sampler(server))
        c1 = (wrk(url, 1, c1_seconds, 1, "none", body(), script=UNIQUE)
              if c1_seconds else None)
    finally:
        server.stop()
    return Leg(f"Mosec {MOSEC}", str(layout), result, cores, c1)


def run_mlambda(expected: dict[str, str], server_uuid: str, connections: int, seconds: int,
                threads: int, c1_seconds: int) -> Leg:
    platform = start_platform()
    try:
        key = platform.invoke_key
        check_answers(platform.url, key, expected, server_uuid)
        url = f"{platform.url}/inference"
        # warm: the same load first, so that the instances the autoscaler wants are up
        wrk(url, connections, 2, threads, key, body(), script=UNIQUE)
        result, cores = loaded(url, key, connections, seconds, threads,
                               mlambda_sampler(platform.proc.pid))
        c1 = wrk(url, 1, c1_seconds, 1, key, body(), script=UNIQUE) if c1_seconds else None
    finally:
        platform.stop()
    return Leg("mlambda", "mlambda up, defaults", result, cores, c1)


def best(legs: list[Leg]) -> Leg:
    return max(legs, key=lambda leg: (leg.c1000.errors == 0, leg.c1000.requests_per_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="each measured wrk run")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="wrk's -t")
    parser.add_argument("--passes", type=int, default=2, help="A/B passes (mlambda, Mosec)")
    parser.add_argument("--layouts", default="one:2,one:3,split:1+2,split:2+2",
                        help="Mosec layouts swept: one:W or split:D+W, comma-separated")
    parser.add_argument("--waits", default="5,10", help="max_wait_time values swept (ms)")
    parser.add_argument("--sweep-seconds", type=int, default=10,
                        help="each sweep run (0: no sweep, the first layout and wait)")
    parser.add_argument("--c1-seconds", type=int, default=5, help="concurrency 1 (0: none)")
    parser.add_argument("--model-seconds", type=float, default=10.0,
                        help="the model alone (0: not measured)")
    parser.add_argument("--mosec-only", action="store_true", help="no mlambda legs")
    args = parser.parse_args()

    mosec_python()  # made before anything is timed
    expected = expected_answers()
    env = function_env()
    os.environ.update({k: v for k, v in env.items() if k.startswith("ESUN_")})
    sys.path.insert(0, str(FUNCTION))
    import esun

    server_uuid = esun.server_uuid()
    alone = throughput(64, 2, args.model_seconds) if args.model_seconds else None
    layouts = [Layout.parse(text, int(w)) for text in args.layouts.split(",")
               for w in args.waits.split(",")]
    sweep: list[Leg] = []
    if args.sweep_seconds and len(layouts) > 1:
        for layout in layouts:
            sweep.append(run_mosec(layout, expected, server_uuid, args.connections,
                                   args.sweep_seconds, args.threads, 0))
            print(f"sweep: {layout}: {sweep[-1].c1000.row()}", flush=True)
        chosen = next(layout for layout in layouts if str(layout) == best(sweep).config)
    else:
        chosen = layouts[0]
    passes: list[list[Leg]] = []
    for _ in range(args.passes):
        legs = []
        if not args.mosec_only:
            legs.append(run_mlambda(expected, server_uuid, args.connections, args.seconds,
                                    args.threads, args.c1_seconds))
        legs.append(run_mosec(chosen, expected, server_uuid, args.connections, args.seconds,
                              args.threads, args.c1_seconds))
        passes.append(legs)

    report = {
        "model_alone_2proc_batch64": alone,
        "sweep": [{"layout": leg.config, "c1000": asdict(leg.c1000), "cores": leg.cores}
                  for leg in sweep],
        "chosen_layout": str(chosen),
        "passes": [[asdict(leg) for leg in legs] for legs in passes],
    }
    print(json.dumps(report, indent=2))
    print(f"\nanswers checked on {len(expected)} fixture images before each run: all right")
    if alone:
        print(f"preprocess + model alone (2 processes, batch 64): {alone:,.0f} images/s")
    for leg in sweep:
        print(f"sweep {leg.config}: {leg.c1000.row()}")
    print(f"Mosec's best layout here: {chosen}")
    for i, legs in enumerate(passes, 1):
        print(f"\npass {i}, {args.connections} connections, {args.seconds} s, "
              f"wrk -t{args.threads}:")
        for leg in legs:
            print("\n".join(leg.lines(alone)))
    if not args.mosec_only:
        ratios = [legs[0].c1000.requests_per_s / legs[1].c1000.requests_per_s
                  for legs in passes if legs[1].c1000.requests_per_s]
        print("\nmlambda / Mosec, requests/s: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
