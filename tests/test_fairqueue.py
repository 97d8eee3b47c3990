"""The fair queue: deficit round-robin over one FIFO per key, exactly."""

from __future__ import annotations

import pytest

from mlambda.runtime.fairqueue import FairQueue


def take(q: FairQueue[str], n: int | None = None) -> list[str]:
    n = len(q) if n is None else n
    return [q.pop() for _ in range(n)]


def test_one_key_is_a_fifo() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(5):
        q.push(f"a{i}", "a")
    assert len(q) == 5
    assert take(q) == ["a0", "a1", "a2", "a3", "a4"]
    assert not q and len(q) == 0
    with pytest.raises(IndexError):
        q.pop()


def test_a_flood_does_not_delay_a_light_key_behind_its_backlog() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(100):
        q.push(f"heavy{i}", "heavy")
    q.push("light0", "light")
    q.push("light1", "light")
    # turns alternate; each key keeps its own arrival order
    assert take(q, 6) == ["heavy0", "light0", "heavy1", "light1", "heavy2", "heavy3"]
    assert len(q) == 96
    assert take(q) == [f"heavy{i}" for i in range(4, 100)]


def test_weights_give_turns_of_that_many_items() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(6):
        q.push(f"a{i}", "a", weight=3)
    for i in range(6):
        q.push(f"b{i}", "b", weight=1)
    assert take(q) == ["a0", "a1", "a2", "b0", "a3", "a4", "a5", "b1", "b2", "b3", "b4", "b5"]


def test_a_key_that_arrives_later_waits_for_the_keys_already_queued() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("a0", "a")
    q.push("a1", "a")
    q.push("b0", "b")
    assert q.pop() == "a0"
    q.push("c0", "c")  # new: joins the round after a and b
    assert take(q) == ["b0", "a1", "c0"]


def test_a_key_that_empties_leaves_the_round_and_rejoins_at_the_back() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("a0", "a", weight=2)
    q.push("b0", "b")
    q.push("b1", "b")
    assert q.pop() == "a0"  # a's queue is empty: its unused credit is not kept
    q.push("a1", "a", weight=2)
    assert take(q) == ["b0", "a1", "b1"]
    assert q.tenants == {} and len(q.turns) == 0  # nothing left behind for idle keys


def test_work_sent_back_to_the_front_goes_first_in_its_order() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("a0", "a")
    q.push("b0", "b")
    # an instance died: what it had not started goes back, in its order, first
    for item in reversed(["x0", "x1"]):
        q.push_front(item)
    assert len(q) == 4
    assert take(q) == ["x0", "x1", "a0", "b0"]


def test_heads_hold_the_oldest_item() -> None:
    q: FairQueue[int] = FairQueue()
    for t, tenant in [(5, "a"), (1, "b"), (7, "a"), (3, "c"), (2, "b")]:
        q.push(t, tenant)
    assert sorted(q.heads()) == [1, 3, 5]
    assert min(q.heads()) == 1
    q.push_front(0)
    assert min(q.heads()) == 0


def test_drain_takes_everything_and_counts_per_key() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(3):
        q.push(f"a{i}", "a")
    q.push("b0", "b")
    q.push_front("x")
    assert q.queued("a") == 3 and q.queued("b") == 1 and q.queued("nobody") == 0
    assert list(q.drain()) == ["x", "a0", "b0", "a1", "a2"]
    assert len(q) == 0 and not q.tenants


def test_weight_below_one_counts_as_one_and_the_latest_weight_counts() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("a0", "a", weight=0)
    q.push("a1", "a", weight=0)
    q.push("b0", "b")
    assert q.pop() == "a0" and q.pop() == "b0"
    q.push("a2", "a", weight=2)
    q.push("b1", "b")
    assert take(q) == ["a1", "a2", "b1"]


def test_a_full_queue_makes_room_for_a_lighter_key_from_the_heaviest() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(4):
        q.push(f"heavy{i}", "heavy")
    q.push("mid0", "mid")
    q.push("mid1", "mid")
    # full at 6: a newcomer takes the place of the heaviest key's newest item
    assert q.displace("light") == "heavy3"
    q.push("light0", "light")
    assert len(q) == 6 and q.queued("heavy") == 3
    # the heaviest key itself, or a key that would then hold as much, is refused
    assert q.displace("heavy") is None
    assert q.displace("mid") is None  # mid would hold 3, as heavy does
    assert q.displace("light") == "heavy2"  # light would hold 2 < 3
    q.push("light1", "light")
    assert take(q) == ["heavy0", "mid0", "light0", "heavy1", "mid1", "light1"]


def test_displacing_counts_shares_by_weight_and_can_empty_a_key() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("a0", "a", weight=4)
    q.push("a1", "a", weight=4)
    q.push("b0", "b")
    assert q.displace("c") is None  # b holds 1 per weight, a 0.5: c would hold 1
    q.push("b1", "b")
    assert q.displace("c") == "b1"  # b holds 2 per weight
    assert q.displace("c", weight=2) == "b0"  # c would hold 0.5 per weight, b 1
    assert "b" not in q.tenants and list(q.turns) == ["a"]
    assert take(q) == ["a0", "a1"]
    assert q.displace("c") is None  # empty: nothing to take back
