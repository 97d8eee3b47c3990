"""The engine boundary: where versions run. `local` runs instances as processes here."""

from __future__ import annotations

import abc
import asyncio

from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.runtime.protocol import Item


class Engine(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Prepare to run versions (no instance starts until a version is invoked)."""

    @abc.abstractmethod
    def submit(self, version: VersionRef, item: Item, tenant: str = "",
               weight: int = 1) -> asyncio.Future[Outcome]:
        """Queue one invocation of `version` for `tenant` (the caller's API key id; `weight`
        its share of a contended queue); raise an `MlambdaError` if it cannot be taken."""

    @abc.abstractmethod
    async def warm(self, version: VersionRef, count: int = 1) -> None:
        """Have `count` instances of `version` past their init; raise `InitError` if one
        fails."""

    @abc.abstractmethod
    def capacity(self, version: VersionRef) -> int:
        """How many instances `version` has now (starting or serving)."""

    @abc.abstractmethod
    def running(self) -> list[VersionRef]:
        """The versions that have a dispatcher (and so may hold instances)."""

    @abc.abstractmethod
    async def retire(self, version: VersionRef, timeout_s: float) -> None:
        """Let `version` finish what it has, then stop its instances (it may be called again:
        a later call starts instances as usual)."""

    @abc.abstractmethod
    async def scale_to_zero(self, version: VersionRef) -> None:
        """Stop `version`'s instances (busy ones after their batch) and its template, so
        that the next call pays a full cold start."""

    @abc.abstractmethod
    def status(self, version: VersionRef) -> dict[str, object]:
        """The version's runtime state: instances, queue, failure."""

    @abc.abstractmethod
    async def stop(self, timeout_s: float) -> None:
        """Finish in-flight work (bounded by `timeout_s`), then stop every process."""
