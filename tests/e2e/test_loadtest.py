"""`mlambda loadtest` against a function of known latency (`sleeper`: each batch sleeps
50 ms): the verdicts pass and fail where they must, wrong answers are counted, a burst
starts from zero, E.SUN answers are checked, and the CLI writes its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlambda.client import Client
from mlambda.loadtest import scenarios
from mlambda.loadtest.bodies import default_images, esun_bodies, template_bodies
from mlambda.loadtest.figures import Bounds, burst_verdict, concurrency_verdict, p99_verdict
from mlambda.loadtest.target import parse_target
from tests.conftest import Server

SLEEP_MS = 50  # tests/functions/sleeper/function.toml


def plan(server: Server, target: str, **kw: object) -> scenarios.Plan:
    defaults: dict[str, object] = {
        "concurrency": 8, "duration_s": 1.5, "warmup_s": 0.5, "generator": "native",
        "bounds": Bounds(8, 1000, 5), "say": lambda line: None}
    defaults.update(kw)
    bodies = defaults.pop("bodies", template_bodies('{"id": "MLAMBDA_ID"}'))
    return scenarios.Plan(parse_target(target, server.url), server.invoke_key,
                          bodies, **defaults)  # type: ignore[arg-type]


def test_steady_verdicts_pass_and_fail_against_a_known_latency(server: Server) -> None:
    out = scenarios.run(plan(server, "POST /sleeper"), "steady")
    (fig,) = out.phases
    assert [v.passed for v in out.verdicts] == [True, True], [v.line() for v in out.verdicts]
    assert fig["answers"] > 8 and fig["wrong"] == 0 and fig["connections_served"] == 8
    assert fig["latency_source"] == "per request"
    assert SLEEP_MS <= fig["latency_ms"]["p50"] < 1000  # never faster than the sleep
    # the same figures against bounds they cannot meet
    assert not p99_verdict(fig, Bounds(p99_ms=SLEEP_MS - 10)).passed
    assert not concurrency_verdict(fig, Bounds(concurrency=1000)).passed


@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed (.ci/run installs it: apt-get install wrk)")
def test_wrk_measures_each_request_through_the_invoke_api(server: Server) -> None:
    out = scenarios.run(plan(server, "sleeper", generator="wrk"), "steady")
    (fig,) = out.phases
    assert fig["generator"] == "wrk" and fig["latency_source"] == "per request"
    assert fig["answers"] > 8 and fig["wrong"] == 0, fig
    assert SLEEP_MS <= fig["latency_ms"]["p50"] < 1000
    assert all(v.passed for v in out.verdicts), [v.line() for v in out.verdicts]


def test_wrong_answers_are_counted_and_fail_the_check(server: Server) -> None:
    out = scenarios.run(plan(server, "POST /sleeper", duration_s=1.0, warmup_s=0,
                             bodies=template_bodies('{"fail": true}')), "steady")
    (fig,) = out.phases
    assert fig["answers"] > 0 and fig["wrong"] == fig["answers"]
    assert not out.verdicts[0].passed


def test_a_burst_from_zero_is_answered_within_the_bound(server: Server) -> None:
    with Client(server.url, server.admin_key) as admin:
        out = scenarios.run(plan(server, "POST /sleeper", burst=20, from_zero=True,
                                 admin=admin), "burst")
    (fig,) = out.phases
    assert fig["from_zero"] is True
    assert fig["right"] == 20, fig
    assert out.verdicts[0].passed, out.verdicts[0].line()
    assert "from zero instances" in out.verdicts[0].figure
    # a cold start plus the 50 ms sleep: never within 50 ms
    assert not burst_verdict(fig, Bounds(burst_s=SLEEP_MS / 1000), True).passed


def test_esun_answers_are_checked(server: Server) -> None:
    bodies = esun_bodies(default_images())
    assert len(bodies.templates) == len(list(default_images().glob("*.jpg")))
    out = scenarios.run(plan(server, "POST /inference", concurrency=4, duration_s=1.0,
                             warmup_s=1.0, bodies=bodies, bounds=Bounds(4, 5000, 5)),
                        "steady")
    (fig,) = out.phases
    assert fig["answers"] > 0 and fig["wrong"] == 0, fig


def test_the_cli_prints_verdicts_and_writes_the_report(server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key,
           "MLAMBDA_INVOKE_KEY": server.invoke_key}
    report = tmp_path / "report"
    r = subprocess.run(
        [sys.executable, "-m", "mlambda.cli", "loadtest", "POST", "/sleeper", "--concurrency",
         "4", "--duration", "1s", "--warmup", "0s", "--need-concurrency", "4", "--p99-ms",
         str(SLEEP_MS - 10), "--generator", "native", "--out", str(report)],
        env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr  # one requirement failed
    assert "PASS  >= 4 concurrent requests" in r.stdout
    assert f"FAIL  p99 < {SLEEP_MS - 10} ms at steady load" in r.stdout
    figures = json.loads((report / "figures.json").read_text())
    assert [v["passed"] for v in figures["verdicts"]] == [True, False]
    assert figures["phases"][0]["per_second"]
    for png in ("steady-timeline.png", "steady-histogram.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
