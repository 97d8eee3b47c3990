"""The batch former is a pure function: snapshot in, decision out."""

from __future__ import annotations

from dataclasses import replace

from mlambda.runtime.batching import BatchSnapshot, plan_batch

BASE = BatchSnapshot(queued=3, oldest_wait_s=0.0, idle_instances=1, busy_instances=1,
                     max_batch=16, max_wait_s=0.010, arrival_rate=2000.0)


def test_nothing_to_do_without_work_or_an_idle_instance() -> None:
    assert plan_batch(replace(BASE, queued=0)).take == 0
    assert plan_batch(replace(BASE, idle_instances=0)).take == 0


def test_full_batch_goes_at_once() -> None:
    assert plan_batch(replace(BASE, queued=40)).take == 16


def test_waits_when_more_is_expected_soon_and_others_are_busy() -> None:
    plan = plan_batch(BASE)
    assert plan.take == 0
    # 13 more at 2000/s fill the batch in 6.5 ms, sooner than the 10 ms window
    assert abs(plan.wait_s - 13 / 2000) < 1e-9


def test_wait_is_bounded_by_the_window() -> None:
    plan = plan_batch(replace(BASE, arrival_rate=200.0, oldest_wait_s=0.004))
    assert plan.take == 0 and abs(plan.wait_s - 0.006) < 1e-9


def test_no_wait_when_it_cannot_pay() -> None:
    # a trickle: not even one more request expected within the window
    assert plan_batch(replace(BASE, arrival_rate=50.0)).take == 3
    # another instance is idle too: parallelism beats batching
    assert plan_batch(replace(BASE, idle_instances=2)).take == 3
    # nothing is busy: the load is light, answer now
    assert plan_batch(replace(BASE, busy_instances=0)).take == 3
    # the oldest request has waited the whole window
    assert plan_batch(replace(BASE, oldest_wait_s=0.010)).take == 3
    # batching disabled
    assert plan_batch(replace(BASE, max_wait_s=0.0)).take == 3
