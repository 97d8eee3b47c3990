"""Cold start, measured on the real runtime (template and instance processes):

- from the template: the version's template is alive; fork an instance, import the
  handler, answer one invocation;
- from nothing: no template either; spawn the interpreter, preload, fork, init, answer.

For each: `fork->ready` (what the dispatcher waits for before it can hand work over) and
`first call` (submit -> answer, what the client sees on top of the handler's own time).

    .venv/bin/python bench/cold_start.py [--runs 30] [--sandbox]

`--sandbox` (as root): instances run as `mlambda up` runs them, in the sandbox (a uid of
their own, rlimits, a clean environment): compare it with a run without.
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
from mlambda.runtime import sandbox
from mlambda.runtime.dispatcher import VersionRef
from mlambda.runtime.protocol import Item
from mlambda.settings import Settings
from mlambda.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = {"echo": ROOT / "functions" / "echo", "heavy": ROOT / "bench" / "functions" / "heavy"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sandbox_limits(volume: Path) -> sandbox.Limits:
    """The limits `mlambda up` gives instances, with what they read made searchable."""
    s = Settings.load()
    for path in [*sandbox.python_paths(), ROOT, volume]:
        for ancestor in [*reversed(path.parents), path]:
            sandbox.grant_traverse(ancestor, s.sandbox_uid)
    return sandbox.Limits(gid=s.sandbox_uid, uid_base=s.sandbox_uid,
                          lease_dir=sandbox.lease_dir(), max_open_files=s.fn_max_open_files,
                          max_processes=s.fn_max_processes,
                          max_file_bytes=int(s.fn_max_file_mb * 1024 * 1024))


async def measure(name: str, runs: int, keep_template: bool,
                  sandboxed: bool) -> dict[str, float]:
    bundle = BUNDLES[name]
    version = VersionRef(name, "1", str(bundle), load_spec(bundle))
    volume = Path(tempfile.mkdtemp(prefix="mlambda-bench-vol-"))
    engine = LocalEngine(str(volume), limits=sandbox_limits(volume) if sandboxed else None)
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
    parser.add_argument("--sandbox", action="store_true",
                        help="run instances sandboxed, as `mlambda up` does as root")
    args = parser.parse_args()
    if args.sandbox and not sandbox.is_root():
        parser.error("--sandbox needs root (a uid of their own for the instances)")
    results = {}
    for name in BUNDLES:
        for keep, label in ((True, "from template"), (False, "from nothing")):
            results[f"{name} {label}"] = await measure(name, args.runs, keep, args.sandbox)
    print(json.dumps(results, indent=2))
    print("\n| function, start | fork->ready p50 | p99 | first call p50 | p99 |")
    print("|---|---|---|---|---|")
    for key, r in results.items():
        print(f"| {key} | {r['fork_to_ready_p50_ms']:.1f} ms | {r['fork_to_ready_p99_ms']:.1f} ms"
              f" | {r['first_call_p50_ms']:.1f} ms | {r['first_call_p99_ms']:.1f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
