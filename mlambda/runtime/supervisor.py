"""The gateway's side of the process boundary: the runtime socket every template and
instance connects to, and the narrow seam through which processes are spawned,
signalled and measured. Nothing else in the package forks, kills or reads /proc.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import sys
from typing import Protocol

from mlambda.runtime import protocol as p
from mlambda.runtime import sandbox

log = logging.getLogger("mlambda.runtime")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
HELLO_TIMEOUT_S = 10.0  # a process that connects must say who it is within this
# Connections of one sandbox uid that have not said who they are yet: more than all the
# instances of a function (at most 256) can open at once, few enough to be harmless.
MAX_UNCLAIMED_PER_USER = 300
PEERCRED = struct.Struct("3i")  # pid, uid, gid


class Owner(Protocol):
    """Whoever a connection belongs to once it has said who it is."""

    def on_hello(self, conn: Connection, hello: p.Hello) -> None: ...
    def on_message(self, conn: Connection, msg: p.Message) -> None: ...
    def on_close(self, conn: Connection) -> None: ...


def peer_uid(transport: asyncio.BaseTransport) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    sock = transport.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
    return int(PEERCRED.unpack(creds)[1])


class Connection(asyncio.Protocol):
    def __init__(self, server: RuntimeSocket) -> None:
        self.server = server
        self.peer_uid = -1
        self.hello_deadline: asyncio.TimerHandle | None = None
        self.reader = p.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Sandboxed function code can connect here too (it shares the socket's group):
        # a connection must say who it is in time, and one user may hold only a few
        # that have not, so that none can tie up the gateway's descriptors.
        self.peer_uid = peer_uid(transport)
        if not self.server.admit(self):
            self.close()
            return
        self.hello_deadline = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, self.close)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.reader.feed(data)
        except Exception:
            log.exception("undecodable frame on the runtime socket; closing that connection")
            self.close()
            return
        for msg in messages:
            if self.owner is not None:
                self.owner.on_message(self, msg)
            elif isinstance(msg, p.Hello):
                self.owner = self.server.claim(self, msg)
                if self.owner is None:
                    self.close()
                    return
                self.server.claimed(self)
            else:
                self.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.owner is not None:
            self.owner.on_close(self)
        else:
            self.server.claimed(self)

    def send(self, msg: p.Msg) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(p.encode(msg))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RuntimeSocket:
    """A Unix socket in a private (0700) directory; connections are claimed by identity."""

    def __init__(self, path: str, group: int | None = None) -> None:
        self.path = path
        self.group = group  # the sandbox group: instances connect as its users
        self.expected: dict[tuple[str, str], Owner] = {}
        self.unclaimed: dict[int, set[Connection]] = {}  # peer uid -> not yet said hello
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_unix_server(lambda: Connection(self), self.path)
        if self.group is None:
            os.chmod(self.path, 0o600)
        else:
            os.chown(self.path, -1, self.group)
            os.chmod(self.path, 0o660)

    def admit(self, conn: Connection) -> bool:
        if conn.peer_uid in (0, os.getuid()):  # the gateway's own (templates before the drop)
            return True
        waiting = self.unclaimed.setdefault(conn.peer_uid, set())
        if len(waiting) >= MAX_UNCLAIMED_PER_USER:
            log.warning("runtime socket: uid %d holds %d connections that said nothing; "
                        "refusing another", conn.peer_uid, len(waiting))
            return False
        waiting.add(conn)
        return True

    def claimed(self, conn: Connection) -> None:
        """`conn` said who it is, or went away: it no longer counts against its user."""
        if conn.hello_deadline is not None:
            conn.hello_deadline.cancel()
            conn.hello_deadline = None
        waiting = self.unclaimed.get(conn.peer_uid)
        if waiting is not None:
            waiting.discard(conn)
            if not waiting:
                del self.unclaimed[conn.peer_uid]

    def expect(self, role: str, ident: str, owner: Owner) -> None:
        self.expected[(role, ident)] = owner

    def forget(self, role: str, ident: str) -> None:
        self.expected.pop((role, ident), None)

    def claim(self, conn: Connection, hello: p.Hello) -> Owner | None:
        owner = self.expected.pop((hello.role, hello.ident), None)
        if owner is None:
            log.warning("runtime socket: unexpected %s %r (pid %d)", hello.role, hello.ident,
                        hello.pid)
            return None
        owner.on_hello(conn, hello)
        return owner

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# -- the process seam -------------------------------------------------------------------


async def spawn_template(config: p.TemplateConfig) -> asyncio.subprocess.Process:
    """Start a version's template process (from the event loop's thread, so that its
    parent-death signal is tied to the gateway's main thread)."""
    env = sandbox.spawn_env({p.CONFIG_ENV: p.encode_config(config)})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mlambda.runtime.zygote",
        env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
    )


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (no file of ours is read per request)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_MB
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0.0


async def wait_exit(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """Wait for a process to exit; SIGKILL it after `grace_s`."""
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        kill(proc.pid)
        await proc.wait()
