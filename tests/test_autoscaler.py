"""The autoscaler is a pure function: snapshot in, decision out."""

from __future__ import annotations

from dataclasses import replace

from mlambda.runtime.autoscaler import InstanceView, ScaleSnapshot, decide

NOW = 1000.0
EMPTY = ScaleSnapshot(now=NOW, queued=0, instances=(), min_instances=0, max_instances=4,
                      max_batch=8, idle_ttl_s=10.0, template_alive=False,
                      template_idle_since=NOW - 1, template_ttl_s=60.0, failed=False)


def idle(name: str, since: float) -> InstanceView:
    return InstanceView(name, "idle", since)


def busy(name: str) -> InstanceView:
    return InstanceView(name, "busy", 0.0)


def test_from_zero_one_instance_per_batch_of_queued_work() -> None:
    assert decide(replace(EMPTY, queued=1)).start == 1
    assert decide(replace(EMPTY, queued=17)).start == 3
    assert decide(replace(EMPTY, queued=1000)).start == 4  # capped at max_instances


def test_no_scale_out_while_an_instance_is_idle() -> None:
    snap = replace(EMPTY, queued=5, instances=(idle("a", NOW),))
    assert decide(snap).start == 0


def test_counts_instances_already_starting() -> None:
    snap = replace(EMPTY, queued=16, instances=(InstanceView("a", "starting", 0.0),
                                                InstanceView("b", "starting", 0.0)))
    assert decide(snap).start == 0
    snap = replace(snap, queued=24)
    assert decide(snap).start == 1


def test_keeps_min_instances_warm() -> None:
    assert decide(replace(EMPTY, min_instances=2)).start == 2
    warm = replace(EMPTY, min_instances=1, instances=(idle("a", NOW - 100),))
    assert decide(warm).stop == ()


def test_scales_to_zero_after_idle_ttl() -> None:
    snap = replace(EMPTY, template_alive=True, template_idle_since=None,
                   instances=(idle("old", NOW - 11), idle("new", NOW - 2), busy("b")))
    d = decide(snap)
    assert d.stop == ("old",)
    assert d.next_check_at == NOW - 2 + 10  # when "new" expires
    assert not d.stop_template


def test_template_stops_after_its_own_ttl_once_no_instance_is_left() -> None:
    young = replace(EMPTY, template_alive=True, template_idle_since=NOW - 30)
    d = decide(young)
    assert not d.stop_template and d.next_check_at == NOW + 30
    old = replace(young, template_idle_since=NOW - 61)
    assert decide(old).stop_template


def test_failed_version_does_not_respawn() -> None:
    assert decide(replace(EMPTY, queued=10, failed=True)).start == 0
