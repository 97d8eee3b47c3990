"""Retries answered once, by the gateway, on routes with the idempotency option: joined
while running, replayed after, recomputed when the matched fields differ or the TTL
passed; errors never replayed. Invocations are counted by the version's dispatcher, and
the `tally` function answers each invocation with a fresh nonce."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
from typing import Any

import httpx
from typer.testing import CliRunner

from mlambda.cli import app
from tests.conftest import ROOT, Server, wait_for

CASES = ROOT / "tests" / "data" / "handwriting"
FOUR_KEYS = {"esun_uuid", "server_uuid", "answer", "server_timestamp"}


def invocations(server: Server, function: str) -> int:
    return int(server.runtime(function).get("invocations", 0))


def stats(server: Server) -> dict[str, int]:
    with server.admin() as c:
        r = c.get("/admin/v1/idempotency")
        r.raise_for_status()
        return dict(r.json())


def post(server: Server, path: str, body: Any) -> httpx.Response:
    with server.client() as c:
        return c.post(path, content=json.dumps(body))


def question(image: str, uuid: str, retry: int = 2, **extra: Any) -> dict[str, Any]:
    data = base64.b64encode((CASES / image).read_bytes()).decode()
    return {"esun_uuid": uuid, "esun_timestamp": int(time.time()), "image": data,
            "retry": retry, **extra}


def test_three_images_under_one_esun_uuid_get_three_right_answers(server: Server) -> None:
    cases = {c["file"]: c["answer"] for c in json.loads((CASES / "cases.json").read_text())}
    images = ["00-cwTeXKai.jpg", "02-cwTeXKai.jpg", "04-cwTeXKai.jpg"]
    assert len({cases[i] for i in images}) == 3
    uuid = "3" * 64
    before, mismatches = invocations(server, "handwriting"), stats(server)["mismatches"]
    answers = []
    for image in images:
        r = post(server, "/inference", question(image, uuid))
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == FOUR_KEYS and body["esun_uuid"] == uuid
        assert "idempotent-replayed" not in r.headers
        answers.append(body["answer"])
    assert answers == [cases[i] for i in images]
    assert invocations(server, "handwriting") - before == 3
    assert stats(server)["mismatches"] - mismatches == 2


def test_a_retry_of_the_same_question_is_answered_from_its_first_invocation(
        server: Server) -> None:
    uuid = "4" * 64
    before = invocations(server, "handwriting")
    first = post(server, "/inference", question("01-strokes.jpg", uuid, retry=2))
    assert first.status_code == 200, first.text
    # the caller's retries lower `retry` and may send a new timestamp: still the same question
    for retry, ts in ((1, 1_700_000_001.5), (0, 1_700_000_009)):
        again = post(server, "/inference",
                     question("01-strokes.jpg", uuid, retry=retry, esun_timestamp=ts))
        assert again.status_code == 200
        assert again.content == first.content  # the four keys, esun_uuid the request's
        assert again.headers["idempotent-replayed"] == "true"
    assert invocations(server, "handwriting") - before == 1
    # a body without the image is a new (bad) request, answered by the function
    r = post(server, "/inference", {"esun_uuid": uuid, "retry": 0})
    assert r.status_code == 400 and "image" in r.json()["errorMessage"]


def test_an_identical_retry_while_running_joins_it(server: Server) -> None:
    post(server, "/tally", {"id": "warm", "payload": 0})  # an instance is up
    before, joins = invocations(server, "tally"), stats(server)["joins"]
    slow = {"id": "j1", "payload": "p", "sleep": 2.0}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server, "/tally", slow)
        wait_for(lambda: invocations(server, "tally") - before == 1, 5, "the first to run")
        retry = pool.submit(post, server, "/tally", {**slow, "retry": 1})
        a, b = first.result(), retry.result()
    assert a.status_code == b.status_code == 200
    assert a.content == b.content  # one invocation's answer (one nonce) for both
    assert b.headers["idempotent-replayed"] == "true"
    assert invocations(server, "tally") - before == 1
    assert stats(server)["joins"] - joins == 1


def test_same_key_other_payload_is_a_new_invocation_even_while_one_runs(
        server: Server) -> None:
    before, mismatches = invocations(server, "tally"), stats(server)["mismatches"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server, "/tally", {"id": "m1", "payload": "p", "sleep": 0.5})
        wait_for(lambda: invocations(server, "tally") - before == 1, 5, "the first to run")
        other = post(server, "/tally", {"id": "m1", "payload": "q"})
        a = first.result()
    assert other.json()["payload"] == "q" and a.json()["payload"] == "p"
    assert other.json()["nonce"] != a.json()["nonce"]
    assert "idempotent-replayed" not in other.headers
    assert invocations(server, "tally") - before == 2
    assert stats(server)["mismatches"] - mismatches == 1
    # each is then replayed for its own payload
    assert post(server, "/tally", {"id": "m1", "payload": "q"}).content == other.content
    assert post(server, "/tally", {"id": "m1", "payload": "p"}).content == a.content
    assert invocations(server, "tally") - before == 2


def test_errors_are_not_replayed(server: Server) -> None:
    before = invocations(server, "tally")
    for _ in range(2):
        r = post(server, "/tally", {"id": "e1", "fail": True})
        assert r.status_code == 502 and r.json()["errorType"] == "RuntimeError"
        assert "idempotent-replayed" not in r.headers
    assert invocations(server, "tally") - before == 2


def test_a_retry_storm_adds_no_invocations(server: Server) -> None:
    post(server, "/tally", {"id": "warm", "payload": 0})
    before = invocations(server, "tally")
    distinct = 24
    client = server.client(limits=httpx.Limits(max_connections=72))

    def ask(i: int) -> bytes:
        r = client.post("/tally", json={"id": f"storm-{i}", "payload": i, "sleep": 0.1,
                                        "retry": 2})
        assert r.status_code == 200, r.text
        return r.content

    with client, concurrent.futures.ThreadPoolExecutor(72) as pool:
        # every question sent three times at once, then once more after it was answered
        answers = list(pool.map(ask, [i for i in range(distinct) for _ in range(3)]))
        answers += list(pool.map(ask, range(distinct)))
    by_question: dict[int, set[bytes]] = {}
    for i, content in zip([i for i in range(distinct) for _ in range(3)] + list(range(distinct)),
                          answers, strict=True):
        by_question.setdefault(i, set()).add(content)
    assert all(len(v) == 1 for v in by_question.values())
    assert invocations(server, "tally") - before == distinct


def test_ttl_then_recomputed_and_the_option_changed_on_a_live_route(server: Server) -> None:
    with server.admin() as c:
        r = c.post("/admin/v1/routes", json={"method": "POST", "path": "/tally-ttl",
                                             "target": "tally:live"})
        assert r.status_code == 201 and r.json()["idempotency"] is None
        body = {"id": "t1", "payload": 1}
        before = invocations(server, "tally")
        nonces = {post(server, "/tally-ttl", body).json()["nonce"] for _ in range(2)}
        assert len(nonces) == 2 and invocations(server, "tally") - before == 2  # no option
        r = c.patch("/admin/v1/routes", params={"method": "POST", "path": "/tally-ttl"},
                    json={"idempotency": {"key": "id", "match": ["payload"], "ttl_s": 1.0}})
        assert r.status_code == 200, r.text
        assert r.json()["idempotency"] == {"key": "id", "match": ["payload"], "ttl_s": 1.0}
    first = post(server, "/tally-ttl", body)
    answered = time.monotonic()
    assert post(server, "/tally-ttl", body).content == first.content

    def recomputed() -> bool:
        return bool(post(server, "/tally-ttl", body).content != first.content)

    wait_for(recomputed, 10, "the answer to expire")
    assert time.monotonic() - answered >= 1.0


def test_a_bad_option_is_a_400_naming_the_field(server: Server) -> None:
    with server.admin() as c:
        r = c.post("/admin/v1/routes", json={"method": "POST", "path": "/x",
                                             "target": "tally:live",
                                             "idempotency": {"key": "id", "ttl_s": -1}})
        assert r.status_code == 400 and "idempotency.ttl_s" in r.json()["errorMessage"]
        r = c.post("/admin/v1/routes", json={"method": "POST", "path": "/x",
                                             "target": "tally:live",
                                             "idempotency": {"key": "id", "match": ["id"]}})
        assert r.status_code == 400 and "idempotency.match" in r.json()["errorMessage"]
        r = c.patch("/admin/v1/routes", params={"method": "POST", "path": "/nowhere"},
                    json={"idempotency": None})
        assert r.status_code == 404 and r.json()["errorType"] == "ResourceNotFoundException"
        r = c.patch("/admin/v1/routes", params={"method": "POST", "path": "/tally"}, json={})
        assert r.status_code == 400 and "idempotency" in r.json()["errorMessage"]
        assert [x for x in c.get("/admin/v1/routes").json() if x["path"] == "/x"] == []


def test_the_cli_sets_shows_and_clears_the_option(server: Server) -> None:
    env = {"MLAMBDA_URL": server.url, "MLAMBDA_ADMIN_KEY": server.admin_key, "COLUMNS": "200"}

    def cli(*args: str) -> str:  # the CLI in this process, against the real server
        done = CliRunner().invoke(app, ["routes", *args], env=env)
        assert done.exit_code == 0, done.output
        return done.output

    out = cli("add", "POST", "/tally-cli", "tally:live", "--idempotency-key", "id",
              "--match", "payload", "--ttl", "60")
    assert "key id match payload ttl 60s" in out
    assert "/tally-cli" in cli("ls") and "key id match payload ttl 60s" in cli("ls")
    body = {"id": "c1", "payload": 1}
    before = invocations(server, "tally")
    assert post(server, "/tally-cli", body).content == post(server, "/tally-cli", body).content
    assert invocations(server, "tally") - before == 1
    cli("set", "POST", "/tally-cli", "--no-idempotency")
    assert post(server, "/tally-cli", body).content != post(server, "/tally-cli", body).content
    assert invocations(server, "tally") - before == 3
