"""Per-invocation log text in Lambda's format: START, the handler's output, END, REPORT;
and the scrubbing that keeps secrets out of every log line.

The log store keeps an invocation's fields and the handler's output, not the rendered
text: `render_invocation` rebuilds the four parts when the log is read.
"""

from __future__ import annotations

import math
import re

from mlambda.keys import PREFIX
from mlambda.runtime.dispatcher import Outcome

REDACTED = "[REDACTED]"
# an mlambda key anywhere; the value of an x-api-key / Authorization header as a handler
# would print it (a dict, JSON, "name: value" or "name=value")
_SECRETS = re.compile(
    re.escape(PREFIX) + r"[A-Za-z0-9_\-]{8,}"
    r"|(?i:(?<=x-api-key)|(?<=authorization)|(?<=x-amz-security-token))"
    r"""(['"]?\s*[:=]\s*['"]?)(?:(?:Bearer|Basic)\s+)?[^\s'",}]+"""
)


def scrub(text: str) -> str:
    """`text` with API keys and credential header values replaced by [REDACTED]."""
    if PREFIX not in text and "uthorization" not in text and "x-api-key" not in text.lower() \
            and "AUTHORIZATION" not in text and "security-token" not in text.lower():
        return text
    return _SECRETS.sub(_redact, text)


def _redact(match: re.Match[str]) -> str:
    separator = match.group(1)
    return REDACTED if separator is None else separator + REDACTED


def billed_ms(duration_ms: float, init_ms: float | None) -> int:
    """Rounded up to 1 ms; since August 2025 it includes the init phase of a cold start."""
    return math.ceil(duration_ms + (init_ms or 0.0))


def invocation_body(outcome: Outcome) -> str:
    """What goes between START and END: the handler's output, or the error if it printed
    nothing."""
    body = outcome.logs
    if body and not body.endswith("\n"):
        body += "\n"
    if outcome.error is not None and not outcome.logs:
        body += f"[ERROR] {outcome.error.error_type}: {outcome.error.message}\n"
    return body


def render_invocation(request_id: str, version: str, body: str, duration_ms: float,
                      init_ms: float | None, memory_mb: int, max_memory_mb: int,
                      trace_id: str | None = None) -> str:
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed_ms(duration_ms, init_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_memory_mb} MB"
    )
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    trace = f" TraceId: {trace_id}" if trace_id else ""
    return (f"START RequestId: {request_id} Version: {version}{trace}\n{body}"
            f"END RequestId: {request_id}\n{report}\n")


def invocation_log(outcome: Outcome, memory_mb: int) -> str:
    return render_invocation(outcome.request_id, outcome.version,
                             scrub(invocation_body(outcome)), outcome.duration_ms,
                             outcome.init_ms, memory_mb, outcome.max_memory_mb,
                             outcome.trace_id)
