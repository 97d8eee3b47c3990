"""State survives restarts, a kill -9 included: functions, versions, aliases, routes,
models, keys; and the restarted server serves at once. The CLI drives it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import assert_all_gone, data_dir, start_server


def cli(server_url: str, key: str, *args: str) -> str:
    env = {**os.environ, "MLAMBDA_URL": server_url, "MLAMBDA_ADMIN_KEY": key}
    r = subprocess.run([sys.executable, "-m", "mlambda.cli", *args], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def test_kill_9_and_restart_keep_everything(tmp_path: Path) -> None:
    data = data_dir()
    server = start_server(tmp_path, data=data)
    fn = tmp_path / "hello"
    fn.mkdir()
    (fn / "function.toml").write_text('name = "hello"\nhandler = "app.handler"\n')
    (fn / "app.py").write_text("def handler(event, context):\n    return {'v': 1}\n")
    out = cli(server.url, server.admin_key, "deploy", str(fn), "--publish")
    assert "hello version 1" in out
    (fn / "app.py").write_text("def handler(event, context):\n    return {'v': 2}\n")
    assert "hello version 2" in cli(server.url, server.admin_key, "deploy", str(fn), "--publish")
    assert "hello:live -> 1" in cli(server.url, server.admin_key, "alias", "set", "hello",
                                    "live", "1", "--weight", "2=0.25")
    assert "POST /hello -> hello:live" in cli(server.url, server.admin_key, "routes", "add",
                                             "POST", "/hello", "hello:live")
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\x00weights" * 1000)
    pushed = cli(server.url, server.admin_key, "models", "push", "weights", str(model))
    sha = pushed.split()[1]
    versions = cli(server.url, server.admin_key, "versions", "hello")
    assert "$LATEST" in versions and "2" in versions
    with server.client() as c:
        assert c.post("/hello", json={}).status_code == 200

    server.stop(signal.SIGKILL)
    assert_all_gone(server)

    again = start_server(tmp_path, data=data)
    assert again.admin_key == server.admin_key  # the same keys, not new ones
    with again.client() as c:
        r = c.post("/hello", json={})
        assert r.status_code == 200 and r.json()["v"] in (1, 2)
    aliases = cli(again.url, again.admin_key, "alias", "ls", "hello")
    assert "live" in aliases and "0.25" in aliases
    assert "POST" in cli(again.url, again.admin_key, "routes", "ls")
    listed = cli(again.url, again.admin_key, "models", "versions", "weights")
    assert sha[:12] in listed and "*" in listed
    assert (data / "volume" / "models" / "weights" / "current").resolve().read_bytes() == \
        model.read_bytes()
    echo = cli(again.url, again.admin_key, "invoke", "echo:live", "--payload", '{"x": 1}')
    assert echo.strip() == '{"x": 1}'
    again.stop()
    assert_all_gone(again)
