"""Retries answered once: the gateway's store of invocations by idempotency key.

A route with the option `idempotency = {key, match, ttl_s}` names a JSON field of the
request body that identifies a question (E.SUN's `esun_uuid`) and the fields whose
values make its answer (`image`). A request is identified by its route, its API key,
the hash of its key field and the hash of its matched fields (other fields, such as a
retry counter or a timestamp, do not count):

- the same question still running: the request joins it (one invocation, both answered);
- the same question answered with a 2xx within `ttl_s`: the stored answer is replayed;
- the same key with other matched fields: a new question, computed, never answered from
  the store; counted in `mismatches`;
- errors are never stored: a retry after one runs again.

One store serves every version and instance of every route (it lives in the gateway),
bounded in entries and bytes: least recently used first out, expired entries dropped.
Nothing here does I/O; time comes in as `now` (monotonic seconds).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import msgspec

from mlambda.registry import Idempotency

ENTRY_OVERHEAD = 256  # bytes an entry costs besides its answer (keys, slot, dict cells)
MISSING = b"\x00missing"  # a matched field absent from the body: not equal to any value

_decode = msgspec.json.Decoder().decode
_canonical = msgspec.json.Encoder(order="sorted").encode

Ident = tuple[str, str, bytes]  # route, API key id, hash of the key field's value


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the gateway sends it, kept to be sent again."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers)


def identify(rule: Idempotency, body: bytes) -> tuple[bytes, bytes] | None:
    """(hash of the key field's value, hash of the matched fields) of a JSON body; None
    when the body is not a JSON object or has no key field (then it is an ordinary
    request: the function answers it, and says what is wrong with it)."""
    try:
        doc = _decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    value = doc.get(rule.key)
    if value is None:
        return None
    key = hashlib.sha256(_canonical(value)).digest()
    h = hashlib.sha256()
    for name in rule.match:
        encoded = _canonical(doc[name]) if name in doc else MISSING
        h.update(len(encoded).to_bytes(8, "big"))
        h.update(encoded)
    return key, h.digest()


class Role(enum.StrEnum):
    LEAD = "lead"  # compute it, then `settle` or `abandon` the slot
    JOIN = "join"  # await the slot's answer
    REPLAY = "replay"  # the slot's answer is there


class Slot:
    __slots__ = ("answer", "done", "expires", "fingerprint", "ident", "size")

    def __init__(self, ident: Ident, fingerprint: bytes, done: asyncio.Future[Answer]) -> None:
        self.ident = ident
        self.fingerprint = fingerprint
        self.done = done
        self.answer: Answer | None = None
        self.expires = math.inf  # while it runs
        self.size = ENTRY_OVERHEAD


class IdempotencyStore:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_answer = max(1, max_bytes // 64)  # a larger answer is not kept
        self.slots: OrderedDict[tuple[Ident, bytes], Slot] = OrderedDict()  # LRU first
        self.by_ident: dict[Ident, set[bytes]] = {}  # the fingerprints kept per key
        self.bytes = 0
        # counters, for metrics
        self.leads = 0  # invocations started through the store
        self.joins = 0
        self.replays = 0
        self.mismatches = 0  # a key seen with other matched fields: computed anew
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.slots)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self.slots), "bytes": self.bytes, "leads": self.leads,
                "joins": self.joins, "replays": self.replays, "mismatches": self.mismatches,
                "evictions": self.evictions}

    def claim(self, ident: Ident, fingerprint: bytes, now: float) -> tuple[Slot, Role]:
        """The slot of this request and what to do with it. A LEAD must be settled or
        abandoned without awaiting anything in between."""
        self.expire_front(now)
        slot = self.slots.get((ident, fingerprint))
        if slot is not None and slot.expires <= now:
            self.drop(slot)
            slot = None
        if slot is not None:
            self.slots.move_to_end((ident, fingerprint))
            if slot.answer is None:
                self.joins += 1
                return slot, Role.JOIN
            self.replays += 1
            return slot, Role.REPLAY
        others = self.by_ident.get(ident)
        if others and any(self.slots[(ident, fp)].expires > now for fp in others):
            self.mismatches += 1
        slot = Slot(ident, fingerprint, asyncio.get_running_loop().create_future())
        self.slots[(ident, fingerprint)] = slot
        self.by_ident.setdefault(ident, set()).add(fingerprint)
        self.bytes += slot.size
        self.leads += 1
        self.evict()
        return slot, Role.LEAD

    def settle(self, slot: Slot, answer: Answer, ttl_s: float, now: float) -> None:
        """The invocation answered: wake who joined; keep a 2xx answer for `ttl_s`."""
        if not slot.done.done():
            slot.done.set_result(answer)
        kept = self.slots.get((slot.ident, slot.fingerprint)) is slot
        if not (200 <= answer.status < 300) or answer.size > self.max_answer:
            if kept:
                self.drop(slot)
            return
        if kept:
            self.bytes += answer.size
            slot.size += answer.size
            slot.answer = answer
            slot.expires = now + ttl_s
            self.evict()

    def abandon(self, slot: Slot, exc: BaseException) -> None:
        """The invocation could not run (or its result was lost): who joined gets `exc`;
        the next request runs again."""
        if not slot.done.done():
            slot.done.set_exception(exc)
            slot.done.exception()  # retrieved: whoever awaits it re-raises
        if self.slots.get((slot.ident, slot.fingerprint)) is slot:
            self.drop(slot)

    def drop(self, slot: Slot) -> None:
        del self.slots[(slot.ident, slot.fingerprint)]
        fps = self.by_ident[slot.ident]
        fps.discard(slot.fingerprint)
        if not fps:
            del self.by_ident[slot.ident]
        self.bytes -= slot.size

    def evict(self) -> None:
        while self.slots and (len(self.slots) > self.max_entries or self.bytes > self.max_bytes):
            _, slot = next(iter(self.slots.items()))
            self.drop(slot)  # one still running keeps its waiters: its leader settles it
            self.evictions += 1

    def expire_front(self, now: float) -> None:
        while self.slots:
            _, slot = next(iter(self.slots.items()))
            if slot.expires > now:
                return
            self.drop(slot)
