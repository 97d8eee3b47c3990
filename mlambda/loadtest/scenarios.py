"""The scenarios: steady (the concurrency and p99 checks), burst (from zero instances),
ramp (concurrency stepped up) and all (the spec's three checks in a row)."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlambda.client import Client, ClientError
from mlambda.loadtest import native, wrk
from mlambda.loadtest.bodies import Bodies
from mlambda.loadtest.figures import (
    Bounds,
    Verdict,
    burst_verdict,
    concurrency_verdict,
    p99_verdict,
    summarise,
)
from mlambda.loadtest.samples import Samples
from mlambda.loadtest.target import Target

SCENARIOS = ("steady", "burst", "ramp", "all")
RAMP_STEPS = 4
ZERO_POLL_S = 1.0


@dataclass
class Plan:
    target: Target
    key: str | None
    bodies: Bodies
    concurrency: int = 1000
    duration_s: float = 60.0
    warmup_s: float = 5.0
    burst: int = 1000
    from_zero: bool = False
    zero_timeout_s: float = 900.0
    timeout_s: float = 10.0
    generator: str = "auto"  # auto | wrk | native
    bounds: Bounds = field(default_factory=Bounds)
    admin: Client | None = None  # for scale-to-zero: None when not an mlambda we can admin
    say: Callable[[str], None] = print


@dataclass
class Outcome:
    phases: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


def raise_open_files() -> None:
    """Connections are file descriptors: as many as the hard limit allows (wrk inherits)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def generator(plan: Plan) -> str:
    if plan.generator == "auto":
        return "wrk" if wrk.available() else "native"
    if plan.generator == "wrk" and not wrk.available():
        raise RuntimeError("--generator wrk: wrk is not installed (apt-get install wrk)")
    return plan.generator


def load(plan: Plan, concurrency: int, seconds: float) -> Samples:
    if generator(plan) == "wrk":
        return wrk.steady(plan.target, plan.key, plan.bodies, concurrency, seconds,
                          plan.timeout_s)
    return asyncio.run(native.steady(plan.target, plan.key, plan.bodies, concurrency, seconds,
                                     plan.timeout_s))


def steady(plan: Plan, out: Outcome) -> None:
    plan.say(f"steady: {plan.concurrency} connections for {plan.warmup_s:g} s of warm-up + "
             f"{plan.duration_s:g} s ({generator(plan)})")
    samples = load(plan, plan.concurrency, plan.warmup_s + plan.duration_s)
    fig = summarise("steady", samples, plan.warmup_s)
    out.phases.append(fig)
    out.verdicts += [concurrency_verdict(fig, plan.bounds), p99_verdict(fig, plan.bounds)]


def ramp(plan: Plan, out: Outcome) -> None:
    step_s = max(1.0, plan.duration_s / RAMP_STEPS)
    levels = sorted({max(1, plan.concurrency * (i + 1) // RAMP_STEPS)
                     for i in range(RAMP_STEPS)})
    best = 0
    for level in levels:
        plan.say(f"ramp: {level} connections for {step_s:g} s")
        fig = summarise(f"ramp {level}", load(plan, level, step_s))
        out.phases.append(fig)
        if p99_verdict(fig, plan.bounds).passed and fig["wrong"] == 0 and not fig["errors"]:
            best = level
    top = out.phases[-1]
    out.verdicts.append(Verdict(
        f"p99 < {plan.bounds.p99_ms:g} ms at every step up to {plan.concurrency}",
        best == levels[-1],
        f"held up to {best} connections; at {levels[-1]}: p99 "
        f"{top['latency_ms']['p99']:.1f} ms, {top['requests_per_s']:,.0f}/s"))


def burst(plan: Plan, out: Outcome) -> None:
    cold = to_zero(plan, out)
    plan.say(f"burst: {plan.burst} requests at once")
    samples = asyncio.run(native.burst(plan.target, plan.key, plan.bodies, plan.burst,
                                       max(plan.timeout_s, plan.bounds.burst_s * 6)))
    fig = summarise("burst", samples)
    fig["from_zero"] = cold
    out.phases.append(fig)
    out.verdicts.append(burst_verdict(fig, plan.bounds, cold))


def run(plan: Plan, scenario: str) -> Outcome:
    raise_open_files()
    out = Outcome()
    if scenario in ("steady", "all"):
        steady(plan, out)
    if scenario == "ramp":
        ramp(plan, out)
    if scenario in ("burst", "all"):
        burst(plan, out)
    for fig in out.phases:
        if fig["generator_cpu_cores"] > 0.25:
            out.notes.append(
                f"warning: the load generator ({fig['generator']}) used "
                f"{fig['generator_cpu_cores']:.2f} cores in '{fig['phase']}' (more than a "
                f"quarter of a core): on the same machine it takes cores from the server")
    return out


# -- scale to zero ---------------------------------------------------------------------


def function_of(plan: Plan) -> tuple[str, str | None] | None:
    """(function, qualifier) behind the target, from the admin API; None if unknown."""
    if plan.admin is None:
        return None
    if plan.target.function is not None:
        name, _, qualifier = plan.target.function.partition(":")
        return name, qualifier or None
    path = plan.target.path.partition("?")[0]
    for r in plan.admin.routes():
        if r["method"] == plan.target.method and r["path"] == path:
            name, _, qualifier = r["target"].partition(":")
            return name, qualifier or None
    return None


def instances(admin: Client, function: str, qualifier: str | None) -> int:
    info = admin.function(function)
    versions = {qualifier or "$LATEST"}
    for a in info["aliases"]:
        if a["name"] == qualifier:
            versions = {a["version"]} | ({a["additional_version"]}
                                         if a["additional_version"] else set())
    return sum(len(r["instances"]) for r in info["runtime"] if r["version"] in versions)


def to_zero(plan: Plan, out: Outcome) -> bool | None:
    """Have the target's function at zero instances: force it (--from-zero) or wait for
    its idle timeout. True when it is at zero, None when that cannot be known."""
    try:
        known = function_of(plan)
    except (ClientError, httpx.HTTPError):  # not an mlambda, or not this admin key's
        known = None
    if known is None or plan.admin is None:
        out.notes.append("burst: not an mlambda route or function this admin key can see; "
                         "fired without checking that it had scaled to zero")
        return None
    function, qualifier = known
    label = f"{function}:{qualifier}" if qualifier else function
    if plan.from_zero:
        plan.say(f"burst: scaling {label} to zero (--from-zero)")
        plan.admin.scale_to_zero(function, qualifier)
    deadline = time.monotonic() + plan.zero_timeout_s
    said = False
    while (n := instances(plan.admin, function, qualifier)) > 0:
        if time.monotonic() > deadline:
            out.notes.append(f"burst: {label} still had {n} instances after "
                             f"{plan.zero_timeout_s:g} s; fired anyway")
            return False
        if not said:
            plan.say(f"burst: waiting for {label} to scale to zero ({n} instances; its "
                     f"idle_ttl_s decides when; --from-zero forces it)")
            said = True
        time.sleep(ZERO_POLL_S)
    return True
