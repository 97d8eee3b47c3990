"""SIGTERM drains in-flight work and leaves no process behind; kill -9 of the gateway
takes its templates and instances with it."""

from __future__ import annotations

import concurrent.futures
import signal
from pathlib import Path

import psutil

from tests.conftest import assert_all_gone, start_server, wait_for


def test_sigterm_finishes_in_flight_work_and_stops_every_process(tmp_path: Path) -> None:
    server = start_server(tmp_path)

    def call(i: int) -> int:
        with server.client() as c:
            return c.post("/probe", json={"i": i, "sleep": 1.0}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call, i) for i in range(8)]
        wait_for(lambda: any(i["state"] == "busy" for i in server.instances("probe")), 10,
                 "an instance to be busy")
        assert len(server.remember_children()) >= 2  # a template and an instance at least
        server.proc.send_signal(signal.SIGTERM)
        statuses = [f.result() for f in futures]
    assert statuses == [200] * 8
    # uvicorn re-raises the signal once its graceful shutdown is complete
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    assert_all_gone(server)
    assert "mlambda: stopped" in server.log()


def test_kill_9_of_the_gateway_leaves_no_orphan(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    with server.client() as c:
        assert c.post("/echo", json={}).status_code == 200
        assert c.post("/probe", json={}).status_code == 200
    children = server.remember_children()
    assert len(children) >= 4  # two templates, two instances
    server.proc.kill()
    server.proc.wait(10)
    wait_for(lambda: not [p for p in children if psutil.pid_exists(p)
                          and psutil.Process(p).status() != psutil.STATUS_ZOMBIE],
             10, "templates and instances to die with the gateway")
