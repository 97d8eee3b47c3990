"""The load test's pure parts: targets, durations, ids, figures and verdicts."""

from __future__ import annotations

import pytest

from mlambda.cli import _duration
from mlambda.errors import InvalidParameter
from mlambda.loadtest.bodies import PLACEHOLDER, make_id, template_bodies
from mlambda.loadtest.figures import Bounds, concurrency_verdict, p99_verdict, summarise
from mlambda.loadtest.samples import Samples
from mlambda.loadtest.target import parse_target


def test_targets() -> None:
    route = parse_target("post /inference", "http://127.0.0.1:9000/")
    assert (route.method, route.url, route.is_route) == (
        "POST", "http://127.0.0.1:9000/inference", True)
    fn = parse_target("echo:live", "http://h:1")
    assert fn.url == "http://h:1/2015-03-31/functions/echo/invocations?Qualifier=live"
    assert fn.function == "echo:live" and (fn.host, fn.port) == ("h", 1)
    for bad in ("FETCH /x", "POST inference", "a b c", "no spaces/here"):
        with pytest.raises(InvalidParameter):
            parse_target(bad, "http://h:1")
    with pytest.raises(InvalidParameter, match="--url"):
        parse_target("echo", "ftp://h")


def test_durations() -> None:
    assert [_duration("d", t) for t in ("60s", "2m", "500ms", "1.5", "1h")] == [
        60, 120, 0.5, 1.5, 3600]
    with pytest.raises(ValueError, match="--d: expected a duration"):
        _duration("d", "soon")


def test_ids_are_unique_and_carry_the_send_time() -> None:
    bodies = template_bodies('{"a": 1}')
    assert PLACEHOLDER in bodies.templates[0]  # added as loadtest_id
    one, two = bodies.body(1, 123), bodies.body(2, 123)
    assert one != two
    ident = make_id(bodies.nonce, 7, 0xABCDEF)
    assert len(ident) == 64 and int(ident[32:48], 16) == 0xABCDEF


def samples_of(rows: list[tuple[float, float, bool]], concurrency: int = 4) -> Samples:
    s = Samples("native", concurrency, started=100.0, ended=110.0)
    for done, latency, ok in rows:
        s.add(done, latency, ok)
    return s


def test_warm_up_requests_are_not_counted() -> None:
    # sent during the 2 s warm-up (even if answered after it), then 100 fast answers
    rows = [(102.5, 2.4, True)] + [(103 + i * 0.05, 0.010, True) for i in range(100)]
    fig = summarise("steady", samples_of(rows), warmup_s=2.0)
    assert fig["answers"] == 100
    assert fig["latency_ms"]["p99"] == pytest.approx(10.0)
    assert fig["per_second"][1]["answers"] == 20  # 103..104 s
    assert p99_verdict(fig, Bounds(p99_ms=11)).passed
    assert not p99_verdict(fig, Bounds(p99_ms=9)).passed


def test_the_concurrency_check_wants_every_answer_right() -> None:
    s = samples_of([(101 + i * 0.01, 0.01, i != 5) for i in range(50)])
    s.connections_served = 4
    fig = summarise("steady", s)
    assert fig["wrong"] == 1
    assert not concurrency_verdict(fig, Bounds(concurrency=4)).passed
    s.ok[5] = True
    assert concurrency_verdict(summarise("steady", s), Bounds(concurrency=4)).passed
    assert not concurrency_verdict(summarise("steady", s), Bounds(concurrency=5)).passed
