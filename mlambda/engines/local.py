"""The embedded engine: each version gets a dispatcher, a template and instances, all
processes on this machine, all connected to one runtime socket."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable

from mlambda.engines.base import Engine
from mlambda.runtime import protocol as p
from mlambda.runtime.dispatcher import Dispatcher, InvokeHandler, Outcome, VersionRef
from mlambda.runtime.sandbox import Limits
from mlambda.runtime.supervisor import RuntimeSocket
from mlambda.telemetry.events import EventSink

MEMORY_CHECK_S = 0.1


class LocalEngine(Engine):
    def __init__(self, volume: str,
                 on_outcome: Callable[[VersionRef, Outcome], None] | None = None,
                 on_model: Callable[[VersionRef, p.ModelLoaded], None] | None = None,
                 on_invoke: InvokeHandler | None = None,
                 limits: Limits | None = None,
                 events: EventSink | None = None) -> None:
        self.volume = volume
        self.on_outcome = on_outcome
        self.on_model = on_model
        self.on_invoke = on_invoke  # chained calls from instances (runtime/chaining.py)
        self.limits = limits
        self.events = events
        self.rundir = tempfile.mkdtemp(prefix="mlambda-")  # 0700: only we can connect
        group = limits.gid if limits is not None else None
        if group is not None:  # ... and the sandbox group, whose instances connect here
            os.chown(self.rundir, -1, group)
            os.chmod(self.rundir, 0o710)
        self.runtime = RuntimeSocket(os.path.join(self.rundir, "runtime.sock"), group)
        self.dispatchers: dict[str, Dispatcher] = {}
        self.monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.runtime.start()
        self.monitor = asyncio.get_running_loop().create_task(self.watch_memory())

    def config_of(self, version: VersionRef, token: str) -> p.TemplateConfig:
        return p.TemplateConfig(
            function_name=version.function,
            function_version=version.version,
            bundle=version.bundle,
            spec=version.spec,
            socket_path=self.runtime.path,
            token=token,
            gateway_pid=os.getpid(),
            volume=self.volume,
            limits=self.limits,
        )

    def dispatcher(self, version: VersionRef) -> Dispatcher:
        d = self.dispatchers.get(version.key)
        if d is None:
            d = Dispatcher(self.runtime, version, self.config_of, self.on_outcome,
                           self.on_model, self.on_invoke, self.events)
            self.dispatchers[version.key] = d
        return d

    def submit(self, version: VersionRef, item: p.Item, tenant: str = "",
               weight: int = 1, on_done: Callable[[Outcome], None] | None = None,
               ) -> asyncio.Future[Outcome]:
        return self.dispatcher(version).submit(item, tenant, weight, on_done)

    async def warm(self, version: VersionRef, count: int = 1) -> None:
        await self.dispatcher(version).warm(count)

    def capacity(self, version: VersionRef) -> int:
        d = self.dispatchers.get(version.key)
        return 0 if d is None else d.live_instances()

    def running(self) -> list[VersionRef]:
        return [d.version for d in self.dispatchers.values()]

    async def retire(self, version: VersionRef, timeout_s: float) -> None:
        d = self.dispatchers.get(version.key)
        if d is not None:
            await d.retire(timeout_s)

    async def scale_to_zero(self, version: VersionRef) -> None:
        d = self.dispatchers.get(version.key)
        if d is not None:
            await d.reset(keep_template=False)

    def status(self, version: VersionRef) -> dict[str, object]:
        d = self.dispatchers.get(version.key)
        if d is None:
            return {"version": version.version, "queued": 0, "template": False,
                    "failure": None, "instances": []}
        return d.status()

    async def watch_memory(self) -> None:
        """The memory limit, enforced from outside as a cgroup would: a busy instance over
        its `memory_mb` is killed (instances also check their own peak after each call)."""
        while True:
            await asyncio.sleep(MEMORY_CHECK_S)
            for d in self.dispatchers.values():
                d.check_memory()

    async def stop(self, timeout_s: float) -> None:
        if self.monitor is not None:
            self.monitor.cancel()
        dispatchers, self.dispatchers = list(self.dispatchers.values()), {}
        await asyncio.gather(*(d.drain(timeout_s) for d in dispatchers))
        await self.runtime.stop()
        try:
            os.rmdir(self.rundir)
        except OSError:
            pass
