"""One version's replica on a Ray cluster: the `local` instance runtime inside a Ray Serve
deployment.

The replica runs the very code an instance runs (`runtime/instance.py`: the handler or
`batch_handler`, its `context`, its events, its results and error types) and sets up the
environment a template does (`runtime/zygote.py`): preload, then the handler module's import
(the init phase, once per replica). What differs is only the wire: batches come from Ray
Serve's `@serve.batch` and results go back as the call's return value, not over a socket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import itertools
import os
import resource
import sys
import threading
import time
import traceback
from typing import Any

import msgspec
import ray
from ray import serve

from mlambda import volume
from mlambda.errors import RUNTIME_TEMPLATE, ErrorInfo, function_error
from mlambda.runtime import faults, supervisor
from mlambda.runtime import protocol as p
from mlambda.runtime.calls import Calls
from mlambda.runtime.instance import EXIT_OOM, Instance
from mlambda.runtime.zygote import set_environment

FAILED_BACKOFF_S = 5.0  # as `local`: an init failure is answered, then init is tried again
EXIT_DELAY_S = 0.2  # a replica that must die answers first, then exits
EXIT_TIMED_OUT = 5
MEMORY_CHECK_S = 0.05  # the watchdog's period while a batch runs: one read of /proc


class Reply(msgspec.Struct, frozen=True, array_like=True):
    """One invocation's result, with what the gateway's `Outcome` needs besides it."""

    result: p.Result
    instance_id: str
    node_id: str
    init_ms: float | None  # on the replica's first invocation only, as on `local`
    models: tuple[p.ModelLoaded, ...]  # volume model loads reported since the last reply
    actor_id: str = ""  # the replica's Ray actor, as a lost call's error names it
    exiting: bool = False  # the replica exits after this answer: a call lost with it never ran


def _rss_peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class ReplicaInstance(Instance):
    """An `Instance` whose messages are collected instead of written to a socket."""

    def __init__(self, config: p.TemplateConfig, instance_id: str) -> None:
        super().__init__(config, instance_id)
        self.sock.close()  # no runtime socket on a cluster: replies are return values
        # chained calls (`context.invoke`) need that socket: on Ray they raise at once
        # ("needs the mlambda runtime") instead of waiting on a closed connection
        self.calls: Calls | None = None  # type: ignore[assignment]
        self.results: list[p.Result] = []
        self.models: list[p.ModelLoaded] = []
        self.models_lock = threading.Lock()  # models may load on a background thread
        self.frames = p.FrameReader()
        self.init_ms: float | None = None
        # A Ray worker holds Ray itself before any function code runs: the function's
        # memory is what it adds to that (on `local`, the template's own share counts).
        self.baseline_mb = _rss_peak_mb()
        self.over_limit = False

    def send(self, msg: p.Msg) -> None:
        if isinstance(msg, p.Result):
            self.results.append(msg)
        elif isinstance(msg, p.ModelLoaded):
            with self.models_lock:
                self.models.append(msg)
        elif isinstance(msg, p.Ready):
            self.init_ms = msg.init_ms

    def send_raw(self, frames: bytes) -> None:
        for msg in self.frames.feed(frames):
            self.send(msg)

    def take_models(self) -> tuple[p.ModelLoaded, ...]:
        with self.models_lock:
            models, self.models = tuple(self.models), []
        return models

    def peak_memory_mb(self) -> int:
        return max(0, super().peak_memory_mb() - self.baseline_mb)

    def exit_oom(self) -> None:
        self.over_limit = True  # the replica answers, then exits (see `Replica.invoke`)


@serve.deployment
class Replica:
    def __init__(self, config_json: str, max_batch: int, max_wait_s: float) -> None:
        self.config = p.decode_config(config_json)
        self.instance_id = serve.get_replica_context().replica_id.unique_id
        self.node_id = ray.get_runtime_context().get_node_id()
        self.actor_id = ray.get_runtime_context().get_actor_id() or ""
        self.inst = ReplicaInstance(self.config, self.instance_id)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, "mlambda-handler")
        self.batch_ids = itertools.count(1)
        self.first = True
        batched: Any = self.invoke  # `@serve.batch` adds its setters (typed as the method)
        batched.set_max_batch_size(max_batch)
        batched.set_batch_wait_timeout_s(max_wait_s)
        set_environment(self.config)
        volume.set_reporter(self.inst.report_model)
        sys.stdout = sys.stderr = self.inst.capture
        self.failure: ErrorInfo | None = None
        self.exiting = False
        self.baseline_rss_mb = supervisor.rss_mb(os.getpid())
        self.failed_at = 0.0
        self.init()

    def init(self) -> None:
        """Preload (the template's part), then import the handler (the instance's part)."""
        if self.config.bundle not in sys.path:
            sys.path.insert(0, self.config.bundle)
        for module in self.config.spec.preload:
            try:
                importlib.import_module(module)
            except Exception as exc:
                self.fail(function_error(
                    RUNTIME_TEMPLATE,
                    f"preload of '{module}' failed: {type(exc).__name__}: {exc}",
                    tuple(traceback.format_exception(exc))))
                return
        error = self.inst.init()
        if error is not None:
            self.fail(error)
        else:
            self.failure = None

    def fail(self, error: ErrorInfo) -> None:
        print(f"init failed: {error.error_type}: {error.message}", file=sys.__stderr__)
        self.failure = error
        self.failed_at = time.monotonic()

    async def ready(self) -> ErrorInfo | None:
        """None once the handler's init has run here; its error otherwise (for `warm`)."""
        return self.failure

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)  # type: ignore[untyped-decorator, unused-ignore]
    async def invoke(self, items: list[p.Item]) -> list[Reply]:
        if self.exiting:
            raise ReplicaExiting(self.instance_id)
        if self.failure is not None and time.monotonic() - self.failed_at >= FAILED_BACKOFF_S:
            await asyncio.get_running_loop().run_in_executor(self.pool, self.init)
        spec = self.config.spec
        batch = p.Batch(next(self.batch_ids), tuple(items), int(spec.timeout_s * 1000))
        if self.failure is not None:
            error = self.failure
            results = [self.error_result(batch, i, error) for i in range(len(items))]
        else:
            results = await self.run(batch)
        init_ms, self.first = (self.inst.init_ms if self.first else None), False
        if self.inst.over_limit and not self.exiting:
            self.exit_soon(EXIT_OOM)
        return [Reply(r, self.instance_id, self.node_id, init_ms if i == 0 else None,
                      self.inst.take_models() if i == 0 else (), self.actor_id, self.exiting)
                for i, r in enumerate(sorted(results, key=lambda r: r.index))]

    async def run(self, batch: p.Batch) -> list[p.Result]:
        """The batch on the handler thread, bounded by the function's timeout and watched
        for its memory: past either, the batch is answered `Task.TimedOut` or
        `Runtime.OutOfMemory` and the replica exits (its thread cannot be stopped), as
        `local` kills such an instance; Ray Serve starts another."""
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self.pool, self.run_batch, batch)
        watchdog = loop.create_task(self.over_memory())
        either: set[asyncio.Future[Any]] = {running, watchdog}
        try:
            done, _ = await asyncio.wait(either, timeout=self.config.spec.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watchdog.cancel()
        if running in done:
            return running.result()
        spec = self.config.spec
        if watchdog in done:
            self.exit_soon(EXIT_OOM)
            return [self.error_result(batch, i, faults.out_of_memory(item.request_id,
                                                                     spec.memory_mb))
                    for i, item in enumerate(batch.items)]
        self.exit_soon(EXIT_TIMED_OUT)
        return [self.error_result(batch, i, faults.timed_out(item.request_id, spec.timeout_s))
                for i, item in enumerate(batch.items)]

    async def over_memory(self) -> None:
        """Returns once the replica holds more than `memory_mb` beyond what Ray's worker held
        before the function (`local`'s watchdog, from inside: a replica may run on any
        node)."""
        limit = self.config.spec.memory_mb + self.baseline_rss_mb
        while supervisor.rss_mb(os.getpid()) <= limit:
            await asyncio.sleep(MEMORY_CHECK_S)

    def run_batch(self, batch: p.Batch) -> list[p.Result]:
        self.inst.results = []
        self.inst.run_batch(batch)
        return self.inst.results

    def error_result(self, batch: p.Batch, index: int, error: ErrorInfo) -> p.Result:
        return p.Result(batch.batch_id, index, b"", error, 200, (), 0.0, 0,
                        self.inst.capture.take() if index == 0 else "", len(batch.items))

    def exit_soon(self, code: int) -> None:
        """Answer first, then exit; calls routed here meanwhile are refused unrun
        (`ReplicaExiting`: the engine sends them again, as `local` requeues the batch an
        exiting instance had not started)."""
        self.exiting = True
        asyncio.get_running_loop().call_later(EXIT_DELAY_S, os._exit, code)


class ReplicaExiting(Exception):
    """This replica is about to exit (timed out, over its memory): the call never ran."""

