"""Cold start, measured on the real runtime (template and instance processes):

- from the template: the version's template is alive; fork an instance, import the
  handler, answer one invocation;
- from nothing: no template either; spawn the interpreter, preload, fork, init, answer.

For each: `fork->ready` (what the dispatcher waits for before it can hand work over) and
`first call` (submit -> answer, what the client sees on top of the handler's own time).

    .venv/bin/python bench/cold_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from mlambda.engines.local import LocalEngine
from mlambda.runtime.dispatcher import VersionRef
from mlambda.runtime.protocol import Item
from mlambda.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = {"echo": ROOT / "functions" / "echo", "heavy": ROOT / "bench" / "functions" / "heavy"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(name: str, runs: int, keep_template: bool) -> dict[str, float]:
    bundle = BUNDLES[name]
    version = VersionRef(name, "1", str(bundle), load_spec(bundle))
    engine = LocalEngine(tempfile.mkdtemp(prefix="mlambda-bench-vol-"))
    await engine.start()
    d = engine.dispatcher(version)
    first_calls: list[float] = []
    try:
        if keep_template:  # warm the template once; it is not what we measure here
            await d.submit(Item("warm", b"{}"))
            await d.reset(keep_template=True)
        for i in range(runs):
            started = time.perf_counter()
            outcome = await d.submit(Item(f"r{i}", b"{}"))
            first_calls.append((time.perf_counter() - started) * 1000)
            assert outcome.error is None, outcome.error
            await d.reset(keep_template=keep_template)
        forks = d.cold_starts[1:] if keep_template else d.cold_starts
    finally:
        await engine.stop(5)
    return {
        "fork_to_ready_p50_ms": statistics.median(forks),
        "fork_to_ready_p99_ms": pct(forks, 99),
        "first_call_p50_ms": statistics.median(first_calls),
        "first_call_p99_ms": pct(first_calls, 99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    results = {}
    for name in BUNDLES:
        for keep, label in ((True, "from template"), (False, "from nothing")):
            results[f"{name} {label}"] = await measure(name, args.runs, keep)
    print(json.dumps(results, indent=2))
    print("\n| function, start | fork->ready p50 | p99 | first call p50 | p99 |")
    print("|---|---|---|---|---|")
    for key, r in results.items():
        print(f"| {key} | {r['fork_to_ready_p50_ms']:.1f} ms | {r['fork_to_ready_p99_ms']:.1f} ms"
              f" | {r['first_call_p50_ms']:.1f} ms | {r['first_call_p99_ms']:.1f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
