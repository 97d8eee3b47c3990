"""The README's examples run: its curl calls answer what it says, its boto3 snippet works."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from mlambda.cli import app
from tests.conftest import ROOT, Server

README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_curl_examples(server: Server, tmp_path: Path) -> None:
    data = tmp_path / ".mlambda"
    data.mkdir()
    (data / "invoke.key").write_text(server.invoke_key)
    ran = 0
    for block in blocks("sh"):
        commands = re.findall(r"^(curl .*?(?:\\\n.*?)*)\n(?:# (.*))?", block, re.M)
        for command, expected in commands:
            command = command.replace("http://127.0.0.1:8080", server.url)
            command = command.replace(" tests/data/", f" {ROOT}/tests/data/")
            out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                                 text=True, timeout=30, check=True).stdout
            assert matches(json.loads(out), json.loads(expected)) if expected else json.loads(out)
            ran += 1
    assert ran >= 3


def matches(got: object, expected: object) -> bool:
    """Equal, where "…" in the README stands for any value (a timestamp, say)."""
    if expected == "…":
        return True
    if isinstance(expected, dict):
        return (isinstance(got, dict) and got.keys() == expected.keys()
                and all(matches(got[k], v) for k, v in expected.items()))
    return got == expected


def test_readme_key_and_plan_commands(server: Server) -> None:
    """Each `mlambda keys`/`mlambda plans` line of the README runs and succeeds, in order
    (the CLI's code in this process, for speed; test_keys.py runs it as a process)."""
    (block,) = [b for b in blocks("sh") if "mlambda keys create" in b]
    env = {"MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    runner = CliRunner()
    ran = []
    for line in block.splitlines():
        for command in line.split("#")[0].split(";"):
            args = shlex.split(command)
            if not args:
                continue
            assert args[0] == "mlambda" and args[1] in ("keys", "plans"), command
            r = runner.invoke(app, args[1:], env=env)
            assert r.exit_code == 0, (command, r.output)
            ran.append(args[1:3])
    assert ["keys", "rotate"] in ran and ["plans", "create"] in ran and len(ran) >= 12
    with server.admin() as c:
        keys = {k["name"]: k for k in c.get("/admin/v1/keys").json()}
    assert keys["branch-app"]["state"] == "revoked" and keys["branch-app"]["plan"] == "gold"
    assert keys["prometheus"]["role"] == "metrics"


def test_readme_boto3_snippet(server: Server) -> None:
    (snippet,) = [b for b in blocks("python") if "boto3" in b]
    code = snippet.replace("http://127.0.0.1:8080", server.url)
    scope: dict[str, object] = {"KEY": server.invoke_key}
    exec(compile(code, "README.md", "exec"), scope)
    r = scope["r"]
    assert isinstance(r, dict)
    assert r["StatusCode"] == 200 and r["ExecutedVersion"] == "1"
    assert "LogResult" in r and "FunctionError" not in r
    assert scope["payload"] == {"a": 1}
