"""The handwriting API both ways: one function, and handwriting-pre calling
handwriting-infer through context.invoke; moving the route switches between them and the
answers stay the same, on every fixture image."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from typing import Any

from tests.conftest import ROOT, Server

CASES = ROOT / "tests" / "data" / "handwriting"


def ask_all(server: Server, salt: str) -> list[tuple[int, dict[str, Any]]]:
    cases = json.loads((CASES / "cases.json").read_text())

    def one(i: int) -> tuple[int, dict[str, Any]]:
        image = (CASES / cases[i]["file"]).read_bytes()
        body = {"esun_uuid": f"{salt}{i:060x}", "esun_timestamp": int(time.time()),
                "image": base64.b64encode(image).decode(), "retry": 2}
        r = c.post("/inference", json=body)
        return r.status_code, r.json()

    with server.client() as c, concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(len(cases))))


def move_route(server: Server, target: str) -> None:
    with server.admin() as c:
        r = c.post("/admin/v1/routes", json={"method": "POST", "path": "/inference",
                                             "target": target})
        assert r.status_code == 201, r.text


def move_route_with_the_cli(server: Server, target: str) -> None:
    env = {**os.environ, "MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key}
    out = subprocess.run([sys.executable, "-m", "mlambda.cli", "routes", "add", "POST",
                          "/inference", target], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"POST /inference -> {target}"


def test_the_pipeline_answers_exactly_as_the_single_function(server: Server) -> None:
    single = ask_all(server, "a001")
    move_route_with_the_cli(server, "handwriting-pre:live")
    try:
        piped = ask_all(server, "b002")
        assert server.instances("handwriting-infer"), "the pipeline did not call the model"
    finally:
        move_route(server, "handwriting:live")
    assert all(status == 200 for status, _ in single + piped), [b for _, b in single + piped]
    for (_, one), (_, two) in zip(single, piped, strict=True):
        assert set(two) == {"esun_uuid", "server_uuid", "answer", "server_timestamp"}
        assert two["esun_uuid"] == "b002" + one["esun_uuid"][4:]
        assert (two["answer"], two["server_uuid"]) == (one["answer"], one["server_uuid"])


def test_the_pipeline_names_the_bad_field(server: Server) -> None:
    move_route(server, "handwriting-pre:live")
    try:
        with server.client() as c:
            for body, field in (({"esun_uuid": "x", "image": "%%%"}, "image"),
                                ({"image": "aGk="}, "esun_uuid"),
                                ({"esun_uuid": "x", "image": "", "retry": "two"}, "retry")):
                r = c.post("/inference", json=body)
                assert r.status_code == 400, r.text
                assert r.json()["errorType"] == "InvalidRequestContentException"
                assert field in r.json()["errorMessage"]
    finally:
        move_route(server, "handwriting:live")
