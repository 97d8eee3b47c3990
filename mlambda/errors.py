"""The error hierarchy: every failure a client can see, by type name and HTTP status.

Errors cross the process boundary as `ErrorInfo` (type name, message, stack) and are
mapped to HTTP here and nowhere else.
"""

from __future__ import annotations

import math
from typing import ClassVar

import msgspec


class ErrorInfo(msgspec.Struct, frozen=True):
    """An error as it travels between processes and is written to the client."""

    error_type: str
    message: str
    stack: tuple[str, ...] = ()
    # "function": raised by the handler or its runtime (a Lambda function error);
    # "request": the request itself was bad (never reached the handler);
    # "service": the platform refused or failed.
    kind: str = "function"


class MlambdaError(Exception):
    """Base of every error the platform answers with."""

    error_type: ClassVar[str] = "ServiceException"
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "service"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def info(self) -> ErrorInfo:
        return ErrorInfo(self.error_type, self.message, (), self.kind)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """HTTP headers that go with this error's answer (Retry-After, say)."""
        return []


class BadRequest(MlambdaError):
    error_type = "InvalidRequestContentException"
    status = 400
    kind = "request"


class InvalidParameter(MlambdaError):
    error_type = "InvalidParameterValueException"
    status = 400
    kind = "request"


class Unauthorized(MlambdaError):
    error_type = "UnauthorizedException"
    status = 401
    kind = "request"


class Forbidden(MlambdaError):
    error_type = "ForbiddenException"
    status = 403
    kind = "request"


class NotFound(MlambdaError):
    error_type = "ResourceNotFoundException"
    status = 404
    kind = "request"


class Conflict(MlambdaError):
    error_type = "ResourceConflictException"
    status = 409
    kind = "request"


class PayloadTooLarge(MlambdaError):
    error_type = "RequestTooLargeException"
    status = 413
    kind = "request"


class RequestTimeout(MlambdaError):
    """The client did not send its request's headers or body in time (slowloris)."""

    error_type = "RequestTimeoutException"
    status = 408
    kind = "request"


class HeadersTooLarge(MlambdaError):
    error_type = "RequestHeaderFieldsTooLargeException"
    status = 431
    kind = "request"


class TooManyRequests(MlambdaError):
    """Throttled: a full queue, or a key over its usage plan's rate. `retry_after` (s)
    becomes a Retry-After header; `limits` are the key's RateLimit-* headers."""

    error_type = "TooManyRequestsException"
    status = 429

    def __init__(self, message: str, reason: str = "ConcurrentInvocationLimitExceeded",
                 retry_after: float | None = None,
                 limits: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.limits = limits

    def headers(self) -> list[tuple[bytes, bytes]]:
        extra = list(self.limits)
        if self.retry_after is not None:
            extra.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return extra


class LimitExceeded(TooManyRequests):
    """A key used up its usage plan's quota for the day or month."""

    error_type = "LimitExceededException"


class ShuttingDown(MlambdaError):
    error_type = "ServiceUnavailableException"
    status = 503


class RecursionStopped(MlambdaError):
    """A chain of calls went deeper than the limit (see runtime/chaining.py): a loop."""

    error_type = "RecursiveInvocationException"
    status = 400
    kind = "request"


class ChainDeadlock(MlambdaError):
    """A chained call could never start: every instance its target may have is itself
    waiting on a call that needs it."""

    error_type = "ChainDeadlockException"
    status = 429


class Internal(MlambdaError):
    """A bug of the platform's: logged with its traceback; the client gets this."""

    error_type = "ServiceException"
    status = 500


class Overloaded(MlambdaError):
    """Every connection slot is taken: come back later."""

    error_type = "ServiceUnavailableException"
    status = 503


class InvalidSpec(MlambdaError):
    """A function bundle whose `function.toml` is wrong: names the file, field and expectation."""

    error_type = "InvalidFunctionSpecException"
    status = 400
    kind = "request"


# Runtime errors: the function failed. Lambda names these; we keep its names.
RUNTIME_EXIT = "Runtime.ExitError"
RUNTIME_OOM = "Runtime.OutOfMemory"
RUNTIME_IMPORT = "Runtime.ImportModuleError"
RUNTIME_HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
RUNTIME_MARSHAL = "Runtime.MarshalError"
RUNTIME_BAD_PROXY = "Runtime.InvalidProxyResponse"
RUNTIME_TEMPLATE = "Runtime.TemplateError"
TIMED_OUT = "Task.TimedOut"

_FUNCTION_STATUS = {TIMED_OUT: 504}

_SERVICE_STATUS = {
    cls.error_type: cls.status
    for cls in (
        BadRequest, InvalidParameter, Unauthorized, Forbidden, NotFound, Conflict,
        PayloadTooLarge, RequestTimeout, HeadersTooLarge, TooManyRequests, LimitExceeded,
        ShuttingDown, Overloaded, Internal, InvalidSpec, RecursionStopped, ChainDeadlock,
    )
}


def http_status(info: ErrorInfo) -> int:
    """The one mapping from an error to an HTTP status on a gateway route."""
    if info.kind == "function":
        return _FUNCTION_STATUS.get(info.error_type, 502)
    return _SERVICE_STATUS.get(info.error_type, 500)


def function_error(error_type: str, message: str, stack: tuple[str, ...] = ()) -> ErrorInfo:
    return ErrorInfo(error_type, message, stack, "function")
