"""The gateway: one ASGI app whose hot path is short and visible in one place:

request -> key -> route -> meter -> version -> enqueue -> (batch, run) -> respond.

It never parses an invocation's JSON body: the raw bytes go to an instance. (A route with
the idempotency option is the exception: its key and matched fields are read and hashed,
so that a retry joins or replays the invocation it repeats; see `idempotency`.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from mlambda.engines.base import Engine
from mlambda.errors import (
    Forbidden,
    Internal,
    MlambdaError,
    NotFound,
    ShuttingDown,
    Unauthorized,
    http_status,
)
from mlambda.gateway import invoke
from mlambda.gateway.http import (
    JSON,
    ASGIApp,
    ClientGone,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    read_body,
    respond,
    respond_error,
    with_security_headers,
)
from mlambda.gateway.idempotency import Answer, IdempotencyStore, Role, Slot, identify
from mlambda.gateway.throttle import NO_HEADERS, Headers, Meter
from mlambda.keys import ApiKey, KeyRing
from mlambda.registry import Idempotency, Route
from mlambda.router import Router
from mlambda.runtime.dispatcher import Outcome, VersionRef
from mlambda.runtime.protocol import Item, ProxyMeta
from mlambda.runtime.requestid import new_request_id
from mlambda.settings import Settings
from mlambda.telemetry import prometheus
from mlambda.telemetry.metrics import Metrics

Lifespan = Callable[[], Awaitable[None]]
log = logging.getLogger("mlambda.gateway")


class Gateway:
    def __init__(self, settings: Settings, router: Router, keyring: KeyRing, meter: Meter,
                 engine: Engine, admin: ASGIApp, startup: Lifespan, shutdown: Lifespan,
                 dashboard: ASGIApp | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.router = router
        self.keyring = keyring
        self.meter = meter
        self.engine = engine
        self.admin = admin
        # whatever serves /dashboard (even its 404) sends the security headers
        self.dashboard = with_security_headers(dashboard or self.not_found)
        self.startup = startup
        self.shutdown = shutdown
        self.idempotency = IdempotencyStore(settings.idempotency_entries,
                                            int(settings.idempotency_mb * 1024 * 1024))
        self.metrics = metrics  # None: telemetry off

    @staticmethod
    def request_id() -> str:
        return new_request_id()

    def authenticate(self, scope: Scope, role: str | None = None,
                     bearer: bool = False) -> ApiKey:
        """The request's key, if it is valid now and its role grants `role` ("invoke",
        "admin" or "metrics"; None: "invoke"). With `bearer`, the key may also come as
        `Authorization: Bearer <key>` (what a Prometheus scrape config sends)."""
        secret = header(scope, b"x-api-key")
        if not secret and bearer:
            scheme, _, token = (header(scope, b"authorization") or b"").partition(b" ")
            if scheme.lower() == b"bearer":
                secret = token.strip()
        if not secret:
            also = " or as Authorization: Bearer <key>" if bearer else ""
            raise Unauthorized(f"missing API key: send it in the x-api-key header{also}")
        now = time.time()
        key = self.keyring.check(secret, now)
        action = role or "invoke"
        if not key.may(action):
            raise Forbidden(f"this API key may not do that: needs the {action} role "
                            f"(it has the {key.role} role)")
        self.meter.seen(key, now)
        return key

    def admit(self, key: ApiKey, function: str) -> Headers:
        """Let `key` invoke `function`, or not: its scope, then its usage plan (rate and
        quota). Returns its RateLimit-* headers."""
        if key.functions is not None and function not in key.functions:
            raise Forbidden(f"API key {key.name} may not invoke {function}: it may invoke "
                            f"{', '.join(sorted(key.functions))}")
        return self.meter.admit(key, time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.http(scope, receive, send)
            except ClientGone:
                pass
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # this request is being cancelled (shutdown): not ours to answer
                # an engine's future was cancelled under the request: answer, never drop it
                log.error("%s %s: its invocation was cancelled", scope.get("method"),
                          scope.get("path"))
                try:
                    await respond_error(send, ShuttingDown(
                        "the invocation was cancelled before it answered; retry"))
                except RuntimeError:  # the response had started: uvicorn closes it
                    pass
            except Exception as exc:  # a bug of ours: say so in JSON, log it, keep serving
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                try:
                    await respond_error(send, Internal(f"internal error ({type(exc).__name__})"))
                except RuntimeError:  # the response had started: uvicorn closes it
                    pass
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route = self.router.routes.get((scope["method"], path))
        if route is not None:
            start = time.perf_counter()
            status = await self.invoke_route(route, scope, receive, send)
            if self.metrics is not None:
                self.metrics.request(route.label, status, time.perf_counter() - start)
        elif path.startswith(invoke.PREFIX) and path.endswith(invoke.SUFFIX):
            if scope["method"] != "POST":
                await respond(send, 405, error_body(NotFound("use POST").info()))
            else:
                start = time.perf_counter()
                status = await invoke.invoke_api(self, scope, receive, send)
                if self.metrics is not None:
                    self.metrics.request(invoke.ROUTE, status, time.perf_counter() - start)
        elif path == "/healthz":
            await respond(send, 200, b'{"status":"ok"}')
        elif path == "/metrics":
            await self.prometheus(scope, send)
        elif path.startswith("/admin/"):
            await self.admin(scope, receive, send)
        elif path == "/dashboard" or path.startswith("/dashboard/"):
            await self.dashboard(scope, receive, send)
        else:
            await self.not_found(scope, receive, send)

    @staticmethod
    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        await respond_error(send, NotFound(f"no route for {scope['method']} {scope['path']}"))

    async def invoke_route(self, route: Route, scope: Scope, receive: Receive,
                           send: Send) -> int:
        limits = NO_HEADERS
        version: VersionRef | None = None
        try:
            key = self.authenticate(scope)
            limits = self.admit(key, route.function)
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            version = self.router.resolve(route.function, route.qualifier)
            meta = None
            if version.spec.event == "proxy":
                meta = self.proxy_meta(scope, route, key)
            item = Item(self.request_id(), body, meta)
            if route.idempotency is None:
                answer = answer_of(await self.run(route, version, item, key))
            else:
                answer = await self.once(route, route.idempotency, key, version, item)
        except MlambdaError as exc:
            if exc.status == 429 and self.metrics is not None:
                self.metrics.throttled(route.function, route.qualifier,
                                       version.version if version else None,
                                       getattr(exc, "reason", exc.error_type))
            return await respond_error(send, exc, limits)
        return await respond(send, answer.status, answer.body, [*answer.headers, *limits])

    async def run(self, route: Route, version: VersionRef, item: Item, key: ApiKey) -> Outcome:
        """Invoke `version` and wait for its outcome (which the route's alias counts)."""
        outcome = await self.engine.submit(version, item, key.key_id, key.weight)
        if self.metrics is not None:
            self.metrics.on_alias_outcome(route.function, route.qualifier, outcome,
                                          version.spec.memory_mb)
        return outcome

    async def once(self, route: Route, rule: Idempotency, key: ApiKey, version: VersionRef,
                   item: Item) -> Answer:
        """Answer `item` on a route with the idempotency option: join the invocation of
        the same question that is running, replay its stored answer, or run it."""
        ids = identify(rule, item.payload)
        if ids is None:  # no key field: an ordinary request
            return answer_of(await self.run(route, version, item, key))
        ident = (f"{route.method} {route.path}", key.key_id, ids[0])
        slot, role = self.idempotency.claim(ident, ids[1], time.monotonic())
        if role is Role.REPLAY:
            assert slot.answer is not None
            return replayed(slot.answer)
        if role is Role.JOIN:
            return replayed(await asyncio.shield(slot.done))
        try:
            future = self.engine.submit(version, item, key.key_id, key.weight)
        except BaseException as exc:
            self.idempotency.abandon(slot, exc)
            raise
        # settled by the invocation itself (before this request resumes), whatever
        # becomes of this request
        future.add_done_callback(functools.partial(self.settle, slot, rule.ttl_s))
        outcome = await future
        if self.metrics is not None:  # the alias ran it once, however many asked
            self.metrics.on_alias_outcome(route.function, route.qualifier, outcome,
                                          version.spec.memory_mb)
        # `settle` ran first (its callback came before this task's) and made the answer
        return slot.done.result() if slot.done.done() else answer_of(outcome)

    def settle(self, slot: Slot, ttl_s: float, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():
            self.idempotency.abandon(slot, ShuttingDown("the invocation was cancelled"))
        elif (exc := future.exception()) is not None:
            self.idempotency.abandon(slot, exc)
        else:
            self.idempotency.settle(slot, answer_of(future.result()), ttl_s, time.monotonic())

    async def prometheus(self, scope: Scope, send: Send) -> None:
        """GET /metrics (Prometheus text) for a key whose role grants `metrics` (admin or
        metrics), as x-api-key or `Authorization: Bearer`."""
        try:
            self.authenticate(scope, "metrics", bearer=True)
            if scope["method"] != "GET":
                raise NotFound("use GET /metrics")
            if self.metrics is None:
                raise NotFound("telemetry is off on this server (MLAMBDA_TELEMETRY=0)")
        except MlambdaError as exc:
            await respond_error(send, exc)
            return
        gauges = self.metrics.sample(idle_too=True)
        body = await self.metrics.read_cumulative(
            lambda points: prometheus.exposition(points, gauges))
        await respond(send, 200, body, [(b"content-type", prometheus.CONTENT_TYPE.encode())])

    @staticmethod
    def proxy_meta(scope: Scope, route: Route, key: ApiKey) -> ProxyMeta:
        client = scope.get("client") or ("", 0)
        return ProxyMeta(
            method=scope["method"],
            path=scope["path"],
            resource=route.path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=tuple((k.decode("latin-1"), v.decode("latin-1"))
                          for k, v in scope["headers"] if k != b"x-api-key"),
            source_ip=client[0],
            api_key_id=key.key_id,
            stage=route.qualifier,
        )

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


REPLAYED = (b"idempotent-replayed", b"true")
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def answer_of(outcome: Outcome) -> Answer:
    """How a route answers an invocation's outcome."""
    if outcome.error is not None:
        return Answer(http_status(outcome.error), (JSON,), error_body(outcome.error))
    if outcome.headers:  # the gateway frames the body itself, as API Gateway does
        return Answer(outcome.status, tuple(
            (name, v.encode("latin-1")) for k, v in outcome.headers
            if (name := k.lower().encode("latin-1")) not in FRAMING), outcome.body)
    return Answer(outcome.status, (JSON,), outcome.body)


def replayed(answer: Answer) -> Answer:
    """An answer given again (to a retry that joined or came later), marked as such."""
    return Answer(answer.status, (*answer.headers, REPLAYED), answer.body)
