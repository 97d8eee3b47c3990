"""The gateway: one ASGI app whose hot path is short and visible in one place:

request -> key -> route -> meter -> version -> enqueue -> (batch, run) -> respond.

It never parses an invocation's JSON body: the raw bytes go to an instance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from mlambda.engines.base import Engine
from mlambda.errors import Forbidden, MlambdaError, NotFound, Unauthorized, http_status
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
)
from mlambda.gateway.throttle import NO_HEADERS, Headers, Meter
from mlambda.keys import ApiKey, KeyRing
from mlambda.registry import Route
from mlambda.router import Router
from mlambda.runtime.protocol import Item, ProxyMeta
from mlambda.settings import Settings

Lifespan = Callable[[], Awaitable[None]]


class Gateway:
    def __init__(self, settings: Settings, router: Router, keyring: KeyRing, meter: Meter,
                 engine: Engine, admin: ASGIApp, startup: Lifespan, shutdown: Lifespan) -> None:
        self.settings = settings
        self.router = router
        self.keyring = keyring
        self.meter = meter
        self.engine = engine
        self.admin = admin
        self.startup = startup
        self.shutdown = shutdown

    @staticmethod
    def request_id() -> str:
        return str(uuid.uuid4())

    def authenticate(self, scope: Scope, role: str | None = None) -> ApiKey:
        """The request's key, if it is valid now and its role grants `role` ("invoke",
        "admin" or "metrics"; None: "invoke")."""
        secret = header(scope, b"x-api-key")
        if not secret:
            raise Unauthorized("missing API key: send it in the x-api-key header")
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
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route = self.router.routes.get((scope["method"], path))
        if route is not None:
            await self.invoke_route(route, scope, receive, send)
        elif path.startswith(invoke.PREFIX) and path.endswith(invoke.SUFFIX):
            if scope["method"] != "POST":
                await respond(send, 405, error_body(NotFound("use POST").info()))
            else:
                await invoke.invoke_api(self, scope, receive, send)
        elif path == "/healthz":
            await respond(send, 200, b'{"status":"ok"}')
        elif path.startswith("/admin/"):
            await self.admin(scope, receive, send)
        else:
            await respond_error(send, NotFound(f"no route for {scope['method']} {path}"))

    async def invoke_route(self, route: Route, scope: Scope, receive: Receive,
                           send: Send) -> None:
        limits = NO_HEADERS
        try:
            key = self.authenticate(scope)
            limits = self.admit(key, route.function)
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            version = self.router.resolve(route.function, route.qualifier)
            meta = None
            if version.spec.event == "proxy":
                meta = self.proxy_meta(scope, route, key)
            outcome = await self.engine.submit(version, Item(self.request_id(), body, meta))
        except MlambdaError as exc:
            await respond_error(send, exc, limits)
            return
        if outcome.error is not None:
            await respond(send, http_status(outcome.error), error_body(outcome.error),
                          [JSON, *limits])
        elif outcome.headers:
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                       for k, v in outcome.headers]
            await respond(send, outcome.status, outcome.body, [*headers, *limits])
        elif limits:
            await respond(send, outcome.status, outcome.body, [JSON, *limits])
        else:
            await respond(send, outcome.status, outcome.body, [JSON])

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
