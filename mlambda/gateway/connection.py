"""One HTTP connection: uvicorn's httptools protocol with the limits uvicorn leaves out.

uvicorn has no deadline on receiving a request: its keep-alive timeout is reset by every
byte, so a client that trickles a request a byte at a time holds a connection for ever
(slowloris). With httptools it caps neither the size nor the number of headers. And its
connection limit (`limit_concurrency`) answers a plain-text 503 per request. This
protocol adds, per connection:

- a deadline for the request line and headers (`header_timeout_s`, from the connection's
  opening or the request's first byte) and one for the body (`body_timeout_s`, from the
  end of the headers): past either, 408 and the connection is closed (one timer checks
  every connection each `TICK_S`);
- a cap on the request line plus headers, in bytes and in fields: 431, closed;
- a cap on open connections: past it a new connection gets 503 at once and is closed;
- our JSON error for each of these and for unparsable HTTP (uvicorn's is plain text);
- one write per response: uvicorn writes a response's head and its body separately, two
  send(2) calls where one does (`Cycle`);
- the keep-alive timeout on the same tick as the deadlines: uvicorn arms a timer after
  every response and cancels it at the next request, two heap operations per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from mlambda.errors import BadRequest, HeadersTooLarge, MlambdaError, Overloaded, RequestTimeout
from mlambda.gateway.http import error_body


@dataclass(frozen=True)
class Limits:
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_headers: int


TICK_S = 0.25  # how often deadlines are checked: a timeout fires up to this late
KEEP_ALIVE = "keep-alive"  # what an idle connection between two requests waits for


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request we refuse."""


def raw_response(exc: MlambdaError) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, as bytes."""
    body = error_body(exc.info())
    return b"".join([
        STATUS_LINE[exc.status],
        b"content-type: application/json\r\n",
        b"content-length: ", str(len(body)).encode(), b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ])


class Deadlines:
    """One timer for every connection of a server: each tick closes the connections past
    their deadline, so that a request costs two float writes, not two timers."""

    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None

    def watch(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        if self.handle is None:
            self.handle = loop.call_later(TICK_S, self.tick, loop, connections)

    def tick(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self.handle = None
        now = loop.time()
        for conn in list(connections):
            due = getattr(conn, "deadline", None)
            if due is not None and now >= due:
                conn.expire()
        if connections:
            self.watch(loop, connections)


class _Corked:
    """A transport that holds what is written to it until `flush`, and flushes before
    it closes; everything else is the real transport's."""

    __slots__ = ("held", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(data)

    def flush(self) -> None:
        if self.held:
            self.transport.write(b"".join(self.held))
            self.held.clear()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing a response's head together with its
    first body part: one send(2) per response, not two."""

    corked: _Corked | None = None  # while the head waits for the body

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            real = self.transport
            self.corked = _Corked(real)
            self.transport = self.corked  # type: ignore[assignment]
            try:
                await super().send(message)
            except BaseException:
                self.transport, self.corked = real, None
                raise
            return
        corked, self.corked = self.corked, None
        if corked is None:
            await super().send(message)
            return
        try:
            await super().send(message)
        finally:
            self.transport = corked.transport
            corked.flush()


class GuardedHttp(HttpToolsProtocol):
    limits: ClassVar[Limits]
    deadlines: ClassVar[Deadlines]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: float | None = None  # loop time by which the request must be in
        self.awaiting = ""  # what it waits for: "line and headers" or "body"
        self.head_bytes = 0
        self.head_fields = 0
        self.refused = False  # turned away at connect: uvicorn never saw this connection
        self.refusal: MlambdaError | None = None

    # -- connections --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.refused = True
            transport.write(raw_response(Overloaded(
                f"the gateway holds its limit of {self.limits.max_connections} open "
                "connections; retry later")))
            transport.close()
            return
        super().connection_made(transport)
        self.arm(self.limits.header_timeout_s, "line and headers")
        self.deadlines.watch(self.loop, self.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = None
        if not self.refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:  # also what our callbacks refuse
            self.send_400_response(str(exc))

    def send_400_response(self, msg: str) -> None:
        """Every request we refuse while parsing, and unparsable HTTP: JSON, then close."""
        exc = self.refusal or BadRequest(f"not a valid HTTP/1.1 request: {msg}")
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.write(raw_response(exc))
            self.transport.close()

    # -- deadlines ----------------------------------------------------------------------

    def arm(self, seconds: float, what: str) -> None:
        self.deadline = self.loop.time() + seconds
        self.awaiting = what

    def expire(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.awaiting == KEEP_ALIVE:  # idle between requests: close, nothing to say
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            seconds = (self.limits.body_timeout_s if self.awaiting == "body"
                       else self.limits.header_timeout_s)
            self.transport.write(raw_response(RequestTimeout(
                f"the request's {self.awaiting} did not arrive within {seconds:g} s")))
        self.transport.close()

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = self.head_fields = 0
        if self.deadline is None or self.awaiting == KEEP_ALIVE:
            self.arm(self.limits.header_timeout_s, "line and headers")

    def on_url(self, url: bytes) -> None:
        self.count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_fields += 1
        if self.head_fields > self.limits.max_headers:
            self.refuse(HeadersTooLarge(
                f"more than {self.limits.max_headers} header fields in the request"))
        self.count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.arm(self.limits.body_timeout_s, "body")
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # its task has not run yet
            self.cycle.__class__ = Cycle

    def on_message_complete(self) -> None:
        self.deadline = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timeout as a deadline instead of a timer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # the next pipelined request
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.deadline is None:
            self.arm(self.timeout_keep_alive, KEEP_ALIVE)

    def count_head(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > self.limits.max_header_bytes:
            self.refuse(HeadersTooLarge(
                f"request line and headers exceed {self.limits.max_header_bytes} bytes"))

    def refuse(self, exc: MlambdaError) -> None:
        self.refusal = exc
        raise _Refused()


def protocol_class(limits: Limits) -> type[asyncio.Protocol]:
    """The protocol class uvicorn's `Config(http=...)` takes, bound to `limits`."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits, "deadlines": Deadlines()})
