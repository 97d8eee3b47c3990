"""Preprocess + model alone (no platform): images/s at batch 1, 32 and 64, in one and in
two processes (each: onnxruntime with one intra-op thread, sequential), and the latency
of a single image. Inputs: the held-out scans in tests/data/handwriting (JPEG bytes).

    .venv/bin/python -m bench.model_throughput [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
sys.path.insert(0, str(ROOT / "bench"))
MODEL = ROOT / "models" / "handwriting.onnx"
IMAGES = sorted((ROOT / "tests" / "data" / "handwriting").glob("*.jpg"))


def worker(batch: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import preprocess
    from functions_loader import load_classifier

    classify = load_classifier(MODEL)
    jpegs = [p.read_bytes() for p in IMAGES]
    done, i = 0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        arrays = [preprocess.prepare(jpegs[(i + k) % len(jpegs)]) for k in range(batch)]
        classify(preprocess.batch(arrays))
        done += batch
        i += batch
    out.put(done / seconds)


def throughput(batch: int, processes: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=worker, args=(batch, seconds, q)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def single_latency(n: int = 500) -> dict[str, float]:
    import preprocess
    from functions_loader import load_classifier

    classify = load_classifier(MODEL)
    jpegs = [p.read_bytes() for p in IMAGES]
    times = []
    for i in range(n):
        t = time.perf_counter()
        classify(preprocess.batch([preprocess.prepare(jpegs[i % len(jpegs)])]))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (n - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    report: dict[str, object] = {"single_image": single_latency()}
    for processes in (1, 2):
        for batch in (1, 32, 64):
            report[f"batch {batch}, {processes} process(es)"] = round(
                throughput(batch, processes, args.seconds))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
