"""`mlambda up`: the platform in one process, with an explicit lifecycle.

start: data directory -> registry -> keys -> seed functions -> engine -> gateway;
stop (SIGINT/SIGTERM, via uvicorn): stop accepting, let in-flight requests finish
(bounded by `drain_s`), drain every dispatcher, stop every instance and template.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import resource
import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import uvicorn

from mlambda import heap, plans
from mlambda.control import ControlPlane
from mlambda.cost import DEFAULT_PRICES, Prices, load_prices
from mlambda.dashboard.app import Dashboard
from mlambda.engines.base import Engine
from mlambda.engines.local import LocalEngine
from mlambda.errors import InvalidParameter, InvalidSpec
from mlambda.gateway.admin import build_admin, model_json
from mlambda.gateway.app import Gateway
from mlambda.gateway.connection import Limits as HttpLimits
from mlambda.gateway.connection import protocol_class
from mlambda.gateway.throttle import Meter
from mlambda.keys import ApiKey, KeyRing, hash_secret, new_key_id, new_secret
from mlambda.registry import Alias, Idempotency, Registry, Route
from mlambda.router import Router
from mlambda.runtime import sandbox
from mlambda.runtime.chaining import Chaining
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.runtime.protocol import ModelLoaded
from mlambda.runtime.sandbox import Limits
from mlambda.settings import Settings
from mlambda.spec import load_spec
from mlambda.telemetry.logsink import LogSink
from mlambda.telemetry.logstore import LogStore
from mlambda.telemetry.metrics import Metrics
from mlambda.telemetry.metricstore import MetricStore, Retention
from mlambda.volume import ModelStore

log = logging.getLogger("mlambda")


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data = settings.data.resolve()
        self.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.volume = self.data / "volume"
        self.volume.mkdir(exist_ok=True)
        self.registry = Registry(self.data)
        self.models = ModelStore(self.volume)
        self.models.sweep()
        self.new_secrets = self.bootstrap_keys()
        self.seed()
        self.limits = self.sandbox()
        self.router = Router(self.registry)
        self.keyring = KeyRing(self.registry.keys())
        self.meter = Meter(self.persisted_usage())
        self.metrics: Metrics | None = None
        self.logs = LogSink(LogStore(self.data / "logs.db"), settings)
        self.engine = self.make_engine()
        if settings.telemetry:
            store = MetricStore(self.data / "metrics.db", Retention(
                settings.metrics_retention_10s_h * 3600, settings.metrics_retention_1m_d * 86400))
            self.metrics = Metrics(store, self.engine, settings.metrics_flush_s)
        self.prices_path = self.install_prices()
        self.control = ControlPlane(self.registry, self.router, self.engine, self.models,
                                    self.keyring, self.meter,
                                    max_bundle_bytes=settings.max_bundle_bytes, events=self.logs)
        self.gateway = Gateway(settings, self.router, self.keyring, self.meter, self.engine,
                               build_admin(self), self.start, self.stop,
                               dashboard=Dashboard(self), metrics=self.metrics)
        self.flusher: asyncio.Task[None] | None = None

    def make_engine(self) -> Engine:
        """`local` (processes on this machine) or `ray` (replicas on a Ray cluster)."""
        settings = self.settings
        if settings.engine == "local":
            chaining = Chaining(self.router.resolve,
                                lambda v, item, done: local.submit(v, item, on_done=done))
            local = LocalEngine(str(self.volume), on_outcome=self.on_outcome,
                                on_model=self.on_model_loaded, on_invoke=chaining.on_invoke,
                                limits=self.limits, events=self.logs)
            return local
        if settings.engine == "ray":
            try:
                from mlambda.engines.ray import RayEngine
            except ImportError as exc:
                raise InvalidParameter(
                    f"engine: 'ray' needs Ray Serve ({exc}); install it with "
                    "pip install 'mlambda[ray]'") from None
            return RayEngine(str(self.volume), settings.ray_address or None,
                             settings.ray_replica_cpus, on_outcome=self.on_outcome,
                             on_model=self.on_model_loaded)
        raise InvalidParameter(f"engine: expected 'local' or 'ray', got {settings.engine!r}")

    # -- first start --------------------------------------------------------------------

    def bootstrap_keys(self) -> dict[str, str]:
        """On first start: one admin and one invoke key, written 0600 into the data dir."""
        if self.registry.keys():
            return {}
        created: dict[str, str] = {}
        for role in ("admin", "invoke"):
            secret = new_secret()
            self.registry.add_key(ApiKey(new_key_id(), f"first {role} key", role,
                                         hash_secret(secret), created_at=time.time()))
            path = self.data / f"{role}.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")
            created[role] = secret
        return created

    def sandbox(self) -> Limits:
        """The sandbox of function code (see `runtime/sandbox.py`); as root, also the
        data directory's permissions: bundles and volume readable by the sandbox group,
        keys and registry root's alone."""
        s = self.settings
        root = sandbox.is_root()
        limits = Limits(
            gid=s.sandbox_uid if root else None,
            uid_base=s.sandbox_uid if root else None,
            lease_dir=sandbox.lease_dir() if root else "",
            max_open_files=s.fn_max_open_files,
            max_processes=s.fn_max_processes,
            max_file_bytes=int(s.fn_max_file_mb * 1024 * 1024),
        )
        if root:
            for change in sandbox.prepare(s.sandbox_uid, self.data,
                                         [*sandbox.python_paths(), self.data]):
                log.warning("sandbox: %s", change)
        else:
            log.warning("sandbox: not running as root, so function code runs as this user "
                        "(uid %d) and could read the data directory; its environment and "
                        "rlimits (but RLIMIT_NPROC) are still confined", os.getuid())
        return limits

    def install_prices(self) -> Path:
        """The price file `mlambda cost` uses: MLAMBDA_PRICES, or DATA/prices.toml, which
        starts as a copy of the packaged one so the user can edit it."""
        if self.settings.prices:
            return Path(self.settings.prices)
        path = self.data / "prices.toml"
        if not path.exists():
            shutil.copyfile(DEFAULT_PRICES, path)
        return path

    def prices(self) -> Prices:
        """Read on each use: an edit counts at once."""
        return load_prices(self.prices_path)

    def memory_mb(self, function: str) -> int:
        """The memory size of the function's newest version."""
        versions = self.registry.versions(function)
        return versions[-1].spec.memory_mb if versions else 0

    def seed(self) -> None:
        """Deploy the seed file's functions (and put its models into the volume) that the
        registry does not have yet."""
        path = self.settings.seed
        if not path.is_file():
            return
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidSpec(f"{path}: not valid TOML: {exc}") from None
        known = set(self.registry.functions())
        for entry in doc.get("function", []):
            bundle = (path.parent / entry["bundle"]).resolve()
            name = load_spec(bundle).name
            alias = entry.get("alias", "live")
            routes = [seed_route(spec, name, alias, path) for spec in entry.get("routes", [])]
            if name in known:
                if self.registry.routes_migrated:  # routes just got options: the seed's too
                    for route in routes:
                        self.upgrade_route(route)
                continue
            latest = self.registry.put_latest(bundle)
            version = self.registry.publish(latest.function)
            self.registry.set_alias(Alias(latest.function, alias, version.version))
            for route in routes:
                self.registry.add_route(route)
            log.info("seeded %s version %s as %s", latest.function, version.version, alias)
        for entry in doc.get("model", []):
            if self.models.current(entry["name"]) is not None:
                continue
            source = (path.parent / entry["file"]).resolve()
            tmp = self.models.incoming(entry["name"])
            shutil.copyfile(source, tmp)
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            stored = self.models.commit(entry["name"], source.name, tmp, digest)
            self.registry.add_model(stored)
            self.models.flip(stored)
            log.info("seeded model %s %s", stored.name, stored.sha256[:12])

    # -- usage counts -----------------------------------------------------------------

    @staticmethod
    def month_start(now: float) -> str:
        return plans.day(now)[0][:8] + "01"

    def persisted_usage(self) -> dict[tuple[str, str], int]:
        """This month's admitted requests per key per day: what quotas count from."""
        since = self.month_start(time.time())
        return {(k, d): n for k, d, n, _ in self.registry.usage(since)}

    def flush_usage(self) -> None:
        """Write the meter's new counts and last-use times to SQLite (one transaction)."""
        usage = self.meter.drain()
        if usage.counts or usage.last_used:
            try:
                self.registry.add_usage(usage.counts, usage.last_used)
            except sqlite3.Error:
                self.meter.requeue(usage)
                raise

    async def flush_usage_forever(self) -> None:
        month = self.month_start(time.time())
        while True:
            await asyncio.sleep(self.settings.usage_flush_s)
            try:
                self.flush_usage()
            except sqlite3.Error:  # a busy or full disk: the counts stay for the next try
                log.exception("could not persist usage counts")
            if self.month_start(time.time()) != month:
                month = self.month_start(time.time())
                self.meter.forget_before(month)

    def upgrade_route(self, route: Route) -> None:
        """A data directory from before route options: give a seeded route that is still
        as the seed made it the seed's options (e.g. idempotency on POST /inference)."""
        if route.idempotency is None:
            return
        for r in self.registry.routes():
            if (r.method, r.path, r.function, r.qualifier) == (
                    route.method, route.path, route.function, route.qualifier):
                self.registry.set_route_idempotency(r.method, r.path, route.idempotency)
                log.info("route %s %s: idempotency from the seed", r.method, r.path)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self.logs.start()
        await self.engine.start()
        self.flusher = asyncio.get_running_loop().create_task(self.flush_usage_forever())
        if self.metrics is not None:
            await self.metrics.start()
        scheme = "https" if self.settings.tls_cert is not None else "http"
        url = f"{scheme}://{self.settings.host}:{self.settings.port}"
        print(f"mlambda: starting on {url} (data: {self.data})", flush=True)
        if self.new_secrets:
            print("mlambda: first start; these keys are shown once and kept (0600) in "
                  f"{self.data}/admin.key and invoke.key:", flush=True)
            for role, secret in self.new_secrets.items():
                print(f"  {role:6} key: {secret}", flush=True)
            self.new_secrets = {}
        heap.settle()  # what is loaded now lives as long as the process

    async def stop(self) -> None:
        await self.control.stop()
        await self.engine.stop(self.settings.drain_s)
        if self.flusher is not None:
            self.flusher.cancel()
        try:
            self.flush_usage()
        except sqlite3.Error:
            log.exception("could not persist the last usage counts")
        if self.metrics is not None:
            await self.metrics.stop()  # after the drain: its last outcomes are counted
        await self.logs.stop()
        self.registry.close()
        print("mlambda: stopped", flush=True)

    def on_outcome(self, version: VersionRef, outcome: Outcome) -> None:
        """Every invocation's end, from the dispatchers: to the telemetry."""
        if self.metrics is not None:
            self.metrics.on_outcome(version, outcome)
        if self.settings.telemetry:
            self.logs.record(version, outcome)

    def on_model_loaded(self, version: VersionRef, msg: ModelLoaded) -> None:
        self.control.on_model_loaded(version, msg)

    # -- views for the admin API ------------------------------------------------------

    def describe(self, function: str) -> dict[str, Any]:
        versions = self.registry.versions(function)
        running = {v.key for v in self.engine.running()}
        return {
            "name": function,
            "versions": [{"version": v.version, "sha256": v.sha256} for v in versions],
            "aliases": [self.alias_json(a) for a in self.registry.aliases()
                        if a.function == function],
            "runtime": [self.engine.status(v) for v in versions if v.key in running],
        }

    @staticmethod
    def alias_json(a: Alias) -> dict[str, Any]:
        return {"function": a.function, "name": a.name, "version": a.version,
                "additional_version": a.extra_version, "weight": a.extra_weight}

    def model_json(self, name: str) -> dict[str, Any]:
        current = self.models.current(name)
        loads = []
        for ref in self.engine.running():
            for inst in self.engine.status(ref)["instances"]:  # type: ignore[attr-defined]
                model = inst["models"].get(name)
                if model is not None:
                    loads.append({"function": ref.function, "version": ref.version,
                                  "instance": inst["id"], **model})
        return {
            "name": name,
            "current": current,
            "versions": [model_json(m, current) for m in self.registry.model_versions(name)],
            "instances": loads,
        }


