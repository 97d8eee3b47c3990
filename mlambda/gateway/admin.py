"""The control plane's HTTP API under /admin/v1 (admin key only), with an OpenAPI document
at /admin/v1/openapi.json. The CLI and the SDK are clients of it; every operation is a
method of `ControlPlane`, this module only maps HTTP to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlambda.errors import InvalidParameter, MlambdaError, NotFound, PayloadTooLarge
from mlambda.gateway.http import PRINCIPAL
from mlambda.gateway.metrics_api import add_metric_routes
from mlambda.keys import ApiKey
from mlambda.plans import Plan, day
from mlambda.registry import (
    MAX_FIELD_NAME,
    MAX_MATCH,
    MAX_TTL_S,
    Idempotency,
    ModelRecord,
    Route,
    bundle_archive,
)
from mlambda.telemetry.logstore import LogQuery
from mlambda.telemetry.query import parse_time

if TYPE_CHECKING:
    from mlambda.server import Platform

MAX_BUNDLE_BYTES = 50 * 1024 * 1024
BINARY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
GZIP = {"requestBody": {"required": True, "content": {
    "application/gzip": {"schema": {"type": "string", "format": "binary"}}}}}


class IdempotencyIn(BaseModel):
    """Retries answered once: requests with equal `key` and `match` fields of their JSON
    body get one invocation's answer (joined while it runs, replayed for `ttl_s` after a
    2xx). The same key with other `match` fields is a new request."""

    key: str = Field(min_length=1, max_length=MAX_FIELD_NAME, examples=["esun_uuid"],
                     description="the JSON field that identifies a request")
    match: list[str] = Field(default=[], max_length=MAX_MATCH, examples=[["image"]],
                             description="the JSON fields that must also be equal")
    ttl_s: float = Field(default=300.0, gt=0, le=MAX_TTL_S,
                         description="how long a successful answer is replayed (seconds)")


class RouteIn(BaseModel):
    method: str = Field(pattern=r"^(GET|POST|PUT|PATCH|DELETE)$", examples=["POST"])
    path: str = Field(pattern=r"^/[A-Za-z0-9_\-./]*$", examples=["/inference"])
    target: str = Field(description="function:alias or function:version",
                        examples=["handwriting:live"])
    idempotency: IdempotencyIn | None = None


class RouteOptionsIn(BaseModel):
    idempotency: IdempotencyIn | None = Field(
        description="the route's idempotency option; null turns it off")


def idempotency_of(body: IdempotencyIn | None) -> Idempotency | None:
    return None if body is None else Idempotency.parse(body.model_dump())


def route_json(r: Route) -> dict[str, Any]:
    return {"method": r.method, "path": r.path, "target": f"{r.function}:{r.qualifier}",
            "idempotency": None if r.idempotency is None else r.idempotency.to_json()}


class AliasIn(BaseModel):
    version: str = Field(description="the published version the alias points to",
                         examples=["3"])
    additional_version: str | None = Field(
        default=None, description="a second version that gets `weight` of the traffic")
    weight: float = Field(default=0.0, ge=0.0, le=1.0)


class RollbackIn(BaseModel):
    sha256: str = Field(description="the version's SHA-256 (or a unique prefix)")


LAST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


class KeyIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["branch-app"])
    role: str = Field(pattern=r"^(invoke|admin|metrics)$", examples=["invoke"])
    plan: str | None = Field(default=None, description="a usage plan's name")
    functions: list[str] | None = Field(
        default=None, description="the functions it may invoke (default: all)")
    expires_at: float | None = Field(default=None, gt=0, le=LAST_TIME, allow_inf_nan=False,
                                     description="Unix time it stops working")
    expires_in_s: float | None = Field(default=None, gt=0, le=100 * 365 * 86400,
                                       allow_inf_nan=False,
                                       description="or: seconds from now it stops working")


class KeyPatch(BaseModel):
    enabled: bool | None = Field(default=None, description="false: disabled until enabled")
    plan: str | None = Field(default=None, description="a usage plan's name; null: none")
    functions: list[str] | None = Field(default=None, description="scope; null: all")
    expires_at: float | None = Field(default=None, gt=0, le=LAST_TIME, allow_inf_nan=False,
                                     description="Unix time; null: never")


class RotateIn(BaseModel):
    grace_s: float = Field(default=0.0, ge=0, le=30 * 86400, allow_inf_nan=False,
                           description="how long the previous secret keeps working")


class PlanIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["standard"])
    rate: float = Field(gt=0, le=1e9, allow_inf_nan=False,
                        description="requests per second (the bucket's refill)")
    burst: int = Field(ge=1, le=10**9, description="requests at once (the bucket's size)")
    quota: int | None = Field(default=None, ge=1, le=10**15, description="requests per period")
    period: Literal["day", "month"] | None = Field(default=None, description="UTC day or month")
    weight: int = Field(default=1, ge=1, le=1000, description="share of a contended queue")


def key_json(key: ApiKey, last_used: float | None) -> dict[str, Any]:
    """A key as the admin API shows it: never its secret, never its hash."""
    now = time.time()
    state = key.state
    if state == "active" and key.expires_at is not None and key.expires_at <= now:
        state = "expired"
    rotating = key.old_until if key.old_until is not None and key.old_until > now else None
    return {"id": key.key_id, "name": key.name, "role": key.role,
            "plan": key.plan.name if key.plan else None,
            "functions": None if key.functions is None else sorted(key.functions),
            "state": state, "created_at": key.created_at, "expires_at": key.expires_at,
            "last_used": last_used, "previous_secret_until": rotating}


def plan_json(plan: Plan, keys: list[ApiKey]) -> dict[str, Any]:
    return {"name": plan.name, "rate": plan.rate, "burst": plan.burst, "quota": plan.quota,
            "period": plan.period, "weight": plan.weight,
            "keys": [k.name for k in keys if k.plan is not None and k.plan.name == plan.name
                     and k.state != "revoked"]}


def model_json(m: ModelRecord, current: str | None) -> dict[str, Any]:
    return {"sha256": m.sha256, "filename": m.filename, "size": m.size,
            "created_at": m.created_at, "error": m.error, "current": m.sha256 == current}


def build_admin(platform: Platform) -> FastAPI:
    app = FastAPI(title="mlambda admin API", version="1", openapi_url="/admin/v1/openapi.json",
                  docs_url="/admin/v1/docs", redoc_url=None)
    control = platform.control

    def admin_key(request: Request) -> None:
        principal = request.scope.get(PRINCIPAL)
        if isinstance(principal, ApiKey) and principal.may("admin"):
            return  # signed in to the dashboard, which reads through here
        platform.gateway.authenticate(request.scope, role="admin")

    @app.exception_handler(MlambdaError)
    async def on_error(request: Request, exc: MlambdaError) -> JSONResponse:
        return JSONResponse({"errorType": exc.error_type, "errorMessage": exc.message},
                            status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own answers (no such path, method not allowed): our error shape
        error_type = {404: NotFound.error_type, 405: "MethodNotAllowedException"}.get(
            exc.status_code, InvalidParameter.error_type)
        message = (f"no admin API route for {request.method} {request.url.path}"
                   if exc.status_code in (404, 405) else str(exc.detail))
        return JSONResponse({"errorType": error_type, "errorMessage": message},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"field `{'.'.join(str(p) for p in e['loc'][1:])}`: {e['msg']}" for e in exc.errors())
        return JSONResponse({"errorType": InvalidParameter.error_type,
                             "errorMessage": problems}, status_code=400)

    guarded = [Depends(admin_key)]

    # -- functions and versions ------------------------------------------------------

    @app.get("/admin/v1/functions", dependencies=guarded)
    async def list_functions() -> list[dict[str, Any]]:
        return [platform.describe(name) for name in platform.registry.functions()]

    @app.post("/admin/v1/functions", dependencies=guarded, status_code=201, openapi_extra=GZIP)
    async def deploy(request: Request, publish: bool = False) -> dict[str, Any]:
        """Upload a bundle (.tar.gz of the function's directory) as `$LATEST`;
        `?publish=true` also snapshots it as the next version."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BUNDLE_BYTES:
                raise PayloadTooLarge(f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
        version = control.deploy(bytes(body), publish)
        return {"function": version.function, "version": version.version,
                "sha256": version.sha256}

    @app.get("/admin/v1/functions/{name}", dependencies=guarded)
    async def get_function(name: str) -> dict[str, Any]:
        platform.registry.require(name)
        return platform.describe(name)

    @app.get("/admin/v1/functions/{name}/versions", dependencies=guarded)
    async def list_versions(name: str) -> list[dict[str, Any]]:
        times = platform.registry.version_times(name)
        return [{"version": v.version, "sha256": v.sha256, "created_at": times[v.version]}
                for v in platform.registry.versions(name)]

    @app.get("/admin/v1/functions/{name}/versions/{version}", dependencies=guarded)
    async def get_version(name: str, version: str) -> dict[str, Any]:
        """One version: its code's SHA-256 and its `function.toml`, as parsed at deploy."""
        v = platform.registry.version(name, version)
        return {"function": v.function, "version": v.version, "sha256": v.sha256,
                "created_at": platform.registry.version_times(name)[v.version],
                "spec": msgspec.to_builtins(v.spec)}

    @app.get("/admin/v1/functions/{name}/versions/{version}/bundle", dependencies=guarded,
             response_class=Response,
             responses={200: {"content": {"application/gzip": {}}}})
    async def get_bundle(name: str, version: str) -> Response:
        """The version's code exactly as stored (a .tar.gz whose files hash to its sha256),
        e.g. for `mlambda export`."""
        v = platform.registry.version(name, version)
        archive = await asyncio.to_thread(bundle_archive, Path(v.bundle))  # off the hot loop
        return Response(archive, media_type="application/gzip",
                        headers={"x-mlambda-sha256": v.sha256})

    @app.post("/admin/v1/functions/{name}/versions", dependencies=guarded, status_code=201)
    async def publish_version(name: str) -> dict[str, Any]:
        v = control.publish(name)
        return {"function": v.function, "version": v.version, "sha256": v.sha256}

    @app.post("/admin/v1/functions/{name}/scale-to-zero", dependencies=guarded)
    async def scale_to_zero(name: str, qualifier: str | None = None) -> dict[str, Any]:
        """Stop every instance and the template of what `name:qualifier` runs (busy
        instances finish their batch first): the next call is a full cold start."""
        platform.registry.require(name)
        return {"function": name, "versions": await control.scale_to_zero(name, qualifier)}

    # -- aliases ---------------------------------------------------------------------

    @app.get("/admin/v1/functions/{name}/aliases", dependencies=guarded)
    async def list_aliases(name: str) -> list[dict[str, Any]]:
        platform.registry.require(name)
        return [platform.alias_json(a) for a in platform.registry.aliases() if a.function == name]

    @app.put("/admin/v1/functions/{name}/aliases/{alias}", dependencies=guarded)
    async def set_alias(name: str, alias: str, body: AliasIn) -> dict[str, Any]:
        """Point an alias at a version (warmed first), optionally with a weighted canary."""
        extra = None
        if body.additional_version is not None:
            extra = (body.additional_version, body.weight)
        elif body.weight:
            raise InvalidParameter("field `weight`: needs `additional_version`")
        return platform.alias_json(await control.set_alias(name, alias, body.version, extra))

    # -- routes ----------------------------------------------------------------------

    @app.get("/admin/v1/routes", dependencies=guarded)
    async def list_routes() -> list[dict[str, Any]]:
        return [route_json(r) for r in platform.registry.routes()]

    @app.post("/admin/v1/routes", dependencies=guarded, status_code=201)
    async def add_route(body: RouteIn) -> dict[str, Any]:
        """Add a route, or replace the one with this method and path."""
        return route_json(control.add_route(body.method, body.path, body.target,
                                            idempotency_of(body.idempotency)))

    @app.patch("/admin/v1/routes", dependencies=guarded)
    async def change_route(body: RouteOptionsIn, method: str = Query(),
                           path: str = Query()) -> dict[str, Any]:
        """Change an existing route's options (its idempotency)."""
        return route_json(control.set_route_idempotency(method, path,
                                                        idempotency_of(body.idempotency)))

    @app.get("/admin/v1/idempotency", dependencies=guarded)
    async def idempotency_stats() -> dict[str, int]:
        """The gateway's store of answers for retries: entries, bytes, and how many
        requests led an invocation, joined one, were replayed, or reused a key with other
        matched fields (`mismatches`: computed anew)."""
        return platform.gateway.idempotency.stats()

    @app.delete("/admin/v1/routes", dependencies=guarded, status_code=204)
    async def remove_route(method: str = Query(), path: str = Query()) -> None:
        control.remove_route(method, path)

    # -- models ----------------------------------------------------------------------

    @app.get("/admin/v1/models", dependencies=guarded)
    async def list_models() -> list[dict[str, Any]]:
        return [platform.model_json(name) for name in platform.registry.model_names()]

    @app.put("/admin/v1/models/{name}", dependencies=guarded, status_code=201,
             openapi_extra=BINARY)
    async def push_model(name: str, request: Request, filename: str = Query(),
                         current: bool = True) -> dict[str, Any]:
        """Upload a model file. `x-content-sha256` must be the file's SHA-256: a partial
        or corrupt upload is discarded and never becomes current."""
        sha = request.headers.get("x-content-sha256", "")
        tmp = control.incoming_model(name)
        try:
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    f.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        v = control.push_model(name, filename, tmp, sha, current)
        return {"name": v.name, "sha256": v.sha256, "filename": v.filename, "size": v.size,
                "current": current}

    @app.get("/admin/v1/models/{name}", dependencies=guarded)
    async def get_model(name: str) -> dict[str, Any]:
        control.model_versions(name)  # 404 for an unknown model
        return platform.model_json(name)

    @app.post("/admin/v1/models/{name}/rollback", dependencies=guarded)
    async def rollback_model(name: str, body: RollbackIn) -> dict[str, Any]:
        m = control.rollback_model(name, body.sha256)
        return model_json(m, m.sha256)

    # -- API keys and usage plans -----------------------------------------------------

    def shown(key: ApiKey) -> dict[str, Any]:
        return key_json(key, control.last_used(key))

    @app.get("/admin/v1/keys", dependencies=guarded)
    async def list_keys() -> list[dict[str, Any]]:
        return [shown(k) for k in platform.registry.keys()]

    @app.post("/admin/v1/keys", dependencies=guarded, status_code=201)
    async def create_key(body: KeyIn) -> dict[str, Any]:
        """Create a key. The answer's `secret` is shown this once: only its SHA-256 is kept."""
        if body.expires_at is not None and body.expires_in_s is not None:
            raise InvalidParameter("give expires_at or expires_in_s, not both")
        expires = body.expires_at
        if body.expires_in_s is not None:
            expires = time.time() + body.expires_in_s
        key, secret = control.create_key(body.name, body.role, body.plan, body.functions,
                                         expires)
        return {**shown(key), "secret": secret}

    @app.get("/admin/v1/keys/{key}", dependencies=guarded)
    async def get_key(key: str) -> dict[str, Any]:
        return shown(control.find_key(key))

    @app.patch("/admin/v1/keys/{key}", dependencies=guarded)
    async def update_key(key: str, body: KeyPatch) -> dict[str, Any]:
        """Enable or disable a key, attach or detach a plan, change its scope or expiry."""
        changes = {f: getattr(body, f) for f in body.model_fields_set}
        if "enabled" in changes and changes["enabled"] is None:
            raise InvalidParameter("field `enabled`: expected true or false")
        return shown(control.update_key(key, changes))

    @app.post("/admin/v1/keys/{key}/revoke", dependencies=guarded)
    async def revoke_key(key: str) -> dict[str, Any]:
        """Revoke a key for good (it stays listed, as revoked)."""
        return shown(control.revoke_key(key))

    @app.post("/admin/v1/keys/{key}/rotate", dependencies=guarded)
    async def rotate_key(key: str, body: RotateIn) -> dict[str, Any]:
        """A new secret (shown this once); the previous one works for `grace_s` more."""
        rotated, secret = control.rotate_key(key, body.grace_s)
        return {**shown(rotated), "secret": secret}

    @app.get("/admin/v1/usage", dependencies=guarded)
    async def usage(since: str | None = Query(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                              description="first UTC day (default: 30 days ago)"),
                    key: str | None = Query(default=None, description="one key's name or id")
                    ) -> list[dict[str, Any]]:
        """Requests admitted and throttled per key per UTC day."""
        first = since or day(time.time() - 29 * 86400)[0]
        return control.usage(first, key)

    @app.get("/admin/v1/plans", dependencies=guarded)
    async def list_plans() -> list[dict[str, Any]]:
        keys = platform.registry.keys()
        return [plan_json(p, keys) for p in platform.registry.plans()]

    @app.post("/admin/v1/plans", dependencies=guarded, status_code=201)
    async def create_plan(body: PlanIn) -> dict[str, Any]:
        plan = control.create_plan(Plan(body.name, body.rate, body.burst, body.quota,
                                        body.period, body.weight))
        return plan_json(plan, [])

    @app.get("/admin/v1/plans/{name}", dependencies=guarded)
    async def get_plan(name: str) -> dict[str, Any]:
        return plan_json(control.find_plan(name), platform.registry.keys())

    @app.delete("/admin/v1/plans/{name}", dependencies=guarded, status_code=204)
    async def remove_plan(name: str) -> None:
        """Remove a plan that no key uses."""
        control.remove_plan(name)

    # -- logs ------------------------------------------------------------------------

    @app.get("/admin/v1/logs", dependencies=guarded)
    async def read_logs(
        function: str | None = None,
        since: str | None = Query(default=None, description="15m, 1h, 30d (ago) or ISO 8601"),
        filter: str | None = Query(default=None, max_length=500,
                                   description="entries whose text contains this phrase"),
        request_id: str | None = None,
        version: str | None = None,
        after: int | None = Query(default=None, ge=0,
                                  description="a cursor: entries after it, oldest first"),
        limit: int = Query(default=100, ge=1, le=1000),
        wait: float = Query(default=0.0, ge=0.0, le=30.0,
                            description="with `after`: wait this long for new entries"),
    ) -> dict[str, Any]:
        """Invocation logs (START, output, END, REPORT) and platform events, newest
        `limit` first-to-last; `cursor` continues from there (follow: pass it as `after`)."""
        if function is not None:
            platform.registry.require(function)
        if filter is not None and not any(c.isalnum() for c in filter):
            raise InvalidParameter("field `filter`: expected at least one letter or digit")
        query = LogQuery(function=function,
                         since=None if since is None else parse_time(since, time.time(), "since"),
                         text=filter or None, request_id=request_id, version=version,
                         after=after, limit=limit)
        entries, cursor = await platform.logs.read(query, wait)
        return {"entries": entries, "cursor": cursor}

    add_metric_routes(app, platform, guarded)
    return app
