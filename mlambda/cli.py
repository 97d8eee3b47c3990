"""The `mlambda` command. `up` runs the platform; every other command is a client of its
HTTP API through the SDK (reads MLAMBDA_URL and MLAMBDA_ADMIN_KEY, or the data
directory's key files)."""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlambda.client import Client, ClientError, FunctionError
from mlambda.errors import InvalidParameter
from mlambda.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Serverless ML inference on machines you own.")
alias_app = typer.Typer(no_args_is_help=True, help="Aliases: names that point to versions.")
routes_app = typer.Typer(no_args_is_help=True, help="Gateway routes: method + path -> target.")
models_app = typer.Typer(no_args_is_help=True, help="Models in the shared volume.")
export_app = typer.Typer(no_args_is_help=True, help="Export a function to another platform.")
app.add_typer(alias_app, name="alias")
app.add_typer(routes_app, name="routes")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: roles, plans, scope, expiry.")
plans_app = typer.Typer(no_args_is_help=True, help="Usage plans: rate, burst, quota, weight.")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(plans_app, name="plans")
app.add_typer(export_app, name="export")
console = Console()
T = TypeVar("T")


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    data: Annotated[Path | None, typer.Option(help="data directory (MLAMBDA_DATA)")] = None,
    seed: Annotated[Path | None, typer.Option(help="seed file of functions and routes")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate: serve HTTPS (MLAMBDA_TLS_CERT)")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="PEM private key of --tls-cert (MLAMBDA_TLS_KEY)")] = None,
    max_connections: Annotated[int | None, typer.Option(
        help="open connections at once; past it 503 (MLAMBDA_MAX_CONNECTIONS)")] = None,
    engine: Annotated[str | None, typer.Option(
        help="where versions run: local or ray (MLAMBDA_ENGINE)")] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="with --engine ray: the cluster to join, auto or HOST:PORT (MLAMBDA_RAY_ADDRESS); "
             "none starts a one-machine Ray")] = None,
) -> None:
    """Start the platform in the foreground; ready when GET /healthz answers 200."""
    from mlambda.errors import MlambdaError
    from mlambda.server import run

    try:
        run(Settings.load(host=host, port=port, data=data, seed=seed, tls_cert=tls_cert,
                          tls_key=tls_key, max_connections=max_connections, engine=engine,
                          ray_address=ray_address))
    except MlambdaError as exc:  # a wrong setting or seed: say which, no traceback
        typer.echo(f"mlambda up: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _key(role: str) -> str:
    env = os.environ.get(f"MLAMBDA_{role.upper()}_KEY")
    if env:
        return env
    path = Settings.load().data / f"{role}.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        typer.echo(f"no {role} key: set MLAMBDA_{role.upper()}_KEY, or run where {path} is",
                   err=True)
        raise typer.Exit(2) from None


def _client(role: str = "admin") -> Client:
    url = os.environ.get("MLAMBDA_URL", "http://127.0.0.1:8080")
    return Client(url, _key(role))


def _call(fn: Callable[[Client], T], role: str = "admin") -> T:
    """Run one SDK call; print the server's error (type and message) and exit 1 on failure."""
    with _client(role) as c:
        try:
            return fn(c)
        except ClientError as exc:
            typer.echo(f"error: {exc.status} {exc.error_type}: {exc.message}", err=True)
            raise typer.Exit(1) from None


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # into a pipe or a file: as wide as the rows need, never cut
    (console if console.is_terminal else Console(width=240)).print(table)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


