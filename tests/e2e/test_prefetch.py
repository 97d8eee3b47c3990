"""Under load, an instance is handed its next batch while it computes the current one
(the dispatcher's prefetch), and a prefetched batch is never lost: if the instance dies,
what it had not started goes back to the queue and runs elsewhere."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, wait_for


def prefetched(server: Server) -> int:
    return sum(i["prefetched"] for i in server.runtime("pipelined")["instances"])


def post(client: httpx.Client, event: dict[str, Any]) -> httpx.Response:
    return client.post("/pipelined", json=event, timeout=30)


def test_a_busy_instance_gets_its_next_batch_while_it_computes(server: Server) -> None:
    with server.client() as c:
        assert post(c, {"n": -1, "sleep": 0}).status_code == 200  # warm: one instance
    client = server.client(limits=httpx.Limits(max_connections=8))
    with client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(post, client, {"n": n}) for n in range(8)]
        seen = wait_for(lambda: prefetched(server), 10, "a prefetched batch")
        answers = [f.result() for f in calls]
    assert seen == 2  # one batch of max_batch, never more than one batch ahead
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert sorted(b["n"] for b in bodies) == list(range(8))
    assert len({b["pid"] for b in bodies}) == 1  # max_instances 1: all on the one instance
    sizes: dict[int, int] = {}
    for b in bodies:
        sizes[b["batch"]] = sizes.get(b["batch"], 0) + 1
    assert max(sizes.values()) <= 2 and len(sizes) >= 4
    assert prefetched(server) == 0  # nothing is left behind once the backlog is gone


def test_a_prefetched_batch_survives_the_instance_dying(server: Server, scratch: Path) -> None:
    marker = scratch / "pipelined-crashed"
    with server.client() as c:
        assert post(c, {"n": -1, "sleep": 0}).status_code == 200
    client = server.client(limits=httpx.Limits(max_connections=5))
    with client, concurrent.futures.ThreadPoolExecutor(5) as pool:
        # runs alone for 1.5 s, then kills its instance; meanwhile the others queue up
        # and a batch of two of them is prefetched to the doomed instance
        first = pool.submit(post, client, {"n": 0, "crash": str(marker), "sleep": 1.5})
        wait_for(lambda: server.runtime("pipelined")["instances"][0]["state"] == "busy", 10,
                 "the first batch running")
        rest = [pool.submit(post, client, {"n": n, "sleep": 0.1}) for n in range(1, 5)]
        wait_for(lambda: prefetched(server) == 2, 10, "a batch prefetched behind it")
        answers = [first.result(), *(f.result() for f in rest)]
    assert marker.exists()  # it did crash
    crashed_pid = int(marker.read_text())
    assert [r.status_code for r in answers] == [200] * 5, [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert sorted(b["n"] for b in bodies) == list(range(5))
    # the crashed batch was retried (retry_on_crash) and the prefetched one re-queued:
    # every answer came from the new instance
    assert all(b["pid"] != crashed_pid for b in bodies)
