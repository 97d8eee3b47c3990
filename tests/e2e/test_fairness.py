"""Fair sharing of a contended version between API keys, on a real server: a key's
backlog does not stand between another key and the instance."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.conftest import Server, wait_for

HEAVY = 30  # requests the heavy key sends at once


def test_a_light_key_is_served_within_a_turn_not_after_the_heavy_backlog(
        server: Server) -> None:
    # `serial`: one instance, one event at a time, 100 ms each: a queue forms at once
    with server.client() as c:
        assert c.post("/serial", json={"who": "warm"}).status_code == 200
    heavy = server.client(server.invoke_key, limits=httpx.Limits(max_connections=HEAVY))
    with heavy, concurrent.futures.ThreadPoolExecutor(HEAVY) as pool:
        flood = [pool.submit(heavy.post, "/serial", json={"who": "heavy", "sleep": 0.1})
                 for _ in range(HEAVY)]

        def backlog() -> int:
            queued = int(server.runtime("serial")["queued"])
            return queued if queued >= HEAVY // 2 else 0

        queued = wait_for(backlog, 10, "the heavy key's backlog to queue")
        sent = time.monotonic()
        with server.client(server.admin_key) as light:  # another key
            r = light.post("/serial", json={"who": "light", "sleep": 0.1})
        light_s = time.monotonic() - sent
        assert r.status_code == 200, r.text
        light_seq = r.json()["seq"]
        heavy_seqs = [f.result().json()["seq"] for f in flood]
    after = sum(1 for s in heavy_seqs if s > light_seq)
    # FIFO would serve the light request after the whole heavy backlog (after == 0);
    # round-robin serves it after the heavy request running and one heavy turn (allow two
    # more for those that ended between reading the queue's length and sending)
    assert after >= queued - 4, (
        f"{queued} heavy requests were queued; the light one ran after {HEAVY - after} of "
        f"the {HEAVY} heavy ones, {after} ran after it; it took {light_s:.2f} s")