@app.command()
def invoke(
    function: Annotated[str, typer.Argument(help="name, name:alias or name:version")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON event, or @file")] = "{}",
    tail: Annotated[bool, typer.Option(help="print the invocation's log")] = False,
) -> None:
    """Invoke a function through the Lambda Invoke API and print its result."""
    text = Path(payload[1:]).read_text() if payload.startswith("@") else payload
    try:
        event = json.loads(text)
    except ValueError as exc:
        typer.echo(f"error: --payload is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    role = "invoke" if "MLAMBDA_INVOKE_KEY" in os.environ else "admin"
    with _client(role) as c:
        try:
            result = c.invoke(function, event, tail=tail)
        except FunctionError as exc:
            typer.echo(json.dumps(exc.payload, ensure_ascii=False))
            raise typer.Exit(1) from None
        except ClientError as exc:
            typer.echo(f"error: {exc.status} {exc.error_type}: {exc.message}", err=True)
            raise typer.Exit(1) from None
    if tail and result.log:
        typer.echo(result.log, err=True)
    typer.echo(json.dumps(result.payload, ensure_ascii=False))


@app.command()
def deploy(
    directory: Annotated[Path, typer.Argument(help="the function's bundle directory")],
    publish: Annotated[bool, typer.Option(help="also publish the next version")] = False,
) -> None:
    """Upload a bundle as the function's $LATEST (and, with --publish, a new version)."""
    r = _call(lambda c: c.deploy(directory, publish))
    typer.echo(f"{r['function']} version {r['version']} sha256 {r['sha256']}")


@app.command()
def publish(function: str) -> None:
    """Snapshot $LATEST as the next immutable version."""
    r = _call(lambda c: c.publish(function))
    typer.echo(f"{r['function']} version {r['version']} sha256 {r['sha256']}")


@app.command()
def versions(function: str) -> None:
    """List a function's versions with their sha256 and time."""
    rows = _call(lambda c: c.versions(function))
    _table(f"{function} versions", ["version", "sha256", "created"],
           [[v["version"], v["sha256"], _when(v["created_at"])] for v in rows])


@app.command()
def functions() -> None:
    """List functions with their versions, aliases and running instances."""
    rows = _call(lambda c: c.functions())
    _table("functions", ["name", "versions", "aliases", "instances"], [
        [f["name"], ", ".join(v["version"] for v in f["versions"]),
         ", ".join(f"{a['name']}->{a['version']}" for a in f["aliases"]),
         sum(len(r["instances"]) for r in f["runtime"])] for f in rows])


@alias_app.command("set")
def alias_set(
    function: str,
    alias: str,
    version: str,
    weight: Annotated[str | None, typer.Option(
        help="canary: VERSION=WEIGHT, e.g. 4=0.1 sends 10% of the alias's traffic to 4")] = None,
) -> None:
    """Point ALIAS of FUNCTION at VERSION (after one instance of it passed its init)."""
    canary = None
    if weight is not None:
        extra, _, share = weight.partition("=")
        try:
            canary = (extra, float(share))
        except ValueError:
            typer.echo("error: --weight expects VERSION=WEIGHT, e.g. 4=0.1", err=True)
            raise typer.Exit(2) from None
    a = _call(lambda c: c.set_alias(function, alias, version, canary))
    canary_text = ""
    if a["additional_version"]:
        canary_text = f" + {a['additional_version']} at {a['weight']:.0%}"
    typer.echo(f"{a['function']}:{a['name']} -> {a['version']}{canary_text}")


@alias_app.command("ls")
def alias_ls(function: str) -> None:
    """List a function's aliases."""
    rows = _call(lambda c: c.aliases(function))
    _table(f"{function} aliases", ["alias", "version", "canary", "weight"],
           [[a["name"], a["version"], a["additional_version"], a["weight"]] for a in rows])


IdempotencyKey = Annotated[str | None, typer.Option(
    "--idempotency-key", help="JSON field identifying a request: its retries are answered "
                              "once (joined while running, replayed for --ttl seconds)")]
Match = Annotated[list[str] | None, typer.Option(
    "--match", help="JSON field that must also be equal for a retry (repeat, or a,b)")]
Ttl = Annotated[float, typer.Option("--ttl", help="seconds a successful answer is replayed")]


def _idempotency(key: str | None, match: list[str] | None, ttl: float) -> dict[str, Any] | None:
    if key is None:
        if match:
            typer.echo("error: --match needs --idempotency-key", err=True)
            raise typer.Exit(2)
        return None
    fields = [f for m in match or [] for f in m.split(",") if f]
    return {"key": key, "match": fields, "ttl_s": ttl}


def _route_text(r: dict[str, Any]) -> str:
    text = f"{r['method']} {r['path']} -> {r['target']}"
    if r.get("idempotency"):
        text += f" (idempotency: {_idempotency_text(r['idempotency'])})"
    return text


def _idempotency_text(i: dict[str, Any] | None) -> str:
    if not i:
        return ""
    match = f" match {','.join(i['match'])}" if i["match"] else ""
    return f"key {i['key']}{match} ttl {i['ttl_s']:g}s"


@routes_app.command("add")
def routes_add(method: str, path: str, target: str, idempotency_key: IdempotencyKey = None,
               match: Match = None, ttl: Ttl = 300.0) -> None:
    """Route METHOD PATH to TARGET (function:alias or function:version)."""
    idem = _idempotency(idempotency_key, match, ttl)
    r = _call(lambda c: c.add_route(method.upper(), path, target, idem))
    typer.echo(_route_text(r))


@routes_app.command("set")
def routes_set(method: str, path: str, idempotency_key: IdempotencyKey = None,
               match: Match = None, ttl: Ttl = 300.0,
               no_idempotency: Annotated[bool, typer.Option(
                   "--no-idempotency", help="turn the route's idempotency off")] = False) -> None:
    """Change an existing route's idempotency option."""
    idem = _idempotency(idempotency_key, match, ttl)
    if (idem is None) != no_idempotency:
        typer.echo("error: give --idempotency-key (with --match, --ttl) or --no-idempotency",
                   err=True)
        raise typer.Exit(2)
    r = _call(lambda c: c.set_route_idempotency(method.upper(), path, idem))
    typer.echo(_route_text(r))


@routes_app.command("ls")
def routes_ls() -> None:
    """List the gateway's routes."""
    rows = _call(lambda c: c.routes())
    _table("routes", ["method", "path", "target", "idempotency"], [
        [r["method"], r["path"], r["target"], _idempotency_text(r.get("idempotency"))]
        for r in rows])


@routes_app.command("rm")
def routes_rm(method: str, path: str) -> None:
    """Remove a route."""
    _call(lambda c: c.remove_route(method.upper(), path))
    typer.echo(f"removed {method.upper()} {path}")


@models_app.command("push")
def models_push(
    name: str,
    file: Path,
    current: Annotated[bool, typer.Option(help="make it the current version")] = True,
) -> None:
    """Upload a model file (checksum verified) and make it current by atomic rename."""
    r = _call(lambda c: c.push_model(name, file, current))
    typer.echo(f"{r['name']} {r['sha256']} ({r['size']} bytes){' current' if current else ''}")


@models_app.command("ls")
def models_ls() -> None:
    """List models with their current version and load failures."""
    rows = _call(lambda c: c.models())
    _table("models", ["name", "current", "versions", "failed loads"], [
        [m["name"], (m["current"] or "")[:12], len(m["versions"]),
         sum(1 for v in m["versions"] if v["error"])] for m in rows])


@models_app.command("versions")
def models_versions(name: str) -> None:
    """List a model's versions; failed ones show the instance's load error."""
    m = _call(lambda c: c.model(name))
    _table(f"model {name}", ["sha256", "file", "size", "created", "current", "error"], [
        [v["sha256"], v["filename"], v["size"], _when(v["created_at"]),
         "*" if v["current"] else "", v["error"]] for v in m["versions"]])


@models_app.command("rollback")
def models_rollback(name: str, sha256: str) -> None:
    """Make an earlier version of a model current again."""
    m = _call(lambda c: c.rollback_model(name, sha256))
    typer.echo(f"{name} current -> {m['sha256']}")


# -- API keys and usage plans ---------------------------------------------------------

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(text: str, option: str) -> float:
    """`30d`, `1h`, `90m`, `45s`, `2w` -> seconds."""
    unit = DURATION_UNITS.get(text[-1:]) if text else None
    try:
        if unit is None:
            raise ValueError(text)
        return float(text[:-1]) * unit
    except ValueError:
        typer.echo(f"error: {option} expects a duration such as 30d, 12h, 90m or 45s, "
                   f"got {text!r}", err=True)
        raise typer.Exit(2) from None


def _print_secret(k: dict[str, Any], what: str) -> None:
    """The secret alone on stdout (so `KEY=$(mlambda keys create ...)` works); the rest
    on stderr."""
    typer.echo(f"{what} key {k['name']} ({k['id']}), role {k['role']}"
               f"{', plan ' + k['plan'] if k['plan'] else ''}"
               f"{', functions ' + ','.join(k['functions']) if k['functions'] else ''}"
               f"{', expires ' + _when(k['expires_at']) if k['expires_at'] else ''}. "
               "The secret below is shown once; keep it:", err=True)
    typer.echo(k["secret"])


@keys_app.command("create")
def keys_create(
    name: str,
    role: Annotated[str, typer.Option(help="invoke, admin or metrics")] = "invoke",
    plan: Annotated[str | None, typer.Option(help="a usage plan's name")] = None,
    functions: Annotated[str | None, typer.Option(
        help="the only functions it may invoke, comma-separated (default: all)")] = None,
    expires: Annotated[str | None, typer.Option(help="stops working after, e.g. 30d")] = None,
) -> None:
    """Create an API key and print its secret (once: only its hash is kept)."""
    scope = [f.strip() for f in functions.split(",") if f.strip()] if functions else None
    ttl = _seconds(expires, "--expires") if expires is not None else None
    k = _call(lambda c: c.create_key(name, role, plan=plan, functions=scope, expires_in_s=ttl))
    _print_secret(k, "created")


@keys_app.command("ls")
def keys_ls(as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False) -> None:
    """List the keys (never a secret): name, role, plan, scope, state, dates, last use."""
    rows = _call(lambda c: c.keys())
    if as_json:
        for k in rows:
            typer.echo(json.dumps(k))
        return
    _table("API keys", ["name", "id", "role", "plan", "scope", "state", "created", "expires",
                        "last used"], [
        [k["name"], k["id"], k["role"], k["plan"] or "-",
         ",".join(k["functions"]) if k["functions"] else "all",
         k["state"] + (f" (old secret until {_when(k['previous_secret_until'])})"
                       if k["previous_secret_until"] else ""),
         _when(k["created_at"]), _when(k["expires_at"]) if k["expires_at"] else "never",
         _when(k["last_used"]) if k["last_used"] else "never"] for k in rows])


@keys_app.command("disable")
def keys_disable(name: str) -> None:
    """Disable a key (403 within a second) until `keys enable`."""
    k = _call(lambda c: c.disable_key(name))
    typer.echo(f"{k['name']} {k['state']}")


@keys_app.command("enable")
def keys_enable(name: str) -> None:
    """Enable a disabled key."""
    k = _call(lambda c: c.enable_key(name))
    typer.echo(f"{k['name']} {k['state']}")


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke a key for good."""
    k = _call(lambda c: c.revoke_key(name))
    typer.echo(f"{k['name']} {k['state']}")


@keys_app.command("rotate")
def keys_rotate(
    name: str,
    grace: Annotated[str, typer.Option(help="how long the old secret keeps working")] = "0s",
) -> None:
    """Give a key a new secret (printed once); the old one works for --grace more."""
    grace_s = _seconds(grace, "--grace")
    k = _call(lambda c: c.rotate_key(name, grace_s))
    _print_secret(k, "rotated")


@keys_app.command("set-plan")
def keys_set_plan(
    name: str,
    plan: Annotated[str | None, typer.Argument(help="the plan; leave out to detach")] = None,
) -> None:
    """Attach a usage plan to a key (or, without PLAN, detach it)."""
    k = _call(lambda c: c.set_key_plan(name, plan))
    typer.echo(f"{k['name']} plan {k['plan'] or '-'}")


@keys_app.command("usage")
def keys_usage(
    name: Annotated[str | None, typer.Argument(help="one key (default: all)")] = None,
    since: Annotated[str, typer.Option(help="how far back, e.g. 7d")] = "7d",
) -> None:
    """Requests admitted and throttled per key per UTC day."""
    first = datetime.datetime.fromtimestamp(
        datetime.datetime.now(datetime.UTC).timestamp() - _seconds(since, "--since") + 1,
        datetime.UTC).strftime("%Y-%m-%d")
    rows = _call(lambda c: c.usage(name, first))
    _table(f"usage since {first} (UTC days)", ["day", "key", "requests", "throttled"],
           [[u["day"], u["name"] or u["key_id"], u["requests"], u["throttled"]] for u in rows])


@plans_app.command("create")
def plans_create(
    name: str,
    rate: Annotated[str, typer.Option(help="steady rate, e.g. 100/s or 600/min")],
    burst: Annotated[int, typer.Option(help="requests allowed at once (bucket size)")],
    quota: Annotated[str | None, typer.Option(help="e.g. 100000/day or 2000000/month")] = None,
    weight: Annotated[int, typer.Option(help="share of a contended queue")] = 1,
) -> None:
    """Create a usage plan; attach it with `keys create --plan` or `keys set-plan`."""
    from mlambda.errors import InvalidParameter
    from mlambda.plans import parse_quota, parse_rate

    try:
        per_s = parse_rate(rate)
        limit, period = parse_quota(quota) if quota is not None else (None, None)
    except InvalidParameter as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    p = _call(lambda c: c.create_plan(name, per_s, burst, limit, period, weight))
    typer.echo(f"plan {p['name']}: {_plan_text(p)}")


def _plan_text(p: dict[str, Any]) -> str:
    quota = f"{p['quota']}/{p['period']}" if p["quota"] else "no quota"
    return f"{p['rate']:g}/s, burst {p['burst']}, {quota}, weight {p['weight']}"


@plans_app.command("ls")
def plans_ls() -> None:
    """List the usage plans and the keys on each."""
    rows = _call(lambda c: c.plans())
    _table("usage plans", ["name", "rate", "burst", "quota", "weight", "keys"], [
        [p["name"], f"{p['rate']:g}/s", p["burst"],
         f"{p['quota']}/{p['period']}" if p["quota"] else "-", p["weight"],
         ", ".join(p["keys"])] for p in rows])


@plans_app.command("rm")
def plans_rm(name: str) -> None:
    """Remove a usage plan that no key uses."""
    _call(lambda c: c.remove_plan(name))
    typer.echo(f"removed plan {name}")
@export_app.command("aws")
def export_aws(
    function: Annotated[str, typer.Argument(help="FUNCTION or FUNCTION:ALIAS (default: live)")],
    out: Annotated[Path, typer.Option(help="the SAM project's directory")],
    region: Annotated[str, typer.Option(help="AWS region to deploy to")] = "us-east-1",
    vpc_subnets: Annotated[list[str] | None, typer.Option(
        help="subnet ids for the function and the volume (repeat, or comma-separated)")] = None,
    security_group: Annotated[str | None, typer.Option(
        help="security group id for the function and the volume")] = None,
    packages_on_efs: Annotated[bool, typer.Option(
        help="lay the Python packages out for the volume instead of a layer")] = False,
    runtime: Annotated[str, typer.Option(help="Lambda runtime")] = "python3.12",
    dry_run: Annotated[bool, typer.Option(
        help="print what would be created and the monthly cost; write nothing")] = False,
    requests_per_month: Annotated[int, typer.Option(help="for the cost estimate")] = 220_000,
    duration_ms: Annotated[float, typer.Option(help="for the cost estimate")] = 500.0,
) -> None:
    """Write a SAM project (API Gateway + Lambda + EFS + CloudWatch) for a function's
    aliased version, with its code unchanged, ready for `sam deploy`."""
    from mlambda.export import package, project, sam

    name, _, alias = function.partition(":")
    subnets = tuple(s for arg in vpc_subnets or [] for s in arg.split(",") if s)
    settings = project.Settings(
        out=out, packages_on_efs=packages_on_efs, requests_per_month=requests_per_month,
        duration_ms=duration_ms,
        options=sam.Options(runtime=runtime, region=region, subnets=subnets,
                            security_group=security_group))
    problems = settings.options.problems()
    if problems:
        typer.echo("error: " + "; ".join(problems), err=True)
        raise typer.Exit(2)
    try:
        source = _call(lambda c: project.fetch(c, name, alias or "live"))
        if dry_run:
            project.dry_run(source, settings, typer.echo)
            return
        result = project.export(source, settings, typer.echo)
    except (project.ExportError, package.PackageError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    mb = 1024 * 1024
    where = "on the volume" if packages_on_efs else "in the layer"
    typer.echo(f"wrote {out}/ in {result.seconds:.1f} s: code {result.code_bytes / mb:.1f} MB, "
               f"packages {result.packages_bytes / mb:.1f} MB {where}; unzipped "
               f"{(result.code_bytes + (0 if packages_on_efs else result.packages_bytes)) / mb:.1f}"
               f" MB of Lambda's 250 MB")
    typer.echo(f"next: cd {out} && sam deploy (see README.md)")


def _optional_key(role: str) -> str | None:
    env = os.environ.get(f"MLAMBDA_{role.upper()}_KEY")
    if env:
        return env
    try:
        return (Settings.load().data / f"{role}.key").read_text().strip()
    except FileNotFoundError:
        return None


@app.command()
def loadtest(
    target: Annotated[list[str], typer.Argument(
        help="a route (POST /inference) or a function through the Invoke API (FUNC[:ALIAS])")],
    scenario: Annotated[str, typer.Option(help="steady, burst, ramp or all")] = "steady",
    concurrency: Annotated[int, typer.Option(help="connections (steady, ramp's top)")] = 1000,
    duration: Annotated[str, typer.Option(help="measured time, e.g. 60s or 2m")] = "60s",
    warmup: Annotated[str, typer.Option(help="steady: time before measuring")] = "5s",
    burst: Annotated[int, typer.Option(help="requests sent at once (burst)")] = 1000,
    from_zero: Annotated[bool, typer.Option(
        "--from-zero", help="burst: scale the function to zero first (admin API) instead of "
                            "waiting for its idle timeout")] = False,
    zero_timeout: Annotated[str, typer.Option(help="burst: longest wait for zero")] = "15m",
    url: Annotated[str | None, typer.Option(
        help="a remote mlambda or any HTTP endpoint (default MLAMBDA_URL)")] = None,
    key: Annotated[str | None, typer.Option(
        help="x-api-key to send (default MLAMBDA_INVOKE_KEY or the data dir's invoke.key)")]
        = None,
    payload: Annotated[str | None, typer.Option(
        help="JSON body template (or @file); MLAMBDA_ID in it is replaced by a unique id")]
        = None,
    images: Annotated[Path | None, typer.Option(
        help="E.SUN bodies from this folder of images (default for POST /inference: "
             "tests/data/handwriting)")] = None,
    generator: Annotated[str, typer.Option(help="auto (wrk if installed), wrk or native")]
        = "auto",
    timeout: Annotated[str, typer.Option(help="a request's timeout")] = "10s",
    p99_ms: Annotated[float, typer.Option(help="the p99 bound")] = 1000.0,
    burst_s: Annotated[float, typer.Option(help="the burst bound")] = 5.0,
    need_concurrency: Annotated[int, typer.Option(help="the concurrency bound")] = 1000,
    out: Annotated[Path | None, typer.Option(help="report folder")] = None,
) -> None:
    """Check the spec's requirements on a deployment: >= 1000 concurrent requests, p99 <
    1000 ms at steady load, a burst from zero answered within 5 s. Prints a verdict per
    requirement and writes a report folder (PNGs and figures.json); exits 1 if one fails."""
    from mlambda.loadtest import bodies as b
    from mlambda.loadtest import report, scenarios
    from mlambda.loadtest.figures import Bounds
    from mlambda.loadtest.target import parse_target

    if scenario not in scenarios.SCENARIOS:
        typer.echo(f"error: --scenario: expected one of {scenarios.SCENARIOS}", err=True)
        raise typer.Exit(2)
    if generator not in ("auto", "wrk", "native"):
        typer.echo("error: --generator: expected auto, wrk or native", err=True)
        raise typer.Exit(2)
    base = url or os.environ.get("MLAMBDA_URL", "http://127.0.0.1:8080")
    try:
        parsed = parse_target(" ".join(target), base)
        seconds = {n: _duration(n, v) for n, v in (("duration", duration), ("warmup", warmup),
                                                   ("zero-timeout", zero_timeout),
                                                   ("timeout", timeout))}
        if images is not None or (payload is None and parsed.path == b.ESUN_PATH):
            bodies = b.esun_bodies(images or b.default_images())
        else:
            text = payload or "{}"
            bodies = b.template_bodies(Path(text[1:]).read_text() if text.startswith("@")
                                       else text)
    except (ValueError, OSError, InvalidParameter) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    admin_key = _optional_key("admin")
    admin = Client(base, admin_key) if admin_key else None
    plan = scenarios.Plan(
        parsed, key if key is not None else _optional_key("invoke"), bodies,
        concurrency=concurrency, duration_s=seconds["duration"], warmup_s=seconds["warmup"],
        burst=burst, from_zero=from_zero, zero_timeout_s=seconds["zero-timeout"],
        timeout_s=seconds["timeout"], generator=generator,
        bounds=Bounds(need_concurrency, p99_ms, burst_s), admin=admin,
        say=lambda line: typer.echo(line, err=True))
    try:
        result = scenarios.run(plan, scenario)
    except (RuntimeError, ClientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if admin is not None:
            admin.close()
    folder = out or Path(f"loadtest-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    document = {"target": parsed.label, "url": parsed.url, "scenario": scenario,
                "phases": result.phases, "notes": result.notes,
                "verdicts": [v.__dict__ for v in result.verdicts], "passed": result.passed}
    report.write(folder, document)
    for fig in result.phases:
        lat = fig["latency_ms"]
        typer.echo(f"{fig['phase']}: {fig['answers']:,} answers ({fig['requests_per_s']:,.0f}/s), "
                   f"{fig['wrong']} wrong, errors {fig['errors'] or 0}; latency p50 "
                   f"{lat.get('p50', float('nan')):.1f} ms, p99 {lat.get('p99', float('nan')):.1f}"
                   f" ms, max {lat.get('max', float('nan')):.1f} ms; load generator "
                   f"{fig['generator']} {fig['generator_cpu_cores']:.2f} cores")
    for note in result.notes:
        typer.echo(note)
    for v in result.verdicts:
        typer.echo(v.line())
    typer.echo(f"report: {folder}/")
    if not result.passed:
        raise typer.Exit(1)


def _duration(name: str, text: str) -> float:
    """'60s', '2m', '500ms' or a bare number of seconds."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, factor in units:
        if text.endswith(suffix) and text[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(text[:-len(suffix)]) * factor
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise ValueError(f"--{name}: expected a duration such as 60s, 2m or 500ms, got {text!r}")


@app.command()
def logs(
    function: Annotated[str, typer.Argument(help="the function whose logs to read")],
    since: Annotated[str, typer.Option(help="how far back: 10m, 2h, 30d")] = "10m",
    filter: Annotated[str | None, typer.Option(
        "--filter", help="only entries whose text contains this phrase")] = None,
    request_id: Annotated[str | None, typer.Option(help="one invocation's log")] = None,
    version: Annotated[str | None, typer.Option(help="only this version's invocations")] = None,
    limit: Annotated[int, typer.Option(help="at most this many entries (newest)")] = 100,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="keep printing new entries as they come (Ctrl-C stops)")] = False,
) -> None:
    """Print a function's invocation logs (START, output, END, REPORT) and the platform's
    events about it, oldest first."""
    def show(entry: dict[str, Any]) -> None:
        stamp = datetime.datetime.fromtimestamp(entry["ts"], datetime.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        prefix = stamp if entry["kind"] == "invocation" else f"{stamp} [{entry['kind']}]"
        for line in entry["message"].rstrip("\n").split("\n"):
            typer.echo(f"{prefix} {line}")

    if not follow:
        page = _call(lambda c: c.logs(function, since=since, filter=filter,
                                      request_id=request_id, version=version, limit=limit))
        for entry in page["entries"]:
            show(entry)
        return
    with _client() as c:
        try:
            for entry in c.follow_logs(function, since=since, filter=filter,
                                       request_id=request_id, version=version):
                show(entry)
                sys.stdout.flush()
        except ClientError as exc:
            typer.echo(f"error: {exc.status} {exc.error_type}: {exc.message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            pass


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if value != int(value) else f"{int(value):,}"


@app.command()
def metrics(
    function: Annotated[str, typer.Argument(help="the function (or 'METHOD /path' with --route)")],
    since: Annotated[str, typer.Option(help="15m, 1h, 30d, seconds ago or ISO 8601")] = "1h",
    until: Annotated[str | None, typer.Option(help="as --since; default now")] = None,
    period: Annotated[int | None, typer.Option(help="10 or a multiple of 60 s")] = None,
    alias: Annotated[str | None, typer.Option(help="only this alias")] = None,
    version: Annotated[str | None, typer.Option(help="only this version")] = None,
    route: Annotated[bool, typer.Option(help="FUNCTION is a gateway route")] = False,
    rows: Annotated[int, typer.Option(help="most recent periods shown")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """A function's metrics over a range: a summary, then one row per period."""
    r = _call(lambda c: c.metrics(None if route else function, alias=alias, version=version,
                                  route=function if route else None, since=since, until=until,
                                  period=period))
    if as_json:
        typer.echo(json.dumps(r))
        return
    what = r["route"] or ":".join(x for x in (r["function"], r["alias"] or r["version"]) if x)
    s = r["summary"]
    if route:
        columns = ["Requests", "LatencyP50", "LatencyP99", "LatencyMax"]
        by = s["breakdown"]["Requests"]
        detail = ", ".join(f"{k} {_num(v)}" for k, v in sorted(by.items())) or "none"
        typer.echo(f"{what}: {_num(s['Requests'])} requests ({detail}), latency p50 "
                   f"{_num(s['LatencyP50'])} ms, p99 {_num(s['LatencyP99'])} ms")
    else:
        columns = ["Invocations", "Errors", "Throttles", "ColdStarts", "DurationP50",
                   "DurationP99", "ConcurrentExecutions", "Instances", "BatchSizeAvg"]
        errors = ", ".join(f"{k} {_num(v)}" for k, v in s["breakdown"]["Errors"].items())
        throttles = ", ".join(f"{k} {_num(v)}" for k, v in s["breakdown"]["Throttles"].items())
        typer.echo(
            f"{what}: {_num(s['Invocations'])} invocations, {_num(s['Errors'])} errors"
            f"{f' ({errors})' if errors else ''}, {_num(s['Throttles'])} throttles"
            f"{f' ({throttles})' if throttles else ''}, {_num(s['ColdStarts'])} cold starts; "
            f"duration p50 {_num(s['DurationP50'])} ms, p99 {_num(s['DurationP99'])} ms, "
            f"max {_num(s['DurationMax'])} ms; peak concurrency "
            f"{_num(s['ConcurrentExecutions'])}; {s['BilledGBSeconds']:.3f} GB-s billed")
    series = r["series"]
    stamps = [ts for ts, _ in series[columns[0]]]
    active = [i for i in range(len(stamps))
              if any(series[c][i][1] for c in columns)][-rows:]
    _table(f"per {r['period']} s (periods with activity, newest {rows})", ["time", *columns],
           [[_when(stamps[i]), *(_num(series[c][i][1]) for c in columns)] for i in active])


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


@app.command()
def cost(
    function: Annotated[str | None, typer.Argument(help="one function; default: all")] = None,
    since: Annotated[str, typer.Option(help="the measured range: 1h, 7d, 30d...")] = "30d",
    scenario: Annotated[str | None, typer.Option(
        help='imagined traffic instead, e.g. "10000/day 0.5s 8GB 22days" (+ peak=N)')] = None,
    sheet: Annotated[str | None, typer.Option(help="a price sheet of the price file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """What the traffic costs on AWS Lambda + API Gateway, next to an always-on server
    sized for its peak and to this machine."""
    if scenario is not None:
        r = _call(lambda c: c.cost_scenario(scenario, sheet))
        heading = f"scenario {scenario!r}, a month"
    else:
        r = _call(lambda c: c.cost(function, since, sheet))
        heading = f"{function or 'all functions'}, last {since} ({r['hours']:.1f} h)"
    if as_json:
        typer.echo(json.dumps(r))
        return
    aws, u = r["aws"], r["usage"]
    typer.echo(f"{heading}; prices: {r['sheet']['name']} ({r['sheet']['date']})")
    typer.echo(f"  usage: {u['requests']:,.0f} requests, {u['gb_seconds']:,.6g} GB-s, "
               f"peak {u['peak_concurrency']:g} concurrent")
    typer.echo(f"  AWS Lambda + API Gateway: {_usd(aws['lambda_compute_usd'])} compute + "
               f"{_usd(aws['lambda_requests_usd'])} requests + {_usd(aws['api_usd'])} API = "
               f"{_usd(aws['total_usd'])} ({_usd(aws['monthly_usd'])} a month at this rate)")
    server = aws["server"]
    if server is not None:
        count = f"{server['count']} x " if server["count"] > 1 else ""
        saving = aws["saving_vs_server"]
        typer.echo(f"  always-on server ({count}{server['name']}, {server['vcpus']} vCPU, "
                   f"{server['memory_gb']:g} GB): {_usd(server['total_usd'])} "
                   f"({_usd(server['monthly_usd'])} a month)"
                   + (f"; Lambda saves {saving:.1%}" if saving is not None else ""))
    m = r["this_machine"]
    typer.echo(f"  this machine ({m['cpus']} cores, {m['memory_gb']:g} GB, priced as "
               f"{m['priced_as']}): {_usd(m['total_usd'])} ({_usd(m['monthly_usd'])} a month)")
    for f in r.get("functions", []):
        typer.echo(f"    {f['function']}: {f['invocations']:,.0f} invocations, "
                   f"{f['gb_seconds']:,.6g} GB-s at {f['memory_mb']} MB, peak "
                   f"{f['peak_concurrency']:g}, {_usd(f['total_usd'])}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
