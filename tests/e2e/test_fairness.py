"""Fair sharing of a contended version between API keys, on a real server: a key's
backlog does not stand between another key and the instance."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from mlambda.client import Client
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


def test_a_full_queue_refuses_the_flooding_key_not_the_light_one(server: Server) -> None:
    # `slow`: one instance and max_queue 2
    with server.client() as c:
        assert c.post("/slow", json={"sleep": 0}).status_code == 200
    heavy = server.client(server.invoke_key, limits=httpx.Limits(max_connections=4))
    light = server.client(server.admin_key)
    with heavy, light, concurrent.futures.ThreadPoolExecutor(4) as pool:
        flood = [pool.submit(heavy.post, "/slow", json={"sleep": 1.0}) for _ in range(3)]

        def full() -> bool:
            rt = server.runtime("slow")
            return rt["queued"] == 2 and [i["state"] for i in rt["instances"]] == ["busy"]

        wait_for(full, 10, "one heavy request running and two queued")
        light_call = pool.submit(light.post, "/slow", json={"sleep": 0})
        wait_for(lambda: any(f.done() and f.result().status_code == 429 for f in flood), 10,
                 "a heavy request pushed out")
        refused = heavy.post("/slow", json={"sleep": 0})  # full again: the heavy key waits
        r = light_call.result()
        statuses = sorted(f.result().status_code for f in flood)
        pushed_out = [f.result().json() for f in flood if f.result().status_code == 429]
    assert r.status_code == 200, r.text
    assert statuses == [200, 200, 429]
    assert pushed_out[0]["errorType"] == "TooManyRequestsException"
    assert "max_queue 2" in pushed_out[0]["errorMessage"]
    assert refused.status_code == 429


def test_a_keys_plan_weight_is_its_turn_in_the_queue(server: Server) -> None:
    with Client(server.url, server.admin_key) as admin:
        admin.create_plan("heavier-share", rate=1000, burst=1000, weight=3)
        secret = admin.create_key("weight-3", "invoke", plan="heavier-share")["secret"]
    with server.client() as c:
        assert c.post("/serial", json={"who": "warm"}).status_code == 200
    n = 16
    heavy = server.client(server.invoke_key, limits=httpx.Limits(max_connections=n))
    weighted = server.client(secret, limits=httpx.Limits(max_connections=3))
    with heavy, weighted, concurrent.futures.ThreadPoolExecutor(n + 3) as pool:
        flood = [pool.submit(heavy.post, "/serial", json={"who": "heavy", "sleep": 0.2})
                 for _ in range(n)]
        wait_for(lambda: server.runtime("serial")["queued"] >= n // 2, 10, "a heavy backlog")
        three = [pool.submit(weighted.post, "/serial", json={"who": "w3", "sleep": 0.2})
                 for _ in range(3)]
        seqs = sorted(f.result().json()["seq"] for f in three)
        assert all(f.result().status_code == 200 for f in flood)
    # weight 3: its three requests run in one turn, back to back (weight 1 would
    # interleave them with the heavy key's: n, n+2, n+4)
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2], seqs
