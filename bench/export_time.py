"""How long `mlambda export aws handwriting:live` takes, as a user runs it (one command,
its own process), against a real `mlambda up`:

- cold: an empty wheel cache (pip downloads the Linux x86_64 wheels from the index);
- warm: the cache a previous export filled (the target: under a minute).

Prints each run's wall time and the package size the command reports.

    .venv/bin/python -m bench.export_time [--warm-runs 3] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Running, start_platform


def export_once(platform: Running, out: Path, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "MLAMBDA_URL": platform.url, "MLAMBDA_ADMIN_KEY": platform.admin_key,
           "MLAMBDA_WHEEL_CACHE": str(cache)}
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "mlambda.cli", "export", "aws", "handwriting:live", "--out",
         str(out), "--vpc-subnets", "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
         "--security-group", "sg-0123456789abcdef0"],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    took = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"export failed: {r.stderr}")
    size = re.search(r"unzipped ([\d.]+) MB of Lambda's 250 MB", r.stdout)
    return took, size.group(1) if size else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the cold run (no download from the index)")
    args = parser.parse_args()
    platform = start_platform(ROOT / "functions" / "seed.toml")
    work = Path(tempfile.mkdtemp(prefix="mlambda-bench-export-"))
    cache = work / "wheels"
    try:
        if args.no_cold:
            cache = Path(os.environ.get("MLAMBDA_WHEEL_CACHE",
                                        Path.home() / ".cache" / "mlambda" / "wheels"))
        else:
            took, size = export_once(platform, work / "cold", cache)
            print(f"cold (empty wheel cache): {took:.1f} s, {size} MB unzipped", flush=True)
        warm = []
        for i in range(args.warm_runs):
            took, size = export_once(platform, work / f"warm-{i}", cache)
            warm.append(took)
            print(f"warm run {i + 1}: {took:.1f} s, {size} MB unzipped", flush=True)
        if warm:
            print(f"warm: median {statistics.median(warm):.1f} s of {len(warm)} "
                  f"(target: under 60 s)")
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
