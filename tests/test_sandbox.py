"""The sandbox's parts, run for real: the ACL entry that lets the sandbox group search a
directory, the environment a template starts with, entering the sandbox without root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlambda.runtime import sandbox
from mlambda.settings import Settings

GID = Settings().sandbox_uid
UID = GID + sandbox.UID_RANGE - 1  # the range's last uid: no template takes it in a test
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture()
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlambda-sandbox-test-"))  # 0700, root's
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_sandbox_user(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], user=UID, group=GID, extra_groups=[GID],
                         capture_output=True, text=True, timeout=30, check=True, cwd="/tmp")
    return dict(json.loads(out.stdout))


@root_only
def test_the_sandbox_group_may_search_but_not_list(private_dir: Path) -> None:
    (private_dir / "file").write_text("readable by name")
    sandbox.prepare(GID, private_dir / "data", sandbox.python_paths())
    assert sandbox.grant_traverse(private_dir, GID) is True
    assert sandbox.grant_traverse(private_dir, GID) is False  # once is enough
    assert oct(private_dir.stat().st_mode & 0o777) == "0o710"  # the ACL mask: x for the group
    got = run_as_sandbox_user(
        "import json, os, sys\n"
        f"d = {str(private_dir)!r}\n"
        "try:\n    os.listdir(d); listed = True\nexcept PermissionError:\n    listed = False\n"
        "print(json.dumps({'listed': listed, 'read': open(d + '/file').read(),\n"
        "                  'keys': os.access(d + '/data/registry.db', os.R_OK)}))\n")
    assert got == {"listed": False, "read": "readable by name", "keys": False}


@root_only
def test_prepare_locks_keys_and_registry_away(private_dir: Path) -> None:
    data = private_dir / "data"
    (data / "bundles" / "abc").mkdir(parents=True)
    (data / "bundles" / "abc" / "app.py").write_text("x = 1\n")
    (data / "bundles" / "abc" / "app.py").chmod(0o600)
    for name in ("admin.key", "registry.db", "registry.db-wal"):
        (data / name).write_text("secret")
        (data / name).chmod(0o644)
    sandbox.prepare(GID, data, [data])
    for name in ("admin.key", "registry.db", "registry.db-wal"):
        assert (data / name).stat().st_mode & 0o777 == 0o600
    assert (data / "bundles" / "abc" / "app.py").stat().st_mode & 0o777 == 0o644
    assert data.stat().st_gid == GID and data.stat().st_mode & 0o777 == 0o750


def test_a_template_starts_with_no_platform_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAMBDA_ADMIN_KEY", "secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = sandbox.spawn_env({"MLAMBDA_TEMPLATE_CONFIG": "{}"})
    assert env == {"PATH": "/usr/bin:/bin", "MLAMBDA_TEMPLATE_CONFIG": "{}",
                   **{k: os.environ[k] for k in sandbox.PASSED_ENV
                      if k in os.environ and k != "PATH"}}


def test_killing_root_or_everyone_is_refused() -> None:
    for uid in (0, -1):
        with pytest.raises(ValueError):
            sandbox.kill_user(uid)


@root_only
def test_without_root_the_limits_apply_but_the_user_stays() -> None:
    """What `mlambda up` does when not run as root: enter() cannot switch users; it sets
    every limit but RLIMIT_NPROC, which would count all of that user's processes."""
    got = run_as_sandbox_user(
        "import json, os, resource\n"
        "from mlambda.runtime import sandbox\n"
        "nproc = resource.getrlimit(resource.RLIMIT_NPROC)\n"
        "limits = sandbox.Limits(gid=None, uid_base=None, lease_dir='', max_open_files=64,\n"
        "                        max_processes=5, max_file_bytes=1 << 20)\n"
        "uid = sandbox.enter(limits, os.getppid(), '/tmp')\n"
        "print(json.dumps({'entered_as': uid, 'uid': os.getuid(), 'cwd': os.getcwd(),\n"
        "  'nofile': resource.getrlimit(resource.RLIMIT_NOFILE)[0],\n"
        "  'fsize': resource.getrlimit(resource.RLIMIT_FSIZE)[0],\n"
        "  'core': resource.getrlimit(resource.RLIMIT_CORE)[0],\n"
        "  'nproc_unchanged': resource.getrlimit(resource.RLIMIT_NPROC) == nproc,\n"
        "  'umask': os.umask(0)}))\n")
    assert got == {"entered_as": None, "uid": UID, "cwd": "/tmp", "nofile": 64,
                   "fsize": 1 << 20, "core": 0, "nproc_unchanged": True, "umask": 0o077}
