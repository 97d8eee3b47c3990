"""The Ray engine: each version that gets traffic is a Ray Serve application whose replicas
(`engines/ray_replica.py`) run on any node of a Ray cluster.

The gateway stays mlambda's: it calls a version through a `DeploymentHandle` (never Ray's
HTTP proxy, which `start` disables). Ray Serve does the rest: placement across nodes,
batching (`@serve.batch` with the function's `[batch]`), autoscaling from the function's
`[scaling]` (to zero when idle) and the queue bound (`max_queue` -> 429).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from mlambda.engines.base import Engine
from mlambda.engines.ray_replica import Replica, ReplicaExiting, Reply
from mlambda.errors import ErrorInfo, Internal, ShuttingDown
from mlambda.runtime import faults
from mlambda.runtime import protocol as p
from mlambda.runtime.dispatcher import InitError, Outcome, VersionRef

log = logging.getLogger("mlambda.ray")

APP_PREFIX = "mlambda-"
STATUS_EVERY_S = 1.0
# Ray Serve's autoscaler: how often replicas report load, over what window it averages.
METRICS_INTERVAL_S = 0.5
LOOK_BACK_S = 2.0
PLACEMENT_TIMEOUT_S = 30.0  # as `local`'s bound on an instance's init
UNAVAILABLE = ShuttingDown.error_type  # 503: the platform could not run it in time
RESEND_AFTER_S = 0.05  # a call refused unrun by an exiting replica, sent again after
# How Ray reports a call whose replica went away under it (its process or its node).
LOST = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)


@dataclass
class VersionState:
    """A version as the Ray engine sees it: its handle, what it has in flight, its replicas."""

    ref: VersionRef
    deploying: asyncio.Task[DeploymentHandle] | None = None
    inflight: int = 0
    exiting_actors: set[str] = field(default_factory=set)  # replicas that said they exit
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    replicas: dict[str, int] = field(default_factory=dict)  # Ray Serve state -> count
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # replica id -> view


class RayEngine(Engine):
    def __init__(self, volume: str, address: str | None, replica_cpus: float = 0.25,
                 on_outcome: Callable[[VersionRef, Outcome], None] | None = None,
                 on_model: Callable[[VersionRef, p.ModelLoaded], None] | None = None) -> None:
        self.volume = volume
        self.address = address or None
        self.replica_cpus = replica_cpus
        self.on_outcome = on_outcome
        self.on_model = on_model
        self.versions: dict[str, VersionState] = {}
        self.deleting: dict[str, asyncio.Task[None]] = {}  # applications being deleted
        self.accepting = True
        self.started_ray = False
        self.poller: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster at `address` (`auto`: the one this machine belongs to), or start
        a one-machine Ray here; then Ray Serve with its HTTP proxy off."""
        sigterm = signal.getsignal(signal.SIGTERM)  # Ray's own would exit at once
        if self.address is None:
            ray.init(include_dashboard=False, namespace="mlambda", log_to_driver=False,
                     num_cpus=os.cpu_count() or 1, logging_level=logging.WARNING,
                     _node_ip_address="127.0.0.1")  # one machine: loopback only
            self.started_ray = True
        else:
            ray.init(address=self.address, namespace="mlambda", log_to_driver=False,
                     logging_level=logging.WARNING)
        signal.signal(signal.SIGTERM, sigterm)  # the gateway's: drain, then stop
        # Serve warns once per refused call (we answer 429) and per deployment (its HTTP
        # options, unused): at 1000 connections that would flood the gateway's log
        logging.getLogger("ray.serve").setLevel(logging.ERROR)
        serve.start(proxy_location="Disabled")
        log.info("ray engine: cluster %s, %s CPUs", ray.get_runtime_context().gcs_address,
                 ray.cluster_resources().get("CPU", 0))
        self.poller = asyncio.get_running_loop().create_task(self.poll_status())

    async def stop(self, timeout_s: float) -> None:
        self.accepting = False
        if self.poller is not None:
            self.poller.cancel()
        states = list(self.versions.values())
        await asyncio.gather(*(self.drained(st, timeout_s) for st in states))
        if not self.started_ray:  # a shared cluster: take our applications off it
            for st in states:
                await asyncio.to_thread(serve.delete, self.app_name(st.ref), False)
        self.versions = {}
        ray.shutdown()  # a Ray we started goes with it, Serve and replicas included

    # -- the hot path -------------------------------------------------------------------

    def state(self, version: VersionRef) -> VersionState:
        st = self.versions.get(version.key)
        if st is None:
            st = self.versions[version.key] = VersionState(version)
            st.idle.set()
        return st

    def submit(self, version: VersionRef, item: p.Item, tenant: str = "",
               weight: int = 1) -> asyncio.Future[Outcome]:
        """Ray Serve's queue is first come, first served: `tenant` and `weight` (the fair
        queue of `local`) do not reach it yet."""
        if not self.accepting:
            raise ShuttingDown(f"{version.key} is draining")
        st = self.state(version)
        st.inflight += 1
        st.idle.clear()
        task = asyncio.get_running_loop().create_task(self.call(st, item))
        task.add_done_callback(lambda t: self.done(st, t))
        return task

    def done(self, st: VersionState, task: asyncio.Task[Outcome]) -> None:
        st.inflight -= 1
        if st.inflight == 0:
            st.idle.set()
        if not task.cancelled() and task.exception() is None and self.on_outcome is not None:
            self.on_outcome(st.ref, task.result())

    async def call(self, st: VersionState, item: p.Item) -> Outcome:
        """The call's outcome; never a bare cancellation unless our own caller cancelled
        it (a node's loss can cancel what Ray had in hand: that is a lost replica)."""
        arrived = time.monotonic()
        try:
            return await self.attempt(st, item)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            return self.error(st, item, faults.exited(
                item.request_id, "replica lost (the call was cancelled under it)"), arrived)

    async def attempt(self, st: VersionState, item: p.Item) -> Outcome:
        handle = await self.handle(st)
        arrived = time.monotonic()
        spec = st.ref.spec
        # never a hang: a replica's start (placement and init), then the function's timeout
        bound = PLACEMENT_TIMEOUT_S + spec.timeout_s
        deadline = arrived + bound
        attempts = 0
        while True:
            response = handle.invoke.remote(item)
            try:
                reply: Reply = await asyncio.wait_for(response, deadline - time.monotonic())
                break
            except TimeoutError:
                response.cancel()
                return self.error(st, item, ErrorInfo(
                    UNAVAILABLE, f"{st.ref.key}: no replica answered within {bound:.0f} s "
                                 "(the cluster may lack the CPUs for another replica)",
                    (), "service"), arrived)
            except BackPressureError:
                raise faults.queue_full(st.ref.key, spec.scaling.max_queue) from None
            except RayTaskError as exc:
                if isinstance(exc.cause, ReplicaExiting):  # never ran: send it again
                    await asyncio.sleep(RESEND_AFTER_S)
                    continue
                log.error("%s: replica failed a call: %s", st.ref.key, exc)
                return self.error(st, item, Internal(
                    f"{st.ref.key}: the replica failed the call ({type(exc.cause).__name__})"
                ).info(), arrived)
            except (*LOST, asyncio.CancelledError) as exc:  # its replica (or node) went
                task = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and (task is None or
                                                                task.cancelling()):
                    raise  # our own caller cancelled the call, not Ray
                if getattr(exc, "actor_id", None) in st.exiting_actors:
                    # routed to a replica that had said it exits (timed out, over its
                    # memory): it refused or never reached the call, which never ran
                    await asyncio.sleep(RESEND_AFTER_S)
                    continue
                error = faults.exited(item.request_id, f"replica lost ({type(exc).__name__})")
                if faults.retried(error, spec, attempts):
                    attempts += 1
                    continue
                return self.error(st, item, error, arrived)
        self.note(st, reply)
        if reply.exiting and reply.actor_id:
            st.exiting_actors.add(reply.actor_id)
        r = reply.result
        elapsed_ms = (time.monotonic() - arrived) * 1000
        return Outcome(item.request_id, st.ref.version, r.body, r.error, r.status, r.headers,
                       r.duration_ms, max(0.0, elapsed_ms - r.duration_ms), reply.init_ms,
                       r.max_memory_mb, r.logs, r.batch_size, reply.instance_id)

    def error(self, st: VersionState, item: p.Item, error: ErrorInfo,
              arrived: float) -> Outcome:
        return Outcome(item.request_id, st.ref.version, b"", error, 0, (),
                       (time.monotonic() - arrived) * 1000, 0.0, None, 0, "", 0, "")

    def note(self, st: VersionState, reply: Reply) -> None:
        """What a reply says about its replica: where it runs, which models it loaded."""
        view = st.instances.get(reply.instance_id)
        if view is None:
            view = st.instances[reply.instance_id] = {
                "id": reply.instance_id, "state": "serving", "node": reply.node_id,
                "models": {}}
        for m in reply.models:
            if m.error is not None:
                log.error("%s replica %s failed to load model %s@%s: %s", st.ref.key,
                          reply.instance_id, m.name, m.sha256[:12], m.error)
            view["models"][m.name] = {"sha256": m.sha256, "error": m.error}
            if self.on_model is not None:
                self.on_model(st.ref, m)

    # -- deployments --------------------------------------------------------------------

    @staticmethod
    def app_name(ref: VersionRef) -> str:
        return f"{APP_PREFIX}{ref.function}-{ref.version}"

    async def handle(self, st: VersionState) -> DeploymentHandle:
        if st.deploying is None or (st.deploying.done() and st.deploying.exception()):
            st.deploying = asyncio.get_running_loop().create_task(self.deploy_after_delete(st))
        return await asyncio.shield(st.deploying)

    async def deploy_after_delete(self, st: VersionState) -> DeploymentHandle:
        """A version called while `scale_to_zero` deletes it is deployed afresh once the
        deletion is done (never onto an application being torn down)."""
        deleting = self.deleting.get(st.ref.key)
        if deleting is not None:
            await asyncio.wait({deleting})  # done, whether or not the deletion failed
        return await asyncio.to_thread(self.deploy, st.ref)

    def deploy(self, ref: VersionRef) -> DeploymentHandle:
        """The version as a Serve application: its replicas, batching and autoscaling."""
        spec = ref.spec
        config = p.TemplateConfig(
            function_name=ref.function, function_version=ref.version, bundle=ref.bundle,
            spec=spec, socket_path="", token="", gateway_pid=0, volume=self.volume)
        # as on `local`, where the default is this machine's CPUs: the cluster's
        max_replicas = spec.scaling.max_instances or max(
            1, int(ray.cluster_resources().get("CPU", 1.0)))
        max_batch = spec.batch.max_batch
        deployment: Any = Replica  # `@serve.deployment` made it a Deployment
        app = deployment.options(
            name="replica",
            # a batch running and the next one forming
            max_ongoing_requests=2 * max_batch,
            max_queued_requests=spec.scaling.max_queue,
            autoscaling_config={
                "min_replicas": spec.scaling.min_instances,
                "initial_replicas": spec.scaling.min_instances,
                "max_replicas": max(max_replicas, spec.scaling.min_instances, 1),
                "target_ongoing_requests": max_batch,
                "metrics_interval_s": METRICS_INTERVAL_S,
                "look_back_period_s": LOOK_BACK_S,
                "upscale_delay_s": 0.0,
                "downscale_delay_s": spec.scaling.idle_ttl_s,
                "downscale_to_zero_delay_s": spec.scaling.idle_ttl_s,
            },
            ray_actor_options={"num_cpus": self.replica_cpus},
            health_check_period_s=2.0,
            graceful_shutdown_timeout_s=spec.timeout_s + 1,
        ).bind(p.encode_config(config), max_batch, spec.batch.max_wait_ms / 1000)
        handle: DeploymentHandle = serve.run(app, name=self.app_name(ref), route_prefix=None)
        log.info("%s deployed on Ray Serve (replicas %d..%d)", ref.key,
                 spec.scaling.min_instances, max_replicas)
        return handle

    async def warm(self, version: VersionRef, count: int = 1) -> None:
        """At least one replica past its init (Ray Serve's autoscaler decides how many more):
        raises `InitError` if the handler's init failed there."""
        handle = await self.handle(self.state(version))
        failure: ErrorInfo | None = await handle.ready.remote()
        if failure is not None:
            raise InitError(failure)

    async def drained(self, st: VersionState, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(st.idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("%s: %d calls still in flight after %.0f s", st.ref.key, st.inflight,
                        timeout_s)

    async def retire(self, version: VersionRef, timeout_s: float) -> None:
        """Let its calls finish. Its application stays: Ray Serve's autoscaler takes its
        replicas down to `min_instances` after `idle_ttl_s`, and a rollback to it finds it
        deployed (as `local` keeps a retired version's template)."""
        st = self.versions.get(version.key)
        if st is not None:
            await self.drained(st, timeout_s)

    async def scale_to_zero(self, version: VersionRef) -> None:
        """Let its calls finish, then delete its application: every replica goes, and the
        next call deploys it again (a full cold start)."""
        st = self.versions.pop(version.key, None)
        if st is None:
            return
        await self.drained(st, PLACEMENT_TIMEOUT_S + version.spec.timeout_s)
        deleting = asyncio.get_running_loop().create_task(
            asyncio.to_thread(serve.delete, self.app_name(version)))
        self.deleting[version.key] = deleting
        deleting.add_done_callback(lambda t: self.forget_deletion(version.key, t))
        await asyncio.shield(deleting)  # a cancelled caller cannot stop it half-way

    def forget_deletion(self, key: str, task: asyncio.Task[None]) -> None:
        if self.deleting.get(key) is task:
            del self.deleting[key]

    # -- views --------------------------------------------------------------------------

    async def poll_status(self) -> None:
        """Ray Serve's replica counts, read off the event loop once a second."""
        while True:
            try:
                status = await asyncio.to_thread(serve.status)
                for st in list(self.versions.values()):
                    app = status.applications.get(self.app_name(st.ref))
                    dep = None if app is None else app.deployments.get("replica")
                    st.replicas = {} if dep is None else {
                        str(k): v for k, v in dep.replica_states.items()}
                    if not self.capacity(st.ref):
                        st.instances.clear()  # scaled to zero (or lost): no replica left
            except Exception:  # the controller may be restarting; the next poll retries
                log.exception("could not read Ray Serve's status")
            await asyncio.sleep(STATUS_EVERY_S)

    def capacity(self, version: VersionRef) -> int:
        st = self.versions.get(version.key)
        if st is None:
            return 0
        return sum(n for state, n in st.replicas.items() if state in ("RUNNING", "STARTING"))

    def running(self) -> list[VersionRef]:
        return [st.ref for st in self.versions.values()]

    def status(self, version: VersionRef) -> dict[str, object]:
        st = self.versions.get(version.key)
        if st is None:
            return {"version": version.version, "queued": 0, "template": False,
                    "failure": None, "instances": [], "engine": "ray"}
        return {
            "version": version.version,
            "queued": st.inflight,
            "template": False,
            "failure": None,
            "engine": "ray",
            "replicas": dict(st.replicas),
            "instances": list(st.instances.values()),
        }
