"""An instance's side of chained calls: `Invoke` frames out on its runtime connection,
`Invoked` answers matched back to their callers by call id.

A handler may call from several threads at once. Whichever caller waits reads the
socket for all of them (one reader at a time); frames that are not answers (a `Stop`)
are kept for the instance's main loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlambda.runtime import protocol as p


class GatewayGone(ConnectionError):
    pass


class Calls:
    def __init__(self, send: Callable[[p.Msg], None],
                 read: Callable[[], list[p.Message] | None],
                 keep: Callable[[p.Message], None]) -> None:
        self._send = send
        self._read = read  # one recv's worth of frames; None when the connection closed
        self._keep = keep
        self._cond = threading.Condition()
        self._answers: dict[int, tuple[p.CallResult, ...]] = {}
        self._reading = False
        self._next_id = 1

    def call(self, function: str, qualifier: str | None, payloads: tuple[bytes, ...],
             trace_ids: tuple[str, ...], asynchronous: bool, depth: int,
             deadline: float) -> tuple[p.CallResult, ...]:
        with self._cond:
            call_id = self._next_id
            self._next_id += 1
        self._send(p.Invoke(call_id, function, qualifier, payloads, trace_ids, asynchronous,
                            depth, deadline))
        return self._wait(call_id)

    def _wait(self, call_id: int) -> tuple[p.CallResult, ...]:
        """The gateway answers every call (with a timeout error at the caller's deadline at
        the latest), so waiting needs no timeout of its own."""
        with self._cond:
            while call_id not in self._answers:
                if self._reading:
                    self._cond.wait()
                    continue
                self._reading = True
                self._cond.release()
                try:
                    messages = self._read()
                finally:
                    self._cond.acquire()
                    self._reading = False
                    self._cond.notify_all()
                if messages is None:
                    raise GatewayGone("the gateway closed the runtime connection")
                for msg in messages:
                    if isinstance(msg, p.Invoked):
                        self._answers[msg.call_id] = msg.results
                    else:
                        self._keep(msg)
            return self._answers.pop(call_id)
