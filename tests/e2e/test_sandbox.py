"""A function cannot reach the platform's secrets or state, nor hurt the machine: it runs
as a user of its own, with a clean environment and rlimits (mlambda runs as root here,
as in CI; the not-root case is the last test)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from mlambda.runtime.supervisor import MAX_UNCLAIMED_PER_USER
from mlambda.settings import Settings
from tests.conftest import Server, start_server, wait_for

MAX_PROCESSES = 24
MAX_FILE_MB = 4
SECRET = "gateway-secret-must-not-leak"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox switches users as root")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("sandbox"), env={
        "MLAMBDA_FN_MAX_PROCESSES": str(MAX_PROCESSES),
        "MLAMBDA_FN_MAX_FILE_MB": str(MAX_FILE_MB),
        "GATEWAY_ONLY_SECRET": SECRET,
    })
    yield s
    s.stop()


def call(server: Server, event: dict[str, Any]) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/escape", json=event)
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_every_escape_fails_inside_the_function(server: Server) -> None:
    with server.client() as c:
        assert c.post("/echo", json={"warm": 1}).status_code == 200
    other = server.instances("echo")[0]["pid"]
    got = call(server, {"do": "escape", "data": str(server.data), "gateway": server.proc.pid,
                        "other": other})
    base = Settings.load().sandbox_uid
    assert base < got["uid"] < base + 1000 and got["gid"] == base and got["groups"] == [base]
    for key in ("read_admin_key", "read_invoke_key", "read_registry", "gateway_environ",
                "fill_bundle", "fill_volume", "fill_data"):
        assert got[key] is not None and got[key].startswith("PermissionError"), (key, got[key])
    assert got["write_registry"].startswith("OperationalError"), got["write_registry"]
    assert got["signal_other_function"].startswith("PermissionError")
    assert got["setuid_root"].startswith("PermissionError")
    assert "File too large" in got["fill_tmp_past_limit"]
    bomb = got["fork_bomb"]
    assert bomb["error"] is not None and "Resource temporarily unavailable" in bomb["error"]
    assert 0 < bomb["forked"] < MAX_PROCESSES
    assert got["rlimits"] == {"RLIMIT_NOFILE": 1024, "RLIMIT_NPROC": MAX_PROCESSES,
                              "RLIMIT_CORE": 0, "RLIMIT_FSIZE": MAX_FILE_MB * 1024 * 1024}
    # its own environment only: no platform setting, no secret of the gateway's
    env = set(got["env"])
    assert "GATEWAY_ONLY_SECRET" not in env and "MLAMBDA_LOG_LEVEL" not in env
    assert {k for k in env if k.startswith("MLAMBDA_")} == {"MLAMBDA_VOLUME"}
    assert {"AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT", "HOME"} <= env
    # ... and the platform keeps serving, that function and the others
    assert "pid" in call(server, {"do": "ping"})
    with server.client() as c:
        assert c.post("/echo", json={"after": 1}).json() == {"after": 1}
    assert psutil.pid_exists(other)


def test_data_directory_modes(server: Server) -> None:
    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    base = Settings.load().sandbox_uid
    assert mode(server.data) == 0o750 and server.data.stat().st_gid == base
    for secret in ("admin.key", "invoke.key", "registry.db"):
        assert mode(server.data / secret) == 0o600 and (server.data / secret).stat().st_uid == 0
    bundle = next((server.data / "bundles").iterdir())
    assert mode(bundle) == 0o755
    files = [f for f in bundle.rglob("*") if f.is_file()]
    assert files and all(mode(f) == 0o644 for f in files)
    # compiled when stored: instances cannot write __pycache__ there themselves
    assert list(bundle.glob("__pycache__/*.pyc"))


def test_what_an_instance_leaves_running_dies_with_it(server: Server) -> None:
    orphan = call(server, {"do": "orphan"})["orphan"]
    assert psutil.Process(orphan).uids().real >= Settings.load().sandbox_uid
    with server.client() as c:  # times out: the instance is killed, its orphan with it
        assert c.post("/escape", json={"do": "hang"}).status_code == 504
    wait_for(lambda: not psutil.pid_exists(orphan) or
             psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE, 10,
             "the orphan to be killed")
    assert "pid" in call(server, {"do": "ping"})


def test_a_function_cannot_tie_up_the_runtime_socket(server: Server) -> None:
    got = call(server, {"do": "flood", "count": MAX_UNCLAIMED_PER_USER + 50})
    assert got["opened"] >= MAX_UNCLAIMED_PER_USER + 50  # it can reach the socket ...
    assert got["refused"] >= 50  # ... but past its share the gateway hangs up at once
    with server.client() as c:
        assert c.post("/echo", json={"after": "flood"}).json() == {"after": "flood"}


def test_stopping_the_platform_leaves_no_sandbox_process(tmp_path: Path) -> None:
    s = start_server(tmp_path)
    orphan = call(s, {"do": "orphan"})["orphan"]
    uid = psutil.Process(orphan).uids().real
    s.stop()
    wait_for(lambda: not [p for p in psutil.process_iter(["uids"])
                          if p.info["uids"] and p.info["uids"].real == uid], 10,
             f"every process of uid {uid} to exit")
