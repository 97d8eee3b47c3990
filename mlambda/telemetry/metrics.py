"""Metrics collection, off the hot path.

On the hot path (the event loop) telemetry is one `list.append` per event: an ended
invocation (`on_outcome`, the engine's callback), an alias's invocation or a 429 (from
the gateway), a request on a route. Every `sample_s` the loop reads the gauges
(instances by state, busy instances, queue depth) and hands the appended events with
them to one writer thread, which aggregates them into the current interval's points and,
every `flush_s`, merges the interval into SQLite (`MetricStore`). All aggregates live on
that thread; queries and /metrics run there too, after the events handed over before
them, so they see the unflushed interval as well.

The interval holds one point per version, per alias, per route, and per function for
what has no version (a usage plan's 429); a function's series is its own point merged
with its versions' when the interval is read or written.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mlambda.engines.base import Engine
from mlambda.errors import http_status
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.telemetry import series as s
from mlambda.telemetry.metricstore import ROLLUP, MetricStore, SeriesKey
from mlambda.telemetry.series import Point

log = logging.getLogger("mlambda.metrics")
QUEUE_FULL = "QueueFull"  # the dispatcher's reason; the only 429 that comes as an outcome
T = TypeVar("T")
STATUS_CLASS = {1: "Requests:1xx", 2: "Requests:2xx", 3: "Requests:3xx", 4: "Requests:4xx",
                5: "Requests:5xx"}

# events, as appended on the hot path
_OUTCOME, _ALIAS, _THROTTLE, _REQUEST = range(4)
Event = tuple[int, str, str, str, object, float, float]  # ..., value, number, monotonic time
# gauges, as sampled on the loop: (function, version, instances by state, queued)
Gauges = list[tuple[str, str, dict[str, int], int]]


def is_alias(qualifier: str | None) -> bool:
    """Aliases are names; versions are numbers or $LATEST."""
    return bool(qualifier) and not qualifier.isdigit() and qualifier != "$LATEST"  # type: ignore[union-attr]


class Metrics:
    def __init__(self, store: MetricStore, engine: Engine, flush_s: float = 10.0,
                 sample_s: float = 1.0) -> None:
        self.store = store
        self.engine = engine
        self.flush_s = flush_s
        self.sample_s = min(sample_s, flush_s)
        self.pending: list[Event] = []  # the loop appends; handed over every sample_s
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="mlambda-metrics")
        self.task: asyncio.Task[None] | None = None
        # -- the writer thread's own --
        self.window: dict[SeriesKey, Point] = {}
        self.window_start = time.time()
        self.totals: dict[SeriesKey, Point] = {}  # since this process started: /metrics
        self.last_maintained = 0.0
        # when each instance was busy in this interval: function -> version -> instance ->
        # [(start, end)], so that ConcurrentExecutions counts even invocations that began
        # and ended between two samples of the gauges
        self.busy: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = {}

    # -- the hot path's calls (event loop): one append each ----------------------------

    def on_outcome(self, version: VersionRef, outcome: Outcome) -> None:
        """Every invocation that reached a dispatcher, as it ends (the engine's callback)."""
        self.pending.append((_OUTCOME, version.function, version.version, "", outcome,
                             version.spec.memory_mb, time.monotonic()))

    def on_alias_outcome(self, function: str, qualifier: str | None, outcome: Outcome,
                         memory_mb: int) -> None:
        """An invocation the gateway sent through an alias: the alias's own series."""
        if is_alias(qualifier):
            self.pending.append((_ALIAS, function, "", qualifier or "", outcome, memory_mb, 0.0))

    def on_alias_future(self, function: str, qualifier: str | None, memory_mb: int,
                        future: asyncio.Future[Outcome]) -> None:
        """The same, for an invocation nobody awaits (an Event invoke) or many await (an
        idempotent route's): counted once, when it ends."""
        if not is_alias(qualifier):
            return

        def done(f: asyncio.Future[Outcome]) -> None:
            if not f.cancelled() and f.exception() is None:
                self.on_alias_outcome(function, qualifier, f.result(), memory_mb)

        future.add_done_callback(done)

    def throttled(self, function: str, qualifier: str | None, version: str | None,
                  reason: str) -> None:
        """A 429, by its reason (QueueFull, a usage plan's limit...): not an invocation."""
        alias = (qualifier or "") if is_alias(qualifier) else ""
        self.pending.append((_THROTTLE, function, version or "", alias, reason, 0.0, 0.0))

    def request(self, route: str, status: int, seconds: float) -> None:
        """One request on a gateway route, with its latency as the client saw it."""
        self.pending.append((_REQUEST, "", "", route, status, seconds, 0.0))

    # -- the loop's side ---------------------------------------------------------------

    def sample(self, idle_too: bool = False) -> Gauges:
        """Each running version's instances by state and queue (the idle ones too, or
        only those with an instance or a queue)."""
        out: Gauges = []
        for ref in self.engine.running():
            status = self.engine.status(ref)
            states = collections.Counter(
                str(i["state"]) for i in status["instances"])  # type: ignore[attr-defined]
            queued = int(status["queued"])  # type: ignore[call-overload]
            if states or queued or idle_too:
                out.append((ref.function, ref.version, dict(states), queued))
        return out

    def hand_over(self, gauges: Gauges | None = None) -> asyncio.Future[None]:
        events, self.pending = self.pending, []
        return asyncio.get_running_loop().run_in_executor(self.writer, self.absorb, events,
                                                          gauges or [])

    async def start(self) -> None:
        self.writer.submit(self.maintain)  # roll up what the last run left; no waiting
        self.window_start = time.time()
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_flush = (time.time() // self.flush_s + 1) * self.flush_s
        while True:
            await asyncio.sleep(max(0.0, min(self.sample_s, next_flush - time.time())))
            try:
                await self.hand_over(self.sample())
                if time.time() >= next_flush - 0.001:
                    next_flush = (time.time() // self.flush_s + 1) * self.flush_s
                    await loop.run_in_executor(self.writer, self.flush)
            except Exception:  # a failed write must not stop collection
                log.exception("metrics: flush failed")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.hand_over()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.writer, self.flush)
        await loop.run_in_executor(self.writer, self.store.close)
        self.writer.shutdown()

    async def query(self, keys: Iterable[SeriesKey],
                    fn: Callable[[MetricStore, dict[SeriesKey, Point], float], T]) -> T:
        """Run `fn(store, the unflushed interval's points, its start)` on the writer thread,
        after every event so far."""
        await self.hand_over()
        wanted = set(keys)

        def run() -> T:
            live = {k: p for k, p in self.live().items() if k in wanted}
            return fn(self.store, live, self.window_start)

        return await asyncio.get_running_loop().run_in_executor(self.writer, run)

    async def read_cumulative(self, fn: Callable[[dict[SeriesKey, Point]], T]) -> T:
        """Run `fn(everything since this process started)` on the writer thread."""
        await self.hand_over()
        return await asyncio.get_running_loop().run_in_executor(
            self.writer, lambda: fn(self.cumulative()))

    # -- the writer thread's side ------------------------------------------------------

    def point(self, key: SeriesKey) -> Point:
        p = self.window.get(key)
        if p is None:
            p = self.window[key] = Point()
        return p

    def absorb(self, events: list[Event], gauges: Gauges) -> None:
        for kind, function, version, name, value, number, at in events:
            if kind == _OUTCOME:
                o: Outcome = value  # type: ignore[assignment]
                record(self.point(SeriesKey(function, "", version)), o, number)
                if o.instance_id:
                    self.busy.setdefault(function, {}).setdefault(version, {}).setdefault(
                        o.instance_id, []).append((at - o.duration_ms / 1000, at))
            elif kind == _ALIAS:
                record(self.point(SeriesKey(function, name)), value, number)  # type: ignore[arg-type]
            elif kind == _THROTTLE:
                label = s.labelled(s.THROTTLES, str(value))
                # the version's point, or (no version chosen yet) the function's own
                self.point(SeriesKey(function, "", version)).add(label)
                if name:
                    self.point(SeriesKey(function, name)).add(label)
            else:
                p = self.point(SeriesKey("", route=name))
                p.add(STATUS_CLASS.get(int(value) // 100, "Requests:other"))  # type: ignore[call-overload]
                p.observe(s.LATENCY, number * 1000.0)
        per_function: dict[str, collections.Counter[str]] = {}
        for function, version, states, queued in gauges:
            record_gauges(self.point(SeriesKey(function, "", version)), states, queued)
            total = per_function.setdefault(function, collections.Counter())
            total.update(states)
            total["\0queued"] += queued
        for function, counts in per_function.items():
            queued = counts.pop("\0queued", 0)
            record_gauges(self.point(SeriesKey(function)), counts, queued)

    def count_busy(self) -> None:
        """The most instances busy at once in the interval, per version and per function,
        from the invocations that ended in it (the sampled gauges add those still running)."""
        for function, versions in self.busy.items():
            everyone: list[tuple[float, float]] = []
            for version, instances in versions.items():
                spans = [span for runs in instances.values() for span in union(runs)]
                self.point(SeriesKey(function, "", version)).gauge(s.CONCURRENT, peak(spans))
                everyone += spans
            self.point(SeriesKey(function)).gauge(s.CONCURRENT, peak(everyone))

    def live(self) -> dict[SeriesKey, Point]:
        """The unflushed interval as it would be written now."""
        self.count_busy()
        return merged(self.window)

    def flush(self) -> None:
        self.count_busy()
        self.busy = {}
        window, start = merged(self.window), self.window_start
        self.window, self.window_start = {}, time.time()
        for key, p in window.items():
            total = self.totals.get(key)
            if total is None:
                total = self.totals[key] = Point()
            total.merge(p)
        self.store.write(start, window)
        if time.time() - self.last_maintained >= ROLLUP / 4:
            self.maintain()

    def maintain(self) -> None:
        self.last_maintained = time.time()
        try:
            self.store.maintain(settle_s=self.flush_s + 1)
        except Exception:  # the next attempt retries it; collection goes on
            log.exception("metrics: rollup or retention failed")

    def cumulative(self) -> dict[SeriesKey, Point]:
        """Everything since this process started, flushed or not."""
        out: dict[SeriesKey, Point] = {}
        for table in (self.totals, self.live()):
            for key, p in table.items():
                mine = out.get(key)
                if mine is None:
                    mine = out[key] = Point()
                mine.merge(p)
        return out


def merged(window: dict[SeriesKey, Point]) -> dict[SeriesKey, Point]:
    """The interval's points with each function's own point merged with its versions'
    (new points; the interval is left as it is)."""
    out = dict(window)
    functions: dict[str, Point] = {}
    for key, p in window.items():
        if key.route or key.alias:
            continue
        f = functions.get(key.function)
        if f is None:
            f = functions[key.function] = Point()
        f.merge(p)
    for function, p in functions.items():
        out[SeriesKey(function)] = p
    return out


def union(runs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """One instance's busy spans, overlapping ones (the items of one batch) made one."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(runs):
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (one ending as another starts: not both)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def record(p: Point, o: Outcome, memory_mb: float) -> None:
    if o.error is not None and http_status(o.error) == 429:
        # pushed out of a full queue by a lighter key's request: a throttle, not a run
        p.add(s.labelled(s.THROTTLES, QUEUE_FULL))
        return
    p.add(s.INVOCATIONS)
    if o.error is not None:
        p.add(s.labelled(s.ERRORS, o.error.error_type))
    if not o.instance_id:  # refused before it ran (a failed init's backoff, shutdown)
        return
    p.observe(s.DURATION, o.duration_ms)
    p.observe(s.QUEUE_WAIT, o.queue_ms)
    if o.batch_size:
        p.observe(s.BATCH_SIZE, o.batch_size)
    if o.init_ms is not None:
        p.add(s.COLD_STARTS)
        p.observe(s.INIT_DURATION, o.init_ms)
    billed_ms = math.ceil(o.duration_ms + (o.init_ms or 0.0))
    p.add(s.BILLED_GB_S, billed_ms * memory_mb / 1_024_000)
    if o.max_memory_mb:
        p.gauge(s.MAX_MEMORY, o.max_memory_mb)


def record_gauges(p: Point, states: dict[str, int], queued: int) -> None:
    p.gauge(s.CONCURRENT, states.get("busy", 0))
    p.gauge(s.INSTANCES, sum(states.values()))
    for state, n in states.items():
        p.gauge(s.labelled(s.INSTANCES, state), n)
    p.gauge(s.QUEUE_DEPTH, queued)
