"""Faults are contained on the `local` engine: the fault tests every engine passes
(tests/e2e/faults.py), then what only `local` shows (its instances' exit statuses, pids and
the version's failure state)."""

from __future__ import annotations

from typing import ClassVar

from tests.conftest import Server, wait_for
from tests.e2e.faults import FaultTests, call, healthy


class TestFaultsOnLocal(FaultTests):
    DIED: ClassVar[dict[str, str]] = {
        "exit": "exit status 7", "kill": "signal: kill", "segv": "signal: segv"}


def test_a_dead_instance_leaves_the_instance_list(server: Server) -> None:
    _, before = call(server, "/faulty", {"do": "ok"})
    assert call(server, "/faulty", {"do": "kill"})[0] == 502
    assert wait_for(lambda: before["pid"] not in [i["pid"] for i in server.instances("faulty")],
                    5, "the dead instance to be gone")
    healthy(server)


def test_an_import_error_marks_the_version_failed(server: Server) -> None:
    """The version is marked failed: no respawn loop, its traceback in the log."""
    status, body = call(server, "/badimport", {})
    assert (status, body["errorType"]) == (502, "Runtime.ImportModuleError")
    failure = server.runtime("badimport")["failure"]
    assert failure["errorType"] == "Runtime.ImportModuleError"
    assert server.instances("badimport") == []
    assert "Traceback" in server.log() and "a_module_that_does_not_exist" in server.log()
