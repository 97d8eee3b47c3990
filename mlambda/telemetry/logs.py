"""Per-invocation log text in Lambda's format: START, the handler's output, END, REPORT."""

from __future__ import annotations

import math

from mlambda.runtime.dispatcher import Outcome


def invocation_log(outcome: Outcome, memory_mb: int) -> str:
    rid = outcome.request_id
    billed = math.ceil(outcome.duration_ms + (outcome.init_ms or 0.0))
    report = (
        f"REPORT RequestId: {rid}\tDuration: {outcome.duration_ms:.2f} ms\t"
        f"Billed Duration: {billed} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {outcome.max_memory_mb} MB"
    )
    if outcome.init_ms is not None:
        report += f"\tInit Duration: {outcome.init_ms:.2f} ms"
    body = outcome.logs
    if body and not body.endswith("\n"):
        body += "\n"
    if outcome.error is not None and not outcome.logs:
        body += f"[ERROR] {outcome.error.error_type}: {outcome.error.message}\n"
    trace = f" TraceId: {outcome.trace_id}" if outcome.trace_id else ""
    return (f"START RequestId: {rid} Version: {outcome.version}{trace}\n{body}"
            f"END RequestId: {rid}\n{report}\n")
