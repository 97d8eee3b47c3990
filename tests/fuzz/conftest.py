"""The fuzz suite's shared parts: one server per module, and the property every answer
must have."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import Server, start_server

# Bounded: the whole suite runs in well under a minute. No example database on disk;
# a failure prints the seed and the falsifying example to reproduce it.
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TIMEOUT_S = 15.0  # an answer slower than this is a hang


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.stop()


def check_answer(r: httpx.Response | Any, what: str) -> None:
    """No 500; every error a JSON object with a string errorType and errorMessage."""
    assert r.status_code != 500, f"{what}: 500: {r.text[:500]}"
    if r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            raise AssertionError(f"{what}: {r.status_code} is not JSON: {r.text[:300]!r}") from None
        assert isinstance(body, dict), f"{what}: {r.status_code} body is not an object: {body}"
        assert isinstance(body.get("errorType"), str) and body["errorType"], (what, body)
        assert isinstance(body.get("errorMessage"), str) and body["errorMessage"], (what, body)


def still_serving(server: Server) -> None:
    assert server.proc.poll() is None, f"the server died:\n{server.log()[-3000:]}"
    with server.client() as c:
        assert c.post("/echo", json={"after": "fuzz"}).json() == {"after": "fuzz"}
