"""Where invocation outcomes and platform events go to be logged, off the hot path.

On the event loop, `record` and `emit` only append to a queue. One thread drains it:
it blocks for the first entry, gathers what else arrives within `log_flush_ms`, scrubs
secrets, writes everything in one transaction, applies retention now and then, and
tells the loop that new entries are there (which wakes `mlambda logs --follow`). If the
disk falls behind by more than `log_queue_max` entries, new ones are dropped and a
`logs_dropped` event says how many.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.settings import Settings
from mlambda.telemetry.events import EventKind, PlatformEvent
from mlambda.telemetry.logs import invocation_body, scrub
from mlambda.telemetry.logstore import INVOCATION, LogQuery, LogRecord, LogStore

log = logging.getLogger("mlambda.logs")
RETENTION_EVERY_S = 60.0
BATCH_MAX = 5000


@dataclass(frozen=True, slots=True)
class _Invoked:
    ts: float
    function: str
    memory_mb: int
    outcome: Outcome


_STOP = object()


class LogSink:
    def __init__(self, store: LogStore, settings: Settings) -> None:
        self.store = store
        self.flush_s = settings.log_flush_ms / 1000
        self.max_age_s = settings.log_retention_days * 86400
        self.max_bytes = int(settings.log_max_mb * 1024 * 1024)
        self.queue_max = settings.log_queue_max
        self.pending: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.dropped = 0
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.new_entries: asyncio.Event | None = None

    # -- the event loop's side: append only ---------------------------------------------

    def record(self, version: VersionRef, outcome: Outcome) -> None:
        """An invocation ended (the engine's `on_outcome`)."""
        self._put(_Invoked(time.time(), version.function, version.spec.memory_mb, outcome))

    def emit(self, event: PlatformEvent) -> None:
        self._put(event)

    def _put(self, item: object) -> None:
        if self.pending.qsize() >= self.queue_max:
            self.dropped += 1
            return
        self.pending.put(item)

    async def read(self, q: LogQuery, wait_s: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        """The entries `q` selects and the cursor to continue from. With a cursor
        (`q.after`) and `wait_s`, waits up to that long for new entries (a long poll)."""
        deadline = time.monotonic() + wait_s
        while True:
            entries, cursor = await asyncio.to_thread(self.store.query, q)
            remaining = deadline - time.monotonic()
            if entries or q.after is None or remaining <= 0:
                return entries, cursor
            await self.wait_new(remaining)
            q = dataclasses.replace(q, after=cursor)

    async def wait_new(self, timeout_s: float) -> bool:
        """Wait until the writer commits new entries (or `timeout_s` passes)."""
        if self.new_entries is None:
            return False
        event = self.new_entries
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _committed(self) -> None:
        """On the loop: wake whoever waits for new entries."""
        if self.new_entries is not None:
            self.new_entries.set()
            self.new_entries = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.new_entries = asyncio.Event()
        self.thread = threading.Thread(target=self.run, name="mlambda-logs", daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        """Write what is queued, then close the store."""
        if self.thread is not None:
            self.pending.put(_STOP)
            await asyncio.to_thread(self.thread.join)
            self.thread = None
        self.store.close()

    # -- the writer thread ------------------------------------------------------------

    def run(self) -> None:
        next_retention = time.monotonic()
        stopping = False
        while not stopping:
            if time.monotonic() >= next_retention:
                self.retain()
                next_retention = time.monotonic() + RETENTION_EVERY_S
            try:
                first = self.pending.get(timeout=max(0.0, next_retention - time.monotonic()))
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.flush_s
            while len(batch) < BATCH_MAX and batch[-1] is not _STOP:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self.pending.get(timeout=remaining) if remaining > 0
                                 else self.pending.get_nowait())
                except queue.Empty:
                    break
            stopping = batch[-1] is _STOP
            self.flush([item for item in batch if item is not _STOP])
        self.retain()

    def flush(self, items: list[object]) -> None:
        records = [self.to_record(item) for item in items]
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            records.append(to_record(PlatformEvent(
                EventKind.LOGS_DROPPED,
                f"{dropped} log entries dropped: the log store fell behind by more than "
                f"{self.queue_max} entries")))
        if not records:
            return
        try:
            self.store.write(records)
        except Exception:
            log.exception("could not write %d log entries", len(records))
            return
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._committed)
            except RuntimeError:  # the loop closed meanwhile
                pass

    @staticmethod
    def to_record(item: object) -> LogRecord:
        if isinstance(item, _Invoked):
            o = item.outcome
            return LogRecord(
                ts=item.ts, function=item.function, version=o.version, kind=INVOCATION,
                text=scrub(invocation_body(o)), request_id=o.request_id,
                trace_id=o.trace_id or None,
                error_type=None if o.error is None else o.error.error_type,
                duration_ms=o.duration_ms, init_ms=o.init_ms, memory_mb=item.memory_mb,
                max_memory_mb=o.max_memory_mb)
        assert isinstance(item, PlatformEvent)
        return to_record(item)

    def retain(self) -> None:
        try:
            gone = self.store.apply_retention(self.max_age_s, self.max_bytes)
        except Exception:
            log.exception("log retention failed")
            return
        if gone:
            log.info("log retention removed %d entries", gone)


def to_record(event: PlatformEvent) -> LogRecord:
    return LogRecord(ts=event.ts, function=event.function, version=event.version,
                     kind=event.kind.value, text=scrub(event.message),
                     request_id=event.request_id)
