"""A version's dispatcher: its queue, its instances, its template.

request -> `submit` -> queue -> (batch former) -> idle instance -> `Result` -> future.
The queue is shared fairly between the API keys that call the version (`FairQueue`).
Under load (a full batch queued, every instance busy) the instance expected to finish
first is handed its next batch while it computes the current one (`prefetch`), so that
it never sits idle waiting for the gateway between two batches.
Everything happens on the event loop, driven by events (a request, an instance ready,
a result, a lost connection, a timer); the batch former and the autoscaler are pure
functions consulted at each of them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mlambda.errors import (
    RUNTIME_EXIT,
    RUNTIME_OOM,
    TIMED_OUT,
    ErrorInfo,
    ShuttingDown,
    function_error,
)
from mlambda.runtime import faults, supervisor
from mlambda.runtime import protocol as p
from mlambda.runtime.autoscaler import InstanceView, ScaleSnapshot, decide
from mlambda.runtime.batching import BatchSnapshot, plan_batch
from mlambda.runtime.fairqueue import FairQueue
from mlambda.runtime.supervisor import Connection, RuntimeSocket
from mlambda.runtime.template import TemplateError, TemplateHandle
from mlambda.spec import FunctionSpec
from mlambda.telemetry.events import EventKind, EventSink, NoEvents, PlatformEvent

log = logging.getLogger("mlambda.runtime")

INIT_TIMEOUT_S = 30.0
FAILED_BACKOFF_S = 5.0
STOP_GRACE_S = 2.0
RATE_TAU_S = 1.0
ITEM_TAU = 0.2  # weight of the newest batch in the time-per-item estimate


@dataclass(frozen=True)
class VersionRef:
    """What the runtime needs to run one version of a function."""

    function: str
    version: str
    bundle: str
    spec: FunctionSpec
    sha256: str = ""

    @property
    def key(self) -> str:
        return f"{self.function}:{self.version}"


@dataclass(frozen=True)
class Outcome:
    """How one invocation ended, with its timings, for the gateway and telemetry."""

    request_id: str
    version: str
    body: bytes
    error: ErrorInfo | None
    status: int
    headers: tuple[tuple[str, str], ...]
    duration_ms: float
    queue_ms: float
    init_ms: float | None
    max_memory_mb: int
    logs: str
    batch_size: int
    instance_id: str
    trace_id: str = ""  # shared by a chain of calls: the first hop's request id


@dataclass(frozen=True)
class ModelLoad:
    """The last load of a volume model an instance reported."""

    name: str
    sha256: str
    error: str | None
    instance_id: str
    at: float


class Invocation:
    __slots__ = ("arrived", "attempts", "future", "item", "on_done", "queue_ms")

    def __init__(self, item: p.Item, future: asyncio.Future[Outcome],
                 on_done: Callable[[Outcome], None] | None = None) -> None:
        self.item = item
        self.future = future
        self.on_done = on_done  # called as it ends, without a trip through the loop
        self.arrived = time.monotonic()
        self.attempts = 0
        self.queue_ms = 0.0


# a chained call from an instance (see chaining.py): (caller, instance id, its connection,
# the call)
InvokeHandler = Callable[[VersionRef, str, Connection, p.Invoke], None]


class InstanceState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"


@dataclass
class InFlight:
    batch_id: int
    invocations: list[Invocation]
    started: float
    done: int = 0
    deadline: asyncio.TimerHandle | None = None


@dataclass
class InstanceHandle:
    instance_id: str
    state: InstanceState = InstanceState.STARTING
    pid: int = 0
    conn: Connection | None = None
    idle_since: float = 0.0
    fork_sent: float = 0.0
    init_ms: float | None = None  # reported on the instance's first invocation, then None
    cold_start_ms: float | None = None
    batch: InFlight | None = None
    next: InFlight | None = None  # sent while `batch` runs; it starts when `batch` ends
    kill_reason: str | None = None  # TIMED_OUT or RUNTIME_OOM when we killed it
    exiting: bool = False  # it said it exits after the invocation it just answered
    exit_status: asyncio.Future[p.Exited] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def init_failed(self, error: ErrorInfo) -> None:
        if not self.ready.done():
            self.ready.set_exception(InitError(error))
            self.ready.exception()  # whoever awaits it re-raises; nobody else must log it


class InitError(Exception):
    """A version's instance failed to start: its template or its handler's init."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.error_type}: {info.message}")
        self.info = info


