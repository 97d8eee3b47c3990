"""Samples -> figures (percentiles, throughput, per second, a histogram) and the verdicts
against the spec's requirements. Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlambda.loadtest.samples import Samples

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


@dataclass(frozen=True)
class Bounds:
    """The spec's requirements (DESIGN.md), overridable for a smaller deployment."""

    concurrency: int = 1000
    p99_ms: float = 1000.0
    burst_s: float = 5.0


@dataclass(frozen=True)
class Verdict:
    requirement: str
    passed: bool
    figure: str  # the measured figure against the bound, in words

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.requirement}: {self.figure}"


def percentiles_ms(latencies: np.ndarray) -> dict[str, float]:
    if latencies.size == 0:
        return {k: math.nan for k in [*PERCENTILES, "max", "mean"]}
    out = {k: float(np.percentile(latencies, q)) * 1000 for k, q in PERCENTILES.items()}
    out["max"] = float(latencies.max()) * 1000
    out["mean"] = float(latencies.mean()) * 1000
    return out


def summarise(phase: str, samples: Samples, warmup_s: float = 0.0) -> dict[str, Any]:
    """The figures of one phase; answers that came in the first `warmup_s` are not counted."""
    done = np.asarray(samples.done, dtype=float)
    latency = np.asarray(samples.latency, dtype=float)
    ok = np.asarray(samples.ok, dtype=bool)
    start = samples.started + warmup_s
    # a request counts if it was sent after the warm-up (answered after it, if its send
    # time is not known)
    keep = np.where(latency >= 0, done - latency, done) >= start
    done, latency, ok = done[keep], latency[keep], ok[keep]
    window = max(1e-9, samples.ended - start)
    timed = latency >= 0
    known = latency[timed]
    source = "per request"
    figures = percentiles_ms(known)
    if known.size < 0.5 * max(1, done.size) and samples.wrk_percentiles_ms:
        # the answers do not echo the id: wrk's own histogram (warm-up included)
        source = "wrk's histogram"
        figures = {("p" + k if not k.startswith("p") else k): v
                   for k, v in samples.wrk_percentiles_ms.items()}
    per_second = []
    if done.size:
        second = np.floor(done - start).astype(int)
        for s in range(int(second.max()) + 1):
            mask = second == s
            lat = latency[mask & timed]
            row: dict[str, Any] = {"t": s, "answers": int(mask.sum()),
                                   "wrong": int((mask & ~ok).sum())}
            if lat.size:
                row.update({k: float(np.percentile(lat, q)) * 1000
                            for k, q in (("p50", 50), ("p90", 90), ("p99", 99))})
            per_second.append(row)
    counts, edges = (np.histogram(known * 1000, bins=60) if known.size
                     else (np.zeros(0), np.zeros(0)))
    return {
        "phase": phase,
        "generator": samples.generator,
        "concurrency": samples.concurrency,
        "seconds": window,
        "warmup_s": warmup_s,
        "answers": int(done.size),
        "right": int(ok.sum()),
        "wrong": int((~ok).sum()),
        "errors": dict(samples.errors),
        "connections_served": samples.connections_served,
        "requests_per_s": float(done.size / window),
        "latency_ms": figures,
        "latency_source": source,
        "per_second": per_second,
        "histogram_ms": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "generator_cpu_cores": samples.cores,
    }


def failures(fig: dict[str, Any]) -> int:
    errors: dict[str, int] = fig["errors"]
    return int(fig["wrong"]) + sum(errors.values())


def concurrency_verdict(fig: dict[str, Any], bounds: Bounds) -> Verdict:
    served = fig["connections_served"]
    ok = (fig["concurrency"] >= bounds.concurrency and failures(fig) == 0
          and fig["answers"] > 0 and (served is None or served >= fig["concurrency"]))
    served_text = "" if served is None else f", {served} of them answered"
    return Verdict(
        f">= {bounds.concurrency} concurrent requests", ok,
        f"{fig['concurrency']} connections held{served_text}, {fig['wrong']} wrong answers and "
        f"{sum(fig['errors'].values())} errors in {fig['answers']:,} answers "
        f"({fig['requests_per_s']:,.0f}/s)")


def p99_verdict(fig: dict[str, Any], bounds: Bounds) -> Verdict:
    p99 = fig["latency_ms"].get("p99", math.nan)
    ok = fig["answers"] > 0 and not math.isnan(p99) and p99 < bounds.p99_ms
    return Verdict(f"p99 < {bounds.p99_ms:g} ms at steady load", ok,
                   f"p99 {p99:.1f} ms (p50 {fig['latency_ms'].get('p50', math.nan):.1f} ms) "
                   f"at {fig['concurrency']} connections, {fig['latency_source']}")


def burst_verdict(fig: dict[str, Any], bounds: Bounds, cold: bool | None) -> Verdict:
    slowest = fig["latency_ms"]["max"] / 1000
    ok = (fig["right"] == fig["concurrency"] and not math.isnan(slowest)
          and slowest < bounds.burst_s)
    state = {True: "from zero instances", False: "NOT from zero (instances were up)",
             None: "scale-to-zero not checked"}[cold]
    return Verdict(f"a burst answered within {bounds.burst_s:g} s", ok,
                   f"{fig['right']} of {fig['concurrency']} answered right, the slowest in "
                   f"{slowest:.2f} s ({state})")


def as_json(v: Verdict) -> dict[str, Any]:
    return asdict(v)
