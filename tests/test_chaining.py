"""The deadlock policy of chained calls: a pure function of who waits on whom."""

from __future__ import annotations

from collections import Counter

from mlambda.runtime.chaining import Blocked, deadlocked


def waits(version: str, max_instances: int, *targets: str) -> Blocked:
    return Blocked(version, max_instances, Counter(targets))


def test_a_version_calling_itself_at_max_instances_is_stuck() -> None:
    assert deadlocked({"i1": waits("a:1", 2, "a:1"), "i2": waits("a:1", 2, "a:1")}) == {"a:1"}


def test_a_free_instance_left_means_no_deadlock() -> None:
    assert deadlocked({"i1": waits("a:1", 2, "a:1")}) == set()


def test_a_two_version_cycle_is_stuck_only_when_both_are_full() -> None:
    both_full = {"i1": waits("a:1", 1, "b:1"), "j1": waits("b:1", 1, "a:1")}
    assert deadlocked(both_full) == {"a:1", "b:1"}
    b_has_room = {"i1": waits("a:1", 1, "b:1"), "j1": waits("b:1", 2, "a:1")}
    assert deadlocked(b_has_room) == set()


def test_full_but_waiting_on_a_healthy_version_is_not_stuck() -> None:
    # every instance of a:1 waits, but on c:1, which has room: they will come back
    blocked = {"i1": waits("a:1", 2, "c:1"), "i2": waits("a:1", 2, "a:1", "c:1")}
    assert deadlocked(blocked) == set()
    # one of them waits on a:1 only, the other on c:1: a:1 frees an instance when c answers
    blocked = {"i1": waits("a:1", 2, "a:1"), "i2": waits("a:1", 2, "c:1")}
    assert deadlocked(blocked) == set()


def test_an_instance_killed_while_it_waited_holds_no_slot() -> None:
    dead = Blocked("a:1", 2, Counter({"a:1": 1}), alive=lambda: False)
    assert deadlocked({"i1": waits("a:1", 2, "a:1"), "i2": dead}) == set()
