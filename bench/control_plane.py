"""Alias flips and model swaps under 1000 concurrent connections.

- how long an alias flip takes to reach new requests (and how long the call takes,
  warming the target version included);
- how long a model swap takes until every instance serves the new model;
- p99 under wrk -c1000 with and without those changes happening.

    .venv/bin/python -m bench.control_plane [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, start_platform, wrk
from mlambda.client import Client


def bundle(tmp: Path, tag: str) -> Path:
    d = tmp / f"tagged-{tag}"
    d.mkdir()
    (d / "function.toml").write_text(
        'name = "tagged"\nhandler = "app.handler"\n[batch]\nmax_batch = 64\nmax_wait_ms = 2\n')
    (d / "app.py").write_text(f"def handler(event, context):\n    return {{'tag': '{tag}'}}\n")
    return d


def flips_during_load(admin: Client, url: str, key: str, seconds: int,
                      every: float) -> dict[str, Any]:
    """Flip `tagged:live` between versions 1 and 2 every `every` s while wrk runs; a prober
    at concurrency 1 records which version each request it sent got."""
    results: dict[str, Any] = {}
    answers: list[tuple[float, str]] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(headers={"x-api-key": key}) as c:
            while not stop.is_set():
                sent = time.monotonic()
                answers.append((sent, c.post(f"{url}/tagged", json={}).json()["tag"]))

    def flipper() -> None:
        call_ms, effect_ms = [], []
        target = "2"
        time.sleep(2)
        while not stop.is_set():
            started = time.monotonic()
            admin.set_alias("tagged", "live", target)
            returned = time.monotonic()
            call_ms.append((returned - started) * 1000)
            old = "A" if target == "2" else "B"
            stop.wait(every)
            # requests sent after the call returned that still got the old version
            stale = [t for t, tag in answers if t >= returned and tag == old]
            effect_ms.append(max(0.0, (max(stale) - returned) * 1000) if stale else 0.0)
            target = "1" if target == "2" else "2"
        results["flip_call_ms"] = call_ms
        results["flip_effect_ms"] = effect_ms

    threads = [threading.Thread(target=probe), threading.Thread(target=flipper)]
    for t in threads:
        t.start()
    try:
        results["wrk"] = asdict(wrk(f"{url}/tagged", 1000, seconds, 2, key))
    finally:
        stop.set()
        for t in threads:
            t.join()
    return results


def swaps_during_load(admin: Client, url: str, key: str, seconds: int,
                      tmp: Path) -> dict[str, Any]:
    """Push a new `greeting` model every 3 s while wrk runs; time until every running
    instance reports it loaded."""
    results: dict[str, Any] = {"swap_all_instances_ms": []}
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        time.sleep(2)
        while not stop.is_set():
            i += 1
            f = tmp / f"greeting-{i}.txt"
            f.write_text(f"hello #{i}")
            started = time.monotonic()
            sha = admin.push_model("greeting", f)["sha256"]
            deadline = started + 10
            while time.monotonic() < deadline:
                loads = admin.model("greeting")["instances"]
                if loads and all(inst["sha256"] == sha for inst in loads):
                    results["swap_all_instances_ms"].append((time.monotonic() - started) * 1000)
                    break
                time.sleep(0.01)
            stop.wait(3)

    t = threading.Thread(target=swapper)
    t.start()
    try:
        results["wrk"] = asdict(wrk(f"{url}/greeting", 1000, seconds, 2, key))
    finally:
        stop.set()
        t.join()
    return results


def summary(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (f"n={len(values)} p50 {statistics.median(values):.1f} ms, "
            f"max {max(values):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--flip-every", type=float, default=2.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlambda-bench-cp-"))
    platform = start_platform()
    report: dict[str, Any] = {}
    try:
        admin = Client(platform.url, platform.admin_key)
        admin.deploy(bundle(tmp, "A"), publish=True)
        admin.deploy(bundle(tmp, "B"), publish=True)
        admin.set_alias("tagged", "live", "1")
        admin.add_route("POST", "/tagged", "tagged:live")
        admin.deploy(ROOT / "tests" / "functions" / "modelreader", publish=True)
        admin.set_alias("modelreader", "live", "1")
        admin.add_route("POST", "/greeting", "modelreader:live")
        (tmp / "greeting-0.txt").write_text("hello #0")
        admin.push_model("greeting", tmp / "greeting-0.txt")
        key = platform.invoke_key
        report["tagged_steady"] = asdict(wrk(f"{platform.url}/tagged", 1000, args.seconds, 2, key))
        report["tagged_flips"] = flips_during_load(admin, platform.url, key, args.seconds,
                                                   args.flip_every)
        report["greeting_steady"] = asdict(
            wrk(f"{platform.url}/greeting", 1000, args.seconds, 2, key))
        report["greeting_swaps"] = swaps_during_load(admin, platform.url, key, args.seconds, tmp)
        admin.close()
    finally:
        platform.stop()
    print(json.dumps(report, indent=2))
    flips, swaps = report["tagged_flips"], report["greeting_swaps"]
    print("\nalias flip, call (warm included): " + summary(flips["flip_call_ms"]))
    print("alias flip, return -> last request sent that still got the old version: "
          + summary(flips["flip_effect_ms"]))
    print("model swap, push -> every instance on the new model: "
          + summary(swaps["swap_all_instances_ms"]))
    for name, steady, changing in (("alias flips", report["tagged_steady"], flips["wrk"]),
                                   ("model swaps", report["greeting_steady"], swaps["wrk"])):
        print(f"{name}: steady p99 {steady['p99_ms']:.1f} ms ({steady['requests_per_s']:,.0f}"
              f" req/s, {steady['errors']} errors) vs during changes p99 "
              f"{changing['p99_ms']:.1f} ms ({changing['requests_per_s']:,.0f} req/s, "
              f"{changing['errors']} errors): {changing['p99_ms'] / steady['p99_ms'] - 1:+.0%}")


if __name__ == "__main__":
    main()
