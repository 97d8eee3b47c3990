"""API keys and usage plans against a real server: the lifecycle through the CLI and the
SDK, scope, expiry, roles, rate limits and quotas, a data directory from before keys had
plans, and quota counts that survive kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlambda.cli import app
from mlambda.client import Client, ClientError
from tests.conftest import Server, assert_all_gone, data_dir, start_server, wait_for

INVOKE = "/2015-03-31/functions/{}/invocations"


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    return subprocess.run([sys.executable, "-m", "mlambda.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def ok(server: Server, *args: str) -> str:
    r = cli(server, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def status(server: Server, secret: str, path: str = "/echo") -> int:
    with server.client(secret) as c:
        return c.post(path, json={"n": 1}).status_code


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["errorType"], body["errorMessage"]


@pytest.fixture(scope="module")
def sdk(server: Server) -> Iterator[Client]:
    with Client(server.url, server.admin_key) as c:
        yield c


def test_key_lifecycle_through_the_cli(server: Server) -> None:
    secret = ok(server, "keys", "create", "cli-app", "--role", "invoke").strip()
    assert secret.startswith("mlk_") and status(server, secret) == 200

    listed = ok(server, "keys", "ls", "--json")
    rows = {k["name"]: k for k in map(json.loads, listed.splitlines())}
    assert rows["cli-app"]["role"] == "invoke" and rows["cli-app"]["state"] == "active"
    assert set(rows["cli-app"]) >= {"plan", "functions", "created_at", "expires_at"}
    assert rows["cli-app"]["last_used"] > rows["cli-app"]["created_at"]  # from memory, at once
    table = ok(server, "keys", "ls")
    assert "cli-app" in table and "first admin key" in table and "never" in table
    for shown in (listed, table):  # never a secret, nor its hash
        for s in (secret, server.admin_key, server.invoke_key):
            assert s not in shown and hashlib.sha256(s.encode()).hexdigest() not in shown

    assert "cli-app disabled" in ok(server, "keys", "disable", "cli-app")
    wait_for(lambda: status(server, secret) == 403, 1.0, "403 within a second of disable")
    with server.client(secret) as c:
        assert error(c.post("/echo", json={})) == (403, "ForbiddenException",
                                                   "API key cli-app is disabled")
    ok(server, "keys", "enable", "cli-app")
    wait_for(lambda: status(server, secret) == 200, 1.0, "200 within a second of enable")

    new = ok(server, "keys", "rotate", "cli-app", "--grace", "2s").strip()
    assert new != secret and status(server, new) == 200 and status(server, secret) == 200
    wait_for(lambda: status(server, secret) == 403, 5, "the old secret to stop after grace")
    assert status(server, new) == 200
    with server.client(secret) as c:
        assert "was rotated" in c.post("/echo", json={}).json()["errorMessage"]

    assert "cli-app revoked" in ok(server, "keys", "revoke", "cli-app")
    wait_for(lambda: status(server, new) == 403, 1.0, "403 within a second of revoke")
    usage = ok(server, "keys", "usage", "cli-app", "--since", "1d")
    assert "cli-app" in usage


def test_key_lifecycle_through_the_sdk(server: Server, sdk: Client) -> None:
    created = sdk.create_key("sdk-app", "invoke")
    secret = created["secret"]
    assert status(server, secret) == 200
    assert "secret" not in sdk.key("sdk-app") and "secret" not in sdk.keys()[-1]
    assert sdk.disable_key("sdk-app")["state"] == "disabled"
    wait_for(lambda: status(server, secret) == 403, 1.0, "403 within a second of disable")
    sdk.enable_key(created["id"])  # by id too
    wait_for(lambda: status(server, secret) == 200, 1.0, "200 within a second of enable")
    rotated = sdk.rotate_key("sdk-app", grace_s=60)
    assert rotated["previous_secret_until"] is not None
    assert status(server, secret) == 200 and status(server, rotated["secret"]) == 200
    sdk.rotate_key("sdk-app")  # no grace: both earlier secrets stop at once
    assert status(server, secret) == 403 and status(server, rotated["secret"]) == 403
    assert sdk.revoke_key("sdk-app")["state"] == "revoked"
    with pytest.raises(ClientError) as refused:
        sdk.enable_key("sdk-app")
    assert refused.value.status == 409 and "revoked" in refused.value.message
    with pytest.raises(ClientError) as refused:
        sdk.create_key("bad name", "invoke")
    assert refused.value.status == 400 and "name" in refused.value.message
    with pytest.raises(ClientError) as refused:
        sdk.create_key("x", "root")
    assert refused.value.status == 400 and "role" in refused.value.message


def test_the_last_admin_key_cannot_be_revoked_or_disabled(server: Server, sdk: Client) -> None:
    for act in (sdk.revoke_key, sdk.disable_key):
        with pytest.raises(ClientError) as refused:
            act("first admin key")
        assert refused.value.status == 409 and "last usable admin key" in refused.value.message
    assert sdk.keys()[0]["state"] == "active"


def test_a_scoped_key_gets_403_for_other_functions(server: Server, sdk: Client) -> None:
    secret = sdk.create_key("only-echo", "invoke", functions=["echo"])["secret"]
    with server.client(secret) as c:
        assert c.post("/echo", json={"a": 1}).json() == {"a": 1}
        assert c.post(INVOKE.format("echo"), json={"a": 2}).json() == {"a": 2}
        for r in (c.post("/probe", json={}), c.post(INVOKE.format("probe:live"), json={})):
            assert error(r) == (403, "ForbiddenException",
                                "API key only-echo may not invoke probe: it may invoke echo")
    sdk.update_key("only-echo", functions=["echo", "probe"])
    wait_for(lambda: status(server, secret, "/probe") == 200, 1.0, "a widened scope")
    with pytest.raises(ClientError) as refused:
        sdk.update_key("only-echo", functions=["nosuch"])
    assert refused.value.status == 400 and "nosuch" in refused.value.message


def test_an_expired_key_gets_403(server: Server, sdk: Client) -> None:
    secret = sdk.create_key("short-lived", "invoke", expires_in_s=1.5)["secret"]
    assert status(server, secret) == 200
    wait_for(lambda: status(server, secret) == 403, 5, "expiry")
    with server.client(secret) as c:
        assert "API key short-lived expired at" in c.post("/echo", json={}).json()["errorMessage"]
    assert sdk.key("short-lived")["state"] == "expired"


def test_roles(server: Server, sdk: Client) -> None:
    metrics = sdk.create_key("scraper", "metrics")["secret"]
    with server.client(metrics) as c:
        assert error(c.post("/echo", json={}))[:2] == (403, "ForbiddenException")
        assert c.post(INVOKE.format("echo"), json={}).status_code == 403
        assert c.get("/admin/v1/keys").status_code == 403
    admin = sdk.create_key("second-admin", "admin")["secret"]
    with server.client(admin) as c:
        assert c.get("/admin/v1/keys").status_code == 200
        assert c.post("/echo", json={}).status_code == 200


def test_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(
        server: Server, sdk: Client) -> None:
    sdk.create_plan("trickle", rate=0.2, burst=2)
    secret = sdk.create_key("limited", "invoke", plan="trickle")["secret"]
    with server.client(secret) as c:
        first = c.post("/echo", json={})
        assert first.status_code == 200
        assert first.headers["ratelimit-limit"] == "2"
        assert first.headers["ratelimit-remaining"] == "1"
        assert 1 <= int(first.headers["ratelimit-reset"]) <= 5
        assert c.post(INVOKE.format("echo"), json={}).headers["ratelimit-remaining"] == "0"
        r = c.post("/echo", json={})
        assert error(r)[:2] == (429, "TooManyRequestsException")
        assert "over its rate" in r.json()["errorMessage"]
        assert 1 <= int(r.headers["retry-after"]) <= 5
        assert r.headers["ratelimit-remaining"] == "0"
        r = c.post(INVOKE.format("echo"), json={})
        assert r.status_code == 429 and r.json()["Reason"] == "CallerRateLimitExceeded"
        assert r.headers["x-amzn-errortype"] == "TooManyRequestsException"
        assert "retry-after" in r.headers and "ratelimit-limit" in r.headers
    with server.client() as c:  # a key without a plan: no headers, no limit
        assert "ratelimit-limit" not in c.post("/echo", json={}).headers
    sdk.set_key_plan("limited", None)
    wait_for(lambda: status(server, secret) == 200, 1.0, "the plan detached")
    with pytest.raises(ClientError) as refused:
        sdk.set_key_plan("limited", "nosuch")
    assert refused.value.status == 400 and "nosuch" in refused.value.message


def test_quota_answers_limit_exceeded(server: Server, sdk: Client) -> None:
    sdk.create_plan("four-a-day", rate=1000, burst=1000, quota=4, period="day")
    secret = sdk.create_key("quota-app", "invoke", plan="four-a-day")["secret"]
    with server.client(secret) as c:
        # every answer after the meter carries the headers, errors too, and counts
        bad = c.post("/echo", content=b"{not json")
        assert bad.status_code == 400 and bad.headers["ratelimit-remaining"] == "3"
        missing = c.post(INVOKE.format("nosuch"), json={})
        assert missing.status_code == 404 and missing.headers["ratelimit-remaining"] == "2"
        remaining = [c.post("/echo", json={}).headers["ratelimit-remaining"] for _ in range(2)]
        assert remaining == ["1", "0"]
        r = c.post("/echo", json={})
        assert error(r) == (429, "LimitExceededException",
                            "API key quota-app used its quota of 4 requests per day "
                            "(plan four-a-day)")
        assert r.headers["ratelimit-limit"] == "4" and int(r.headers["retry-after"]) > 0
        r = c.post(INVOKE.format("echo"), json={})
        assert r.status_code == 429 and r.json()["errorType"] == "LimitExceededException"
        assert r.json()["Reason"] == "QuotaExceeded"
    (today,) = sdk.usage("quota-app")
    assert (today["requests"], today["throttled"]) == (4, 2)
    with pytest.raises(ClientError) as refused:
        sdk.remove_plan("four-a-day")
    assert refused.value.status == 409 and "quota-app" in refused.value.message
    plans = {p["name"]: p for p in sdk.plans()}
    assert plans["four-a-day"]["keys"] == ["quota-app"] and plans["four-a-day"]["quota"] == 4


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/admin/v1/plans", {"name": "p", "rate": 1, "burst": 10**30}, "burst"),
    ("/admin/v1/plans", {"name": "p", "rate": 0, "burst": 1}, "rate"),
    ("/admin/v1/plans", {"name": "p", "rate": 1, "burst": 1, "quota": 5}, "period"),
    ("/admin/v1/plans", {"name": "p/../x", "rate": 1, "burst": 1}, "name"),
    ("/admin/v1/keys", {"name": "k", "role": "invoke", "expires_at": 1e300}, "expires_at"),
    ("/admin/v1/keys", {"name": "k", "role": "invoke", "expires_at": 1.0}, "expires_at"),
    ("/admin/v1/keys", {"name": "k", "role": "invoke", "functions": []}, "functions"),
    ("/admin/v1/keys", {"name": "k", "role": "invoke", "plan": 3}, "plan"),
])
def test_bad_input_is_a_400_naming_the_field(server: Server, path: str, body: dict[str, object],
                                             field: str) -> None:
    with server.admin() as c:
        status_code, kind, message = error(c.post(path, json=body))
    assert (status_code, kind) == (400, "InvalidParameterValueException")
    assert field in message


def test_plans_through_the_cli(server: Server) -> None:
    """The plan commands (the CLI's code in this process: the lifecycle test above runs
    it as a process)."""
    runner = CliRunner()
    env = {"MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}

    def run(*args: str, code: int = 0) -> str:
        r = runner.invoke(app, list(args), env=env)
        assert r.exit_code == code, (args, r.output)
        return r.output

    out = run("plans", "create", "cli-plan", "--rate", "600/min", "--burst", "20",
              "--quota", "5000/month", "--weight", "3")
    assert "10/s, burst 20, 5000/month, weight 3" in out
    secret = run("keys", "create", "planned", "--plan", "cli-plan").strip().splitlines()[-1]
    with server.client(secret) as c:
        assert c.post("/echo", json={}).headers["ratelimit-limit"] == "20"
    assert "planned" in run("plans", "ls")
    assert "planned plan -" in run("keys", "set-plan", "planned")
    assert "removed plan cli-plan" in run("plans", "rm", "cli-plan")
    assert "rate 'fast'" in run("plans", "create", "x", "--rate", "fast", "--burst", "1", code=2)
    assert "--expires expects a duration" in run("keys", "create", "y", "--expires", "soon",
                                                 code=2)


OLD_KEYS_TABLE = """CREATE TABLE keys (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)"""


def test_a_data_dir_from_before_plans_keeps_its_keys(tmp_path: Path) -> None:
    data = data_dir()  # outside pytest's tree: see tests/conftest.py data_dir
    data.mkdir()
    db = sqlite3.connect(data / "registry.db")
    db.execute(OLD_KEYS_TABLE)
    for role in ("admin", "invoke"):
        secret = f"mlk_old-{role}-secret"
        db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                   (f"k_{role}", f"first {role} key", role,
                    hashlib.sha256(secret.encode()).hexdigest(), time.time()))
        (data / f"{role}.key").write_text(secret + "\n")
    db.commit()
    db.close()
    server = start_server(tmp_path, data=data)
    try:
        assert server.admin_key == "mlk_old-admin-secret"
        assert status(server, server.invoke_key) == 200
        with Client(server.url, server.admin_key) as sdk:
            assert [k["name"] for k in sdk.keys()] == ["first admin key", "first invoke key"]
            # rotating a first-start key rewrites its key file, so the CLI keeps working
            new = sdk.rotate_key("first admin key")["secret"]
        assert (data / "admin.key").read_text().strip() == new
        assert (data / "admin.key").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
    assert_all_gone(server)


def test_kill_9_mid_traffic_keeps_the_quota_counts(tmp_path: Path) -> None:
    data = data_dir()  # outside pytest's tree: see tests/conftest.py data_dir
    server = start_server(tmp_path, data=data)
    with Client(server.url, server.admin_key) as sdk:
        sdk.create_plan("five", rate=1000, burst=1000, quota=5, period="day")
        sdk.create_plan("big", rate=10_000, burst=10_000, quota=1_000_000, period="month")
        five = sdk.create_key("five", "invoke", plan="five")["secret"]
        busy = sdk.create_key("busy", "invoke", plan="big")["secret"]
    assert [status(server, five) for _ in range(6)] == [200] * 5 + [429]

    answered: list[float] = []  # when each 200 came back
    stop = threading.Event()

    def traffic() -> None:
        with server.client(busy) as c:
            while not stop.is_set():
                try:
                    if c.post("/echo", json={}).status_code == 200:
                        answered.append(time.monotonic())
                except httpx.HTTPError:
                    return  # the server is gone

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: len(answered) >= 200 and answered[-1] - answered[0] > 1.5, 30,
                 "1.5 s of traffic")
        server.stop(signal.SIGKILL)
        killed = time.monotonic()
    finally:
        stop.set()
        thread.join(30)
    assert_all_gone(server)
    last_second = sum(1 for t in answered if t > killed - 1.0)

    again = start_server(tmp_path, data=data)
    try:
        with Client(again.url, again.admin_key) as sdk:
            (counted,) = [u["requests"] for u in sdk.usage("busy")]
        # at most the last second of counting is lost; nothing is counted twice
        assert len(answered) - last_second <= counted <= len(answered) + 1, \
            (counted, len(answered), last_second)
        with again.client(five) as c:  # the quota was not reset by the restart
            assert error(c.post("/echo", json={}))[:2] == (429, "LimitExceededException")
    finally:
        again.stop()
    assert_all_gone(again)
