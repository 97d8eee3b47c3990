"""The `mlambda` command. `up` runs the platform; every other command is a client of its
HTTP API (reads MLAMBDA_URL and MLAMBDA_ADMIN_KEY, or the data directory's key files)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer

from mlambda.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Serverless ML inference on machines you own.")


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    data: Annotated[Path | None, typer.Option(help="data directory (MLAMBDA_DATA)")] = None,
    seed: Annotated[Path | None, typer.Option(help="seed file of functions and routes")] = None,
) -> None:
    """Start the platform in the foreground; ready when GET /healthz answers 200."""
    from mlambda.server import run

    run(Settings.load(host=host, port=port, data=data, seed=seed))


def _url() -> str:
    return os.environ.get("MLAMBDA_URL", "http://127.0.0.1:8080").rstrip("/")


def _key(role: str) -> str:
    env = os.environ.get(f"MLAMBDA_{role.upper()}_KEY")
    if env:
        return env
    path = Settings.load().data / f"{role}.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        typer.echo(f"no {role} key: set MLAMBDA_{role.upper()}_KEY or run from the directory "
                   f"whose {path} exists", err=True)
        raise typer.Exit(2) from None


@app.command()
def invoke(
    function: Annotated[str, typer.Argument(help="name, name:alias or name:version")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON event, or @file")] = "{}",
    tail: Annotated[bool, typer.Option(help="print the invocation's log")] = False,
) -> None:
    """Invoke a function through the Lambda Invoke API and print its result."""
    import base64

    body = Path(payload[1:]).read_bytes() if payload.startswith("@") else payload.encode()
    headers = {"x-api-key": _key("invoke") if "MLAMBDA_INVOKE_KEY" in os.environ
               else _key("admin")}
    if tail:
        headers["X-Amz-Log-Type"] = "Tail"
    r = httpx.post(f"{_url()}/2015-03-31/functions/{function}/invocations", content=body,
                   headers=headers, timeout=930)
    if tail and "x-amz-log-result" in r.headers:
        typer.echo(base64.b64decode(r.headers["x-amz-log-result"]).decode(), err=True)
    typer.echo(r.text)
    if r.status_code >= 300 or "x-amz-function-error" in r.headers:
        raise typer.Exit(1)


@app.command()
def functions() -> None:
    """List functions with their versions, aliases and instances."""
    r = httpx.get(f"{_url()}/admin/v1/functions", headers={"x-api-key": _key("admin")})
    typer.echo(json.dumps(r.json(), indent=2, ensure_ascii=False))
    if r.status_code >= 300:
        raise typer.Exit(1)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
