"""Faults are contained: each is answered clearly, the instance is replaced, and the
gateway and the other functions keep serving."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tests.conftest import Server, wait_for


def call(server: Server, path: str, event: dict[str, object]) -> tuple[int, dict[str, object]]:
    with server.client() as c:
        r = c.post(path, json=event)
    return r.status_code, r.json()


def healthy(server: Server) -> None:
    """After any fault: the same function and another one still answer."""
    assert call(server, "/faulty", {"do": "ok"})[0] == 200
    assert call(server, "/echo", {"still": "up"}) == (200, {"still": "up"})


def test_handler_exception_is_502_with_its_type(server: Server) -> None:
    status, body = call(server, "/faulty", {"do": "raise"})
    assert status == 502
    assert body == {"errorType": "BadThing", "errorMessage": "the handler raised on purpose"}
    healthy(server)


@pytest.mark.parametrize(("do", "how"), [
    ("exit", "exit status 7"),
    ("kill", "signal: kill"),
    ("segv", "signal: segv"),
])
def test_instance_death_is_502_exit_error_and_is_replaced(server: Server, do: str,
                                                          how: str) -> None:
    _, before = call(server, "/faulty", {"do": "ok"})
    status, body = call(server, "/faulty", {"do": do})
    assert status == 502
    assert body["errorType"] == "Runtime.ExitError"
    assert how in str(body["errorMessage"])
    assert wait_for(lambda: before["pid"] not in [i["pid"] for i in server.instances("faulty")],
                    5, "the dead instance to be gone")
    healthy(server)


def test_timeout_kills_the_instance_and_is_504(server: Server) -> None:
    status, body = call(server, "/faulty", {"do": "hang"})
    assert status == 504
    assert body["errorType"] == "Task.TimedOut"
    assert "Task timed out after 1.00 seconds" in str(body["errorMessage"])
    healthy(server)


@pytest.mark.parametrize("do", ["hog", "spike"])
def test_over_memory_is_killed_502_out_of_memory(server: Server, do: str) -> None:
    status, body = call(server, "/faulty", {"do": do})
    assert status == 502
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert "256 MB" in str(body["errorMessage"])
    healthy(server)


def test_unserialisable_result_is_a_marshal_error(server: Server) -> None:
    status, body = call(server, "/faulty", {"do": "unserialisable"})
    assert status == 502
    assert body["errorType"] == "Runtime.MarshalError"
    healthy(server)


def test_import_error_is_502_and_other_functions_keep_serving(server: Server) -> None:
    status, body = call(server, "/badimport", {})
    assert status == 502
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "a_module_that_does_not_exist" in str(body["errorMessage"])
    # the version is marked failed: the next call is answered at once, no respawn loop
    status, body = call(server, "/badimport", {})
    assert status == 502 and body["errorType"] == "Runtime.ImportModuleError"
    failure = server.runtime("badimport")["failure"]
    assert failure["errorType"] == "Runtime.ImportModuleError"
    assert server.instances("badimport") == []
    assert "Traceback" in server.log() and "a_module_that_does_not_exist" in server.log()
    healthy(server)


def test_crash_is_retried_once_when_the_function_allows(server: Server, scratch: Path) -> None:
    marker = scratch / "crashed-once"
    status, body = call(server, "/flaky", {"marker": str(marker)})
    assert status == 200, body
    assert marker.exists()
    assert body["pid"] != body["crashed_pid"]  # answered by another instance


def test_full_queue_answers_429_at_once(server: Server) -> None:
    # one instance, max_queue 2: of 8 simultaneous calls some run or wait, the rest get 429
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: call(server, "/slow", {"sleep": 1.0}), range(8)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(200) >= 2
    assert statuses.count(429) >= 4
    assert set(statuses) == {200, 429}
    refused = next(b for s, b in results if s == 429)
    assert refused["errorType"] == "TooManyRequestsException"
    assert "max_queue 2" in str(refused["errorMessage"])