def seed_route(spec: Any, function: str, alias: str, seed: Path) -> Route:
    """A seed file's route: "METHOD PATH", or {route = "METHOD PATH", idempotency = {key,
    match, ttl_s}}."""
    options: dict[str, Any] = {}
    if isinstance(spec, dict):
        options, spec = spec, spec.get("route")
    if not isinstance(spec, str) or " " not in spec:
        raise InvalidSpec(f"{seed}: a route is \"METHOD PATH\" or {{route = \"METHOD PATH\", "
                          "idempotency = {...}}")
    unknown = set(options) - {"route", "idempotency"}
    if unknown:
        raise InvalidSpec(f"{seed}: route {spec}: unknown field(s) {sorted(unknown)}")
    idempotency = None
    if "idempotency" in options:
        try:
            idempotency = Idempotency.parse(options["idempotency"])
        except InvalidParameter as exc:
            raise InvalidSpec(f"{seed}: route {spec}: {exc.message}") from None
    method, _, route_path = spec.partition(" ")
    return Route(method, route_path, function, alias, idempotency)


def raise_open_files(wanted: int) -> None:
    """Let the gateway hold `max_connections` connections: raise its soft RLIMIT_NOFILE
    (up to the hard limit) when it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open files are limited to %d: fewer than the %d that max_connections "
                    "needs", target, wanted)


def run(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise SystemExit("mlambda up: --tls-cert and --tls-key go together: give both or neither")
    raise_open_files(settings.max_connections + 1024)  # + instances, templates, files
    platform = Platform(settings)
    limits = HttpLimits(
        max_connections=settings.max_connections,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )
    config = uvicorn.Config(
        platform.gateway,
        host=settings.host,
        port=settings.port,
        loop="asyncio",
        http=protocol_class(limits),
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # the peer's address is the client's: no X-Forwarded-For trust
        server_header=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_s),
        backlog=4096,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    uvicorn.Server(config).run()
