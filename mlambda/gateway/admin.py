"""The control plane's HTTP API under /admin/v1 (admin key only), with an OpenAPI document
at /admin/v1/openapi.json. The CLI and the SDK are clients of it; every operation is a
method of `ControlPlane`, this module only maps HTTP to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlambda.errors import InvalidParameter, MlambdaError, PayloadTooLarge
from mlambda.registry import ModelRecord

if TYPE_CHECKING:
    from mlambda.server import Platform

MAX_BUNDLE_BYTES = 50 * 1024 * 1024
BINARY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
GZIP = {"requestBody": {"required": True, "content": {
    "application/gzip": {"schema": {"type": "string", "format": "binary"}}}}}


class RouteIn(BaseModel):
    method: str = Field(pattern=r"^(GET|POST|PUT|PATCH|DELETE)$", examples=["POST"])
    path: str = Field(pattern=r"^/[A-Za-z0-9_\-./]*$", examples=["/inference"])
    target: str = Field(description="function:alias or function:version",
                        examples=["handwriting:live"])


class AliasIn(BaseModel):
    version: str = Field(description="the published version the alias points to",
                         examples=["3"])
    additional_version: str | None = Field(
        default=None, description="a second version that gets `weight` of the traffic")
    weight: float = Field(default=0.0, ge=0.0, le=1.0)


class RollbackIn(BaseModel):
    sha256: str = Field(description="the version's SHA-256 (or a unique prefix)")


def model_json(m: ModelRecord, current: str | None) -> dict[str, Any]:
    return {"sha256": m.sha256, "filename": m.filename, "size": m.size,
            "created_at": m.created_at, "error": m.error, "current": m.sha256 == current}


def build_admin(platform: Platform) -> FastAPI:
    app = FastAPI(title="mlambda admin API", version="1", openapi_url="/admin/v1/openapi.json",
                  docs_url="/admin/v1/docs", redoc_url=None)
    control = platform.control

    def admin_key(request: Request) -> None:
        platform.gateway.authenticate(request.scope, role="admin")

    @app.exception_handler(MlambdaError)
    async def on_error(request: Request, exc: MlambdaError) -> JSONResponse:
        return JSONResponse({"errorType": exc.error_type, "errorMessage": exc.message},
                            status_code=exc.status)

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

    @app.post("/admin/v1/functions/{name}/versions", dependencies=guarded, status_code=201)
    async def publish_version(name: str) -> dict[str, Any]:
        v = control.publish(name)
        return {"function": v.function, "version": v.version, "sha256": v.sha256}

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
    async def list_routes() -> list[dict[str, str]]:
        return [{"method": r.method, "path": r.path, "target": f"{r.function}:{r.qualifier}"}
                for r in platform.registry.routes()]

    @app.post("/admin/v1/routes", dependencies=guarded, status_code=201)
    async def add_route(body: RouteIn) -> dict[str, str]:
        route = control.add_route(body.method, body.path, body.target)
        return {"method": route.method, "path": route.path,
                "target": f"{route.function}:{route.qualifier}"}

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

    return app
