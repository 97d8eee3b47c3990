"""The fault tests every engine passes: each fault is answered with the same status and
errorType whichever engine runs the function, the instance (or replica) is replaced, and
the gateway and the other functions keep serving.

`FaultTests` is run by a class per engine (tests/e2e/test_faults.py for `local`,
tests/e2e/test_ray_engine.py for `ray`), whose `server` fixture is that engine's server
running the functions of tests/functions (faulty, flaky, slow, badimport, echo).
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import Server, wait_for


def call(server: Server, path: str, event: dict[str, object]) -> tuple[int, dict[str, object]]:
    with server.client() as c:
        r = c.post(path, json=event)
    return r.status_code, r.json()


def healthy(server: Server) -> int:
    """After any fault: the same function and another one still answer. Returns the pid
    of the instance that answered."""
    status, body = call(server, "/faulty", {"do": "ok"})
    assert status == 200, body
    assert call(server, "/echo", {"still": "up"}) == (200, {"still": "up"})
    return int(str(body["pid"]))


class FaultTests:
    # how the message of an instance's death says it died, by the way it died
    DIED: ClassVar[dict[str, str]]

    def test_handler_exception_is_502_with_its_type(self, server: Server) -> None:
        status, body = call(server, "/faulty", {"do": "raise"})
        assert status == 502
        assert body == {"errorType": "BadThing", "errorMessage": "the handler raised on purpose"}
        healthy(server)

    @pytest.mark.parametrize("do", ["exit", "kill", "segv"])
    def test_instance_death_is_502_exit_error_and_is_replaced(self, server: Server,
                                                              do: str) -> None:
        before = healthy(server)
        status, body = call(server, "/faulty", {"do": do})
        assert status == 502, body
        assert body["errorType"] == "Runtime.ExitError"
        assert "Runtime exited with error: " + self.DIED[do] in str(body["errorMessage"])
        assert healthy(server) != before  # a new instance answers

    def test_timeout_is_504_and_the_instance_is_replaced(self, server: Server) -> None:
        before = healthy(server)
        status, body = call(server, "/faulty", {"do": "hang"})
        assert status == 504
        assert body["errorType"] == "Task.TimedOut"
        assert "Task timed out after 1.00 seconds" in str(body["errorMessage"])
        assert healthy(server) != before

    def test_a_call_queued_behind_a_hang_is_answered(self, server: Server,
                                                     scratch: Path) -> None:
        """One instance; a call that arrives while it hangs waits for it, and when the hung
        instance is stopped the waiting call runs on the next one (on `local` it is
        re-queued; on Ray the exiting replica refuses it unrun and the gateway resends)."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            hung = pool.submit(call, server, "/stuck", {"hang": str(scratch)})
            wait_for((scratch / "hanging").exists, 30, "the instance to hang")
            waiting = pool.submit(call, server, "/stuck", {})
            status, body = hung.result(timeout=60)
            assert (status, body["errorType"]) == (504, "Task.TimedOut"), body
            status, body = waiting.result(timeout=60)
            assert status == 200, body

    # hog: holds 600 MB until the watchdog stops it; spike: allocates 600 MB and returns
    @pytest.mark.parametrize("do", ["hog", "spike"])
    def test_over_memory_is_502_out_of_memory(self, server: Server, do: str) -> None:
        status, before = call(server, "/hungry", {"do": "nothing"})
        assert status == 200, before
        status, body = call(server, "/hungry", {"do": do})
        assert status == 502, body
        assert body["errorType"] == "Runtime.OutOfMemory"
        assert "256 MB" in str(body["errorMessage"])
        status, after = call(server, "/hungry", {"do": "nothing"})
        assert status == 200 and after["pid"] != before["pid"], after  # a new instance
        healthy(server)

    def test_unserialisable_result_is_a_marshal_error(self, server: Server) -> None:
        status, body = call(server, "/faulty", {"do": "unserialisable"})
        assert status == 502
        assert body["errorType"] == "Runtime.MarshalError"
        healthy(server)

    def test_import_error_is_502_and_other_functions_keep_serving(self,
                                                                  server: Server) -> None:
        for _ in range(2):  # and again: the version stays failed, answered at once
            status, body = call(server, "/badimport", {})
            assert (status, body["errorType"]) == (502, "Runtime.ImportModuleError"), body
            assert "a_module_that_does_not_exist" in str(body["errorMessage"])
        healthy(server)

    def test_crash_is_retried_once_when_the_function_allows(self, server: Server,
                                                            scratch: Path) -> None:
        marker = scratch / "crashed-once"
        status, body = call(server, "/flaky", {"marker": str(marker)})
        assert status == 200, body
        assert marker.exists()
        assert body["pid"] != body["crashed_pid"]  # answered by another instance

    def test_a_second_crash_is_a_clear_502(self, server: Server, scratch: Path) -> None:
        """Retried once, not twice: a call that crashes every instance it meets."""
        status, body = call(server, "/flaky", {"marker": str(scratch), "always": True})
        assert (status, body["errorType"]) == (502, "Runtime.ExitError"), body

    def test_full_queue_answers_429_at_once(self, server: Server) -> None:
        # one instance, max_queue 2: of 8 simultaneous calls some run or wait, the rest
        # are refused at once
        def slow(_: int) -> tuple[int, dict[str, object]]:
            return call(server, "/slow", {"sleep": 1.0})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(slow, range(8)))
        statuses = sorted(s for s, _ in results)
        assert statuses.count(200) >= 2
        assert statuses.count(429) >= 4
        assert set(statuses) == {200, 429}
        refused = next(b for s, b in results if s == 429)
        assert refused["errorType"] == "TooManyRequestsException"
        assert "max_queue 2" in str(refused["errorMessage"])

