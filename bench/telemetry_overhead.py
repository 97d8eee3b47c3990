"""What telemetry costs the hot path: `POST /inference` at 1000 connections (wrk) against
two platforms started side by side, one with telemetry on and one with it off
(MLAMBDA_TELEMETRY=0), measured in alternating rounds (on, off, off, on, ...) so that
drift in the machine's load falls on both alike.

Targets (issue 10): with telemetry on, at least 95% of the requests/s with it off, and
p99 within +5%.

    .venv/bin/python -m bench.telemetry_overhead [--seconds 30] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict

from bench.common import WrkResult, start_platform, wrk
from bench.inference_http import UNIQUE, body

CONNECTIONS = 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="on/off pairs")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args()
    payload = body()
    platforms = {"on": start_platform(env={"MLAMBDA_TELEMETRY": "1"}),
                 "off": start_platform(env={"MLAMBDA_TELEMETRY": "0"})}
    runs: dict[str, list[WrkResult]] = {"on": [], "off": []}
    try:
        for p in platforms.values():  # warm: instances started, model loaded
            wrk(f"{p.url}/inference", 50, 2, 2, p.invoke_key, payload, script=UNIQUE)
        for i in range(args.rounds):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for mode in order:
                p = platforms[mode]
                result = wrk(f"{p.url}/inference", args.connections, args.seconds, 2,
                             p.invoke_key, payload, script=UNIQUE)
                runs[mode].append(result)
                print(f"round {i + 1} telemetry {mode:3}: {result.row()}", flush=True)
    finally:
        for p in platforms.values():
            p.stop()
    rps = {m: statistics.fmean(r.requests_per_s for r in rs) for m, rs in runs.items()}
    p99 = {m: statistics.median(r.p99_ms for r in rs) for m, rs in runs.items()}
    if not (rps["off"] and p99["off"]):
        raise SystemExit("no request completed with telemetry off: runs too short for "
                         f"{args.connections} connections on this machine (--seconds)")
    share = rps["on"] / rps["off"]
    p99_change = p99["on"] / p99["off"] - 1
    report = {
        "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds,
        "requests_per_s": rps, "p99_ms_median": p99,
        "throughput_share_with_telemetry": share, "p99_change_with_telemetry": p99_change,
        "targets_met": {"throughput >= 95%": share >= 0.95, "p99 <= +5%": p99_change <= 0.05},
        "runs": {m: [asdict(r) for r in rs] for m, rs in runs.items()},
    }
    print(json.dumps(report, indent=2))
    print(f"\ntelemetry on: {rps['on']:,.0f} req/s, p99 {p99['on']:.1f} ms; off: "
          f"{rps['off']:,.0f} req/s, p99 {p99['off']:.1f} ms -> {share:.1%} of the "
          f"throughput (target >= 95%), p99 {p99_change:+.1%} (target <= +5%)")


if __name__ == "__main__":
    main()
