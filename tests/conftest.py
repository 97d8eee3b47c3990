"""Fixtures: a real `mlambda up` process on a free loopback port, with its own data dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_SEED = ROOT / "tests" / "functions" / "seed.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    data: Path
    log_path: Path
    admin_key: str = ""
    invoke_key: str = ""
    descendants: set[int] = field(default_factory=set)

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"x-api-key": key if key is not None else self.invoke_key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def runtime(self, function: str, version: str = "1") -> dict[str, Any]:
        """The runtime state of one version (not running: no instances, no template)."""
        with self.admin() as c:
            r = c.get(f"/admin/v1/functions/{function}")
            r.raise_for_status()
            for status in r.json()["runtime"]:
                if status["version"] == version:
                    return dict(status)
        return {"version": version, "queued": 0, "template": False, "failure": None,
                "instances": []}

    def instances(self, function: str, version: str = "1") -> list[dict[str, Any]]:
        return list(self.runtime(function, version)["instances"])

    def remember_children(self) -> set[int]:
        """Record every process below the server, to check later that none outlives it."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return self.descendants
        self.descendants |= {k.pid for k in kids}
        return self.descendants

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


DATA_ROOTS: list[Path] = []


def data_dir() -> Path:
    """A fresh data directory outside pytest's temporary tree: a new pytest session (of
    anyone on the machine) resets that tree's modes to 0700, which would cut the
    sandboxed instances of a running server off from its bundles."""
    root = Path(tempfile.mkdtemp(prefix="mlambda-test-"))
    DATA_ROOTS.append(root)
    return root / "data"


@pytest.fixture(scope="session", autouse=True)
def _remove_data_dirs() -> Iterator[None]:
    yield
    for root in DATA_ROOTS:
        shutil.rmtree(root, ignore_errors=True)


def start_server(tmp: Path, seed: Path = TEST_SEED, env: dict[str, str] | None = None,
                 data: Path | None = None, args: tuple[str, ...] = (),
                 ready_s: float = 30) -> Server:
    port = free_port()
    data = data or data_dir()
    log_path = tmp / f"server-{port}.log"
    full_env = {**os.environ, "MLAMBDA_LOG_LEVEL": "warning", **(env or {})}
    with open(log_path, "a") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlambda.cli", "up", "--port", str(port), "--data",
             str(data), "--seed", str(seed), *args],
            stdout=log_file, stderr=subprocess.STDOUT, env=full_env, text=True, cwd=tmp,
        )
    scheme = "https" if "MLAMBDA_TLS_CERT" in full_env or "--tls-cert" in args else "http"
    server = Server(proc, f"{scheme}://127.0.0.1:{port}", data, log_path)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:  # readiness only: the TLS test checks the certificate itself
            return httpx.get(f"{server.url}/healthz", timeout=1,
                             verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, ready_s, "the server to answer /healthz")
    server.admin_key = (data / "admin.key").read_text().strip()
    server.invoke_key = (data / "invoke.key").read_text().strip()
    return server


@pytest.fixture()
def scratch() -> Iterator[Path]:
    """A directory function code may write to: functions run sandboxed, as a user of
    their own that can write only below /tmp."""
    path = Path(tempfile.mkdtemp(prefix="mlambda-scratch-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()
    assert_all_gone(s)


def assert_all_gone(server: Server) -> None:
    def gone() -> bool:
        return not [p for p in server.descendants if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    wait_for(gone, 10, f"processes {server.descendants} to exit")