class Dispatcher:
    def __init__(
        self,
        runtime: RuntimeSocket,
        version: VersionRef,
        config_of: Callable[[VersionRef, str], p.TemplateConfig],
        on_outcome: Callable[[VersionRef, Outcome], None] | None = None,
        on_model: Callable[[VersionRef, p.ModelLoaded], None] | None = None,
        on_invoke: InvokeHandler | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.runtime = runtime
        self.version = version
        self.spec = version.spec
        self.config_of = config_of
        self.on_outcome = on_outcome
        self.on_model = on_model
        self.on_invoke = on_invoke
        self.events: EventSink = events or NoEvents()
        self.loop = asyncio.get_running_loop()
        self.queue: FairQueue[Invocation] = FairQueue()
        self.invocations = 0  # items handed to instances (a crash retry counts again)
        self.instances: dict[str, InstanceHandle] = {}
        self.by_pid: dict[int, InstanceHandle] = {}
        self.template: TemplateHandle | None = None
        self.template_start: asyncio.Task[TemplateHandle] | None = None
        self.template_idle_since: float | None = time.monotonic()
        self.failure: ErrorInfo | None = None
        self.failed_at = 0.0
        self.accepting = True
        self.rate = 0.0
        self.last_arrival = time.monotonic()
        self.next_batch_id = 1
        self.pump_scheduled = False
        self.batch_timer: asyncio.TimerHandle | None = None
        self.scale_timer: asyncio.TimerHandle | None = None
        self.idle_event = asyncio.Event()
        self.empty = asyncio.Event()  # no instance left
        self.empty.set()
        self.cold_starts: list[float] = []  # ms, fork sent -> ready, for the benchmark
        self.tasks: set[asyncio.Task[None]] = set()
        self.models: dict[tuple[str, str], ModelLoad] = {}  # (instance, model) -> last load
        self.item_s = 0.0  # seconds per invocation in a batch, recent (for `prefetch`)
        # an instance of this version made a synchronous chained call: it may wait on work
        # queued here, so nothing is ever queued behind its running batch
        self.chains = False

    # -- the hot path -------------------------------------------------------------------

    def submit(self, item: p.Item, tenant: str = "", weight: int = 1,
               on_done: Callable[[Outcome], None] | None = None) -> asyncio.Future[Outcome]:
        """Queue one invocation for `tenant` (an API key's id; `weight` its share when the
        queue is contended). Raises at once when it cannot be taken. `on_done` (a chained
        call's) is called with the outcome as soon as it is known, even from within this
        call; cancelling the future drops the invocation if it has not started."""
        if not self.accepting:
            raise ShuttingDown(f"{self.version.key} is draining")
        if len(self.queue) >= self.spec.scaling.max_queue:
            full = faults.queue_full(self.version.key, self.spec.scaling.max_queue)
            pushed_out = self.queue.displace(tenant, weight)
            if pushed_out is None:
                raise full
            self.resolve_error(pushed_out, full.info())  # the key with the largest share
        future: asyncio.Future[Outcome] = self.loop.create_future()
        inv = Invocation(item, future, on_done)
        now = inv.arrived
        self.rate = self.rate * math.exp((self.last_arrival - now) / RATE_TAU_S) + 1 / RATE_TAU_S
        self.last_arrival = now
        if self.failure is not None:
            if now - self.failed_at < FAILED_BACKOFF_S:
                self.resolve_error(inv, self.failure)
                return future
            self.failure = None
        self.queue.push(inv, tenant, weight)
        self.idle_event.clear()
        self.wake()
        return future

    def wake(self) -> None:
        if not self.pump_scheduled:
            self.pump_scheduled = True
            self.loop.call_soon(self.pump)

    def pump(self) -> None:
        """Hand queued work to idle instances, then let the autoscaler act."""
        self.pump_scheduled = False
        if self.batch_timer is not None:
            self.batch_timer.cancel()
            self.batch_timer = None
        now = time.monotonic()
        while self.queue:
            idle = [i for i in self.instances.values() if i.state is InstanceState.IDLE]
            busy = sum(1 for i in self.instances.values() if i.state is InstanceState.BUSY)
            queued = len(self.queue)
            # the oldest item is among the tenants' heads; the batch former reads its
            # age only when the queue holds less than a batch, so it is looked for then
            oldest = (min(inv.arrived for inv in self.queue.heads())
                      if queued < self.spec.batch.max_batch else now)
            plan = plan_batch(BatchSnapshot(
                queued=queued,
                oldest_wait_s=now - oldest,
                idle_instances=len(idle),
                busy_instances=busy,
                max_batch=self.spec.batch.max_batch,
                max_wait_s=self.spec.batch.max_wait_ms / 1000,
                arrival_rate=self.rate * math.exp((self.last_arrival - now) / RATE_TAU_S),
            ))
            if plan.take == 0:
                if idle:
                    self.batch_timer = self.loop.call_later(plan.wait_s, self.wake)
                break
            # the most recently idle instance: the others can then age out (scale down)
            inst = max(idle, key=lambda i: i.idle_since)
            taken = [self.queue.pop() for _ in range(plan.take)]
            # a chained caller that gave up (its deadline passed) cancelled its future
            taken = [inv for inv in taken if not inv.future.cancelled()]
            if taken:
                self.dispatch(inst, taken, now)
        if len(self.queue) >= self.spec.batch.max_batch > 1:
            self.prefetch(now)
        self.scale()
        if not self.queue and not any(
            i.state is InstanceState.BUSY for i in self.instances.values()
        ):
            self.idle_event.set()

    def prefetch(self, now: float) -> None:
        """A full batch waits and every instance is busy: send the next batch to the one
        expected to finish first, so that it starts the moment its current batch ends.
        One prefetched batch at a time, and only to that instance: nothing waits behind a
        running batch that another instance could start sooner (by the estimate). Only
        for batching functions (max_batch > 1): with one invocation per batch the queue's
        own order and bound (fairness between keys, max_queue) must hold request by
        request, and a batch popped early would take it out of the queue's reach."""
        if self.chains or any(i.next is not None for i in self.instances.values()):
            return
        busy = [i for i in self.instances.values()
                if i.state is InstanceState.BUSY and i.batch is not None
                and i.kill_reason is None and not i.exiting and i.conn is not None]
        if not busy:
            return
        inst = min(busy, key=self.expected_end)
        taken = [self.queue.pop() for _ in range(self.spec.batch.max_batch)]
        taken = [inv for inv in taken if not inv.future.cancelled()]
        if taken:
            inst.next = self.send_batch(inst, taken, now)

    def expected_end(self, inst: InstanceHandle) -> float:
        flight = inst.batch
        assert flight is not None
        return flight.started + (len(flight.invocations) - flight.done) * self.item_s

    def dispatch(self, inst: InstanceHandle, invocations: list[Invocation], now: float) -> None:
        inst.batch = self.send_batch(inst, invocations, now)
        inst.state = InstanceState.BUSY
        self.start(inst, inst.batch, now)

    def send_batch(self, inst: InstanceHandle, invocations: list[Invocation],
                   now: float) -> InFlight:
        batch_id = self.next_batch_id
        self.next_batch_id += 1
        self.invocations += len(invocations)
        timeout_ms = int(self.spec.timeout_s * 1000)
        assert inst.conn is not None
        inst.conn.send(p.Batch(batch_id, tuple(inv.item for inv in invocations), timeout_ms))
        return InFlight(batch_id, invocations, now)

    def start(self, inst: InstanceHandle, flight: InFlight, now: float) -> None:
        """`flight` starts running on `inst` (as far as the gateway can tell): its time in
        the queue ends and its timeout begins."""
        flight.started = now
        for inv in flight.invocations:
            inv.queue_ms = (now - inv.arrived) * 1000
        flight.deadline = self.loop.call_later(self.spec.timeout_s, self.on_timeout, inst,
                                               flight.batch_id)

    def on_result(self, inst: InstanceHandle, msg: p.Result) -> None:
        flight = inst.batch
        if flight is None or flight.batch_id != msg.batch_id:
            return
        inv = flight.invocations[msg.index]
        init_ms, inst.init_ms = inst.init_ms, None
        self.resolve(inv, Outcome(
            inv.item.request_id, self.version.version, msg.body, msg.error, msg.status,
            msg.headers, msg.duration_ms, inv.queue_ms, init_ms, msg.max_memory_mb, msg.logs,
            msg.batch_size, inst.instance_id, inv.item.trace_id or inv.item.request_id,
        ))
        flight.done += 1
        if msg.error is not None and msg.error.error_type == RUNTIME_OOM:
            inst.exiting = True  # it exits by itself now; what it has not started goes back
            self.event(EventKind.OUT_OF_MEMORY,
                       f"RequestId: {inv.item.request_id} instance {inst.instance_id} used "
                       f"{msg.max_memory_mb} MB, over its limit of {self.spec.memory_mb} MB; "
                       f"it exits", inv.item.request_id)
        if flight.done < len(flight.invocations):
            if self.spec.batch_handler is None and flight.deadline is not None:
                # sequential: each invocation has its own timeout
                flight.deadline.cancel()
                flight.deadline = self.loop.call_later(
                    self.spec.timeout_s, self.on_timeout, inst, flight.batch_id)
            return
        if flight.deadline is not None:
            flight.deadline.cancel()
        now = time.monotonic()
        per_item = (now - flight.started) / len(flight.invocations)
        self.item_s = per_item if not self.item_s else (
            ITEM_TAU * per_item + (1 - ITEM_TAU) * self.item_s)
        inst.batch, inst.next = inst.next, None
        if inst.exiting:
            inst.state = InstanceState.STOPPING
            if inst.batch is not None:  # it exits without reading it: back to the queue
                self.requeue(inst.batch.invocations)
                inst.batch = None
        elif inst.batch is not None:
            self.start(inst, inst.batch, now)
        elif inst.state is InstanceState.BUSY and inst.kill_reason is None:
            inst.state = InstanceState.IDLE
            inst.idle_since = now
        self.wake()

    def requeue(self, invocations: list[Invocation]) -> None:
        """Invocations an instance never started go back to the front, in their order."""
        for inv in reversed(invocations):
            self.queue.push_front(inv)

    # -- results ------------------------------------------------------------------------

    def resolve(self, inv: Invocation, outcome: Outcome) -> None:
        if not inv.future.done():
            inv.future.set_result(outcome)
        if inv.on_done is not None:
            inv.on_done(outcome)
        if self.on_outcome is not None:
            self.on_outcome(self.version, outcome)

    def resolve_error(self, inv: Invocation, error: ErrorInfo, instance_id: str = "",
                      duration_ms: float = 0.0) -> None:
        self.resolve(inv, Outcome(
            inv.item.request_id, self.version.version, b"", error, 0, (), duration_ms,
            inv.queue_ms, None, 0, "", 0, instance_id, inv.item.trace_id or inv.item.request_id,
        ))

    def event(self, kind: EventKind, message: str, request_id: str | None = None) -> None:
        self.events.emit(PlatformEvent(kind, message, self.version.function,
                                       self.version.version, request_id))

    # -- scaling ------------------------------------------------------------------------

    def scale(self) -> None:
        if self.scale_timer is not None:
            self.scale_timer.cancel()
            self.scale_timer = None
        now = time.monotonic()
        decision = decide(ScaleSnapshot(
            now=now,
            queued=len(self.queue),
            instances=tuple(InstanceView(i.instance_id, i.state.value, i.idle_since)
                            for i in self.instances.values()),
            min_instances=self.spec.scaling.min_instances if self.accepting else 0,
            max_instances=self.spec.max_instances,
            max_batch=self.spec.batch.max_batch,
            idle_ttl_s=self.spec.scaling.idle_ttl_s,
            template_alive=self.template is not None,
            template_idle_since=self.template_idle_since,
            template_ttl_s=self.spec.template_ttl_s,
            failed=self.failure is not None or not self.accepting,
        ))
        for _ in range(decision.start):
            self.start_instance()
        for instance_id in decision.stop:
            self.stop_instance(self.instances[instance_id])
        if decision.stop_template and self.template is not None:
            template, self.template = self.template, None
            self.spawn(template.stop())
        if decision.next_check_at is not None:
            self.scale_timer = self.loop.call_later(
                max(0.0, decision.next_check_at - now) + 0.001, self.wake)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def ensure_template(self) -> TemplateHandle:
        if self.template is not None and self.template.alive:
            return self.template
        if self.template_start is None or self.template_start.done():
            self.template_start = self.loop.create_task(self.new_template())
        return await asyncio.shield(self.template_start)

    async def new_template(self) -> TemplateHandle:
        template = TemplateHandle(
            self.runtime,
            lambda token: self.config_of(self.version, token),
            self.on_exited,
            self.on_template_lost,
        )
        self.template = template
        try:
            await template.start()
        except TemplateError:
            if self.template is template:
                self.template = None
            raise
        return template

    def start_instance(self) -> InstanceHandle:
        inst = InstanceHandle(secrets.token_hex(12))
        self.instances[inst.instance_id] = inst
        self.empty.clear()
        self.template_idle_since = None
        self.spawn(self.boot(inst))
        return inst

    async def warm(self, count: int = 1) -> None:
        """Have `count` instances (at most max_instances) past their init before traffic
        comes, so that moving an alias here does not shrink capacity. Raises InitError."""
        count = max(1, min(count, self.spec.max_instances))
        live = [i for i in self.instances.values() if i.state is not InstanceState.STOPPING]
        self.failure = None  # a deliberate attempt: no backoff
        while len(live) < count:
            live.append(self.start_instance())
        await asyncio.gather(*(asyncio.shield(i.ready) for i in live[:count]))

    def live_instances(self) -> int:
        return sum(1 for i in self.instances.values() if i.state is not InstanceState.STOPPING)

    async def boot(self, inst: InstanceHandle) -> None:
        try:
            template = await self.ensure_template()
        except TemplateError as exc:
            inst.init_failed(exc.info)
            self.forget(inst)
            self.fail_version(exc.info)
            return
        self.runtime.expect("instance", inst.instance_id, _InstanceOwner(self, inst))
        inst.fork_sent = time.monotonic()
        template.fork(inst.instance_id)
        await asyncio.sleep(0)
        self.loop.call_later(INIT_TIMEOUT_S + self.spec.timeout_s, self.on_init_timeout, inst)

    def on_init_timeout(self, inst: InstanceHandle) -> None:
        if inst.state is InstanceState.STARTING and inst.instance_id in self.instances:
            error = function_error(
                "Runtime.InitTimeout",
                f"init did not finish within {INIT_TIMEOUT_S + self.spec.timeout_s:.0f} s")
            inst.init_failed(error)
            self.fail_version(error)
            self.kill_instance(inst)

    def stop_instance(self, inst: InstanceHandle) -> None:
        inst.state = InstanceState.STOPPING
        if inst.conn is not None:
            inst.conn.send(p.Stop())
        self.loop.call_later(STOP_GRACE_S, self.kill_instance, inst)

    def kill_instance(self, inst: InstanceHandle) -> None:
        if inst.pid and inst.instance_id in self.instances:
            supervisor.kill(inst.pid)
        elif inst.instance_id in self.instances and inst.conn is None:
            self.runtime.forget("instance", inst.instance_id)
            self.forget(inst)

    def forget(self, inst: InstanceHandle) -> None:
        self.instances.pop(inst.instance_id, None)
        for key in [k for k in self.models if k[0] == inst.instance_id]:
            del self.models[key]
        self.by_pid.pop(inst.pid, None)
        if not self.instances:
            self.template_idle_since = time.monotonic()
            self.empty.set()
        self.wake()

    def fail_version(self, error: ErrorInfo) -> None:
        """Init failed: answer what waits with the error; don't respawn for a while."""
        log.error("%s failed to start: %s: %s\n%s", self.version.key, error.error_type,
                  error.message, "".join(error.stack))
        self.event(EventKind.INIT_FAILED, f"init failed: {error.error_type}: {error.message}")
        self.failure = error
        self.failed_at = time.monotonic()
        for inv in self.queue.drain():
            self.resolve_error(inv, error)
        self.wake()

    # -- instance events ----------------------------------------------------------------

    def on_ready(self, inst: InstanceHandle, init_ms: float) -> None:
        inst.state = InstanceState.IDLE
        inst.idle_since = time.monotonic()
        inst.init_ms = init_ms
        inst.cold_start_ms = (inst.idle_since - inst.fork_sent) * 1000
        self.cold_starts.append(inst.cold_start_ms)
        self.event(EventKind.COLD_START,
                   f"cold start: instance {inst.instance_id} ready in "
                   f"{inst.cold_start_ms:.1f} ms (Init Duration: {init_ms:.2f} ms)")
        if not inst.ready.done():
            inst.ready.set_result(None)
        self.wake()

    def on_model_loaded(self, inst: InstanceHandle, msg: p.ModelLoaded) -> None:
        if msg.error is not None:
            log.error("%s instance %s failed to load model %s@%s: %s", self.version.key,
                      inst.instance_id, msg.name, msg.sha256[:12], msg.error)
            self.event(EventKind.MODEL_LOAD_FAILED,
                       f"instance {inst.instance_id} failed to load model {msg.name}@"
                       f"{msg.sha256[:12]}: {msg.error}")
        self.models[(inst.instance_id, msg.name)] = ModelLoad(
            msg.name, msg.sha256, msg.error, inst.instance_id, time.time())
        if self.on_model is not None:
            self.on_model(self.version, msg)

    def on_timeout(self, inst: InstanceHandle, batch_id: int) -> None:
        if inst.batch is not None and inst.batch.batch_id == batch_id:
            inst.kill_reason = TIMED_OUT
            supervisor.kill(inst.pid)
            running = inst.batch.invocations[inst.batch.done]
            self.event(EventKind.TIMEOUT,
                       f"RequestId: {running.item.request_id} Task timed out after "
                       f"{self.spec.timeout_s:.2f} seconds; instance {inst.instance_id} killed",
                       running.item.request_id)

    def on_exited(self, msg: p.Exited) -> None:
        inst = self.by_pid.get(msg.pid)
        if inst is not None and not inst.exit_status.done():
            inst.exit_status.set_result(msg)

    def on_template_lost(self, template: TemplateHandle) -> None:
        if self.template is template:
            self.template = None
            if not template.stopping:
                log.warning("%s: template process exited", self.version.key)

    async def on_lost(self, inst: InstanceHandle) -> None:
        """An instance's connection closed: it exited, crashed or was killed."""
        flight, inst.batch = inst.batch, None
        if flight is not None and flight.deadline is not None:
            flight.deadline.cancel()
        if inst.next is not None:  # sent, never started
            self.requeue(inst.next.invocations)
            inst.next = None
        was = inst.state
        inst.state = InstanceState.STOPPING
        if was is InstanceState.STARTING:
            self.forget(inst)
            error = self.failure or function_error(
                RUNTIME_EXIT, "Runtime exited during init; see the function's logs")
            inst.init_failed(error)
            if self.failure is None and self.accepting:  # died in init without a word
                self.fail_version(error)
            return
        crashed = was is not InstanceState.STOPPING and inst.kill_reason is None \
            and not inst.exiting
        if flight is None or flight.done == len(flight.invocations):
            self.forget(inst)
            if crashed:
                self.crash_event(inst, await self.exit_status(inst))
            return
        status = await self.exit_status(inst)
        self.forget(inst)
        if crashed:
            self.crash_event(inst, status)
        remaining = flight.invocations[flight.done:]
        if inst.exiting:
            running, unstarted = [], remaining
        elif self.spec.batch_handler is None:
            running, unstarted = remaining[:1], remaining[1:]
        else:
            running, unstarted = remaining, []
        self.requeue(unstarted)  # never ran
        elapsed = (time.monotonic() - flight.started) * 1000
        for inv in running:
            error = self.death_error(inst, inv, status)
            if faults.retried(error, self.spec, inv.attempts):
                inv.attempts += 1
                self.queue.push_front(inv)
            else:
                self.resolve_error(inv, error, inst.instance_id, elapsed)
        self.wake()

    @staticmethod
    async def exit_status(inst: InstanceHandle) -> p.Exited | None:
        try:
            return await asyncio.wait_for(asyncio.shield(inst.exit_status), 0.5)
        except TimeoutError:
            return None

    def crash_event(self, inst: InstanceHandle, status: p.Exited | None) -> None:
        self.event(EventKind.INSTANCE_CRASH,
                   f"instance {inst.instance_id} (pid {inst.pid}) crashed: {_how(status)}")

    def death_error(self, inst: InstanceHandle, inv: Invocation,
                    status: p.Exited | None) -> ErrorInfo:
        rid = inv.item.request_id
        if inst.kill_reason == TIMED_OUT:
            return faults.timed_out(rid, self.spec.timeout_s)
        if inst.kill_reason == RUNTIME_OOM:
            return faults.out_of_memory(rid, self.spec.memory_mb)
        return faults.exited(rid, _how(status))

    # -- memory watchdog (called by the engine's monitor) --------------------------------

    def check_memory(self) -> None:
        limit = self.spec.memory_mb
        for inst in self.instances.values():
            if inst.state is InstanceState.BUSY and (rss := supervisor.rss_mb(inst.pid)) > limit:
                if inst.kill_reason != RUNTIME_OOM and inst.batch is not None:  # one event
                    running = inst.batch.invocations[inst.batch.done]
                    self.event(EventKind.OUT_OF_MEMORY,
                               f"RequestId: {running.item.request_id} instance "
                               f"{inst.instance_id} used {rss:.0f} MB, over its limit of "
                               f"{limit} MB; killed", running.item.request_id)
                inst.kill_reason = RUNTIME_OOM
                supervisor.kill(inst.pid)

    # -- lifecycle ----------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "version": self.version.version,
            "queued": len(self.queue),
            "invocations": self.invocations,
            "template": self.template is not None and self.template.alive,
            "failure": None if self.failure is None else {
                "errorType": self.failure.error_type, "errorMessage": self.failure.message},
            "instances": [
                {"id": i.instance_id, "state": i.state.value, "pid": i.pid,
                 "cold_start_ms": i.cold_start_ms,
                 "prefetched": 0 if i.next is None else len(i.next.invocations),
                 "models": {m.name: {"sha256": m.sha256, "error": m.error}
                            for (iid, _), m in self.models.items() if iid == i.instance_id}}
                for i in self.instances.values()
            ],
        }

    async def reset(self, keep_template: bool) -> None:
        """Stop every idle instance now (and the template unless kept): the next call
        pays a cold start. Busy instances finish their batch first."""
        for inst in list(self.instances.values()):
            if inst.state is InstanceState.IDLE:
                self.stop_instance(inst)
        await self.empty.wait()
        if not keep_template and self.template is not None:
            template, self.template = self.template, None
            await template.stop()

    async def retire(self, timeout_s: float) -> None:
        """No alias points here any more: let queued and running work finish (bounded),
        then stop the idle instances. The template stays until its own idle timeout, so
        a rollback to this version forks in milliseconds instead of starting from
        nothing; new calls (a rollback, a direct invoke) are still taken."""
        try:
            await asyncio.wait_for(self.idle_event.wait(), timeout_s)
        except TimeoutError:
            log.warning("%s: still busy after %.0f s; stopping its idle instances",
                        self.version.key, timeout_s)
        for inst in list(self.instances.values()):
            if inst.state is InstanceState.IDLE:
                self.stop_instance(inst)

    async def drain(self, timeout_s: float) -> None:
        """Stop taking work, finish what is queued and running (bounded), stop everything."""
        self.accepting = False
        try:
            await asyncio.wait_for(self.idle_event.wait(), timeout_s)
        except TimeoutError:
            log.warning("%s: drain timed out with %d queued", self.version.key, len(self.queue))
        for inv in self.queue.drain():
            self.resolve_error(inv, ShuttingDown("shutting down").info())
        await self.stop()

    async def stop(self) -> None:
        self.accepting = False
        for timer in (self.batch_timer, self.scale_timer):
            if timer is not None:
                timer.cancel()
        if self.template_start is not None and not self.template_start.done():
            await asyncio.wait([self.template_start])
        for inst in list(self.instances.values()):
            self.stop_instance(inst)
        try:
            await asyncio.wait_for(self.empty.wait(), STOP_GRACE_S + 1)
        except TimeoutError:
            log.warning("%s: instances did not stop in time", self.version.key)
        if self.template is not None:
            template, self.template = self.template, None
            await template.stop()
        for task in list(self.tasks):
            task.cancel()


