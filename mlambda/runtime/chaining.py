"""Chained calls, the gateway's side: a handler's `context.invoke` arrives as an `Invoke`
frame on its instance's connection; the target is resolved through the router and its
events are submitted to the callee's dispatcher like any other invocation (so they are
batched there); one `Invoked` frame answers once all of them have finished.

- Deadline: a callee's context never has more time than its caller has left; at the
  caller's deadline the call is answered `Task.TimedOut` (a callee still queued then is
  dropped; one already running is not killed: its batch holds other callers' events).
- Trace: every callee joins its caller's trace (the first hop's request id).
- Loops: a chain deeper than `MAX_HOPS` calls is refused (`RecursiveInvocationException`),
  as Lambda's recursive loop detection stops a loop after 16 invocations.
- Deadlocks: a caller blocked in a call holds its instance. A call that could never start
  (every instance its target may have is blocked on calls that need that target, e.g. a
  function calling itself at `max_instances`) is refused at once
  (`ChainDeadlockException`) instead of waiting for the timeout.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlambda.errors import (
    TIMED_OUT,
    ChainDeadlock,
    MlambdaError,
    RecursionStopped,
    function_error,
)
from mlambda.runtime import protocol as p
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.runtime.requestid import new_request_id
from mlambda.runtime.supervisor import Connection

MAX_HOPS = 16

Resolve = Callable[[str, str | None], VersionRef]
# (callee, item, called with its outcome as soon as it is known) -> its future (to cancel)
Submit = Callable[[VersionRef, p.Item, Callable[[Outcome], None] | None],
                  "asyncio.Future[Outcome]"]


@dataclass
class Blocked:
    """An instance waiting in a synchronous call: its version, and what it waits on."""

    version: str
    max_instances: int
    targets: Counter[str] = field(default_factory=Counter)
    alive: Callable[[], bool] = lambda: True  # False once its connection is gone


def deadlocked(blocked: Mapping[str, Blocked]) -> set[str]:
    """The versions that can never free an instance: all of their instances are blocked,
    each on a call to a version in the same situation (the greatest such set). Pure."""
    by_version: dict[str, list[Blocked]] = {}
    for b in blocked.values():
        if b.alive():  # a dead instance (killed while it waited) holds no slot
            by_version.setdefault(b.version, []).append(b)
    stuck = {v for v, bs in by_version.items() if len(bs) >= bs[0].max_instances}
    changed = True
    while changed:
        changed = False
        for v in list(stuck):
            if any(not any(t in stuck for t in b.targets) for b in by_version[v]):
                stuck.discard(v)
                changed = True
    return stuck


def _result(outcome: Outcome) -> p.CallResult:
    return p.CallResult(outcome.body, outcome.error, outcome.request_id, outcome.version)


class _Call:
    """One `Invoke` in flight: its callees' futures, answered together."""

    __slots__ = ("caller", "conn", "futures", "left", "msg", "results", "target", "timer")

    def __init__(self, msg: p.Invoke, conn: Connection, caller: str, target: str,
                 n: int) -> None:
        self.msg = msg
        self.conn = conn
        self.caller = caller
        self.target = target
        self.results: list[p.CallResult | None] = [None] * n
        self.futures: list[asyncio.Future[Outcome] | None] = [None] * n
        self.left = n
        self.timer: asyncio.TimerHandle | None = None


