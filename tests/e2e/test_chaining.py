"""Chained calls (`context.invoke`) end to end: results, batching on the callee's side,
errors as the callee's type, deadlines, fire-and-forget, trace ids, the 16-hop loop stop
and a self-call that could never start."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from tests.conftest import Server

INVOKE = "/2015-03-31/functions/{}/invocations"


def invoke(server: Server, function: str, event: Any,
           tail: bool = False) -> httpx.Response:
    headers = {"X-Amz-Log-Type": "Tail"} if tail else {}
    with server.client() as c:
        return c.post(INVOKE.format(function), json=event, headers=headers)


def test_a_call_returns_the_callees_result_in_the_same_trace(server: Server) -> None:
    r = invoke(server, "chain", {"op": "call", "event": {"op": "echo", "i": 7}}, tail=True)
    assert r.status_code == 200, r.text
    assert "x-amz-function-error" not in r.headers, r.text
    body = r.json()
    top = r.headers["x-amzn-requestid"]
    assert body["trace"] == top  # the first hop starts the trace with its request id
    assert body["result"]["i"] == 7
    assert body["result"]["trace"] == top  # the callee joined it
    assert body["result"]["depth"] == 1
    log = base64.b64decode(r.headers["x-amz-log-result"]).decode()
    assert f"TraceId: {top}" in log


def test_invoke_many_reaches_the_callee_as_one_batch_each_in_its_trace(server: Server) -> None:
    r = invoke(server, "chain", {"op": "many", "n": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert [x["i"] for x in results] == list(range(12))
    assert all(x["batch"] == 12 for x in results), [x["batch"] for x in results]
    assert {x["trace"] for x in results} == {body["trace"]}


def test_calls_from_several_threads_each_get_their_own_answer(server: Server) -> None:
    r = invoke(server, "chain", {"op": "threads", "n": 16})
    assert r.status_code == 200 and "x-amz-function-error" not in r.headers, r.text
    assert [x["i"] for x in r.json()["results"]] == list(range(16))


def test_a_callee_error_comes_back_as_its_own_type(server: Server) -> None:
    caught = invoke(server, "chain", {"op": "catch", "event": {"op": "raise"}}).json()
    assert caught["caught"] == "FunctionError"
    assert caught["error_type"] == "KeyError"
    assert "callee raised on purpose" in caught["message"]
    # left uncaught, the caller fails with the callee's error type
    r = invoke(server, "chain", {"op": "call", "event": {"op": "raise"}})
    assert r.headers.get("x-amz-function-error") == "Unhandled"
    assert r.json()["errorType"] == "KeyError"
    # through a route, that is a 502 with the same type
    with server.client() as c:
        r = c.post("/chain", json={"op": "call", "event": {"op": "raise"}})
    assert r.status_code == 502 and r.json()["errorType"] == "KeyError"


def test_a_missing_callee_is_an_invoke_error(server: Server) -> None:
    caught = invoke(server, "chain", {"op": "catch", "target": "nope", "event": {}}).json()
    assert caught["caught"] == "InvokeError"
    assert caught["error_type"] == "ResourceNotFoundException"
    assert "nope" in caught["message"]


def test_a_callee_that_times_out_is_a_timeout_for_the_caller(server: Server) -> None:
    start = time.monotonic()
    caught = invoke(server, "chain",
                    {"op": "catch", "target": "faulty", "event": {"do": "hang"}}).json()
    assert caught["error_type"] == "Task.TimedOut", caught  # faulty's timeout_s is 1
    assert time.monotonic() - start < 5


def test_the_callees_time_is_bounded_by_the_callers(server: Server) -> None:
    body = invoke(server, "chain", {"op": "remaining"}).json()
    caller_ms, callee_ms = body["caller_ms"], body["callee"]["remaining_ms"]
    # callee's timeout_s is 30, the caller's 10: the callee gets what the caller has left
    assert 0 < callee_ms <= caller_ms <= 10_000, body


def test_fire_and_forget_returns_before_the_callee_finishes(server: Server) -> None:
    body = invoke(server, "chain", {"op": "event", "target": "probe",
                                    "event": {"sleep": 2}}).json()
    assert body["took_s"] < 1.0, body
    assert len(body["request_id"]) == 36


def test_a_loop_is_stopped_after_16_hops(server: Server) -> None:
    r = invoke(server, "chain", {"op": "loop"})
    assert r.headers.get("x-amz-function-error") == "Unhandled", r.text
    error = r.json()
    assert error["errorType"] == "RecursiveInvocationException"
    assert "stopped after 16 hops" in error["errorMessage"]
    assert "17 calls deep" in error["errorMessage"]


def test_a_self_call_that_could_never_start_fails_at_once(server: Server) -> None:
    start = time.monotonic()
    r = invoke(server, "loner", {})
    error = r.json()
    assert error["errorType"] == "ChainDeadlockException", error
    assert "max_instances" in error["errorMessage"]
    assert time.monotonic() - start < 3  # not loner's 5 s timeout


def test_a_callee_that_cannot_start_fails_each_call_at_once(server: Server) -> None:
    """`badimport` fails its init: the first call is answered when the start fails, the
    next ones (within the dispatcher's backoff) from within the submit itself."""
    for _ in range(2):
        caught = invoke(server, "chain", {"op": "catch", "target": "badimport",
                                          "event": {}}).json()
        assert caught["caught"] == "FunctionError"
        assert caught["error_type"] == "Runtime.ImportModuleError"
    many = invoke(server, "chain", {"op": "many", "target": "badimport", "n": 3}).json()
    assert many["results"] == [{"error": "Runtime.ImportModuleError"}] * 3