class _InstanceOwner:
    """Routes an instance's connection events to its dispatcher."""

    def __init__(self, dispatcher: Dispatcher, inst: InstanceHandle) -> None:
        self.d = dispatcher
        self.inst = inst

    def on_hello(self, conn: Connection, hello: p.Hello) -> None:
        self.inst.conn = conn
        self.inst.pid = hello.pid
        self.d.by_pid[hello.pid] = self.inst

    def on_message(self, conn: Connection, msg: p.Message) -> None:
        if isinstance(msg, p.Result):
            self.d.on_result(self.inst, msg)
        elif isinstance(msg, p.Ready):
            self.d.on_ready(self.inst, msg.init_ms)
        elif isinstance(msg, p.InitFailed):
            self.inst.init_failed(msg.error)
            self.d.fail_version(msg.error)
        elif isinstance(msg, p.ModelLoaded):
            self.d.on_model_loaded(self.inst, msg)
        elif isinstance(msg, p.Invoke):
            self.d.chains = self.d.chains or not msg.asynchronous
            if self.d.on_invoke is not None:
                self.d.on_invoke(self.d.version, self.inst.instance_id, conn, msg)
            else:
                error = ShuttingDown("chained calls are not available here").info()
                conn.send(p.Invoked(msg.call_id, (p.CallResult(b"", error, "", ""),)
                                    * len(msg.payloads)))

    def on_close(self, conn: Connection) -> None:
        self.d.spawn(self.d.on_lost(self.inst))


def _how(status: p.Exited | None) -> str:
    if status is None:
        return "connection lost"
    if status.signal is not None:
        return f"signal: {_signal_name(status.signal)}"
    return f"exit status {status.exit_code}"


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name.removeprefix("SIG").lower()
    except ValueError:
        return str(signum)
