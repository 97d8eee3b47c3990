"""What a fault answers, whichever engine ran the call (`local`'s dispatcher, Ray's
replicas): the error of an invocation whose instance timed out, went over its memory or
died, the refusal of a full queue, and whether a call whose instance died runs once more.
Pure: the engines detect the fault, this says what the client sees."""

from __future__ import annotations

from mlambda.errors import (
    RUNTIME_EXIT,
    RUNTIME_OOM,
    TIMED_OUT,
    ErrorInfo,
    TooManyRequests,
    function_error,
)
from mlambda.spec import FunctionSpec


def timed_out(request_id: str, timeout_s: float) -> ErrorInfo:
    """The handler ran past the function's timeout: its instance is stopped (504)."""
    return function_error(
        TIMED_OUT, f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds")


def out_of_memory(request_id: str, memory_mb: int) -> ErrorInfo:
    """The memory watchdog caught the instance over `memory_mb` while it ran (502)."""
    return function_error(
        RUNTIME_OOM, f"RequestId: {request_id} Error: Runtime exited with error: memory "
                     f"exceeded the limit of {memory_mb} MB; killed")


def exited(request_id: str, how: str) -> ErrorInfo:
    """The instance died under the call (`how`: its exit status or signal, or on a cluster
    how the replica was lost) (502)."""
    return function_error(
        RUNTIME_EXIT, f"RequestId: {request_id} Error: Runtime exited with error: {how}")


def queue_full(key: str, max_queue: int) -> TooManyRequests:
    """The version already holds `max_queue` invocations waiting: refused at once (429)."""
    return TooManyRequests(
        f"{key}: {max_queue} invocations already queued (max_queue {max_queue})", "QueueFull")


def retried(error: ErrorInfo, spec: FunctionSpec, attempts: int) -> bool:
    """A call whose instance crashed under it (not one we stopped for its timeout or its
    memory) runs once more on another instance when the function allows it."""
    return error.error_type == RUNTIME_EXIT and spec.retry_on_crash and attempts == 0
