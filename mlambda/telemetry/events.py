"""The platform's own events (a cold start, a crash, a deploy...) and the one interface
through which the runtime and the control plane report them.

Whoever emits an event only builds a `PlatformEvent` and calls `sink.emit(event)`: the
sink must return at once (it runs on the event loop); where the event goes (the log
store, later perhaps metrics) is the sink's business.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Protocol


class EventKind(enum.StrEnum):
    COLD_START = "cold_start"
    INSTANCE_CRASH = "instance_crash"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    INIT_FAILED = "init_failed"
    DEPLOY = "deploy"
    ALIAS_MOVE = "alias_move"
    MODEL_SWAP = "model_swap"
    MODEL_LOAD_FAILED = "model_load_failed"
    LOGS_DROPPED = "logs_dropped"


ERROR_EVENTS = frozenset({
    EventKind.INSTANCE_CRASH, EventKind.TIMEOUT, EventKind.OUT_OF_MEMORY,
    EventKind.INIT_FAILED, EventKind.MODEL_LOAD_FAILED, EventKind.LOGS_DROPPED,
})


@dataclass(frozen=True, slots=True)
class PlatformEvent:
    """One thing the platform did or saw. `function` is None for what concerns every
    function (a model swap in the shared volume)."""

    kind: EventKind
    message: str
    function: str | None = None
    version: str | None = None
    request_id: str | None = None
    ts: float = field(default_factory=time.time)

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_EVENTS


class EventSink(Protocol):
    def emit(self, event: PlatformEvent) -> None:
        """Take the event; never block and never raise."""


class NoEvents:
    """The sink of a runtime that nobody watches (unit tests, benchmarks)."""

    def emit(self, event: PlatformEvent) -> None:
        pass
