"""The `context` object a handler receives, as on AWS Lambda's Python runtime, plus
`context.invoke`: a call to another function, dispatched by the gateway without an HTTP
hop and batched on the callee's side like any other invocation (see chaining.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from mlambda.runtime.calls import Calls
    from mlambda.runtime.protocol import CallResult

REGION = "local"
ACCOUNT = "000000000000"
INVOCATION_TYPES = ("RequestResponse", "Event")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


class InvokeError(Exception):
    """A chained call failed. `error_type` is the callee's (or the platform's) error type:
    `ResourceNotFoundException`, `TooManyRequestsException`, `RecursiveInvocationException`,
    `ChainDeadlockException`..."""

    def __init__(self, function: str, error_type: str, message: str,
                 stack: tuple[str, ...] = ()) -> None:
        super().__init__(f"{error_type}: {message}")
        self.function = function
        self.error_type = error_type
        self.message = message
        self.stack = stack


class FunctionError(InvokeError):
    """The callee ran and failed (its handler raised, it timed out or crashed); its error
    type and message, e.g. `ValueError` or `Task.TimedOut`. Left uncaught, the caller fails
    with the same error type."""


class LambdaContext:
    """Per invocation (or per batch, for a batch handler). The deadline is monotonic."""

    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str,
        function_version: str,
        memory_limit_in_mb: int,
        deadline: float,
        log_stream_name: str,
        identity: Any = None,
        trace_ids: Sequence[str] = (),
        depth: int = 0,
        calls: Calls | None = None,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = function_arn(function_name, function_version)
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity = identity
        self.client_context: Any = None
        # the trace this invocation belongs to: its own request id at the first hop, the
        # caller's trace id on a chained call. A batch handler's context has one per event
        # (trace_ids, in the order of its events); trace_id is the first.
        self.trace_ids = tuple(trace_ids) or (aws_request_id,)
        self.trace_id = self.trace_ids[0]
        self.depth = depth  # chained calls between the first hop and this invocation
        self._deadline = deadline
        self._calls = calls

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    # -- chained calls --------------------------------------------------------------------

    def invoke(self, function: str, event: Any = None, *, qualifier: str | None = None,
               invocation_type: str = "RequestResponse") -> Any:
        """Call `function` (`name`, `name:alias` or `name:version`; or `qualifier=`) with
        `event` and return its result. Its remaining time is at most this invocation's.
        Raises `FunctionError` if it failed, `InvokeError` if it could not be called.
        `invocation_type="Event"`: fire and forget; returns the callee's request id as soon
        as the call is queued."""
        if invocation_type not in INVOCATION_TYPES:
            raise ValueError(f"invocation_type: expected one of {INVOCATION_TYPES}, "
                             f"got {invocation_type!r}")
        asynchronous = invocation_type == "Event"
        (result,) = self._call(function, [event], qualifier, (self.trace_id,), asynchronous)
        if asynchronous:
            self._raise(function, result)
            return result.request_id
        return self._value(function, result, False)

    def invoke_many(self, function: str, events: Sequence[Any], *,
                    qualifier: str | None = None, trace_ids: Sequence[str] | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        """Call `function` once per event, all at once (so that the callee gets them as one
        batch), and return the results in order. A batch handler passes
        `trace_ids=context.trace_ids` (or the ones of the events it forwards) so that each
        call joins its own event's trace. With `return_exceptions`, a failed call's slot
        holds its `InvokeError` instead of raising the first one."""
        if not events:
            return []
        if trace_ids is None:
            trace_ids = (self.trace_id,) * len(events)
        elif len(trace_ids) != len(events):
            raise ValueError(f"trace_ids: expected {len(events)} (one per event), "
                             f"got {len(trace_ids)}")
        results = self._call(function, events, qualifier, tuple(trace_ids), False)
        return [self._value(function, r, return_exceptions) for r in results]

    def _call(self, function: str, events: Sequence[Any], qualifier: str | None,
              trace_ids: tuple[str, ...], asynchronous: bool) -> tuple[CallResult, ...]:
        if self._calls is None:
            raise RuntimeError("context.invoke needs the mlambda runtime (no connection here)")
        name, _, named_qualifier = function.partition(":")
        if named_qualifier and qualifier is not None and named_qualifier != qualifier:
            raise ValueError(f"{function!r} names qualifier {named_qualifier!r} but "
                             f"qualifier={qualifier!r}")
        try:
            payloads = tuple(_json_encode(e if e is not None else {}) for e in events)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"context.invoke: the event is not JSON-serialisable: {exc}") from None
        return self._calls.call(name, named_qualifier or qualifier, payloads, trace_ids,
                                asynchronous, self.depth, self._deadline)

    @staticmethod
    def _raise(function: str, result: CallResult) -> None:
        error = result.error
        if error is not None:
            cls = FunctionError if error.kind == "function" else InvokeError
            raise cls(function, error.error_type, error.message, error.stack)

    def _value(self, function: str, result: CallResult, return_exceptions: bool) -> Any:
        try:
            self._raise(function, result)
        except InvokeError as exc:
            if return_exceptions:
                return exc
            raise
        if not result.body:
            return None
        try:
            return _json_decode(result.body)
        except msgspec.DecodeError:  # a proxy function's body need not be JSON
            return result.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, "
            f"function_version={self.function_version!r}, aws_request_id={self.aws_request_id!r})"
        )
