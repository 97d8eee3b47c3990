"""The Python SDK: `Client(url, key)` for invoking functions and for the control plane.

    from mlambda import Client
    c = Client("http://127.0.0.1:8080", admin_key)
    c.deploy("functions/echo", publish=True)
    c.set_alias("echo", "live", "2", canary=("3", 0.1))
    c.invoke("echo:live", {"hello": "world"})
    c.create_plan("standard", rate=100, burst=200, quota=100_000, period="day")
    secret = c.create_key("branch-app", "invoke", plan="standard")["secret"]
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx


class ClientError(Exception):
    """The server refused: carries its status, errorType and errorMessage."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


class FunctionError(Exception):
    """The function ran and failed (the Invoke API's X-Amz-Function-Error)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


@dataclass(frozen=True)
class Invocation:
    payload: Any
    executed_version: str
    request_id: str
    log: str | None


def bundle_archive(directory: Path) -> bytes:
    """A .tar.gz of a function's directory (without caches)."""
    buf = io.BytesIO()
    # symlinked files (a module shared by two functions) go in as the files they point to
    with tarfile.open(fileobj=buf, mode="w:gz", dereference=True) as tar:
        for path in sorted(directory.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buf.getvalue()


def _part(name: str) -> str:
    """A name as one URL path segment."""
    return quote(name, safe="")


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


class Client:
    def __init__(self, url: str, key: str, timeout: float = 930.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"x-api-key": key},
                                 timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, r: httpx.Response) -> Any:
        self._check_status(r)
        return r.json() if r.content else None

    @staticmethod
    def _check_status(r: httpx.Response) -> None:
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {}
            raise ClientError(r.status_code, body.get("errorType", "Error"),
                              body.get("errorMessage", r.text))

    # -- invoke -----------------------------------------------------------------------

    def invoke(self, function: str, event: Any = None, *, tail: bool = False) -> Invocation:
        """Invoke `name`, `name:alias` or `name:version`; raises FunctionError if it failed."""
        import base64

        headers = {"X-Amz-Log-Type": "Tail"} if tail else {}
        r = self.http.post(f"/2015-03-31/functions/{function}/invocations",
                           content=json.dumps(event if event is not None else {}),
                           headers=headers)
        payload = self._check(r)
        log = r.headers.get("x-amz-log-result")
        if "x-amz-function-error" in r.headers:
            raise FunctionError(payload)
        return Invocation(payload, r.headers.get("x-amz-executed-version", ""),
                          r.headers.get("x-amzn-requestid", ""),
                          base64.b64decode(log).decode() if log else None)

    # -- code, versions, aliases ------------------------------------------------------

    def deploy(self, directory: str | Path, publish: bool = False) -> dict[str, Any]:
        r = self.http.post("/admin/v1/functions", params={"publish": str(publish).lower()},
                           content=bundle_archive(Path(directory)),
                           headers={"content-type": "application/gzip"})
        result: dict[str, Any] = self._check(r)
        return result

    def publish(self, function: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(
            self.http.post(f"/admin/v1/functions/{function}/versions"))
        return result

    def functions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/functions"))
        return result

    def function(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self.http.get(f"/admin/v1/functions/{name}"))
        return result

    def versions(self, function: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(
            self.http.get(f"/admin/v1/functions/{function}/versions"))
        return result

    def version(self, function: str, version: str) -> dict[str, Any]:
        """One version's sha256 and spec (its `function.toml` as parsed at deploy)."""
        result: dict[str, Any] = self._check(
            self.http.get(f"/admin/v1/functions/{function}/versions/{version}"))
        return result

    def bundle(self, function: str, version: str) -> tuple[bytes, str]:
        """A version's code as the registry stores it: (.tar.gz, its sha256)."""
        r = self.http.get(f"/admin/v1/functions/{function}/versions/{version}/bundle")
        self._check_status(r)
        return r.content, r.headers.get("x-mlambda-sha256", "")

    def aliases(self, function: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(
            self.http.get(f"/admin/v1/functions/{function}/aliases"))
        return result

    def set_alias(self, function: str, alias: str, version: str,
                  canary: tuple[str, float] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"version": version}
        if canary is not None:
            body["additional_version"], body["weight"] = canary
        result: dict[str, Any] = self._check(
            self.http.put(f"/admin/v1/functions/{function}/aliases/{alias}", json=body))
        return result

    def scale_to_zero(self, function: str, qualifier: str | None = None) -> dict[str, Any]:
        """Stop the instances and template of `function:qualifier`: the next call is cold."""
        params = {"qualifier": qualifier} if qualifier else {}
        result: dict[str, Any] = self._check(
            self.http.post(f"/admin/v1/functions/{function}/scale-to-zero", params=params))
        return result

    # -- routes -----------------------------------------------------------------------

    def routes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/routes"))
        return result

    def add_route(self, method: str, path: str, target: str,
                  idempotency: dict[str, Any] | None = None) -> dict[str, Any]:
        """Route METHOD PATH to `target`. `idempotency`, e.g. {"key": "esun_uuid",
        "match": ["image"], "ttl_s": 300}, answers retries of a request once."""
        body: dict[str, Any] = {"method": method, "path": path, "target": target}
        if idempotency is not None:
            body["idempotency"] = idempotency
        result: dict[str, Any] = self._check(self.http.post("/admin/v1/routes", json=body))
        return result

    def set_route_idempotency(self, method: str, path: str,
                              idempotency: dict[str, Any] | None) -> dict[str, Any]:
        """Change an existing route's idempotency option (None turns it off)."""
        result: dict[str, Any] = self._check(self.http.patch(
            "/admin/v1/routes", params={"method": method, "path": path},
            json={"idempotency": idempotency}))
        return result

    def idempotency_stats(self) -> dict[str, int]:
        result: dict[str, int] = self._check(self.http.get("/admin/v1/idempotency"))
        return result

    def remove_route(self, method: str, path: str) -> None:
        self._check(self.http.delete("/admin/v1/routes", params={"method": method, "path": path}))

    # -- models -----------------------------------------------------------------------

    def push_model(self, name: str, file: str | Path, current: bool = True) -> dict[str, Any]:
        path = Path(file)
        h = hashlib.sha256()
        for chunk in _file_chunks(path):
            h.update(chunk)
        r = self.http.put(f"/admin/v1/models/{name}",
                          params={"filename": path.name, "current": str(current).lower()},
                          content=_file_chunks(path),
                          headers={"x-content-sha256": h.hexdigest(),
                                   "content-type": "application/octet-stream"})
        result: dict[str, Any] = self._check(r)
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/models"))
        return result

    def model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self.http.get(f"/admin/v1/models/{name}"))
        return result

    def rollback_model(self, name: str, sha256: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(
            self.http.post(f"/admin/v1/models/{name}/rollback", json={"sha256": sha256}))
        return result

    # -- API keys and usage plans -----------------------------------------------------

    def keys(self) -> list[dict[str, Any]]:
        """Every key: name, role, plan, scope, state, created, expires, last used."""
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/keys"))
        return result

    def key(self, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self.http.get(f"/admin/v1/keys/{_part(key)}"))
        return result

    def create_key(self, name: str, role: str = "invoke", *, plan: str | None = None,
                   functions: list[str] | None = None,
                   expires_in_s: float | None = None) -> dict[str, Any]:
        """A new key; its `secret` is in the answer, this once."""
        body: dict[str, Any] = {"name": name, "role": role, "plan": plan,
                                "functions": functions, "expires_in_s": expires_in_s}
        result: dict[str, Any] = self._check(self.http.post("/admin/v1/keys", json=body))
        return result

    def update_key(self, key: str, **changes: Any) -> dict[str, Any]:
        """Change any of `enabled`, `plan` (None: detach), `functions`, `expires_at`."""
        result: dict[str, Any] = self._check(
            self.http.patch(f"/admin/v1/keys/{_part(key)}", json=changes))
        return result

    def disable_key(self, key: str) -> dict[str, Any]:
        return self.update_key(key, enabled=False)

    def enable_key(self, key: str) -> dict[str, Any]:
        return self.update_key(key, enabled=True)

    def set_key_plan(self, key: str, plan: str | None) -> dict[str, Any]:
        return self.update_key(key, plan=plan)

    def revoke_key(self, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(
            self.http.post(f"/admin/v1/keys/{_part(key)}/revoke"))
        return result

    def rotate_key(self, key: str, grace_s: float = 0.0) -> dict[str, Any]:
        """A new secret (in the answer, this once); the old one works `grace_s` more."""
        result: dict[str, Any] = self._check(
            self.http.post(f"/admin/v1/keys/{_part(key)}/rotate", json={"grace_s": grace_s}))
        return result

    def usage(self, key: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """Requests admitted and throttled per key per UTC day (`since`: YYYY-MM-DD)."""
        params = {k: v for k, v in (("key", key), ("since", since)) if v is not None}
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/usage",
                                                                 params=params))
        return result

    def plans(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._check(self.http.get("/admin/v1/plans"))
        return result

    def create_plan(self, name: str, rate: float, burst: int, quota: int | None = None,
                    period: str | None = None, weight: int = 1) -> dict[str, Any]:
        """A usage plan: `rate` requests/s, bucket of `burst`, `quota` per `period`
        ("day" or "month", UTC), `weight` for fair sharing."""
        body = {"name": name, "rate": rate, "burst": burst, "quota": quota, "period": period,
                "weight": weight}
        result: dict[str, Any] = self._check(self.http.post("/admin/v1/plans", json=body))
        return result

    def remove_plan(self, name: str) -> None:
        self._check(self.http.delete(f"/admin/v1/plans/{_part(name)}"))

    # -- logs -------------------------------------------------------------------------

    def logs(self, function: str | None = None, *, since: str | None = None,
             filter: str | None = None, request_id: str | None = None,
             version: str | None = None, after: int | None = None, limit: int = 100,
             wait: float = 0.0) -> dict[str, Any]:
        """Log entries (`entries`, oldest first) and the `cursor` to continue from."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("function", function), ("since", since), ("filter", filter),
                            ("request_id", request_id), ("version", version),
                            ("after", after)):
            if value is not None:
                params[name] = value
        if wait:
            params["wait"] = wait
        result: dict[str, Any] = self._check(self.http.get(
            "/admin/v1/logs", params=params, timeout=(self.http.timeout.read or 30.0) + wait))
        return result

    def follow_logs(self, function: str | None = None, *, since: str | None = "10m",
                    filter: str | None = None, request_id: str | None = None,
                    version: str | None = None, wait: float = 20.0) -> Iterator[dict[str, Any]]:
        """The entries that match, then each new one as it is written (endless; the
        server holds each request up to `wait` seconds until something new arrives)."""
        page = self.logs(function, since=since, filter=filter, request_id=request_id,
                         version=version)
        yield from page["entries"]
        cursor = page["cursor"]
        while True:
            page = self.logs(function, filter=filter, request_id=request_id, version=version,
                             after=cursor, limit=1000, wait=wait)
            yield from page["entries"]
            cursor = page["cursor"]

    # -- metrics and cost -------------------------------------------------------------

    def metrics(self, function: str | None = None, *, alias: str | None = None,
                version: str | None = None, route: str | None = None, since: str = "1h",
                until: str | None = None, period: int | None = None,
                series: list[str] | None = None) -> dict[str, Any]:
        """A function's (alias's, version's) or a route's metrics: `{"period", "series":
        {name: [[unix_ts, value], ...]}, "breakdown", "summary", ...}` (only the `series`
        named, if given)."""
        params: dict[str, Any] = {"since": since}
        for name, value in (("function", function), ("alias", alias), ("version", version),
                            ("route", route), ("until", until), ("period", period),
                            ("series", ",".join(series) if series else None)):
            if value is not None:
                params[name] = value
        result: dict[str, Any] = self._check(self.http.get("/admin/v1/metrics", params=params))
        return result

    def metrics_overview(self) -> dict[str, Any]:
        """Every function now: requests/s, errors, p99, instances, cost so far today."""
        result: dict[str, Any] = self._check(self.http.get("/admin/v1/metrics/overview"))
        return result

    def cost(self, function: str | None = None, since: str = "30d",
             sheet: str | None = None) -> dict[str, Any]:
        """Measured usage priced as Lambda + API Gateway, next to an always-on server."""
        params = {k: v for k, v in (("function", function), ("since", since),
                                    ("sheet", sheet)) if v is not None}
        result: dict[str, Any] = self._check(self.http.get("/admin/v1/cost", params=params))
        return result

    def cost_scenario(self, scenario: str, sheet: str | None = None) -> dict[str, Any]:
        """A month of imagined traffic, e.g. "10000/day 0.5s 8GB 22days", priced alike."""
        params = {"scenario": scenario, **({"sheet": sheet} if sheet else {})}
        result: dict[str, Any] = self._check(
            self.http.get("/admin/v1/cost/scenario", params=params))
        return result
