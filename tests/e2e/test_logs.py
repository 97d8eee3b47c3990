"""Invocation logs and platform events through a real server: search, request-id lookup,
`mlambda logs --follow`, the crash and timeout events, secrets kept out, a restart."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mlambda.client import Client
from tests.conftest import ROOT, Server, start_server, wait_for


def admin(server: Server) -> Client:
    return Client(server.url, server.admin_key, timeout=30)


def entries(server: Server, **query: Any) -> list[dict[str, Any]]:
    with admin(server) as c:
        return list(c.logs(**query)["entries"])


def invoke_faulty(server: Server, what: str) -> str:
    with server.client() as c:
        r = c.post("/2015-03-31/functions/faulty:live/invocations", json={"do": what})
    assert r.status_code == 200, r.text
    return r.headers["x-amzn-requestid"]


def test_handler_output_is_searchable_and_found_by_request_id(server: Server) -> None:
    marker = "zebra" + secrets.token_hex(4)
    rid = invoke_faulty(server, marker)
    found = wait_for(lambda: entries(server, function="faulty", filter=marker), 10,
                     "the handler's line in the log search")
    assert [e["request_id"] for e in found] == [rid]
    lines = found[0]["message"].splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: 1 TraceId: {rid}"  # a first hop
    assert lines[1] == f"faulty: doing {marker}"
    assert lines[2] == f"END RequestId: {rid}"
    assert lines[3].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "\tMemory Size: 256 MB\t" in lines[3]
    by_id = entries(server, request_id=rid)
    assert [e["id"] for e in by_id] == [found[0]["id"]]
    assert entries(server, function="faulty", version="2") == []


def test_follow_prints_a_new_line(server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    proc = subprocess.Popen([sys.executable, "-m", "mlambda.cli", "logs", "faulty", "--follow",
                             "--since", "1m"], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []],
                              daemon=True)
    reader.start()
    seen: list[str] = []

    def printed(text: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(text in line for line in seen)

    try:
        marker = "okapi" + secrets.token_hex(4)
        rid = invoke_faulty(server, marker)
        wait_for(lambda: printed(f"faulty: doing {marker}"), 15, "the follower to print it")
        wait_for(lambda: printed(f"REPORT RequestId: {rid}"), 5, "the REPORT line")
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_crash_timeout_and_out_of_memory_events(server: Server) -> None:
    invoke_faulty(server, "kill")
    crash = wait_for(lambda: entries(server, function="faulty", filter="crashed"), 10,
                     "the crash event")
    assert crash[-1]["kind"] == "instance_crash" and crash[-1]["level"] == "error"
    assert "crashed: signal: kill" in crash[-1]["message"]
    rid = invoke_faulty(server, "hang")
    timeout = wait_for(lambda: [e for e in entries(server, request_id=rid)
                                if e["kind"] == "timeout"], 10, "the timeout event")
    assert "Task timed out after 1.00 seconds" in timeout[0]["message"]
    rid = invoke_faulty(server, "spike")  # past memory_mb: the instance reports it and exits
    oom = wait_for(lambda: [e for e in entries(server, request_id=rid)
                            if e["kind"] == "out_of_memory"], 10, "the out-of-memory event")
    assert "over its limit of 256 MB" in oom[0]["message"]
    kinds = {e["kind"] for e in entries(server, function="faulty", limit=1000)}
    assert {"cold_start", "instance_crash", "timeout", "out_of_memory", "invocation"} <= kinds


def test_bad_log_queries_are_clear_errors(server: Server) -> None:
    with server.admin() as c:
        for params, status, words in (
            ({"function": "nope"}, 404, "nope"),
            ({"since": "yesterday"}, 400, "`since`"),
            ({"filter": "!!!"}, 400, "`filter`"),
            ({"limit": "0"}, 400, "`limit`"),
        ):
            r = c.get("/admin/v1/logs", params=params)
            assert r.status_code == status, (params, r.text)
            assert words in r.json()["errorMessage"]
    with server.client() as c:  # an invoke key may not read logs
        assert c.get("/admin/v1/logs").status_code == 403


def test_secrets_never_reach_the_log(server: Server) -> None:
    with admin(server) as c:
        deployed = c.deploy(ROOT / "tests" / "functions" / "printer", publish=True)
        c.set_alias("printer", "live", deployed["version"])
        c.add_route("POST", "/printer", "printer:live")
    marker = "heron" + secrets.token_hex(4)
    with server.client() as c:
        r = c.post("/printer", json={"note": marker}, headers={
            "authorization": f"Bearer {server.admin_key}", "x-forwarded-key": server.invoke_key})
    assert r.status_code == 200, r.text
    found = wait_for(lambda: entries(server, function="printer", filter=marker), 10,
                     "the printer's log")
    text = found[0]["message"]
    assert "printer headers" in text and "[REDACTED]" in text
    for secret in (server.admin_key, server.invoke_key):
        assert secret not in text
        assert secret[4:20] not in text
    files = [p for p in server.data.iterdir() if p.name.startswith("logs.db")]
    for path in files:
        raw = path.read_bytes()
        for secret in (server.admin_key, server.invoke_key):
            assert secret[4:20].encode() not in raw, path
    kinds = {e["kind"] for e in entries(server, function="printer", limit=1000)}
    assert {"deploy", "alias_move", "cold_start", "invocation"} <= kinds


@pytest.mark.slow
def test_logs_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    marker = "ibex" + secrets.token_hex(4)
    try:
        rid = invoke_faulty(server, marker)
        wait_for(lambda: entries(server, filter=marker), 10, "the line to be written")
    finally:
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    again = start_server(tmp_path, data=server.data)
    try:
        found = entries(again, function="faulty", filter=marker)
        assert [e["request_id"] for e in found] == [rid]
    finally:
        again.stop()


def test_model_swap_and_failed_load_events(server: Server, tmp_path: Path) -> None:
    hello, broken = tmp_path / "hello.txt", tmp_path / "broken.txt"
    hello.write_text("hello")
    broken.write_text("BROKEN model")
    with admin(server) as c:
        good = c.push_model("greeting", hello)
        with server.client() as inv:
            assert inv.post("/greeting", json={}).json() == {"greeting": "hello"}
        bad = c.push_model("greeting", broken)
        with server.client() as inv:
            assert inv.post("/greeting", json={}).json() == {"greeting": "hello"}
    failed = wait_for(lambda: entries(server, function="modelreader", filter="failed to load"),
                      10, "the model load failure event")
    assert failed[0]["kind"] == "model_load_failed" and failed[0]["level"] == "error"
    assert f"greeting@{bad['sha256'][:12]}" in failed[0]["message"]
    assert "cannot be loaded" in failed[0]["message"]
    def swaps() -> list[str]:
        return [e["message"] for e in entries(server, filter="greeting", limit=1000)
                if e["kind"] == "model_swap"]

    wait_for(lambda: "back from" in swaps()[-1], 10, "the swap back to the good version")
    assert swaps()[-3:] == [
        f"model greeting: current -> {good['sha256'][:12]} (hello.txt, pushed)",
        f"model greeting: current -> {bad['sha256'][:12]} (broken.txt, pushed)",
        f"model greeting: current -> {good['sha256'][:12]} (hello.txt, back from "
        f"{bad['sha256'][:12]}, which failed to load)",
    ]


def test_telemetry_off_keeps_events_but_no_invocation_logs(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"MLAMBDA_TELEMETRY": "0"})
    try:
        marker = "tapir" + secrets.token_hex(4)
        invoke_faulty(server, marker)
        invoke_faulty(server, "kill")  # an event queued after the invocation
        wait_for(lambda: entries(server, function="faulty", filter="crashed"), 10,
                 "the crash event")
        kinds = {e["kind"] for e in entries(server, function="faulty", limit=1000)}
        assert "invocation" not in kinds and {"cold_start", "instance_crash"} <= kinds
        assert entries(server, filter=marker) == []
    finally:
        server.stop()
