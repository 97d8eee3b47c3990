"""The gateway's idempotency store: who leads, joins, is replayed or recomputed; bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mlambda.errors import InvalidParameter, TooManyRequests
from mlambda.gateway.idempotency import Answer, IdempotencyStore, Role, identify
from mlambda.registry import Idempotency

RULE = Idempotency("esun_uuid", ("image",), 300)
OK = Answer(200, ((b"content-type", b"application/json"),), b'{"answer":"A"}')


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def ids(**fields: Any) -> tuple[bytes, bytes]:
    found = identify(RULE, body(**fields))
    assert found is not None
    return found


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # the store's futures need a running loop


def test_only_the_key_and_matched_fields_identify_a_request() -> None:
    a = ids(esun_uuid="u1", image="AAAA", retry=2, esun_timestamp=1)
    assert ids(esun_uuid="u1", image="AAAA", retry=1, esun_timestamp=5, extra=None) == a
    other_image = ids(esun_uuid="u1", image="BBBB", retry=2)
    assert other_image[0] == a[0] and other_image[1] != a[1]
    no_image = ids(esun_uuid="u1")
    assert no_image[1] not in (a[1], ids(esun_uuid="u1", image=None)[1])
    assert ids(esun_uuid="u2", image="AAAA")[0] != a[0]
    assert ids(esun_uuid=1, image="A")[0] != ids(esun_uuid="1", image="A")[0]
    # object values compare by content, not by the order of their keys
    assert ids(esun_uuid="u", image={"a": 1, "b": 2}) == ids(esun_uuid="u", image={"b": 2, "a": 1})


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b'{"image": "A"}',
                                 b'{"esun_uuid": null}', b""])
def test_a_body_without_a_key_is_an_ordinary_request(raw: bytes) -> None:
    assert identify(RULE, raw) is None


def test_lead_join_replay_then_mismatch_is_computed_and_counted() -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        key, fp = ids(esun_uuid="u", image="A")
        ident = ("POST /inference", "k1", key)
        lead, role = store.claim(ident, fp, 0.0)
        assert role is Role.LEAD
        joined, role = store.claim(ident, fp, 0.1)
        assert role is Role.JOIN and joined is lead and not joined.done.done()
        store.settle(lead, OK, 300, 1.0)
        assert joined.done.result() == OK
        again, role = store.claim(ident, fp, 2.0)
        assert role is Role.REPLAY and again.answer == OK
        # the same esun_uuid with another image: a new request, never the stored answer
        _, other = ids(esun_uuid="u", image="B")
        fresh, role = store.claim(ident, other, 3.0)
        assert role is Role.LEAD and fresh is not lead and fresh.answer is None
        assert store.mismatches == 1
        store.settle(fresh, Answer(200, (), b'{"answer":"B"}'), 300, 4.0)
        # each keeps its own answer
        assert store.claim(ident, fp, 5.0)[0].answer == OK
        assert store.claim(ident, other, 5.0)[0].answer == Answer(200, (), b'{"answer":"B"}')
        assert store.stats() == {"entries": 2, "bytes": store.bytes, "leads": 2, "joins": 1,
                                 "replays": 3, "mismatches": 1, "evictions": 0}
    run(test)


def test_keys_are_per_route_and_per_api_key() -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        key, fp = ids(esun_uuid="u", image="A")
        slot, _ = store.claim(("POST /a", "k1", key), fp, 0.0)
        store.settle(slot, OK, 300, 0.0)
        assert store.claim(("POST /a", "k2", key), fp, 1.0)[1] is Role.LEAD
        assert store.claim(("POST /b", "k1", key), fp, 1.0)[1] is Role.LEAD
        assert store.mismatches == 0
    run(test)


def test_an_answer_is_replayed_until_its_ttl_then_recomputed() -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        ident, fp = ("r", "k", b"u"), b"fp"
        slot, _ = store.claim(ident, fp, 0.0)
        store.settle(slot, OK, 10, 100.0)  # the TTL runs from the answer
        assert store.claim(ident, fp, 109.9)[1] is Role.REPLAY
        again, role = store.claim(ident, fp, 110.0)
        assert role is Role.LEAD and again is not slot
        assert store.mismatches == 0
    run(test)


@pytest.mark.parametrize("status", [400, 429, 500, 502, 504])
def test_errors_reach_who_joined_but_are_never_replayed(status: int) -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        ident, fp = ("r", "k", b"u"), b"fp"
        lead, _ = store.claim(ident, fp, 0.0)
        joined, _ = store.claim(ident, fp, 0.0)
        error = Answer(status, (), b'{"errorType":"X","errorMessage":"y"}')
        store.settle(lead, error, 300, 1.0)
        assert joined.done.result() == error
        assert store.claim(ident, fp, 2.0)[1] is Role.LEAD
        assert len(store) == 1
    run(test)


def test_an_invocation_that_could_not_run_fails_its_joiners_and_is_forgotten() -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        ident, fp = ("r", "k", b"u"), b"fp"
        lead, _ = store.claim(ident, fp, 0.0)
        joined, _ = store.claim(ident, fp, 0.0)
        store.abandon(lead, TooManyRequests("queue full", "QueueFull"))
        with pytest.raises(TooManyRequests):
            await joined.done
        assert len(store) == 0 and store.bytes == 0
        assert store.claim(ident, fp, 1.0)[1] is Role.LEAD
    run(test)


def test_bounded_in_entries_least_recently_used_out() -> None:
    async def test() -> None:
        store = IdempotencyStore(3, 1 << 20)
        for i in range(3):
            slot, _ = store.claim(("r", "k", b"%d" % i), b"fp", 0.0)
            store.settle(slot, OK, 300, 0.0)
        assert store.claim(("r", "k", b"0"), b"fp", 1.0)[1] is Role.REPLAY  # 0 now recent
        slot, _ = store.claim(("r", "k", b"3"), b"fp", 1.0)
        store.settle(slot, OK, 300, 1.0)
        assert len(store) == 3 and store.evictions == 1
        assert store.claim(("r", "k", b"0"), b"fp", 2.0)[1] is Role.REPLAY
        assert store.claim(("r", "k", b"1"), b"fp", 2.0)[1] is Role.LEAD  # the one evicted
    run(test)


def test_bounded_in_bytes() -> None:
    async def test() -> None:
        store = IdempotencyStore(10_000, 64 * 1024)
        big = Answer(200, (), b"x" * 900)
        for i in range(200):
            slot, _ = store.claim(("r", "k", b"%d" % i), b"fp", 0.0)
            store.settle(slot, big, 300, 0.0)
            assert store.bytes <= 64 * 1024
        assert 0 < len(store) < 200 and store.evictions == 200 - len(store)
        # an answer larger than 1/64 of the budget is given but not kept
        slot, _ = store.claim(("r", "k", b"huge"), b"fp", 0.0)
        store.settle(slot, Answer(200, (), b"y" * 2000), 300, 0.0)
        assert slot.done.result().body == b"y" * 2000
        assert store.claim(("r", "k", b"huge"), b"fp", 0.0)[1] is Role.LEAD
    run(test)


def test_expired_entries_leave_without_being_asked_for() -> None:
    async def test() -> None:
        store = IdempotencyStore(100, 1 << 20)
        for i in range(5):
            slot, _ = store.claim(("r", "k", b"%d" % i), b"fp", 0.0)
            store.settle(slot, OK, 1, 0.0)
        store.claim(("r", "k", b"new"), b"fp", 5.0)
        assert len(store) == 1 and store.by_ident.keys() == {("r", "k", b"new")}
    run(test)


@pytest.mark.parametrize(("value", "field"), [
    ("esun_uuid", "idempotency"),
    ({"match": ["image"]}, "idempotency.key"),
    ({"key": ""}, "idempotency.key"),
    ({"key": "u", "match": "image"}, "idempotency.match"),
    ({"key": "u", "match": ["image", "image"]}, "idempotency.match"),
    ({"key": "u", "match": ["u"]}, "idempotency.match"),
    ({"key": "u", "ttl_s": 0}, "idempotency.ttl_s"),
    ({"key": "u", "ttl_s": "5"}, "idempotency.ttl_s"),
    ({"key": "u", "ttl_s": 10**9}, "idempotency.ttl_s"),
    ({"key": "u", "colour": 1}, "idempotency"),
])
def test_a_bad_option_names_its_field(value: Any, field: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        Idempotency.parse(value)
    assert f"`{field}`" in err.value.message


def test_a_good_option_round_trips() -> None:
    rule = Idempotency.parse({"key": "esun_uuid", "match": ["image"], "ttl_s": 300})
    assert rule == RULE
    assert Idempotency.from_json(rule.to_json()) == rule
