"""The log text: Lambda's START/END/REPORT format and secret scrubbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlambda.errors import function_error
from mlambda.runtime.dispatcher import Outcome
from mlambda.telemetry.logs import invocation_log, scrub

CASES = json.loads((Path(__file__).parent / "data" / "scrub_cases.json").read_text())


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def outcome(logs: str, init_ms: float | None, error: bool = False) -> Outcome:
    return Outcome("rid-1", "3", b"", function_error("Boom", "it broke") if error else None,
                   200, (), 15.744, 0.1, init_ms, 56, logs, 1, "i1")


def test_cold_start_report_has_init_and_billed_includes_it() -> None:
    text = invocation_log(outcome("hello\n", 130.49), 128)
    assert text.splitlines() == [
        "START RequestId: rid-1 Version: 3",
        "hello",
        "END RequestId: rid-1",
        "REPORT RequestId: rid-1\tDuration: 15.74 ms\tBilled Duration: 147 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 130.49 ms",
    ]


def test_warm_report_has_no_init_and_errors_show_when_nothing_printed() -> None:
    lines = invocation_log(outcome("", None, error=True), 256).splitlines()
    assert lines[1] == "[ERROR] Boom: it broke"
    assert lines[3].endswith("Max Memory Used: 56 MB")
    assert "Billed Duration: 16 ms" in lines[3]


def test_tail_is_scrubbed() -> None:
    text = invocation_log(outcome("headers {'x-api-key': 'mlk_supersecretvalue1'}", None), 128)
    assert "supersecret" not in text
