"""A hostile function: each attempt to reach the platform's secrets or state, or to hurt
the machine, and the error it got (None: the attempt worked)."""

import glob
import os
import resource
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any

FORK_CAP = 2000  # never more children than this, sandbox or not


def attempt(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def read(path: str) -> None:
    with open(path, "rb") as f:
        f.read()


def write_registry(path: str) -> None:
    db = sqlite3.connect(path, timeout=0.5)
    try:
        db.execute("CREATE TABLE pwned (x)")
        db.commit()
    finally:
        db.close()


def fill(path: str, mb: int) -> None:
    block = b"\0" * (1 << 20)
    try:
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(block)
                f.flush()
    finally:
        if os.path.exists(path):
            os.unlink(path)


def fork_bomb() -> dict[str, Any]:
    """Fork children that wait on a pipe until fork fails (or FORK_CAP), then free them."""
    r, w = os.pipe()
    children: list[int] = []
    error = None
    try:
        while len(children) < FORK_CAP:
            try:
                pid = os.fork()
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            if pid == 0:
                os.close(w)
                os.read(r, 1)  # returns at EOF, when the parent closes w
                os._exit(0)
            children.append(pid)
    finally:
        os.close(w)
        os.close(r)
        for pid in children:
            os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


def leave_orphan() -> int:
    """A grandchild in a new session that would sleep for an hour: it must not outlive
    the instance."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os.setsid()
            os.write(w, str(os.getpid()).encode())
            time.sleep(3600)
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(w)
    grandchild = int(os.read(r, 32))
    os.close(r)
    return grandchild


def flood_runtime_socket(count: int) -> dict[str, int]:
    """Open `count` connections to each runtime socket it can reach and say nothing: how
    many the gateway closed at once."""
    opened = refused = 0
    for path in glob.glob("/tmp/mlambda-*/runtime.sock"):
        conns = []
        try:
            for _ in range(count):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                conns.append(s)
        except OSError:
            for s in conns:
                s.close()
            continue  # another server's socket, not ours to reach
        opened += len(conns)
        time.sleep(0.5)
        for s in conns:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except BlockingIOError:
                pass
            s.close()
    return {"opened": opened, "refused": refused}


def handler(event: Any, context: Any) -> Any:
    do = event.get("do")
    if do == "flood":
        return flood_runtime_socket(event["count"])
    if do == "orphan":
        return {"orphan": leave_orphan()}
    if do == "hang":
        time.sleep(3600)
    if do != "escape":
        return {"pid": os.getpid()}
    data, bundle, volume = event["data"], os.getcwd(), os.environ["MLAMBDA_VOLUME"]
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "env": sorted(os.environ),
        "rlimits": {
            name: resource.getrlimit(getattr(resource, name))[0]
            for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_FSIZE")
        },
        "read_admin_key": attempt(lambda: read(os.path.join(data, "admin.key"))),
        "read_invoke_key": attempt(lambda: read(os.path.join(data, "invoke.key"))),
        "read_registry": attempt(lambda: read(os.path.join(data, "registry.db"))),
        "write_registry": attempt(lambda: write_registry(os.path.join(data, "registry.db"))),
        "gateway_environ": attempt(lambda: read(f"/proc/{event['gateway']}/environ")),
        "signal_other_function": attempt(lambda: os.kill(event["other"], signal.SIGKILL)),
        "setuid_root": attempt(lambda: os.setuid(0)),
        "fill_bundle": attempt(lambda: fill(os.path.join(bundle, "junk"), 1)),
        "fill_volume": attempt(lambda: fill(os.path.join(volume, "junk"), 1)),
        "fill_data": attempt(lambda: fill(os.path.join(data, "junk"), 1)),
        "fill_tmp_past_limit": attempt(lambda: fill(f"/tmp/escape-{os.getpid()}", 64)),
        "fork_bomb": fork_bomb(),
    }
