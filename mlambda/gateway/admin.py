"""The control plane's HTTP API under /admin/v1 (admin key only), with an OpenAPI document
at /admin/v1/openapi.json. The CLI and the SDK are clients of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlambda.errors import InvalidParameter, MlambdaError, NotFound
from mlambda.registry import Route

if TYPE_CHECKING:
    from mlambda.server import Platform


class RouteIn(BaseModel):
    method: str = Field(pattern=r"^(GET|POST|PUT|PATCH|DELETE)$", examples=["POST"])
    path: str = Field(pattern=r"^/[A-Za-z0-9_\-./]*$", examples=["/inference"])
    target: str = Field(description="function:alias or function:version",
                        examples=["handwriting:live"])


def build_admin(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="mlambda admin API",
        version="1",
        openapi_url="/admin/v1/openapi.json",
        docs_url="/admin/v1/docs",
        redoc_url=None,
    )

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

    @app.get("/admin/v1/functions", dependencies=guarded)
    async def list_functions() -> list[dict[str, Any]]:
        return [platform.describe(name) for name in platform.registry.functions()]

    @app.get("/admin/v1/functions/{name}", dependencies=guarded)
    async def get_function(name: str) -> dict[str, Any]:
        if name not in platform.registry.functions():
            raise NotFound(f"Function not found: {name}")
        return platform.describe(name)

    @app.get("/admin/v1/routes", dependencies=guarded)
    async def list_routes() -> list[dict[str, str]]:
        return [{"method": r.method, "path": r.path, "target": f"{r.function}:{r.qualifier}"}
                for r in platform.registry.routes()]

    @app.post("/admin/v1/routes", dependencies=guarded, status_code=201)
    async def add_route(body: RouteIn) -> dict[str, str]:
        function, _, qualifier = body.target.partition(":")
        platform.router.resolve(function, qualifier or None)  # refuses a missing target
        platform.registry.add_route(Route(body.method, body.path, function, qualifier or "$LATEST"))
        platform.router.reload()
        return {"method": body.method, "path": body.path, "target": body.target}

    return app