class Chaining:
    def __init__(self, resolve: Resolve, submit: Submit) -> None:
        self.resolve = resolve
        self.submit = submit
        self.blocked: dict[str, Blocked] = {}  # caller instance id -> what it waits on

    def on_invoke(self, caller: VersionRef, instance_id: str, conn: Connection,
                  msg: p.Invoke) -> None:
        """Called by the caller's dispatcher for an `Invoke` frame on `conn`; answers there."""
        n = len(msg.payloads)
        try:
            if msg.depth + 1 > MAX_HOPS:
                raise RecursionStopped(
                    f"{caller.function} called {msg.function} {MAX_HOPS + 1} calls deep in "
                    f"trace {msg.trace_ids[0] if msg.trace_ids else ''}: a chain of calls is "
                    f"stopped after {MAX_HOPS} hops (a loop?)")
            version = self.resolve(msg.function, msg.qualifier)
        except MlambdaError as exc:
            conn.send(p.Invoked(msg.call_id, (p.CallResult(b"", exc.info(), "", ""),) * n))
            return
        deadline = 0.0 if msg.asynchronous else msg.deadline
        call = _Call(msg, conn, instance_id, version.key, n)
        if not msg.asynchronous and not self.block(caller, instance_id, conn, version):
            self.unblock(instance_id, version.key)
            error = ChainDeadlock(
                f"{caller.key} -> {version.key} would never start: all "
                f"{version.spec.max_instances} instances {version.key} may have "
                f"(scaling.max_instances) are waiting on chained calls that need it; raise "
                f"its max_instances above the depth of the chain").info()
            conn.send(p.Invoked(msg.call_id,
                                (p.CallResult(b"", error, "", version.version),) * n))
            return
        for i, payload in enumerate(msg.payloads):
            item = p.Item(new_request_id(), payload, None, msg.trace_ids[i], msg.depth + 1,
                          deadline)
            try:
                future = self.submit(version, item, None if msg.asynchronous
                                     else functools.partial(self.on_done, call, i))
            except MlambdaError as exc:
                self.settle(call, i, p.CallResult(b"", exc.info(), item.request_id,
                                                  version.version))
                continue
            if msg.asynchronous:
                self.settle(call, i, p.CallResult(b"", None, item.request_id, version.version))
            elif call.results[i] is None:  # not answered at once (from within submit)
                call.futures[i] = future
        if call.left and not msg.asynchronous:
            call.timer = asyncio.get_running_loop().call_at(msg.deadline, self.on_deadline,
                                                            call, version)

    # -- blocked callers --------------------------------------------------------------

    def block(self, caller: VersionRef, instance_id: str, conn: Connection,
              target: VersionRef) -> bool:
        """Record that the caller waits on `target`; False if that closes a deadlock."""
        b = self.blocked.get(instance_id)
        if b is None:
            b = self.blocked[instance_id] = Blocked(caller.key, caller.spec.max_instances,
                                                    alive=lambda: not conn.closed)
        b.targets[target.key] += 1
        return target.key not in deadlocked(self.blocked)

    def unblock(self, instance_id: str, target: str) -> None:
        b = self.blocked.get(instance_id)
        if b is None:
            return
        b.targets[target] -= 1
        if b.targets[target] <= 0:
            del b.targets[target]
        if not b.targets:
            del self.blocked[instance_id]

    # -- answers ----------------------------------------------------------------------

    def on_done(self, call: _Call, i: int, outcome: Outcome) -> None:
        """A callee's outcome, from its dispatcher as it ends (no future callback: that
        would be one more trip through the event loop per event)."""
        if call.results[i] is None:  # else answered already: the caller's deadline passed
            self.settle(call, i, _result(outcome))

    def on_deadline(self, call: _Call, version: VersionRef) -> None:
        waiting = sum(1 for b in self.blocked.values()
                      if b.version == version.key and b.alive())
        hint = ""
        if waiting >= version.spec.max_instances:
            hint = (f"; all {waiting} instances of {version.key} were themselves waiting on "
                    f"chained calls (scaling.max_instances {version.spec.max_instances})")
        for i, future in enumerate(call.futures):
            if call.results[i] is None:
                error = function_error(
                    TIMED_OUT, f"{version.key} did not answer within the caller's remaining "
                               f"time{hint}")
                if future is not None:
                    future.cancel()  # still queued: it will not run
                self.settle(call, i, p.CallResult(b"", error, "", version.version))

    def settle(self, call: _Call, i: int, result: p.CallResult) -> None:
        call.results[i] = result
        call.left -= 1
        if call.left:
            return
        if call.timer is not None:
            call.timer.cancel()
        if not call.msg.asynchronous:
            self.unblock(call.caller, call.target)
        results = tuple(r for r in call.results if r is not None)
        call.conn.send(p.Invoked(call.msg.call_id, results))

