"""A version's queue, shared fairly between clients (tenants: API keys).

Deficit round-robin over one FIFO per tenant, each item costing one unit: the tenants
with queued work take turns, and a tenant of weight w takes up to w items per turn. A
flood from one key therefore delays another key by at most one turn of each busy key,
not by the whole backlog; within a key, arrival order is kept.

Work that has already waited its turn and must run again (an instance crashed before
starting it, or a crash retry) goes to a lane served before every tenant, as the front
of a single FIFO would have it.

Push and pop are O(1). When the queue is full, `displace` makes room for a key with a
smaller share than the largest one's. Nothing here does I/O or knows about time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _Tenant(Generic[T]):
    __slots__ = ("credit", "items", "weight")

    def __init__(self, weight: int) -> None:
        self.items: deque[T] = deque()
        self.weight = weight
        self.credit = 0  # items it may still take in its current turn


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self.tenants: dict[str, _Tenant[T]] = {}  # only tenants with queued items
        self.turns: deque[str] = deque()  # the tenants with queued items, in turn order
        self.again: deque[T] = deque()  # served first: work sent back to the front
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def push(self, item: T, tenant: str = "", weight: int = 1) -> None:
        """Queue `item` behind the tenant's earlier items. A tenant new to the queue takes
        its first turn after the tenants already waiting; `weight` (>= 1) is its share,
        the latest one given counting."""
        t = self.tenants.get(tenant)
        if t is None:
            t = self.tenants[tenant] = _Tenant(max(1, weight))
            self.turns.append(tenant)
        else:
            t.weight = max(1, weight)
        t.items.append(item)
        self.size += 1

    def push_front(self, item: T) -> None:
        """Put `item` before everything queued (work that must run again)."""
        self.again.appendleft(item)
        self.size += 1

    def pop(self) -> T:
        """The next item in fair order; IndexError when empty."""
        if self.again:
            self.size -= 1
            return self.again.popleft()
        if not self.turns:
            raise IndexError("pop from an empty FairQueue")
        name = self.turns[0]
        t = self.tenants[name]
        if t.credit <= 0:
            t.credit = t.weight  # its turn starts
        item = t.items.popleft()
        t.credit -= 1
        self.size -= 1
        if not t.items:  # leaves the round; its unused credit is not banked
            del self.tenants[name]
            self.turns.popleft()
        elif t.credit == 0:  # turn over: to the back of the round
            self.turns.rotate(-1)
        return item

    def displace(self, tenant: str, weight: int = 1) -> T | None:
        """The queue is full and `tenant` wants in: take back the newest item of the key
        holding the largest share (items per weight), if that share is larger than
        `tenant`'s would be with its new item; None if not (then `tenant` is refused).
        A flood fills the queue, but cannot keep a lighter key out of it. O(keys): only
        called when full."""
        if not self.tenants:
            return None
        name, t = max(self.tenants.items(), key=lambda kv: len(kv[1].items) / kv[1].weight)
        if name == tenant or len(t.items) / t.weight <= (self.queued(tenant) + 1) / max(1, weight):
            return None
        item = t.items.pop()
        self.size -= 1
        if not t.items:
            del self.tenants[name]
            self.turns.remove(name)
        return item

    def drain(self) -> Iterator[T]:
        """Take every item, in fair order (for failing or refusing what waits)."""
        while self.size:
            yield self.pop()

    def heads(self) -> Iterator[T]:
        """The oldest item of each tenant and the work sent back to the front: the oldest
        item of the whole queue is among these (tenants are FIFO)."""
        yield from self.again
        for t in self.tenants.values():
            yield t.items[0]

    def queued(self, tenant: str) -> int:
        t = self.tenants.get(tenant)
        return 0 if t is None else len(t.items)
