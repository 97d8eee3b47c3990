"""The gateway's handle on one version's template process (see `zygote.py`)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from mlambda.errors import RUNTIME_TEMPLATE, ErrorInfo, function_error
from mlambda.runtime import protocol as p
from mlambda.runtime import supervisor
from mlambda.runtime.supervisor import Connection, RuntimeSocket

START_TIMEOUT_S = 60.0


class TemplateError(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class TemplateHandle:
    def __init__(
        self,
        runtime: RuntimeSocket,
        config_of: Callable[[str], p.TemplateConfig],
        on_exited: Callable[[p.Exited], None],
        on_lost: Callable[[TemplateHandle], None],
    ) -> None:
        self.runtime = runtime
        self.token = secrets.token_hex(16)
        self.config = config_of(self.token)
        self.on_exited = on_exited
        self.on_lost = on_lost
        self.proc: asyncio.subprocess.Process | None = None
        self.conn: Connection | None = None
        self.ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.started_at = time.monotonic()
        self.stopping = False

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.conn.closed

    async def start(self) -> float:
        """Spawn the template and wait until it has preloaded; returns the spawn time in ms."""
        self.runtime.expect("template", self.token, self)
        self.proc = await supervisor.spawn_template(self.config)
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), START_TIMEOUT_S)
        except TimeoutError:
            self.fail(function_error(RUNTIME_TEMPLATE,
                                     f"template did not start within {START_TIMEOUT_S:.0f} s"))
            await self.stop()
        return await self.ready

    def fail(self, info: ErrorInfo) -> None:
        if not self.ready.done():
            self.ready.set_exception(TemplateError(info))
            self.ready.exception()  # retrieved by whoever awaits; never "never retrieved"

    def fork(self, instance_id: str) -> None:
        assert self.conn is not None
        self.conn.send(p.Fork(instance_id))

    # -- Owner --------------------------------------------------------------------------

    def on_hello(self, conn: Connection, hello: p.Hello) -> None:
        self.conn = conn

    def on_message(self, conn: Connection, msg: p.Message) -> None:
        if isinstance(msg, p.Exited):
            self.on_exited(msg)
        elif isinstance(msg, p.TemplateReady):
            if not self.ready.done():
                self.ready.set_result((time.monotonic() - self.started_at) * 1000)
        elif isinstance(msg, p.TemplateFailed):
            self.fail(msg.error)

    def on_close(self, conn: Connection) -> None:
        self.fail(function_error(RUNTIME_TEMPLATE, "template process exited during start"))
        self.on_lost(self)

    # -- lifecycle ----------------------------------------------------------------------

    async def stop(self, grace_s: float = 5.0) -> None:
        self.stopping = True
        self.runtime.forget("template", self.token)
        if self.conn is not None:
            self.conn.send(p.Stop())
        if self.proc is not None:
            await supervisor.wait_exit(self.proc, grace_s)
        if self.conn is not None:
            self.conn.close()
        self.fail(function_error(RUNTIME_TEMPLATE, "template stopped"))
